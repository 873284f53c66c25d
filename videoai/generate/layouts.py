"""The Wan image-to-video layouts the pipeline runs, and every way they differ, in one place.

Semantics follow diffusers' `WanImageToVideoPipeline` (0.42):

| layout            | components                                          | how the image enters                       |
|-------------------|-----------------------------------------------------|--------------------------------------------|
| `wan2.1-i2v`      | transformer (+ CLIP image encoder when image_dim)   | mask + image-latent channels (+ CLIP tokens) |
| `wan2.1-flf2v`    | as wan2.1-i2v, transformer with pos_embed_seq_len   | as wan2.1-i2v, first and last image        |
| `wan2.2-i2v-a14b` | transformer + transformer_2, boundary_ratio         | mask + image-latent channels; the high-noise expert runs t >= boundary_ratio * 1000, the low-noise one below |
| `wan2.2-ti2v-5b`  | expand_timesteps, 48-channel VAE, no image encoder  | first-frame latent in the noise, timestep 0 on its tokens |

The embedded model is `wan2.1-i2v` without encoders. Any channel layout also takes `last_image` (first-last-frame).
A folder diffusers would run while ignoring part of it (transformer_2 without boundary_ratio, last_image on TI2V)
is refused with a one-line error instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from videoai.tokenize.tracks import Tracks

from .conditioning import apply_tracks, first_frame_mask, latent_num_frames, pin_tracks
from .wan_move import wan_move_condition

PIPELINE_CLASSES = ("TrajectoryImageToVideoPipeline", "WanImageToVideoPipeline")
TRACK_CONDITIONINGS = ("videoai", "wan-move")
REQUIRED_COMPONENTS = ("vae", "transformer", "scheduler")
PAIRED_COMPONENTS = (("text_encoder", "tokenizer"), ("image_encoder", "image_processor"))


@dataclass
class ImageCondition:
    """One guidance branch's image condition. Channel layouts: mask (B, f, L, h, w), Wan's I2V mask, and latent
    (B, C, L, h, w), the normalised VAE latent of [image, black frames (, last image)], both concatenated to the
    noise. TI2V: mask (B, 1, L, h, w) is the noise mask (1: generate, 0: keep) and latent the clean content kept."""

    mask: torch.Tensor
    latent: torch.Tensor

    def cat(self, other: ImageCondition) -> ImageCondition:
        """Batch two branches: (B, ...) + (B, ...) -> (2B, ...)."""
        return ImageCondition(torch.cat([self.mask, other.mask]), torch.cat([self.latent, other.latent]))


@dataclass(frozen=True)
class WanLayout:
    """A checked Wan I2V layout: how the image condition is built and fed, and which expert runs when."""

    name: str
    expand_timesteps: bool
    boundary_timestep: float | None  # transformer at t >= this, transformer_2 below; None: one transformer
    image_embeds: bool  # the transformer cross-attends to CLIP image tokens (image_dim set)
    image_pairs: bool  # ... to first- and last-image tokens (pos_embed_seq_len set: Wan 2.1 FLF2V)
    patch_size: tuple[int, int, int]
    temporal_factor: int
    spatial_factor: int

    def check_call(self, last_image: bool, guidance_scale_2: float | None, track_conditioning: str) -> None:
        """Refuse call arguments this layout cannot honour."""
        if last_image and self.expand_timesteps:
            raise ValueError("last_image: a TI2V (expand_timesteps) checkpoint conditions on the first frame only")
        if last_image and self.image_embeds and not self.image_pairs:
            raise ValueError("last_image: this transformer takes one CLIP image (no pos_embed_seq_len); "
                             "first-last-frame needs a FLF2V checkpoint or one without an image encoder")
        if self.image_pairs and not last_image:
            raise ValueError("last_image is required: this transformer is first-last-frame (pos_embed_seq_len set)")
        if guidance_scale_2 is not None and self.boundary_timestep is None:
            raise ValueError("guidance_scale_2 is only used with two experts (transformer_2 and boundary_ratio)")
        if track_conditioning == "wan-move" and self.expand_timesteps:
            raise ValueError("track_conditioning='wan-move' edits I2V condition channels, which a TI2V "
                             "(expand_timesteps) checkpoint has none of; use 'videoai'")

    def condition_video(self, image: torch.Tensor, last_image: torch.Tensor | None, num_frames: int) -> torch.Tensor:
        """Frames the VAE encodes for the condition: images (B, 3, H, W) in [-1, 1] -> (B, 3, T', H, W)."""
        if self.expand_timesteps:
            return image[:, :, None]  # the first frame only
        black = image.new_zeros(*image.shape[:2], num_frames - 1 - (last_image is not None), *image.shape[2:])
        frames = [image[:, :, None], black] + ([] if last_image is None else [last_image[:, :, None]])
        return torch.cat(frames, 2)

    def image_condition(self, latent: torch.Tensor, num_frames: int, last_image: bool) -> ImageCondition:
        """Normalised condition latent (B, C, L or 1, h, w) -> the plain condition of this layout."""
        batch, _, _, height, width = latent.shape
        if self.expand_timesteps:
            num_latent = latent_num_frames(num_frames, self.temporal_factor)
            noise_mask = torch.ones(batch, 1, num_latent, height, width, device=latent.device, dtype=latent.dtype)
            noise_mask[:, :, 0] = 0
            return ImageCondition(noise_mask, latent.expand(-1, -1, num_latent, -1, -1))  # (B, C, L, h, w)
        mask = first_frame_mask(batch, num_frames, height, width, self.temporal_factor, latent.device, latent.dtype,
                                last_frame=last_image)
        return ImageCondition(mask, latent)

    def with_tracks(self, condition: ImageCondition, tracks: Tracks, track_conditioning: str, sigma: float,
                    strength: float, mark_mask: bool, last_image: bool) -> ImageCondition:
        """The conditional branch's condition: `condition` edited by `tracks` (output pixels)."""
        if self.expand_timesteps:
            latent, mask = pin_tracks(condition.latent, condition.mask, tracks, self.temporal_factor, sigma, strength)
            return ImageCondition(mask, latent)
        if track_conditioning == "wan-move":
            mask, latent = condition.mask, wan_move_condition(condition.latent, tracks, self.spatial_factor,
                                                              self.temporal_factor, strength)
        else:
            edited = apply_tracks(torch.cat([condition.mask, condition.latent], 1), tracks, self.temporal_factor,
                                  sigma, mark_mask=mark_mask, strength=strength)
            mask, latent = edited[:, :self.temporal_factor], edited[:, self.temporal_factor:]
        if last_image:  # the last latent frame carries last_image: it stays as given
            latent = torch.cat([latent[:, :, :-1], condition.latent[:, :, -1:]], 2)
        return ImageCondition(mask, latent)

    def model_input(self, latents: torch.Tensor, condition: ImageCondition,
                    t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy latents (B, C, L, h, w) + condition at step t (a scalar, or one per sample (B,)) -> transformer
        hidden_states and timestep."""
        if self.expand_timesteps:
            hidden = (1 - condition.mask) * condition.latent + condition.mask * latents  # (B, C, L, h, w)
            per_token = F.avg_pool3d(condition.mask, self.patch_size)  # (B, 1, L/pt, h/ph, w/pw)
            return hidden, (per_token * t.reshape(-1, 1, 1, 1, 1)).flatten(1)  # timestep (B, N): 0 on kept tokens
        hidden = torch.cat([latents, condition.mask, condition.latent], 1)  # (B, C + f + C, L, h, w)
        return hidden, t.expand(latents.shape[0])

    def finish(self, latents: torch.Tensor, condition: ImageCondition) -> torch.Tensor:
        """Denoised latents -> the video's latents (TI2V puts the kept content back)."""
        if self.expand_timesteps:
            return (1 - condition.mask) * condition.latent + condition.mask * latents
        return latents

    def expert(self, t: torch.Tensor) -> int:
        """0: transformer (Wan 2.1, or Wan 2.2's high-noise expert), 1: transformer_2 (low noise)."""
        return 0 if self.boundary_timestep is None or t >= self.boundary_timestep else 1


def _get(config: Mapping | None, key: str, default=None):
    return None if config is None else config.get(key, default)


def resolve_layout(vae_config: Mapping | None, transformer_config: Mapping | None,
                   transformer_2_config: Mapping | None, boundary_ratio: float | None, expand_timesteps: bool,
                   present: set[str], num_train_timesteps: int = 1000) -> WanLayout:
    """Check a set of components and settings; the layout they form, or a one-line ValueError naming the problem."""
    for name, config in (("vae", vae_config), ("transformer", transformer_config)):
        if config is None:
            raise ValueError(f"{name} is missing: a Wan image-to-video checkpoint needs vae, transformer and scheduler")
    for first, second in PAIRED_COMPONENTS:
        if (first in present) != (second in present):
            have, lack = (first, second) if first in present else (second, first)
            raise ValueError(f"{have} is present but {lack} is missing")
    if not isinstance(expand_timesteps, bool):
        raise ValueError(f"expand_timesteps must be a bool, got {expand_timesteps!r}")
    if transformer_2_config is not None and boundary_ratio is None:
        raise ValueError("transformer_2 is present but boundary_ratio is not set (Wan 2.2 A14B switches experts at "
                         "boundary_ratio, e.g. 0.9); set it or remove transformer_2")
    if boundary_ratio is not None:
        if isinstance(boundary_ratio, bool) or not isinstance(boundary_ratio, (int, float)) \
                or not 0 < boundary_ratio <= 1:
            raise ValueError(f"boundary_ratio must be a number in (0, 1], got {boundary_ratio!r}")
        if transformer_2_config is None:
            raise ValueError(f"boundary_ratio={boundary_ratio} is set but transformer_2 (the low-noise expert) is "
                             "missing")
        if "motion_adapter" in present:
            raise ValueError("motion_adapter is not supported with two experts (transformer_2): an adapter is "
                             "trained for one transformer")
        for key in ("in_channels", "out_channels", "patch_size", "text_dim", "image_dim", "pos_embed_seq_len"):
            if _get(transformer_config, key) != _get(transformer_2_config, key):
                raise ValueError(f"transformer_2 {key}={_get(transformer_2_config, key)!r} differs from "
                                 f"transformer's {_get(transformer_config, key)!r}")
    z_dim, temporal = vae_config["z_dim"], vae_config.get("scale_factor_temporal", 4)
    expected = z_dim if expand_timesteps else 2 * z_dim + temporal
    what = "the latent (expand_timesteps)" if expand_timesteps else f"noise + {temporal} mask + condition latent"
    if transformer_config.get("in_channels") != expected:
        raise ValueError(f"transformer in_channels={transformer_config.get('in_channels')} but this layout feeds "
                         f"{expected} ({what}, VAE z_dim={z_dim})")
    if transformer_config.get("out_channels") != z_dim:
        raise ValueError(f"transformer out_channels={transformer_config.get('out_channels')} but the VAE has "
                         f"z_dim={z_dim}")
    image_embeds = transformer_config.get("image_dim") is not None
    if image_embeds and "image_encoder" not in present:
        raise ValueError("the transformer takes CLIP image tokens (image_dim set) but image_encoder is missing")
    image_pairs = image_embeds and transformer_config.get("pos_embed_seq_len") is not None
    two_experts = boundary_ratio is not None
    name = ("wan2.2-ti2v-5b" if expand_timesteps else "wan2.2-i2v-a14b" if two_experts
            else "wan2.1-flf2v" if image_pairs else "wan2.1-i2v")
    return WanLayout(name=name, expand_timesteps=expand_timesteps,
                     boundary_timestep=boundary_ratio * num_train_timesteps if two_experts else None,
                     image_embeds=image_embeds, image_pairs=image_pairs,
                     patch_size=tuple(transformer_config.get("patch_size", (1, 2, 2))), temporal_factor=temporal,
                     spatial_factor=vae_config.get("scale_factor_spatial", 8))


def check_folder(path: Path, overrides: Mapping) -> dict:
    """Check a pipeline folder before any weight is read; returns its model_index.json (ValueError on a bad one)."""
    index = json.loads((path / "model_index.json").read_text())
    class_name = index.get("_class_name")
    if class_name not in PIPELINE_CLASSES:
        raise ValueError(f"{str(path)!r} holds a {class_name} (model_index.json); TrajectoryImageToVideoPipeline "
                         f"loads {' or '.join(PIPELINE_CLASSES)} folders")
    configs, present = {}, set()
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list):
            continue
        given = overrides.get(name, entry if entry[0] is not None else None)
        if given is None:
            continue
        present.add(name)
        if name in overrides:
            configs[name] = getattr(given, "config", None)
            continue
        if not (path / name).is_dir():
            raise ValueError(f"{name} is listed in model_index.json but {str(path / name)!r} is missing")
        if (path / name / "config.json").is_file():
            configs[name] = json.loads((path / name / "config.json").read_text())
    missing = [name for name in REQUIRED_COMPONENTS if name not in present]
    if missing:
        raise ValueError(f"{', '.join(missing)} missing from {str(path)!r}: a Wan image-to-video checkpoint needs "
                         f"{', '.join(REQUIRED_COMPONENTS)}")
    resolve_layout(configs.get("vae"), configs.get("transformer"), configs.get("transformer_2"),
                   overrides.get("boundary_ratio", index.get("boundary_ratio")),
                   overrides.get("expand_timesteps", index.get("expand_timesteps", False)), present)
    return index
