"""Rasterize motion tracks onto a grid (pixels or the latent grid): heatmaps, displacement maps, splatted features.

Tracks are first scaled to the grid with `Tracks.scale_to` (pixel-centre convention), so grid cell (i, j) has its
centre at (x, y) = (j, i) and `sigma` is in grid cells. Gaussians exp(-d^2 / (2 sigma^2)) are built separably as the
outer product of 1-D x and y Gaussians, so nothing of size T x N x H x W is materialised except where the output
itself has that size (`gaussian_heatmaps`). With `truncate` (default 3) each 1-D Gaussian is set to zero beyond
`truncate * sigma` cells, giving each track a compact square footprint; `truncate=None` keeps the full Gaussian.
A track contributes at frame t only where `visibility[t]` is True; its frame-0 position is used as given.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .tracks import Tracks


def _check_tracks(tracks: object) -> Tracks:
    if not isinstance(tracks, Tracks):
        raise TypeError(f"tracks must be a videoai.tokenize.Tracks, got {type(tracks).__name__}")
    return tracks


def _check_grid(height: object, width: object) -> tuple[int, int]:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int (grid size), got {value!r}")
    return height, width  # type: ignore[return-value]


def _check_sigma(sigma: object, truncate: object) -> None:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive finite number (grid cells), got {sigma!r}")
    if truncate is not None and (
        isinstance(truncate, bool) or not isinstance(truncate, (int, float)) or not truncate > 0
    ):
        raise ValueError(f"truncate must be a positive number of sigmas or None, got {truncate!r}")


def _gaussian_1d(centres: torch.Tensor, size: int, sigma: float, truncate: float | None) -> torch.Tensor:
    """(..., ) centres -> (..., size) 1-D Gaussian over cell centres 0..size-1."""
    cells = torch.arange(size, device=centres.device, dtype=torch.float32)
    distance = cells - centres[..., None]
    weights = torch.exp(-0.5 * (distance / sigma) ** 2)
    if truncate is not None:
        weights = torch.where(distance.abs() <= truncate * sigma, weights, 0.0)
    return weights


def _separable_gaussians(
    points: torch.Tensor, height: int, width: int, sigma: float, truncate: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., N, 2) grid positions -> y factors (..., N, H) and x factors (..., N, W) of the 2-D Gaussians."""
    return (
        _gaussian_1d(points[..., 1], height, sigma, truncate),
        _gaussian_1d(points[..., 0], width, sigma, truncate),
    )


def _weighted_sum(coefficients: torch.Tensor, gauss_y: torch.Tensor, gauss_x: torch.Tensor) -> torch.Tensor:
    """sum_n coefficients[t, k, n] * gauss_y[t, n, h] * gauss_x[t, n, w] -> (T, K, H, W), one batched matmul."""
    num_frames, num_channels = coefficients.shape[:2]
    left = coefficients[:, :, None, :] * gauss_y.transpose(1, 2)[:, None]  # (T, K, H, N)
    out = left.flatten(1, 2) @ gauss_x  # (T, K*H, N) @ (T, N, W) -> (T, K*H, W)
    return out.view(num_frames, num_channels, -1, out.shape[-1])  # (T, K, H, W)


def _normalise(total: torch.Tensor, weight_sum: torch.Tensor) -> torch.Tensor:
    """total / weight_sum where any weight fell, 0 elsewhere (no host sync)."""
    covered = weight_sum > 1e-12
    return torch.where(covered, total / torch.where(covered, weight_sum, torch.ones_like(weight_sum)), 0.0)


def gaussian_heatmaps(
    tracks: Tracks, height: int, width: int, sigma: float, *, truncate: float | None = 3.0
) -> torch.Tensor:
    """One Gaussian heatmap per track and frame, (T, N, height, width) float32 with peak 1 at the track's position.

    Invisible points give all-zero maps.
    """
    tracks = _check_tracks(tracks)
    height, width = _check_grid(height, width)
    _check_sigma(sigma, truncate)
    points = tracks.scaled_points(width, height)  # (T, N, 2) grid (x, y)
    gauss_y, gauss_x = _separable_gaussians(points, height, width, sigma, truncate)  # (T, N, H), (T, N, W)
    gauss_y = gauss_y * tracks.visibility[..., None]
    return gauss_y[..., :, None] * gauss_x[..., None, :]  # (T, N, H, W)


def displacement_maps(
    tracks: Tracks,
    height: int,
    width: int,
    sigma: float | None = None,
    *,
    truncate: float | None = 3.0,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Displacement of each track from its frame-0 position, (T, 2, height, width) (dx, dy) in grid cells.

    Drawn in frame-0 coordinates (like optical flow from frame 0). sigma=None: written only at the grid cell
    nearest each track's frame-0 position (tracks whose frame-0 cell is off the grid are dropped); several tracks in
    one cell are averaged. sigma given: spread with Gaussian weights around the frame-0 position, the normalised
    weighted average where tracks overlap. return_weights=True also returns (T, 1, height, width): the number of
    tracks per cell (sparse) or the sum of Gaussian weights clipped to [0, 1] (dense); zero where nothing was written.
    """
    tracks = _check_tracks(tracks)
    height, width = _check_grid(height, width)
    if sigma is not None:
        _check_sigma(sigma, truncate)
    points = tracks.scaled_points(width, height)  # (T, N, 2) grid (x, y)
    visible = tracks.visibility.to(torch.float32)  # (T, N)
    displacement = points - points[:1]  # (T, N, 2)
    num_frames = tracks.num_frames

    if sigma is None:
        cell = points[0].round().long()  # (N, 2) frame-0 grid cell (x, y)
        on_grid = (cell[:, 0] >= 0) & (cell[:, 0] < width) & (cell[:, 1] >= 0) & (cell[:, 1] < height)  # (N,)
        flat_index = (cell[:, 1].clamp(0, height - 1) * width + cell[:, 0].clamp(0, width - 1))  # (N,)
        weight = visible * on_grid  # (T, N), off-grid tracks add zero instead of being indexed out (no host sync)
        values = torch.cat([displacement * weight[..., None], weight[..., None]], -1).transpose(1, 2)  # (T, 3, N)
        sums = values.new_zeros(num_frames, 3, height * width).index_add_(2, flat_index, values)  # (T, 3, H*W)
        sums = sums.view(num_frames, 3, height, width)
        total, weight_sum = sums[:, :2], sums[:, 2:]  # (T, 2, H, W), (T, 1, H, W)
        maps, weights = _normalise(total, weight_sum), weight_sum
    else:
        gauss_y, gauss_x = _separable_gaussians(points[0], height, width, sigma, truncate)  # (N, H), (N, W)
        coefficients = torch.cat([displacement * visible[..., None], visible[..., None]], -1).transpose(1, 2)
        sums = _weighted_sum(coefficients, gauss_y[None], gauss_x[None])  # (T, 3, H, W)
        total, weight_sum = sums[:, :2], sums[:, 2:]
        maps, weights = _normalise(total, weight_sum), weight_sum.clamp(0, 1)
    return (maps, weights) if return_weights else maps


def splat_features(
    features: torch.Tensor, tracks: Tracks, sigma: float, *, truncate: float | None = 3.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy the feature under each track's frame-0 position to its position at every frame (Wan-Move/ATI-style).

    features: (C, H, W) or (B, C, H, W) (e.g. the first frame's latent); the grid is its H x W. The feature vector
    at a track's frame-0 position is sampled bilinearly and splatted at frame t with Gaussian weights w around the
    track's frame-t position. Returns feats (T, C, H, W) (or (B, T, C, H, W)): sum(w * f) / sum(w), the weighted
    average where tracks overlap and 0 where no track reaches; weights (T, 1, H, W) (or (B, T, 1, H, W), the same
    for every batch item): sum(w) clipped to [0, 1], for blending `weights * feats + (1 - weights) * base`.
    """
    if not isinstance(features, torch.Tensor) or features.ndim not in (3, 4) or not features.is_floating_point():
        raise ValueError(
            "features must be a float tensor of shape (C, H, W) or (B, C, H, W), got "
            + (
                f"{features.dtype} {tuple(features.shape)}"
                if isinstance(features, torch.Tensor)
                else type(features).__name__
            )
        )
    tracks = _check_tracks(tracks)
    _check_sigma(sigma, truncate)
    batched = features.ndim == 4
    grid = features if batched else features[None]  # (B, C, H, W)
    batch, channels, height, width = grid.shape
    points = tracks.scaled_points(width, height).to(grid.device)  # (T, N, 2) grid (x, y)
    visible = tracks.visibility.to(grid.device, torch.float32)  # (T, N)

    # grid_sample(align_corners=False) uses the same pixel-centre convention as Tracks; "border" keeps points just
    # outside the grid sampling the edge feature.
    size = points.new_tensor([width, height])
    normalised = (points[0] + 0.5) / size * 2 - 1  # (N, 2) in [-1, 1]
    sampled = F.grid_sample(
        grid.float(), normalised[None, None].expand(batch, 1, -1, -1), mode="bilinear",
        padding_mode="border", align_corners=False,
    )  # (B, C, 1, N)
    source = sampled[:, :, 0].reshape(batch * channels, -1)  # (B*C, N)

    gauss_y, gauss_x = _separable_gaussians(points, height, width, sigma, truncate)  # (T, N, H), (T, N, W)
    coefficients = torch.cat([visible[:, None] * source[None], visible[:, None]], 1)  # (T, B*C + 1, N)
    sums = _weighted_sum(coefficients, gauss_y, gauss_x)  # (T, B*C + 1, H, W)
    total, weight_sum = sums[:, :-1], sums[:, -1:]
    feats = _normalise(total, weight_sum).to(features.dtype)  # (T, B*C, H, W)
    weights = weight_sum.clamp(0, 1).to(features.dtype)  # (T, 1, H, W)
    num_frames = tracks.num_frames
    if not batched:
        return feats, weights
    feats = feats.view(num_frames, batch, channels, height, width).transpose(0, 1)  # (B, T, C, H, W)
    return feats, weights[None].expand(batch, -1, -1, -1, -1)
