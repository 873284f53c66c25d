"""The embedded default model (videoai/assets/generate/) and the tiny Wan-architecture configs it is built from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

from .motion_adapter import MotionAdapter
from .pipeline import TrajectoryImageToVideoPipeline

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "generate"


@dataclass
class TinyWanConfig:
    """Architecture of a small Wan I2V stack (no text or CLIP encoder): VAE with 2x2 patchify, 8x / 4x compression."""

    z_dim: int = 32
    vae_base_dim: int = 12
    vae_dim_mult: tuple[int, ...] = (1, 2, 4)
    vae_num_res_blocks: int = 1
    num_layers: int = 4
    num_attention_heads: int = 2
    attention_head_dim: int = 64
    ffn_dim: int = 512
    text_dim: int = 16
    freq_dim: int = 64
    patch_size: tuple[int, int, int] = (1, 2, 2)  # transformer tokens in latent voxels (t, h, w)
    with_motion_adapter: bool = False
    adapter_hidden_dim: int = 32
    flow_shift: float = 1.0
    track_sigma: float = 1.0
    num_frames: int = 13
    height: int = 64
    width: int = 64


def build_vae(config: TinyWanConfig) -> AutoencoderKLWan:
    """Randomly initialised AutoencoderKLWan: 2x2 patchify then len(dim_mult)-1 halvings -> 8x space, 4x time."""
    num_down = len(config.vae_dim_mult) - 1
    return AutoencoderKLWan(
        base_dim=config.vae_base_dim,
        z_dim=config.z_dim,
        dim_mult=list(config.vae_dim_mult),
        num_res_blocks=config.vae_num_res_blocks,
        temperal_downsample=[True] * 2 + [False] * (num_down - 2),
        latents_mean=[0.0] * config.z_dim,
        latents_std=[1.0] * config.z_dim,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_temporal=4,
        scale_factor_spatial=2 * 2**num_down,
    )


def build_transformer(config: TinyWanConfig) -> WanTransformer3DModel:
    """Randomly initialised WanTransformer3DModel for [noise, mask, condition] inputs (2C + 4 channels)."""
    return WanTransformer3DModel(
        patch_size=tuple(config.patch_size),
        num_attention_heads=config.num_attention_heads,
        attention_head_dim=config.attention_head_dim,
        in_channels=2 * config.z_dim + 4,
        out_channels=config.z_dim,
        text_dim=config.text_dim,
        freq_dim=config.freq_dim,
        ffn_dim=config.ffn_dim,
        num_layers=config.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        image_dim=None,
        rope_max_seq_len=64,
    )


def build_pipeline(config: TinyWanConfig | None = None, vae: AutoencoderKLWan | None = None,
                   seed: int = 0) -> TrajectoryImageToVideoPipeline:
    """A randomly initialised tiny pipeline (tests, and the starting point of the default model's training)."""
    config = config or TinyWanConfig()
    torch.manual_seed(seed)
    vae = vae if vae is not None else build_vae(config)
    transformer = build_transformer(config)
    adapter = None
    if config.with_motion_adapter:
        adapter = MotionAdapter(num_layers=config.num_layers,
                                inner_dim=config.num_attention_heads * config.attention_head_dim,
                                in_channels=3 * vae.config.scale_factor_temporal,
                                hidden_dim=config.adapter_hidden_dim, patch_size=tuple(config.patch_size))
    return TrajectoryImageToVideoPipeline(
        vae=vae, transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=config.flow_shift),
        motion_adapter=adapter, track_sigma=config.track_sigma, default_num_frames=config.num_frames,
        default_height=config.height, default_width=config.width,
    )


def load_default_pipeline(device: str | torch.device | None = None,
                          torch_dtype: torch.dtype | None = None) -> TrajectoryImageToVideoPipeline:
    """The embedded default model (a tiny Wan I2V trained on synthetic moving shapes, 64x64, 13 frames)."""
    kwargs = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(DEFAULT_MODEL_DIR, **kwargs)
    return pipe.to(device) if device is not None else pipe
