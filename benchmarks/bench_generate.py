"""Benchmark trajectory-controlled generation: motion-control accuracy, first-frame fidelity, speed and memory.

Accuracy: on held-out synthetic clips (seeds no training stage used), the pipeline gets frame 0 and the ground-truth
object centroid tracks; each object's centroid in the generated frames (colour segmentation of its known colour)
is compared with its requested track (frames 1..T-1): "mean EPE" uses the centroid of the 16 pixels closest to the
colour (always defined; a vanished object scores large), "found" is the share of frames where a thresholded colour
detector sees the object. Peer run in the same script: the same model, same noise, with the tracks withheld.
Reference rows: the VAE reconstruction of the true clip (what the VAE allows at best) and "frame 0 held still"
(what no motion scores).
Speed/memory: one denoising step and a full generation with tracks vs the same pipeline without tracks. Tracks
change a generation in one place, the condition edit made once before the denoising loop (timed on its own too); a
denoising step then costs what it costs without tracks unless the optional motion adapter is on.

    python benchmarks/bench_generate.py [--model DIR] [--num-clips 50] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wan_timing import peak_memory_mib  # noqa: E402

from videoai.generate.conditioning import apply_tracks  # noqa: E402
from videoai.generate.default import DEFAULT_MODEL_DIR  # noqa: E402
from videoai.generate.evaluate import end_point_error  # noqa: E402
from videoai.generate.latents import denormalize_latents, encode_image_condition, encode_video  # noqa: E402
from videoai.generate.model import TrajectoryDenoiser  # noqa: E402
from videoai.generate.pipeline import TrajectoryImageToVideoPipeline  # noqa: E402
from videoai.generate.recipe import HELD_OUT_SEED, default_shapes_config  # noqa: E402
from videoai.synthetic import COLORS, make_clip  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Median wall seconds of fn over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def accuracy(pipe, args, device) -> dict:
    shapes = default_shapes_config()
    diagonal = (shapes.width**2 + shapes.height**2) ** 0.5
    rows = {name: [] for name in ("tracks", "no_tracks", "vae_reconstruction", "frame0_still")}
    found = {name: [] for name in rows}
    psnr = []
    for index in range(args.num_clips):
        clip = make_clip(HELD_OUT_SEED + index, shapes)
        colors = torch.tensor([COLORS[tag["color"]] for tag in clip.tags], dtype=torch.float32)
        target, visible = clip.tracks.points, clip.tracks.visibility
        image = clip.frames[0]
        videos = {}
        for name, tracks in (("tracks", clip.tracks), ("no_tracks", None)):
            out = pipe(image, tracks=tracks, num_inference_steps=args.steps, guidance_scale=args.guidance,
                       guidance_interval=args.guidance_interval,
                       generator=torch.Generator(device).manual_seed(index), output_type="pt")
            videos[name] = (out.frames[0].permute(0, 2, 3, 1) * 255).cpu()  # (T, H, W, 3) 0..255
        video = clip.frames.permute(3, 0, 1, 2)[None].float().div(127.5).sub(1).to(device)  # (1, 3, T, H, W)
        with torch.no_grad():
            latents = encode_video(pipe.vae, video)
            recon = pipe.vae.decode(denormalize_latents(pipe.vae, latents)).sample[0]  # (3, T, H, W)
        videos["vae_reconstruction"] = ((recon.permute(1, 2, 3, 0) + 1) * 127.5).clamp(0, 255).cpu()
        videos["frame0_still"] = clip.frames[:1].expand_as(clip.frames).float()
        for name, frames in videos.items():
            result = end_point_error(frames, target, visible, colors)
            rows[name].append(result["error"])
            found[name].append(float(result["found"]))
        reference = image.float() / 255.0
        psnr.append([float(10 * torch.log10(1.0 / (videos[name][0] / 255.0 - reference).square().mean()))
                     for name in ("tracks", "vae_reconstruction")])
    table = {}
    for name in rows:
        errors = torch.cat(rows[name])
        table[name] = (float(errors.mean()), float(torch.tensor(found[name]).mean()), errors.numel())
    psnr = torch.tensor(psnr).mean(0).tolist()
    return {"table": table, "diagonal": diagonal, "psnr": psnr[0], "psnr_vae": psnr[1]}


def workloads(pipe, args, device) -> dict:
    """The measured calls: a full generation and one denoising step, with and without tracks, and the one-off
    condition edit that tracks add to a generation."""
    shapes = default_shapes_config()
    clip = make_clip(HELD_OUT_SEED, shapes)
    image, tracks = clip.frames[0], clip.tracks
    pixels = image.permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device)
    condition = encode_image_condition(pipe.vae, pixels, shapes.num_frames)
    denoiser = TrajectoryDenoiser(pipe.transformer, pipe.motion_adapter)
    latents = torch.randn(1, pipe.vae.config.z_dim, *condition.shape[2:], device=device)
    timestep = torch.tensor([500.0], device=device)

    def generation(track_arg):
        return lambda: pipe(image, tracks=track_arg, num_inference_steps=args.steps, guidance_scale=args.guidance,
                            guidance_interval=args.guidance_interval,
                            generator=torch.Generator(device).manual_seed(0), output_type="np")

    def edit():  # the once-per-video cost of tracks: splat + mask marks
        with torch.no_grad():
            return apply_tracks(condition, tracks.to(device), pipe.vae_scale_factor_temporal,
                                pipe.config.track_sigma, pipe.config.mark_tracks_in_mask)

    def step(cond):  # one denoising step as the pipeline runs it: the condition is edited once per video
        def run():
            with torch.no_grad():
                return denoiser(latents, cond, timestep)
        return run

    edited = edit()
    return {"generation/tracks": generation(tracks), "generation/no_tracks": generation(None),
            "step/tracks": step(edited), "step/no_tracks": step(condition),
            "apply_tracks (once)": edit}


def speed(pipe, args, device) -> dict:
    results = {}
    for name, fn in workloads(pipe, args, device).items():
        repeats = args.repeats * (1 if name.startswith("generation") else 5)
        seconds = timed(fn, repeats)
        memory = peak_memory_mib(fn, device)
        results[name] = (seconds, memory)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="pipeline folder (default: embedded model)")
    parser.add_argument("--num-clips", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20, help="denoising steps")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance towards the tracks (default: the model's own)")
    parser.add_argument("--guidance-interval", type=float, default=None,
                        help="fraction of the steps (the first, noisiest) that run guidance (default: the model's own)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(args.model).to(device)
    pipe.set_progress_bar_config(disable=True)
    if args.guidance is None:
        args.guidance = pipe.config.default_guidance_scale
    if args.guidance_interval is None:
        args.guidance_interval = pipe.config.default_guidance_interval

    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} threads={args.threads} "
          f"device={device} torch={torch.__version__}")
    start = time.perf_counter()
    acc = accuracy(pipe, args, device)
    diag = acc["diagonal"]
    print(f"\nMotion control on {args.num_clips} held-out clips (seeds {HELD_OUT_SEED}..), {args.steps} steps, "
          f"guidance {args.guidance} on the first {args.guidance_interval:.0%} of steps; error = object colour "
          f"centroid vs requested track, frames 1..T-1")
    print(f"{'run':<22}{'mean EPE px':>12}{'% diagonal':>12}{'found':>8}{'points':>8}")
    for name, (error, found, count) in acc["table"].items():
        print(f"{name:<22}{error:>12.2f}{100 * error / diag:>11.1f}%{found:>8.2f}{count:>8d}")
    with_tracks, without = acc["table"]["tracks"][0], acc["table"]["no_tracks"][0]
    print(f"ratio tracks / no_tracks: {with_tracks / without:.3f}  (goal <= 0.50); "
          f"EPE / diagonal: {100 * with_tracks / diag:.1f}% (goal <= 5%)")
    print(f"first-frame PSNR vs input image: generated (with tracks) {acc['psnr']:.2f} dB, "
          f"VAE reconstruction {acc['psnr_vae']:.2f} dB")

    results = speed(pipe, args, device)
    print(f"\nSpeed and peak memory (median of {args.repeats} runs; memory: "
          f"{'CUDA allocator peak' if device.type == 'cuda' else 'peak of torch CPU tensor allocations (profiler)'})")
    print(f"{'what':<22}{'seconds':>10}{'peak MiB':>10}")
    for name, (seconds, memory) in results.items():
        print(f"{name:<22}{seconds:>10.4f}{memory:>10.1f}")
    for what in ("step", "generation"):
        (seconds, memory), (base_seconds, base_memory) = results[f"{what}/tracks"], results[f"{what}/no_tracks"]
        print(f"{what} tracks / no_tracks: time {seconds / base_seconds:.3f}, peak memory "
              f"{memory / max(base_memory, 1e-9):.3f} (goal <= 1.10)")
    print(f"\ntotal benchmark wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
