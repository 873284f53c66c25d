"""Gradual transitions for the weight-free shot detector: dissolves by a blend test across a span, fade spans.

Method (a content test across a span, chosen over twin-comparison's accumulated frame differences because camera
motion accumulates differences too): in a dissolve every frame is a blend of the frames on either side, so for a
window of half-width h centred on frame t, with a = t - h and b = t + h,
  change  D = mean |z(b) - z(a)|            the two ends show different pictures, and
  error   E = mean |z(t) - z((a + b) / 2)|  the middle frame is their average,
where z() gives each colour plane of a thumbnail zero mean and the thumbnail unit variance, so gain changes (fades,
exposure) change nothing. A window
is a dissolve when D >= `min_change` and E <= MAX_RATIO * D; motion fails the second test (the middle of a pan is
a sharp, shifted picture, not a double exposure) and a hard cut fails it too (the middle equals one end: E = D / 2).
A slow pan over smooth content can pass both (a shifted gradient is nearly linear), so D must also stay above
`min_change` when the ends are compared at the best global shift of up to MAX_SHIFT, and a dissolve must be seen
at two window sizes at least (a fast pan or zoom passes at one only).
Both ends must be pictures, not blank frames (fades have their own rule). Half-widths SCALES cover 8-60 frames.
Wipes are not blends (the middle frame is half one picture, half the other: E = D / 2): videoai.understand.wipes
tests them cell by cell.
The test runs on 18x32 RGB thumbnails (mean pooled, so a blend of frames is a blend of thumbnails), kept for every
frame: 3.5 KB each in float16. `ThumbnailStats` prepares them once for this test, the wipe test and the fade spans
(standardised rows, contrast, the change D of every window); each test then takes the windows of every scale at once
through its heavy steps (fewer, larger tensor operations: the 91-shift search costs ~3 ms a call before any row).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from videoai.understand._threads import split_rows

__all__ = [
    "MAX_RATIO",
    "SCALES",
    "THUMB_SIZE",
    "ThumbnailStats",
    "Transition",
    "contrast",
    "dissolve_windows",
    "ends_differ",
    "fade_span",
    "find_dissolves",
    "prepared",
    "thumbnails",
]

THUMB_SIZE = (18, 32)  # (H, W) of the thumbnails the test compares
SCALES = (4, 8, 16, 32)  # window half-widths in frames
MAX_RATIO = 0.25  # E / D at most: testvideo.mp4's dissolve scores 0.03-0.15, a hard cut 0.5
# Both ends of a window need this thumbnail standard deviation (0-255): pictures, not blank or nearly faded out
# (below ~10 the encoder has flattened a fading picture's detail, and its standardised form drifts).
MIN_CONTRAST = 10.0
MAX_SHIFT = (3, 6)  # (rows, columns) of thumbnail pixels a camera move may shift the ends by (~20% of the frame)
_BLOCK = 4096  # windows whose change is computed at once (bounds the temporaries to ~60 MB)


@dataclass(frozen=True)
class Transition:
    """A gradual transition: kind, the frames [first, last] (inclusive) it spans, the frame a shot starts on."""

    kind: str  # "dissolve", "wipe" or "fade"
    first: int
    last: int
    cut: int  # first frame of the new shot: the middle of the span
    strength: float  # the largest change D across a window that found it


def thumbnails(frames: torch.Tensor) -> torch.Tensor:
    """(s, h, w, 3) uint8 RGB -> (s, 18 * 32 * 3) float16 mean-pooled thumbnails."""
    count, height, width, _ = frames.shape
    rows, cols = height // THUMB_SIZE[0], width // THUMB_SIZE[1]
    if frames.device.type == "cpu" and rows * THUMB_SIZE[0] == height and cols * THUMB_SIZE[1] == width:
        # Equal blocks: OpenCV's area resize of the whole stack as one image (blocks never straddle two frames),
        # 17 us a frame at 128x72 against 29 for summing the blocks' slices in torch; the block means, to float16
        # (tests/understand/test_transitions.py).
        stacked = np.ascontiguousarray(frames.numpy()).reshape(count * height, width, 3).astype(np.float32)
        pooled = cv2.resize(stacked, (THUMB_SIZE[1], count * THUMB_SIZE[0]), interpolation=cv2.INTER_AREA)
        pooled = torch.from_numpy(pooled).view(count, *THUMB_SIZE, 3).permute(0, 3, 1, 2)  # (s, 3, 18, 32)
    else:
        pooled = F.adaptive_avg_pool2d(frames.permute(0, 3, 1, 2).float(), THUMB_SIZE)  # (s, 3, 18, 32)
    return pooled.flatten(1).to(torch.float16)


def _centred(thumbs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, d) thumbnails -> rows with each colour plane's mean removed (T, d) float32, and their RMS (T,): a flat
    colour, however saturated, has contrast 0."""
    x = thumbs.float().view(thumbs.shape[0], 3, THUMB_SIZE[0] * THUMB_SIZE[1])  # (T, 3, 18 * 32)
    x = (x - x.mean(2, keepdim=True)).flatten(1)  # (T, d)
    return x, x.square().mean(1).sqrt()


def _mean_abs_difference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, d), (n, d) float32 CPU rows -> (n,) mean |x - y| of each row pair; OpenCV's absdiff and row sums (about
    twice torch's speed at these sizes, one pass and no signed temporary)."""
    if not x.shape[0]:
        return torch.zeros(0)  # OpenCV returns nothing for an empty array
    x, y = np.ascontiguousarray(x.numpy()), np.ascontiguousarray(y.numpy())
    sums = cv2.reduce(cv2.absdiff(x, y), 1, cv2.REDUCE_SUM)  # (n, 1)
    return torch.from_numpy(sums).view(-1) / x.shape[1]


class ThumbnailStats:
    """A video's thumbnails prepared once for every test that reads them (dissolves, wipes, fade spans): centred
    rows, contrast, standardised rows and the change D across windows of every half-width in SCALES. The tests run
    on the CPU (small tensors, many short steps)."""

    def __init__(self, thumbs: torch.Tensor):
        self.thumbs = thumbs.cpu()  # (T, d) float16
        self.centred, self.contrast = _centred(self.thumbs)  # (T, d) float32, (T,)
        self.standard = _standardised(self.centred, self.contrast)  # (T, d)
        total = self.thumbs.shape[0]
        self.change = {}  # {h: (T,) D of the window of half-width h centred on each frame, 0 off the ends}
        for h in SCALES:
            change = torch.zeros(total)
            for first in range(h, total - h, _BLOCK):  # window centres [first, last), a block at a time
                last = min(first + _BLOCK, total - h)
                change[first:last] = _mean_abs_difference(self.standard[first + h:last + h],
                                                          self.standard[first - h:last - h])
            self.change[h] = change

    def windows(self, min_change: float, exact: torch.Tensor | None):
        """The windows of every half-width worth testing -> centres t (n,), half-widths h (n,) and their change D
        (n,): D >= min_change, both ends pictures (contrast >= MIN_CONTRAST) and, with exact (T,) bool, all three
        frames trusted."""
        centres, halves, changes = [], [], []
        for h in SCALES:
            t = (self.change[h] >= min_change).nonzero().flatten()  # (k,)
            t = t[(self.contrast[t - h] >= MIN_CONTRAST) & (self.contrast[t + h] >= MIN_CONTRAST)]
            if exact is not None:
                t = t[exact[t - h] & exact[t] & exact[t + h]]
            centres.append(t)
            halves.append(torch.full_like(t, h))
            changes.append(self.change[h][t])
        return torch.cat(centres), torch.cat(halves), torch.cat(changes)


def prepared(thumbs) -> ThumbnailStats:
    """Thumbnails (T, d) or ThumbnailStats -> ThumbnailStats (computed once when several tests share them)."""
    return thumbs if isinstance(thumbs, ThumbnailStats) else ThumbnailStats(thumbs)


def _standardised(centred: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(T, d) centred rows -> z(x) = x / max(sigma, floor), (T, d): computed once, shared by every window size."""
    return centred / sigma.clamp_min(MIN_CONTRAST / 2)[:, None]


def _blend_ratio(stats: ThumbnailStats, t: torch.Tensor, h: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """Ratio E / D (n,) of the windows centred on frames t (n,) with half-widths h (n,) and change D (n,).

    With x the centred rows, z(x) = x / max(sigma, floor), and the average of two frames standardised directly: its
    centred row is (x_a + x_b) / 2.
    """
    average = stats.centred[t - h] + stats.centred[t + h]  # (n, d): twice the centred average (cancels below)
    spread = average.square().mean(1, keepdim=True).sqrt().clamp_min(MIN_CONTRAST)  # (n, 1): twice the floor
    error = _mean_abs_difference(stats.standard[t], average / spread)  # (n,)
    return error / change.clamp_min(1e-6)


def contrast(thumbs: torch.Tensor) -> torch.Tensor:
    """(T, d) thumbnails -> (T,) RMS deviation from each colour plane's mean (0-255 scale): 0 for a blank frame."""
    return _centred(thumbs)[1]


def _passing(stats: ThumbnailStats, exact, min_change: float, max_ratio: float):
    """-> list of (t, h, D, ratio) for every window passing the test with all three frames exact."""
    t, h, change = stats.windows(min_change, exact)  # (n,) each, every scale at once
    ratio = split_rows(lambda *rows: (_blend_ratio(stats, *rows),), t, h, change)[0]  # (n,)
    keep = ratio <= max_ratio
    t, h, change, ratio = t[keep], h[keep], change[keep], ratio[keep]
    keep = ends_differ(stats, t - h, t + h, min_change)
    return list(zip(t[keep].tolist(), h[keep].tolist(), change[keep].tolist(), ratio[keep].tolist()))


def ends_differ(stats: ThumbnailStats, first: torch.Tensor, last: torch.Tensor, min_change: float) -> torch.Tensor:
    """(n,) bool: frames first and last (n,) still differ by min_change at the best global shift of up to MAX_SHIFT
    thumbnail pixels.

    A camera move over smooth content passes the blend test (a shifted gradient is locally linear) but its ends
    match once one is shifted; two different pictures match at no shift. The rows are split over the cores.
    """
    if not first.numel():
        return torch.zeros(0, dtype=torch.bool)
    change = split_rows(lambda *ends: (_shifted_rows(stats.standard, *ends),), first, last)[0]  # (n,)
    return change >= min_change


def _shifted_rows(standard, first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """(n,) change D between frames first and last (n,) at the best global shift of up to MAX_SHIFT."""
    height, width = THUMB_SIZE
    a = standard[first].view(-1, 3, height, width)  # (n, 3, 18, 32)
    b = standard[last].view(-1, 3, height, width)
    count = first.shape[0]
    best = torch.full((count,), float("inf"))
    dy_max, dx_max = MAX_SHIFT
    for dy in range(-dy_max, dy_max + 1):
        for dx in range(-dx_max, dx_max + 1):
            crop_a = a[:, :, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)]
            crop_b = b[:, :, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
            # The difference is a fresh contiguous tensor: one flat row mean each is ~1.7x faster than a mean over
            # three dimensions at 256 rows, with the same values.
            torch.minimum(best, (crop_a - crop_b).abs_().view(count, -1).mean(1), out=best)
    return best


def dissolve_windows(thumbs: torch.Tensor, min_change: float) -> list[tuple[int, int]]:
    """Frame spans [t - h, t + h] a looser test flags on estimated thumbnails (skimming: decode these in full)."""
    found = _passing(prepared(thumbs), None, 0.7 * min_change, min(0.5, 1.6 * MAX_RATIO))
    return [(t - h, t + h) for t, h, _, _ in found]


def find_dissolves(thumbs, min_change: float, exact: torch.Tensor | None = None) -> list[Transition]:
    """(T, d) thumbnails (or their ThumbnailStats) -> dissolves, one per run of passing window centres.
    exact: (T,) bool, frames to trust."""
    transitions = []
    for run in _runs(_passing(prepared(thumbs), exact, min_change, MAX_RATIO)):
        # A window passes when its centre is inside the blend (its middle frame is a blend), so the run of centres
        # spans the blend; the new shot starts half way through.
        first, last = run[0][0], run[-1][0]
        strength = max(window[2] for window in run)
        transitions.append(Transition("dissolve", first, last, (first + last + 1) // 2, strength))
    return transitions


def _runs(found: list[tuple], gap: int = 2) -> list[list[tuple]]:
    """Passing windows (t, h, ...) -> runs of centres at most `gap` frames apart, seen at two window sizes at least
    (at one only: a fast pan or zoom over smooth content)."""
    runs: list[list[tuple]] = []
    for window in sorted(found):
        if runs and window[0] - runs[-1][-1][0] <= gap:
            runs[-1].append(window)
        else:
            runs.append([window])
    return [run for run in runs if len({window[1] for window in run}) >= 2]


def fade_span(contrast: torch.Tensor, cut: int, into_blank: bool, low: int, high: int) -> tuple[int, int]:
    """Frames [first, last] of a fade at blank-run boundary `cut`, from thumbnail contrast (gain times picture).

    Fade-in (cut = first picture frame): from the cut while contrast keeps rising (1% a frame at least, over three
    frames). Fade-out (cut = first blank frame): back from the cut while contrast keeps rising that way.
    low/high (exclusive) bound the search.
    """
    values = contrast.tolist()

    def rising(k: int, step: int) -> bool:
        ahead = [values[j] for j in range(k + step, k + 4 * step, step) if low <= j < high]
        return bool(ahead) and sum(ahead) / len(ahead) > values[k] * (1 + 0.02 * len(ahead))

    if into_blank:
        first = cut - 1
        while first - 1 >= low and rising(first, -1):
            first -= 1
        return max(first, low), cut - 1
    last = cut
    while last + 1 < high and rising(last, 1):
        last += 1
    return cut, last
