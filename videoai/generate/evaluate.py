"""Motion-control accuracy on synthetic clips: object centroids by colour segmentation vs the requested tracks."""

from __future__ import annotations

import torch


def color_centroids(frames: torch.Tensor, colors: torch.Tensor, max_distance: float = 90.0,
                    min_saturation: float = 60.0, min_pixels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroid of the pixels close to each known colour.

    frames (T, H, W, 3) uint8/float 0..255; colors (N, 3) RGB -> centroids (T, N, 2) pixel (x, y) and found (T, N)
    bool (at least `min_pixels` pixels within `max_distance` of the colour and saturated, max - min channel >=
    `min_saturation`, which keeps the low-saturation synthetic backgrounds out). Each pixel goes to its nearest colour.
    """
    frames = frames.float()
    colors = colors.to(frames)
    num_frames, height, width, _ = frames.shape
    distance = (frames[:, :, :, None, :] - colors).norm(dim=-1)  # (T, H, W, N)
    nearest = distance.argmin(-1, keepdim=True)  # (T, H, W, 1)
    saturation = frames.amax(-1) - frames.amin(-1)  # (T, H, W)
    member = (distance <= max_distance) & (saturation >= min_saturation)[..., None]
    member &= torch.arange(colors.shape[0], device=frames.device) == nearest  # (T, H, W, N)
    weight = member.float()
    count = weight.sum((1, 2))  # (T, N)
    ys = torch.arange(height, device=frames.device, dtype=torch.float32)[None, :, None, None]
    xs = torch.arange(width, device=frames.device, dtype=torch.float32)[None, None, :, None]
    cx = (weight * xs).sum((1, 2)) / count.clamp_min(1)
    cy = (weight * ys).sum((1, 2)) / count.clamp_min(1)
    return torch.stack([cx, cy], -1), count >= min_pixels


def best_match_centroids(frames: torch.Tensor, colors: torch.Tensor, num_pixels: int = 16) -> torch.Tensor:
    """Centroid of the `num_pixels` pixels closest to each colour (all pixels tied with the last one included).

    Always defined: an object that faded away is "found" on whatever pixels resemble it most, which scores as the
    large error it deserves. frames (T, H, W, 3) 0..255, colors (N, 3) -> (T, N, 2) pixel (x, y).
    """
    frames = frames.float()
    num_frames, height, width, _ = frames.shape
    distance = (frames.reshape(num_frames, -1, 1, 3) - colors.to(frames)).norm(dim=-1)  # (T, H*W, N)
    kth = distance.topk(num_pixels, dim=1, largest=False).values[:, -1:]  # (T, 1, N)
    weight = (distance <= kth + 1e-3).float()  # (T, H*W, N)
    ys, xs = torch.meshgrid(torch.arange(height, device=frames.device), torch.arange(width, device=frames.device),
                            indexing="ij")
    grid = torch.stack([xs, ys], -1).reshape(-1, 2).float()  # (H*W, 2) pixel (x, y)
    return torch.einsum("tpn,pc->tnc", weight, grid) / weight.sum(1)[..., None]  # (T, N, 2)


def end_point_error(frames: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, colors: torch.Tensor,
                    from_frame: int = 1, num_pixels: int = 16, **kwargs) -> dict[str, torch.Tensor]:
    """Distance between each object's colour centroid in `frames` and `target` (T, N, 2) pixel (x, y).

    Returns "error": (K,) px of `best_match_centroids` over the visible (frame, object) pairs from `from_frame` on;
    "found": fraction of those where `color_centroids` (thresholded) detects the object; "found_error": (K',) px
    of the thresholded centroids where detected.
    """
    visible = visible.clone()
    visible[:from_frame] = False
    target = target.to(frames.device, torch.float32)
    best = best_match_centroids(frames, colors, num_pixels)
    centroids, found = color_centroids(frames, colors, **kwargs)
    detected = visible & found
    return {
        "error": (best - target).norm(dim=-1)[visible],
        "found": detected.sum() / visible.sum().clamp_min(1),
        "found_error": (centroids - target).norm(dim=-1)[detected],
    }
