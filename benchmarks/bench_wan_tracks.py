"""Tracks vs no tracks on a tiny Wan 2.1 I2V layout: step time, generation time, peak memory and their ratios.

    python benchmarks/bench_wan_tracks.py [--steps 10 --repeats 3 --size 128 --frames 17 --threads 1]

Peer run in the same script: the same pipeline, image, prompt, negative prompt, guidance 5.0 and seed with the
tracks withheld (guidance runs in both, so each step makes the same transformer calls). Tracks change the condition
once before the loop; the goal is <= 1.10x. The checkpoint is the tests' Wan 2.1 layout (UMT5 + CLIP + UniPC) with a
larger transformer (4 blocks, dim 128) so timings are not all overhead. Step time: median time between consecutive
scheduler steps; generation: median wall time of the whole call; peak memory: CUDA allocator peak, or on CPU the
peak of torch's allocations recorded by the profiler, above the starting level.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import WanTransformer3DModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "generate"))
from _wan_timing import peak_memory_mib, record_step_times, step_seconds  # noqa: E402
from wan_layouts import CLIP_DIM, TEXT_DIM, image_encoder, scheduler, text_encoder, tokenizer, vae  # noqa: E402

from videoai.generate import TrajectoryImageToVideoPipeline  # noqa: E402


def build_pipeline(seed: int = 0) -> TrajectoryImageToVideoPipeline:
    """The Wan 2.1 I2V layout of the tests with a 4-block, dim-128 transformer."""
    torch.manual_seed(seed)
    clip, processor = image_encoder()
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32,
                                        in_channels=12, out_channels=4, text_dim=TEXT_DIM, freq_dim=64, ffn_dim=512,
                                        num_layers=4, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        image_dim=CLIP_DIM, added_kv_proj_dim=128, rope_max_seq_len=64)
    pipe = TrajectoryImageToVideoPipeline(vae=vae(4), transformer=transformer, scheduler=scheduler(),
                                          tokenizer=tokenizer(), text_encoder=text_encoder(), image_encoder=clip,
                                          image_processor=processor)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipe = build_pipeline().to(device)
    size = args.size
    image = PIL.Image.fromarray(np.random.RandomState(0).randint(0, 256, (size, size, 3), dtype=np.uint8))
    tracks = [[[0.2 * size, 0.3 * size], [0.7 * size, 0.4 * size]], [[0.5 * size, 0.8 * size], [0.5 * size, 0.2 * size]],
              [[0.8 * size, 0.8 * size]]]  # two moving paths and one held point, in image pixels
    stamps = record_step_times(pipe, device)
    runs = {"no tracks": {}, "tracks (videoai)": dict(tracks=tracks, track_conditioning="videoai"),
            "tracks (wan-move)": dict(tracks=tracks, track_conditioning="wan-move")}

    def generate(kwargs):
        return pipe(image, prompt="a red car drives left", negative_prompt="blurry static", guidance_scale=5.0,
                    num_frames=args.frames, height=size, width=size, num_inference_steps=args.steps,
                    generator=torch.Generator().manual_seed(0), output_type="np", max_sequence_length=16, **kwargs)

    times = {name: [] for name in runs}
    steps = {name: [] for name in runs}
    for name, kwargs in runs.items():  # warm-up
        generate(kwargs)
    for _ in range(args.repeats):  # interleaved, so load on the shared machine hits every run alike
        for name, kwargs in runs.items():
            stamps.clear()
            start = time.perf_counter()
            generate(kwargs)
            times[name].append(time.perf_counter() - start)
            steps[name] += step_seconds(stamps)
    memory = {name: peak_memory_mib(lambda kwargs=kwargs: generate(kwargs), device) for name, kwargs in runs.items()}

    command = "python benchmarks/bench_wan_tracks.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = (torch.cuda.get_device_name() if device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, {args.threads} thread(s)")
    print(f"command: {command.strip()}\nmachine: {machine}, torch {torch.__version__}")
    print(f"{args.frames} frames {size}x{size}, {args.steps} steps, guidance 5.0, {args.repeats} repeats (medians)")
    base = "no tracks"
    print("| run | step ms | x | generation s | x | peak MiB | x |\n|---|---|---|---|---|---|---|")
    for name in runs:
        step_ms = statistics.median(steps[name]) * 1e3
        gen_s = statistics.median(times[name])
        print(f"| {name} | {step_ms:.1f} | {step_ms / (statistics.median(steps[base]) * 1e3):.3f} | {gen_s:.3f} | "
              f"{gen_s / statistics.median(times[base]):.3f} | {memory[name]:.1f} | {memory[name] / memory[base]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
