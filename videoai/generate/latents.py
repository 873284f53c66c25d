"""Wan VAE helpers shared by the pipeline and the trainer: normalised latents and the I2V image condition."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan

from .conditioning import first_frame_mask


def _stats(vae: AutoencoderKLWan, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, device=like.device, dtype=like.dtype).view(shape)
    std = torch.tensor(vae.config.latents_std, device=like.device, dtype=like.dtype).view(shape)
    return mean, std


def normalize_latents(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    """Raw VAE latents (B, C, L, h, w) -> (z - mean) / std, the space the transformer works in."""
    mean, std = _stats(vae, latents)
    return (latents - mean) * (1.0 / std)  # multiply by the reciprocal, as diffusers' Wan pipelines do


def denormalize_latents(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalize_latents`."""
    mean, std = _stats(vae, latents)
    return latents * std + mean


@torch.no_grad()
def encode_video(vae: AutoencoderKLWan, video: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """video (B, 3, T, H, W) in [-1, 1] -> normalised latents (B, C, L, h, w) (posterior mode) on `device`
    (default: the VAE's; under CPU offload pass the pipeline's execution device: the weights sit elsewhere)."""
    latents = vae.encode(video.to(device or vae.device, vae.dtype)).latent_dist.mode()
    return normalize_latents(vae, latents.float())


@torch.no_grad()
def encode_image_condition(vae: AutoencoderKLWan, image: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Wan I2V condition of image (B, 3, H, W) in [-1, 1] -> (B, f + C, L, h, w): mask, then the latent of
    [image, black frames...] (as `WanImageToVideoPipeline.prepare_latents`)."""
    batch, _, height, width = image.shape
    video = torch.cat([image[:, :, None], image.new_zeros(batch, 3, num_frames - 1, height, width)], 2)
    latent = encode_video(vae, video)  # (B, C, L, h, w)
    temporal = vae.config.scale_factor_temporal
    mask = first_frame_mask(batch, num_frames, latent.shape[-2], latent.shape[-1], temporal, latent.device,
                            latent.dtype)  # (B, f, L, h, w)
    return torch.cat([mask, latent], 1)
