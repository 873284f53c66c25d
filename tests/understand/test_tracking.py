from pathlib import Path

import numpy as np
import pytest
import torch

from videoai.synthetic import ShapesConfig, make_clip
from videoai.tokenize.tracks import Tracks
from videoai.tokenize.video_io import VideoReadError, read_video
from videoai.understand.tracking import sample_tracks, track_points

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real clips not found at {DATA}")



def end_point_error(tracks: Tracks, truth: Tracks) -> float:
    return float((tracks.points - truth.points).norm(dim=-1)[truth.visibility].mean())


@pytest.mark.parametrize("camera_pan", [False, True])
def test_tracks_object_centroids(camera_pan):
    config = ShapesConfig(num_frames=24, height=96, width=96, min_objects=2, max_objects=2, camera_pan=camera_pan,
                          max_speed=1.5)
    errors = []
    for seed in range(3):
        clip = make_clip(seed, config)
        tracks = track_points(clip.frames, clip.tracks.points[0])
        assert (tracks.num_frames, tracks.num_tracks, tracks.width, tracks.height) == (24, 2, 96, 96)
        errors.append(end_point_error(tracks, clip.tracks))
    assert np.mean(errors) < 1.5  # benchmarks/bench_tracking.py measures this on more clips


def test_camera_motion_removed():
    config = ShapesConfig(num_frames=20, height=96, width=96, camera_pan=True, still_prob=1.0, min_pan_speed=0.8)
    clip = make_clip(3, config)
    tracks = track_points(clip.frames, grid=6, remove_camera_motion=True)
    visible = tracks.visibility.all(0)
    assert visible.sum() >= 20
    # everything is background (still objects ride with it), so compensated points stay where they started
    drift = (tracks.points[:, visible] - tracks.points[:1, visible]).norm(dim=-1)
    assert drift.median() < 0.3
    raw = track_points(clip.frames, grid=6)
    pan = clip.camera_motion[1:].sum(0)  # total background shift
    shift = (raw.points[-1] - raw.points[0])[raw.visibility[-1]].median(0).values
    assert torch.allclose(shift, pan, atol=0.3)


def test_points_leaving_the_frame_become_invisible():
    config = ShapesConfig(num_frames=20, height=64, width=64, camera_pan=True, still_prob=1.0, min_pan_speed=1.0,
                          max_pan_speed=1.0, max_speed=1.0)
    clip = make_clip(0, config)
    direction = clip.camera_motion[1]  # (dx, dy) per frame, unit speed
    # a point 3 px from the edge the background moves towards (along its main axis) leaves within the clip
    axis = int(direction.abs().argmax())
    point = [32.0, 32.0]
    point[axis] = 60.0 if direction[axis] > 0 else 3.0
    tracks = track_points(clip.frames, [point], fb_threshold=2.0)
    assert tracks.visibility[0, 0] and not tracks.visibility[-1, 0]
    assert not tracks.visibility[tracks.visibility[:, 0].long().argmin():, 0].any()  # sticky once lost


def test_grid_features_and_size():
    clip = make_clip(1, ShapesConfig(num_frames=8, height=64, width=96))
    grid = track_points(clip.frames, grid=4)
    assert grid.num_tracks == 16 and grid.visibility[0].all()
    assert torch.allclose(grid.points[0, 0], torch.tensor([96 / 8 - 0.5, 64 / 8 - 0.5]))
    features = track_points(clip.frames, "features", grid=5)
    assert 1 <= features.num_tracks <= 25
    small = track_points(clip.frames, grid=4, size=32)  # tracked at 48x32, returned in 96x64 pixels
    assert (small.width, small.height) == (96, 64)
    assert torch.allclose(small.points[0], grid.points[0], atol=1e-4)


@needs_data
def test_real_clip_chunk():
    clip = read_video(DATA / "goldeneye-vfr-drop3.mp4", end=1.0)  # 16 frames of a 1280x544 film clip
    tracks = track_points(clip, grid=8, size=136)
    assert (tracks.num_frames, tracks.num_tracks, tracks.width, tracks.height) == (clip.num_frames, 64, 1280, 544)
    assert tracks.visibility[-1].float().mean() > 0.5  # most of a calm shot tracks through
    assert tracks.in_frame()[tracks.visibility].all()


def test_sample_tracks_prefers_motion():
    still = torch.zeros(10, 50, 2)
    moving = torch.linspace(0, 20, 10)[:, None, None].expand(10, 50, 2)
    tracks = Tracks(torch.cat([still, moving], 1) + 5, torch.ones(10, 100, dtype=torch.bool), 64, 64)
    generator = torch.Generator().manual_seed(0)
    picked = sample_tracks(tracks, 20, generator=generator)
    moved = (picked.points[-1] - picked.points[0]).norm(dim=-1) > 0
    assert picked.num_tracks == 20 and moved.sum() >= 16
    again = sample_tracks(tracks, 20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.points, picked.points)  # seeded
    uniform = sample_tracks(tracks, 100, weight_by_motion=False)
    assert uniform.num_tracks == 100


def test_sample_tracks_skips_never_visible():
    visibility = torch.ones(5, 4, dtype=torch.bool)
    visibility[:, 1] = False
    tracks = Tracks(torch.rand(5, 4, 2) * 10, visibility, 16, 16)
    picked = sample_tracks(tracks, 3)
    assert picked.visibility.any(0).all()
    with pytest.raises(ValueError, match="only 3"):
        sample_tracks(tracks, 4)


def test_bad_inputs(tmp_path):
    frames = torch.zeros(4, 32, 48, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="outside"):
        track_points(frames, [[10.0, 40.0]])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        track_points(frames, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        track_points(frames, np.zeros((0, 2)))
    with pytest.raises(ValueError, match="finite"):
        track_points(frames, [[np.nan, 1.0]])
    with pytest.raises(ValueError, match="points"):
        track_points(frames, "corners")
    with pytest.raises(ValueError, match="no corner"):
        track_points(frames, "features")  # a flat frame has none
    with pytest.raises(ValueError, match="grid"):
        track_points(frames, grid=0)
    with pytest.raises(ValueError, match="at least one"):
        track_points(torch.zeros(0, 32, 48, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="Tracks"):
        sample_tracks(frames, 1)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError):
        track_points(empty)
