"""Trajectory-controlled image-to-video on diffusers' Wan stack: `TrajectoryImageToVideoPipeline`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
from diffusers.loaders import WanLoraLoaderMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from videoai.tokenize.tracks import Tracks

from .conditioning import check_num_frames, latent_num_frames, motion_maps
from .inputs import clean_prompt, image_size, prepare_tracks, to_processor_input
from .latents import denormalize_latents, encode_video
from .layouts import TRACK_CONDITIONINGS, ImageCondition, WanLayout, check_folder, resolve_layout
from .model import null_text_embeds
from .motion_adapter import Modulations, MotionAdapter

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class TrajectoryPipelineOutput(BaseOutput):
    """frames: per output_type — "pil": list (B) of lists (T) of images; "np": (B, T, H, W, 3) float in [0, 1];
    "pt": (B, T, 3, H, W) float in [0, 1]; "latent": (B, C, L, h, w). tracks: the tracks used, in output pixels."""

    frames: Any
    tracks: Tracks | None


@dataclass
class _Branch:
    """What one guidance branch feeds the transformer besides the noisy latents."""

    condition: ImageCondition
    text: torch.Tensor  # (B, S, D)
    image: torch.Tensor | None  # CLIP tokens (B or 2B, S', D') or None
    modulations: Modulations | None

    def cat(self, other: _Branch) -> _Branch:
        """Both branches as one batch (B -> 2B)."""
        image = None if self.image is None else torch.cat([self.image, other.image])
        modulations = None if self.modulations is None else [
            (torch.cat([scale, other_scale]), torch.cat([shift, other_shift]))
            for (scale, shift), (other_scale, other_shift) in zip(self.modulations, other.modulations)]
        return _Branch(self.condition.cat(other.condition), torch.cat([self.text, other.text]), image, modulations)


class TrajectoryImageToVideoPipeline(DiffusionPipeline, WanLoraLoaderMixin):
    """Image + motion paths -> video on every layout diffusers' `WanImageToVideoPipeline` runs (see `layouts`):
    the same components (text and CLIP encoders optional; `transformer_2` + `boundary_ratio` for Wan 2.2 A14B;
    `expand_timesteps` for Wan 2.2 TI2V-5B) plus an optional `MotionAdapter`. Without tracks it reproduces
    diffusers' pipeline.

    Config: track_conditioning ("videoai": first-frame latent features splatted along the tracks with Gaussian
    weights, marked in the mask channels, optional motion adapter; "wan-move": Wan-Move's latent trajectory guidance,
    `wan_move.wan_move_condition`), track_strength (blend of the carried features, 1.0: full), track_sigma (Gaussian
    radius of a track on the latent grid, in latent cells), mark_tracks_in_mask (write track Gaussians into the I2V
    mask channels), default_num_frames / default_height / default_width (used when the call gives none; None: 81
    frames and the input image's size rounded down to a multiple of `spatial_multiple`), default_guidance_scale /
    default_guidance_interval (the model's sampling operating point, used when the call gives none; 1.0 / 1.0: no
    guidance; a diffusers Wan folder loads with 5.0, diffusers' default), boundary_ratio / expand_timesteps (as
    diffusers).

    Tracks on TI2V (expand_timesteps), which has no condition channels: the first frame's latent is known content
    (noise mask 0, timestep 0 on its tokens), and "videoai" extends that to the tracks: along each track, frames
    k >= 1 keep the carried first-frame feature with weight min(track_strength * w, 1) (Gaussian w) in the model
    input, the per-token timestep and the output, as the first frame is kept. "wan-move" is refused there.
    With last_image the last latent frame (which carries it) is never edited by tracks.
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->motion_adapter->transformer->transformer_2->vae"
    _optional_components = ["tokenizer", "text_encoder", "image_encoder", "image_processor", "transformer_2",
                            "motion_adapter"]

    def __init__(
        self,
        vae: AutoencoderKLWan,
        transformer: WanTransformer3DModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        tokenizer=None,
        text_encoder=None,
        image_encoder=None,
        image_processor=None,
        transformer_2: WanTransformer3DModel | None = None,
        motion_adapter: MotionAdapter | None = None,
        boundary_ratio: float | None = None,
        expand_timesteps: bool = False,
        track_conditioning: str = "videoai",
        track_strength: float = 1.0,
        track_sigma: float = 1.0,
        mark_tracks_in_mask: bool = True,
        default_num_frames: int | None = None,
        default_height: int | None = None,
        default_width: int | None = None,
        default_guidance_scale: float = 1.0,
        default_guidance_interval: float = 1.0,
    ):
        super().__init__()
        parts = dict(vae=vae, transformer=transformer, scheduler=scheduler, tokenizer=tokenizer,
                     text_encoder=text_encoder, image_encoder=image_encoder, image_processor=image_processor,
                     transformer_2=transformer_2, motion_adapter=motion_adapter)
        _check_track_settings(track_conditioning, track_strength)
        _layout_of(parts, boundary_ratio, expand_timesteps)  # refuse what cannot run before registering anything
        self.register_modules(**parts)
        self.register_to_config(boundary_ratio=boundary_ratio, expand_timesteps=expand_timesteps,
                                track_conditioning=track_conditioning, track_strength=track_strength,
                                track_sigma=track_sigma, mark_tracks_in_mask=mark_tracks_in_mask,
                                default_num_frames=default_num_frames, default_height=default_height,
                                default_width=default_width, default_guidance_scale=default_guidance_scale,
                                default_guidance_interval=default_guidance_interval)
        self.vae_scale_factor_temporal = vae.config.scale_factor_temporal
        self.vae_scale_factor_spatial = vae.config.scale_factor_spatial
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load from a local folder (diffusers layout, ours or `WanImageToVideoPipeline`'s); nothing is downloaded.

        The folder is checked before any weight is read: another pipeline class, a missing component or a layout
        this pipeline cannot run exactly is a ValueError naming it.
        """
        path = Path(pretrained_model_name_or_path)
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"no pipeline at {str(path)!r}: expected a local diffusers folder with model_index.json (weights are "
                "never downloaded; save one with pipe.save_pretrained(dir) or convert Wan I2V weights to diffusers)"
            )
        index = check_folder(path, kwargs)
        if index["_class_name"] == "WanImageToVideoPipeline":
            kwargs.setdefault("default_guidance_scale", 5.0)  # diffusers' default for these checkpoints
        kwargs.setdefault("local_files_only", True)
        return super().from_pretrained(str(path), **kwargs)

    def enable_group_offload(self, onload_device: torch.device, offload_device: torch.device = torch.device("cpu"),
                             offload_type: str = "block_level", offload_to_disk_path: str | None = None,
                             exclude_modules: str | list[str] | None = None, **kwargs) -> None:
        """diffusers' group offload, with one subfolder of offload_to_disk_path per component: diffusers names the
        files by module path ("blocks.0"), so transformer and transformer_2 would share files and one expert would
        silently run the other's weights."""
        from diffusers.hooks import apply_group_offloading

        excluded = [exclude_modules] if isinstance(exclude_modules, str) else list(exclude_modules or [])
        for name, component in self.components.items():
            if not isinstance(component, torch.nn.Module):
                continue
            if name in excluded:
                component.to(onload_device)
                continue
            options = dict(onload_device=onload_device, offload_device=offload_device, offload_type=offload_type,
                           offload_to_disk_path=None if offload_to_disk_path is None
                           else os.path.join(offload_to_disk_path, name), **kwargs)
            if hasattr(component, "enable_group_offload"):
                component.enable_group_offload(**options)
            else:
                apply_group_offloading(module=component, **options)

    @property
    def layout(self) -> WanLayout:
        """The checked layout of the current components and config (see `layouts`)."""
        return _layout_of(self.components, self.config.boundary_ratio, self.config.expand_timesteps)

    @property
    def spatial_multiple(self) -> int:
        """Height and width must be multiples of this (VAE factor x transformer patch)."""
        return self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]

    def check_inputs(self, image, prompt, negative_prompt, num_frames, height, width, num_inference_steps,
                     guidance_scale, output_type, guidance_interval=1.0, last_image=None, guidance_scale_2=None,
                     track_conditioning="videoai", track_strength=1.0) -> tuple[int, int, int]:
        """Validate the call; returns (num_frames, height, width) with defaults filled in."""
        image_height, image_width = image_size(image)
        if last_image is not None:
            image_size(last_image)
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str or None, got {type(prompt).__name__}")
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise TypeError(f"negative_prompt must be a str or None, got {type(negative_prompt).__name__}")
        if prompt is not None and self.text_encoder is None:
            raise ValueError("prompt was given but this pipeline has no text_encoder; pass prompt=None")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {num_inference_steps!r}")
        for name, value in (("guidance_scale", guidance_scale), ("guidance_scale_2", guidance_scale_2)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if isinstance(guidance_interval, bool) or not isinstance(guidance_interval, (int, float)) \
                or not 0 < guidance_interval <= 1:
            raise ValueError(f"guidance_interval must be a fraction of the steps in (0, 1], got {guidance_interval!r}")
        _check_track_settings(track_conditioning, track_strength)
        self.layout.check_call(last_image is not None, guidance_scale_2, track_conditioning)
        num_frames = num_frames or self.config.default_num_frames or 81
        check_num_frames(num_frames, self.vae_scale_factor_temporal)
        multiple = self.spatial_multiple
        height = height or self.config.default_height or image_height // multiple * multiple
        width = width or self.config.default_width or image_width // multiple * multiple
        for name, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < multiple or value % multiple:
                raise ValueError(
                    f"{name} must be a positive multiple of {multiple} (VAE factor {self.vae_scale_factor_spatial} "
                    f"x patch {self.transformer.config.patch_size[1]}), got {value!r}"
                )
        return num_frames, height, width

    def encode_prompt(self, prompt: str | None, negative_prompt: str | None, batch_size: int,
                      do_classifier_free_guidance: bool, max_sequence_length: int = 512):
        """Text embeddings (B, S, D) for prompt and the negative prompt; one zero token without a text encoder."""
        device, dtype = self._execution_device, self.transformer.dtype
        if self.text_encoder is None:
            embeds = null_text_embeds(self.transformer, batch_size, device, dtype)
            return embeds, (embeds if do_classifier_free_guidance else None)

        def encode(text: str) -> torch.Tensor:
            inputs = self.tokenizer([clean_prompt(text)], padding="max_length", max_length=max_sequence_length,
                                    truncation=True, add_special_tokens=True, return_attention_mask=True,
                                    return_tensors="pt")
            mask = inputs.attention_mask.to(device)  # the execution device: offloaded weights sit elsewhere
            hidden = self.text_encoder(inputs.input_ids.to(device), mask).last_hidden_state
            hidden = hidden * mask[..., None]  # zero the padding as Wan does
            return hidden.to(device, dtype).expand(batch_size, -1, -1)

        positive = encode(prompt or "")
        negative = encode(negative_prompt or "") if do_classifier_free_guidance else None
        return positive, negative

    def preprocess_image(self, image: Any, height: int, width: int) -> torch.Tensor:
        """An input image (PIL, uint8 array/tensor or float tensor) -> (1, 3, H, W) float32 in [-1, 1] on the
        execution device, resized to height x width."""
        return self.video_processor.preprocess(to_processor_input(image), height=height, width=width).to(
            self._execution_device, torch.float32)

    def encode_image(self, image: Any, batch_size: int, last_image: Any = None) -> torch.Tensor | None:
        """CLIP image tokens (B, S, D), or (2B, S, D) for [image, last_image] pairs, for transformers with image_dim
        set (Wan 2.1); None otherwise."""
        if not self.layout.image_embeds:
            return None
        images = [to_processor_input(image)] + ([] if last_image is None else [to_processor_input(last_image)])
        pixels = self.image_processor(images=images, return_tensors="pt")
        hidden = self.image_encoder(**pixels.to(self._execution_device), output_hidden_states=True).hidden_states[-2]
        return hidden.to(self._execution_device, self.transformer.dtype).repeat(batch_size, 1, 1)

    def prepare_latents(self, image: torch.Tensor, last_image: torch.Tensor | None, batch_size: int,
                        num_frames: int, generator, latents: torch.Tensor | None) -> tuple[torch.Tensor, ImageCondition]:
        """Noise (B, C, L, h, w) and the plain image condition of this layout (images (1, 3, H, W) in [-1, 1])."""
        device = self._execution_device
        video = self.layout.condition_video(image, last_image, num_frames)  # (1, 3, T', H, W)
        latent = encode_video(self.vae, video, device)  # (1, C, L', h, w)
        condition = self.layout.image_condition(latent.expand(batch_size, -1, -1, -1, -1), num_frames,
                                                last_image is not None)
        shape = (batch_size, self.vae.config.z_dim, latent_num_frames(num_frames, self.vae_scale_factor_temporal),
                 *latent.shape[-2:])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        return latents.to(device, torch.float32), condition

    def predict(self, expert: int, latents: torch.Tensor, t: torch.Tensor, branch: _Branch) -> torch.Tensor:
        """Velocity (noise - data) of latents (B, C, L, h, w) at step t from one transformer (0 or 1)."""
        model = self.transformer if expert == 0 else self.transformer_2
        hidden, timestep = self.layout.model_input(latents, branch.condition, t)
        kwargs = dict(hidden_states=hidden.to(model.dtype), timestep=timestep, encoder_hidden_states=branch.text,
                      encoder_hidden_states_image=branch.image, return_dict=False)
        if branch.modulations is None:
            return model(**kwargs)[0].float()
        with MotionAdapter.hooked(model, branch.modulations):
            return model(**kwargs)[0].float()

    def motion_modulations(self, tracks: Tracks, height: int, width: int, batch_size: int,
                           do_cfg: bool) -> tuple[Modulations | None, Modulations | None]:
        """Motion-adapter modulations of the conditional and the unconditional branch (None without an adapter)."""
        if self.motion_adapter is None or tracks is None:
            return None, None
        maps = motion_maps(tracks.to(self._execution_device), height, width, self.vae_scale_factor_temporal,
                           self.config.track_sigma)  # (3f, L, h, w)
        maps = maps[None].expand(batch_size * (1 + do_cfg), -1, -1, -1, -1)
        active = torch.ones(batch_size * (1 + do_cfg), device=maps.device)
        active[batch_size:] = 0.0  # the unconditional half runs the plain transformer
        dtype = self.motion_adapter.dtype
        modulations = self.motion_adapter(maps.to(dtype), active.to(dtype))
        conditional = [(scale[:batch_size], shift[:batch_size]) for scale, shift in modulations]
        unconditional = [(scale[batch_size:], shift[batch_size:]) for scale, shift in modulations]
        return conditional, (unconditional if do_cfg else None)

    @torch.no_grad()
    def __call__(
        self,
        image: Any,
        tracks: Tracks | Sequence[Any] | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float | None = None,
        guidance_scale_2: float | None = None,
        guidance_interval: float | None = None,
        batch_guidance: bool | None = None,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        last_image: Any = None,
        track_conditioning: str | None = None,
        track_strength: float | None = None,
        track_sigma: float | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        max_sequence_length: int = 512,
    ):
        """Generate a video from `image` whose content follows `tracks`.

        tracks: a `Tracks`, or N polylines of (x, y) points in the input image's pixels (K_i >= 1 points each,
        resampled arc-length-uniform to num_frames; a single point holds that spot still), or None. Points may
        leave the frame; invisible points are ignored at those frames.
        The image is resized to height x width (default: `default_height/width` of the config, else the image
        size rounded down to a multiple of `spatial_multiple`, 16 for Wan); num_frames must be 4k + 1.
        last_image: the video's last frame too (first-last-frame; not on TI2V).
        guidance_scale (default: the config's default_guidance_scale; guidance_interval likewise) > 1 runs
        classifier-free guidance: the guided branch gets the prompt and the track-edited condition, the other the
        negative prompt and the plain condition ("wan-move": the edited one, as Wan-Move's code runs); it is skipped when there is neither a track nor a prompt to guide
        by. guidance_scale_2: the low-noise expert's scale with two experts (default: guidance_scale).
        guidance_interval in (0, 1]: guide only the first fraction of the steps (the noisy ones, where layout and
        motion are decided; Kynkaanniemi et al. 2024 limit guidance to an interval too); later steps run the
        conditional branch alone. batch_guidance: run a guided step's two branches as one batch (faster on a GPU)
        or one after the other (the peak memory of one branch); None: batch on CUDA.
        track_conditioning / track_strength / track_sigma: override the config's (see the class docstring).
        """
        # 1. Check inputs
        guidance_scale = self.config.default_guidance_scale if guidance_scale is None else guidance_scale
        guidance_interval = self.config.default_guidance_interval if guidance_interval is None else guidance_interval
        track_conditioning = track_conditioning or self.config.track_conditioning
        track_strength = self.config.track_strength if track_strength is None else track_strength
        track_sigma = self.config.track_sigma if track_sigma is None else track_sigma
        num_frames, height, width = self.check_inputs(image, prompt, negative_prompt, num_frames, height, width,
                                                      num_inference_steps, guidance_scale, output_type,
                                                      guidance_interval, last_image, guidance_scale_2,
                                                      track_conditioning, track_strength)
        tracks = prepare_tracks(tracks, num_frames, width, height, image_size(image))
        if tracks is not None and tracks.num_tracks == 0:
            tracks = None
        if tracks is not None and track_conditioning == "wan-move" and self.motion_adapter is not None:
            raise ValueError("track_conditioning='wan-move' cannot drive this pipeline's motion_adapter (it is trained "
                             "with 'videoai'); use track_conditioning='videoai'")
        guidance_scale_2 = guidance_scale if guidance_scale_2 is None else guidance_scale_2
        batch_size = num_videos_per_prompt
        do_cfg = guidance_scale > 1.0 and (tracks is not None or prompt is not None or negative_prompt is not None)
        device = self._execution_device

        # 2. Encode prompt and images
        prompt_embeds, negative_embeds = self.encode_prompt(prompt, negative_prompt, batch_size, do_cfg,
                                                            max_sequence_length)
        image_embeds = self.encode_image(image, batch_size, last_image)

        # 3. Prepare latents and the conditions of both branches
        last_pixels = None if last_image is None else self.preprocess_image(last_image, height, width)
        latents, condition = self.prepare_latents(self.preprocess_image(image, height, width), last_pixels,
                                                  batch_size, num_frames, generator, latents)
        track_condition = condition
        if tracks is not None:
            track_condition = self.layout.with_tracks(condition, tracks.to(device), track_conditioning, track_sigma,
                                                      track_strength, self.config.mark_tracks_in_mask,
                                                      last_image is not None)
        conditional_modulations, unconditional_modulations = self.motion_modulations(
            tracks, *condition.latent.shape[-2:], batch_size, do_cfg)
        conditional = _Branch(track_condition, prompt_embeds, image_embeds, conditional_modulations)
        if do_cfg:
            # Wan-Move's generate code edits the condition in place through a view (replace_feature on
            # y.unsqueeze(0)), so its unguided branch runs on the edited condition too; we reproduce what it runs.
            unguided_condition = track_condition if track_conditioning == "wan-move" else condition
            unconditional = _Branch(unguided_condition, negative_embeds, image_embeds, unconditional_modulations)
        if batch_guidance is None:
            batch_guidance = device.type == "cuda"
        if do_cfg and batch_guidance:
            both = conditional.cat(unconditional)
        guided_steps = math.ceil(guidance_interval * num_inference_steps) if do_cfg else 0

        # 4. Denoising loop (flow matching: the transformer predicts the velocity noise - data)
        layout = self.layout
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(self.scheduler.timesteps):
                expert = layout.expert(t)  # Wan 2.2 A14B: high-noise expert 0, then low-noise expert 1
                if i >= guided_steps:
                    velocity = self.predict(expert, latents, t, conditional)
                else:
                    if batch_guidance:
                        guided, unguided = self.predict(expert, torch.cat([latents, latents]), t, both).chunk(2)
                    else:
                        guided = self.predict(expert, latents, t, conditional)
                        unguided = self.predict(expert, latents, t, unconditional)
                    scale = guidance_scale if expert == 0 else guidance_scale_2
                    velocity = unguided + scale * (guided - unguided)
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
                progress_bar.update()
        latents = layout.finish(latents, track_condition)

        # 5. Decode
        if output_type == "latent":
            frames = latents
        else:
            video = self.vae.decode(denormalize_latents(self.vae, latents).to(self.vae.dtype), return_dict=False)[0]
            frames = self.video_processor.postprocess_video(video, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return frames, tracks
        return TrajectoryPipelineOutput(frames=frames, tracks=tracks)


def _layout_of(parts: dict, boundary_ratio: float | None, expand_timesteps: bool) -> WanLayout:
    config = {name: getattr(parts.get(name), "config", None) for name in ("vae", "transformer", "transformer_2")}
    scheduler = parts.get("scheduler")
    return resolve_layout(config["vae"], config["transformer"], config["transformer_2"], boundary_ratio,
                          expand_timesteps, {name for name, part in parts.items() if part is not None},
                          scheduler.config.get("num_train_timesteps", 1000) if scheduler is not None else 1000)


def _check_track_settings(track_conditioning: object, track_strength: object) -> None:
    if track_conditioning not in TRACK_CONDITIONINGS:
        raise ValueError(f"track_conditioning must be one of {TRACK_CONDITIONINGS}, got {track_conditioning!r}")
    if isinstance(track_strength, bool) or not isinstance(track_strength, (int, float)) \
            or not math.isfinite(track_strength) or track_strength < 0:
        raise ValueError(f"track_strength must be a finite number >= 0, got {track_strength!r}")
