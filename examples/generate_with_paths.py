"""Draw paths on a still image and get a video whose objects follow them.

    python examples/generate_with_paths.py --image photo.png --paths "10,40 50,40; 32,20" --out out/
    python examples/generate_with_paths.py --out out/          # a synthetic shapes image and its true paths

--paths: polylines separated by ';', points "x,y" separated by spaces, in the image's pixels; a single point holds
that spot still. Writes video.mp4, video.gif and overlay.mp4 (the paths drawn over the result).
"""

import argparse
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from videoai.generate import TrajectoryImageToVideoPipeline, export_overlay, export_video, load_default_pipeline
from videoai.generate.recipe import HELD_OUT_SEED, default_shapes_config
from videoai.synthetic import make_clip


def parse_paths(text: str) -> list[list[tuple[float, float]]]:
    return [[tuple(float(v) for v in point.split(",")) for point in path.split()] for path in text.split(";")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="input image (default: frame 0 of a held-out synthetic clip)")
    parser.add_argument("--paths", help='polylines "x,y x,y; x,y" in image pixels (default: the clip\'s tracks)')
    parser.add_argument("--model", help="pipeline folder (default: the embedded tiny model)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance towards the paths (default: the model's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--out", default="out/generate")
    args = parser.parse_args()

    pipe = TrajectoryImageToVideoPipeline.from_pretrained(args.model) if args.model else load_default_pipeline()
    if args.image:
        image = np.asarray(PIL.Image.open(args.image).convert("RGB"))
        tracks = parse_paths(args.paths) if args.paths else None
    else:
        clip = make_clip(HELD_OUT_SEED + args.seed, default_shapes_config())  # never seen in training
        image = clip.frames[0]
        tracks = parse_paths(args.paths) if args.paths else clip.tracks
    result = pipe(image, tracks=tracks, num_inference_steps=args.steps, guidance_scale=args.guidance,
                  generator=torch.Generator().manual_seed(args.seed), output_type="np")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    video = result.frames[0]
    export_video(video, out / "video.mp4", args.fps)
    export_video(video, out / "video.gif", args.fps)
    if result.tracks is not None:
        export_overlay(video, result.tracks, out / "overlay.mp4", args.fps, scale=4)
    print(f"wrote {out}/video.mp4, video.gif" + (", overlay.mp4" if result.tracks is not None else ""))


if __name__ == "__main__":
    main()
