"""Train the trajectory-controlled generator: the embedded default model's recipe (tiny Wan stack on synthetic shapes).

    python examples/train_generator.py --output-dir runs/default_generator
    cp -r runs/default_generator/model/. videoai/assets/generate/     # install it as the embedded default

Every stage checkpoints and resumes (rerun the same command after an interruption). For a real Wan I2V model,
use `videoai.generate.train_generator` with `GeneratorTrainConfig(mode="lora" | "adapter")`, clips encoded by
`encode_clips` and tracks from `understand_track_source()`; launch with `accelerate launch`.
"""

import argparse
import dataclasses
import logging

import torch

from videoai.generate import DefaultRecipe, start_from_pipeline, train_default_model


def main() -> None:
    defaults = DefaultRecipe(output_dir="")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--vae-full-steps", type=int, default=defaults.vae_full_steps)
    parser.add_argument("--transformer-steps", type=int, default=defaults.transformer_steps)
    parser.add_argument("--lr-decay-steps", type=int, default=defaults.generator.lr_decay_steps,
                        help="cosine lr decay to 0 over the last N steps of each transformer stage (0: constant lr)")
    parser.add_argument("--fine-steps", type=int, default=defaults.fine_steps,
                        help="steps of the last stage on 1x1-latent-pixel tokens (0: ship the 2x2-token transformer)")
    parser.add_argument("--start-from", default=None, metavar="PIPELINE_DIR",
                        help="take the VAE and the 2x2-token transformer from this saved pipeline (stages 1 and 3)")
    parser.add_argument("--num-clips", type=int, default=defaults.num_clips)
    parser.add_argument("--mode", default=defaults.generator.mode, choices=["full", "lora", "adapter"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint is enough (ours)
    recipe = dataclasses.replace(
        defaults, output_dir=args.output_dir, vae_steps=args.vae_steps, vae_full_steps=args.vae_full_steps,
        transformer_steps=args.transformer_steps, num_clips=args.num_clips, seed=args.seed,
        generator=dataclasses.replace(defaults.generator, mode=args.mode, lr_decay_steps=args.lr_decay_steps),
        fine_generator=dataclasses.replace(defaults.fine_generator, mode=args.mode, lr_decay_steps=args.lr_decay_steps),
        fine_steps=args.fine_steps, fine_patch_size=defaults.fine_patch_size if args.fine_steps else None)
    if args.start_from:
        start_from_pipeline(args.output_dir, args.start_from)
    train_default_model(recipe)
    print(f"saved {args.output_dir}/model")


if __name__ == "__main__":
    main()
