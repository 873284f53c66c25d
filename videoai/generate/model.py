"""The denoiser the pipeline runs and the trainer optimises: a stock WanTransformer3DModel plus an optional adapter."""

from __future__ import annotations

import torch
from diffusers import WanTransformer3DModel
from torch import nn

from .motion_adapter import Modulations, MotionAdapter


def null_text_embeds(transformer: WanTransformer3DModel, batch_size: int, device=None, dtype=None) -> torch.Tensor:
    """Text embeddings for a model used without a text encoder: one zero token -> (B, 1, text_dim)."""
    dtype = dtype or transformer.dtype
    return torch.zeros(batch_size, 1, transformer.config.text_dim, device=device, dtype=dtype)


class TrajectoryDenoiser(nn.Module):
    """Predicts the flow-matching velocity from [noisy latents, I2V condition]; adapter modulations optional."""

    def __init__(self, transformer: WanTransformer3DModel, motion_adapter: MotionAdapter | None = None):
        super().__init__()
        self.transformer = transformer
        self.motion_adapter = motion_adapter

    def forward(
        self,
        latents: torch.Tensor,
        condition: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_hidden_states_image: torch.Tensor | None = None,
        motion_maps: torch.Tensor | None = None,
        motion_active: torch.Tensor | None = None,
        modulations: Modulations | None = None,
    ) -> torch.Tensor:
        """latents (B, C, L, h, w), condition (B, f + C, L, h, w), timestep (B,) in [0, 1000] -> (B, C, L, h, w).

        Give either motion_maps (+ motion_active) to run the adapter here, or precomputed `modulations`.
        """
        transformer = self.transformer
        if encoder_hidden_states is None:
            encoder_hidden_states = null_text_embeds(transformer, latents.shape[0], latents.device, latents.dtype)
        hidden_states = torch.cat([latents, condition], dim=1)  # (B, 2C + f, L, h, w)
        if modulations is None and self.motion_adapter is not None and motion_maps is not None:
            modulations = self.motion_adapter(motion_maps, motion_active)
        kwargs = dict(
            hidden_states=hidden_states,
            timestep=timestep,
            encoder_hidden_states=encoder_hidden_states,
            encoder_hidden_states_image=encoder_hidden_states_image,
            return_dict=False,
        )
        if modulations is None:
            return transformer(**kwargs)[0]
        with MotionAdapter.hooked(transformer, modulations):
            return transformer(**kwargs)[0]
