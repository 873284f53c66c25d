"""The whole loop on CPU: create a video along paths, understand it, give it a semantic ID and recommend it.

    python examples/full_loop.py --out out/full_loop                          # a few minutes on 2 CPU cores
    python examples/full_loop.py --image photo.png --tracks paths.json   # your still and paths (docs/tracks_format.md)
    python examples/full_loop.py --steps 2 --recommender-steps 5 --catalogue-size 32 --num-users 40   # seconds

Writes input.png, video.mp4, overlay.mp4, report.json, summary.md/.html and recommender/ to --out.
"""

import argparse
import json

from videoai.demo import DemoConfig, run_demo


def main() -> None:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=defaults.out_dir, help=f"output folder (default: {defaults.out_dir})")
    parser.add_argument("--image", help="still image to animate (default: a held-out synthetic frame)")
    parser.add_argument("--tracks", help="tracks JSON in the image's pixels (docs/tracks_format.md)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--steps", type=int, default=defaults.num_inference_steps, help="denoising steps")
    parser.add_argument("--catalogue-size", type=int, default=defaults.catalogue_size, help="synthetic videos")
    parser.add_argument("--num-users", type=int, default=defaults.num_users, help="simulated users")
    parser.add_argument("--history-length", type=int, default=defaults.history_length)
    parser.add_argument("--recommender-steps", type=int, default=defaults.recommender_steps)
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    parser.add_argument("--device", default=defaults.device)
    args = parser.parse_args()

    report = run_demo(DemoConfig(
        out_dir=args.out, image=args.image, tracks=args.tracks, seed=args.seed, num_inference_steps=args.steps,
        catalogue_size=args.catalogue_size, num_users=args.num_users, history_length=args.history_length,
        recommender_steps=args.recommender_steps, top_k=args.top_k, device=args.device))
    print(json.dumps({"understanding": report["understanding"], "distribution": report["distribution"],
                      "timings": report["timings"]}, indent=2))
    print(f"wrote {args.out}/video.mp4, overlay.mp4, report.json, summary.md")


if __name__ == "__main__":
    main()
