"""Tiny random checkpoints in each public Wan image-to-video layout, built offline (shared by the layout tests)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, PreTrainedTokenizerFast, UMT5Config,
                          UMT5EncoderModel)

WORDS = ["[UNK]", "[PAD]", "</s>", "a", "red", "car", "drives", "left", "blurry", "static", "dance", "monkey"]
TEXT_DIM = 8
CLIP_DIM = 8
CLIP_TOKENS = (32 // 8) ** 2 + 1  # patches of a 32x32 crop + the class token
LAYOUTS = ("wan2.1-i2v", "wan2.1-flf2v", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b")
# The size each layout is run at in the tests: 8x VAEs at 32x32 (4x4 latents), the 16x Wan 2.2 VAE at 64x64.
SIZES = {"wan2.1-i2v": 32, "wan2.1-flf2v": 32, "wan2.2-i2v-a14b": 32, "wan2.2-ti2v-5b": 64}


def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over WORDS (stands in for UMT5's sentencepiece; no download)."""
    core = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", eos_token="</s>")


def text_encoder() -> UMT5EncoderModel:
    """UMT5 encoder from a tiny config."""
    return UMT5EncoderModel(UMT5Config(vocab_size=len(WORDS), d_model=TEXT_DIM, d_kv=4, d_ff=16, num_layers=1,
                                       num_heads=2, relative_attention_num_buckets=4))


def image_encoder() -> tuple[CLIPVisionModel, CLIPImageProcessor]:
    """CLIP vision encoder (32x32 input, 8x8 patches) and its processor."""
    model = CLIPVisionModel(CLIPVisionConfig(hidden_size=CLIP_DIM, intermediate_size=16, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=32, patch_size=8))
    return model, CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def vae(z_dim: int = 4, wan22: bool = False) -> AutoencoderKLWan:
    """Wan 2.1 VAE (8x space, 4x time) or the Wan 2.2 one (2x2 patchify + residual blocks: 16x space, 48 channels)."""
    generator = torch.Generator().manual_seed(1)
    stats = dict(latents_mean=(torch.randn(z_dim, generator=generator) * 0.1).tolist(),
                 latents_std=(torch.rand(z_dim, generator=generator) + 0.5).tolist())
    common = dict(base_dim=3, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                  temperal_downsample=[False, True, True], **stats)
    if wan22:
        return AutoencoderKLWan(**common, is_residual=True, in_channels=12, out_channels=12, patch_size=2,
                                scale_factor_spatial=16, scale_factor_temporal=4)
    return AutoencoderKLWan(**common)


def transformer(in_channels: int, out_channels: int, image_dim: int | None = None,
                pos_embed_seq_len: int | None = None) -> WanTransformer3DModel:
    """WanTransformer3DModel from a tiny config; image_dim set: CLIP image tokens enter cross-attention (Wan 2.1)."""
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                 in_channels=in_channels, out_channels=out_channels, text_dim=TEXT_DIM, freq_dim=16,
                                 ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                 image_dim=image_dim, added_kv_proj_dim=None if image_dim is None else 24,
                                 pos_embed_seq_len=pos_embed_seq_len, rope_max_seq_len=32)


def scheduler() -> UniPCMultistepScheduler:
    """The flow UniPC scheduler the public Wan checkpoints ship with."""
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def components(layout: str, seed: int = 0) -> dict:
    """Keyword arguments of `WanImageToVideoPipeline` for a tiny checkpoint in `layout` (one of LAYOUTS)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    torch.manual_seed(seed)
    parts = dict(tokenizer=tokenizer(), text_encoder=text_encoder(), scheduler=scheduler(), image_encoder=None,
                 image_processor=None, transformer_2=None, boundary_ratio=None, expand_timesteps=False)
    if layout == "wan2.2-ti2v-5b":  # the first-frame latent sits in the noise: no condition channels
        parts.update(vae=vae(48, wan22=True), transformer=transformer(48, 48), expand_timesteps=True)
        return parts
    z_dim = 4
    in_channels = 2 * z_dim + 4  # [noise, mask (one channel per pixel frame of a latent frame), image latent]
    parts["vae"] = vae(z_dim)
    if layout == "wan2.2-i2v-a14b":  # two experts, no CLIP
        parts.update(transformer=transformer(in_channels, z_dim), transformer_2=transformer(in_channels, z_dim),
                     boundary_ratio=0.9)
        return parts
    image_model, processor = image_encoder()
    pos_embed = 2 * CLIP_TOKENS if layout == "wan2.1-flf2v" else None  # FLF2V: first and last image tokens
    parts.update(image_encoder=image_model, image_processor=processor,
                 transformer=transformer(in_channels, z_dim, image_dim=CLIP_DIM, pos_embed_seq_len=pos_embed))
    return parts


def save_layout(layout: str, directory: Path, seed: int = 0) -> Path:
    """Write a tiny `layout` checkpoint with diffusers' own pipeline, as a user's converted folder would be."""
    WanImageToVideoPipeline(**components(layout, seed)).save_pretrained(directory)
    return Path(directory)
