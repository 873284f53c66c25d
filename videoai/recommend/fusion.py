"""Fused ranking: beam-search candidates and the item head's top items, re-scored exactly under both.

The generative score log P(semantic ID | history) and the item head's full-catalogue log-softmax (the decoder
state that predicts the first token, dotted with each item's vector) rank items differently; their weighted sum
ranks better than either on Amazon logs (see README). Both scores are exact for every candidate: items that beam
search did not reach get their trie-constrained log-probability by teacher forcing.
"""

from __future__ import annotations

import torch

from .constraints import TrieTables


def mask_seen(scores: torch.Tensor, history_items: torch.Tensor, history_mask: torch.Tensor) -> torch.Tensor:
    """scores (B, N) over all items with each user's history items (B, T) (padding: mask False) set to -inf."""
    slots = history_items.masked_fill(~history_mask | (history_items < 0), scores.shape[1])  # (B, T); N = padding
    seen = scores.new_zeros(scores.shape[0], scores.shape[1] + 1, dtype=torch.bool).scatter_(1, slots, True)
    return scores.masked_fill(seen[:, :-1], float("-inf"))  # (B, N)


def fusion_candidates(model, history_codes: torch.Tensor, history_mask: torch.Tensor, history_items: torch.Tensor,
                      beam_items: torch.Tensor, beam_scores: torch.Tensor, item_codes: torch.Tensor, trie,
                      exclude_seen: bool = True, encoded: tuple[torch.Tensor, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates (B, 2K) (-1 = none): the beam's K items and the item head's top K not in the beam, with their
    exact generative log-probabilities (B, 2K) and item-head log-probabilities (B, 2K) (-inf for none).

    beam_items / beam_scores (B, K): constrained beam-search items (-1 = dead beam) and their log-probabilities.
    With exclude_seen the head leaves out history items (beam search already did). encoded: (memory, memory_mask)
    of model.encode for these histories when the caller has it (beam_search can take the same).
    """
    beams = beam_items.shape[1]
    tables = TrieTables.of(trie, model.config.codebook_size, history_codes.device)
    memory, memory_mask = encoded or model.encode(history_codes, history_mask, history_items=history_items)
    head = model.item_log_probs(memory, memory_mask)  # (B, N)
    if exclude_seen:
        head = mask_seen(head, history_items, history_mask)
    extra = head.topk(min(beams, head.shape[1]), dim=1).indices  # (B, K') head candidates
    extra = extra.masked_fill((extra[:, :, None] == beam_items[:, None, :]).any(-1), -1)  # already in the beam
    sessions = item_codes[extra.clamp_min(0)][:, :, None, :]  # (B, K', M=1, L)
    extra_scores = model.score_sessions(memory, memory_mask, sessions, tables.targets(sessions))  # (B, K')
    items = torch.cat([beam_items, extra], 1)  # (B, K + K')
    generative = torch.cat([beam_scores, extra_scores], 1).masked_fill(items < 0, float("-inf"))
    return items, generative, head.gather(1, items.clamp_min(0)).masked_fill(items < 0, float("-inf"))


def fuse(items: torch.Tensor, generative: torch.Tensor, head: torch.Tensor, weight: float, k: int
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of candidates (B, C) by generative + weight * head -> items (B, k) (-1 where fewer), scores (B, k)."""
    fused = (generative + weight * head).masked_fill(items < 0, float("-inf"))
    scores, order = fused.topk(min(k, items.shape[1]), dim=1)  # (B, k)
    return items.gather(1, order).masked_fill(scores.isneginf(), -1), scores


def fused_top_k(model, history_codes: torch.Tensor, history_mask: torch.Tensor, history_items: torch.Tensor,
                beam_items: torch.Tensor, beam_scores: torch.Tensor, item_codes: torch.Tensor, trie, k: int,
                weight: float, exclude_seen: bool = True, encoded: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k items (B, k) (-1 where fewer) by log P_gen + weight * log P_head over fusion_candidates, and those
    fused scores (B, k)."""
    candidates = fusion_candidates(model, history_codes, history_mask, history_items, beam_items, beam_scores,
                                   item_codes, trie, exclude_seen, encoded)
    return fuse(*candidates, weight, k)
