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
    SCALES,
    THUMB_SIZE,
    ThumbnailStats,
    Transition,
    _runs,
    ends_differ,
    prepared,
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

    def __init__(self, thumbs: torch.Tensor):  # (T, 1728) float16 on the CPU
        height, width = THUMB_SIZE
        dy, dx = MAX_SHIFT
        self.raw = thumbs.float().view(thumbs.shape[0], 3, height * width)  # (T, 3, 576)
        self.coverage, self.covered = _coverage((height, width), (dy, dx))  # (7, 13, 18, 32), (7, 13)
        self.coarse_reach = (dy // 2 + 1, dx // 2)  # in half-size pixels
        coverage, covered = _coverage((height // 2, width // 2), self.coarse_reach)  # (5, 7, 9, 16), (5, 7)
        self.coarse_coverage, self.coarse_covered = coverage.reshape(-1, height // 2, width // 2), covered.flatten()

    def errors(self, middle: torch.Tensor, *ends: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(k, 576) per-cell error between frames `middle` (k,) and each of `ends` (k,), the end moved by the global
        shift of up to MAX_SHIFT that matches the middle best on average (a camera move: the best 2-pixel shift on
        half-size grey levels, then the best of its 3x3 neighbours at full size); cells the shifted end leaves are
        inf."""
        height, width = THUMB_SIZE
        m = self.raw[middle].view(-1, 3, height, width)  # (k, 3, 18, 32)
        grey = m.mean(1)  # (k, 18, 32)
        coarse = F.avg_pool2d(grey[:, None], 2)[:, 0]  # (k, 9, 16) half-size grey levels, for shifts of 2 pixels
        return tuple(self._shifted_error(m, grey, coarse, end) for end in ends)

    def _shifted_error(self, m, grey, coarse_middle, end: torch.Tensor) -> torch.Tensor:
        height, width = THUMB_SIZE
        dy, dx = MAX_SHIFT
        count = end.shape[0]
        rows = torch.arange(count)
        ends = self.raw[end].view(-1, 3, height, width)  # (k, 3, 18, 32)
        grey_end = ends.mean(1)  # (k, 18, 32)
        # Only the ends compared are padded (zeros outside; the coverage masks leave those cells out). Every shifted
        # window is copied out once: subtracting from the unfolded view itself is several times slower.
        coarse = F.pad(F.avg_pool2d(grey_end[:, None], 2)[:, 0], (dx // 2, dx // 2, dy // 2 + 1, dy // 2 + 1))
        coarse = coarse.unfold(1, height // 2, 1).unfold(2, width // 2, 1)  # (k, 5, 7, 9, 16) view
        coarse = coarse.reshape(count, -1, height // 2, width // 2)  # (k, 35, 9, 16)
        distance = (coarse_middle[:, None] - coarse).abs_().mul_(self.coarse_coverage)  # (k, 35, 9, 16)
        best = (distance.sum((2, 3)) / self.coarse_covered).argmin(1)  # (k,) of the 35 coarse shifts
        columns = self.coarse_reach[1] * 2 + 1
        shift_y = 2 * (best // columns - self.coarse_reach[0])  # (k,) in full-size pixels
        shift_x = 2 * (best % columns - self.coarse_reach[1])
        near = torch.tensor([-1, 0, 1])
        row = (shift_y[:, None, None] + near[None, :, None] + dy).clamp(0, 2 * dy).expand(-1, 3, 3).reshape(-1, 9)
        col = (shift_x[:, None, None] + near[None, None, :] + dx).clamp(0, 2 * dx).expand(-1, 3, 3).reshape(-1, 9)
        fine = F.pad(grey_end, (dx, dx, dy, dy)).unfold(1, height, 1).unfold(2, width, 1)  # (k, 7, 13, 18, 32) view
        fine = fine[rows[:, None], row, col]  # (k, 9, 18, 32): the 3x3 neighbours of the coarse shift
        distance = (grey[:, None] - fine).abs_().mul_(self.coverage[row, col])  # (k, 9, 18, 32)
        pick = (distance.sum((2, 3)) / self.covered[row, col]).argmin(1)  # (k,) of the 9 neighbours
        row, col = row[rows, pick], col[rows, pick]  # (k,) each
        padded = F.pad(ends, (dx, dx, dy, dy))  # (k, 3, 24, 44)
        chosen = padded.unfold(2, height, 1).unfold(3, width, 1)[rows, :, row, col]  # (k, 3, 18, 32)
        error = (m - chosen).abs_().mean(1)  # (k, 18, 32)
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
    The rows are split over the cores."""
    return split_rows(lambda *rows: _cell_rows(frames, *rows, shifts=shifts), t, a, b)


def _colour_difference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(k, 3, 576) raw thumbnails each -> (k, 576) per-cell mean absolute difference over the colour planes."""
    return (x - y).abs_().mean(1)


def _cell_rows(frames: _Thumbs, t: torch.Tensor, a: torch.Tensor, b: torch.Tensor, shifts: bool):
    raw = frames.raw
    end_a, end_b = raw[a], raw[b]  # (k, 3, 576) each
    differ = _colour_difference(end_a, end_b)  # (k, 576) per-cell change
    if shifts:
        to_a, to_b = frames.errors(t, a, b)  # (k, 576) each
        seen = to_a.isfinite() & to_b.isfinite()  # (k, 576) cells both shifted ends cover
        differ = differ * seen
        nearest = torch.where(seen, torch.minimum(to_a, to_b), 0.0)  # (k, 576)
    else:
        middle = raw[t]  # (k, 3, 576)
        to_a, to_b = _colour_difference(middle, end_a), _colour_difference(middle, end_b)  # (k, 576) each
        nearest = torch.minimum(to_a, to_b)
    weight = differ.sum(1).clamp_min(1e-6)  # (k,)
    return nearest.sum(1) / weight, (differ * (to_b < to_a)).sum(1) / weight


def _windows(stats: ThumbnailStats, frames: _Thumbs, exact, min_change: float) -> list[tuple[int, int, float]]:
    """-> (t, h, D) for every window passing step 1 of the module doc; every scale's windows are tested together."""
    t, h, change = stats.windows(min_change, exact)  # (n,) each
    if t.numel():  # cheap first look without shifts: cuts (share 0 or 1) and most motion leave here
        ratio, share = _cell_test(frames, t, t - h, t + h, shifts=False)
        keep = (ratio <= PREFILTER_RATIO) & (share >= PREFILTER_SHARE[0]) & (share <= PREFILTER_SHARE[1])
        t, h, change = t[keep], h[keep], change[keep]
    if t.numel():
        ratio, share = _cell_test(frames, t, t - h, t + h)
        keep = (ratio <= MAX_RATIO) & (share >= SHARE[0]) & (share <= SHARE[1])
        t, h, change = t[keep], h[keep], change[keep]
    keep = ends_differ(stats, t - h, t + h, min_change)  # the ends are not one shifted picture
    return list(zip(t[keep].tolist(), h[keep].tolist(), change[keep].tolist()))


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


def find_wipes(thumbs, min_change: float, exact: torch.Tensor | None = None) -> list[Transition]:
    """(T, d) thumbnails (or their ThumbnailStats) -> wipes, one per run of passing window centres.
    exact: (T,) bool, frames to trust."""
    stats = prepared(thumbs)
    frames = _Thumbs(stats.thumbs)
    runs = _runs(_windows(stats, frames, exact, min_change), gap=2 * SCALES[0])
    found = (_ramp(frames, run, stats.thumbs.shape[0]) for run in runs)
    return [wipe for wipe in found if wipe is not None]
