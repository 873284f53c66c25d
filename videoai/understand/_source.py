"""One way in for the classical analysers: a path, a VideoClip or a frames tensor, served in chunks.

A path is decoded chunk by chunk (`iter_video_chunks`, resized inside the decoder), so a long video never sits in
memory whole; in-memory frames are sliced into the same chunks and resized on their own device.
"""

from __future__ import annotations

import math
import numbers
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from videoai.tokenize.video_io import VideoClip, iter_video_chunks, video_info


@dataclass
class FrameSource:
    """Frames to analyse: either a file (decoded lazily) or frames already in memory."""

    num_frames: int
    width: int  # source frame size, before any resize
    height: int
    fps: float | None  # None: in-memory frames with no rate, so times are unknown (NaN)
    duration: float  # seconds to the end of the last frame; NaN when fps is unknown
    path: str | None = None
    frames: torch.Tensor | None = None  # (T, H, W, 3) uint8 when in memory
    timestamps: torch.Tensor | None = None  # (T,) float64 when in memory

    def chunks(self, chunk_size: int = 64, size=None) -> Iterator[VideoClip]:
        """Consecutive VideoClips of at most `chunk_size` frames, resized to `size` (see `resolve_size`).

        A file's next chunk is decoded in a background thread while the caller works on the current one (the
        decoder releases the GIL), so decoding and analysis overlap; at most two chunks are in memory.
        """
        out_h, out_w = resolve_size(size, self.height, self.width)
        if self.path is not None:
            resize = None if (out_h, out_w) == (self.height, self.width) else (out_h, out_w)
            yield from _prefetch(iter_video_chunks(self.path, chunk_size=chunk_size, size=resize))
            return
        for first in range(0, self.num_frames, chunk_size):
            frames = self.frames[first:first + chunk_size]  # (t, H, W, 3)
            if (out_h, out_w) != (self.height, self.width):
                frames = resize_frames(frames, out_h, out_w)
            stop = first + frames.shape[0]
            yield VideoClip(
                frames=frames,
                timestamps=self.timestamps[first:stop],
                indices=torch.arange(first, stop, dtype=torch.int64),
                fps=self.fps if self.fps is not None else math.nan,
                path=None,
            )

    def end_time(self) -> float:
        """Time at which the last frame ends (the end of the last shot)."""
        return self.duration


def _prefetch(chunks: Iterator[VideoClip]) -> Iterator[VideoClip]:
    """Yield from `chunks`, fetching the next item in a worker thread while the current one is used."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, chunks, None)
        while True:
            chunk = pending.result()
            if chunk is None:
                return
            pending = pool.submit(next, chunks, None)
            yield chunk


def open_source(video, *, fps: float | None = None, name: str = "video") -> FrameSource:
    """Validate `video` (path, VideoClip, or (T, H, W, 3) uint8 tensor/ndarray) and describe it."""
    if isinstance(video, (str, os.PathLike)):
        info = video_info(video)  # raises VideoReadError for missing / empty / corrupt files
        return FrameSource(info.num_frames, info.width, info.height, info.fps, info.duration, path=os.fspath(video))
    if isinstance(video, VideoClip):
        frames, timestamps = video.frames, video.timestamps.to(torch.float64).cpu()
        _check_frames(frames, name)
        rate = video.fps if video.fps and math.isfinite(video.fps) and video.fps > 0 else None
        step = 1.0 / rate if rate else float(timestamps[-1] - timestamps[-2]) if len(timestamps) > 1 else math.nan
        return FrameSource(frames.shape[0], frames.shape[2], frames.shape[1], rate,
                           float(timestamps[-1]) + step, frames=frames, timestamps=timestamps)
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(video)
    if isinstance(video, torch.Tensor):
        _check_frames(video, name)
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not fps > 0):
            raise ValueError(f"fps: expected a positive number or None, got {fps!r}")
        num_frames = video.shape[0]
        if fps is None:
            timestamps = torch.full((num_frames,), math.nan, dtype=torch.float64)
            duration = math.nan
        else:
            timestamps = torch.arange(num_frames, dtype=torch.float64) / float(fps)
            duration = num_frames / float(fps)
        return FrameSource(num_frames, video.shape[2], video.shape[1], None if fps is None else float(fps), duration,
                           frames=video, timestamps=timestamps)
    raise TypeError(
        f"{name}: expected a path, a VideoClip or a (T, H, W, 3) uint8 tensor/ndarray, got {type(video).__name__}"
    )


def _check_frames(frames: torch.Tensor, name: str) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name}: expected frames of shape (T, H, W, 3), got {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise TypeError(f"{name}: expected uint8 frames, got {frames.dtype}")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"{name}: expected at least one non-empty frame, got shape {tuple(frames.shape)}")


def resolve_size(size, height: int, width: int) -> tuple[int, int]:
    """size None -> source size; int -> short side (never upscaled, aspect kept); (H, W) -> exactly that."""
    if size is None:
        return height, width
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"size: expected a positive short side, got {size}")
        scale = min(1.0, int(size) / min(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size
    ):
        return int(size[0]), int(size[1])
    raise ValueError(f"size: expected None, a positive int (short side) or (height, width), got {size!r}")


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, height, width, 3) uint8, antialiased bilinear, on the frames' device."""
    x = frames.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def pick_device(frames_device: torch.device | None, device) -> torch.device:
    """Explicit device, else the in-memory frames' device, else CUDA when present."""
    if device is not None:
        return torch.device(device)
    if frames_device is not None:
        return frames_device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_gray(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) float32 luma in [0, 255] (BT.601 weights, as OpenCV)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=frames.device)
    return frames.float() @ weights
