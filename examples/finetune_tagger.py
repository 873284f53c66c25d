"""Train or fine-tune a VideoTagger from a CSV (path,tag1|tag2), a labelled folder, or synthetic shapes clips.

    python examples/finetune_tagger.py --csv labels.csv --out runs/tagger --steps 1000
    python examples/finetune_tagger.py --folder videos/ --init videoai/assets/understand/tagger --out runs/tagger
    python examples/finetune_tagger.py --synthetic 6000 --eval-clips 200 --threads 1 --out runs/shapes  # the embedded
"""

import argparse
import json

import torch

from videoai.train import TrainConfig
from videoai.understand import (
    SYNTHETIC_APPEARANCE_CHANNELS,
    SYNTHETIC_AUGMENT,
    LabelledVideoDataset,
    SyntheticTagDataset,
    TaggerTrainConfig,
    VideoTagger,
    VideoTaggerConfig,
    load_tagger,
    save_tagger,
    train_tagger,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--csv", help="CSV with rows path,tags (tags separated by | or ;)")
    data.add_argument("--folder", help="folder with labels.csv or one subfolder per tag")
    data.add_argument("--synthetic", type=int, metavar="N", help="train on N synthetic shapes clips")
    parser.add_argument("--init", default=None, help="start from this VideoTagger folder (head re-sized to the tags)")
    parser.add_argument("--out", required=True, help="output dir: checkpoints, train_log.jsonl, model/")
    parser.add_argument("--export", default=None, help="also write the final model to this folder")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--eval-clips", type=int, default=0, help="held-out synthetic clips for mAP (synthetic only)")
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="resume from the latest checkpoint in --out")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--appearance-channels", default=",".join(map(str, SYNTHETIC_APPEARANCE_CHANNELS)),
                        help="per-frame shape CNN of a new tagger: comma-separated channels ('' for none)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base = load_tagger(args.init) if args.init else None
    base_config = base.config if base is not None else VideoTaggerConfig()
    size, num_frames = (base_config.height, base_config.width), base_config.num_frames
    eval_dataset, augment = None, None
    if args.synthetic:
        dataset, augment = SyntheticTagDataset(args.synthetic, seed=args.seed), SYNTHETIC_AUGMENT
        if args.eval_clips:
            eval_dataset = SyntheticTagDataset(args.eval_clips, seed=10_000_000)
    elif args.csv:
        dataset = LabelledVideoDataset.from_csv(args.csv, num_frames=num_frames, size=size)
    else:
        dataset = LabelledVideoDataset.from_folder(args.folder, num_frames=num_frames, size=size)

    torch.manual_seed(args.seed)
    appearance = [int(c) for c in args.appearance_channels.split(",") if c.strip()]
    model = (base.with_tags(dataset.tags) if base is not None
             else VideoTagger(VideoTaggerConfig(tags=dataset.tags, appearance_channels=appearance)))
    config = TrainConfig(args.out, max_steps=args.steps, log_every=25, seed=args.seed,
                         eval_every=100 if eval_dataset is not None else None,
                         checkpoint_every=args.checkpoint_every, resume_from="latest" if args.resume else None)
    result = train_tagger(model, dataset, config, TaggerTrainConfig(batch_size=args.batch_size, learning_rate=args.lr),
                          eval_dataset=eval_dataset, augment=augment)
    print(f"trained {result.step} steps in {result.wall_time:.0f}s, final loss {result.loss:.4f}, "
          f"eval {result.eval_metrics}; model in {args.out}/model")
    if args.export:  # the same folder train_tagger wrote (weights, config.json, training.json), copied atomically
        save_tagger(load_tagger(f"{args.out}/model"), args.export,
                    info=json.loads(open(f"{args.out}/model/training.json").read()))

if __name__ == "__main__":
    main()
