"""Benchmark: read_video vs raw decord (VideoReader + get_batch, the peer it wraps) and PyAV sequential decode.

Cases on <repo>/../shared/data/video/testvideo.mp4 (1280x720, 720 frames): 16 uniform frames, and a full decode.
Methods run round-robin inside each repeat so a busy machine slows them alike; the table shows medians.
Run: python benchmarks/bench_video_io.py [--repeats 5] [--full-repeats 3] [--video PATH]
"""

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import av
import decord
import numpy as np
import torch

from videoai.tokenize.video_io import iter_video_chunks, read_video, video_info

DEFAULT_VIDEO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "video" / "testvideo.mp4"


def uniform_indices(num_source: int, num_frames: int) -> list[int]:
    """The indices read_video picks: evenly spread, ends included, round half up."""
    return [(2 * k * (num_source - 1) + num_frames - 1) // (2 * (num_frames - 1)) for k in range(num_frames)]


def raw_decord(path: str, indices: list[int]):
    return decord.VideoReader(path, ctx=decord.cpu(0)).get_batch(indices)  # decord NDArray (T, H, W, 3)


def pyav_sequential(path: str, indices: list[int]) -> np.ndarray:
    """Decode forward from the start, keeping the wanted frames as RGB: the plain PyAV way."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        wanted = sorted(set(indices))
        out = np.empty((len(wanted), stream.codec_context.height, stream.codec_context.width, 3), np.uint8)
        filled = 0
        for position, frame in enumerate(container.decode(stream)):
            if position == wanted[filled]:
                out[filled] = frame.to_ndarray(format="rgb24")
                filled += 1
                if filled == len(wanted):
                    break
    return out


def chunks_pass(path: str) -> int:
    return sum(chunk.num_frames for chunk in iter_video_chunks(path, chunk_size=64))


def measure(methods: dict, repeats: int, warm_up: bool = True) -> dict[str, list[tuple[float, float]]]:
    """(wall s, process CPU s) per run; CPU time counts decoder threads and is steadier on a shared machine."""
    times = {name: [] for name in methods}
    for name, fn in methods.items():  # page cache, lazy library init
        if warm_up:
            fn()
            gc.collect()
    for _ in range(repeats):
        for name, fn in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
            del result
            gc.collect()  # full decodes are ~2 GB: free one before the next
    return times


def print_table(title: str, times: dict[str, list[tuple[float, float]]], ours: str) -> None:
    wall = {name: statistics.median(w for w, _ in runs) for name, runs in times.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in times.items()}
    print(f"\n{title}")
    print("| method | median wall s | min wall s | median CPU s | runs | read_video / method, wall | CPU |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in times.items():
        print(
            f"| {name} | {wall[name]:.3f} | {min(w for w, _ in runs):.3f} | {cpu[name]:.3f} | {len(runs)} | "
            f"{wall[ours] / wall[name]:.2f}x | {cpu[ours] / cpu[name]:.2f}x |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each method, sampled case")
    parser.add_argument("--full-repeats", type=int, default=3, help="timed runs of each method, full decode")
    parser.add_argument("--num-frames", type=int, default=16)
    args = parser.parse_args()
    path = str(args.video.resolve())
    if not os.path.isfile(path):
        sys.exit(f"video not found: {path} (the shared data folder is <repo>/../shared/data)")

    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average at start {os.getloadavg()[0]:.1f}; python {platform.python_version()}, "
        f"torch {torch.__version__}, decord {decord.__version__}, av {av.__version__}"
    )
    num_source = len(decord.VideoReader(path))
    keyframes = len(decord.VideoReader(path).get_key_indices())
    print(f"video: {Path(path).name}, {num_source} frames, {keyframes} keyframes")
    began = time.perf_counter()

    # What read_video adds before decoding (video_info does the same opening): PyAV probe + decord index +
    # timestamps, vs opening decord alone.
    opening = measure(
        {
            "video_info (read_video's opening)": lambda: video_info(path),
            "decord VideoReader()": lambda: decord.VideoReader(path, ctx=decord.cpu(0)),
        },
        20,
    )
    print_table("opening cost, 20 runs each", opening, "video_info (read_video's opening)")

    sample = uniform_indices(num_source, args.num_frames)
    assert read_video(path, num_frames=args.num_frames).indices.tolist() == sample
    ours = f"read_video(num_frames={args.num_frames})"
    uniform = measure(
        {
            ours: lambda: read_video(path, num_frames=args.num_frames),
            "decord VideoReader+get_batch": lambda: raw_decord(path, sample),
            "PyAV sequential decode": lambda: pyav_sequential(path, sample),
        },
        args.repeats,
    )
    print_table(f"{args.num_frames} uniform frames of {num_source}, {args.repeats} runs each", uniform, ours)

    everything = list(range(num_source))
    full = measure(
        {
            "read_video()": lambda: read_video(path),
            "decord VideoReader+get_batch": lambda: raw_decord(path, everything),
            "PyAV sequential decode": lambda: pyav_sequential(path, everything),
            "iter_video_chunks(64), streamed": lambda: chunks_pass(path),
        },
        args.full_repeats,
        warm_up=False,  # the sampled case warmed everything; a full decode is long enough to time cold
    )
    print_table(f"full decode, {num_source} frames, {args.full_repeats} runs each", full, "read_video()")
    print(f"\ntotal benchmark time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
