"""Content scores for shot detection: how much each frame differs from the one before, in HSV.

The content score of frame t is the mean absolute difference to frame t-1 of hue, saturation and value (OpenCV's
8-bit HSV scale: H in [0, 180), S and V in [0, 255]), optionally of an edge map, averaged with `weights` — the score
PySceneDetect's ContentDetector thresholds at 27. With it comes each frame's spread (median absolute deviation of
the value plane), which tells blank frames from pictures.

`content_scores` decodes every frame. `skim_scores` gets the same scores where they matter for less decoding: it
scores the reference frames of the stream against each other (`VideoScanner.reference_chunks`), then decodes every
frame only in the spans between two reference frames that differ enough to hide a cut, or a change between blank
and picture (`VideoScanner.frames_between`). Elsewhere each frame gets its span's score shared evenly, an estimate
below the level that matters, and spreads interpolated between the span's ends. When the spans would cover more
than SCAN_ALL_ABOVE of the video, or already do of its first CHECK_AT (dissolve-heavy footage: the dissolve test
flags every sustained change), one pass decodes every frame instead (`scan_scores`: the same pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from videoai.tokenize.scan import VideoScanner
from videoai.tokenize.video_io import VideoReadError
from videoai.understand._source import FrameSource, _prefetch, open_source, pick_device
from videoai.understand.transitions import dissolve_windows, thumbnails

__all__ = [
    "ContentScorer",
    "FrameScores",
    "blank_state",
    "check_weights",
    "content_scores",
    "frame_scores",
    "rgb_to_hsv",
    "scan_scores",
    "scanned_scores",
    "skim_scores",
]

_CPU_PIXELS = 1 << 17  # pixels scored at once on the CPU
SCAN_ALL_ABOVE = 0.4  # skimming decodes every frame in one pass when its spans would cover more of the video
CHECK_AT = 0.25  # ... or already cover more of the part seen once the reference pass is this far through it


def _hsv_planes(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor):
    """Float RGB planes in [0, 255] (any equal shapes) -> (hue, saturation, value) planes, OpenCV 8-bit scale."""
    value = torch.maximum(torch.maximum(r, g), b)
    chroma = value - torch.minimum(torch.minimum(r, g), b)
    # Hue sector by which channel is the max (ties resolve R, then G, like OpenCV); blends by 0/1 masks are
    # cheaper on the CPU than nested torch.where.
    is_r = (value == r).float()
    is_g = (value == g).float() * (1 - is_r)
    is_b = 1 - is_r - is_g
    hue = (is_r * (g - b) + is_g * (b - r + 2 * chroma) + is_b * (r - g + 4 * chroma)) * (30 / chroma.clamp_min(1e-6))
    hue = hue + 180 * (hue < 0).float()  # 60 degrees per sector, halved to fit 8 bits
    saturation = chroma * (255 / value.clamp_min(1e-6))
    return hue, saturation, value


def _hsv(frames: torch.Tensor) -> torch.Tensor:
    """(s, h, w, 3) uint8 RGB -> (3, s, h, w) float HSV on OpenCV's 8-bit scale.

    On the CPU OpenCV converts the whole stack as one image (what PySceneDetect scores, hue rounded to integers),
    several times faster than torch's elementwise ops on small frames; elsewhere torch computes it in float.
    """
    if frames.device.type == "cpu":
        count, height, width, _ = frames.shape
        stacked = np.ascontiguousarray(frames.numpy()).reshape(count * height, width, 3)
        hsv = cv2.cvtColor(stacked, cv2.COLOR_RGB2HSV)  # (s*h, w, 3) uint8
        return torch.from_numpy(hsv).view(count, height, width, 3).permute(3, 0, 1, 2).float()  # (3, s, h, w)
    rgb = frames.permute(3, 0, 1, 2).float()  # (3, s, h, w) planar
    return torch.stack(_hsv_planes(rgb[0], rgb[1], rgb[2]))


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float RGB in [0, 255] -> HSV on OpenCV's 8-bit scale: H in [0, 180), S and V in [0, 255]."""
    return torch.stack(_hsv_planes(*rgb.unbind(1)), dim=1)


def _edge_maps(value: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma -> (B, 1, H, W) edges in {0, 255}.

    Written here because Canny (cv2) runs one frame at a time on the CPU: this is Sobel magnitude above Canny's
    usual median-based high threshold (1 + 1/3) * median, without thinning, dilated like PySceneDetect does.
    """
    kernel_x = value.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kernel_x, kernel_x.T])[:, None]  # (2, 1, 3, 3)
    grad = F.conv2d(F.pad(value, (1, 1, 1, 1), mode="replicate"), kernels)  # (B, 2, H, W)
    magnitude = grad.abs().sum(1, keepdim=True)  # L1 norm, Canny's default
    median = value.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
    edges = (magnitude >= (4.0 / 3.0) * median.clamp_min(1.0)).float()
    height, width = value.shape[-2:]
    size = 4 + round(math.sqrt(height * width) / 192)
    size += 1 - size % 2  # odd
    return F.max_pool2d(edges, size, stride=1, padding=size // 2) * 255  # dilation


def _lower_median_bin(values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(s, n) int64 in [0, 256) -> (s,) each row's lower median (torch.median's), from a histogram per row."""
    count = values.shape[0]
    histogram = torch.bincount((values + offsets).flatten(), minlength=count * 256).view(count, 256)
    return (histogram.cumsum(1) <= (values.shape[1] - 1) // 2).sum(1)  # first bin holding the median rank


def _median_abs_deviation(value: torch.Tensor) -> torch.Tensor:
    """(s, n) value planes, whole numbers in [0, 255] -> (s,) float median absolute deviation (lower medians).

    Counting 256 bins per frame is 2-4x faster than torch.median's sort on the CPU, and exact for 8-bit values.
    """
    value = value.long()
    offsets = torch.arange(value.shape[0], device=value.device)[:, None] * 256  # (s, 1) each row its own bins
    median = _lower_median_bin(value, offsets)  # (s,)
    return _lower_median_bin((value - median[:, None]).abs(), offsets).float()


def check_weights(weights) -> tuple[float, float, float, float]:
    try:
        weights = tuple(float(w) for w in weights)
    except (TypeError, ValueError):
        raise TypeError(f"weights: expected 4 numbers (hue, sat, value, edges), got {weights!r}") from None
    if len(weights) != 4 or sum(abs(w) for w in weights) == 0:
        raise ValueError(f"weights: expected 4 numbers (hue, sat, value, edges), not all 0, got {weights!r}")
    return weights


class ContentScorer:
    """Scores frames fed in order, chunk by chunk, against the frame fed before (the first one fed scores 0)."""

    def __init__(self, weights=(1.0, 1.0, 1.0, 0.0), device=None):
        weights = check_weights(weights)
        self.num_components = 4 if weights[3] != 0 else 3
        weight = torch.tensor(weights, dtype=torch.float32)
        self.weight = weight[:self.num_components] / weight.abs().sum()  # (C,)
        self.device = device
        self.previous = None  # the last frame's feature planes, each (h, w)
        self.previous_hsv = None  # or, on the CPU without edges, its (h, w, 3) uint8 HSV

    def reset(self) -> None:
        """Forget the previous frame: the next frame fed scores 0."""
        self.previous = None
        self.previous_hsv = None

    def __call__(self, frames: torch.Tensor, on_device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(t, h, w, 3) uint8 RGB -> scores (t,) and spreads (t,), float32, and thumbnails (t, 1728) float16, all on
        the CPU. on_device: where the frames already are (scored there unless the scorer was given a device), None
        for decoded frames."""
        target = pick_device(on_device, self.device)
        if target.type == "cpu" and self.num_components == 3:
            return self._score_hsv8(frames.cpu())
        frames = frames.to(target, non_blocking=True)  # (t, h, w, 3) uint8
        # CPU: a few frames at a time keep every temporary cache-sized (big fresh allocations page-fault); GPU: all.
        step = frames.shape[0] if target.type == "cuda" else max(1, _CPU_PIXELS // (frames.shape[1] * frames.shape[2]))
        deltas, spreads, thumbs = [], [], []
        for first in range(0, frames.shape[0], step):
            features = list(_hsv(frames[first:first + step]))  # 3 x (s, h, w) float
            if self.num_components == 4:
                features.append(_edge_maps(features[2][:, None])[:, 0])
            columns = []
            for k, plane in enumerate(features):
                delta = (plane[1:] - plane[:-1]).abs().mean(dim=(1, 2))  # (s-1,)
                head = plane.new_zeros(1) if self.previous is None else (plane[0] - self.previous[k]).abs().mean()[None]
                columns.append(torch.cat([head, delta]))
            deltas.append(torch.stack(columns, 1))  # (s, C)
            spreads.append(_median_abs_deviation(features[2][:, ::2, ::2].flatten(1)))  # (s,)
            thumbs.append(thumbnails(frames[first:first + step]).cpu())  # (s, 1728)
            self.previous = [plane[-1] for plane in features]
        scores = torch.cat(deltas).cpu() @ self.weight  # (t,)
        return scores.float(), torch.cat(spreads).cpu().float(), torch.cat(thumbs)

    def _score_hsv8(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The CPU path without edges: absolute differences of OpenCV's 8-bit HSV summed as whole numbers, the same
        values as the float path (whose sums are exact in float32 up to 2**24), ~30% faster at 128x72."""
        count, height, width, _ = frames.shape
        rgb = np.ascontiguousarray(frames.numpy())
        step = max(1, _CPU_PIXELS // (height * width))  # frames at once: temporaries stay cache-sized
        sums, spreads, thumbs = [], [], []
        for first in range(0, count, step):
            hsv = cv2.cvtColor(rgb[first:first + step].reshape(-1, width, 3), cv2.COLOR_RGB2HSV)  # (s * h, w, 3)
            previous = hsv[:height] if self.previous_hsv is None else self.previous_hsv  # the first frame: 0
            sums.append(_plane_sums(cv2.absdiff(hsv[:height], previous), height))  # (1, 3)
            if hsv.shape[0] > height:
                sums.append(_plane_sums(cv2.absdiff(hsv[height:], hsv[:-height]), height))  # (s - 1, 3) k+1 vs k
            value = torch.from_numpy(hsv).view(-1, height, width, 3)[:, ::2, ::2, 2].flatten(1)  # (s, n) uint8
            spreads.append(_median_abs_deviation(value))
            thumbs.append(thumbnails(frames[first:first + step]))
            self.previous_hsv = hsv[-height:].copy()
        deltas = torch.from_numpy(np.concatenate(sums)).float() / (height * width)  # (t, 3) mean per plane
        return deltas @ self.weight, torch.cat(spreads), torch.cat(thumbs)


def _plane_sums(difference: np.ndarray, height: int) -> np.ndarray:
    """(s * h, w, 3) uint8 absolute differences of s frames -> (s, 3) float64 sums per frame and plane (exact)."""
    pixels = height * difference.shape[1]
    return cv2.reduce(difference.reshape(-1, pixels, 3), 1, cv2.REDUCE_SUM, dtype=cv2.CV_64F).reshape(-1, 3)


@dataclass
class FrameScores:
    """What the shot detector needs of every frame of a video."""

    scores: torch.Tensor  # (T,) float32 content score against the frame before (frame 0: 0)
    timestamps: torch.Tensor  # (T,) float64 seconds
    spreads: torch.Tensor  # (T,) float32 median absolute deviation of the value plane
    thumbnails: torch.Tensor  # (T, 1728) float16, see videoai.understand.transitions
    exact: torch.Tensor  # (T,) bool: decoded (True) or estimated from the frames around it (skimming)
    end_time: float  # when the last frame ends


def frame_scores(source: FrameSource, weights, *, size=72, chunk_size: int = 32, device=None) -> FrameScores:
    """Scores, spreads and thumbnails of every frame of `source`, decoded in full."""
    scorer = ContentScorer(weights, device)
    scores, spreads, thumbs, times = [], [], [], []
    for chunk in source.chunks(chunk_size, size):
        score, spread, thumb = scorer(chunk.frames, chunk.frames.device if source.frames is not None else None)
        scores.append(score)
        spreads.append(spread)
        thumbs.append(thumb)
        times.append(chunk.timestamps)
    scores = torch.cat(scores)
    return FrameScores(scores, torch.cat(times).to(torch.float64), torch.cat(spreads), torch.cat(thumbs),
                       torch.ones(scores.shape[0], dtype=torch.bool), source.end_time())


def scan_scores(path, weights, *, size=72, chunk_size: int = 32, device=None) -> FrameScores:
    """`frame_scores` of every frame of a file, decoded by `VideoScanner.frame_chunks`: the pixels `skim_scores`
    sees, so both find the same shots. Raises VideoReadError like `VideoScanner`."""
    scanner = VideoScanner(path, size)
    chunks = (chunk.frames for chunk in _prefetch(scanner.frame_chunks(chunk_size)))
    return scanned_scores(scanner, chunks, ContentScorer(weights, device))


def scanned_scores(scanner: VideoScanner, chunks, scorer: ContentScorer) -> FrameScores:
    """Every frame of `scanner`'s file, decoded into `chunks` ((t, h, w, 3) uint8, display order), scored by
    `scorer`; timed by the scanner. Raises VideoReadError when fewer frames come than the scanner lists."""
    scores, spreads, thumbs = [], [], []
    for frames in chunks:
        score, spread, thumb = scorer(frames)  # (t,), (t,), (t, 1728)
        scores.append(score)
        spreads.append(spread)
        thumbs.append(thumb)
    scores = torch.cat(scores)
    if scores.shape[0] != scanner.num_frames:
        raise VideoReadError(scanner.path, f"{scores.shape[0]} of {scanner.num_frames} frames decoded")
    return FrameScores(scores, torch.from_numpy(scanner.timestamps), torch.cat(spreads), torch.cat(thumbs),
                       torch.ones(scores.shape[0], dtype=torch.bool), scanner.duration)


def content_scores(
    video,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.0),
    *,
    size=72,
    chunk_size: int = 32,
    fps: float | None = None,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame content score (T,) float32 (frame 0 scores 0), timestamps (T,) float64 and spread (T,) float32.

    video: path, `VideoClip` or (T, H, W, 3) uint8 frames (see `detect_shots`). weights: (hue, saturation, value,
    edges). spread is the median absolute deviation of the value plane (on every second pixel): 0 for a blank frame
    (black, white or any flat colour, even with a small logo), tens for a picture. All three on the CPU.
    """
    source = video if isinstance(video, FrameSource) else open_source(video, fps=fps)
    scored = frame_scores(source, check_weights(weights), size=size, chunk_size=chunk_size, device=device)
    return scored.scores, scored.timestamps, scored.spreads


def blank_state(spread: torch.Tensor, low: float) -> torch.Tensor:
    """(T,) spread -> (T,) bool, frame is blank. Hysteresis: blank below `low`, a picture above 2 * low, and in
    between the last decided state (the first frame: blank below 1.5 * low)."""
    decided = (spread < low) | (spread > 2 * low)
    index = torch.where(decided, torch.arange(spread.shape[0]), torch.full_like(spread, -1, dtype=torch.long))
    last = index.cummax(0).values  # (T,) last decided frame so far, -1 before the first
    return torch.where(last >= 0, spread[last.clamp_min(0)] < low, spread[0] < 1.5 * low)


def skim_scores(
    path,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.0),
    *,
    look_closer: float,
    blank_threshold: float | None,
    dissolve_change: float | None = None,
    margin: int = 0,
    size=72,
    chunk_size: int = 32,
    device=None,
) -> FrameScores:
    """`frame_scores` of a file, exact wherever a score could reach `look_closer`, a frame could turn blank or (with
    `dissolve_change`) a dissolve could pass `find_dissolves` (see the module doc), with `margin` more exact frames
    on each side of every such span. Raises VideoReadError like `read_video`."""
    scanner = VideoScanner(path, size)
    scorer = ContentScorer(weights, device)
    total = scanner.num_frames
    rules = {"look_closer": look_closer, "blank_threshold": blank_threshold, "dissolve_change": dissolve_change,
             "margin": margin}
    indices, coarse, coarse_spread, coarse_thumbs = [], [], [], []
    chunks = _prefetch(scanner.reference_chunks(chunk_size))
    checked = False
    for chunk in chunks:
        score, spread, thumb = scorer(chunk.frames)  # (t,) each, (t, 1728): against the previous reference frame
        indices.append(chunk.indices)
        coarse.append(score)
        coarse_spread.append(spread)
        coarse_thumbs.append(thumb)
        seen = int(chunk.indices[-1]) + 1
        if not checked and seen >= CHECK_AT * total and seen < total:
            # Spans already this dense in the first part of the video (dissolve-heavy footage): a pass over
            # every frame now costs less than finishing this pass and then that one.
            checked = True
            estimate = _estimate(torch.cat(indices), torch.cat(coarse), torch.cat(coarse_spread),
                                 torch.cat(coarse_thumbs), seen)
            if _covered(_close_spans(estimate, seen, **rules)) > SCAN_ALL_ABOVE * seen:
                chunks.close()
                return scan_scores(path, weights, size=size, chunk_size=chunk_size, device=device)
    estimate = _estimate(torch.cat(indices), torch.cat(coarse), torch.cat(coarse_spread), torch.cat(coarse_thumbs),
                         total)
    merged = _close_spans(estimate, total, **rules)
    if _covered(merged) > SCAN_ALL_ABOVE * total:
        # Spans this dense cost more, each decoded from the keyframe before it, than one pass over every frame,
        # which gives the same pixels (and so the same shots).
        scanner.close()
        return scan_scores(path, weights, size=size, chunk_size=chunk_size, device=device)
    scores, spreads, thumbs, exact = estimate.scores, estimate.spreads, estimate.thumbnails, estimate.exact
    try:
        for first, last in merged:
            span = scanner.frames_between(first, last)
            scorer.reset()
            score, spread, thumb = scorer(span.frames)  # (last - first + 1,) each, (last - first + 1, 1728)
            scores[first + 1:last + 1] = score[1:]  # the span's first frame has no exact predecessor here
            spreads[first:last + 1] = spread
            thumbs[first:last + 1] = thumb
            exact[first:last + 1] = True
    finally:
        scanner.close()
    return FrameScores(scores, torch.from_numpy(scanner.timestamps), spreads, thumbs, exact, scanner.duration)


@dataclass
class _Estimate:
    """Every frame's values estimated from the reference frames (and which frames those are)."""

    ref: torch.Tensor  # (R,) int64 reference frame numbers
    coarse: torch.Tensor  # (R,) score of each reference frame against the one before
    coarse_spread: torch.Tensor  # (R,)
    scores: torch.Tensor  # (T,)
    spreads: torch.Tensor  # (T,)
    thumbnails: torch.Tensor  # (T, 1728) float16
    exact: torch.Tensor  # (T,) bool


def _estimate(ref, coarse, coarse_spread, coarse_thumbs, total: int) -> _Estimate:
    """Reference frames' values -> every frame's: each frame of span (ref[i-1], ref[i]] gets coarse[i] / its length,
    spreads and thumbnails interpolated."""
    position = torch.arange(total)  # (T,)
    after = torch.searchsorted(ref, position).clamp(max=ref.shape[0] - 1)  # (T,) the reference frame at or after
    before = (after - 1).clamp_min(0)
    length = (ref[after] - ref[before]).clamp_min(1)  # (T,)
    scores = torch.where(position > ref[0], coarse[after] / length, torch.zeros(()))
    fraction = ((position - ref[before]) / length).clamp(0, 1)
    spreads = torch.lerp(coarse_spread[before], coarse_spread[after], fraction.float())
    thumbs = torch.lerp(coarse_thumbs[before].float(), coarse_thumbs[after].float(),
                        fraction.float()[:, None]).to(torch.float16)  # (T, 1728)
    exact = torch.zeros(total, dtype=torch.bool)
    exact[ref] = True
    return _Estimate(ref, coarse, coarse_spread, scores, spreads, thumbs, exact)


def _close_spans(estimate: _Estimate, total: int, *, look_closer, blank_threshold, dissolve_change, margin):
    """Merged (first, last) spans of frames [0, total) to decode in full."""
    ref, coarse, coarse_spread = estimate.ref, estimate.coarse, estimate.coarse_spread
    # Spans worth a closer look: more than one frame long and a score that could hide a cut, or a blank change.
    gap = ref[1:] - ref[:-1]  # (R-1,)
    closer = coarse[1:] >= look_closer
    if blank_threshold is not None:
        state = blank_state(coarse_spread, blank_threshold)
        undecided = (coarse_spread >= blank_threshold) & (coarse_spread <= 2 * blank_threshold)
        closer |= (state[1:] != state[:-1]) | undecided[1:] | undecided[:-1]
    spans = [(int(a), int(b)) for a, b in zip(ref[:-1][closer & (gap > 1)], ref[1:][closer & (gap > 1)])]
    if dissolve_change is not None:  # a sustained change that could be a dissolve: every frame of its window
        spans += [(max(0, a - 1), min(total - 1, b + 1))
                  for a, b in dissolve_windows(estimate.thumbnails, dissolve_change)]
    if ref[0] > 0:
        spans.insert(0, (0, int(ref[0])))  # frames shown before the first reference frame (open GOP)
    if ref[-1] < total - 1:
        spans.append((int(ref[-1]), total - 1))  # non-reference frames after the last one
    return _merge(spans, margin, total)


def _covered(spans: list[tuple[int, int]]) -> int:
    return sum(last - first + 1 for first, last in spans)


def _merge(spans: list[tuple[int, int]], margin: int, total: int) -> list[tuple[int, int]]:
    """Widen each (first, last) span by `margin` (the first by one more frame, to score it exactly) and merge."""
    merged: list[list[int]] = []
    for first, last in sorted(spans):
        first, last = max(0, first - margin - 1), min(total - 1, last + margin)
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [(a, b) for a, b in merged]
