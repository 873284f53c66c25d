"""`tag_video`: top-k tags of a video from the trained tagger (default: the embedded one) or a zero-shot model."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import torch

from ._frames import is_video_batch, load_frames
from .tagger import VideoTagger, load_tagger
from .zero_shot import DEFAULT_TEMPLATE, ZeroShotModel, check_tags, load_zero_shot_model, zero_shot_tags

VideoModel = VideoTagger | ZeroShotModel


@lru_cache(maxsize=2)
def _default_tagger(device: str) -> VideoTagger:
    return load_tagger(None, device=device)


def load_video_model(model=None, *, device=None) -> VideoModel:
    """None -> the embedded synthetic-shapes tagger; a model -> itself; a folder -> VideoTagger or zero-shot model."""
    if model is None:
        return _default_tagger(str(device or "cpu"))
    if isinstance(model, (VideoTagger, ZeroShotModel)):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model: expected None, a VideoTagger, a ZeroShotModel or a local folder, got {type(model).__name__}"
        )
    config_file = Path(model) / "config.json"
    if config_file.is_file() and json.loads(config_file.read_text()).get("model_type") == VideoTagger.config_class.model_type:
        return load_tagger(model, device=device)
    return load_zero_shot_model(model, device=device)


def _check_top_k(top_k) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k: expected a positive int or None (all tags), got {top_k!r}")


def tag_video(
    video, model=None, *, top_k: int | None = 5, tags: list[str] | None = None, threshold: float | None = None,
    template: str = DEFAULT_TEMPLATE, device=None,
) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
    """Top-k (tag, score) pairs, best first, for one video (path, VideoClip, (T, H, W, 3) uint8) or a list of them.

    model: None (the embedded tagger trained on synthetic shapes), a `VideoTagger`, a `ZeroShotModel`, or a local
    folder of either. `tags` restricts a tagger to some of its tags and is required for zero-shot models.
    threshold drops tags scoring below it.
    """
    _check_top_k(top_k)
    if threshold is not None and not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold: expected a float or None, got {type(threshold).__name__}")
    model = load_video_model(model, device=device)
    videos = list(video) if is_video_batch(video) else [video]
    if not videos:
        raise ValueError("video: expected a video or a non-empty list of videos, got an empty list")
    if isinstance(model, ZeroShotModel):
        if tags is None:
            raise ValueError(f"tags: a zero-shot model ({model.path}) needs the list of tags to score, got None")
        results = [zero_shot_tags(v, tags, model, top_k=None, template=template) for v in videos]
    else:
        vocab = model.config.tags
        columns = list(range(len(vocab)))
        if tags is not None:
            tags = check_tags(tags)
            unknown = [t for t in tags if t not in vocab]
            if unknown:
                raise ValueError(f"tags: not in this tagger's vocabulary: {unknown[:5]} (it has {len(vocab)} tags)")
            columns = [vocab.index(t) for t in tags]
        scores = _batched_scores(videos, model)[:, columns]  # (B, V')
        values, order = scores.cpu().sort(dim=1, descending=True)
        results = [[(vocab[columns[i]], float(v)) for v, i in zip(row_values, row_order)]
                   for row_values, row_order in zip(values.tolist(), order.tolist())]
    results = [[(t, s) for t, s in r if threshold is None or s >= threshold][:top_k] for r in results]
    return results if is_video_batch(video) else results[0]


def _batched_scores(videos: list, model: VideoTagger) -> torch.Tensor:
    """Sigmoid scores (B, V); clips are resized one by one so clips of any size can share the batch."""
    device = next(model.parameters()).device
    pixels = torch.cat([model.preprocess(load_frames(v, model.config.num_frames).to(device)) for v in videos])
    with torch.no_grad():
        return model(pixels).logits.float().sigmoid()  # (B, T, 3, h, w) -> (B, V)
