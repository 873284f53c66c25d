"""Tests of video I/O: frame-exact sampling, timestamps (constant and variable frame rate), writing, bad input."""

import json
import subprocess
import sys
import textwrap
import wave
from fractions import Fraction
from pathlib import Path

import av
import decord
import numpy as np
import pytest
import torch
from PIL import Image

from videoai.tokenize import video_io
from videoai.tokenize.video_io import (
    VideoClip,
    VideoInfo,
    VideoReadError,
    iter_video_chunks,
    read_video,
    video_info,
    write_video,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real clips not found at {DATA}")

BITS = 8  # frame index coded in 8 vertical stripes, black = 0 / white = 1, least significant bit left
FPS = 30
NUM_FRAMES = 90


def coded_frames(num_frames: int, height: int = 64, width: int = 96) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames whose stripes spell their own index in binary."""
    index = torch.arange(num_frames)[:, None]  # (T, 1)
    bit_of_column = torch.arange(width) * BITS // width  # (W,)
    on = (index >> bit_of_column[None, :]) & 1  # (T, W)
    frames = (on * 255).to(torch.uint8)[:, None, :, None]  # (T, 1, W, 1)
    return frames.expand(num_frames, height, width, 3).contiguous()


def decode_codes(frames: torch.Tensor) -> torch.Tensor:
    """Inverse of coded_frames: (T, H, W, 3) -> (T,) indices read from stripe centres."""
    height, width = frames.shape[1:3]
    centres = ((torch.arange(BITS) + 0.5) * width / BITS).long()  # (BITS,)
    level = frames[:, height // 4 : 3 * height // 4, centres, :].float().mean(dim=(1, 3))  # (T, BITS)
    return ((level > 127).long() << torch.arange(BITS)).sum(dim=1)


def write_vfr(path: Path, times_ms: list[int]) -> None:
    """Coded frames at the given presentation times (variable frame rate), written with PyAV directly."""
    frames = coded_frames(len(times_ms)).numpy()
    with av.open(str(path), "w") as container:
        stream = container.add_stream(video_io._pick_codec(), rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for frame, time_ms in zip(frames, times_ms):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = time_ms, Fraction(1, 1000)
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def coded_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "coded.mp4"
    write_video(coded_frames(NUM_FRAMES), path, FPS)
    return path


VFR_TIMES_MS = np.cumsum([0] + [33, 33, 67, 20, 100, 40, 33, 150, 10, 60] * 4).tolist()  # 41 frames, 2.184 s


@pytest.fixture(scope="module")
def vfr_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "vfr.mp4"
    write_vfr(path, VFR_TIMES_MS)
    return path


def assert_frames_match_indices(clip: VideoClip, expected: list[int]) -> None:
    assert clip.indices.tolist() == expected
    assert decode_codes(clip.frames).tolist() == expected  # the pixels are those frames, not neighbours


# ------------------------------------------------------------------------------------------- constant frame rate


def test_read_all_frames_is_exact_with_timestamps(coded_video):
    clip = read_video(coded_video)
    assert (clip.num_frames, clip.height, clip.width) == (NUM_FRAMES, 64, 96)
    assert clip.frames.dtype == torch.uint8 and clip.timestamps.dtype == torch.float64
    assert clip.indices.dtype == torch.int64 and clip.fps == pytest.approx(FPS)
    assert_frames_match_indices(clip, list(range(NUM_FRAMES)))
    torch.testing.assert_close(clip.timestamps, torch.arange(NUM_FRAMES, dtype=torch.float64) / FPS, atol=1e-9, rtol=0)
    assert video_info(coded_video) == VideoInfo(num_frames=NUM_FRAMES, fps=FPS, width=96, height=64, duration=3.0)


def test_uniform_sampling(coded_video):
    assert_frames_match_indices(read_video(coded_video, num_frames=16), [round(k * 89 / 15 + 1e-9) for k in range(16)])
    assert_frames_match_indices(read_video(coded_video, num_frames=2), [0, 89])
    assert_frames_match_indices(read_video(coded_video, num_frames=1), [44])  # one frame: the middle
    # more frames than the video holds: frames repeat, still in order
    expected = [round(k * 89 / 119 + 1e-9) for k in range(120)]
    assert_frames_match_indices(read_video(coded_video, num_frames=120), expected)


def test_fps_sampling(coded_video):
    assert_frames_match_indices(read_video(coded_video, fps=10), list(range(0, 90, 3)))
    assert_frames_match_indices(read_video(coded_video, fps=7), [round(k * 30 / 7) for k in range(21)])
    up = read_video(coded_video, fps=60)  # above the source rate: each frame twice, the output rate stays exact
    assert_frames_match_indices(up, [k // 2 for k in range(180)])


def test_window_sampling(coded_video):
    assert_frames_match_indices(read_video(coded_video, start=1.0, end=2.0), list(range(30, 60)))
    assert_frames_match_indices(read_video(coded_video, start=2.5), list(range(75, 90)))
    assert_frames_match_indices(read_video(coded_video, end=0.2), list(range(6)))
    assert_frames_match_indices(read_video(coded_video, start=1.0, end=2.0, num_frames=4), [30, 40, 49, 59])
    clip = read_video(coded_video, start=0.5, end=1.5, fps=5)
    assert_frames_match_indices(clip, [15, 21, 27, 33, 39])
    torch.testing.assert_close(clip.timestamps, torch.tensor([0.5, 0.7, 0.9, 1.1, 1.3], dtype=torch.float64))
    assert_frames_match_indices(read_video(coded_video, start=2.0, end=100.0), list(range(60, 90)))  # end clamped


def test_resize_keeps_frames_exact(coded_video):
    clip = read_video(coded_video, num_frames=5, size=32)  # short side 32, aspect kept
    assert clip.frames.shape == (5, 32, 48, 3)
    assert_frames_match_indices(clip, [0, 22, 45, 67, 89])
    # (32, 48) and (16, 24) hit a decord bug (4-byte rows, dmlc/decord#336): the PyAV fallback must give the same frames
    for size in [(40, 64), (32, 48), (16, 24)]:
        clip = read_video(coded_video, fps=6, size=size)
        assert clip.frames.shape == (18, *size, 3)
        assert_frames_match_indices(clip, list(range(0, 90, 5)))


def test_fallback_width_native(tmp_path):
    path = tmp_path / "w48.mp4"
    write_video(coded_frames(20, height=32, width=48), path, 10)
    assert_frames_match_indices(read_video(path), list(range(20)))
    assert_frames_match_indices(read_video(path, num_frames=4), [0, 6, 13, 19])
    chunks = list(iter_video_chunks(path, chunk_size=8))
    assert_frames_match_indices(chunks[2], list(range(16, 20)))


def test_pyav_fallback_gives_the_same_frames(coded_video, monkeypatch):
    """When decord hits its 4-channel bug, reading goes on with PyAV: same frames, resized, chunked, repeated."""
    message = "[12:00:00] /src/runtime/ndarray.cc:171: Check failed: from_size == to_size (6144 vs. 4608) ..."

    def buggy_get_batch(self, indices):
        raise decord.DECORDError(message)

    monkeypatch.setattr(decord.VideoReader, "get_batch", buggy_get_batch)
    assert_frames_match_indices(read_video(coded_video, num_frames=7), [0, 15, 30, 45, 59, 74, 89])
    clip = read_video(coded_video, fps=60, end=0.5, size=(32, 48))
    assert clip.frames.shape == (30, 32, 48, 3)
    assert_frames_match_indices(clip, [k // 2 for k in range(30)])
    chunks = list(iter_video_chunks(coded_video, chunk_size=40))  # one forward pass across chunks
    assert [c.num_frames for c in chunks] == [40, 40, 10]
    assert_frames_match_indices(chunks[1], list(range(40, 80)))

    def failing_get_batch(self, indices):
        raise decord.DECORDError("[12:00:00] /src/video/video_reader.cc:486: Error: av_read_frame failed")

    monkeypatch.setattr(decord.VideoReader, "get_batch", failing_get_batch)  # any other error is a read error
    with pytest.raises(VideoReadError, match="decoding failed, file corrupt or truncated \\(Error: av_read_frame"):
        read_video(coded_video)


def test_iter_video_chunks(coded_video):
    chunks = list(iter_video_chunks(coded_video, chunk_size=32))
    assert [c.num_frames for c in chunks] == [32, 32, 26]
    for number, chunk in enumerate(chunks):
        assert_frames_match_indices(chunk, list(range(32 * number, min(32 * number + 32, NUM_FRAMES))))
    torch.testing.assert_close(torch.cat([c.timestamps for c in chunks]), read_video(coded_video).timestamps)
    small = next(iter_video_chunks(coded_video, chunk_size=4, size=(32, 48)))
    assert small.frames.shape == (4, 32, 48, 3)


# ------------------------------------------------------------------------------------------- variable frame rate


def test_variable_frame_rate_timestamps_and_fps_sampling(vfr_video):
    expected_times = torch.tensor(VFR_TIMES_MS, dtype=torch.float64) / 1000
    clip = read_video(vfr_video)
    assert_frames_match_indices(clip, list(range(len(VFR_TIMES_MS))))
    torch.testing.assert_close(clip.timestamps, expected_times, atol=1e-9, rtol=0)
    # fps sampling picks the frame nearest in time to each grid point, not index * source_fps / fps
    grid = torch.arange(0, video_info(vfr_video).duration, 0.125, dtype=torch.float64)
    nearest = (expected_times[None, :] - grid[:, None]).abs().argmin(dim=1)
    assert_frames_match_indices(read_video(vfr_video, fps=8), nearest.tolist())
    window = read_video(vfr_video, start=0.5, end=1.0)
    inside = ((expected_times >= 0.5) & (expected_times < 1.0)).nonzero().flatten().tolist()
    assert_frames_match_indices(window, inside)


def test_timestamps_count_from_the_stream_start(tmp_path):
    path = tmp_path / "late_start.mp4"
    write_vfr(path, [500 + time_ms for time_ms in VFR_TIMES_MS[:10]])  # first frame presented at 0.5 s
    with av.open(str(path)) as container:
        assert container.streams.video[0].start_time * container.streams.video[0].time_base == Fraction(1, 2)
    clip = read_video(path)
    assert clip.num_frames == video_info(path).num_frames == 10
    expected = torch.tensor(VFR_TIMES_MS[:10], dtype=torch.float64) / 1000
    torch.testing.assert_close(clip.timestamps, expected, atol=1e-9, rtol=0)


@needs_data
def test_real_vfr_clip_matches_pyav_pts():
    path = DATA / "goldeneye-vfr-drop3.mp4"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        pts_seconds = [float((frame.pts - start) * stream.time_base) for frame in container.decode(stream)]
    clip = read_video(path, size=32)
    assert clip.num_frames == 160 == len(pts_seconds)
    torch.testing.assert_close(clip.timestamps, torch.tensor(pts_seconds, dtype=torch.float64), atol=1e-9, rtol=0)
    gaps = clip.timestamps.diff()
    assert (gaps > 0).all() and gaps.max() > 1.5 * gaps.min()  # monotonic and not uniform: dropped frames
    truth = json.loads((DATA / "ground_truth.json").read_text())["goldeneye-vfr-drop3.mp4"]
    for cut, cut_time in zip(truth["cuts"], truth["cut_times_s"]):
        assert clip.timestamps[cut].item() == pytest.approx(cut_time, abs=1e-3)
    sampled = read_video(path, fps=2, start=1.0, end=5.0, size=32)
    grid = 1.0 + torch.arange(8, dtype=torch.float64) / 2
    nearest = (torch.tensor(pts_seconds)[None, :] - grid[:, None]).abs().argmin(dim=1)
    assert sampled.indices.tolist() == nearest.tolist()
    torch.testing.assert_close(sampled.timestamps, torch.tensor(pts_seconds, dtype=torch.float64)[nearest])


@needs_data
def test_real_clip_frames_equal_pyav_decode():
    path = DATA / "counter.mp4"  # frame number burned in: neighbouring frames differ only there
    with av.open(str(path)) as container:
        # every sixth pixel keeps enough of the burned-in digits: (30, 180, 320, 3)
        reference = torch.stack(
            [torch.from_numpy(frame.to_ndarray(format="rgb24")[::6, ::6]) for frame in container.decode(video=0)]
        ).float()
    uniform, at_fps = read_video(path, num_frames=7), read_video(path, fps=3)
    window = read_video(path, start=1.25, end=2.05)
    assert uniform.indices.tolist() == [0, 5, 10, 15, 19, 24, 29]
    assert at_fps.indices.tolist() == [round(k * 10 / 3) for k in range(9)]
    assert window.indices.tolist() == list(range(13, 21))
    for clip in (uniform, at_fps, window):
        frames = clip.frames[:, ::6, ::6].float()  # (T, 180, 320, 3)
        same = (frames - reference[clip.indices]).abs().mean(dim=(1, 2, 3))  # (T,)
        assert (same < 0.05).all()  # the same decoder: equal up to rounding
        for step in (-1, 1):  # neighbours differ by the burned-in number (>= 0.44 on this clip)
            neighbour = (clip.indices + step).clamp(0, 29)
            differs = (frames - reference[neighbour]).abs().mean(dim=(1, 2, 3))
            assert (differs[neighbour != clip.indices] > 0.3).all()


@needs_data
def test_real_clip_info():
    info = video_info(DATA / "testvideo.mp4")
    assert (info.num_frames, info.width, info.height) == (720, 1280, 720)
    assert info.fps == pytest.approx(30000 / 1001) and info.duration == pytest.approx(720 * 1001 / 30000)
    clip = read_video(DATA / "testvideo.mp4", num_frames=3, size=36)
    assert clip.frames.shape == (3, 36, 64, 3) and clip.indices.tolist() == [0, 360, 719]
    assert video_info(DATA / "goldeneye-vfr-drop3.mp4").num_frames == 160


# ------------------------------------------------------------------------------------------------------ bad input


def corrupt_files(directory: Path, coded_video: Path) -> dict[str, Path]:
    good = coded_video.read_bytes()  # written with faststart: header first, so truncation leaves an openable file
    rng = np.random.default_rng(0)
    files = {
        "empty": b"",
        "random": rng.integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        "truncated": good[: len(good) // 2],
        "header only": good[:2000],
        "text": b"hello video\n" * 50,
    }
    paths = {}
    for name, content in files.items():
        paths[name] = directory / f"{name.replace(' ', '_')}.mp4"
        paths[name].write_bytes(content)
    paths["text.txt"] = directory / "notes.txt"
    paths["text.txt"].write_text("just text\n" * 50)
    paths["png"] = directory / "image.png"
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(paths["png"])
    return paths


def test_bad_files_raise_video_read_error(tmp_path, coded_video):
    paths = corrupt_files(tmp_path, coded_video)
    causes = {
        "empty": "empty",
        "random": "ffmpeg cannot open",
        "header only": None,
        "text": None,
        "text.txt": "not a video",
        "png": "not a video",
    }
    for name, cause in causes.items():
        for call in (lambda p: read_video(p), lambda p: video_info(p), lambda p: iter_video_chunks(p)):
            with pytest.raises(VideoReadError, match=cause) as error:
                call(paths[name])
            assert str(paths[name]) in str(error.value)
    with pytest.raises(VideoReadError, match="corrupt or truncated"):  # the header is intact, the frames are not
        read_video(paths["truncated"])
    with pytest.raises(VideoReadError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoReadError, match="not a regular file"):
        video_info(tmp_path)
    sound = tmp_path / "sound.wav"
    with wave.open(str(sound), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(8000), wav.writeframes(bytes(1600))
    with pytest.raises(VideoReadError, match="no video stream \\(streams: audio\\)"):
        read_video(sound)
    gif = tmp_path / "clip.gif"
    write_video(coded_frames(3), gif, 10)
    with pytest.raises(VideoReadError, match="GIF"):
        read_video(gif)


def test_corrupt_files_never_crash_or_hang(tmp_path, coded_video):
    """Decode many damaged files in a child process so a segfault or hang fails the test instead of pytest."""
    good = coded_video.read_bytes()
    rng = np.random.default_rng(1)
    for number in range(8):
        damaged = bytearray(good[: int(len(good) * rng.uniform(0.3, 1.0))])
        for _ in range(20):
            damaged[int(rng.integers(0, len(damaged)))] ^= 0xFF
        (tmp_path / f"fuzz_{number}.mp4").write_bytes(bytes(damaged))
    # a sample count of 4e9 in the time-to-sample table: raw decord dies on std::bad_alloc for this one
    huge_count = bytearray(good)
    table = huge_count.find(b"stts")
    huge_count[table + 12 : table + 16] = b"\xff\x00\x00\x00"
    (tmp_path / "fuzz_huge_count.mp4").write_bytes(bytes(huge_count))
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from videoai.tokenize.video_io import VideoReadError, read_video, iter_video_chunks
        try:
            read_video(Path(sys.argv[1]) / "fuzz_huge_count.mp4")
        except VideoReadError as error:
            assert "claims 4278190080 frames" in str(error), error
        else:
            raise AssertionError("a damaged frame count was read")
        for path in sorted(Path(sys.argv[1]).glob("fuzz_*.mp4")):
            for call in (lambda: read_video(path), lambda: read_video(path, num_frames=5, size=32),
                         lambda: [c.num_frames for c in iter_video_chunks(path, chunk_size=40)]):
                try:
                    call()
                except VideoReadError:
                    pass
        print("survived")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "survived" in result.stdout, result.stderr[-2000:]


def test_bad_arguments(coded_video):
    cases = [
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": -3}, "num_frames"),
        ({"num_frames": 2.5}, "num_frames"),
        ({"num_frames": True}, "num_frames"),
        ({"num_frames": 4, "fps": 2}, "num_frames/fps"),
        ({"fps": 0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"start": -1.0}, "start"),
        ({"start": 2.0, "end": 1.0}, "start/end"),
        ({"start": 1.0, "end": 1.0}, "start/end"),
        ({"start": 3.0}, "start"),  # the video lasts 3.0 s
        ({"start": 0.01, "end": 0.02}, "start/end"),  # no frame starts inside
        ({"size": 0}, "size"),
        ({"size": (0, 4)}, "size"),
        ({"size": (4, 4, 4)}, "size"),
        ({"size": "big"}, "size"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=f"^{name}:"):
            read_video(coded_video, **kwargs)
    with pytest.raises(ValueError, match="^chunk_size:"):
        iter_video_chunks(coded_video, chunk_size=0)
    with pytest.raises(TypeError, match="^path:"):
        read_video(42)


# ---------------------------------------------------------------------------------------------------------- write


def test_write_mp4_odd_size_numpy_and_torch(tmp_path):
    rows = np.linspace(0, 255, 33).astype(np.uint8)[:, None, None]  # smooth vertical ramp
    frames = np.broadcast_to(rows, (6, 33, 47, 3)).copy()  # (T, H, W, 3), odd sides
    write_video(frames, tmp_path / "odd.mp4", 12.5)
    write_video(torch.from_numpy(frames), tmp_path / "odd_torch.mp4", 12.5)
    for name in ("odd.mp4", "odd_torch.mp4"):
        info = video_info(tmp_path / name)
        assert (info.num_frames, info.height, info.width) == (6, 34, 48)  # padded by one replicated row/column
        assert info.fps == pytest.approx(12.5)
        back = read_video(tmp_path / name).frames
        error = (back[:, :33, :47].float() - torch.from_numpy(frames).float()).abs().mean()
        assert error < 3.0
        assert (back[:, 33].float() - back[:, 32].float()).abs().mean() < 3.0  # the padding repeats the edge
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4", "odd_torch.mp4"]  # no temporary left


def test_write_mp4_without_libx264(tmp_path, monkeypatch):
    monkeypatch.setattr(video_io, "_pick_codec", lambda: "mpeg4")
    write_video(coded_frames(20), tmp_path / "mpeg4.mp4", 25)
    with av.open(str(tmp_path / "mpeg4.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert_frames_match_indices(read_video(tmp_path / "mpeg4.mp4"), list(range(20)))


def test_write_gif(tmp_path):
    frames = coded_frames(5, height=16, width=24)
    write_video(frames, tmp_path / "clip.gif", 10)
    with Image.open(tmp_path / "clip.gif") as gif:
        assert (gif.n_frames, gif.size, gif.info["duration"]) == (5, (24, 16), 100)
        gif.seek(3)
        assert (np.asarray(gif.convert("RGB")) == frames[3].numpy()).all()


def test_write_validation(tmp_path):
    good = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(TypeError, match="^frames:"):
        write_video(good.astype(np.float32), tmp_path / "a.mp4", 10)
    with pytest.raises(TypeError, match="^frames:"):
        write_video(good.tolist(), tmp_path / "a.mp4", 10)
    with pytest.raises(ValueError, match="^frames:"):
        write_video(good[..., :2], tmp_path / "a.mp4", 10)
    with pytest.raises(ValueError, match="^frames:"):
        write_video(good[:0], tmp_path / "a.mp4", 10)
    with pytest.raises(ValueError, match="^fps:"):
        write_video(good, tmp_path / "a.mp4", 0)
    with pytest.raises(ValueError, match="^path:"):
        write_video(good, tmp_path / "a.avi", 10)
    with pytest.raises(TypeError, match="^encoder_options:"):
        write_video(good, tmp_path / "a.mp4", 10, encoder_options={"g": 10})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif("libx264" not in av.codecs_available, reason="needs libx264")
def test_write_mp4_encoder_options(tmp_path):
    frames = coded_frames(30)
    write_video(frames, tmp_path / "intra.mp4", 25, encoder_options={"g": "1"})  # every frame a keyframe
    with av.open(str(tmp_path / "intra.mp4")) as container:
        assert all(packet.is_keyframe for packet in container.demux(video=0) if packet.size)
    assert_frames_match_indices(read_video(tmp_path / "intra.mp4"), list(range(30)))


def test_video_clip_checks_shapes():
    clip = VideoClip(torch.zeros(2, 4, 6, 3, dtype=torch.uint8), torch.zeros(2, dtype=torch.float64),
                     torch.arange(2), fps=10.0)
    assert (clip.num_frames, clip.height, clip.width) == (2, 4, 6)
    with pytest.raises(ValueError, match="timestamps"):
        VideoClip(clip.frames, torch.zeros(3, dtype=torch.float64), torch.arange(2), fps=10.0)
    with pytest.raises(ValueError, match="frames"):
        VideoClip(clip.frames.float(), clip.timestamps, clip.indices, fps=10.0)
