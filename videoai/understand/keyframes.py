"""Keyframes: the sharpest frames of each shot, with near-duplicates removed by perceptual hash.

Sharpness is the variance of the Laplacian of the luma (a blurred or motion-smeared frame has weak second
derivatives); the hash is dHash (signs of horizontal luma gradients on a 9x8 thumbnail) or pHash (signs of the
low 8x8 DCT coefficients of a 32x32 thumbnail against their median). Both are computed for a whole chunk at once
with conv2d / matmul; two frames whose 64-bit hashes differ in at most `hash_threshold` bits are near-duplicates.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from videoai.understand._source import FrameSource, open_source, pick_device, to_gray
from videoai.understand.shots import Shot, check_shots, detect_shots

__all__ = ["keyframes", "frame_sharpness", "perceptual_hash", "hamming_distance"]

HASHES = ("dhash", "phash")


def frame_sharpness(gray: torch.Tensor) -> torch.Tensor:
    """(T, H, W) float luma -> (T,) variance of the 3x3 Laplacian over the valid (unpadded) interior."""
    kernel = gray.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]  # (1, 1, 3, 3)
    laplacian = F.conv2d(gray[:, None], kernel)  # (T, 1, H-2, W-2)
    return laplacian.flatten(1).var(dim=1)


def _dct_matrix(size: int, device) -> torch.Tensor:
    """(size, size) orthonormal DCT-II basis: row k is frequency k."""
    n = torch.arange(size, device=device, dtype=torch.float32)
    basis = torch.cos(math.pi * (n[None] + 0.5) * n[:, None] / size) * math.sqrt(2.0 / size)
    basis[0] /= math.sqrt(2.0)
    return basis


def perceptual_hash(gray: torch.Tensor, method: str = "dhash") -> torch.Tensor:
    """(T, H, W) float luma -> (T, 64) bool hash bits."""
    if method == "dhash":
        thumb = F.adaptive_avg_pool2d(gray[:, None], (8, 9))[:, 0]  # (T, 8, 9) area average
        return (thumb[:, :, 1:] > thumb[:, :, :-1]).flatten(1)  # (T, 64)
    if method == "phash":
        thumb = F.adaptive_avg_pool2d(gray[:, None], (32, 32))[:, 0]  # (T, 32, 32)
        dct = _dct_matrix(32, gray.device)
        coefficients = (dct @ thumb @ dct.T)[:, :8, :8].flatten(1)  # (T, 64) low frequencies
        median = coefficients[:, 1:].median(dim=1, keepdim=True).values  # DC term left out of the median
        return coefficients > median
    raise ValueError(f"method: expected one of {HASHES}, got {method!r}")


def hamming_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(A, 64) and (B, 64) bool hashes -> (A, B) int64 number of differing bits."""
    return (a[:, None, :] != b[None, :, :]).sum(-1)


def _frame_features(source: FrameSource, method: str, size, chunk_size: int, device):
    """One decoding pass -> sharpness (T,) float32 and hashes (T, 64) bool, on the CPU."""
    sharpness, hashes = [], []
    for chunk in source.chunks(chunk_size, size):
        target = pick_device(chunk.frames.device if source.frames is not None else None, device)
        gray = to_gray(chunk.frames.to(target, non_blocking=True))  # (t, h, w)
        sharpness.append(frame_sharpness(gray))
        hashes.append(perceptual_hash(gray, method))
    return torch.cat([s.cpu() for s in sharpness]), torch.cat([h.cpu() for h in hashes])


def keyframes(
    video,
    shots: list[Shot] | None = None,
    k: int = 1,
    *,
    hash_method: str = "dhash",
    hash_threshold: int = 10,
    size=360,
    chunk_size: int = 32,
    fps: float | None = None,
    device=None,
) -> list[int]:
    """Sorted frame indices: up to `k` sharpest frames per shot, no two within `hash_threshold` bits.

    Args:
        video: path, `VideoClip` or (T, H, W, 3) uint8 tensor/ndarray.
        shots: from `detect_shots` (run on `video` when None).
        k: keyframes per shot at most. Shots are visited in order; a frame within `hash_threshold` bits of a
            keyframe already chosen (in this shot or an earlier one, e.g. a cut back to the same view) is skipped,
            so a shot may give fewer than k, or none when it repeats an earlier shot.
        size: short side frames are analysed at (never upscaled); sharpness depends on it, so keep it fixed.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    if hash_method not in HASHES:
        raise ValueError(f"hash_method: expected one of {HASHES}, got {hash_method!r}")
    if (isinstance(hash_threshold, bool) or not isinstance(hash_threshold, numbers.Integral)
            or not 0 <= hash_threshold < 64):
        raise ValueError(f"hash_threshold: expected an int in [0, 64), got {hash_threshold!r}")
    source = open_source(video, fps=fps)
    shots = detect_shots(video, fps=fps, device=device) if shots is None else check_shots(shots, source.num_frames)
    sharpness, hashes = _frame_features(source, hash_method, size, chunk_size, device)  # (T,), (T, 64)

    chosen: list[int] = []
    chosen_hashes = hashes.new_zeros(0, 64)
    for shot in shots:  # a handful of shots; the per-frame work above is batched
        frames = torch.arange(shot.start_frame, shot.end_frame)
        order = frames[sharpness[frames].argsort(descending=True, stable=True)]
        # Greedy in order of sharpness among a bounded pool: near-duplicates of a sharper pick are skipped.
        pool = order[: 8 * k]
        distance_to_chosen = hamming_distance(hashes[pool], chosen_hashes).min(1).values if chosen else None
        distance_in_pool = hamming_distance(hashes[pool], hashes[pool])  # (P, P)
        picked: list[int] = []
        for i in range(pool.shape[0]):
            if len(picked) == k:
                break
            if distance_to_chosen is not None and distance_to_chosen[i] <= hash_threshold:
                continue
            if any(distance_in_pool[i, j] <= hash_threshold for j in picked):
                continue
            picked.append(i)
        chosen.extend(pool[picked].tolist())
        chosen_hashes = torch.cat([chosen_hashes, hashes[pool[picked]]])
    return sorted(chosen)
