"""Mixture-of-experts feed-forward layer: top-k routing, fixed-capacity dispatch, load-balancing loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MoEFeedForward(nn.Module):
    """Top-k routed GELU experts with GShard-style capacity dispatch (static shapes, no host syncs).

    dispatch="dense" instead runs every expert on every token and weights them by the (sparse) top-k gates: the
    same function without capacity drops, faster on CPU for a handful of small experts. Eval always uses it (no
    capacity there, so the result is identical and there is no gather/scatter in the decode loop).

    Tokens are scattered into a per-expert buffer of `capacity` slots and every expert runs as one batched matmul,
    so the layer has no data-dependent shapes and no Python loop over experts. In training, capacity is
    `capacity_factor * top_k * num_tokens / num_experts` and tokens over it are dropped (their output for that expert
    is zero, the residual path carries them); in eval every token is kept. No dropout inside the experts: the
    (E, capacity, d_ff) mask would cost more than the experts on CPU; the caller's residual dropout regularises.
    """

    def __init__(self, d_model: int, d_ff: int, num_experts: int, top_k: int = 2, capacity_factor: float = 1.25,
                 dispatch: str = "capacity"):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
        if dispatch not in ("capacity", "dense"):
            raise ValueError(f"dispatch must be 'capacity' or 'dense', got {dispatch!r}")
        self.num_experts, self.top_k = num_experts, top_k
        self.capacity_factor, self.dispatch = capacity_factor, dispatch
        self.router = nn.Linear(d_model, num_experts, bias=False)
        self.w_in = nn.Parameter(torch.empty(num_experts, d_model, d_ff))
        self.b_in = nn.Parameter(torch.zeros(num_experts, 1, d_ff))
        self.w_out = nn.Parameter(torch.empty(num_experts, d_ff, d_model))
        self.b_out = nn.Parameter(torch.zeros(num_experts, 1, d_model))
        nn.init.normal_(self.w_in, std=0.02)
        nn.init.normal_(self.w_out, std=0.02)
        nn.init.normal_(self.router.weight, std=0.02)

    def dense_forward(self, x: torch.Tensor, experts: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """Every expert on every token, combined with the sparse top-k gates: the same output as dispatch without
        drops, in two large matmuls. Cheaper than gather/scatter when experts are few (E * d_ff ~ a dense FFN)."""
        num_tokens, num_experts = x.shape[0], self.num_experts
        dense_gates = x.new_zeros(num_tokens, num_experts).scatter(1, experts, gates.to(x.dtype))  # (N, E)
        w_in = self.w_in.permute(1, 0, 2).reshape(x.shape[1], -1)  # (D, E*F)
        hidden = F.gelu(torch.addmm(self.b_in.reshape(1, -1), x, w_in))  # (N, E*F)
        hidden = (hidden.view(num_tokens, num_experts, -1) * dense_gates[..., None]).view(num_tokens, -1)
        return hidden @ self.w_out.reshape(-1, x.shape[1]) + dense_gates @ self.b_out[:, 0]  # (N, D)

    def capacity(self, num_tokens: int) -> int:
        """Slots per expert for `num_tokens` tokens."""
        if not self.training:
            return num_tokens
        return max(1, min(num_tokens, math.ceil(self.capacity_factor * self.top_k * num_tokens / self.num_experts)))

    def route(self, x: torch.Tensor):
        """Router probabilities (N, E), top-k expert ids (N, k) and renormalised gate weights (N, k)."""
        probs = self.router(x).float().softmax(-1)  # (N, E)
        gates, experts = probs.topk(self.top_k, dim=-1)  # (N, k)
        gates = gates / gates.sum(-1, keepdim=True)
        return probs, experts, gates

    def load_balancing_loss(self, probs: torch.Tensor, experts: torch.Tensor,
                            token_mask: torch.Tensor | None) -> torch.Tensor:
        """Switch/GShard auxiliary loss E * sum_e f_e * P_e; equals 1 for a uniform router."""
        weight = torch.ones_like(probs[:, 0]) if token_mask is None else token_mask.float()  # (N,)
        denom = weight.sum().clamp_min(1.0)
        assigned = F.one_hot(experts, self.num_experts).float().sum(1)  # (N, E) how often each expert was picked
        fraction = (assigned * weight[:, None]).sum(0) / (denom * self.top_k)  # (E,)
        mean_prob = (probs * weight[:, None]).sum(0) / denom  # (E,)
        return self.num_experts * (fraction * mean_prob).sum()

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (..., D), token_mask (...) bool (False = padding: no output, not in the loss) -> (y (..., D), aux)."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, D)
        mask = None if token_mask is None else token_mask.reshape(-1)
        num_tokens, num_experts, top_k = x.shape[0], self.num_experts, self.top_k
        probs, experts, gates = self.route(x)
        aux_loss = self.load_balancing_loss(probs, experts, mask)

        if self.dispatch == "dense" or not self.training:  # eval keeps every token: dense is the same, cheaper
            if mask is not None:
                gates = gates * mask[:, None]
            return self.dense_forward(x, experts, gates).view(shape), aux_loss

        capacity = self.capacity(num_tokens)
        # first choices of all tokens claim slots before second choices (priority order, as GShard)
        assign = experts.t().reshape(-1)  # (k*N,)
        onehot = F.one_hot(assign, num_experts)  # (k*N, E)
        if mask is not None:
            onehot = onehot * mask.repeat(top_k)[:, None]
        slot_in_expert = ((onehot.cumsum(0) - 1) * onehot).sum(-1)  # (k*N,)
        keep = (onehot.sum(-1) > 0) & (slot_in_expert < capacity)
        dump = num_experts * capacity  # an extra row that collects dropped / padded tokens
        slot = torch.where(keep, assign * capacity + slot_in_expert, torch.full_like(assign, dump))  # (k*N,)
        token = torch.arange(num_tokens, device=x.device).repeat(top_k)  # (k*N,)

        buffer = x.new_zeros(dump + 1, shape[-1]).index_copy(0, slot, x[token])  # (E*C+1, D)
        hidden = buffer[:dump].view(num_experts, capacity, shape[-1])  # (E, C, D)
        hidden = F.gelu(torch.baddbmm(self.b_in, hidden, self.w_in))  # (E, C, F)
        hidden = torch.baddbmm(self.b_out, hidden, self.w_out)  # (E, C, D)
        hidden = torch.cat([hidden.reshape(dump, shape[-1]), hidden.new_zeros(1, shape[-1])])  # (E*C+1, D)

        weight = (gates.t().reshape(-1) * keep).to(x.dtype)  # (k*N,)
        out = x.new_zeros(num_tokens, shape[-1]).index_add(0, token, hidden[slot] * weight[:, None])  # (N, D)
        return out.view(shape), aux_loss
