"""Tracks -> Wan image-to-video condition: splat first-frame latent features along tracks and mark them in the mask.

Wan's I2V condition is `cat([mask, latent_condition], dim=1)`, (B, f + C, L, h, w): `latent_condition` is the VAE
latent of [image, black frames...] and `mask` has f = VAE temporal factor channels, one per pixel frame of each
latent frame (latent frame k >= 1 covers pixel frames f*(k-1)+1 .. f*k; frame 0 is the image, mask 1).
Motion enters the *conditional* branch only (Wan-Move / ATI style): for latent frame k >= 1 the first frame's latent
feature under each track's frame-0 position is copied to the track's position in frame k with Gaussian weights
(`videoai.tokenize.splat_features`), and the mask channels get each track's Gaussian at every pixel frame, so the
model sees where the point is in each of the f frames a latent frame stands for. `track_strength` scales the
feature blend. Wan 2.2 TI2V (expand_timesteps) has no condition channels; there `pin_tracks` makes the carried
features known content, as its first frame is.
"""

from __future__ import annotations

import torch

from videoai.tokenize.rasterize import displacement_maps, gaussian_heatmaps, splat_features
from videoai.tokenize.tracks import Tracks


def latent_num_frames(num_frames: int, temporal_factor: int) -> int:
    """Pixel frames T = f*(L-1)+1 -> latent frames L."""
    return (num_frames - 1) // temporal_factor + 1


def check_num_frames(num_frames: object, temporal_factor: int) -> int:
    """Raise a clear ValueError unless num_frames = temporal_factor * k + 1."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if (num_frames - 1) % temporal_factor:
        lower = (num_frames - 1) // temporal_factor * temporal_factor + 1
        raise ValueError(
            f"num_frames must be {temporal_factor}*k + 1 (the VAE compresses time by {temporal_factor}), "
            f"got {num_frames}; use {lower} or {lower + temporal_factor}"
        )
    return num_frames


def _max_heatmap(tracks: Tracks, height: int, width: int, sigma: float) -> torch.Tensor:
    """Max over tracks of their Gaussians -> (T, 1, h, w); zeros when there is no track."""
    if tracks.num_tracks == 0:
        return tracks.points.new_zeros(tracks.num_frames, 1, height, width)
    return gaussian_heatmaps(tracks, height, width, sigma).amax(1, keepdim=True)  # (T, N, h, w) -> (T, 1, h, w)


def _frames_to_latent_layout(per_frame: torch.Tensor, temporal_factor: int) -> torch.Tensor:
    """(T, K, h, w) per pixel frame -> (K*f, L, h, w), Wan's mask layout (frame 0 repeated f times)."""
    first = per_frame[:1].expand(temporal_factor, *per_frame.shape[1:])  # (f, K, h, w)
    padded = torch.cat([first, per_frame[1:]])  # (f*L, K, h, w)
    num_latent = padded.shape[0] // temporal_factor
    grouped = padded.view(num_latent, temporal_factor, *per_frame.shape[1:])  # (L, f, K, h, w)
    return grouped.permute(2, 1, 0, 3, 4).flatten(0, 1)  # (K*f, L, h, w)


def first_frame_mask(batch_size: int, num_frames: int, height: int, width: int, temporal_factor: int,
                     device=None, dtype=torch.float32, last_frame: bool = False) -> torch.Tensor:
    """Wan's I2V mask: 1 on the pixel frame 0 slots (and the last pixel frame's with last_frame), 0 elsewhere ->
    (B, f, L, h, w)."""
    per_frame = torch.zeros(num_frames, 1, height, width, device=device, dtype=dtype)
    per_frame[0] = 1.0
    if last_frame:
        per_frame[-1] = 1.0
    mask = _frames_to_latent_layout(per_frame, temporal_factor)  # (f, L, h, w)
    return mask[None].expand(batch_size, -1, -1, -1, -1)


def latent_frame_tracks(tracks: Tracks, temporal_factor: int) -> Tracks:
    """Pixel-frame tracks (T = f*(L-1)+1) -> one position per latent frame (L): frame 0 as is, frame k the mean
    of its f pixel frames where the point is visible (invisible when it is visible in none of them)."""
    points, visible = tracks.points, tracks.visibility.float()  # (T, N, 2), (T, N)
    num_tracks = tracks.num_tracks
    chunk_points = points[1:].view(-1, temporal_factor, num_tracks, 2)  # (L-1, f, N, 2)
    chunk_visible = visible[1:].view(-1, temporal_factor, num_tracks)  # (L-1, f, N)
    count = chunk_visible.sum(1)  # (L-1, N)
    mean_visible = (chunk_points * chunk_visible[..., None]).sum(1) / count.clamp_min(1)[..., None]
    mean_all = chunk_points.mean(1)  # invisible chunks keep a finite position
    chunk_mean = torch.where(count[..., None] > 0, mean_visible, mean_all)  # (L-1, N, 2)
    latent_points = torch.cat([points[:1], chunk_mean])  # (L, N, 2)
    latent_visible = torch.cat([tracks.visibility[:1], count > 0])  # (L, N)
    return Tracks(latent_points, latent_visible, tracks.width, tracks.height)


def track_mask(tracks: Tracks, height: int, width: int, temporal_factor: int, sigma: float) -> torch.Tensor:
    """Gaussian of every visible track at every pixel frame (max over tracks), in mask layout -> (f, L, h, w)."""
    return _frames_to_latent_layout(_max_heatmap(tracks, height, width, sigma), temporal_factor)


def motion_maps(tracks: Tracks, height: int, width: int, temporal_factor: int, sigma: float) -> torch.Tensor:
    """Motion-adapter input on the latent grid: heatmap + (dx, dy) per pixel frame -> (3f, L, h, w).

    Displacements (in latent cells, relative to frame 0) are drawn around the frame-0 positions, as optical flow.
    """
    heat = _max_heatmap(tracks, height, width, sigma)  # (T, 1, h, w)
    flow = displacement_maps(tracks, height, width, sigma)  # (T, 2, h, w)
    return _frames_to_latent_layout(torch.cat([heat, flow], 1), temporal_factor)


def splat_first_frame(latent: torch.Tensor, tracks: Tracks, temporal_factor: int,
                      sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """First-frame features of latent (B, C, L, h, w) carried along `tracks` -> feats (B, C, L, h, w) and Gaussian
    weights (B, 1, L, h, w) in [0, 1], zero on frame 0 (it is the image)."""
    per_latent = latent_frame_tracks(tracks.to(latent.device), temporal_factor)  # (L, N) positions
    feats, weights = splat_features(latent[:, :, 0], per_latent, sigma)  # (B, L, C, h, w), (B, L, 1, h, w)
    feats, weights = feats.transpose(1, 2), weights.transpose(1, 2)  # (B, C, L, h, w), (B, 1, L, h, w)
    weights = torch.cat([torch.zeros_like(weights[:, :, :1]), weights[:, :, 1:]], 2)
    return feats.to(latent.dtype), weights.to(latent.dtype)


def apply_tracks(condition: torch.Tensor, tracks: Tracks, temporal_factor: int, sigma: float,
                 mark_mask: bool = True, strength: float = 1.0) -> torch.Tensor:
    """Edit a Wan I2V condition (B, f + C, L, h, w) with `tracks` (pixel frames T = f*(L-1)+1, any frame size).

    Latent frames k >= 1 become lerp(condition, splatted first-frame features, strength * w) for Gaussian weights
    w; with mark_mask the track Gaussians are max-ed into the mask channels. Returns a new tensor; frame 0 is never
    changed.
    """
    if tracks.num_tracks == 0:
        return condition
    mask, latent = condition[:, :temporal_factor], condition[:, temporal_factor:]  # (B, f, L, h, w), (B, C, L, h, w)
    height, width = latent.shape[-2:]
    feats, weights = splat_first_frame(latent, tracks, temporal_factor, sigma)
    weights = weights * strength
    latent = latent * (1 - weights) + feats * weights
    if mark_mask:
        marks = track_mask(tracks.to(condition.device), height, width, temporal_factor, sigma)  # (f, L, h, w)
        mask = torch.maximum(mask, marks[None].to(mask.dtype))
    return torch.cat([mask, latent], 1)


def pin_tracks(latent: torch.Tensor, noise_mask: torch.Tensor, tracks: Tracks, temporal_factor: int, sigma: float,
               strength: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tracks for a TI2V (expand_timesteps) condition: the splatted first-frame features become known content.

    latent (B, C, L, h, w) is the clean latent the model input keeps where noise_mask (B, 1, L, h, w) is 0 (frame 0,
    the image). Along the tracks, frames k >= 1 keep the carried feature with weight min(strength * w, 1):
    noise_mask -> noise_mask * (1 - keep) and latent -> the feature wherever keep > 0. Returns new tensors.
    """
    if tracks.num_tracks == 0:
        return latent, noise_mask
    feats, weights = splat_first_frame(latent, tracks, temporal_factor, sigma)
    keep = (weights * strength).clamp(0, 1)  # (B, 1, L, h, w)
    return torch.where(keep > 0, feats, latent), noise_mask * (1 - keep)
