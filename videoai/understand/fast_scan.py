"""One decoding pass over a file for the shot detector: every frame decoded, downscaled by a 2-tap scaler, scored.

Decoding is the floor of any detector that looks at every frame; this pass adds as little as it can on top:
  - the file is cut at keyframes into pieces (whole groups of pictures, MIN_PIECE frames at least), and one worker
    thread per core takes the next piece as it frees up: each piece has its own unthreaded decoder, seeked to its
    keyframe, and downscales its frames while a shared pool of threads scores them chunk by chunk; each chunk's
    first frame is then scored against the frame before it. PyAV, swscale, OpenCV and torch release the GIL, so
    the threads run side by side. An unthreaded decoder spends ~30% less CPU per frame than ffmpeg's frame
    threads, and decoding no longer waits while frames are scored. A file of one piece (one keyframe, or short)
    has one decoder with ffmpeg's own threads. The frames and scores are the same either way, bit for bit (a
    decoder started at a keyframe sees the same references; tests/understand/test_fast_scan.py compares both);
  - the in-loop deblocking filter is skipped, as `VideoScanner` does;
  - frames go from the decoder's YUV planes to the small RGB frame in one swscale call with FAST_BILINEAR, which
    reads two source pixels per output pixel and axis instead of the ~20 of BILINEAR at a 10x reduction: 3x less
    scaling work at 720p (benchmarks/bench_shots.py prints the frames/s). The price is some aliasing, the same kind
    PySceneDetect's own INTER_LINEAR downscale has: content scores move by up to ~3 on the shared clips (0-255
    scale, threshold 27; counter.mp4's colour change at frame 20 scores 26.0 instead of 25.3).
Frame numbers and times are `VideoScanner`'s (demuxed presentation timestamps), so shots match its other passes.
When a piece does not decode from its keyframe (a file whose keyframe flags are wrong), one decoder reads the file.
"""

from __future__ import annotations

import bisect
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from videoai.tokenize.scan import VideoScanner
from videoai.tokenize.video_io import VideoReadError
from videoai.understand._threads import shared_pool, usable_cores
from videoai.understand.content_score import ContentScorer, FrameScores

__all__ = ["INTERPOLATION", "MIN_PIECE", "fast_scan_scores", "plan_pieces"]

INTERPOLATION = "FAST_BILINEAR"  # swscale's 2-tap scaler (see the module doc)
MIN_PIECE = 64  # frames: each piece costs one more open and seek (a few ms), worth it from about here
MAX_PENDING = 4  # chunks of a piece decoded but not yet scored, at most (bounds memory when scoring lags)


def plan_pieces(keyframes: list[int], num_frames: int, workers: int) -> list[tuple[int, int]]:
    """Frames [start, end) of the pieces decoded on their own: each starts on a keyframe and holds about
    num_frames / (4 * workers) frames (MIN_PIECE at least), so workers taking pieces in turn finish close together."""
    if workers < 2:
        return [(0, num_frames)]
    target = max(MIN_PIECE, num_frames // (4 * workers))
    starts = [0]
    for keyframe in keyframes:
        if keyframe - starts[-1] >= target and num_frames - keyframe >= MIN_PIECE:
            starts.append(keyframe)
    return list(zip(starts, starts[1:] + [num_frames]))


@dataclass
class _ScoredChunk:
    """Frames scored against each other (the first one scores 0 until joined to the chunk before)."""

    scores: torch.Tensor  # (n,) float32
    spreads: torch.Tensor  # (n,) float32
    thumbnails: torch.Tensor  # (n, 1728) float16
    first: torch.Tensor  # (1, h, w, 3) uint8 its first frame
    last: torch.Tensor  # (1, h, w, 3) uint8 its last frame


def _score_chunk(frames: torch.Tensor, weights, device) -> _ScoredChunk:
    scores, spreads, thumbs = ContentScorer(weights, device)(frames)  # (t,), (t,), (t, 1728)
    return _ScoredChunk(scores, spreads, thumbs, frames[:1].clone(), frames[-1:].clone())  # not the whole chunk


def _decoded(scanner: VideoScanner, start: int, end: int, threads: int, chunk_size: int):
    """-> (t, h, w, 3) uint8 RGB chunks of frames [start, end) in display order, from a decoder started at the
    keyframe `start` (threads: the decoder's own, 0 for ffmpeg's choice)."""
    pts = scanner.pts.tolist()
    reformatter = VideoReformatter()
    shape = (chunk_size, scanner.height, scanner.width, 3)
    batch, filled, expected = np.empty(shape, dtype=np.uint8), 0, start
    try:
        with av.open(scanner.path, metadata_errors="replace") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = threads
            stream.codec_context.options = {"skip_loop_filter": "all"}
            if start > 0:
                container.seek(pts[start], stream=stream, backward=True)
            for frame in container.decode(stream):
                at = bisect.bisect_left(pts, frame.pts) if frame.pts is not None else len(pts)
                if at >= len(pts) or pts[at] != frame.pts or at < start:
                    continue  # a frame the demuxer never listed, or one of the piece before
                if at != expected:
                    raise VideoReadError(scanner.path, f"frame {expected} did not decode (got frame {at})")
                small = reformatter.reformat(frame, width=scanner.width, height=scanner.height, format="rgb24",
                                             interpolation=INTERPOLATION, threads=1)
                batch[filled] = small.to_ndarray()  # (h, w, 3)
                filled, expected = filled + 1, expected + 1
                if filled == chunk_size or expected == end:
                    yield torch.from_numpy(batch[:filled])
                    batch, filled = np.empty(shape, dtype=np.uint8), 0  # the chunk is scored in another thread
                if expected == end:
                    return
    except av.FFmpegError as error:
        raise VideoReadError(scanner.path, f"decoding failed, file corrupt or truncated ({error})") from error
    raise VideoReadError(scanner.path, f"{expected} of {scanner.num_frames} frames decoded")


def _scan_piece(scanner: VideoScanner, piece: tuple[int, int], threads: int, weights, chunk_size: int,
                device) -> list[_ScoredChunk]:
    """Decodes a piece in this thread while the shared pool scores its chunks (MAX_PENDING at most in flight)."""
    pending, scored = deque(), []
    for frames in _decoded(scanner, *piece, threads, chunk_size):
        pending.append(shared_pool().submit(_score_chunk, frames, weights, device))
        if len(pending) > MAX_PENDING:
            scored.append(pending.popleft().result())
    return scored + [chunk.result() for chunk in pending]


def _scan(scanner: VideoScanner, pieces, workers: int, weights, chunk_size: int, device) -> FrameScores:
    workers = max(1, min(workers, len(pieces)))
    threads = 0 if len(pieces) == 1 else max(1, usable_cores() // workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        scanned = [chunk for chunks in pool.map(
            lambda piece: _scan_piece(scanner, piece, threads, weights, chunk_size, device), pieces) for chunk in chunks]
    for before, after in zip(scanned, scanned[1:]):  # each chunk's first frame against the frame before it
        after.scores[0] = ContentScorer(weights, device)(torch.cat([before.last, after.first]))[0][1]
    return FrameScores(torch.cat([c.scores for c in scanned]), torch.from_numpy(scanner.timestamps),
                       torch.cat([c.spreads for c in scanned]), torch.cat([c.thumbnails for c in scanned]),
                       torch.ones(scanner.num_frames, dtype=torch.bool), scanner.duration)


def fast_scan_scores(path, weights, *, size=72, chunk_size: int = 32, device=None, workers: int | None = None
                     ) -> FrameScores:
    """Scores, spreads and thumbnails of every frame of a file in one decoding pass (see the module doc).
    workers: pieces decoded at once (default: the usable cores; 1: one decoder with ffmpeg's threads).
    Raises VideoReadError like `VideoScanner`, and when a listed frame does not decode."""
    scanner = VideoScanner(path, size)
    workers = usable_cores() if workers is None else int(workers)
    pieces = plan_pieces(scanner.keyframe_indices, scanner.num_frames, workers)
    try:
        return _scan(scanner, pieces, workers, weights, chunk_size, device)
    except VideoReadError:
        if len(pieces) == 1:
            raise
    return _scan(scanner, [(0, scanner.num_frames)], 1, weights, chunk_size, device)  # a piece failed: one decoder
