"""Tests of VideoScanner: reference frames only, exact spans in any order, times as read_video's, bad input."""

from pathlib import Path

import numpy as np
import pytest

from videoai.synthetic import ShapesConfig, make_clip
from videoai.tokenize.scan import VideoScanner, _decoded_ahead
from videoai.tokenize.video_io import (
    VideoReadError,
    read_video,
    video_info,
    write_video,
)

SIZE = (48, 80)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 90-frame H.264 clip (B frames, a keyframe at each cut) of moving shapes with a panning camera."""
    config = ShapesConfig(num_frames=90, height=96, width=160, num_shots=3, min_shot_length=20, camera_pan=True,
                          max_speed=1.0, max_pan_speed=0.5)
    path = tmp_path_factory.mktemp("scan") / "shapes.mp4"
    write_video(make_clip(0, config).frames, path, 25.0)
    return path


def frames_of(path) -> np.ndarray:
    return read_video(path, size=SIZE).frames.numpy().astype(np.int16)  # (T, h, w, 3)


def test_times_and_duration_match_read_video(video):
    scanner = VideoScanner(video, size=SIZE)
    clip = read_video(video)
    assert scanner.num_frames == 90
    np.testing.assert_allclose(scanner.timestamps, clip.timestamps.numpy(), atol=1e-9)
    assert scanner.duration == pytest.approx(video_info(video).duration)


def test_reference_frames_are_a_subset_close_to_the_exact_frames(video):
    exact = frames_of(video)
    chunks = list(VideoScanner(video, size=SIZE).reference_chunks(chunk_size=8))
    indices = np.concatenate([c.indices.numpy() for c in chunks])
    frames = np.concatenate([c.frames.numpy() for c in chunks])
    assert all(len(c.indices) <= 8 for c in chunks) and indices[0] == 0
    assert (np.diff(indices) > 0).all()
    if "libx264" in __import__("av").codecs_available:  # x264 writes B frames that nothing predicts from
        assert len(indices) < 90
    # Deblocking is skipped: pixels differ by a few grey levels near block edges, not more.
    assert np.abs(frames - exact[indices]).mean() < 2.0


def test_frame_chunks_are_every_frame_with_reference_pixels(video):
    scanner = VideoScanner(video, size=SIZE)
    chunks = list(scanner.frame_chunks(chunk_size=16))
    indices = np.concatenate([c.indices.numpy() for c in chunks])
    frames = np.concatenate([c.frames.numpy() for c in chunks])
    assert indices.tolist() == list(range(90)) and all(len(c.indices) <= 16 for c in chunks)
    references = list(scanner.reference_chunks())
    ref_indices = np.concatenate([c.indices.numpy() for c in references])
    np.testing.assert_array_equal(frames[ref_indices], np.concatenate([c.frames.numpy() for c in references]))
    np.testing.assert_array_equal(frames[40:61], scanner.frames_between(40, 60).frames.numpy())  # same decoder
    scanner.close()


def test_spans_are_every_frame_in_any_order(video):
    exact = frames_of(video)
    scanner = VideoScanner(video, size=SIZE)
    for first, last in [(3, 9), (10, 12), (40, 60), (61, 61), (85, 89), (0, 5), (30, 35)]:  # the last two seek back
        span = scanner.frames_between(first, last)
        assert span.indices.tolist() == list(range(first, last + 1))
        assert np.abs(span.frames.numpy() - exact[first:last + 1]).mean() < 2.0
    scanner.close()


def test_bad_input(tmp_path, video):
    scanner = VideoScanner(video)
    for first, last in [(-1, 3), (5, 4), (0, 90)]:
        with pytest.raises(ValueError, match="first/last"):
            scanner.frames_between(first, last)
    with pytest.raises(VideoReadError, match="does not exist"):
        VideoScanner(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(VideoReadError):
        VideoScanner(garbage)


def test_chunks_stop_early_and_decoder_errors_reach_the_caller(video):
    chunks = VideoScanner(video, size=SIZE).frame_chunks(chunk_size=4)
    assert next(chunks).indices.tolist() == [0, 1, 2, 3]
    chunks.close()  # the decoding thread and the file are released without reading on

    def failing_decoder():
        yield from range(11)
        raise RuntimeError("corrupt packet")

    seen = []
    with pytest.raises(RuntimeError, match="corrupt packet"):
        seen.extend(_decoded_ahead(failing_decoder(), batch=4))  # decoded in a worker thread
    assert seen == list(range(11))  # every frame before the error, in order
