import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from videoai.synthetic import ShapesConfig, make_clip
from videoai.tokenize.video_io import VideoReadError, read_video
from videoai.understand.motion import camera_motion, motion_stats
from videoai.understand.shots import Shot

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real clips not found at {DATA}")



def shots_of(starts, num_frames):
    bounds = [*starts, num_frames]
    return [Shot(a, b, float(a), float(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def test_pan_per_shot_matches_ground_truth():
    config = ShapesConfig(num_frames=48, height=96, width=96, num_shots=3, min_shot_length=16, camera_pan=True,
                          max_speed=1.0, min_speed=0.3, max_objects=1)
    clip = make_clip(2, config)
    stats = motion_stats(clip.frames, shots_of(clip.shot_starts, 48), grid=16)
    assert len(stats) == 3
    for start, shot in zip(clip.shot_starts, stats):
        expected = clip.camera_motion[start + 1]  # constant within a shot
        assert shot.pan == pytest.approx(expected.tolist(), abs=0.05)
        assert shot.zoom == pytest.approx(1.0, abs=2e-3)
        assert shot.rotation == pytest.approx(0.0, abs=0.1)


def zooming_clip(num_frames=12, size=96, rate=1.02):
    """A textured image magnified by `rate` per frame about the centre."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (5, 5), 1.5)
    centre = ((size - 1) / 2, (size - 1) / 2)
    frames = [cv2.warpAffine(texture, cv2.getRotationMatrix2D(centre, 0.0, rate ** t), (size, size),
                             borderMode=cv2.BORDER_REFLECT) for t in range(num_frames)]
    return torch.from_numpy(np.stack(frames))


def test_zoom_is_measured():
    stats = motion_stats(zooming_clip(), [Shot(0, 12, 0.0, 1.0)], grid=12)
    assert stats[0].zoom == pytest.approx(1.02, abs=3e-3)
    assert stats[0].pan == pytest.approx([0.0, 0.0], abs=0.1)


def test_object_motion_after_camera_compensation():
    config = ShapesConfig(num_frames=20, height=96, width=96, camera_pan=True, min_objects=1, max_objects=1,
                          min_size=20, max_size=24, min_speed=1.6, max_speed=2.0, max_pan_speed=0.6)
    for seed in range(2):
        clip = make_clip(seed, config)
        stats = motion_stats(clip.frames, [Shot(0, 20, 0.0, 1.0)], grid=24, size=None)[0]
        angle = {"right": 0.0, "down": 90.0, "left": 180.0, "up": 270.0}[clip.tags[0]["direction"]]
        difference = abs((stats.object_direction - angle + 180) % 360 - 180)
        assert difference < 35  # the tag's axis, with up to 20 degrees of jitter
        assert 0.005 < stats.moving_fraction < 0.3 and stats.object_speed > 0.5


def test_still_clip_and_one_frame_shot():
    frames = make_clip(0, ShapesConfig(num_frames=6, height=48, width=48, still_prob=1.0)).frames
    stats = motion_stats(frames, [Shot(0, 5, 0.0, 1.0), Shot(5, 6, 1.0, 1.2)], grid=8)
    assert stats[0].pan == pytest.approx([0.0, 0.0], abs=0.02) and stats[0].object_direction is None
    assert stats[0].object_speed == 0.0 and stats[0].moving_fraction == 0.0
    assert stats[1].pan == (0.0, 0.0) and stats[1].zoom == 1.0  # one frame: no pair, no motion


def test_camera_motion_in_source_pixels():
    config = ShapesConfig(num_frames=10, height=96, width=128, camera_pan=True, still_prob=1.0, max_speed=1.0)
    clip = make_clip(4, config)
    steps = camera_motion(clip.frames, size=48)  # analysed at 64x48, returned in 128x96 pixels
    assert steps.shape == (10, 2, 3)
    assert torch.equal(steps[0], torch.eye(3, dtype=torch.float64)[:2])
    assert torch.allclose(steps[1:, :, 2].float(), clip.camera_motion[1:], atol=0.15)


@needs_data
def test_real_clip_shots_detected():
    clip = read_video(DATA / "goldeneye-vfr-drop3.mp4", start=2.5, end=5.0, size=136)  # holds the cut at 3.754 s
    stats = motion_stats(clip, grid=12, size=None)
    assert len(stats) == 2 and stats[1].shot.start_time == pytest.approx(3.754, abs=1e-3)
    assert all(math.isfinite(s.zoom) and s.zoom > 0 for s in stats)


def test_bad_inputs(tmp_path):
    frames = torch.zeros(6, 32, 32, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="zero-length"):
        motion_stats(frames, [Shot(2, 2, 0.0, 0.0)])
    with pytest.raises(ValueError, match="inside"):
        motion_stats(frames, [Shot(0, 9, 0.0, 1.0)])
    with pytest.raises(ValueError, match="grid"):
        motion_stats(frames, grid=1)
    with pytest.raises(ValueError, match="moving_threshold"):
        motion_stats(frames, moving_threshold=-1)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError):
        motion_stats(empty)
