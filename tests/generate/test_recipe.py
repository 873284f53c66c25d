from dataclasses import replace

import pytest
import torch

from videoai.generate import DefaultRecipe, TrajectoryImageToVideoPipeline, synthetic_tracks, train_default_model
from videoai.generate.recipe import default_shapes_config
from videoai.generate.train import GeneratorTrainConfig
from videoai.generate.train_vae import VAETrainConfig
from videoai.synthetic import make_clip

from .conftest import TINY


def test_synthetic_tracks_add_background_anchors_hidden_under_objects():
    clip = make_clip(3, default_shapes_config())
    tracks = synthetic_tracks(clip, num_background=16)
    objects = clip.tracks.num_tracks
    assert tracks.num_tracks == objects + 16
    torch.testing.assert_close(tracks.points[:, :objects], clip.tracks.points)
    anchors = tracks.points[:, objects:]
    assert (anchors == anchors[:1]).all()  # static camera: anchors hold still
    covered = clip.masks.any(1)  # (T, H, W)
    pixel = anchors.round().long()
    under = covered[torch.arange(clip.frames.shape[0])[:, None], pixel[..., 1], pixel[..., 0]]
    assert not (tracks.visibility[:, objects:] & under).any()


def test_recipe_runs_end_to_end_and_skips_finished_stages(tmp_path):
    recipe = DefaultRecipe(
        output_dir=tmp_path, model=replace(TINY, num_frames=13, height=64, width=64), vae_steps=1, vae_full_steps=1,
        vae=VAETrainConfig(batch_size=2, num_frames=5, crop_size=32), vae_full=VAETrainConfig(batch_size=1, num_frames=13,
        crop_size=64), vae_clips=4, num_clips=4, encode_batch_size=4, transformer_steps=2,
        generator=GeneratorTrainConfig(batch_size=2, lr_warmup_steps=0), checkpoint_every=1, fine_steps=2,
        fine_generator=GeneratorTrainConfig(batch_size=2, lr_warmup_steps=0))
    pipe = train_default_model(recipe)
    for stage in ("vae", "vae_full", "transformer", "transformer_fine"):
        assert (tmp_path / stage / "DONE").is_file()
    loaded = TrajectoryImageToVideoPipeline.from_pretrained(tmp_path / "model")
    assert loaded.config.default_num_frames == 13
    assert tuple(loaded.transformer.config.patch_size) == (1, 1, 1)  # stage 4 refined the tokens
    assert loaded.vae.config.latents_std != [1.0] * TINY.z_dim  # fitted statistics were saved
    again = train_default_model(recipe)  # every stage is done: loads, trains nothing
    torch.testing.assert_close(again.transformer.proj_out.weight, pipe.transformer.proj_out.weight)


def test_start_from_a_saved_pipeline_runs_only_encoding_and_stage_4(tmp_path):
    from videoai.generate.default import build_pipeline
    from videoai.generate.recipe import start_from_pipeline

    source = build_pipeline(replace(TINY, num_frames=13, height=64, width=64), seed=1)
    source.save_pretrained(tmp_path / "source")
    start_from_pipeline(tmp_path / "run", tmp_path / "source")
    recipe = DefaultRecipe(
        output_dir=tmp_path / "run", model=replace(TINY, num_frames=13, height=64, width=64), num_clips=2,
        encode_batch_size=2, transformer_steps=10**6, fine_steps=1,
        fine_generator=GeneratorTrainConfig(batch_size=2, lr_warmup_steps=0), checkpoint_every=1)
    pipe = train_default_model(recipe)  # stage 3 would take 10**6 steps: it must be skipped
    torch.testing.assert_close(pipe.vae.state_dict(), source.vae.state_dict())
    assert not (tmp_path / "run" / "transformer" / "checkpoints").exists()
    assert (tmp_path / "run" / "transformer_fine" / "DONE").is_file()
    assert tuple(pipe.transformer.config.patch_size) == (1, 1, 1)
    with pytest.raises(FileNotFoundError, match="pipeline_dir"):
        start_from_pipeline(tmp_path / "other", tmp_path / "missing")
