"""Seconds per denoising step and peak GPU memory of a local Wan checkpoint under each memory setting, one table.

    python benchmarks/gpu_generate.py --model /data/Wan2.1-I2V-14B-480P-Diffusers            # 480x832, 81 frames
    python benchmarks/gpu_generate.py --model DIR --settings model_cpu_offload group_offload --steps 4
    python benchmarks/gpu_generate.py --model DIR --device cpu --frames 5 --height 32 --width 32   # CPU smoke run

Each setting loads the folder afresh (bf16, VAE in fp32 as diffusers' Wan docs load it), runs one generation with a
motion path (guidance 5.0, so both branches run every step) and reports s/step (median time between consecutive
scheduler steps), the whole generation's seconds and torch.cuda.max_memory_allocated over the call (weights on the
GPU included; host memory used by offload is not). Without CUDA (and without --device cpu), or without a local
checkpoint folder, it prints one line and exits 0. --out writes the rows as JSON (atomically).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wan_timing import record_step_times, step_seconds  # noqa: E402

SETTINGS = ("bf16", "model_cpu_offload", "group_offload", "sequential_cpu_offload", "vae_tiling_slicing")
NEEDS_GPU = "gpu_generate: needs a CUDA GPU and none is available (run with --device cpu for a CPU smoke run)"


def _setup(pipe, setting: str, device: torch.device, offload_dir: str) -> None:
    """Apply one memory setting to a freshly loaded pipeline."""
    if setting == "bf16":
        pipe.to(device)
    elif setting == "model_cpu_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif setting == "group_offload":
        cuda = device.type == "cuda"  # streams overlap transfers with compute on CUDA only
        pipe.enable_group_offload(onload_device=device, offload_type="block_level", num_blocks_per_group=1,
                                  use_stream=cuda, offload_to_disk_path=None if cuda else offload_dir)
    elif setting == "sequential_cpu_offload":
        if device.type == "cpu":  # accelerate's sequential hooks fail on "cpu:0", which diffusers passes on CPU
            import accelerate

            cpu_offload = accelerate.cpu_offload
            accelerate.cpu_offload = lambda model, execution_device=None, **kw: cpu_offload(model, "cpu", **kw)
        pipe.enable_sequential_cpu_offload(device=device)
    elif setting == "vae_tiling_slicing":
        pipe.to(device)
        pipe.vae.enable_tiling()
        pipe.vae.enable_slicing()
    else:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")


def _peak_start(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def measure(folder: Path, setting: str, device: torch.device, args: argparse.Namespace) -> dict:
    """Load, apply `setting`, generate once; s/step, generation seconds, peak GiB."""
    import numpy as np
    import PIL.Image

    from videoai.generate import TrajectoryImageToVideoPipeline

    pipe = TrajectoryImageToVideoPipeline.from_pretrained(folder, dtype={"default": torch.bfloat16,
                                                                         "vae": torch.float32})
    pipe.set_progress_bar_config(disable=True)
    with tempfile.TemporaryDirectory() as offload_dir:
        _setup(pipe, setting, device, offload_dir)
        stamps = record_step_times(pipe, device)
        ramp = np.linspace(0, 255, args.width, dtype=np.uint8)
        image = PIL.Image.fromarray(np.stack([np.tile(ramp, (args.height, 1))] * 3, -1))
        path = [[args.width * 0.3, args.height * 0.5], [args.width * 0.7, args.height * 0.4]]  # one motion path
        last = None
        if pipe.layout.image_pairs:  # first-last-frame checkpoints need the last frame
            last = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
        _peak_start(device)
        start = time.perf_counter()
        pipe(image, tracks=[path], prompt=args.prompt, negative_prompt="blurry, static", last_image=last,
             num_frames=args.frames, height=args.height, width=args.width, num_inference_steps=args.steps,
             guidance_scale=5.0, generator=torch.Generator().manual_seed(0), output_type="np")
        seconds = time.perf_counter() - start
        peak = _peak_gib(device)
    steps = step_seconds(stamps)
    return dict(setting=setting, s_per_step=statistics.median(steps) if steps else seconds,
                generation_s=seconds, peak_gib=peak, layout=pipe.layout.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local diffusers folder (model_index.json)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--prompt", default="a red car drives to the right along the road")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NEEDS_GPU)
        return 0
    folder = Path(args.model)
    if not (folder / "model_index.json").is_file():
        print(f"gpu_generate: no checkpoint at {str(folder)!r} (expected a local diffusers folder with "
              "model_index.json; see docs/real_checkpoints.md)")
        return 0
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"command: python {' '.join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))}")
    print(f"machine: {name}, torch {torch.__version__}, {args.frames} frames {args.height}x{args.width}, "
          f"{args.steps} steps, guidance 5.0, one motion path")
    print(f"{'setting':<24}{'s/step':>10}{'generation s':>14}{'peak GiB':>10}")
    rows = []
    for setting in args.settings:
        try:
            row = measure(folder, setting, device, args)
        except Exception as error:  # one failing setting (e.g. out of memory) still leaves the others' rows
            row = dict(setting=setting, error=f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
            print(f"{setting:<24}error {row['error']}")
        else:
            peak = "n/a" if row["peak_gib"] is None else f"{row['peak_gib']:.2f}"
            print(f"{setting:<24}{row['s_per_step']:>10.3f}{row['generation_s']:>14.2f}{peak:>10}")
        rows.append(row)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.out is not None:
        from videoai.files import atomic_write

        payload = json.dumps(dict(device=name, args={k: str(v) for k, v in vars(args).items()}, rows=rows), indent=2)
        atomic_write(args.out, lambda temporary: Path(temporary).write_text(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
