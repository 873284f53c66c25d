"""Fine-tune a local Wan image-to-video checkpoint for motion paths with LoRA, on your own clips.

    python examples/finetune_wan_lora.py --model Wan2.1-I2V-14B-480P-Diffusers --clips my_clips/ --out lora/ \
        --steps 2000 --rank 32 --prompt "a person walking" --mixed-precision bf16
    accelerate launch --multi_gpu --num_processes 8 examples/finetune_wan_lora.py ...   # data parallel

--clips: a folder of .mp4 files (CLIP.txt beside CLIP.mp4 is its caption, else --prompt); they are read at the
training size and tracked with videoai.understand.track_points. Writes the LoRA to --out (load it with
`pipe.load_lora_weights(out)`, or videoai.generate.finetune.load_lora for two experts); checkpoints and the
encoded-data cache go to --out/run (--resume continues from the latest checkpoint there).
"""

import argparse
from pathlib import Path

import torch

from videoai.generate import TrajectoryImageToVideoPipeline
from videoai.generate.finetune import FinetuneConfig, finetune_lora, save_lora
from videoai.train import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local pipeline folder (diffusers layout)")
    parser.add_argument("--clips", required=True, help="folder of .mp4 clips (optional .txt captions)")
    parser.add_argument("--out", required=True, help="folder for the LoRA weights")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=1, help="per process")
    parser.add_argument("--prompt", default="", help="prompt of clips without a caption file")
    parser.add_argument("--frames", type=int, default=None, help="4k + 1 (default: the model's, else 81)")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--fps", type=float, default=16.0, help="rate clips are read at (0: spread over the clip)")
    parser.add_argument("--track-grid", type=int, default=8)
    parser.add_argument("--max-sequence-length", type=int, default=512)
    parser.add_argument("--experts", default=None, help='two-expert checkpoints: "0", "1" or "0,1" (default: both)')
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="base weights' dtype")
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out/run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pipe = TrajectoryImageToVideoPipeline.from_pretrained(args.model, dtype=getattr(torch, args.dtype))
    if torch.cuda.is_available():
        pipe.to("cuda")
    config = FinetuneConfig(lora_rank=args.rank, learning_rate=args.lr, batch_size=args.batch_size,
                            prompt=args.prompt, num_frames=args.frames, height=args.height, width=args.width,
                            fps=args.fps or None, track_grid=args.track_grid,
                            max_sequence_length=args.max_sequence_length,
                            experts=None if args.experts is None else tuple(map(int, args.experts.split(","))))
    out = Path(args.out)
    train_config = TrainConfig(output_dir=out / "run", max_steps=args.steps, mixed_precision=args.mixed_precision,
                               checkpoint_every=args.checkpoint_every, seed=args.seed,
                               resume_from="latest" if args.resume else None)
    result, trainer = finetune_lora(pipe, args.clips, config, train_config)
    files = save_lora(pipe, out, is_main_process=trainer.accelerator.is_main_process)
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        print(f"trained {result.step} steps, final loss {result.loss:.4f}; wrote {', '.join(map(str, files))}")


if __name__ == "__main__":
    main()
