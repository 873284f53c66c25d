"""Spatio-temporal patches: [B,C,T,H,W] video tensors <-> [B,N,C*pt*ph*pw] token sequences."""
from __future__ import annotations

import torch
from einops import rearrange

Patch = tuple[int, int, int]
Grid = tuple[int, int, int]


def _as_patch(patch: int | tuple[int, ...]) -> Patch:
    """Normalise an int or (pt, ph, pw) to a 3-tuple of positive ints."""
    if isinstance(patch, int):
        patch = (1, patch, patch)
    if len(patch) != 3 or any((not isinstance(p, int)) or p <= 0 for p in patch):
        raise ValueError(f"patch: expected a positive int or a (pt, ph, pw) tuple of positive ints, got {patch!r}")
    return tuple(patch)  # type: ignore[return-value]


def patch_grid(shape: tuple[int, int, int], patch: int | tuple[int, ...]) -> Grid:
    """Token grid (T', H', W') of a (T, H, W) video cut into patches; raises if a side does not divide."""
    pt, ph, pw = _as_patch(patch)
    t, h, w = shape
    for name, size, p in (("T", t, pt), ("H", h, ph), ("W", w, pw)):
        if size % p:
            raise ValueError(f"x: {name}={size} is not divisible by the patch size {p} (patch={(pt, ph, pw)})")
    return t // pt, h // ph, w // pw


def patchify(x: torch.Tensor, patch: int | tuple[int, ...]) -> tuple[torch.Tensor, Grid]:
    """Cut a [B,C,T,H,W] video into non-overlapping tubelets; returns tokens [B,N,C*pt*ph*pw] and the grid."""
    if x.ndim != 5:
        raise ValueError(f"x: expected a [B,C,T,H,W] tensor, got shape {tuple(x.shape)}")
    pt, ph, pw = _as_patch(patch)
    grid = patch_grid(tuple(x.shape[2:]), (pt, ph, pw))
    tokens = rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
    return tokens, grid  # (B, C, T, H, W) -> (B, T'*H'*W', C*pt*ph*pw)


def unpatchify(tokens: torch.Tensor, patch: int | tuple[int, ...], grid: Grid) -> torch.Tensor:
    """Exact inverse of `patchify`: [B,N,C*pt*ph*pw] tokens on `grid` -> [B,C,T,H,W]."""
    pt, ph, pw = _as_patch(patch)
    if tokens.ndim != 3:
        raise ValueError(f"tokens: expected a [B,N,D] tensor, got shape {tuple(tokens.shape)}")
    t, h, w = grid
    if tokens.shape[1] != t * h * w:
        raise ValueError(f"tokens: N={tokens.shape[1]} does not match grid {tuple(grid)} (N should be {t * h * w})")
    if tokens.shape[2] % (pt * ph * pw):
        raise ValueError(f"tokens: D={tokens.shape[2]} is not a multiple of pt*ph*pw={pt * ph * pw}")
    return rearrange(
        tokens, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)", t=t, h=h, w=w, pt=pt, ph=ph, pw=pw
    )  # (B, N, C*pt*ph*pw) -> (B, C, T, H, W)
