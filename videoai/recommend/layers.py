"""Transformer blocks of the OneRec model: SDPA attention, encoder layer, decoder layer with MoE and KV cache."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .moe import MoEFeedForward


class Attention(nn.Module):
    """Multi-head attention on F.scaled_dot_product_attention; keys/values can be projected once and reused.

    No dropout on attention probabilities: it forces SDPA's slow math path and a (B, H, Q, S) random mask, while
    the residual dropout around each block regularises as well on these small models.
    """

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context (B, S, D) -> keys, values (B, H, S, D/H)."""
        key, value = rearrange(self.key_value(context), "b s (two h d) -> two b h s d", two=2, h=self.num_heads)
        return key, value

    def forward(self, x: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        """x (B, Q, D) attends to key/value (B, H, S, D/H); mask broadcastable to (B, H, Q, S), True = attend."""
        query = rearrange(self.query(x), "b q (h d) -> b h q d", h=self.num_heads)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=is_causal)
        return self.out(rearrange(out, "b h q d -> b q (h d)"))


class FeedForward(nn.Module):
    """Dense GELU MLP (regularised by the block's residual dropout only, like the MoE experts)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), x.new_zeros(())


class EncoderLayer(nn.Module):
    """Pre-LN causal self-attention + dense feed-forward over history items."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = Attention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), mask (B, 1, S, S) -> (B, S, D)."""
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, *self.attn.project_kv(h), mask=mask))
        return x + self.drop(self.ffn(self.norm2(x))[0])


class DecoderLayer(nn.Module):
    """Pre-LN decoder block on a (B, R, S, D) layout: R independent rows of S tokens each.

    Self-attention is causal within a row (rows are folded into the batch), cross-attention lets every row's tokens
    attend to the user's encoder memory (rows unfolded into the query axis, so memory is never copied per row).
    Rows are history positions in training (teacher forcing at every position) and beams at inference.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float, num_experts: int = 0, top_k: int = 2,
                 capacity_factor: float = 1.25, expert_d_ff: int | None = None, dispatch: str = "capacity"):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = Attention(d_model, num_heads)
        self.cross_attn = Attention(d_model, num_heads)
        if num_experts > 0:
            self.ffn = MoEFeedForward(d_model, expert_d_ff or d_ff, num_experts, top_k, capacity_factor, dispatch)
        else:
            self.ffn = FeedForward(d_model, d_ff)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], cross_mask: torch.Tensor,
                token_mask: torch.Tensor | None = None, cache: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, R, S, D); cross_mask broadcastable to (B, H, R*S, M); cache [keys, values] (B*R, H, s, D/H) or None.

        With a cache, x holds only the new step (S = 1) and the cache is extended in place.
        Returns (x (B, R, S, D), MoE load-balancing loss).
        """
        batch, rows, steps, dim = x.shape
        h = self.norm1(x).reshape(batch * rows, steps, dim)  # (B*R, S, D)
        key, value = self.self_attn.project_kv(h)
        if cache is not None:
            if cache[0] is not None:
                key, value = torch.cat([cache[0], key], 2), torch.cat([cache[1], value], 2)
            cache[0], cache[1] = key, value
            attn = self.self_attn(h, key, value)  # the single new token may see every cached step
        else:
            attn = self.self_attn(h, key, value, is_causal=True)
        x = x + self.drop(attn.view(batch, rows, steps, dim))

        h = self.norm2(x).reshape(batch, rows * steps, dim)  # (B, R*S, D)
        x = x + self.drop(self.cross_attn(h, *memory_kv, mask=cross_mask).view(batch, rows, steps, dim))

        out, aux_loss = self.ffn(self.norm3(x), token_mask)
        return x + self.drop(out), aux_loss
