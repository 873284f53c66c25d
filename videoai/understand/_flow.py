"""Sparse optical-flow primitives shared by tracking and motion statistics (OpenCV pyramidal Lucas-Kanade).

LK runs on the RGB frames, not on luma: OpenCV sums the structure tensor over channels, and a saturated object on
a background of similar brightness (red on grey) has colour edges that luma would lose.
Pixel convention: (x, y) with pixel centres on integers, as OpenCV and `videoai.tokenize.tracks` use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from videoai.understand._source import FrameSource


@dataclass(frozen=True)
class LKConfig:
    """Pyramidal Lucas-Kanade settings."""

    window: int = 9  # square search window, pixels at each pyramid level
    levels: int = 2  # pyramid levels above the base
    max_iterations: int = 30
    epsilon: float = 0.01  # stop when the update is below this (pixels)
    fb_threshold: float = 1.0  # forward-backward error (pixels) above which a step is rejected


def rgb_frames(source: FrameSource, size, chunk_size: int = 32) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 RGB frames (contiguous numpy), decoded a chunk at a time."""
    for chunk in source.chunks(chunk_size, size):
        yield from np.ascontiguousarray(chunk.frames.cpu().numpy())  # (t, h, w, 3)


def auto_levels(height: int, width: int, coarsest: int = 48) -> int:
    """Pyramid levels whose coarsest image keeps a short side >= `coarsest` px (at most 4).

    Deeper pyramids shrink small objects to a pixel or two, and the coarse estimate then follows the background.
    """
    return int(max(0, min(4, np.floor(np.log2(max(min(height, width), 1) / coarsest)))))


def lk_step(previous, current, points: np.ndarray, config: LKConfig, height: int, width: int):
    """Track (N, 2) float32 points from `previous` to `current` ((H, W, 3) uint8) with a forward-backward check.

    Returns new points (N, 2) float32 and ok (N,) bool: both LK passes converged, the round trip returns within
    `fb_threshold` pixels, and the new point lies inside the frame.
    """
    if points.shape[0] == 0:
        return points.copy(), np.zeros(0, dtype=bool)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, config.max_iterations, config.epsilon)
    window = (config.window, config.window)
    start = points.reshape(-1, 1, 2).astype(np.float32)
    forward, status_forward, _ = cv2.calcOpticalFlowPyrLK(previous, current, start, None, winSize=window,
                                                          maxLevel=config.levels, criteria=criteria)
    backward, status_backward, _ = cv2.calcOpticalFlowPyrLK(current, previous, forward, None, winSize=window,
                                                            maxLevel=config.levels, criteria=criteria)
    forward, backward = forward.reshape(-1, 2), backward.reshape(-1, 2)
    round_trip = np.linalg.norm(backward - points, axis=1)
    x, y = forward[:, 0], forward[:, 1]
    inside = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    ok = (status_forward[:, 0] == 1) & (status_backward[:, 0] == 1) & (round_trip < config.fb_threshold) & inside
    return forward, ok & np.isfinite(forward).all(axis=1)


def grid_points(grid: int, height: int, width: int) -> np.ndarray:
    """(grid*grid, 2) float32 cell centres of a grid x grid lattice over the frame, row-major."""
    xs = (np.arange(grid, dtype=np.float32) + 0.5) * width / grid - 0.5
    ys = (np.arange(grid, dtype=np.float32) + 0.5) * height / grid - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def fit_similarity(source_points: np.ndarray, target_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RANSAC similarity (rotation, uniform scale, translation) -> (2, 3) float64 and inlier mask (N,) bool.

    Falls back to the identity when fewer than 3 correspondences exist or the fit fails (a flat frame).
    """
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    count = source_points.shape[0]
    if count < 3:
        return identity, np.zeros(count, dtype=bool)
    matrix, inliers = cv2.estimateAffinePartial2D(source_points, target_points, method=cv2.RANSAC,
                                                  ransacReprojThreshold=1.0, maxIters=2000, confidence=0.99)
    if matrix is None:
        return identity, np.zeros(count, dtype=bool)
    return matrix.astype(np.float64), inliers[:, 0].astype(bool)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(2, 3) affine applied to (N, 2) points."""
    return points @ matrix[:, :2].T + matrix[:, 2]
