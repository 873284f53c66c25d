from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from videoai.synthetic import ShapesConfig, make_clip
from videoai.tokenize.video_io import VideoReadError
from videoai.understand.keyframes import frame_sharpness, hamming_distance, keyframes, perceptual_hash
from videoai.understand.shots import Shot

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real clips not found at {DATA}")



def blur(frames: torch.Tensor, passes: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 box-blurred `passes` times."""
    x = frames.permute(0, 3, 1, 2).float()
    kernel = torch.full((3, 1, 3, 3), 1 / 9)
    for _ in range(passes):
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def shots_of(starts, num_frames):
    bounds = [*starts, num_frames]
    return [Shot(a, b, float(a), float(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def gray(frames):
    return frames.float().mean(-1)


def test_sharpness_prefers_sharp_frames():
    frames = make_clip(0, ShapesConfig(num_frames=4, height=48, width=48)).frames
    sharpness = frame_sharpness(gray(torch.cat([frames[:1], blur(frames[:1], 1), blur(frames[:1], 3)])))
    assert sharpness[0] > sharpness[1] > sharpness[2]


@pytest.mark.parametrize("method", ["dhash", "phash"])
def test_hash_invariances(method):
    clip = make_clip(3, ShapesConfig(num_frames=4, height=64, width=64))
    other = make_clip(4, ShapesConfig(num_frames=4, height=64, width=64))
    base = gray(clip.frames[:1])
    brighter = (base * 1.1 + 10).clamp(0, 255)
    hashes = perceptual_hash(torch.cat([base, brighter, gray(other.frames[:1])]), method)  # (3, 64)
    assert hashes.shape == (3, 64) and hashes.dtype == torch.bool
    distance = hamming_distance(hashes, hashes)
    assert distance[0, 1] <= 4  # same picture, brighter
    assert distance[0, 2] > 10  # another picture


def test_sharpest_frame_per_shot():
    config = ShapesConfig(num_frames=60, height=48, width=64, num_shots=3, min_shot_length=18, max_speed=0.5,
                          min_speed=0.2)
    clip = make_clip(5, config)
    frames = blur(clip.frames, 2)
    sharp = [clip.shot_starts[0] + 3, clip.shot_starts[1] + 5, clip.shot_starts[2] + 2]
    frames[sharp] = clip.frames[sharp]  # one unblurred frame per shot
    shots = shots_of(clip.shot_starts, 60)
    assert keyframes(frames, shots) == sharp
    assert keyframes(frames) == sharp  # shots detected when not given


def test_near_duplicates_removed_across_shots():
    config = ShapesConfig(num_frames=20, height=48, width=64, num_shots=2, min_shot_length=10, max_speed=1.0,
                          min_speed=0.5)
    clip = make_clip(6, config)
    frames = torch.cat([clip.frames, clip.frames[:10]])  # cut back to shot 0: a repeat
    shots = shots_of([0, 10, 20], 30)
    picked = keyframes(frames, shots)
    assert len(picked) == 2 and picked[0] < 10 <= picked[1] < 20
    assert len(keyframes(frames, shots, hash_threshold=0)) == 3  # exact-match-only dedup keeps all three


def test_k_per_shot_are_distinct():
    config = ShapesConfig(num_frames=40, height=64, width=64, max_speed=1.0, min_speed=0.8, min_objects=3,
                          max_objects=3)
    frames = make_clip(7, config).frames
    shots = shots_of([0], 40)
    picked = keyframes(frames, shots, k=3, hash_threshold=2)
    assert 1 <= len(picked) <= 3 and picked == sorted(set(picked))
    hashes = perceptual_hash(gray(frames[picked]))
    distance = hamming_distance(hashes, hashes) + 64 * torch.eye(len(picked), dtype=torch.int64)
    assert distance.min() > 2


@needs_data
def test_real_clip_keyframes_inside_shots():
    # counter.mp4: three 10-frame shots; the last only changes the background colour of the second, which keeps
    # every luma gradient's sign, so its dHash equals the second's and it is dropped as a near-duplicate.
    shots = shots_of([0, 10, 20], 30)
    picked = keyframes(DATA / "counter.mp4", shots, size=144)
    assert len(picked) == 2 and [p // 10 for p in picked] == [0, 1]


def test_bad_inputs(tmp_path):
    frames = torch.zeros(10, 16, 16, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="zero-length"):
        keyframes(frames, [Shot(3, 3, 0.0, 0.0)])
    with pytest.raises(ValueError, match="inside"):
        keyframes(frames, [Shot(5, 12, 0.0, 1.0)])
    with pytest.raises(TypeError, match="shots"):
        keyframes(frames, [(0, 10)])
    with pytest.raises(ValueError, match="k"):
        keyframes(frames, k=0)
    with pytest.raises(ValueError, match="hash_method"):
        keyframes(frames, hash_method="ahash")
    with pytest.raises(ValueError, match="hash_threshold"):
        keyframes(frames, hash_threshold=64)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError):
        keyframes(empty)
