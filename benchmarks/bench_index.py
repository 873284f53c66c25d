"""Benchmark `videoai index`: videos/s with --workers 1, --workers 2 and Ray Data on a local 2-CPU cluster.

The catalogue is `--copies` paths (default 40) cycling through the shared real clips (../shared/data/video), made
as symlinks in a temporary folder: each path is its own row and is analysed in full, because hashes are taken in
the workers and only videos already in the table are reused, never twins within one run (see
videoai/understand/index.py). Two resume rows follow: the same paths again (skipped by size and mtime, nothing read)
and 40 new paths to the same bytes (hashed, analysis reused). Scaling efficiency = speed-up over workers 1 / workers.

Run: OMP_NUM_THREADS=1 python benchmarks/bench_index.py [--copies 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from videoai.understand.index import index_videos
from videoai.understand.index_table import rows_close

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "video"


def link_copies(folder: Path, clips: list[Path], copies: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(copies):
        clip = clips[i % len(clips)]
        os.symlink(clip.resolve(), folder / f"{i:03d}-{clip.name}")
    return folder


def same_table(a: Path, b: Path) -> bool:
    """Same rows once paths, mtimes and timings are left out; floats to 1e-5 relative."""
    def strip(path):
        rows = pq.read_table(path).drop_columns(["elapsed_s", "mtime_ns"]).to_pylist()
        return sorted(({**r, "path": Path(r["path"]).name} for r in rows), key=lambda r: r["path"])

    return rows_close(strip(a), strip(b), rel_tol=1e-5, abs_tol=1e-7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    clips = sorted(args.data.glob("*.mp4"))
    if not clips:
        sys.exit(f"no clips in {args.data}: this benchmark needs the shared real clips")
    torch.set_num_threads(1)  # one core per worker in every mode, the in-process baseline included
    work = Path(tempfile.mkdtemp(prefix="bench_index_"))
    try:
        run(work, clips, args.copies)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, clips: list[Path], copies: int) -> None:
    folder = link_copies(work / "videos", clips, copies)
    results = []  # (mode, videos, seconds, note)

    for mode, kwargs in (("workers 1", dict(workers=1)), ("workers 2", dict(workers=2))):
        out = work / f"{mode.replace(' ', '')}.parquet"
        result = index_videos(folder, out, progress=False, **kwargs)
        results.append((mode, result.analysed, result.seconds, out))

    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    ray_start = time.perf_counter() - start
    out = work / "ray.parquet"
    try:
        result = index_videos(folder, out, engine="ray", progress=False)
    finally:
        ray.shutdown()
    results.append(("ray local (2 CPUs)", result.analysed, result.seconds, out))

    baseline = results[0][1] / results[0][2]
    print(f"clips: {', '.join(c.name for c in clips)}; {copies} paths (symlinks), one row each")
    print("| engine | videos | seconds | videos/s | speed-up | scaling efficiency | same table as workers 1 |")
    print("|---|---|---|---|---|---|---|")
    for (mode, videos, seconds, out), parallel in zip(results, (1, 2, 2)):
        speed = videos / seconds
        same = "-" if out == results[0][3] else ("yes" if same_table(results[0][3], out) else "NO")
        print(f"| {mode} | {videos} | {seconds:.1f} | {speed:.3f} | {speed / baseline:.2f}x | "
              f"{speed / baseline / parallel:.0%} | {same} |")
    print(f"(Ray cluster start, not counted above: {ray_start:.1f} s)")

    first = results[0][3]
    rerun = index_videos(folder, first, progress=False)
    twins = link_copies(work / "twins", clips, copies)
    reuse = index_videos(twins, first, progress=False)
    print("\n| resume (workers 1, same table) | paths | analysed | seconds | paths/s |")
    print("|---|---|---|---|---|")
    print(f"| rerun, nothing changed (skipped by size + mtime) | {rerun.skipped} | {rerun.analysed} | "
          f"{rerun.seconds:.2f} | {rerun.skipped / rerun.seconds:.0f} |")
    print(f"| {copies} new paths to indexed bytes (hashed, reused) | {reuse.reused} | {reuse.analysed} | "
          f"{reuse.seconds:.2f} | {reuse.reused / reuse.seconds:.0f} |")
    load = os.getloadavg()
    print(f"\ncommand: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} python benchmarks/bench_index.py "
          f"--copies {copies}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min); Python "
          f"{platform.python_version()}, torch {torch.__version__}, ray {ray.__version__}")


if __name__ == "__main__":
    main()
