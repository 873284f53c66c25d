"""Benchmark: videoai residual k-means (torch) vs faiss-cpu k-means, per level: fit time and reconstruction MSE.

Run: python benchmarks/bench_residual_kmeans.py   (defaults: 100k x 128 float32, 3 levels x 256 codes, 20 iters,
1 thread for both libraries; pass --threads N on a dedicated machine)
Each level = k-means fit on the current residual + nearest-centroid assignment of all N rows + residual update;
each method follows its own residual chain. Timings are the best of --repeats runs, methods interleaved so that
both see the same machine load. faiss by default trains on a subsample of max_points_per_centroid=256 rows per
centroid (65,536 of 100k here): "faiss full" lifts that cap so it fits the same N rows as torch (the fair peer);
"faiss default" keeps the cap and is shown for reference.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time

import faiss
import numpy as np
import torch

from videoai.tokenize.residual_kmeans import ResidualKMeans, assign, kmeans


def gaussian_mixture(num_rows: int, dim: int, num_components: int, seed: int) -> torch.Tensor:
    """Seeded mixture with skewed weights and per-component scales: (N, D) float32."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_components, dim, generator=g)  # (C, D)
    weights = torch.rand(num_components, generator=g) ** 3 + 0.01  # skewed component sizes
    scales = 0.2 + 0.4 * torch.rand(num_components, generator=g)  # (C,)
    component = torch.multinomial(weights, num_rows, replacement=True, generator=g)  # (N,)
    noise = torch.randn(num_rows, dim, generator=g)
    return (centers[component] + scales[component, None] * noise).contiguous()


def torch_level(residual: torch.Tensor, args, level: int) -> tuple[torch.Tensor, torch.Tensor]:
    centroids = kmeans(residual, args.codebook_size, iters=args.iters, seed=level)  # (K, D)
    return residual - centroids[assign(residual, centroids)], centroids


def faiss_level(residual: torch.Tensor, args, level: int, full: bool) -> tuple[torch.Tensor, np.ndarray]:
    data = residual.numpy()
    cap = -(-data.shape[0] // args.codebook_size) if full else 256  # full: no subsampling
    km = faiss.Kmeans(data.shape[1], args.codebook_size, niter=args.iters, seed=1234 + level,
                      max_points_per_centroid=cap, verbose=False)
    km.train(data)
    _, labels = km.index.search(data, 1)  # (N, 1)
    return torch.from_numpy(data - km.centroids[labels[:, 0]]), km.centroids


def run_chain(method, x: torch.Tensor, args) -> tuple[list[float], list[float], list[float]]:
    """Per-level wall seconds, process CPU seconds (all threads) and reconstruction MSE after each level."""
    residual, wall, cpu, mse = x, [], [], []
    for level in range(args.levels):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        residual, _ = method(residual, args, level)
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
        mse.append(float(residual.square().mean()))
    return wall, cpu, mse


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    # One thread by default: on a shared machine, multi-threaded OpenMP timings mostly measure the neighbours.
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for both torch and faiss")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    x = gaussian_mixture(args.num_rows, args.dim, 1000, seed=0)

    methods = {
        "torch": torch_level,
        "faiss full": functools.partial(faiss_level, full=True),
        "faiss default": functools.partial(faiss_level, full=False),
    }
    wall = {name: [float("inf")] * args.levels for name in methods}
    cpu = {name: [float("inf")] * args.levels for name in methods}
    mse = {}
    load_before = os.getloadavg()
    for _ in range(args.repeats):
        for name, method in methods.items():  # interleaved: every method sees similar machine load
            seconds, cpu_seconds, mse[name] = run_chain(method, x, args)
            wall[name] = [min(b, s) for b, s in zip(wall[name], seconds, strict=False)]
            cpu[name] = [min(b, s) for b, s in zip(cpu[name], cpu_seconds, strict=False)]
    start = time.perf_counter()
    model = ResidualKMeans(args.levels, args.codebook_size, iters=args.iters).fit(x)
    fit_seconds = time.perf_counter() - start
    model_mse = model.quantization_error(x).tolist()
    load_after = os.getloadavg()

    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical cores, {args.threads} thread(s) for torch and faiss; "
          f"load avg {load_before[0]:.1f} before / {load_after[0]:.1f} after")
    print(f"versions: torch {torch.__version__}, faiss {faiss.__version__}, python {platform.python_version()}")
    print(f"data: Gaussian mixture {args.num_rows} x {args.dim} float32 (1000 components, seed 0); "
          f"{args.levels} levels x {args.codebook_size} codes, {args.iters} iterations each; best of {args.repeats}")
    print("faiss default trains on min(N, 256 * K) = "
          f"{min(args.num_rows, 256 * args.codebook_size)} sampled rows per level; torch and faiss full use all N")
    print("wall = elapsed seconds; cpu = process CPU seconds over all threads (robust to time-slicing on a shared "
          "machine, but it also counts OpenMP spin-waiting when threads > 1)")
    print()
    rows = [(str(level + 1), level) for level in range(args.levels)] + [("total", None)]
    header = (f"{'level':>5} | {'torch wall':>10} | {'faiss full wall':>15} | {'ratio':>6} | {'torch cpu':>9} | "
              f"{'faiss full cpu':>14} | {'ratio':>6} | {'faiss dflt wall':>15} | {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for label, level in rows:
        def pick(values: list[float], level: int | None = level) -> float:
            return values[level] if level is not None else sum(values)

        tw, fw, dw = pick(wall["torch"]), pick(wall["faiss full"]), pick(wall["faiss default"])
        tc, fc = pick(cpu["torch"]), pick(cpu["faiss full"])
        print(f"{label:>5} | {tw:10.2f} | {fw:15.2f} | {tw / fw:5.2f}x | {tc:9.2f} | {fc:14.2f} | {tc / fc:5.2f}x | "
              f"{dw:15.2f} | {tw / dw:5.2f}x")
    print()
    header = f"{'level':>5} | {'torch MSE':>9} | {'faiss full MSE':>14} | {'ratio':>6} | {'faiss dflt MSE':>14}"
    print(header)
    print("-" * len(header))
    for level in range(args.levels):
        t, f, d = mse["torch"][level], mse["faiss full"][level], mse["faiss default"][level]
        print(f"{level + 1:>5} | {t:9.4f} | {f:14.4f} | {t / f:5.3f}x | {d:14.4f}")
    print()
    print(f"ratio = torch / faiss (goal <= 1.00x for time and MSE). data variance (MSE of the zero code): "
          f"{float(x.var(0, unbiased=False).mean()):.4f}")
    print(f"ResidualKMeans.fit end to end (one run, wall): {fit_seconds:.2f} s vs faiss full chain "
          f"{sum(wall['faiss full']):.2f} s -> {fit_seconds / sum(wall['faiss full']):.2f}x; "
          f"quantization_error per level: {', '.join(f'{e:.4f}' for e in model_mse)}")


if __name__ == "__main__":
    main()
