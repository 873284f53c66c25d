"""ESTIMATED peak GPU memory of the public Wan I2V checkpoints per memory setting, from parameter counts (models
built on the meta device from the public configs: nothing is downloaded or allocated) and activation sizes.

    python benchmarks/estimate_wan_memory.py [--frames 81 --height 480 --width 832] [--markdown]

These are estimates, not measurements (benchmarks/gpu_generate.py measures on a GPU). Formulas, bytes:
  weights W(m)      = params(m) x (2 for bf16 models; 4 for the VAE, kept in fp32)
  tokens N          = L x (H / s / ph) x (W / s / pw), L = (frames - 1) / 4 + 1 latent frames, s the VAE factor
  transformer act.  = B x N x (2 x ffn_dim + 8 x dim) x 2   (FFN hidden + GELU output, q/k/v/attention out,
                      residual and norm copies, bf16; attention by SDPA/flash: no N x N matrix), B = 2 with guidance
                      batched (the pipeline's default on CUDA)
  VAE decode act.   = 4 x (4 x H/p x W/p x 2 x decoder_base_dim) x 4  (the Wan VAE decodes one latent frame -> 4
                      pixel frames at a time through a feature cache; ~4 live fp32 tensors of the widest stage at
                      the decoder's output size; p = 2 for the Wan 2.2 VAE's final 2 x 2 unpatchify, else 1)
                      tiling: x tile area / frame area (default 256 x 256 tiles); slicing only splits a batch of
                      videos (num_videos_per_prompt > 1), so at one video it changes nothing
  bf16 (all on GPU) = sum W + max(transformer act., VAE act.)  (encoders run first; their activations are small)
  model offload     = max over models of W(m) + act.(m)        (one model on the GPU at a time)
  group offload     = max over models of W(non-block) + 2 x W(block) + act.  (groups of 1 block, next prefetched)
  sequential        = W(largest leaf layer) + act.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

GIB = 2**30
WAN14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
              text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
I2V14B = dict(WAN14B, image_dim=1280, added_kv_proj_dim=5120)  # Wan 2.1 I2V 14B (480P and 720P), Wan-Move-14B
FLF2V14B = dict(I2V14B, pos_embed_seq_len=2 * 257)  # first and last image's CLIP tokens
TI2V5B = dict(WAN14B, num_attention_heads=24, ffn_dim=14336, num_layers=30, in_channels=48, out_channels=48)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                feed_forward_proj="gated-gelu")
CLIP_VIT_H = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                  image_size=224, patch_size=14)
VAE21 = dict(base_dim=96, z_dim=16)
VAE22 = dict(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12, out_channels=12,
             patch_size=2, scale_factor_spatial=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
             temperal_downsample=[False, True, True])


@dataclass(frozen=True)
class Checkpoint:
    """A public checkpoint: its transformer config(s), whether it has a CLIP encoder, its VAE config."""

    name: str
    transformer: dict
    experts: int
    clip: bool
    vae: dict


CHECKPOINTS = (
    Checkpoint("Wan2.1-I2V-14B-480P / 720P, Wan-Move-14B-480P", I2V14B, 1, True, VAE21),
    Checkpoint("Wan2.1-FLF2V-14B-720P", FLF2V14B, 1, True, VAE21),
    Checkpoint("Wan2.2-I2V-A14B (2 experts)", WAN14B, 2, False, VAE21),
    Checkpoint("Wan2.2-TI2V-5B", TI2V5B, 1, False, VAE22),
)
SETTINGS = ("bf16", "bf16 + VAE tiling/slicing", "model offload", "model offload + VAE tiling", "group offload",
            "group offload + VAE tiling", "sequential offload")


def _params(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _largest_leaf(module: torch.nn.Module) -> int:
    return max(_params(leaf) for leaf in module.modules() if not list(leaf.children()))


def _blocks(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The repeated blocks group offload moves one at a time (transformer, UMT5 and CLIP layers; the VAE: none)."""
    for path in ("blocks", "encoder.block", "vision_model.encoder.layers"):
        module = model
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, torch.nn.ModuleList):
            return module
    return None


def model_sizes(checkpoint: Checkpoint) -> dict[str, dict[str, float]]:
    """Per model: params, bytes of weights, bytes of the non-block part, one block, the largest leaf layer."""
    with init_empty_weights():
        transformer = WanTransformer3DModel(**checkpoint.transformer)
        models = {"transformer": (transformer, 2), "text_encoder": (UMT5EncoderModel(UMT5Config(**UMT5_XXL)), 2),
                  "vae": (AutoencoderKLWan(**checkpoint.vae), 4)}
        if checkpoint.clip:
            models["image_encoder"] = (CLIPVisionModel(CLIPVisionConfig(**CLIP_VIT_H)), 2)
    sizes = {}
    text_encoder = models["text_encoder"][0]
    text_encoder.encoder.embed_tokens = text_encoder.shared  # tied in the checkpoint; meta init leaves two copies
    for name, (model, width) in models.items():
        total = _params(model)
        repeated = _blocks(model)
        block = 0 if repeated is None else _params(repeated[0])
        blocks = 0 if repeated is None else block * len(repeated)
        sizes[name] = dict(params=total, weights=total * width, non_block=(total - blocks) * width,
                           block=block * width, leaf=_largest_leaf(model) * width)
    if checkpoint.experts == 2:
        sizes["transformer_2"] = dict(sizes["transformer"])
    return sizes


def activations(checkpoint: Checkpoint, frames: int, height: int, width: int, batch: int = 2) -> dict[str, float]:
    """Transformer and VAE-decode activation bytes (module docstring formulas), whole frame and 256 x 256 tiles."""
    config, vae = checkpoint.transformer, checkpoint.vae
    spatial = vae.get("scale_factor_spatial", 8)
    latent_frames = (frames - 1) // 4 + 1
    patch = config["patch_size"]
    tokens = latent_frames * (height // spatial // patch[1]) * (width // spatial // patch[2])
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    transformer = batch * tokens * (2 * config["ffn_dim"] + 8 * dim) * 2
    decoder_width = 2 * vae.get("decoder_base_dim", vae["base_dim"])
    vae_patch = vae.get("patch_size") or 1  # Wan 2.2's decoder ends at H/2 x W/2, then unpatchifies 2 x 2
    vae_act = 4 * (4 * (height // vae_patch) * (width // vae_patch) * decoder_width) * 4
    tile_share = min(1.0, 256 * 256 / (height * width))
    return dict(tokens=tokens, transformer=transformer, vae=vae_act, vae_tiled=vae_act * tile_share)


def estimate(checkpoint: Checkpoint, frames: int, height: int, width: int) -> dict[str, float]:
    """Estimated peak bytes per setting."""
    sizes = model_sizes(checkpoint)
    act = activations(checkpoint, frames, height, width)
    weights = sum(size["weights"] for size in sizes.values())
    transformer = sizes["transformer"]
    encoders = [sizes[name]["weights"] for name in ("text_encoder", "image_encoder") if name in sizes]
    grouped_encoders = [sizes[name]["non_block"] + 2 * sizes[name]["block"]
                        for name in ("text_encoder", "image_encoder") if name in sizes]

    def offloaded(vae_act: float) -> float:
        return max(*encoders, transformer["weights"] + act["transformer"], sizes["vae"]["weights"] + vae_act)

    def grouped(vae_act: float) -> float:
        return max(transformer["non_block"] + 2 * transformer["block"] + act["transformer"],
                   sizes["vae"]["weights"] + vae_act, *grouped_encoders)

    return {
        "bf16": weights + max(act["transformer"], act["vae"]),
        "bf16 + VAE tiling/slicing": weights + max(act["transformer"], act["vae_tiled"]),
        "model offload": offloaded(act["vae"]),
        "model offload + VAE tiling": offloaded(act["vae_tiled"]),
        "group offload": grouped(act["vae"]),
        "group offload + VAE tiling": grouped(act["vae_tiled"]),
        "sequential offload": max(size["leaf"] for size in sizes.values()) + max(act["transformer"], act["vae"]),
        "_params": {name: size["params"] for name, size in sizes.items()},
        "_tokens": act["tokens"],
        "_act": act,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    args = parser.parse_args(argv)
    print(f"ESTIMATED peak GPU memory, GiB, {args.frames} frames at {args.height}x{args.width}, one video, "
          "guidance batched (B = 2); formulas in this file's docstring")
    for checkpoint in CHECKPOINTS:
        result = estimate(checkpoint, args.frames, args.height, args.width)
        params = ", ".join(f"{name} {count / 1e9:.2f}B" for name, count in result["_params"].items())
        act = result["_act"]
        print(f"\n{checkpoint.name}: {params}; {result['_tokens']} tokens; activations: transformer "
              f"{act['transformer'] / GIB:.1f}, VAE decode {act['vae'] / GIB:.1f} (tiled {act['vae_tiled'] / GIB:.1f})")
        print("| setting | est. peak GiB |\n|---|---|")
        for setting in SETTINGS:
            print(f"| {setting} | {result[setting] / GIB:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
