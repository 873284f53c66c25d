"""LoRA fine-tuning of the public Wan layouts for trajectory control, on tiny offline checkpoints and mp4 clips."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from videoai.generate import GeneratorTrainConfig, TrajectoryImageToVideoPipeline
from videoai.generate.finetune import (
    EXPERT_LORA_NAMES,
    FinetuneConfig,
    TrajectoryFinetuneDataset,
    finetune_lora,
    load_lora,
    load_or_encode_data,
    save_lora,
)
from videoai.synthetic import ShapesConfig, write_clips
from videoai.tokenize import read_video
from videoai.train import TrainConfig, find_latest_checkpoint

from .wan_layouts import SIZES, save_layout

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune_wan_lora.py"
CAPTION = "a red car drives left"
CONFIG = FinetuneConfig(num_frames=5, fps=8.0, lora_rank=4, batch_size=2, learning_rate=1e-2, track_grid=4,
                        max_sequence_length=8, prompt="a monkey dance")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """layout name -> (tiny checkpoint folder, folder of 4 mp4 clips at its size, the first one captioned)."""
    root = tmp_path_factory.mktemp("finetune")
    out = {}
    for layout in ("wan2.1-i2v", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"):
        size = SIZES[layout]
        clips = root / f"clips_{size}"
        if not clips.is_dir():
            write_clips(clips, 4, ShapesConfig(num_frames=8, height=size, width=size, max_size=10, max_speed=2.0),
                        fps=8.0)
            (clips / "clip_00000.txt").write_text(CAPTION + "\n")
        out[layout] = (save_layout(layout, root / layout), clips)
    return out


def _load(folders, layout):
    return TrajectoryImageToVideoPipeline.from_pretrained(folders[layout][0])


def _config(layout, **changes):
    return replace(CONFIG, height=SIZES[layout], width=SIZES[layout], **changes)


def _train(folders, layout, output_dir, max_steps, config=None, **train_kwargs):
    pipe = _load(folders, layout)
    train_config = TrainConfig(output_dir, max_steps=max_steps, progress_bar=False, log_every=100, **train_kwargs)
    result, trainer = finetune_lora(pipe, folders[layout][1], config or _config(layout), train_config)
    return pipe, result, trainer


def _lora_state(pipe) -> dict:
    return {f"{i}.{k}": v.detach().clone() for i, model in enumerate((pipe.transformer, pipe.transformer_2))
            if model is not None for k, v in model.state_dict().items() if "lora" in k}


def test_loss_falls_and_only_lora_trains(tmp_path, folders):
    base = _load(folders, "wan2.1-i2v").transformer.state_dict()
    pipe, result, _ = _train(folders, "wan2.1-i2v", tmp_path, 40, _config("wan2.1-i2v", learning_rate=3e-2))
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.85 * first, (first, last)
    for name, value in pipe.transformer.state_dict().items():
        if "lora" not in name:
            torch.testing.assert_close(value, base[name.replace(".base_layer", "")], rtol=0, atol=0)
    assert pipe.transformer.blocks[0].attn1.to_q.lora_B["default"].weight.abs().sum() > 0


def test_data_is_encoded_once_with_captions_and_tracked_points(tmp_path, folders):
    pipe = _load(folders, "wan2.1-i2v")
    config = _config("wan2.1-i2v")
    data = load_or_encode_data(pipe, folders["wan2.1-i2v"][1], config, tmp_path)
    assert data.names == [f"clip_{i:05d}.mp4" for i in range(4)]
    assert data.latents.shape == (4, 4, 2, 4, 4) and data.masks.shape == (4, 4, 2, 4, 4)
    assert data.text_embeds.shape[0] == 2 and data.prompt_index.tolist() == [0, 1, 1, 1]  # caption, then --prompt
    assert data.image_embeds.shape[:2] == (4, 1)
    assert all(t.num_tracks == 16 and (t.width, t.height) == (32, 32) for t in data.tracks)  # track_points 4x4 grid
    calls = []
    pipe.vae.encode = lambda *args, **kwargs: calls.append(1)  # a second call must read the cache, not encode
    again = load_or_encode_data(pipe, folders["wan2.1-i2v"][1], config, tmp_path)
    assert calls == [] and torch.equal(again.latents, data.latents)


@pytest.mark.parametrize("track_conditioning", ["videoai", "wan-move"])
def test_training_condition_is_what_the_pipeline_feeds(tmp_path, folders, track_conditioning):
    """The transformer input the pipeline builds at inference (image, tracks, prompt) equals the trained one."""
    pipe = _load(folders, "wan2.1-i2v")
    config = _config("wan2.1-i2v", track_dropout=0.0, point_dropout=0.0, min_tracks=3, max_tracks=3)
    data = load_or_encode_data(pipe, folders["wan2.1-i2v"][1], config, tmp_path)
    dataset = TrajectoryFinetuneDataset(data, pipe.layout, config, track_conditioning, pipe.config.track_sigma,
                                        pipe.config.track_strength, pipe.config.mark_tracks_in_mask)
    item, tracks = dataset[0], dataset.tracks_of(0)
    assert tracks.num_tracks == 3
    seen = {}
    pipe.transformer.register_forward_pre_hook(lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True)
    frame = read_video(folders["wan2.1-i2v"][1] / "clip_00000.mp4", size=(32, 32)).frames[0]
    pipe(frame, tracks=tracks, prompt=CAPTION, num_frames=5, num_inference_steps=1, guidance_scale=1.0,
         output_type="latent", track_conditioning=track_conditioning, max_sequence_length=8)
    z_dim = pipe.vae.config.z_dim
    torch.testing.assert_close(seen["hidden_states"][0, z_dim:], item["condition"], rtol=0, atol=1e-5)
    torch.testing.assert_close(seen["encoder_hidden_states"][0], item["text_embeds"])
    torch.testing.assert_close(seen["encoder_hidden_states_image"], item["image_embeds"])
    assert not torch.equal(item["condition"], torch.cat([data.masks[0], data.condition_latents[0]]))  # tracks edit


def test_resume_is_exact_and_checkpoints_hold_only_lora(tmp_path, folders):
    straight, result, _ = _train(folders, "wan2.1-i2v", tmp_path / "a", 6)
    _train(folders, "wan2.1-i2v", tmp_path / "b", 3, checkpoint_every=3)
    saved = load_file(find_latest_checkpoint(tmp_path / "b") / "model.safetensors")
    assert saved and all("lora" in key for key in saved)
    resumed, resumed_result, _ = _train(folders, "wan2.1-i2v", tmp_path / "b", 6, resume_from="latest")
    assert resumed_result.losses == pytest.approx(result.losses, rel=1e-5)
    expected, got = _lora_state(straight), _lora_state(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def _generate(pipe, frame_size):
    image = torch.randint(0, 256, (frame_size, frame_size, 3), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    return pipe(image, tracks=[[(4, 4), (28, 20)]], prompt=CAPTION, num_frames=5, num_inference_steps=2,
                output_type="latent", max_sequence_length=8, generator=torch.Generator().manual_seed(0)).frames


@pytest.mark.parametrize("layout", ["wan2.1-i2v", "wan2.2-i2v-a14b"])
def test_saved_lora_reloads_and_changes_the_output(tmp_path, folders, layout):
    trained, _, _ = _train(folders, layout, tmp_path / "run", 4, _config(layout, learning_rate=5e-2))
    files = save_lora(trained, tmp_path / "lora")
    experts = 2 if layout == "wan2.2-i2v-a14b" else 1
    assert [f.name for f in files] == list(EXPERT_LORA_NAMES[:experts])
    expected = _generate(trained, SIZES[layout])
    fresh = _load(folders, layout)
    base = _generate(fresh, SIZES[layout])
    if experts == 1:
        fresh.load_lora_weights(tmp_path / "lora")  # diffusers' own loader reads it
    else:
        load_lora(fresh, tmp_path / "lora")  # the second file goes in with load_into_transformer_2
    got = _generate(fresh, SIZES[layout])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert (got - base).abs().max() > 1e-2


def test_one_expert_of_two_trains_on_its_timesteps(tmp_path, folders):
    pipe, result, _ = _train(folders, "wan2.2-i2v-a14b", tmp_path, 2, _config("wan2.2-i2v-a14b", experts=(1,)))
    assert not getattr(pipe.transformer, "peft_config", None) and pipe.transformer_2.peft_config
    assert len(result.losses) == 2
    with pytest.raises(ValueError, match="experts"):
        _train(folders, "wan2.1-i2v", tmp_path / "b", 1, _config("wan2.1-i2v", experts=(1,)))


def test_ti2v_trains(tmp_path, folders):
    pipe, result, _ = _train(folders, "wan2.2-ti2v-5b", tmp_path, 2)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert pipe.transformer.blocks[0].attn1.to_q.lora_B["default"].weight.abs().sum() > 0


def test_two_processes_match_one(tmp_path, folders):
    """`accelerate launch` with 2 CPU processes (gloo), batch 1 each, gives the LoRA of one process at batch 2."""
    model, clips = folders["wan2.1-i2v"]
    args = ["--model", model, "--clips", clips, "--out", tmp_path / "two", "--steps", "3", "--rank", "4",
            "--lr", "1e-2", "--batch-size", "1", "--prompt", "a monkey dance", "--frames", "5", "--height", "32",
            "--width", "32", "--fps", "8", "--track-grid", "4", "--max-sequence-length", "8"]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(EXAMPLE)]
    done = subprocess.run(command + list(map(str, args)), env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "trained 3 steps" in done.stdout

    one, _, _ = _train(folders, "wan2.1-i2v", tmp_path / "one", 3)
    save_lora(one, tmp_path / "one_lora")
    expected = load_file(tmp_path / "one_lora" / EXPERT_LORA_NAMES[0])
    got = load_file(tmp_path / "two" / EXPERT_LORA_NAMES[0])
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6)


def test_bad_input(tmp_path, folders):
    with pytest.raises(ValueError, match="mode must be 'lora'"):
        FinetuneConfig(mode="full")
    with pytest.raises(ValueError, match="experts"):
        FinetuneConfig(experts=(0, 2))
    with pytest.raises(ValueError, match="track_conditioning"):
        FinetuneConfig(track_conditioning="flow")
    pipe = _load(folders, "wan2.1-i2v")
    train_config = TrainConfig(tmp_path, max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match=r"clips\[0\] must be uint8"):
        finetune_lora(pipe, [torch.zeros(5, 16, 16, 3, dtype=torch.uint8)], _config("wan2.1-i2v"), train_config)
    with pytest.raises(ValueError, match="no .mp4 files"):
        finetune_lora(pipe, tmp_path, _config("wan2.1-i2v"), train_config)
    with pytest.raises(ValueError, match="has 8 frames at fps=8.0"):
        finetune_lora(pipe, folders["wan2.1-i2v"][1], _config("wan2.1-i2v", num_frames=9), train_config)
    with pytest.raises(TypeError, match="FinetuneConfig"):
        finetune_lora(pipe, tmp_path, GeneratorTrainConfig(mode="lora"), train_config)


def test_bf16_weights_with_bf16_autocast_train_fp32_lora(tmp_path, folders):
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(folders["wan2.1-i2v"][0], dtype=torch.bfloat16)
    train_config = TrainConfig(tmp_path, max_steps=2, mixed_precision="bf16", progress_bar=False)
    result, trainer = finetune_lora(pipe, folders["wan2.1-i2v"][1], _config("wan2.1-i2v"), train_config)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert {p.dtype for p in trainer.unwrapped_model.parameters() if p.requires_grad} == {torch.float32}
    assert pipe.transformer.blocks[0].attn1.to_q.base_layer.weight.dtype == torch.bfloat16
