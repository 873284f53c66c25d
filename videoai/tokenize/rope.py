"""3-D rotary position embeddings over a (t, h, w) token grid, split per axis as in Wan."""
from __future__ import annotations

import torch


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Rotary dims per axis (t, h, w): h and w get 2*(head_dim//6) each, t the rest (all even)."""
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"head_dim: expected an even int >= 6, got {head_dim}")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_3d(
    grid: tuple[int, int, int],
    head_dim: int,
    *,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [N, head_dim] for the T'*H'*W' tokens of `grid` (t-major order, as `patchify`)."""
    if len(grid) != 3 or any(int(g) <= 0 for g in grid):
        raise ValueError(f"grid: expected three positive sizes (t, h, w), got {grid!r}")
    angles = []
    for axis, (size, dim) in enumerate(zip(grid, rope_axis_dims(head_dim))):
        inv_freq = theta ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)  # (dim/2,)
        pos = torch.arange(size, device=device, dtype=torch.float64)
        axis_angles = torch.outer(pos, inv_freq)  # (size, dim/2)
        shape = [1, 1, 1, dim // 2]
        shape[axis] = size
        angles.append(axis_angles.view(shape).expand(*grid, dim // 2))
    angles = torch.cat(angles, dim=-1).reshape(-1, head_dim // 2)  # (N, head_dim/2)
    angles = angles.repeat_interleave(2, dim=-1)  # (N, head_dim): pairs (2i, 2i+1) share an angle
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the last dim of x [..., N, head_dim] by the angles behind cos/sin [N, head_dim]."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., N, D/2, 2)
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # (..., N, D)
    return (x * cos + rotated * sin).to(x.dtype)
