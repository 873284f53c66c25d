"""Wan-Move latent trajectory guidance: copy the first frame's VAE latent along each track (arXiv 2512.08765).

Reproduces the edit in Wan-Move's generate code (`create_pos_feature_map` + `replace_feature` in
ali-vilab/Wan-Move `wan/modules/trajectory.py`, "sample" strategy), with the strength blend ComfyUI's
`WanMoveTrackToVideo` adds. Written from reading those, not copied. Differences, all deterministic choices where the
reference is random or undefined:
- two tracks on one cell of one latent frame: the track with the highest index wins (the reference shuffles the
  tracks with `torch.randperm` and then does an indexed assignment with duplicates, so a random track wins);
- a track whose frame-0 point is invisible or outside is skipped (the reference reads its source from index -1,
  the bottom-right cell);
- a point in the partial cell past `(width // s) * s` is treated as outside (the reference would index past the end).
Both references edit the condition in place, so their negative branch also sees the edited latent; this function
returns a new tensor and leaves that choice to the caller.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from videoai.tokenize import Tracks


def _check_factor(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_strength(strength: object) -> float:
    if isinstance(strength, bool) or not isinstance(strength, Real) or not math.isfinite(float(strength)):
        raise ValueError(f"track_strength (strength) must be a finite number >= 0, got {strength!r}")
    if strength < 0:
        raise ValueError(f"track_strength (strength) must be >= 0, got {strength!r}")
    return float(strength)


def _check_inputs(latent_condition: object, tracks: object, spatial_factor: int, temporal_factor: int) -> None:
    if not isinstance(latent_condition, torch.Tensor):
        kind = type(latent_condition).__name__
        raise TypeError(f"latent_condition must be a torch.Tensor (B, C, L, h, w), got {kind}")
    if latent_condition.ndim != 5 or not latent_condition.is_floating_point():
        raise ValueError(
            f"latent_condition must be a float tensor (B, C, L, h, w), got shape {tuple(latent_condition.shape)} "
            f"dtype {latent_condition.dtype}"
        )
    if not isinstance(tracks, Tracks):
        raise TypeError(f"tracks must be a videoai.tokenize.Tracks, got {type(tracks).__name__}")
    num_latent, height, width = latent_condition.shape[2:]
    expected_frames = temporal_factor * (num_latent - 1) + 1
    if tracks.num_frames != expected_frames:
        raise ValueError(
            f"tracks must have {expected_frames} pixel frames ({temporal_factor}*(L-1)+1 for L={num_latent} latent "
            f"frames), got {tracks.num_frames}"
        )
    if (tracks.height // spatial_factor, tracks.width // spatial_factor) != (height, width):
        raise ValueError(
            f"tracks frame size {tracks.width}x{tracks.height} (width x height) does not match the latent grid "
            f"{width}x{height} with spatial_factor {spatial_factor}; give tracks in output-pixel coordinates"
        )


def _latent_cells(tracks: Tracks, spatial_factor: int, temporal_factor: int, height: int, width: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each track's latent cell at pixel frames 0, f, 2f, ... -> rows (L, N), cols (L, N), usable (L, N) bool."""
    points = tracks.points.to(device)[::temporal_factor]  # (T, N, 2) -> (L, N, 2): sampled, not averaged
    visible = tracks.visibility.to(device)[::temporal_factor]  # (L, N)
    x, y = points[..., 0], points[..., 1]
    inside = visible & (x >= 0) & (y >= 0) & (x < tracks.width) & (y < tracks.height)
    cols = torch.div(x, spatial_factor, rounding_mode="floor").long()  # as Wan-Move's int(x // w_down)
    rows = torch.div(y, spatial_factor, rounding_mode="floor").long()
    inside &= (cols < width) & (rows < height)
    return rows.clamp(0, height - 1), cols.clamp(0, width - 1), inside


def wan_move_condition(latent_condition: torch.Tensor, tracks: Tracks, spatial_factor: int,
                       temporal_factor: int = 4, strength: float = 1.0) -> torch.Tensor:
    """Wan-Move edit of a normalised condition latent (B, C, L, h, w): frame-0 features copied along `tracks`.

    tracks: pixel (x, y) in the output frame, T = temporal_factor*(L-1)+1 pixel frames; latent frame k >= 1 takes
    pixel frame temporal_factor*k. At every visible point with 0 <= x < width and 0 <= y < height, cell
    (y // spatial_factor, x // spatial_factor) of latent frame k becomes lerp(old, frame-0 latent at the track's
    frame-0 cell, strength) (strength 1.0 is a plain copy). Tracks whose frame-0 point is invisible or outside are
    skipped; when several tracks land on one cell of one frame the highest track index wins. Frame 0 never changes;
    the input is not modified.
    """
    spatial_factor = _check_factor("spatial_factor", spatial_factor)
    temporal_factor = _check_factor("temporal_factor", temporal_factor)
    strength = _check_strength(strength)
    _check_inputs(latent_condition, tracks, spatial_factor, temporal_factor)
    out = latent_condition.clone(memory_format=torch.contiguous_format)
    batch, channels, num_latent, height, width = out.shape
    if tracks.num_tracks == 0 or num_latent == 1:
        return out
    rows, cols, usable = _latent_cells(tracks, spatial_factor, temporal_factor, height, width, out.device)
    usable = usable[1:] & usable[:1]  # (L-1, N): target usable and source (frame 0) usable
    frame = torch.arange(1, num_latent, device=out.device)[:, None]  # (L-1, 1)
    target = (frame * height + rows[1:]) * width + cols[1:]  # (L-1, N) flat index into (L, h, w)
    track_id = torch.arange(tracks.num_tracks, device=out.device).expand_as(target)  # (L-1, N)
    # Deterministic "last write wins": each cell keeps the highest track index written to it.
    winner = torch.full((num_latent * height * width,), -1, dtype=torch.long, device=out.device)
    winner.scatter_reduce_(0, target[usable], track_id[usable], reduce="amax")
    cells = (winner >= 0).nonzero().squeeze(1)  # (M,) flat cells that get written
    if cells.numel() == 0:
        return out
    source_track = winner[cells]  # (M,)
    flat = out.view(batch, channels, num_latent * height * width)  # (B, C, L*h*w), shares out's storage
    source = flat[:, :, rows[0, source_track] * width + cols[0, source_track]]  # (B, C, M), frame-0 features
    flat[:, :, cells] = torch.lerp(flat[:, :, cells], source, strength)  # lerp is exact at strength 1.0
    return out
