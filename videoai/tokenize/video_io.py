"""Video I/O: frame-exact, timestamp-aware reading with decord and writing with PyAV / Pillow.

Reading decodes only the frames a sampling asks for (`decord.VideoReader.get_batch`) and hands them to torch
through DLPack, so there is no copy after decoding. Timestamps come from the container's presentation timestamps,
so variable-frame-rate files get correct times. Time 0 is the video stream's start (its first frame).
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import decord
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from decord.bridge.torchdl import to_torch

from videoai.files import atomic_write

__all__ = [
    "VideoReadError",
    "VideoClip",
    "VideoInfo",
    "video_info",
    "read_video",
    "iter_video_chunks",
    "write_video",
]

# Demuxers that open single images or text, not video: ffmpeg happily probes a PNG (png_pipe) or a .txt (tty).
_NOT_VIDEO_FORMATS = {"image2", "tty", "ansi"}
# Frame start times are compared to window edges with this slack so float rounding never drops a frame.
_TIME_EPS = 1e-6


class VideoReadError(RuntimeError):
    """A file could not be read as a video; the message names the file and the cause."""

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"cannot read video {self.path!r}: {cause}")


@dataclass
class VideoClip:
    """Decoded frames with their presentation times and source frame indices."""

    frames: torch.Tensor  # (T, H, W, 3) uint8
    timestamps: torch.Tensor  # (T,) float64 seconds from the stream start
    indices: torch.Tensor  # (T,) int64 source frame indices
    fps: float  # average frame rate of the source
    path: str | None = None

    def __post_init__(self):
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != torch.uint8:
            raise ValueError(f"frames: expected uint8 (T, H, W, 3), got {self.frames.dtype} {tuple(self.frames.shape)}")
        t = self.frames.shape[0]
        if self.timestamps.shape != (t,) or self.indices.shape != (t,):
            raise ValueError(
                f"timestamps/indices: expected shape ({t},), got {tuple(self.timestamps.shape)} and "
                f"{tuple(self.indices.shape)}"
            )

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]


@dataclass(frozen=True)
class VideoInfo:
    """Stream facts of a video file; `duration` runs to the end of the last frame, in seconds."""

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float


# ----------------------------------------------------------------------------------------------------------- open


class _SequentialDecoder:
    """PyAV fallback for frame sizes decord mis-decodes: forward decoding that keeps its place between calls."""

    def __init__(self, path: str, height: int, width: int):
        self.path, self.height, self.width = path, height, width
        self._container = None
        self._frames = None
        self._position = 0  # index of the next frame the decoder yields
        self._reformatter = VideoReformatter()  # one scaler for every frame (to_ndarray(width=) builds one per frame)

    def _restart(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = av.open(self.path, metadata_errors="replace")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._frames = self._container.decode(stream)
        self._position = 0

    def decode(self, indices: np.ndarray) -> torch.Tensor:
        wanted, inverse = np.unique(indices, return_inverse=True)  # ascending, so one forward pass suffices
        if self._frames is None or wanted[0] < self._position:
            self._restart()
        out = np.empty((len(wanted), self.height, self.width, 3), dtype=np.uint8)  # (T', H, W, 3)
        filled = 0
        try:
            for frame in self._frames:  # the decoder yields one frame at a time
                position, self._position = self._position, self._position + 1
                if position == wanted[filled]:
                    # bilinear swscale is what decord's resize uses: outputs agree to ~0.1 grey level on average
                    out[filled] = self._reformatter.reformat(
                        frame, format="rgb24", width=self.width, height=self.height, interpolation="BILINEAR"
                    ).to_ndarray()
                    filled += 1
                    if filled == len(wanted):
                        break
        except av.FFmpegError as error:
            self._frames = None
            raise VideoReadError(self.path, f"decoding failed, file corrupt or truncated ({error})") from error
        if filled < len(wanted):
            cause = f"decoding stopped after {self._position} frames, before frame {wanted[filled]}"
            raise VideoReadError(self.path, cause)
        if len(wanted) < len(indices):
            out = out[inverse]  # repeat duplicated frames
        return torch.from_numpy(out)


@dataclass
class _Source:
    """An opened video: decord reader plus what the PyAV probe and the index told us."""

    path: str
    reader: decord.VideoReader
    timestamps: np.ndarray  # (N,) float64 frame start times, seconds
    duration: float
    fps: float
    width: int  # source size, before any resize
    height: int
    out_height: int  # decoded size
    out_width: int
    fallback: _SequentialDecoder | None = None

    def decode(self, indices: np.ndarray) -> torch.Tensor:
        """Frames at sorted `indices` (may repeat) -> (T, H, W, 3) uint8."""
        if self.fallback is None:
            try:
                batch = self.reader.get_batch(indices.tolist())
                return to_torch(batch)  # shares decord's buffer through DLPack: no copy
            except (decord.DECORDError, RuntimeError) as error:
                if not _is_four_channel_bug(error):
                    cause = f"decoding failed, file corrupt or truncated ({_first_line(error)})"
                    raise VideoReadError(self.path, cause) from error
                self.fallback = _SequentialDecoder(self.path, self.out_height, self.out_width)
        return self.fallback.decode(indices)


def _is_four_channel_bug(error: Exception) -> bool:
    """decord bug (dmlc/decord#93, #336): for a few widths (e.g. 16, 24, 48, 72) rows come back padded to 4 bytes a
    pixel and the batch copy fails with sizes in the ratio 4:3."""
    match = re.search(r"from_size == to_size \((\d+) vs\. (\d+)\)", str(error))
    return bool(match) and 3 * int(match.group(1)) == 4 * int(match.group(2))


def _check_path(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoReadError(path, "file does not exist")
    if not os.path.isfile(path):
        raise VideoReadError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    return path


def _probe(path: str) -> tuple[int, int, Fraction]:
    """Open the container with PyAV first: it rejects garbage with a clear error where decord may not."""
    try:
        with av.open(path, metadata_errors="replace") as container:
            format_name = container.format.name
            if format_name in _NOT_VIDEO_FORMATS or format_name.endswith("_pipe"):
                raise VideoReadError(path, f"not a video (ffmpeg recognises it as {format_name!r}: an image or text)")
            if format_name == "gif":
                raise VideoReadError(path, "GIF is write-only here: decord cannot index GIF (read it with PIL.Image)")
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                raise VideoReadError(path, f"no video stream (streams: {', '.join(kinds)})")
            stream = container.streams.video[0]
            codec = stream.codec_context
            if codec is None:
                raise VideoReadError(path, "the video stream's codec is unknown or its header is damaged")
            width, height, time_base = codec.width, codec.height, stream.time_base
            _check_frame_count(path, container, stream)
    except VideoReadError:
        raise
    except Exception as error:  # damaged headers surface as FFmpegError but also as e.g. UnicodeDecodeError
        cause = getattr(error, "strerror", None) or f"{type(error).__name__}: {error}"
        raise VideoReadError(path, f"ffmpeg cannot open it ({cause})") from error
    if width <= 0 or height <= 0:
        raise VideoReadError(path, f"video stream has no frame size ({width}x{height})")
    return width, height, time_base


def _check_frame_count(path: str, container, stream) -> None:
    """decord reserves memory for the header's frame count (or rate x duration) before indexing, and a damaged
    count aborts the whole process (uncaught std::bad_alloc): reject counts no file of this size can hold."""
    claimed = float(stream.frames)
    if claimed < 1:  # the estimate decord falls back to
        rate, duration = stream.average_rate, container.duration
        if not rate or duration is None:
            raise VideoReadError(path, "the header gives no frame count, frame rate or duration")
        claimed = float(rate) * duration / 1_000_000
    size = os.path.getsize(path)
    if not math.isfinite(claimed) or claimed > size:  # every frame takes at least one byte
        raise VideoReadError(path, f"the header claims {claimed:.0f} frames in a {size}-byte file: it is damaged")


def _resolve_size(size, width: int, height: int) -> tuple[int, int]:
    """size: None, int short side (aspect kept) or (H, W) -> output (height, width)."""
    if size is None:
        return height, width
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"size: expected a positive short side, got {size}")
        scale = int(size) / min(width, height)
        return max(1, round(height * scale)), max(1, round(width * scale))
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        return int(size[0]), int(size[1])
    raise ValueError(f"size: expected None, a positive int (short side) or (height, width), got {size!r}")


def _open(path, size=None) -> _Source:
    path = _check_path(path)
    width, height, time_base = _probe(path)
    out_height, out_width = _resolve_size(size, width, height)
    resize = (out_height, out_width) != (height, width)
    try:
        # decord resizes inside ffmpeg's filter graph while decoding: no full-size frame is ever materialised.
        reader = decord.VideoReader(
            path, ctx=decord.cpu(0), width=out_width if resize else -1, height=out_height if resize else -1
        )
        num_frames = len(reader)
        if num_frames == 0:
            raise VideoReadError(path, "the video stream has no frames")
        times = reader.get_frame_timestamp(np.arange(num_frames)).astype(np.float64)  # (N, 2) start, end
        fps = float(reader.get_avg_fps())
    except (decord.DECORDError, RuntimeError) as error:
        if isinstance(error, VideoReadError):
            raise
        cause = f"indexing frames failed, file corrupt or truncated ({_first_line(error)})"
        raise VideoReadError(path, cause) from error
    # decord keeps float32 seconds; snapping to the stream time base restores the exact PTS in float64.
    tb = float(time_base) if time_base else 0.0
    if tb > 0:
        times = np.round(times / tb) * tb
    starts = times[:, 0]  # (N,)
    # decord leaves a frame's end equal to its start when packets carry no duration: then the last frame lasts
    # the median frame gap (or 1 / fps for a single frame).
    last = times[-1, 1] - times[-1, 0]
    if last <= 0:
        last = float(np.median(np.diff(starts))) if num_frames > 1 else (1.0 / fps if fps > 0 else 0.0)
    duration = float(starts[-1] + last)
    return _Source(path, reader, starts, duration, fps, width, height, out_height, out_width)


def _first_line(error: Exception) -> str:
    """First line of a decord error without its "[12:00:00] /src/file.cc:123: " logging prefix."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return re.sub(r"^(\[[\d:]+\] \S+:\d+: )+", "", text)[:300]


def _fetch(source: _Source, indices: np.ndarray) -> VideoClip:
    """Decode exactly `indices` (sorted, may repeat) in one batch."""
    return VideoClip(
        frames=source.decode(indices),  # (T, H, W, 3) uint8
        timestamps=torch.from_numpy(source.timestamps[indices]),
        indices=torch.from_numpy(indices.astype(np.int64)),
        fps=source.fps,
        path=source.path,
    )


# ------------------------------------------------------------------------------------------------------- sampling


def _check_positive_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


def _window(source: _Source, start, end) -> tuple[int, int, float, float]:
    """Frames whose start time lies in [start, end) -> (first index, stop index, start, end)."""
    duration = source.duration
    if start is None:
        start = 0.0
    elif isinstance(start, bool) or not isinstance(start, numbers.Real) or not math.isfinite(start) or start < 0:
        raise ValueError(f"start: expected a finite number of seconds >= 0, got {start!r}")
    if end is None:
        end = duration
    else:
        end = _check_positive_real("end", end)
        if end <= start:
            raise ValueError(f"start/end: expected start < end, got start={start} end={end}")
        end = min(end, duration)  # an end past the video is clamped, like a slice
    if start >= duration:
        raise ValueError(f"start: {start} s is at or past the end of the video (duration {duration:.6g} s)")
    first = int(np.searchsorted(source.timestamps, start - _TIME_EPS, side="left"))
    stop = int(np.searchsorted(source.timestamps, end - _TIME_EPS, side="left"))
    if end >= duration:
        stop = len(source.timestamps)  # the window runs to the end: every frame from `first` on
    if stop <= first:
        raise ValueError(f"start/end: the window [{start}, {end}) s starts no frame of {source.path!r}")
    return first, stop, float(start), float(end)


def _uniform_indices(first: int, stop: int, num_frames: int) -> np.ndarray:
    """num_frames indices evenly spread over [first, stop), both ends included (round half up); 1 -> the middle."""
    span = stop - first - 1
    if num_frames == 1:
        return np.array([first + span // 2], dtype=np.int64)
    k = np.arange(num_frames, dtype=np.int64)
    return first + (2 * k * span + (num_frames - 1)) // (2 * (num_frames - 1))  # exact integer rounding


def _fps_indices(timestamps: np.ndarray, first: int, stop: int, start: float, end: float, fps: float) -> np.ndarray:
    """For the time grid start, start + 1/fps, ... < end: the frame of [first, stop) nearest in time (ties: earlier)."""
    count = max(1, math.ceil((end - start) * fps - _TIME_EPS))
    grid = start + np.arange(count, dtype=np.float64) / fps  # (K,)
    times = timestamps[first:stop]  # (M,)
    right = np.clip(np.searchsorted(times, grid, side="left"), 0, len(times) - 1)  # first frame >= grid time
    left = np.clip(right - 1, 0, None)
    take_left = np.abs(grid - times[left]) <= np.abs(times[right] - grid) + _TIME_EPS  # float-safe ties
    return first + np.where(take_left, left, right).astype(np.int64)


def read_video(path, *, num_frames=None, fps=None, start=None, end=None, size=None) -> VideoClip:
    """Decode a sampled clip: `num_frames` uniform or a target `fps`, inside an optional [start, end) window.

    Args:
        num_frames: that many frames evenly spaced in frame index over the window, first and last included
            (1 -> the middle frame); asking for more frames than the window holds repeats frames.
        fps: frames nearest in presentation time to the grid start, start + 1/fps, ... (< end). Correct for
            variable frame rate; a rate above the source's repeats frames so the output rate is exact.
            Give num_frames or fps, not both; neither -> every frame of the window.
        start, end: window in seconds from the stream start; a frame belongs to it when its start time is in
            [start, end). end past the video is clamped; start past it, or an empty window, is a ValueError.
        size: None (source size), an int short side (aspect kept) or (height, width); resized by ffmpeg at decode.
    Raises VideoReadError (missing, empty, corrupt or non-video file) and ValueError (bad arguments).
    """
    if num_frames is not None:
        if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames <= 0:
            raise ValueError(f"num_frames: expected a positive int, got {num_frames!r}")
        if fps is not None:
            raise ValueError(f"num_frames/fps: give one of them, not both (got num_frames={num_frames}, fps={fps})")
    if fps is not None:
        fps = _check_positive_real("fps", fps)
    source = _open(path, size)
    first, stop, start, end = _window(source, start, end)
    if num_frames is not None:
        indices = _uniform_indices(first, stop, int(num_frames))
    elif fps is not None:
        indices = _fps_indices(source.timestamps, first, stop, start, end, fps)
    else:
        indices = np.arange(first, stop, dtype=np.int64)
    return _fetch(source, indices)


def iter_video_chunks(path, *, chunk_size: int = 64, size=None) -> Iterator[VideoClip]:
    """Yield consecutive clips of `chunk_size` frames (the last may be shorter); one chunk in memory at a time."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size <= 0:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    source = _open(path, size)  # opened now, so a bad file fails at the call, not at the first next()

    def chunks() -> Iterator[VideoClip]:
        total = len(source.timestamps)
        for first in range(0, total, int(chunk_size)):
            yield _fetch(source, np.arange(first, min(first + int(chunk_size), total), dtype=np.int64))

    return chunks()


def video_info(path) -> VideoInfo:
    """Frame count, average fps, size and duration, from the container index (no frame is decoded)."""
    source = _open(path)
    return VideoInfo(
        num_frames=len(source.timestamps),
        fps=source.fps,
        width=source.width,
        height=source.height,
        duration=source.duration,
    )


# --------------------------------------------------------------------------------------------------------- write


def _check_frames(frames) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            raise TypeError(f"frames: expected dtype uint8, got {frames.dtype}")
        frames = frames.detach().cpu().numpy()
    elif isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8:
            raise TypeError(f"frames: expected dtype uint8, got {frames.dtype}")
    else:
        raise TypeError(f"frames: expected a torch.Tensor or numpy.ndarray, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[:3]) == 0:
        raise ValueError(f"frames: expected a non-empty (T, H, W, 3) array, got shape {tuple(frames.shape)}")
    return np.ascontiguousarray(frames)


def _pick_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _write_mp4(frames: np.ndarray, path: str, rate: Fraction, options: dict[str, str]) -> None:
    # yuv420p halves chroma resolution, so both sides must be even: an odd side gets one replicated edge row/column.
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")  # (T, H', W', 3)
    codec = _pick_codec()
    with av.open(path, "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "medium", **options}
        else:
            stream.bit_rate = 8_000_000
            stream.options = dict(options)
        for index, frame in enumerate(frames):  # the encoder takes one frame at a time
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index  # stream time base is 1/rate
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())  # flush delayed (B-)frames


def _write_gif(frames: np.ndarray, path: str, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    # GIF delays are in 10 ms units; Pillow also merges identical consecutive frames into one longer frame.
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], duration=max(10, round(1000 / fps)), loop=0
    )


def write_video(frames, path, fps, *, encoder_options: dict[str, str] | None = None) -> None:
    """Write (T, H, W, 3) uint8 frames (tensor or ndarray) to .mp4 (H.264 yuv420p, else MPEG-4) or .gif.

    .mp4: libx264 crf 18 when PyAV has it, else mpeg4 at 8 Mb/s; odd heights/widths are padded by one replicated
    row/column (yuv420p needs even sides), so the file is then (H+1) and/or (W+1) in size. encoder_options are
    ffmpeg encoder options added to those (e.g. {"x264-params": "scenecut=0"}: no keyframes at scene changes).
    .gif: Pillow, frame delay rounded to 10 ms, identical consecutive frames merged into one longer frame.
    The file appears atomically (written to a temporary name, then renamed).
    """
    frames = _check_frames(frames)
    fps = _check_positive_real("fps", fps)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"path: expected a .mp4 or .gif file name, got {str(path)!r}")
    if encoder_options is not None and not (
        isinstance(encoder_options, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in encoder_options.items())
    ):
        raise TypeError(f"encoder_options: expected a dict of str to str, got {encoder_options!r}")
    if suffix == ".mp4":
        rate = Fraction(fps).limit_denominator(65_535)
        atomic_write(path, lambda temporary: _write_mp4(frames, temporary, rate, encoder_options or {}))
    else:
        atomic_write(path, lambda temporary: _write_gif(frames, temporary, fps))
