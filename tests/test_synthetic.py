"""Tests for the seeded moving-shapes generator: determinism, exact ground truth, cuts, pan, dataset, files."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from videoai.synthetic import (
    COLORS,
    SHAPES,
    TAG_VOCAB,
    ShapesConfig,
    ShapesDataset,
    make_clip,
    object_tag_strings,
    tags_to_multi_hot,
    write_clips,
)
from videoai.tokenize.tracks import Tracks
from videoai.tokenize.video_io import read_video



def _mask_centroids(masks: torch.Tensor) -> torch.Tensor:
    """(T, H, W) bool -> (T, 2) pixel (x, y) centroid."""
    T, H, W = masks.shape
    weights = masks.double()
    area = weights.sum((1, 2))
    x = (weights * torch.arange(W, dtype=torch.float64)).sum((1, 2)) / area
    y = (weights * torch.arange(H, dtype=torch.float64)[:, None]).sum((1, 2)) / area
    return torch.stack([x, y], -1)


def test_same_seed_same_clip_and_seeds_differ():
    config = ShapesConfig(num_shots=2, camera_pan=True, max_objects=3)
    a, b, c = make_clip(7, config), make_clip(7, config), make_clip(8, config)
    assert a.frames.dtype == torch.uint8 and a.frames.shape == (16, 64, 64, 3)
    assert torch.equal(a.frames, b.frames)
    assert torch.equal(a.tracks.points, b.tracks.points) and torch.equal(a.tracks.visibility, b.tracks.visibility)
    assert a.tags == b.tags and a.shot_starts == b.shot_starts and torch.equal(a.camera_motion, b.camera_motion)
    assert not torch.equal(a.frames, c.frames)


@pytest.mark.parametrize("shape", SHAPES)
def test_object_mask_centroid_is_the_track(shape):
    config = ShapesConfig(max_objects=1, shapes=(shape,), min_size=6, max_size=16, still_prob=0.2)
    for seed in range(4):
        clip = make_clip(seed, config)
        assert isinstance(clip.tracks, Tracks) and clip.tracks.num_tracks == 1
        assert bool(clip.tracks.visibility.all())
        error = (_mask_centroids(clip.masks[:, 0]) - clip.tracks.points[:, 0].double()).norm(dim=-1)  # (T,)
        assert error.max() < 0.5, (shape, seed, error.max().item())


def test_masks_show_object_colour_and_visibility_follows_occlusion():
    # Crowded big objects so that some centres get covered by objects drawn later.
    config = ShapesConfig(num_frames=12, num_shots=2, min_objects=3, max_objects=4, min_size=14, max_size=20,
                          max_speed=1.0, min_shot_length=4)
    occluded = 0
    for seed in range(6):
        clip = make_clip(seed, config)
        T, N = clip.tracks.visibility.shape
        assert clip.masks.shape == (T, N, 64, 64) and len(clip.tags) == N
        assert not bool((clip.masks.sum(1) > 1).any()), "a pixel belongs to at most one object"
        ends = clip.shot_starts[1:] + [T]
        for n, tags in enumerate(clip.tags):
            assert torch.equal(clip.frames[clip.masks[:, n]], torch.tensor(COLORS[tags["color"]], dtype=torch.uint8)
                               .expand(int(clip.masks[:, n].sum()), 3))
            shot = int(clip.object_shot[n])
            in_shot = torch.zeros(T, dtype=torch.bool)
            in_shot[clip.shot_starts[shot]:ends[shot]] = True
            assert not bool(clip.tracks.visibility[~in_shot, n].any()) and not bool(clip.masks[~in_shot, n].any())
            centre = clip.tracks.points[:, n].round().long()  # (T, 2)
            own_pixel = clip.masks[torch.arange(T), n, centre[:, 1], centre[:, 0]]  # (T,)
            assert torch.equal(clip.tracks.visibility[in_shot, n], own_pixel[in_shot])
            occluded += int((in_shot & ~clip.tracks.visibility[:, n]).sum())
        colours = [t["color"] for t, s in zip(clip.tags, clip.object_shot.tolist()) if s == 0]
        assert len(set(colours)) == len(colours), "colours are unique within a shot"
    assert occluded > 0, "the crowded config should produce occluded centres"


@pytest.mark.parametrize("camera_pan", [False, True])
def test_tags_match_motion(camera_pan):
    config = ShapesConfig(num_frames=12, max_objects=3, camera_pan=camera_pan, still_prob=0.2)
    span = config.max_speed - config.min_speed
    seen = set()
    for seed in range(12):
        clip = make_clip(seed, config)
        points = clip.tracks.points.double()  # (T, N, 2)
        if camera_pan:  # own (world) motion = image motion minus the camera's cumulative shift
            points = points - clip.camera_motion.double().cumsum(0)[:, None]
        velocity = (points[1:] - points[:-1])  # (T-1, N, 2), constant for a single shot
        assert torch.allclose(velocity, velocity[:1].expand_as(velocity), atol=1e-4)
        for n, tags in enumerate(clip.tags):
            vx, vy = velocity[0, n].tolist()
            speed = (vx**2 + vy**2) ** 0.5
            expected = {"right": vx > abs(vy), "left": -vx > abs(vy), "down": vy > abs(vx), "up": -vy > abs(vx),
                        "still": speed < 1e-4}[tags["direction"]]
            assert expected, (seed, n, tags, vx, vy)
            low, high = {"still": (0.0, 0.0), "slow": (config.min_speed, config.min_speed + 0.4 * span),
                         "fast": (config.max_speed - 0.4 * span, config.max_speed)}[tags["speed"]]
            assert low - 1e-4 <= speed <= high + 1e-4, (tags, speed)
            seen.update(object_tag_strings(tags))
        assert set(clip.clip_tags) == {t for tags in clip.tags for t in object_tag_strings(tags)} | {
            "camera:pan" if camera_pan else "camera:static"}
    assert {"direction:left", "direction:right", "direction:up", "direction:down", "direction:still"} <= seen
    assert seen <= set(TAG_VOCAB)


def test_cuts_are_the_only_big_frame_changes():
    config = ShapesConfig(num_frames=24, num_shots=3, camera_pan=True)
    for seed in range(8):
        clip = make_clip(seed, config)
        assert clip.shot_starts[0] == 0 and len(clip.shot_starts) == 3
        assert all(b - a >= config.min_shot_length for a, b in zip(clip.shot_starts, clip.shot_starts[1:] + [24]))
        change = (clip.frames[1:].float() - clip.frames[:-1].float()).abs().mean((1, 2, 3))  # (T-1,)
        at_cut = torch.zeros(23, dtype=torch.bool)
        at_cut[[s - 1 for s in clip.shot_starts[1:]]] = True
        assert change[at_cut].min() > 2 * change[~at_cut].max(), (seed, change)


def test_camera_pan_moves_background_by_recorded_amount():
    config = ShapesConfig(num_frames=10, camera_pan=True, min_pan_speed=0.8, max_pan_speed=1.0, max_speed=1.5)
    for seed in range(3):
        clip = make_clip(seed, config)
        frames = clip.frames.permute(0, 3, 1, 2).float()  # (T, 3, H, W)
        objects = F.max_pool2d(clip.masks.any(1).float()[:, None], 5, stride=1, padding=2)  # (T, 1, H, W) dilated
        shift = clip.camera_motion[1:].sum(0)  # background (dx, dy) from the first to the last frame
        assert shift.norm() > 0.8 * 9

        def warp_error(dx: float, dy: float) -> float:
            """Mean |last - first shifted by (dx, dy)| over background pixels seen in both frames."""
            ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
            grid = torch.stack([(xs - dx) / 31.5 - 1, (ys - dy) / 31.5 - 1], -1)[None]  # align_corners=True
            source = F.grid_sample(frames[:1], grid, align_corners=True)[0]
            source_objects = F.grid_sample(objects[:1], grid, align_corners=True)[0, 0]
            inside = (grid.abs() <= 1).all(-1)[0]
            valid = inside & (source_objects == 0) & (objects[-1, 0] == 0)
            assert valid.sum() > 500
            return (source - frames[-1]).abs().mean(0)[valid].mean().item()

        right, still, flipped = warp_error(*shift.tolist()), warp_error(0, 0), warp_error(*(-shift).tolist())
        off_by_one = min(warp_error(*(shift + delta).tolist()) for delta in torch.eye(2))  # one pixel off in x or y
        assert right < 1.5 and right < 0.1 * min(still, flipped) and right < 0.5 * off_by_one, (right, off_by_one)
    assert make_clip(0, ShapesConfig()).camera_motion is None


def test_dataset_batches_with_padding():
    config = ShapesConfig(num_frames=8, height=32, width=48, max_objects=3, num_shots=2, max_speed=1.5)
    dataset = ShapesDataset(4, config, seed=3)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["frames"].shape == (4, 3, 8, 32, 48) and batch["frames"].dtype == torch.float32
    assert batch["frames"].min() >= -1 and batch["frames"].max() <= 1
    assert batch["track_points"].shape == (4, 8, 6, 2) and batch["track_visibility"].shape == (4, 8, 6)
    assert batch["tags"].shape == (4, len(TAG_VOCAB)) and batch["object_tags"].shape == (4, 6, len(TAG_VOCAB))
    clip = make_clip(5, config)  # item 2 = seed 3 + 2
    n = clip.tracks.num_tracks
    assert batch["track_mask"][2].sum() == n and not bool(batch["track_visibility"][2][:, n:].any())
    assert torch.equal(batch["track_points"][2][:, :n], clip.tracks.points)
    assert torch.equal(batch["tags"][2], tags_to_multi_hot(clip.clip_tags))
    assert torch.equal(batch["object_tags"][2][0], tags_to_multi_hot(clip.tags[0]))
    assert batch["shot_start"][2].nonzero()[:, 0].tolist() == clip.shot_starts
    expected = clip.frames.permute(3, 0, 1, 2).float() / 127.5 - 1
    assert torch.allclose(batch["frames"][2], expected)
    assert torch.equal(ShapesDataset(4, config, seed=3, normalize=False)[2]["frames"], clip.frames)


def test_write_clips_writes_readable_videos_and_ground_truth(tmp_path):
    config = ShapesConfig(num_frames=8, num_shots=2, camera_pan=True, max_speed=1.5)
    path = write_clips(tmp_path, 2, config, seed=4, fps=10)
    truth = json.loads(path.read_text())
    assert truth["fps"] == 10 and truth["tag_vocab"] == TAG_VOCAB and len(truth["clips"]) == 2
    for i, record in enumerate(truth["clips"]):
        clip = make_clip(4 + i, config)
        video = read_video(tmp_path / record["file"])
        assert video.frames.shape == clip.frames.shape
        assert (video.frames.float() - clip.frames.float()).abs().mean() < 8  # lossy H.264
        tracks = Tracks.from_json(record["tracks"])
        assert torch.equal(tracks.points, clip.tracks.points) and torch.equal(tracks.visibility, clip.tracks.visibility)
        assert record["tags"] == clip.tags and record["shot_starts"] == clip.shot_starts
        assert record["camera_motion"] == clip.camera_motion.tolist()


def test_tag_vocab_and_multi_hot():
    assert len(TAG_VOCAB) == len(set(TAG_VOCAB)) and "shape:circle" in TAG_VOCAB and "speed:fast" in TAG_VOCAB
    hot = tags_to_multi_hot(["color:red", "direction:left"])
    assert hot.shape == (len(TAG_VOCAB),) and hot.sum() == 2 and hot[TAG_VOCAB.index("color:red")] == 1
    with pytest.raises(ValueError, match="shape:hexagon"):
        tags_to_multi_hot(["shape:hexagon"])
    with pytest.raises(TypeError, match="tags"):
        tags_to_multi_hot("color:red")


@pytest.mark.parametrize(
    "field, value",
    [("num_frames", 1), ("height", 8), ("max_objects", 0), ("max_objects", 7), ("num_shots", 5), ("min_speed", 3.0),
     ("min_size", 2), ("max_size", 4), ("still_prob", 1.5), ("direction_jitter", 60.0), ("shapes", ("hexagon",)),
     ("colors", ()), ("max_speed", 9.0), ("min_pan_speed", 2.0)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"ShapesConfig.{field}"):
        ShapesConfig(**{field: value})


def test_bad_arguments():
    with pytest.raises(TypeError, match="num_frames"):
        ShapesConfig(num_frames=16.0)
    with pytest.raises(TypeError, match="seed"):
        make_clip("0")
    with pytest.raises(TypeError, match="config"):
        make_clip(0, {"num_frames": 8})
    with pytest.raises(ValueError, match="num_clips"):
        ShapesDataset(0)
    with pytest.raises(ValueError, match="max_speed"):  # pan makes the travel too long for the frame
        ShapesConfig(camera_pan=True, max_speed=3.0)
