"""Benchmark: separable splat_features vs a naive dense (T, N, H, W) Gaussian splat (the peer), same inputs.

Run: python benchmarks/bench_rasterize.py [--device cuda] [--tracks 100] [--channels 16] [--threads 1]
"""

import argparse
import platform
import sys
import time

import torch

from videoai.tokenize.rasterize import splat_features
from videoai.tokenize.tracks import Tracks


def naive_splat(features, tracks, sigma):
    """Peer: materialise every track's full 2-D Gaussian, (T, N, H, W), then reduce with einsum."""
    channels, height, width = features.shape
    points = tracks.scaled_points(width, height)  # (T, N, 2)
    rows = torch.arange(height, device=features.device, dtype=torch.float32)
    cols = torch.arange(width, device=features.device, dtype=torch.float32)
    dy = rows[None, None, :, None] - points[..., 1, None, None]
    dx = cols[None, None, None, :] - points[..., 0, None, None]
    gauss = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2)) * tracks.visibility[..., None, None]  # (T, N, H, W)
    x0 = points[0, :, 0].round().long().clamp(0, width - 1)
    y0 = points[0, :, 1].round().long().clamp(0, height - 1)
    source = features[:, y0, x0]  # (C, N) nearest sample, cheaper than the library's bilinear one
    total = torch.einsum("tnhw,cn->tchw", gauss, source)
    weight = gauss.sum(1, keepdim=True)
    return total / weight.clamp_min(1e-12), weight.clamp(0, 1)


def timed(fn, device, repeats):
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--frames", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (1: steadier on busy CPUs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    height, width, sigma = 60, 104, 1.0  # Wan latent grid of a 480x832 video
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(args.frames, args.tracks, 2, generator=generator) * torch.tensor([832.0, 480.0])
    tracks = Tracks(points, torch.ones(args.frames, args.tracks, dtype=torch.bool), 832, 480).to(device)
    features = torch.randn(args.channels, height, width, generator=generator).to(device)

    rows = []
    for name, fn in (
        ("splat_features (separable, truncate=3)", lambda: splat_features(features, tracks, sigma)),
        ("splat_features (separable, truncate=None)", lambda: splat_features(features, tracks, sigma, truncate=None)),
        ("naive dense (T,N,H,W) Gaussians [peer]", lambda: naive_splat(features, tracks, sigma)),
    ):
        rows.append((name, timed(fn, device, args.repeats)))
    peer = rows[-1][1]
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, device {device}")
    print(f"T={args.frames} N={args.tracks} C={args.channels} grid={height}x{width} sigma={sigma}")
    print(f"{'method':45s} {'ms':>9s} {'speed-up vs peer':>17s}")
    for name, ms in rows:
        print(f"{name:45s} {ms:9.2f} {peer / ms:16.2f}x")
    ours = splat_features(features, tracks, sigma, truncate=None)[1]
    error = (ours - naive_splat(features, tracks, sigma)[1]).abs().max()
    print(f"max |weights - peer weights| (truncate=None): {error:.2e}")


if __name__ == "__main__":
    main()
