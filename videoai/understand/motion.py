"""Per-shot motion: camera pan / zoom / rotation from global similarity fits, and object motion left over after them.

For each frame pair a grid of points is re-seeded on the earlier frame and tracked to the later one (pyramidal LK
with a forward-backward check, `_flow.lk_step`). A RANSAC similarity fit on those correspondences is the camera
step; the residual flow r = p1 - A(p0) of each point is what objects add. A point moves when |r| exceeds
`moving_threshold`. Pairs across a shot boundary are left out.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from videoai.understand._flow import (LKConfig, apply_affine, auto_levels, fit_similarity, grid_points, lk_step,
                                     rgb_frames)
from videoai.understand._source import open_source, resolve_size
from videoai.understand.shots import Shot, check_shots, detect_shots

__all__ = ["ShotMotion", "motion_stats", "camera_motion"]


@dataclass(frozen=True)
class ShotMotion:
    """Motion summary of one shot; pixels are source-frame pixels, rates are per frame.

    pan is the image translation of the background at the frame centre (a camera panning right moves the image
    left: dx < 0). zoom is the scale change per frame (> 1 zooms in). A one-frame shot has no motion (zeros, 1).
    """

    shot: Shot
    pan: tuple[float, float]  # mean (dx, dy) px/frame
    zoom: float  # geometric mean scale per frame
    rotation: float  # mean degrees per frame, clockwise in image axes (y down)
    object_speed: float  # mean |residual flow| of moving points, px/frame (0 when nothing moves)
    object_direction: float | None  # degrees of the summed residual of moving points: 0 right, 90 down; None if still
    moving_fraction: float  # share of tracked points that move after camera compensation


@dataclass
class _PairMotion:
    """Per frame pair t -> t+1 arrays, (T-1, ...)."""

    steps: np.ndarray  # (T-1, 2, 3) similarity, pixels of the analysis size
    moving_count: np.ndarray  # (T-1,) points moving after compensation
    tracked_count: np.ndarray  # (T-1,) points tracked (passed the forward-backward check)
    residual_sum: np.ndarray  # (T-1, 2) summed residual vectors of moving points
    speed_sum: np.ndarray  # (T-1,) summed residual magnitudes of moving points


def _pair_motion(source, size, grid: int, config: LKConfig, moving_threshold: float) -> _PairMotion:
    height, width = resolve_size(size, source.height, source.width)
    seeds = grid_points(grid, height, width)  # (G, 2)
    count = max(source.num_frames - 1, 0)
    motion = _PairMotion(np.tile(np.eye(3)[:2], (count, 1, 1)), np.zeros(count), np.zeros(count),
                         np.zeros((count, 2)), np.zeros(count))
    previous = None
    for t, frame in enumerate(rgb_frames(source, size)):
        if previous is not None:
            targets, ok = lk_step(previous, frame, seeds, config, height, width)
            start, end = seeds[ok], targets[ok]
            step, _ = fit_similarity(start, end)
            residual = end - apply_affine(step, start)  # (n, 2)
            magnitude = np.linalg.norm(residual, axis=1)
            moving = magnitude > moving_threshold
            motion.steps[t - 1] = step
            motion.tracked_count[t - 1] = ok.sum()
            motion.moving_count[t - 1] = moving.sum()
            motion.residual_sum[t - 1] = residual[moving].sum(0)
            motion.speed_sum[t - 1] = magnitude[moving].sum()
        previous = frame
    return motion


def _check_grid(grid) -> None:
    if isinstance(grid, bool) or not isinstance(grid, numbers.Integral) or grid < 2:
        raise ValueError(f"grid: expected an int >= 2, got {grid!r}")


def camera_motion(video, *, size=256, grid: int = 16, fps: float | None = None) -> torch.Tensor:
    """(T, 2, 3) float64 similarity from frame t-1 to frame t in source pixels (identity at t = 0)."""
    _check_grid(grid)
    source = open_source(video, fps=fps)
    height, width = resolve_size(size, source.height, source.width)
    motion = _pair_motion(source, size, grid, LKConfig(levels=auto_levels(height, width)), math.inf)
    steps = np.concatenate([np.eye(3)[None, :2], motion.steps])  # (T, 2, 3)
    # Conjugate by the pixel-centre rescale x' = (x + 0.5) * s - 0.5 so the maps act on source pixels.
    scale = np.array([width / source.width, height / source.height])
    steps[:, :, 2] = (steps[:, :, :2] @ (scale * 0.5 - 0.5) + steps[:, :, 2] + 0.5 - 0.5 * scale) / scale
    steps[:, :, :2] = steps[:, :, :2] * scale[None, None, :] / scale[None, :, None]
    return torch.from_numpy(steps)


def _summarise(shot: Shot, motion: _PairMotion, centre: np.ndarray, to_source: float) -> ShotMotion:
    pairs = slice(shot.start_frame, shot.end_frame - 1)  # pair t joins frames t and t+1, both inside the shot
    steps = motion.steps[pairs]  # (P, 2, 3)
    if steps.shape[0] == 0:
        return ShotMotion(shot, (0.0, 0.0), 1.0, 0.0, 0.0, None, 0.0)
    pan = (np.einsum("pij,j->pi", steps[:, :, :2], centre) + steps[:, :, 2] - centre).mean(0) * to_source
    scales = np.sqrt(np.abs(np.linalg.det(steps[:, :, :2])))  # (P,)
    zoom = float(np.exp(np.log(np.clip(scales, 1e-6, None)).mean()))
    rotation = float(np.degrees(np.arctan2(steps[:, 1, 0], steps[:, 0, 0])).mean())
    moving = motion.moving_count[pairs].sum()
    tracked = motion.tracked_count[pairs].sum()
    speed = float(motion.speed_sum[pairs].sum() / moving * to_source) if moving else 0.0
    direction = None
    if moving:
        dx, dy = motion.residual_sum[pairs].sum(0)
        direction = float(np.degrees(np.arctan2(dy, dx)) % 360.0)
    return ShotMotion(shot, (float(pan[0]), float(pan[1])), zoom, rotation, speed, direction,
                      float(moving / tracked) if tracked else 0.0)


def motion_stats(
    video,
    shots: list[Shot] | None = None,
    *,
    size=256,
    grid: int = 32,
    moving_threshold: float = 0.5,
    fps: float | None = None,
) -> list[ShotMotion]:
    """Camera and object motion of each shot (shots from `detect_shots` when None).

    Args:
        size: short side analysed at (never upscaled); figures are converted back to source pixels.
        grid: grid x grid points tracked per frame pair.
        moving_threshold: residual flow (px at the analysis size) above which a point counts as moving.
    """
    _check_grid(grid)
    if isinstance(moving_threshold, bool) or not isinstance(moving_threshold, numbers.Real) or moving_threshold < 0:
        raise ValueError(f"moving_threshold: expected a number >= 0, got {moving_threshold!r}")
    source = open_source(video, fps=fps)
    shots = detect_shots(video, fps=fps) if shots is None else check_shots(shots, source.num_frames)
    height, width = resolve_size(size, source.height, source.width)
    motion = _pair_motion(source, size, int(grid), LKConfig(levels=auto_levels(height, width)), float(moving_threshold))
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    to_source = source.width / width  # same ratio both ways up to rounding of the resized side
    return [_summarise(shot, motion, centre, to_source) for shot in shots]
