"""`videoai tag`: top-k tags per video from the embedded tagger, a fine-tuned tagger folder or a zero-shot model."""
from __future__ import annotations

import argparse

from videoai.cli.common import (
    add_device_flag,
    add_json_flag,
    check_videos,
    emit,
    load_understand_model,
    map_video_batches,
    positive_int,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "tag", help="tag videos (top-k tags with scores)",
        description="Score tags for each VIDEO with the embedded synthetic-shapes tagger (default), a VideoTagger "
                    "folder (`videoai.understand.train_tagger`), or a local CLIP/SigLIP/X-CLIP folder (zero-shot, "
                    "needs --tags).")
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    parser.add_argument("--model", metavar="DIR", help="tagger or zero-shot model folder (default: embedded tagger)")
    parser.add_argument("--top-k", type=positive_int, default=5, help="tags per video (default: 5)")
    parser.add_argument("--tags", nargs="+", metavar="TAG", help="tags to score (required for zero-shot models)")
    parser.add_argument("--threshold", type=float, help="drop tags scoring below this")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="videos per forward pass (default: 8)")
    add_device_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    check_videos(args.videos)
    from videoai.understand import tag_video

    model = load_understand_model(args)
    per_batch = map_video_batches(args.videos, args.batch_size, lambda batch: tag_video(
        batch, model, top_k=args.top_k, tags=args.tags, threshold=args.threshold), "tag")
    results = [tags for batch in per_batch for tags in batch]
    records = [{"video": video, "tags": [{"tag": tag, "score": round(score, 4)} for tag, score in tags]}
               for video, tags in zip(args.videos, results)]
    emit(args, records, lambda: "\n".join(
        f"{r['video']}: " + (", ".join(f"{t['tag']} {t['score']:.2f}" for t in r["tags"]) or "(no tag)")
        for r in records))
