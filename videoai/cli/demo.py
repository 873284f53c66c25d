"""`videoai demo`: the main job, offline on CPU with the embedded default models."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="create a video along paths, analyse it, recommend it",
                                   description="End-to-end demo: creation -> understanding -> distribution.")
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument("--image", help="still image to animate (default: a seeded synthetic frame)")
    parser.add_argument("--tracks", help="tracks JSON: list of polylines in the image's pixels")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps (default: 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recommender-steps", type=int, default=300, help="recommender training steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from videoai.demo import DemoConfig, run_demo

    if args.steps < 1 or args.recommender_steps < 1:
        raise ValueError("--steps and --recommender-steps must be >= 1")
    report = run_demo(DemoConfig(out_dir=args.out, image=args.image, tracks=args.tracks, seed=args.seed,
                                 num_inference_steps=args.steps, recommender_steps=args.recommender_steps,
                                 device=args.device))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print((Path(args.out) / "summary.md").read_text())
