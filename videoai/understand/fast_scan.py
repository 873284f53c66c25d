"""One decoding pass over a file for the shot detector: every frame decoded, downscaled by a 2-tap scaler, scored.

Decoding is the floor of any detector that looks at every frame; this pass adds as little as it can on top:
  - the decoder runs ffmpeg's own frame threads (`thread_type="AUTO"`) and skips the in-loop deblocking filter,
    as `VideoScanner` does; the caller's thread downscales and scores while those threads decode ahead, with no
    Python worker threads between them (less CPU per frame; on a busy machine that is what wall time follows);
  - frames go from the decoder's YUV planes to the small RGB frame in one swscale call with FAST_BILINEAR, which
    reads two source pixels per output pixel and axis instead of the ~20 of BILINEAR at a 10x reduction: 3x less
    scaling work at 720p (benchmarks/bench_shots.py prints the frames/s). The price is some aliasing, the same kind
    PySceneDetect's own INTER_LINEAR downscale has: content scores move by up to ~3 on the shared clips (0-255
    scale, threshold 27; counter.mp4's colour change at frame 20 scores 26.0 instead of 25.3).
Frame numbers and times are `VideoScanner`'s (demuxed presentation timestamps), so shots match its other passes.
"""

from __future__ import annotations

import bisect

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from videoai.tokenize.scan import VideoScanner
from videoai.tokenize.video_io import VideoReadError
from videoai.understand.content_score import ContentScorer, FrameScores, scanned_scores

__all__ = ["INTERPOLATION", "fast_scan_scores"]

INTERPOLATION = "FAST_BILINEAR"  # swscale's 2-tap scaler (see the module doc)


def _frames(scanner: VideoScanner, chunk_size: int):
    """-> (t, h, w, 3) uint8 RGB chunks of every frame in display order, from one decoder."""
    pts = scanner.pts.tolist()
    reformatter = VideoReformatter()
    batch = np.empty((chunk_size, scanner.height, scanner.width, 3), dtype=np.uint8)
    filled, expected = 0, 0
    try:
        with av.open(scanner.path, metadata_errors="replace") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.options = {"skip_loop_filter": "all"}
            for frame in container.decode(stream):
                at = bisect.bisect_left(pts, frame.pts) if frame.pts is not None else len(pts)
                if at >= len(pts) or pts[at] != frame.pts:
                    continue  # a frame the demuxer never listed
                if at != expected:
                    raise VideoReadError(scanner.path, f"frame {expected} did not decode (got frame {at})")
                small = reformatter.reformat(frame, width=scanner.width, height=scanner.height, format="rgb24",
                                             interpolation=INTERPOLATION, threads=1)
                batch[filled] = small.to_ndarray()  # (h, w, 3)
                filled, expected = filled + 1, expected + 1
                if filled == chunk_size:
                    yield torch.from_numpy(batch.copy())
                    filled = 0
    except av.FFmpegError as error:
        raise VideoReadError(scanner.path, f"decoding failed, file corrupt or truncated ({error})") from error
    if filled:
        yield torch.from_numpy(batch[:filled].copy())
    if expected != len(pts):
        raise VideoReadError(scanner.path, f"{expected} of {len(pts)} frames decoded")


def fast_scan_scores(path, weights, *, size=72, chunk_size: int = 32, device=None) -> FrameScores:
    """Scores, spreads and thumbnails of every frame of a file in one decoding pass (see the module doc).
    Raises VideoReadError like `VideoScanner`, and when a listed frame does not decode."""
    scanner = VideoScanner(path, size)
    return scanned_scores(scanner, _frames(scanner, chunk_size), ContentScorer(weights, device))
