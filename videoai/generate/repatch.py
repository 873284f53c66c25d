"""Change a trained WanTransformer3DModel's patch size, keeping everything it learned.

Written here because neither diffusers nor peft converts a DiT between patch sizes. Every weight except the patch
embedding and the output projection is independent of the patch size and is copied as is. The new patch embedding
gives a patch that is constant over each old patch the old embedding of that patch (kernel summed over the old patch,
spread evenly over the new one); the new output projection predicts, for each new sub-position, the mean of the old
projection over the old sub-positions it covers. 3-D RoPE positions are indices of the token grid, so a finer grid
counts positions on a finer scale: the converted model is a starting point for fine-tuning, not an equal model.
"""

from __future__ import annotations

import torch
from diffusers import WanTransformer3DModel


def _check_patch(name: str, patch_size) -> tuple[int, int, int]:
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3 or min(patch) < 1:
        raise ValueError(f"{name} must be three positive ints (t, h, w), got {patch_size!r}")
    return patch


def repatch_transformer(transformer: WanTransformer3DModel, patch_size) -> WanTransformer3DModel:
    """A copy of `transformer` whose tokens are `patch_size` (t, h, w) latent voxels; each side of the old patch
    must be a multiple of the new one's or the other way round."""
    old = _check_patch("transformer.config.patch_size", transformer.config.patch_size)
    new = _check_patch("patch_size", patch_size)
    for o, n in zip(old, new):
        if o % n and n % o:
            raise ValueError(f"patch_size {new} and the transformer's {old} must divide one another side by side")
    config = dict(transformer.config)
    config["patch_size"] = new
    converted = WanTransformer3DModel.from_config(config)
    state = transformer.state_dict()
    state["patch_embedding.weight"] = _resize_kernel(state["patch_embedding.weight"], new)
    out_channels = transformer.config.out_channels
    weight, bias = state["proj_out.weight"], state["proj_out.bias"]  # (prod(old) * C, D), (prod(old) * C,)
    state["proj_out.weight"] = _resize_rows(weight, old, new, out_channels)
    state["proj_out.bias"] = _resize_rows(bias[:, None], old, new, out_channels)[:, 0]
    converted.load_state_dict(state)  # copies into the float32 modules, casts the rest to their dtype
    return converted


def _resize_kernel(kernel: torch.Tensor, new: tuple[int, int, int]) -> torch.Tensor:
    """(D, Cin, *old) conv kernel -> (D, Cin, *new): same response to inputs constant over max(old, new) blocks."""
    old = kernel.shape[2:]
    block = [max(o, n) for o, n in zip(old, new)]
    # (D, Cin, *block): each old weight spread evenly over the block positions it covers
    expanded = kernel
    for axis, (o, b) in enumerate(zip(old, block)):
        expanded = expanded.repeat_interleave(b // o, dim=2 + axis) / (b // o)
    # (D, Cin, *new): sum the block positions that fall in each new kernel position
    for axis, (b, n) in enumerate(zip(block, new)):
        shape = list(expanded.shape)
        shape[2 + axis : 3 + axis] = [n, b // n]
        expanded = expanded.reshape(shape).sum(3 + axis)
    return expanded.contiguous()


def _resize_rows(rows: torch.Tensor, old, new, channels: int) -> torch.Tensor:
    """Output rows ordered (p_t, p_h, p_w, C): (prod(old) * C, D) -> (prod(new) * C, D), averaging merged
    sub-positions and repeating split ones."""
    width = rows.shape[1]
    grid = rows.reshape(*old, channels, width)  # (pt, ph, pw, C, D)
    for axis, (o, n) in enumerate(zip(old, new)):
        if o > n:  # (.., n, o // n, ..) averaged over each new cell's old sub-positions
            shape = list(grid.shape)
            shape[axis : axis + 1] = [n, o // n]
            grid = grid.reshape(shape).mean(axis + 1)
        elif n > o:
            grid = grid.repeat_interleave(n // o, dim=axis)
    return grid.reshape(-1, width).contiguous()
