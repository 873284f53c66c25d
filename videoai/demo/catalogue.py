"""A small video catalogue and simulated users for the demo: synthetic clips with known tags, users with tastes."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from videoai.synthetic import ShapesConfig, make_clip


@dataclass
class Catalogue:
    """Catalogue videos (frames (T,H,W,3) uint8 each), their ids and their ground-truth clip tags."""

    item_ids: list[str]
    videos: list[torch.Tensor]
    tags: list[list[str]]


def make_catalogue(size: int, config: ShapesConfig, seed: int) -> Catalogue:
    """`size` seeded synthetic clips, ids "clip_00000", ... (the generated video joins it later)."""
    clips = [make_clip(seed + i, config) for i in range(size)]
    return Catalogue([f"clip_{i:05d}" for i in range(size)], [c.frames for c in clips], [list(c.clip_tags) for c in clips])


def simulate_users(catalogue: Catalogue, num_users: int, history_length: int, seed: int,
                   taste_prefix: str = "color:") -> tuple[list[list[str]], list[str]]:
    """Users who each like one tag (a colour by default): 80% of their history carries it, 20% is anything.

    Returns histories (item ids, oldest first) and each user's liked tag.
    """
    generator = torch.Generator().manual_seed(seed)
    tastes = sorted({t for tags in catalogue.tags for t in tags if t.startswith(taste_prefix)})
    if not tastes:
        raise ValueError(f"taste_prefix: no catalogue tag starts with {taste_prefix!r}")
    by_taste = {t: [i for i, tags in enumerate(catalogue.tags) if t in tags] for t in tastes}
    histories, liked = [], []
    for _ in range(num_users):
        taste = tastes[int(torch.randint(len(tastes), (1,), generator=generator))]
        pool = torch.tensor(by_taste[taste])
        fits = torch.rand(history_length, generator=generator) < 0.8
        picks = torch.where(fits, pool[torch.randint(len(pool), (history_length,), generator=generator)],
                            torch.randint(len(catalogue.item_ids), (history_length,), generator=generator))
        histories.append([catalogue.item_ids[i] for i in picks.tolist()])
        liked.append(taste)
    return histories, liked
