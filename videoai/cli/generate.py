"""`videoai generate`: animate a still image so its content follows drawn motion paths (video.mp4 + overlay.mp4)."""
from __future__ import annotations

import argparse
import json
import time

from videoai.cli.common import (
    TRACKS_FORMAT_DOC,
    CLIError,
    add_device_flag,
    add_json_flag,
    existing_dir,
    existing_file,
    emit,
    output_dir,
    pick_device,
    positive_int,
    quiet_model_loading,
    show_progress,
    write_json,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="image + motion paths -> video that follows them",
        description=f"Generate a video from --image whose content follows --tracks; writes video.mp4, overlay.mp4 "
                    f"(the paths drawn over the video) and tracks.json (the tracks used, in video pixels) to --out. "
                    f"Tracks file format: {TRACKS_FORMAT_DOC} (a JSON list of polylines in the image's pixels, or "
                    f"the object written by `videoai tracks` / Tracks.to_json).")
    parser.add_argument("--image", required=True, help="still image to animate (png, jpg, ...)")
    parser.add_argument("--tracks", required=True, help=f"tracks JSON, see {TRACKS_FORMAT_DOC}")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--model-dir", metavar="DIR", help="local diffusers pipeline folder (default: embedded model)")
    parser.add_argument("--frames", type=positive_int, help="number of frames, 4k+1 (default: the model's)")
    parser.add_argument("--steps", type=positive_int, default=20, help="denoising steps (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    parser.add_argument("--guidance-scale", type=float, default=None,
                        help="> 1 pushes harder towards the paths (classifier-free guidance, two transformer passes "
                             "per guided step; 1 turns it off; default: the model's own, 5 for the embedded model)")
    parser.add_argument("--guidance-interval", type=float, default=None,
                        help="fraction of the steps, from the first (noisiest), that run guidance; later steps run "
                             "one pass (default: the model's own, 0.1 for the embedded model)")
    parser.add_argument("--prompt", help="text prompt (only for pipelines with a text encoder)")
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate of the written videos (default: 8)")
    add_device_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(run=run)


def load_tracks(path: str, num_frames: int, width: int, height: int):
    """The tracks file as `Tracks` of num_frames in the image's pixels.

    Timed tracks (an object with "num_frames", as Tracks.to_json writes) are resampled in time; drawn paths (a list,
    or an object without "num_frames") are resampled arc-length-uniform, as `Tracks.from_json` documents.
    """
    from videoai.tokenize import Tracks

    try:
        data = json.loads(existing_file(path, "--tracks").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CLIError(f"--tracks: {path!r} is not valid JSON ({error}); see {TRACKS_FORMAT_DOC}") from None
    timed = isinstance(data, dict) and data.get("num_frames") is not None
    try:
        tracks = Tracks.from_json(data, None if timed else num_frames, width=width, height=height)
    except (TypeError, ValueError) as error:
        raise CLIError(f"--tracks: {path}: {error} (see {TRACKS_FORMAT_DOC})") from None
    return tracks.resample(num_frames) if tracks.num_frames != num_frames else tracks


def run(args: argparse.Namespace) -> None:
    image_path = existing_file(args.image, "--image")
    existing_file(args.tracks, "--tracks")
    if args.model_dir:
        existing_dir(args.model_dir, "--model-dir")
    if (args.guidance_scale is not None and args.guidance_scale < 0) or not args.fps > 0 \
            or (args.guidance_interval is not None and not 0 < args.guidance_interval <= 1):
        raise CLIError("--guidance-scale must be >= 0, --guidance-interval in (0, 1] and --fps > 0")
    import numpy as np
    import PIL.Image
    import torch

    from videoai.generate import TrajectoryImageToVideoPipeline, export_overlay, export_video, load_default_pipeline

    try:
        with PIL.Image.open(image_path) as opened:
            image = np.asarray(opened.convert("RGB"))  # (H, W, 3) uint8
    except (OSError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
        raise CLIError(f"--image: {error}") from None
    device = pick_device(args.device)
    with quiet_model_loading():
        if args.model_dir:
            pipe = TrajectoryImageToVideoPipeline.from_pretrained(args.model_dir).to(device)
        else:
            pipe = load_default_pipeline(device=device)
    pipe.set_progress_bar_config(disable=not show_progress(), desc="denoise")
    num_frames = args.frames or pipe.config.default_num_frames or 81  # the pipeline's own default
    tracks = load_tracks(args.tracks, num_frames, image.shape[1], image.shape[0])

    start = time.perf_counter()
    # A CPU generator gives the same noise whatever the device.
    result = pipe(image, tracks=tracks, prompt=args.prompt, num_frames=num_frames, num_inference_steps=args.steps,
                  guidance_scale=args.guidance_scale, guidance_interval=args.guidance_interval,
                  generator=torch.Generator().manual_seed(args.seed), output_type="np")
    seconds = time.perf_counter() - start
    video = result.frames[0]  # (T, H, W, 3) float in [0, 1]
    out = output_dir(args.out)
    export_video(video, out / "video.mp4", args.fps)
    used = result.tracks if result.tracks is not None else tracks.scale_to(video.shape[2], video.shape[1])
    scale = max(1, 256 // min(video.shape[1:3]))  # small videos are upscaled so the drawn paths stay legible
    export_overlay(video, used, str(out / "overlay.mp4"), args.fps, scale=scale)
    write_json(out / "tracks.json", used.to_json())
    report = {"video": str(out / "video.mp4"), "overlay": str(out / "overlay.mp4"), "tracks": str(out / "tracks.json"),
              "num_frames": int(video.shape[0]), "height": int(video.shape[1]), "width": int(video.shape[2]),
              "num_tracks": used.num_tracks, "steps": args.steps, "seed": args.seed, "device": device,
              "seconds": round(seconds, 2)}
    emit(args, report, f"wrote {out}/video.mp4, overlay.mp4, tracks.json: {video.shape[0]} frames "
                       f"{video.shape[2]}x{video.shape[1]}, {used.num_tracks} track(s), {seconds:.1f}s on {device}")
