"""Ranking metrics for next-item recommendation with one held-out item per user (leave-last-out)."""

from __future__ import annotations

import torch


def _hit_rank(ranked: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """ranked (B, >=k) item ids best first, targets (B,) -> 0-based rank of the target in the top k, or -1."""
    if ranked.ndim != 2 or targets.ndim != 1 or ranked.shape[0] != targets.shape[0]:
        raise ValueError(f"ranked must be (B, K) and targets (B,), got {tuple(ranked.shape)} and "
                         f"{tuple(targets.shape)}")
    if not 1 <= k <= ranked.shape[1]:
        raise ValueError(f"k must be in [1, {ranked.shape[1]}] (the number of ranked items), got {k}")
    hits = ranked[:, :k] == targets[:, None]  # (B, k)
    rank = hits.float().argmax(1)
    return torch.where(hits.any(1), rank, torch.full_like(rank, -1))


def recall_at_k(ranked: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user Recall@k (B,) float: 1 if the single target is in the top k."""
    return (_hit_rank(ranked, targets, k) >= 0).float()


def ndcg_at_k(ranked: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user NDCG@k (B,) float with one relevant item: 1 / log2(rank + 2) if it is in the top k, else 0."""
    rank = _hit_rank(ranked, targets, k)
    gain = 1.0 / torch.log2(rank.clamp_min(0).float() + 2.0)
    return torch.where(rank >= 0, gain, torch.zeros_like(gain))


def ranking_metrics(ranked: torch.Tensor, targets: torch.Tensor, ks=(5, 10)) -> dict[str, float]:
    """Mean Recall@k and NDCG@k over users, e.g. {"recall@5": ..., "ndcg@5": ..., "recall@10": ...}."""
    out = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranked, targets, k).mean().item()
        out[f"ndcg@{k}"] = ndcg_at_k(ranked, targets, k).mean().item()
    return out
