"""Wipes for the weight-free shot detector: the new picture replaces the old one region by region.

A wipe is no blend (the dissolve test of videoai.understand.transitions sees its middle frame as half one picture,
half the other), so it is tested cell by cell on the raw 18x32 thumbnails (a wipe changes no gain):
  1. windows: for a window of half-width h centred on frame t, every cell of frame t shows end a = t - h or end
     b = t + h (cell error to the nearer end at most MAX_RATIO of the cells' change a -> b), and a share between
     SHARE of the changing cells already shows b. Each end is compared at the global shift of up to MAX_SHIFT that
     matches frame t best (on grey levels), so a camera move in either shot does not hide the wipe. As for
     dissolves, the ends must be different pictures (also at the best shift) and the window must pass at two sizes
     at least. A cheap look without shifts drops most windows first (cuts: share 0 or 1).
  2. runs: a run of passing centres is tested again against two fixed frames, first the widest window's reach
     before and after it: across a wipe the share of the new picture rises frame by frame (by MIN_RISE at least);
     a cut jumps (no frame in between) and a change inside one shot does not take the whole picture over. Then,
     against ends a quarter of the span outside it (less motion between them), the frames of the ramp must still
     match the ends cell by cell (median ratio at most MAX_RAMP_RATIO): a dissolve leaves every cell half way.
The span is where a line fitted to the rising share is between 0 and 1; the new shot starts where it passes 1/2.
Measured in benchmarks/bench_shots.py (synthetic wipes from real frames) and tests/understand/test_transitions.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from videoai.understand._threads import split_rows
from videoai.understand.transitions import (
    MAX_SHIFT,
    MIN_CONTRAST,
    SCALES,
    THUMB_SIZE,
    Transition,
    _centred,
    _runs,
    _shifted_change,
    _standardised,
    _window_blocks,
)

__all__ = ["MAX_RATIO", "SHARE", "find_wipes"]

MAX_RATIO = 0.2  # cell error to the nearer end / change, at most: wipes between moving shots score ~0.02-0.17
SHARE = (0.2, 0.8)  # share of the changing cells a window's middle frame takes from the new picture
PREFILTER_RATIO, PREFILTER_SHARE = 0.6, (0.1, 0.9)  # the same test without shifts, loose: drift raises the ratio
RAMP = (0.1, 0.9)  # frames of a run whose share against the fixed ends is in this range form the ramp
MIN_RISE = 0.5  # the share rises by this much at least across the ramp
MAX_RAMP_RATIO = 0.3  # median ratio over the ramp, at most: ends further apart (more motion), a dissolve scores 0.5


class _Thumbs:
    """A video's raw thumbnails (T, 3, 576) and the shift masks every shifted comparison reads (built once)."""

    def __init__(self, thumbs: torch.Tensor):
        height, width = THUMB_SIZE
        dy, dx = MAX_SHIFT
        self.raw = thumbs.float().view(thumbs.shape[0], 3, height * width)  # (T, 3, 576)
        self.coverage, self.covered = _coverage((height, width), (dy, dx))  # (7, 13, 18, 32), (7, 13)
        self.coarse_coverage, self.coarse_covered = _coverage((height // 2, width // 2), (dy // 2 + 1, dx // 2))

    def errors(self, middle: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """(k, 576) per-cell error between frames `middle` and `end` (k,), the end moved by the global shift of up
        to MAX_SHIFT that matches the middle best on average (a camera move: the best 2-pixel shift on half-size
        grey levels, then the best of its 3x3 neighbours at full size); cells the shifted end leaves are inf."""
        height, width = THUMB_SIZE
        dy, dx = MAX_SHIFT
        rows = torch.arange(middle.shape[0])
        m = self.raw[middle].view(-1, 3, height, width)  # (k, 3, 18, 32)
        grey = m.mean(1)  # (k, 18, 32)
        # Only the ends compared are padded (zeros outside; the coverage masks leave those cells out)
        ends = self.raw[end].view(-1, 3, height, width)  # (k, 3, 18, 32)
        padded = F.pad(ends, (dx, dx, dy, dy))  # (k, 3, 24, 44)
        grey_end = ends.mean(1, keepdim=True)  # (k, 1, 18, 32)
        # Half-size grey levels for the coarse search (shifts of 2 pixels)
        coarse = F.pad(F.avg_pool2d(grey_end, 2)[:, 0], (dx // 2, dx // 2, dy // 2 + 1, dy // 2 + 1))  # (k, 13, 22)
        coarse = coarse.unfold(1, height // 2, 1).unfold(2, width // 2, 1)  # (k, 5, 7, 9, 16)
        distance = (F.avg_pool2d(grey[:, None], 2)[:, 0, None, None] - coarse).abs() * self.coarse_coverage
        best = (distance.sum((3, 4)) / self.coarse_covered).flatten(1).argmin(1)  # (k,)
        shift_y = 2 * (best // coarse.shape[2] - (dy // 2 + 1))  # (k,) in full-size pixels
        shift_x = 2 * (best % coarse.shape[2] - dx // 2)
        near = torch.tensor([-1, 0, 1])
        row = (shift_y[:, None, None] + near[None, :, None] + dy).clamp(0, 2 * dy).expand(-1, 3, 3)  # (k, 3, 3)
        col = (shift_x[:, None, None] + near[None, None, :] + dx).clamp(0, 2 * dx).expand(-1, 3, 3)
        fine = F.pad(grey_end[:, 0], (dx, dx, dy, dy)).unfold(1, height, 1).unfold(2, width, 1)  # (k, 7, 13, 18, 32)
        fine = fine[rows[:, None, None], row, col]  # (k, 3, 3, 18, 32)
        distance = (grey[:, None, None] - fine).abs() * self.coverage[row, col]  # (k, 3, 3, 18, 32)
        pick = (distance.sum((3, 4)) / self.covered[row, col]).flatten(1).argmin(1)  # (k,) of the 9 neighbours
        row, col = row.flatten(1)[rows, pick], col.flatten(1)[rows, pick]  # (k,) each
        chosen = padded.unfold(2, height, 1).unfold(3, width, 1)[rows, :, row, col]  # (k, 3, 18, 32)
        error = (m - chosen).abs().mean(1)  # (k, 18, 32)
        return error.masked_fill(self.coverage[row, col] == 0, float("inf")).flatten(1)


def _coverage(size: tuple[int, int], reach: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For each shift of up to `reach` (rows, columns) of a picture of `size`: the cells it still covers
    (2 * reach + 1, size) as 0/1, and how many (2 * reach + 1)."""
    inside = F.pad(torch.ones(1, *size), (reach[1], reach[1], reach[0], reach[0]))  # (1, padded size)
    coverage = inside.unfold(1, size[0], 1).unfold(2, size[1], 1)[0]  # (2 dy + 1, 2 dx + 1, h, w)
    return coverage, coverage.sum((2, 3))


def _cell_test(frames: _Thumbs, t: torch.Tensor, a: torch.Tensor, b: torch.Tensor, shifts: bool = True):
    """Frames t (k,) against ends a, b (k,) -> (ratio, share) (k,) each: error to the nearer end over the change
    a -> b, and the share of that change already showing b; both over the cells both shifted ends cover.
    With shifts (the detector's heaviest step) the rows are split over the cores."""
    if shifts:
        return split_rows(lambda *rows: _cell_rows(frames, *rows, shifts=True), t, a, b)
    return _cell_rows(frames, t, a, b, shifts=False)


def _cell_rows(frames: _Thumbs, t: torch.Tensor, a: torch.Tensor, b: torch.Tensor, shifts: bool):
    raw = frames.raw
    if shifts:
        to_a, to_b = frames.errors(t, a), frames.errors(t, b)  # (k, 576) each
    else:
        to_a, to_b = (raw[t] - raw[a]).abs().mean(1), (raw[t] - raw[b]).abs().mean(1)  # (k, 576) each
    seen = to_a.isfinite() & to_b.isfinite()  # (k, 576)
    differ = (raw[a] - raw[b]).abs().mean(1) * seen  # (k, 576) per-cell change
    weight = differ.sum(1).clamp_min(1e-6)  # (k,)
    nearest = torch.where(seen, torch.minimum(to_a, to_b), 0.0)  # (k, 576)
    return nearest.sum(1) / weight, (differ * (to_b < to_a)).sum(1) / weight


def _windows(thumbs: torch.Tensor, frames: _Thumbs, exact, min_change: float) -> list[tuple[int, int, float]]:
    """-> (t, h, D) for every window passing step 1 of the module doc."""
    centred, sigma = _centred(thumbs)
    standard = _standardised(centred, sigma)  # (T, d)
    found = []
    for h in SCALES:
        for first, _, change in _window_blocks(standard, h):  # change: (n,) D of the windows centred from first
            t = first + (change >= min_change).nonzero().flatten()  # (k,) centres worth testing
            t = t[(sigma[t - h] >= MIN_CONTRAST) & (sigma[t + h] >= MIN_CONTRAST)]
            if exact is not None:
                t = t[exact[t - h] & exact[t] & exact[t + h]]
            if t.numel():  # cheap first look without shifts: cuts (share 0 or 1) and most motion leave here
                ratio, share = _cell_test(frames, t, t - h, t + h, shifts=False)
                t = t[(ratio <= PREFILTER_RATIO) & (share >= PREFILTER_SHARE[0]) & (share <= PREFILTER_SHARE[1])]
            if not t.numel():
                continue
            ratio, share = _cell_test(frames, t, t - h, t + h)
            t = t[(ratio <= MAX_RATIO) & (share >= SHARE[0]) & (share <= SHARE[1])]
            if t.numel():
                t = t[_shifted_change(standard, t - h, t + h) >= min_change]  # the ends are not one shifted picture
            found += [(c, h, float(change[c - first])) for c in t.tolist()]
    return found


def _share_line(frames: _Thumbs, before: int, after: int):
    """Frames strictly between fixed ends `before` and `after` -> (frames, share, ratio) of those on the ramp (share
    within RAMP), and the fitted share's slope per frame (None: fewer than 2 such frames)."""
    t = torch.arange(before + 1, after)  # (n,)
    ratio, share = _cell_test(frames, t, torch.full_like(t, before), torch.full_like(t, after))  # (n,) each
    on_ramp = (share >= RAMP[0]) & (share <= RAMP[1])
    if int(on_ramp.sum()) < 2:
        return None
    x, y = t[on_ramp].double(), share[on_ramp].double()
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum())
    return x, y, ratio[on_ramp], slope


def _fitted_span(line, before: int, after: int) -> tuple[int, int, int]:
    """The share line of `_share_line` -> (first, last, cut): frames where it is above 0 and below 1, inside the
    ends, and the first frame where it reaches 1/2."""
    x, y, _, slope = line

    def frame_at(level: float) -> float:  # where the fitted share reaches `level`
        return float(x.mean() + (level - float(y.mean())) / slope)

    first, last = max(round(frame_at(0.0)) + 1, before + 1), min(round(frame_at(1.0)) - 1, after - 1)
    return first, last, min(max(math.ceil(frame_at(0.5)), first), last)


def _ramp(frames: _Thumbs, run: list[tuple], total: int) -> Transition | None:
    """A run of passing windows -> the wipe it belongs to, or None (step 2 of the module doc)."""
    reach = max(window[1] for window in run)
    before, after = max(run[0][0] - reach, 0), min(run[-1][0] + reach, total - 1)
    line = _share_line(frames, before, after)  # far ends: surely outside the transition
    if line is None or line[3] * float(line[0][-1] - line[0][0]) < MIN_RISE:
        return None  # a jump (a cut), or the new picture does not take over
    first, last, _ = _fitted_span(line, before, after)
    # Ends closer to it (a quarter of its length outside): less motion between them for the cell test.
    margin = max(2, (last - first) // 4)
    before, after = max(first - margin, before), min(last + margin, after)
    line = _share_line(frames, before, after)
    if line is None or line[3] <= 0 or float(line[2].median()) > MAX_RAMP_RATIO:
        return None  # frames half way everywhere: a dissolve
    first, last, cut = _fitted_span(line, before, after)
    return Transition("wipe", first, last, cut, max(window[2] for window in run)) if first <= last else None


def find_wipes(thumbs: torch.Tensor, min_change: float, exact: torch.Tensor | None = None) -> list[Transition]:
    """(T, d) thumbnails -> wipes, one per run of passing window centres. exact: (T,) bool, frames to trust."""
    frames = _Thumbs(thumbs)
    runs = _runs(_windows(thumbs, frames, exact, min_change), gap=2 * SCALES[0])
    found = (_ramp(frames, run, thumbs.shape[0]) for run in runs)
    return [wipe for wipe in found if wipe is not None]
