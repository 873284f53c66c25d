"""Call inputs of the image-to-video pipeline: images, motion paths and prompts, checked and normalised."""

from __future__ import annotations

import html
from typing import Any, Sequence

import numpy as np
import PIL.Image
import torch
from diffusers.pipelines.wan.pipeline_wan_i2v import prompt_clean, whitespace_clean
from diffusers.utils import is_ftfy_available

from videoai.tokenize.tracks import Tracks


def image_size(image: Any) -> tuple[int, int]:
    """(height, width) of a PIL image, (H, W, 3) array / uint8 tensor or (3, H, W) / (1, 3, H, W) float tensor."""
    if isinstance(image, PIL.Image.Image):
        return image.height, image.width
    if isinstance(image, np.ndarray) or (isinstance(image, torch.Tensor) and image.dtype == torch.uint8):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image array must be (H, W, 3), got shape {tuple(image.shape)}")
        return int(image.shape[0]), int(image.shape[1])
    if isinstance(image, torch.Tensor):
        if not (image.ndim == 3 or (image.ndim == 4 and image.shape[0] == 1)) or image.shape[-3] != 3:
            raise ValueError(f"image tensor must be (3, H, W) or (1, 3, H, W) in [0, 1], got {tuple(image.shape)}")
        return int(image.shape[-2]), int(image.shape[-1])
    raise TypeError(
        f"image must be a PIL.Image, an (H, W, 3) uint8 array/tensor or a (3, H, W) float tensor, got {type(image).__name__}"
    )


def to_processor_input(image: Any) -> Any:
    """Uint8 (H, W, 3) arrays/tensors -> PIL so VideoProcessor scales them right; the rest passes through."""
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
        image = image.cpu().numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        return PIL.Image.fromarray(image)
    if isinstance(image, torch.Tensor) and image.ndim == 3:
        return image[None]
    return image


def prepare_tracks(tracks: Any, num_frames: int, width: int, height: int, image_size: tuple[int, int]) -> Tracks | None:
    """`tracks` (Tracks, polylines in input-image pixels, or None) -> Tracks of num_frames in width x height pixels."""
    if tracks is None:
        return None
    if not isinstance(tracks, Tracks):
        if isinstance(tracks, (torch.Tensor, np.ndarray)):
            if tracks.ndim != 3 or tracks.shape[-1] != 2:
                raise ValueError(f"tracks array must be (N, K, 2) polylines of (x, y) points, got {tuple(tracks.shape)}")
            tracks = list(tracks)
        if isinstance(tracks, (str, bytes)) or not isinstance(tracks, Sequence):
            raise TypeError(f"tracks must be a Tracks, a list of (K, 2) polylines or None, got {type(tracks).__name__}")
        try:
            tracks = Tracks.from_polylines(tracks, num_frames, width=image_size[1], height=image_size[0])
        except (TypeError, ValueError) as error:
            raise type(error)(f"tracks: {error}") from None
    if tracks.num_frames != num_frames:
        raise ValueError(
            f"tracks has {tracks.num_frames} frames but num_frames={num_frames}; pass tracks.resample({num_frames})"
        )
    if (tracks.width, tracks.height) != (width, height):
        tracks = tracks.scale_to(width, height)
    return tracks


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning (diffusers' `prompt_clean`; without ftfy, the html and whitespace part of it)."""
    if is_ftfy_available():
        return prompt_clean(text)
    return whitespace_clean(html.unescape(html.unescape(text)).strip())
