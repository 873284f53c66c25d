from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from videoai.generate.default import build_pipeline
from videoai.generate.recipe import synthetic_tracks
from videoai.generate.train import (
    GeneratorTrainConfig,
    TrackConditionedLatents,
    encode_clips,
    sample_tracks,
    save_trained,
    train_generator,
)
from videoai.generate import TrajectoryImageToVideoPipeline
from videoai.synthetic import ShapesConfig, make_clip
from videoai.tokenize.tracks import Tracks
from videoai.train import TrainConfig

from .conftest import TINY

SHAPES = ShapesConfig(num_frames=5, height=32, width=32, max_size=10, max_speed=2.0)


@pytest.fixture(scope="module")
def encoded():
    torch.set_num_threads(1)
    pipe = build_pipeline(TINY, seed=0)
    clips = [(c.frames, synthetic_tracks(c, 4)) for c in (make_clip(seed, SHAPES) for seed in range(8))]
    return encode_clips(pipe.vae, clips, batch_size=4)


def _dataset(encoded, config, **kwargs):
    latents, conditions, tracks = encoded
    return TrackConditionedLatents(latents, conditions, tracks, config, **kwargs)


def test_encode_clips_shapes(encoded):
    latents, conditions, tracks = encoded
    assert latents.shape == (8, 4, 2, 4, 4) and conditions.shape == (8, 8, 2, 4, 4) and len(tracks) == 8
    assert tracks[0].num_tracks == make_clip(0, SHAPES).tracks.num_tracks + 4  # objects + background anchors


def test_sample_tracks_prefers_moving_tracks_and_drops():
    moving = Tracks.from_polylines([[(0, 0), (30, 0)]], 5, 32, 32)
    still = Tracks.static(torch.rand(20, 2) * 30, 5, 32, 32)
    tracks = Tracks.cat([moving, still])
    config = GeneratorTrainConfig(min_tracks=1, max_tracks=1, track_dropout=0.0, point_dropout=0.0)
    picks = [sample_tracks(tracks, config, torch.Generator().manual_seed(i)) for i in range(50)]
    moving_rate = sum(bool((p.points[-1, 0] - p.points[0, 0]).norm() > 1) for p in picks) / 50
    assert moving_rate > 0.9  # weight 31^2 vs 20 x 1
    config = replace(config, track_dropout=1.0)
    assert sample_tracks(tracks, config, torch.Generator().manual_seed(0)).num_tracks == 0


def test_dataset_items_are_seeded_by_epoch_and_index(encoded):
    dataset = _dataset(encoded, GeneratorTrainConfig(track_dropout=0.0, point_dropout=0.0), with_motion_maps=True)
    a, b = dataset[3], dataset[3]
    torch.testing.assert_close(a["condition"], b["condition"])
    assert a["motion_maps"].shape == (12, 2, 4, 4) and a["motion_active"] == 1.0
    dataset.set_epoch(1)
    assert not torch.equal(dataset[3]["condition"], a["condition"])  # another draw of tracks


def _train(pipe, dataset, config, output_dir, max_steps, **kwargs):
    train_config = TrainConfig(output_dir=output_dir, max_steps=max_steps, log_every=5, progress_bar=False, **kwargs)
    return train_generator(pipe, dataset, config, train_config)


def test_training_lowers_the_loss(tmp_path, encoded):
    config = GeneratorTrainConfig(batch_size=4, learning_rate=3e-3, lr_warmup_steps=0)
    result, _ = _train(build_pipeline(TINY, seed=0), _dataset(encoded, config), config, tmp_path, 40)
    first, last = sum(result.losses[:8]) / 8, sum(result.losses[-8:]) / 8
    assert last < 0.8 * first, (first, last)


def test_resume_is_exact(tmp_path, encoded):
    config = GeneratorTrainConfig(batch_size=4, learning_rate=3e-3, lr_warmup_steps=2)
    straight, _ = _train(build_pipeline(TINY, seed=0), _dataset(encoded, config), config, tmp_path / "a", 6,
                         ema_decay=0.9)
    _train(build_pipeline(TINY, seed=0), _dataset(encoded, config), config, tmp_path / "b", 3, ema_decay=0.9,
           checkpoint_every=3)
    pipe = build_pipeline(TINY, seed=0)
    resumed, _ = _train(pipe, _dataset(encoded, config), config, tmp_path / "b", 6, ema_decay=0.9,
                        resume_from="latest")
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-5)


def test_decay_phase_resumes_from_a_constant_lr_checkpoint(tmp_path, encoded):
    """Warmup-stable-decay: a run extended with a decay phase from a constant-lr checkpoint equals one trained
    straight with that schedule (how the default model's transformer gets its final decay)."""
    constant = GeneratorTrainConfig(batch_size=4, learning_rate=3e-3, lr_warmup_steps=2)
    decaying = replace(constant, lr_decay_steps=3)
    straight, _ = _train(build_pipeline(TINY, seed=0), _dataset(encoded, decaying), decaying, tmp_path / "a", 7)
    _train(build_pipeline(TINY, seed=0), _dataset(encoded, constant), constant, tmp_path / "b", 4, checkpoint_every=4)
    resumed, _ = _train(build_pipeline(TINY, seed=0), _dataset(encoded, decaying), decaying, tmp_path / "b", 7,
                        resume_from="latest")
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-5)
    with pytest.raises(ValueError, match="lr_decay_steps"):
        _train(build_pipeline(TINY, seed=0), _dataset(encoded, decaying), replace(decaying, lr_decay_steps=9),
               tmp_path / "c", 7)


def test_adapter_mode_trains_only_the_adapter(tmp_path, encoded):
    pipe = build_pipeline(TINY, seed=0)
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    config = GeneratorTrainConfig(mode="adapter", batch_size=4, learning_rate=3e-3, lr_warmup_steps=0,
                                  track_dropout=0.0)
    dataset = _dataset(encoded, config, with_motion_maps=True)
    _train(pipe, dataset, config, tmp_path, 3)
    assert pipe.motion_adapter is not None
    assert any(head.weight.abs().sum() > 0 for head in pipe.motion_adapter.heads)
    for name, value in pipe.transformer.state_dict().items():
        torch.testing.assert_close(value, before[name])
    save_trained(pipe, tmp_path / "saved", config)
    loaded = TrajectoryImageToVideoPipeline.from_pretrained(tmp_path / "saved")
    torch.testing.assert_close(loaded.motion_adapter.heads[0].weight, pipe.motion_adapter.heads[0].weight)


def test_lora_mode_trains_only_lora_weights_and_reloads(tmp_path, encoded, image):
    pipe = build_pipeline(TINY, seed=0)
    config = GeneratorTrainConfig(mode="lora", lora_rank=2, batch_size=4, learning_rate=1e-2, lr_warmup_steps=0)
    base = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    _train(pipe, _dataset(encoded, config), config, tmp_path, 3)
    changed = [k for k, v in pipe.transformer.state_dict().items() if k in base and not torch.equal(v, base[k])]
    assert changed == []  # the base weights are frozen
    save_trained(pipe, tmp_path / "lora", config)
    assert any("lora" in key for key in load_file(tmp_path / "lora" / "pytorch_lora_weights.safetensors"))
    kwargs = dict(tracks=[[(4, 4), (28, 28)]], num_inference_steps=2, output_type="np")
    expected = pipe(image, generator=torch.Generator().manual_seed(0), **kwargs).frames
    fresh = build_pipeline(TINY, seed=0)
    fresh.load_lora_weights(tmp_path / "lora")
    got = fresh(image, generator=torch.Generator().manual_seed(0), **kwargs).frames
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected), atol=1e-5, rtol=0)


def test_bad_config():
    with pytest.raises(ValueError, match="mode must be one of"):
        GeneratorTrainConfig(mode="everything")
    with pytest.raises(ValueError, match="min_tracks <= max_tracks"):
        GeneratorTrainConfig(min_tracks=3, max_tracks=2)
