"""Zero-shot video tags and embeddings from a local CLIP / SigLIP / X-CLIP folder via transformers' Auto classes.

CLIP and SigLIP see a video as a few frames sampled uniformly: per-frame image embeddings, each L2-normalised, are
averaged and normalised again. X-CLIP takes its own number of frames (8 for the released models) and returns one
video embedding, with text conditioned on the video (its prompt generator), so its scores come from its forward.
Scores: softmax over the tag list for CLIP / X-CLIP (contrastive training), sigmoid per tag for SigLIP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ._frames import load_frames

DEFAULT_TEMPLATE = "a video of {tag}"
DEFAULT_IMAGE_FRAMES = 8  # frames averaged for image models (CLIP / SigLIP)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_SIGMOID_TYPES = ("siglip", "siglip2")


def _pooled(output) -> torch.Tensor:
    """transformers < 5 returns the features tensor, >= 5 a ModelOutput whose pooler_output holds them."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@dataclass
class ZeroShotModel:
    """A vision-language model loaded from a local folder, with how it samples frames and turns logits into scores."""

    model: torch.nn.Module
    processor: object
    path: str
    num_frames: int
    is_video_model: bool  # X-CLIP: one embedding from the clip; else image embeddings averaged over frames
    sigmoid: bool  # SigLIP scores tags independently; CLIP / X-CLIP normalise over the tag list

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def model_type(self) -> str:
        return self.model.config.model_type

    def _pixel_inputs(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """(T, H, W, 3) uint8 -> the processor's pixel inputs on the model's device and dtype."""
        images = list(frames.cpu().numpy())  # the processors take HWC uint8 arrays
        if self.is_video_model:
            inputs = self.processor(videos=images, return_tensors="pt")
        else:
            inputs = self.processor.image_processor(images=images, return_tensors="pt")
        dtype = self.model.dtype
        return {k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device)) for k, v in inputs.items()}

    def _text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        text_config = getattr(self.model.config, "text_config", None)
        max_length = getattr(text_config, "max_position_embeddings", None)
        # SigLIP was trained on max_length padding; its text tower pools the last position.
        padding = "max_length" if self.sigmoid else True
        inputs = tokenizer(texts, padding=padding, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}

    @torch.no_grad()
    def video_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) uint8 frames (already sampled) -> (D,) L2-normalised float32."""
        pixels = self._pixel_inputs(frames)
        if self.is_video_model:
            return F.normalize(_pooled(self.model.get_video_features(**pixels))[0].float(), dim=-1)
        per_frame = F.normalize(_pooled(self.model.get_image_features(**pixels)).float(), dim=-1)  # (T, D)
        return F.normalize(per_frame.mean(0), dim=-1)  # (D,)

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """(V,) prompts -> (V, D) L2-normalised float32 text embeddings."""
        return F.normalize(_pooled(self.model.get_text_features(**self._text_inputs(texts))).float(), dim=-1)

    @torch.no_grad()
    def scores(self, frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """(T, H, W, 3) uint8 sampled frames, (V,) prompts -> (V,) scores in [0, 1]."""
        if self.is_video_model:  # X-CLIP rewrites the text with the video (prompt generator): use its forward
            out = self.model(**self._text_inputs(prompts), **self._pixel_inputs(frames))
            return out.logits_per_video[0].float().softmax(-1)
        cosine = self.text_embeddings(prompts) @ self.video_embedding(frames)  # (V,)
        logits = cosine * self.model.logit_scale.float().exp()
        if self.sigmoid:
            return torch.sigmoid(logits + self.model.logit_bias.float())
        return logits.softmax(-1)


def load_zero_shot_model(
    folder: str | os.PathLike | None, *, device=None, dtype: torch.dtype | None = None, num_frames: int | None = None
) -> ZeroShotModel:
    """Load a CLIP / SigLIP / X-CLIP checkpoint (save_pretrained layout) from a local folder; never downloads."""
    if folder is None:
        raise ValueError(
            "model: no local weights named; pass a folder holding a CLIP, SigLIP or X-CLIP checkpoint "
            "(config.json, model.safetensors and the processor/tokenizer files written by save_pretrained)"
        )
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"model: expected a folder path, got {type(folder).__name__}")
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(
            f"model folder {str(path)!r} does not exist; expected a local CLIP / SigLIP / X-CLIP checkpoint folder "
            f"(config.json + model.safetensors + processor files)"
        )
    present = sorted(p.name for p in path.iterdir())
    if not (path / "config.json").is_file() or not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise FileNotFoundError(
            f"model folder {str(path)!r} lacks weights: expected config.json and one of {_WEIGHT_FILES} "
            f"(as written by save_pretrained), found {present}"
        )
    from transformers import AutoModel, AutoProcessor  # imported here: transformers' Auto registry is slow to import

    model = AutoModel.from_pretrained(path, local_files_only=True)
    if dtype is not None:
        model = model.to(dtype)
    has_vision = hasattr(model, "get_image_features") or hasattr(model, "get_video_features")
    if not hasattr(model, "get_text_features") or not has_vision:
        raise ValueError(
            f"model folder {str(path)!r}: {type(model).__name__} is not a vision-language model (needs text and "
            f"image/video features); expected CLIP, SigLIP or X-CLIP"
        )
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise FileNotFoundError(
            f"model folder {str(path)!r}: cannot load its processor (tokenizer + image processor files expected, "
            f"found {present}): {error}"
        ) from error
    if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
        raise FileNotFoundError(
            f"model folder {str(path)!r}: expected a processor with a tokenizer and an image processor, got "
            f"{type(processor).__name__} (found {present})"
        )
    model_type = model.config.model_type
    is_video_model = hasattr(model, "get_video_features") and hasattr(model, "mit")  # X-CLIP
    if num_frames is None:
        num_frames = model.config.vision_config.num_frames if is_video_model else DEFAULT_IMAGE_FRAMES
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames: expected a positive int, got {num_frames!r}")
    if is_video_model and num_frames != model.config.vision_config.num_frames:
        raise ValueError(
            f"num_frames: X-CLIP at {str(path)!r} was built for {model.config.vision_config.num_frames} frames, "
            f"got {num_frames}"
        )
    sigmoid = model_type in _SIGMOID_TYPES or (hasattr(model, "logit_bias") and not is_video_model)
    model = model.eval()
    if device is not None:
        model = model.to(device)
    return ZeroShotModel(model, processor, str(path), num_frames, is_video_model, sigmoid)


def check_tags(tags) -> list[str]:
    """A non-empty list of distinct non-empty tag strings, else a clear error."""
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise TypeError(f"tags: expected a list of tag strings, got {type(tags).__name__}")
    if not tags:
        raise ValueError("tags: expected at least one tag to score, got an empty list")
    bad = [t for t in tags if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"tags: expected non-empty strings, got {bad[:3]!r}")
    if len(set(tags)) != len(tags):
        raise ValueError(f"tags: expected distinct tags, got duplicates {sorted({t for t in tags if tags.count(t) > 1})}")
    return list(tags)


def zero_shot_tags(
    video, tags: list[str], model: ZeroShotModel | str | os.PathLike | None, *, top_k: int | None = 5,
    template: str = DEFAULT_TEMPLATE,
) -> list[tuple[str, float]]:
    """Score `tags` for a video (path, VideoClip or (T, H, W, 3) uint8) -> the top_k (tag, score), best first."""
    tags = check_tags(tags)
    if not isinstance(template, str) or "{tag}" not in template:
        raise ValueError(f"template: expected a string containing '{{tag}}', got {template!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k: expected a positive int or None, got {top_k!r}")
    if not isinstance(model, ZeroShotModel):
        model = load_zero_shot_model(model)
    frames = load_frames(video, model.num_frames)  # (num_frames, H, W, 3)
    scores = model.scores(frames, [template.format(tag=tag) for tag in tags])  # (V,)
    values, order = scores.cpu().sort(descending=True)
    k = len(tags) if top_k is None else min(top_k, len(tags))
    return [(tags[i], float(v)) for v, i in zip(values[:k].tolist(), order[:k].tolist())]
