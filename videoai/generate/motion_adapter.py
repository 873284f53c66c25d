"""Optional Tora-style motion adapter: rasterised tracks -> zero-initialised per-block scale/shift of a stock Wan DiT.

The transformer stays an unmodified `WanTransformer3DModel` (so real Wan weights and LoRA load as usual); the
adapter reaches it only through forward hooks on `transformer.blocks[i]`, which map each block's output tokens
h -> h * (1 + scale_i) + shift_i. The heads start at zero, so a freshly added adapter changes nothing.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

Modulations = list[tuple[torch.Tensor, torch.Tensor]]  # per block: scale, shift, each (B, N, D)


class MotionAdapter(ModelMixin, ConfigMixin):
    """Small conv encoder of `conditioning.motion_maps` -> per-block (scale, shift) token modulations."""

    @register_to_config
    def __init__(
        self,
        num_layers: int,
        inner_dim: int,
        in_channels: int = 12,  # 3 * VAE temporal factor: heatmap + (dx, dy) per pixel frame
        hidden_dim: int = 64,
        patch_size: tuple[int, int, int] = (1, 2, 2),
    ):
        super().__init__()
        patch_size = tuple(patch_size)
        self.encoder = nn.Sequential(
            nn.Conv3d(in_channels, hidden_dim, kernel_size=3, padding=1),
            nn.SiLU(),
            nn.Conv3d(hidden_dim, hidden_dim, kernel_size=patch_size, stride=patch_size),  # tokens of the DiT grid
            nn.SiLU(),
        )
        self.heads = nn.ModuleList([nn.Linear(hidden_dim, 2 * inner_dim) for _ in range(num_layers)])
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Zero the heads so the adapter starts as the identity."""
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, motion_maps: torch.Tensor, active: torch.Tensor | None = None) -> Modulations:
        """motion_maps (B, in_channels, L, h, w); active (B,) 0/1 (0: this sample gets no modulation, e.g. the
        unconditional CFG branch) -> per-block [(scale, shift)], each (B, L*h'*w', inner_dim)."""
        tokens = self.encoder(motion_maps)  # (B, hidden, L, h', w')
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, N, hidden), t-major like the DiT's patch tokens
        out = []
        for head in self.heads:
            scale, shift = head(tokens).chunk(2, dim=-1)  # (B, N, D) each
            if active is not None:
                gate = active.to(scale.dtype).view(-1, 1, 1)
                scale, shift = scale * gate, shift * gate
            out.append((scale, shift))
        return out

    @staticmethod
    @contextlib.contextmanager
    def hooked(transformer: nn.Module, modulations: Modulations) -> Iterator[None]:
        """Within the block, `transformer.blocks[i]` outputs h * (1 + scale_i) + shift_i."""
        blocks = transformer.blocks
        if len(blocks) != len(modulations):
            raise ValueError(
                f"motion adapter has {len(modulations)} heads but the transformer has {len(blocks)} blocks"
            )

        def make_hook(scale: torch.Tensor, shift: torch.Tensor):
            def hook(module, args, output):
                return (output.float() * (1 + scale.float()) + shift.float()).type_as(output)

            return hook

        handles = [block.register_forward_hook(make_hook(*mod)) for block, mod in zip(blocks, modulations)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
