"""Trajectory-controlled image-to-video on diffusers' Wan stack: `TrajectoryImageToVideoPipeline`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
from diffusers.loaders import WanLoraLoaderMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from videoai.tokenize.tracks import Tracks

from .conditioning import apply_tracks, check_num_frames, latent_num_frames, motion_maps
from .latents import denormalize_latents, encode_image_condition
from .model import TrajectoryDenoiser, null_text_embeds
from .motion_adapter import MotionAdapter

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class TrajectoryPipelineOutput(BaseOutput):
    """frames: per output_type — "pil": list (B) of lists (T) of images; "np": (B, T, H, W, 3) float in [0, 1];
    "pt": (B, T, 3, H, W) float in [0, 1]; "latent": (B, C, L, h, w). tracks: the tracks used, in output pixels."""

    frames: Any
    tracks: Tracks | None


def _image_size(image: Any) -> tuple[int, int]:
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


def _to_processor_input(image: Any) -> Any:
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


class TrajectoryImageToVideoPipeline(DiffusionPipeline, WanLoraLoaderMixin):
    """Image + motion paths -> video. Components as `WanImageToVideoPipeline` (text and CLIP encoders optional)
    plus an optional `MotionAdapter`; the transformer is a stock `WanTransformer3DModel`.

    Config: track_sigma (Gaussian radius of a track on the latent grid, in latent cells), mark_tracks_in_mask
    (write track Gaussians into the I2V mask channels), default_num_frames / default_height / default_width
    (used when the call gives none; None: 81 frames and the input image's size rounded down to a multiple of
    `spatial_multiple`), default_guidance_scale / default_guidance_interval (the model's sampling operating point,
    used when the call gives none; 1.0 / 1.0: no guidance).
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->motion_adapter->transformer->vae"
    _optional_components = ["tokenizer", "text_encoder", "image_encoder", "image_processor", "motion_adapter"]

    def __init__(
        self,
        vae: AutoencoderKLWan,
        transformer: WanTransformer3DModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        tokenizer=None,
        text_encoder=None,
        image_encoder=None,
        image_processor=None,
        motion_adapter: MotionAdapter | None = None,
        track_sigma: float = 1.0,
        mark_tracks_in_mask: bool = True,
        default_num_frames: int | None = None,
        default_height: int | None = None,
        default_width: int | None = None,
        default_guidance_scale: float = 1.0,
        default_guidance_interval: float = 1.0,
    ):
        super().__init__()
        self.register_modules(vae=vae, transformer=transformer, scheduler=scheduler, tokenizer=tokenizer,
                              text_encoder=text_encoder, image_encoder=image_encoder, image_processor=image_processor,
                              motion_adapter=motion_adapter)
        self.register_to_config(track_sigma=track_sigma, mark_tracks_in_mask=mark_tracks_in_mask,
                                default_num_frames=default_num_frames, default_height=default_height,
                                default_width=default_width, default_guidance_scale=default_guidance_scale,
                                default_guidance_interval=default_guidance_interval)
        self.vae_scale_factor_temporal = vae.config.scale_factor_temporal
        self.vae_scale_factor_spatial = vae.config.scale_factor_spatial
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load from a local folder (diffusers layout); nothing is downloaded."""
        path = Path(pretrained_model_name_or_path)
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"no pipeline at {str(path)!r}: expected a local diffusers folder with model_index.json (weights are "
                "never downloaded; save one with pipe.save_pretrained(dir) or convert Wan I2V weights to diffusers)"
            )
        kwargs.setdefault("local_files_only", True)
        return super().from_pretrained(str(path), **kwargs)

    @property
    def spatial_multiple(self) -> int:
        """Height and width must be multiples of this (VAE factor x transformer patch)."""
        return self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]

    def check_inputs(self, image, prompt, negative_prompt, num_frames, height, width, num_inference_steps,
                     guidance_scale, output_type, guidance_interval=1.0) -> tuple[int, int, int]:
        """Validate the call; returns (num_frames, height, width) with defaults filled in."""
        image_height, image_width = _image_size(image)
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
        if not isinstance(guidance_scale, (int, float)) or guidance_scale < 0:
            raise ValueError(f"guidance_scale must be a number >= 0, got {guidance_scale!r}")
        if isinstance(guidance_interval, bool) or not isinstance(guidance_interval, (int, float)) \
                or not 0 < guidance_interval <= 1:
            raise ValueError(f"guidance_interval must be a fraction of the steps in (0, 1], got {guidance_interval!r}")
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
            inputs = self.tokenizer([text], padding="max_length", max_length=max_sequence_length, truncation=True,
                                    add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
            mask = inputs.attention_mask.to(self.text_encoder.device)
            hidden = self.text_encoder(inputs.input_ids.to(self.text_encoder.device), mask).last_hidden_state
            hidden = hidden * mask[..., None]  # zero the padding as Wan does
            return hidden.to(device, dtype).expand(batch_size, -1, -1)

        positive = encode(prompt or "")
        negative = encode(negative_prompt or "") if do_classifier_free_guidance else None
        return positive, negative

    def encode_image(self, image: Any, batch_size: int) -> torch.Tensor | None:
        """CLIP image tokens for Wan 2.1 I2V transformers (image_dim set); None otherwise."""
        if self.transformer.config.image_dim is None:
            return None
        if self.image_encoder is None or self.image_processor is None:
            raise ValueError("the transformer expects CLIP image embeddings (image_dim set) but the pipeline has no "
                             "image_encoder/image_processor")
        pixels = self.image_processor(images=_to_processor_input(image), return_tensors="pt")
        hidden = self.image_encoder(**pixels.to(self.image_encoder.device), output_hidden_states=True).hidden_states[-2]
        return hidden.to(self._execution_device, self.transformer.dtype).expand(batch_size, -1, -1)

    def prepare_latents(self, image: torch.Tensor, tracks: Tracks | None, batch_size: int, num_frames: int,
                        generator, latents: torch.Tensor | None, track_sigma: float):
        """Noise (B, C, L, h, w), plain I2V condition and the track-edited one, each (B, f + C, L, h, w)."""
        device = self._execution_device
        condition = encode_image_condition(self.vae, image.to(device), num_frames)  # (1, f + C, L, h, w)
        condition = condition.expand(batch_size, -1, -1, -1, -1)
        channels = self.vae.config.z_dim
        shape = (batch_size, channels, latent_num_frames(num_frames, self.vae_scale_factor_temporal),
                 *condition.shape[-2:])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        track_condition = condition
        if tracks is not None:
            track_condition = apply_tracks(condition, tracks, self.vae_scale_factor_temporal, track_sigma,
                                           mark_mask=self.config.mark_tracks_in_mask)
        return latents.to(device, torch.float32), condition, track_condition

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
        guidance_interval: float | None = None,
        batch_guidance: bool | None = None,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
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
        guidance_scale (default: the config's default_guidance_scale; guidance_interval likewise) > 1 runs
        classifier-free guidance against the same model without tracks (and with negative_prompt); it is skipped
        when there is neither a track nor a prompt to guide by. guidance_interval in (0, 1]: guide only the first
        fraction of the steps (the noisy ones, where layout and motion are decided; Kynkaanniemi et al. 2024 limit
        guidance to an interval too); later steps run the conditional branch alone, at the cost of an unguided one.
        batch_guidance: run a guided step's two branches as one batch (faster on a GPU) or one after the other
        (the peak memory of a generation without guidance, about the same time on a CPU); None: batch on CUDA.
        """
        # 1. Check inputs
        if guidance_scale is None:
            guidance_scale = self.config.default_guidance_scale
        if guidance_interval is None:
            guidance_interval = self.config.default_guidance_interval
        num_frames, height, width = self.check_inputs(image, prompt, negative_prompt, num_frames, height, width,
                                                      num_inference_steps, guidance_scale, output_type,
                                                      guidance_interval)
        tracks = prepare_tracks(tracks, num_frames, width, height, _image_size(image))
        if tracks is not None and tracks.num_tracks == 0:
            tracks = None
        track_sigma = self.config.track_sigma if track_sigma is None else track_sigma
        batch_size = num_videos_per_prompt
        do_cfg = guidance_scale > 1.0 and (tracks is not None or prompt is not None)
        device = self._execution_device

        # 2. Encode prompt and image
        prompt_embeds, negative_embeds = self.encode_prompt(prompt, negative_prompt, batch_size, do_cfg,
                                                            max_sequence_length)
        image_embeds = self.encode_image(image, batch_size)
        pixels = self.video_processor.preprocess(_to_processor_input(image), height=height, width=width)  # (1,3,H,W)

        # 3. Prepare latents and conditions
        latents, condition, track_condition = self.prepare_latents(
            pixels.to(device, torch.float32), tracks, batch_size, num_frames, generator, latents, track_sigma)
        denoiser = TrajectoryDenoiser(self.transformer)
        modulations = None
        if self.motion_adapter is not None and tracks is not None:
            maps = motion_maps(tracks.to(device), condition.shape[-2], condition.shape[-1],
                               self.vae_scale_factor_temporal, track_sigma)  # (3f, L, h, w)
            maps = maps[None].expand(batch_size * (1 + do_cfg), -1, -1, -1, -1)
            active = torch.ones(batch_size * (1 + do_cfg), device=device)
            active[batch_size:] = 0.0  # the unconditional half runs the plain transformer
            adapter_dtype = self.motion_adapter.dtype
            modulations = self.motion_adapter(maps.to(adapter_dtype), active.to(adapter_dtype))
        dtype = self.transformer.dtype
        conditional_inputs = (track_condition.to(dtype), prompt_embeds, image_embeds,
                              None if modulations is None else [(scale[:batch_size], shift[:batch_size])
                                                                  for scale, shift in modulations])
        if batch_guidance is None:
            batch_guidance = device.type == "cuda"
        if do_cfg and batch_guidance:
            guided_inputs = (torch.cat([track_condition, condition]).to(dtype),  # (2B, f + C, L, h, w)
                             torch.cat([prompt_embeds, negative_embeds]),
                             None if image_embeds is None else torch.cat([image_embeds, image_embeds]), modulations)
        elif do_cfg:
            unconditional_inputs = (condition.to(dtype), negative_embeds, image_embeds,
                                    None if modulations is None else [(scale[batch_size:], shift[batch_size:])
                                                                        for scale, shift in modulations])
        guided_steps = math.ceil(guidance_interval * num_inference_steps) if do_cfg else 0

        def velocity_of(model_input, t, inputs):
            condition_input, text_input, image_input, step_modulations = inputs
            return denoiser(model_input.to(dtype), condition_input, t.expand(model_input.shape[0]), text_input,
                            image_input, modulations=step_modulations).float()

        # 4. Denoising loop (flow matching: the transformer predicts the velocity noise - data)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(self.scheduler.timesteps):
                if i >= guided_steps:
                    velocity = velocity_of(latents, t, conditional_inputs)
                else:
                    if batch_guidance:
                        both = velocity_of(torch.cat([latents, latents]), t, guided_inputs)  # (2B, C, L, h, w)
                        conditional, unconditional = both.chunk(2)
                    else:
                        conditional = velocity_of(latents, t, conditional_inputs)
                        unconditional = velocity_of(latents, t, unconditional_inputs)
                    velocity = unconditional + guidance_scale * (conditional - unconditional)
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
                progress_bar.update()

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
