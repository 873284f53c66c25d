"""Benchmark: videoai track_points vs classical OpenCV recipes, on synthetic clips with exact object tracks.

Task: track each object's centroid from frame 0 (moving shapes, some crossing, with and without a panning camera)
and compare with the ground truth over the frames where the centroid is visible. Peers, run in this script:
  OpenCV LK (grey, 21 px, 3 levels) - calcOpticalFlowPyrLK with its default window and levels on luma, same
      forward-backward handling as ours (the textbook KLT recipe);
  Farneback dense flow - cv2.calcOpticalFlowFarneback per frame pair, sampled at the point (bilinear), chained.
Speed: frames/s of the whole call (decode excluded: frames are in memory), and grid tracking (16x16 points) on the
first 120 frames of ../shared/data/video/testvideo.mp4 at 360p, decode included.

Run: python benchmarks/bench_tracking.py [--clips 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from videoai.synthetic import ShapesConfig, make_clip
from videoai.tokenize.video_io import read_video
from videoai.understand.tracking import track_points

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "video"


def opencv_lk_grey(frames: torch.Tensor, points: np.ndarray) -> np.ndarray:
    """Peer: luma LK with OpenCV's default 21x21 window and 3 levels; lost points hold their position."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames.numpy()]
    current = points.astype(np.float32).reshape(-1, 1, 2)
    out = [current.reshape(-1, 2).copy()]
    for previous, frame in zip(grey[:-1], grey[1:]):
        moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, frame, current, None)
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(frame, previous, moved, None)
        ok = (status[:, 0] == 1) & (status_back[:, 0] == 1) & (np.linalg.norm((back - current)[:, 0], axis=1) < 1.0)
        current = np.where(ok[:, None, None], moved, current)
        out.append(current.reshape(-1, 2).copy())
    return np.stack(out)


def farneback(frames: torch.Tensor, points: np.ndarray) -> np.ndarray:
    """Peer: dense Farneback flow per pair, bilinearly sampled at each point and chained."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames.numpy()]
    current = points.astype(np.float32)
    out = [current.copy()]
    for previous, frame in zip(grey[:-1], grey[1:]):
        flow = cv2.calcOpticalFlowFarneback(previous, frame, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # (H, W, 2)
        map_x = current[:, 0].reshape(1, -1).astype(np.float32)
        map_y = current[:, 1].reshape(1, -1).astype(np.float32)
        step = cv2.remap(flow, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]  # (N, 2)
        current = current + step
        out.append(current.copy())
    return np.stack(out)


def ours(frames: torch.Tensor, points: np.ndarray) -> np.ndarray:
    return track_points(frames, points).points.numpy()


def ours_grey(frames: torch.Tensor, points: np.ndarray) -> np.ndarray:
    """Ablation: our settings on luma (three equal channels), to show what colour LK adds."""
    grey = frames.float().mul(torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True).round().to(torch.uint8)
    return track_points(grey.expand(-1, -1, -1, 3).contiguous(), points).points.numpy()


def evaluate(methods, configs, num_clips):
    rows = []
    for config_name, config in configs.items():
        clips = [make_clip(seed, config) for seed in range(num_clips)]
        for name, fn in methods.items():
            errors, seconds, frames = [], 0.0, 0
            for clip in clips:
                start = time.perf_counter()
                predicted = fn(clip.frames, clip.tracks.points[0].numpy())  # (T, N, 2)
                seconds += time.perf_counter() - start
                frames += clip.frames.shape[0]
                error = np.linalg.norm(predicted - clip.tracks.points.numpy(), axis=-1)  # (T, N)
                errors.append(error[clip.tracks.visibility.numpy()])
            errors = np.concatenate(errors)
            rows.append((config_name, name, errors.mean(), np.median(errors), np.percentile(errors, 90),
                         (errors < 1.0).mean(), frames / seconds))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPU cores ({platform.platform()}), "
          f"torch {torch.__version__} "
          f"threads {torch.get_num_threads()}, opencv {cv2.__version__}, load average {os.getloadavg()[0]:.1f}")

    base = dict(num_frames=32, min_objects=2, max_objects=3)
    configs = {
        "128x128 static camera": ShapesConfig(height=128, width=128, **base),
        "128x128 panning camera": ShapesConfig(height=128, width=128, camera_pan=True, **base),
        "256x256 panning camera": ShapesConfig(height=256, width=256, camera_pan=True, max_speed=3.0, **base),
    }
    methods = {
        "videoai track_points (RGB LK, 9 px, auto levels)": ours,
        "videoai settings on luma (ablation)": ours_grey,
        "OpenCV LK grey (21 px, 3 levels)": opencv_lk_grey,
        "OpenCV Farneback dense flow": farneback,
    }
    rows = evaluate(methods, configs, args.clips)
    print(f"\nObject-centroid tracking, {args.clips} clips x 32 frames per setting, 2-3 objects; end-point error "
          "in px over visible ground-truth points")
    print("| clips | method | mean EPE | median | p90 | < 1 px | frames/s |")
    print("|---|---|---|---|---|---|---|")
    for config_name, name, mean, median, p90, within, fps in rows:
        print(f"| {config_name} | {name} | {mean:.3f} | {median:.3f} | {p90:.3f} | {within:.1%} | {fps:.0f} |")
    print("\nPeer mean EPE / videoai mean EPE (> 1: videoai is more accurate):")
    for config_name in configs:
        ours_mean = next(r[2] for r in rows if r[0] == config_name and r[1].startswith("videoai track"))
        ratios = ", ".join(f"{r[1]}: {r[2] / ours_mean:.2f}x" for r in rows if r[0] == config_name
                           and not r[1].startswith("videoai track"))
        print(f"  {config_name}: {ratios}")

    path = DATA / "testvideo.mp4"
    if path.exists():
        small = read_video(path, end=4.0, size=360)  # (120, 360, 640, 3), decoded once: both sides time tracking
        grid = ((np.stack(np.meshgrid(np.arange(16), np.arange(16)), -1).reshape(-1, 2) + 0.5)
                * np.array([small.width / 16, small.height / 16]) - 0.5)
        start = time.perf_counter()
        track_points(small, grid)
        ours_fps = small.num_frames / (time.perf_counter() - start)
        start = time.perf_counter()
        opencv_lk_grey(small.frames, grid)
        peer_fps = small.num_frames / (time.perf_counter() - start)
        start = time.perf_counter()
        whole = track_points(path, grid=16, size=360)
        file_fps = whole.num_frames / (time.perf_counter() - start)
        print(f"\nGrid tracking, 256 points, testvideo.mp4 at 640x360: first {small.num_frames} frames in memory - "
              f"videoai {ours_fps:.0f} frames/s, OpenCV LK grey {peer_fps:.0f} frames/s ({ours_fps / peer_fps:.2f}x); "
              f"whole file from its path (decode + resize included, {whole.num_frames} frames) videoai "
              f"{file_fps:.0f} frames/s")

if __name__ == "__main__":
    main()
