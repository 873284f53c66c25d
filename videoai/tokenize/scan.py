"""Fast low-resolution scanning of a whole video, for analysers that look at (almost) every frame.

Shot detection spends most of its time decoding, so this reader does less decoding work than `read_video`:
  - `reference_chunks` decodes only the frames other frames predict from (`skip_frame="NONREF"`: I and P frames
    and reference B frames), a third to a half of a typical H.264 stream, and says which frames they are;
  - `frame_chunks` decodes every frame the same way (no deblocking, same scaler): what skimming is compared with;
  - `frames_between` then decodes a short span exactly (seek to the keyframe before it, reference frames only up
    to the span, every frame inside it), for the few places the coarse pass found worth a closer look;
  - the in-loop deblocking filter is skipped (`skip_loop_filter="all"`), which changes pixels by a few grey
    levels near block edges and disappears at the 72-px scale frames are scanned at;
  - one swscale context is reused for every frame (PyAV's `to_ndarray(width=...)` builds a new one per frame,
    which costs more than decoding a 720p frame);
  - chunks decode in a worker thread while the caller's thread downscales (both release the GIL): scaling costs
    a third to a half of decoding at 360p-720p, and now overlaps it.
Written here because decord and torchvision decode every frame; PyAV exposes ffmpeg's skip switches.
Frame numbers and times come from the demuxed packets' presentation timestamps, as `read_video`'s do.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from videoai.tokenize.video_io import VideoReadError, _check_path, _probe, _resolve_size

__all__ = ["ScannedFrames", "VideoScanner"]


@dataclass
class ScannedFrames:
    """Some frames of a scanned video, in display order."""

    frames: torch.Tensor  # (t, h, w, 3) uint8 RGB
    indices: torch.Tensor  # (t,) int64 frame numbers in the whole video


class VideoScanner:
    """A video file opened for fast scanning at `size` (None, short side int, or (H, W)); see the module doc.

    Raises `VideoReadError` for files `read_video` would reject, and for streams whose packets carry no
    presentation timestamps (raw elementary streams): read those with `iter_video_chunks`.
    """

    def __init__(self, path, size=None):
        self.path = _check_path(path)
        width, height, time_base = _probe(self.path)
        self.height, self.width = _resolve_size(size, width, height)
        pts, keyframes, durations = [], [], []
        try:
            with av.open(self.path, metadata_errors="replace") as container:
                for packet in container.demux(container.streams.video[0]):
                    if packet.size == 0:  # the flush packet at the end
                        continue
                    if packet.pts is None:
                        raise VideoReadError(self.path, "packets without presentation timestamps (raw stream)")
                    pts.append(packet.pts)
                    durations.append(packet.duration or 0)
                    if packet.is_keyframe:
                        keyframes.append(packet.pts)
        except av.FFmpegError as error:
            raise VideoReadError(self.path, f"demuxing failed, file corrupt or truncated ({error})") from error
        if not pts:
            raise VideoReadError(self.path, "the video stream has no frames")
        order = np.argsort(pts, kind="stable")
        self.pts = np.asarray(pts, dtype=np.int64)[order]  # (N,) presentation order
        self._pts_list = self.pts.tolist()
        self._keyframes = sorted(keyframes) or [self._pts_list[0]]
        base = float(time_base)
        self.timestamps = (self.pts - self.pts[0]).astype(np.float64) * base  # (N,) seconds from the first frame
        # The last frame lasts its packet's duration, at most the median frame gap (as read_video's times).
        gaps = [d for d in (durations[order[-1]], float(np.median(np.diff(self.pts))) if len(pts) > 1 else 0) if d > 0]
        end = self._pts_list[-1] + (min(gaps) if gaps else 0)
        self.duration = float((end - self._pts_list[0]) * base)
        self._fine: _FineDecoder | None = None

    @property
    def num_frames(self) -> int:
        return len(self._pts_list)

    @property
    def keyframe_indices(self) -> list[int]:
        """Frame numbers of the keyframes (where a decoder may start), increasing."""
        return sorted({bisect.bisect_left(self._pts_list, pts) for pts in self._keyframes})

    # ------------------------------------------------------------------------------------------------ decoding

    def _open(self):
        container = av.open(self.path, metadata_errors="replace")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.options = {"skip_loop_filter": "all"}
        return container, stream

    def _convert(self, frame, reformatter: VideoReformatter) -> np.ndarray:
        small = reformatter.reformat(frame, width=self.width, height=self.height, format="rgb24",
                                     interpolation="BILINEAR")
        return small.to_ndarray()  # (h, w, 3) uint8

    def _index(self, frame) -> int | None:
        """Frame number of a decoded frame, from its pts (None for a frame the demuxer never listed)."""
        if frame.pts is None:
            return None
        at = bisect.bisect_left(self._pts_list, frame.pts)
        return at if at < len(self._pts_list) and self._pts_list[at] == frame.pts else None

    def reference_chunks(self, chunk_size: int = 64) -> Iterator[ScannedFrames]:
        """Reference frames only (all frames of a stream without B frames), in chunks of at most `chunk_size`."""
        return self._chunks(chunk_size, "NONREF")

    def frame_chunks(self, chunk_size: int = 64) -> Iterator[ScannedFrames]:
        """Every frame, decoded like the reference frames (so the same pixels), in chunks of at most `chunk_size`."""
        return self._chunks(chunk_size, "DEFAULT")

    def _chunks(self, chunk_size: int, skip_frame: str) -> Iterator[ScannedFrames]:
        container, stream = self._open()
        stream.codec_context.skip_frame = skip_frame
        reformatter, frames, indices = VideoReformatter(), [], []
        try:
            for frame in _decoded_ahead(container.decode(stream)):
                index = self._index(frame)
                if index is None:
                    continue
                frames.append(self._convert(frame, reformatter))
                indices.append(index)
                if len(frames) == chunk_size:
                    yield _stack(frames, indices)
                    frames, indices = [], []
        except av.FFmpegError as error:
            raise VideoReadError(self.path, f"decoding failed, file corrupt or truncated ({error})") from error
        finally:
            container.close()
        if frames:
            yield _stack(frames, indices)

    def frames_between(self, first: int, last: int) -> ScannedFrames:
        """Every frame from `first` to `last` (inclusive). Calls in increasing order reuse one decoder: it runs on
        through reference frames instead of seeking back when the next span shares its keyframe."""
        if not 0 <= first <= last < self.num_frames:
            raise ValueError(f"first/last: expected 0 <= first <= last < {self.num_frames}, got {first}, {last}")
        start_pts = self._pts_list[first]
        keyframe = self._keyframes[max(0, bisect.bisect_right(self._keyframes, start_pts) - 1)]
        fine = self._fine
        if fine is None or (fine.last_out >= first and first not in fine.pending) or keyframe > fine.fed_pts:
            self.close()  # behind us, or a keyframe ahead: seek
            container, stream = self._open()
            container.seek(keyframe, stream=stream, backward=True)
            fine = self._fine = _FineDecoder(container, stream, container.demux(stream))
        out = {i: frame for i, frame in fine.pending.items() if first <= i <= last}
        fine.pending = {i: frame for i, frame in fine.pending.items() if i > last}
        try:
            for packet in fine.packets:
                if packet.pts is not None:
                    fine.fed_pts = max(fine.fed_pts, packet.pts)
                # Before the span only reference frames are needed. A B frame of the span comes after the
                # reference frame that follows it in decoding order, whose pts is past the span's start.
                fine.stream.codec_context.skip_frame = "DEFAULT" if fine.fed_pts >= start_pts else "NONREF"
                for frame in packet.decode():
                    index = self._index(frame)
                    if index is None or index < first:
                        continue
                    fine.last_out = max(fine.last_out, index)
                    (out if index <= last else fine.pending)[index] = self._convert(frame, fine.reformatter)
                if len(out) == last - first + 1:
                    break
        except av.FFmpegError as error:
            self.close()
            raise VideoReadError(self.path, f"decoding failed, file corrupt or truncated ({error})") from error
        missing = [i for i in range(first, last + 1) if i not in out]
        if missing:
            raise VideoReadError(self.path, f"frames {missing[:5]} of {first}..{last} did not decode")
        return _stack([out[i] for i in range(first, last + 1)], list(range(first, last + 1)))

    def close(self) -> None:
        if self._fine is not None:
            self._fine.container.close()
            self._fine = None


@dataclass
class _FineDecoder:
    """The decoder of `frames_between`, kept between calls."""

    container: object
    stream: object
    packets: Iterator
    fed_pts: int = -(1 << 62)  # largest pts fed to the decoder so far
    last_out: int = -1  # largest frame number it has output
    pending: dict = field(default_factory=dict)  # frames decoded past the last span, {index: (h, w, 3) uint8}
    reformatter: VideoReformatter = field(default_factory=VideoReformatter)


def _decoded_ahead(frames: Iterator, batch: int = 8) -> Iterator:
    """Yield from `frames` (a decoder) while a worker thread decodes the next `batch`: decoding and scaling release
    the GIL, so the caller's scaling runs beside the decoder. Items before an error come out first, then the error."""

    def take() -> tuple[list, BaseException | None]:
        ready = []
        try:
            ready.extend(itertools.islice(frames, batch))
        except Exception as error:  # noqa: BLE001 - any error goes to the caller's thread, after the frames before it
            return ready, error
        return ready, None

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(take)
        while True:
            ready, error = pending.result()
            if ready and error is None:
                pending = pool.submit(take)
            yield from ready
            if error is not None:
                raise error
            if not ready:
                return


def _stack(frames: list[np.ndarray], indices: list[int]) -> ScannedFrames:
    return ScannedFrames(torch.from_numpy(np.stack(frames)), torch.tensor(indices, dtype=torch.int64))
