"""Outputs: pipeline frames -> uint8 video, mp4/gif export, and an overlay video that draws the requested tracks."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import PIL.Image
import torch

from videoai.tokenize.tracks import Tracks
from videoai.tokenize.video_io import write_video

_PALETTE = np.array([(255, 255, 255), (255, 64, 64), (64, 255, 64), (64, 128, 255), (255, 220, 0), (255, 0, 255),
                     (0, 255, 255), (255, 128, 0)], dtype=np.int64)


def to_uint8_video(frames: Any) -> np.ndarray:
    """One video from a pipeline output (list of PIL images, (T, H, W, 3) float [0, 1] array, (T, 3, H, W) float
    tensor in [0, 1], or uint8 (T, H, W, 3)) -> (T, H, W, 3) uint8 ndarray."""
    if isinstance(frames, (list, tuple)) and frames and isinstance(frames[0], PIL.Image.Image):
        return np.stack([np.asarray(frame.convert("RGB")) for frame in frames])
    if isinstance(frames, torch.Tensor):
        if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
            frames = frames.permute(0, 2, 3, 1)  # (T, 3, H, W) -> (T, H, W, 3)
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be one video (T, H, W, 3) / (T, 3, H, W) or a list of PIL images, got "
                         f"{getattr(frames, 'shape', type(frames).__name__)}")
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def draw_tracks(frames: Any, tracks: Tracks, radius: int | None = None, thickness: int = 1) -> np.ndarray:
    """Draw each track's path so far (polyline) and its current point (circle) on every frame -> (T, H, W, 3) uint8.

    Static tracks (anchors) are drawn as a square; invisible points are skipped.
    """
    video = to_uint8_video(frames).copy()
    num_frames, height, width = video.shape[:3]
    if not isinstance(tracks, Tracks):
        raise TypeError(f"tracks must be a Tracks, got {type(tracks).__name__}")
    if tracks.num_frames != num_frames:
        raise ValueError(f"tracks has {tracks.num_frames} frames but the video has {num_frames}")
    points = tracks.scaled_points(width, height).cpu().numpy()  # (T, N, 2)
    visible = tracks.visibility.cpu().numpy()  # (T, N)
    static = np.abs(points - points[:1]).max(axis=(0, 2)) < 0.5  # (N,)
    radius = radius or max(1, min(height, width) // 40)
    shift = 4  # cv2 sub-pixel drawing: coordinates in 1/16 pixel
    fixed = np.round(points * (1 << shift)).astype(np.int32)  # (T, N, 2)
    # cv2 draws one primitive per call; the loop is over tracks and frames of a tiny annotation, not pixels.
    for t in range(num_frames):
        canvas = video[t]
        for n in range(tracks.num_tracks):
            color = tuple(int(c) for c in _PALETTE[n % len(_PALETTE)])
            path = fixed[: t + 1, n][visible[: t + 1, n]]
            if len(path) > 1 and not static[n]:
                cv2.polylines(canvas, [path.reshape(-1, 1, 2)], False, color, thickness, cv2.LINE_AA, shift)
            if visible[t, n]:
                x, y = fixed[t, n]
                if static[n]:
                    size = radius << shift
                    cv2.rectangle(canvas, (x - size, y - size), (x + size, y + size), color, thickness, cv2.LINE_AA,
                                  shift)
                else:
                    cv2.circle(canvas, (int(x), int(y)), radius << shift, color, thickness, cv2.LINE_AA, shift)
    return video


def export_video(frames: Any, path: str, fps: float = 8.0) -> None:
    """Write one generated video (any pipeline output type) to .mp4 or .gif."""
    write_video(to_uint8_video(frames), str(path), fps)


def export_overlay(frames: Any, tracks: Tracks, path: str, fps: float = 8.0, scale: int = 1) -> None:
    """Write the video with `tracks` drawn over it (upscaled by `scale` first, for small videos)."""
    video = to_uint8_video(frames)
    if scale > 1:
        video = np.repeat(np.repeat(video, scale, axis=1), scale, axis=2)
    write_video(draw_tracks(video, tracks), str(path), fps)
