"""One way in for the learned taggers: a path, a VideoClip or frames, sampled to a fixed number of frames."""

from __future__ import annotations

import numbers
import os

import numpy as np
import torch
import torch.nn.functional as F

from videoai.tokenize.video_io import VideoClip, read_video


def uniform_indices(total: int, num_frames: int, device=None) -> torch.Tensor:
    """`num_frames` indices evenly spread over [0, total), first and last included (1 -> the middle), as read_video."""
    if num_frames == 1:
        return torch.tensor([(total - 1) // 2], device=device)
    positions = torch.linspace(0, total - 1, num_frames, device=device, dtype=torch.float64)
    return torch.floor(positions + 0.5).long()  # (num_frames,) round half up


def check_frames(frames: torch.Tensor, name: str) -> None:
    """Raise a clear error unless `frames` is a non-empty (T, H, W, 3) uint8 tensor."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name}: expected frames of shape (T, H, W, 3), got {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise TypeError(f"{name}: expected uint8 frames, got {frames.dtype}")
    if min(frames.shape[:3]) == 0:
        raise ValueError(f"{name}: expected at least one non-empty frame, got shape {tuple(frames.shape)}")


def load_frames(video, num_frames: int | None, *, name: str = "video") -> torch.Tensor:
    """Path / VideoClip / (T, H, W, 3) uint8 tensor or ndarray -> (num_frames, H, W, 3) uint8 sampled uniformly.

    num_frames None keeps every frame. A path is decoded with `read_video` (only the sampled frames), so missing,
    empty or corrupt files raise `VideoReadError`.
    """
    if num_frames is not None and (
        isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames <= 0
    ):
        raise ValueError(f"num_frames: expected a positive int or None, got {num_frames!r}")
    if isinstance(video, (str, os.PathLike)):
        return read_video(video, num_frames=num_frames).frames
    if isinstance(video, VideoClip):
        video = video.frames
    elif isinstance(video, np.ndarray):
        video = torch.from_numpy(video)
    if not isinstance(video, torch.Tensor):
        raise TypeError(
            f"{name}: expected a path, a VideoClip or a (T, H, W, 3) uint8 tensor/ndarray, got {type(video).__name__}"
        )
    check_frames(video, name)
    if num_frames is None:
        return video
    return video[uniform_indices(video.shape[0], int(num_frames), device=video.device)]  # (num_frames, H, W, 3)


def is_video_batch(video) -> bool:
    """A list/tuple of videos (paths, clips or frame tensors) rather than one video."""
    return isinstance(video, (list, tuple))


def to_pixels(frames: torch.Tensor, size: tuple[int, int], mean, std) -> torch.Tensor:
    """(..., T, H, W, 3) uint8 -> (..., T, 3, h, w) float32 resized (antialiased bilinear) and normalised."""
    lead = frames.shape[:-3]
    x = frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W) in [0, 1]
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.reshape(*lead, *x.shape[-3:])


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, h, w, 3) uint8, antialiased bilinear, on the frames' device."""
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    x = frames.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    x = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
