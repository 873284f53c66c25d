"""SASRec (Kang & McAuley, ICDM 2018) peer for bench_recommend.py, trained with cross-entropy over all items.

Faithful to the reference model: item embeddings scaled by sqrt(d) + learned positions, embedding dropout, blocks of
[LayerNorm(Q) -> causal self-attention with the normalised query as residual -> LayerNorm -> point-wise FFN with
residual], padded positions zeroed after every block, final LayerNorm, scores = dot product with the (shared) item
embeddings. Two deliberate changes, both standard in later re-implementations: padded keys are masked in attention
(the reference lets queries attend to zero vectors), and the loss is softmax cross-entropy over all items instead of
one sampled negative, which is much stronger on Amazon Beauty (see ../shared/data/README.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SASRecConfig:
    num_items: int
    max_length: int = 50
    d_model: int = 64
    num_heads: int = 1
    num_layers: int = 2
    dropout: float = 0.3


class SASRecBlock(nn.Module):
    """One SASRec block (attention then point-wise feed-forward)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.attn_norm, self.ffn_norm = nn.LayerNorm(d_model, eps=1e-8), nn.LayerNorm(d_model, eps=1e-8)
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_model), nn.Dropout(dropout), nn.ReLU(),
                                 nn.Linear(d_model, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        query = self.attn_norm(x)
        x = query + self.attn(query, x, x, attn_mask=attn_mask, need_weights=False)[0]
        x = self.ffn_norm(x)
        x = x + self.ffn(x)
        return x * valid[..., None]


class SASRec(nn.Module):
    """Self-attentive sequential recommender; items are 0-based indices, -1 is padding."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.num_items + 1, config.d_model, padding_idx=0)  # row 0 = padding
        self.position_embedding = nn.Embedding(config.max_length, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(SASRecBlock(config.d_model, config.num_heads, config.dropout)
                                    for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.d_model, eps=1e-8)
        for name, param in self.named_parameters():  # the reference initialises with xavier_normal_
            if param.dim() > 1:
                nn.init.xavier_normal_(param)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """history (B, T) left-padded item indices -> hidden states (B, T, D)."""
        batch, length = history.shape
        valid = history >= 0
        x = self.item_embedding(history + 1) * math.sqrt(self.config.d_model)
        positions = torch.arange(self.config.max_length - length, self.config.max_length, device=history.device)
        x = self.dropout(x + self.position_embedding(positions)) * valid[..., None]
        causal = torch.ones(length, length, dtype=torch.bool, device=history.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=history.device)
        allowed = causal & (valid[:, None, :] | eye)  # (B, T, T); a padded query sees itself, never NaN
        attn_mask = (~allowed).repeat_interleave(self.config.num_heads, 0)  # True = blocked, (B*H, T, T)
        for block in self.blocks:
            x = block(x, attn_mask, valid)
        return self.final_norm(x)

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., D) -> scores over all items (..., N)."""
        return hidden @ self.item_embedding.weight[1:].T

    def loss(self, batch: dict) -> torch.Tensor:
        """Cross-entropy over all items at every position with a next item."""
        hidden = self.forward(batch["history_items"])  # (B, T, D)
        targets = batch["target_items"][..., 0]  # (B, T), -1 = no target
        return F.cross_entropy(self.item_logits(hidden).flatten(0, 1), targets.flatten(), ignore_index=-1)

    @torch.no_grad()
    def recommend(self, history: torch.Tensor, k: int, exclude_seen: bool = True) -> torch.Tensor:
        """Top-k item indices (B, k) after the (left-padded) history (B, T)."""
        scores = self.item_logits(self.forward(history)[:, -1])  # (B, N)
        if exclude_seen:
            seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, history.clamp_min(0), history >= 0)
            scores = scores.masked_fill(seen, float("-inf"))
        return scores.topk(k, dim=-1).indices


def train_sasrec(model: SASRec, loader, epochs: int, lr: float = 1e-3, weight_decay: float = 0.0,
                 log=print, eval_fn=None, lr_schedule=None) -> dict:
    """Plain AdamW loop (the reference uses Adam, lr 1e-3); returns {'seconds', 'sequences_per_second', 'losses'}.

    eval_fn(model) -> dict runs after each epoch (eval mode, not counted in the training time) and is logged.
    lr_schedule(step) -> factor of lr at optimizer step `step` (None: constant, as the reference).
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule) if lr_schedule else None
    model.train()
    start, sequences, losses, paused = time.perf_counter(), 0, [], 0.0
    for epoch in range(epochs):
        total = torch.zeros(())
        for batch in loader:
            loss = model.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.detach()
            sequences += batch["history_items"].shape[0]
        losses.append(total.item() / len(loader))
        log(f"sasrec epoch {epoch + 1}/{epochs} loss {losses[-1]:.4f} ({time.perf_counter() - start - paused:.0f}s)")
        if eval_fn is not None:
            pause = time.perf_counter()
            model.eval()
            log(f"sasrec validation: {eval_fn(model)}")
            model.train()
            paused += time.perf_counter() - pause
    seconds = time.perf_counter() - start - paused
    model.eval()
    return {"seconds": seconds, "sequences_per_second": sequences / seconds, "losses": losses}
