"""Point tracks from video: pyramidal Lucas-Kanade with a forward-backward check, optional camera compensation.

All points move together in one `cv2.calcOpticalFlowPyrLK` call per frame pair (the loop over frames is inherent
to tracking; OpenCV's Python binding cannot take prebuilt pyramids, so each call builds its own). A point becomes
invisible when LK fails, the round trip misses by more than `fb_threshold` px, or it leaves the frame; with
`sticky=True` (default) it stays invisible afterwards, since a re-found point may sit on another surface. Its
position keeps following LK's estimate either way, so tracks stay continuous.

Camera compensation fits a similarity (RANSAC, `cv2.estimateAffinePartial2D`) per frame pair on an auxiliary grid
re-seeded every frame, chains the fits into frame-0-to-frame-t transforms and maps every tracked point back through
the inverse: a point fixed to the background then stays put, and what remains is the object's own motion.
"""

from __future__ import annotations

import numbers

import cv2
import numpy as np
import torch

from videoai.tokenize.tracks import Tracks
from videoai.understand._flow import LKConfig, auto_levels, fit_similarity, grid_points, lk_step, rgb_frames
from videoai.understand._source import open_source, resolve_size

__all__ = ["track_points", "sample_tracks"]

_CAMERA_GRID = 16  # auxiliary points per side for the per-pair camera fit


def _initial_points(points, grid: int, first: np.ndarray, source, scale: np.ndarray) -> np.ndarray:
    """User points (original pixels) / "grid" / "features" -> (N, 2) float32 in processing pixels."""
    height, width = first.shape[:2]
    if points is None or (isinstance(points, str) and points == "grid"):
        return grid_points(grid, height, width)
    if isinstance(points, str):
        if points != "features":
            raise ValueError(f"points: expected an (N, 2) array, 'grid', 'features' or None, got {points!r}")
        grey = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY)
        corners = cv2.goodFeaturesToTrack(grey, maxCorners=grid * grid, qualityLevel=0.01,
                                          minDistance=max(2.0, min(height, width) / (2.0 * grid)), blockSize=5)
        if corners is None:
            raise ValueError("points='features': no corner found in frame 0 (a flat frame?); pass points or 'grid'")
        return corners.reshape(-1, 2).astype(np.float32)
    given = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if given.dtype == bool or not np.issubdtype(given.dtype, np.number):
        raise TypeError(f"points: expected numbers (N, 2) pixel (x, y), got dtype {given.dtype}")
    if given.ndim != 2 or given.shape[1] != 2 or given.shape[0] == 0:
        raise ValueError(f"points: expected shape (N, 2) with N >= 1, got {tuple(given.shape)}")
    if not np.isfinite(given).all():
        raise ValueError("points: expected finite coordinates, got NaN or inf")
    x, y = given[:, 0], given[:, 1]
    outside = (x < -0.5) | (x > source.width - 0.5) | (y < -0.5) | (y > source.height - 0.5)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"points: point {index} at ({x[index]:.2f}, {y[index]:.2f}) lies outside the {source.width}x"
            f"{source.height} frame [-0.5, {source.width - 0.5}] x [-0.5, {source.height - 0.5}]"
        )
    return ((given + 0.5) * scale - 0.5).astype(np.float32)  # original -> processing pixels


def track_points(
    video,
    points=None,
    *,
    grid: int = 16,
    size=None,
    window: int = 9,
    levels: int | None = None,
    fb_threshold: float = 1.0,
    sticky: bool = True,
    remove_camera_motion: bool = False,
    fps: float | None = None,
) -> Tracks:
    """Track points from frame 0 through the video -> `Tracks` in pixels of the source frame size.

    Args:
        video: path, `VideoClip` or (T, H, W, 3) uint8 tensor/ndarray.
        points: (N, 2) pixel (x, y) in frame 0 (inside the frame), "grid"/None (grid x grid cell centres) or
            "features" (up to grid*grid corners from cv2.goodFeaturesToTrack).
        size: short side to track at (None: full resolution); results are scaled back to the source size.
        window: LK window, px at the tracking size; a small window follows small objects instead of the
            background around them (9 px: < 1 px mean error on benchmarks/bench_tracking.py's shapes).
        levels: pyramid levels; None picks as many as keep the coarsest level's short side >= 48 px.
        fb_threshold: forward-backward round-trip error (px at the tracking size) that marks a point lost.
        remove_camera_motion: express every point in frame 0's camera coordinates (background stays still).
    """
    for name, value, low in (("grid", grid, 1), ("window", window, 3), ("levels", 0 if levels is None else levels, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    if isinstance(fb_threshold, bool) or not isinstance(fb_threshold, numbers.Real) or not fb_threshold > 0:
        raise ValueError(f"fb_threshold: expected a positive number, got {fb_threshold!r}")
    source = open_source(video, fps=fps)
    height, width = resolve_size(size, source.height, source.width)
    scale = np.array([width / source.width, height / source.height], dtype=np.float64)
    levels = auto_levels(height, width) if levels is None else int(levels)
    config = LKConfig(window=int(window), levels=levels, fb_threshold=float(fb_threshold))

    frames = rgb_frames(source, size)
    first = next(frames)
    current = _initial_points(points, int(grid), first, source, scale)  # (N, 2) processing pixels
    num_points = current.shape[0]
    positions = np.empty((source.num_frames, num_points, 2), dtype=np.float32)  # (T, N, 2)
    visible = np.empty((source.num_frames, num_points), dtype=bool)  # (T, N)
    positions[0], visible[0] = current, True
    camera_grid = grid_points(_CAMERA_GRID, height, width)
    to_frame0 = np.eye(3)  # maps frame-t pixels back to frame 0's camera pixels
    compensate = np.zeros((source.num_frames, 2, 3))
    compensate[0] = to_frame0[:2]

    previous_frame, alive = first, np.ones(num_points, dtype=bool)
    for t, frame in enumerate(frames, start=1):
        moved, ok = lk_step(previous_frame, frame, current, config, height, width)
        current = np.where(ok[:, None], moved, current)  # LK's estimate where it converged, else hold
        alive = alive & ok if sticky else ok
        positions[t], visible[t] = current, alive
        if remove_camera_motion:
            targets, found = lk_step(previous_frame, frame, camera_grid, config, height, width)
            step, _ = fit_similarity(camera_grid[found], targets[found])  # frame t-1 -> frame t
            to_frame0 = to_frame0 @ np.linalg.inv(np.vstack([step, [0.0, 0.0, 1.0]]))
            compensate[t] = to_frame0[:2]
        previous_frame = frame

    if remove_camera_motion:  # (T, N, 2) through each frame's (2, 3) map, all at once
        positions = (np.einsum("tij,tnj->tni", compensate[:, :, :2], positions) + compensate[:, None, :, 2])
    points_out = (torch.from_numpy(positions.astype(np.float32)) + 0.5) / torch.from_numpy(scale).float() - 0.5
    return Tracks(points_out, torch.from_numpy(visible), source.width, source.height)


def track_motion(tracks: Tracks) -> torch.Tensor:
    """(N,) path length of each track in pixels, summed over steps where both ends are visible."""
    steps = (tracks.points[1:] - tracks.points[:-1]).norm(dim=-1)  # (T-1, N)
    both = tracks.visibility[1:] & tracks.visibility[:-1]
    return (steps * both).sum(0)


def sample_tracks(
    tracks: Tracks,
    num: int,
    weight_by_motion: bool = True,
    generator: torch.Generator | None = None,
    *,
    static_weight: float = 0.1,
) -> Tracks:
    """Draw `num` distinct tracks, favouring moving ones; tracks never visible are never drawn.

    With weight_by_motion, track i is drawn with probability proportional to its visible path length plus
    `static_weight` times the mean path length (so still tracks keep a small chance); else uniformly.
    """
    if not isinstance(tracks, Tracks):
        raise TypeError(f"tracks: expected a Tracks, got {type(tracks).__name__}")
    if isinstance(num, bool) or not isinstance(num, numbers.Integral) or num < 1:
        raise ValueError(f"num: expected an int >= 1, got {num!r}")
    if isinstance(static_weight, bool) or not isinstance(static_weight, numbers.Real) or static_weight < 0:
        raise ValueError(f"static_weight: expected a number >= 0, got {static_weight!r}")
    seen = tracks.visibility.any(0).cpu()  # (N,)
    available = int(seen.sum())
    if num > available:
        raise ValueError(f"num: asked for {num} tracks but only {available} of {tracks.num_tracks} are ever visible")
    if weight_by_motion:
        motion = track_motion(tracks).float().cpu()
        weights = motion + float(static_weight) * motion[seen].mean() + 1e-6
    else:
        weights = torch.ones(tracks.num_tracks)
    weights = weights * seen
    chosen = torch.multinomial(weights, int(num), replacement=False, generator=generator).to(tracks.device)
    return Tracks(tracks.points[:, chosen], tracks.visibility[:, chosen], tracks.width, tracks.height)
