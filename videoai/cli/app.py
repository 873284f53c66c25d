"""`videoai app`: the motion-brush web app (draw paths on an image, get a video that follows them)."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("app", help="start the local motion-brush web app",
                                   description="Serve the motion-brush web app on a local port until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--model-dir", help="local pipeline folder (default: the embedded model)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--frames", type=int, default=13, help="default number of frames (4k+1)")
    parser.add_argument("--steps", type=int, default=20, help="default denoising steps")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from videoai.app import launch_app

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    print(f"videoai app: serving on http://{args.host}:{args.port} (Ctrl-C stops)")
    launch_app(args.host, args.port, args.model_dir, device=args.device, num_frames=args.frames,
               num_steps=args.steps, block=True)
