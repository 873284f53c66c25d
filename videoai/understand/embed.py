"""`embed`: an L2-normalised vector per video, from the trained tagger's pooled features or a zero-shot model."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._frames import is_video_batch, load_frames
from .zero_shot import ZeroShotModel


@torch.no_grad()
def embed(video, model=None, *, device=None) -> torch.Tensor:
    """One video (path, VideoClip, (T, H, W, 3) uint8) -> (D,) float32 unit vector; a list of videos -> (B, D).

    model: None (the embedded synthetic-shapes tagger: its pooled feature), a `VideoTagger`, a `ZeroShotModel`
    (CLIP / SigLIP: mean of per-frame image embeddings; X-CLIP: its video embedding) or a local folder of either.
    """
    from .tagging import load_video_model  # here, not at the top: tagging imports transformers (~5 s)

    model = load_video_model(model, device=device)
    videos = list(video) if is_video_batch(video) else [video]
    if not videos:
        raise ValueError("video: expected a video or a non-empty list of videos, got an empty list")
    if isinstance(model, ZeroShotModel):
        vectors = torch.stack([model.video_embedding(load_frames(v, model.num_frames)) for v in videos])
    else:
        target = next(model.parameters()).device
        pixels = torch.cat([model.preprocess(load_frames(v, model.config.num_frames).to(target)) for v in videos])
        vectors = F.normalize(model.features(pixels).float(), dim=-1)  # (B, T, 3, h, w) -> (B, D)
    return vectors if is_video_batch(video) else vectors[0]
