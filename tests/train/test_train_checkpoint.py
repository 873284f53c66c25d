"""Checkpoint folders: atomic publish, latest complete checkpoint, leftover temp folders ignored, pruning."""

import pytest
import torch
from safetensors.torch import load_file
from tiny_training import make_dataset, make_model, mse_loss

from videoai.train import TrainConfig, Trainer, find_latest_checkpoint, list_checkpoints
from videoai.train.checkpoint import (
    prune_checkpoints,
    publish_checkpoint,
    read_trainer_state,
    temp_checkpoint_dir,
    write_trainer_state,
)


def _fake_checkpoint(output_dir, step, complete=True):
    folder = output_dir / "checkpoints" / f"step_{step:07d}"
    folder.mkdir(parents=True)
    if complete:
        write_trainer_state(folder, {"step": step})
    return folder


def test_latest_ignores_temp_and_incomplete_folders(tmp_path):
    assert find_latest_checkpoint(tmp_path) is None
    _fake_checkpoint(tmp_path, 3)
    _fake_checkpoint(tmp_path, 20)
    _fake_checkpoint(tmp_path, 100, complete=False)  # no trainer_state.json
    crashed = temp_checkpoint_dir(tmp_path, 500)  # a save that crashed before its rename
    crashed.mkdir()
    write_trainer_state(crashed, {"step": 500})
    assert find_latest_checkpoint(tmp_path).name == "step_0000020"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000003", "step_0000020"]  # numeric order


def test_publish_replaces_existing_and_prune_keeps_newest(tmp_path):
    old = _fake_checkpoint(tmp_path, 4)
    temp = temp_checkpoint_dir(tmp_path, 4)
    temp.mkdir()
    write_trainer_state(temp, {"step": 4, "new": True})
    publish_checkpoint(temp, old)
    assert read_trainer_state(old)["new"] and not temp.exists()
    for step in (8, 12):
        _fake_checkpoint(tmp_path, step)
    assert [p.name for p in prune_checkpoints(tmp_path, keep_last=2)] == ["step_0000004"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000008", "step_0000012"]


def test_read_trainer_state_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_trainer_state(tmp_path / "nope")
    with pytest.raises(ValueError, match="incomplete"):
        read_trainer_state(_fake_checkpoint(tmp_path, 1, complete=False))


def _trainer(output_dir, **overrides):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = torch.utils.data.DataLoader(make_dataset(), batch_size=4, shuffle=True)
    config = TrainConfig(output_dir, max_steps=8, log_every=4, progress_bar=False, **overrides)
    return Trainer(model, optimizer, loader, mse_loss, config)


def test_training_keeps_last_checkpoints_with_safetensors_weights(tmp_path):
    trainer = _trainer(tmp_path, checkpoint_every=2, keep_last_checkpoints=2)
    trainer.train()
    checkpoints = list_checkpoints(tmp_path)
    assert [p.name for p in checkpoints] == ["step_0000006", "step_0000008"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000006", "step_0000008"]
    weights = load_file(checkpoints[-1] / "model.safetensors")
    for name, value in trainer.unwrapped_model.state_dict().items():
        assert torch.equal(weights[name], value)
    state = read_trainer_state(checkpoints[-1])
    assert state["step"] == 8 and len(state["losses"]) == 8


def test_explicit_save_and_load_errors(tmp_path):
    trainer = _trainer(tmp_path)
    path = trainer.save_checkpoint()
    assert path == tmp_path / "checkpoints" / "step_0000000" and find_latest_checkpoint(tmp_path) == path
    with pytest.raises(ValueError, match="does not exist"):
        trainer.load_checkpoint(tmp_path / "checkpoints" / "step_0000099")


def test_resume_latest_without_checkpoint_starts_fresh(tmp_path):
    trainer = _trainer(tmp_path, resume_from="latest")
    assert trainer.step == 0
    assert trainer.train().step == 8


def test_resume_from_explicit_path(tmp_path):
    _trainer(tmp_path, checkpoint_every=4).train()
    resumed = _trainer(tmp_path, resume_from=tmp_path / "checkpoints" / "step_0000004")
    assert resumed.step == 4 and len(resumed.losses) == 4
    incomplete = _fake_checkpoint(tmp_path, 50, complete=False)
    with pytest.raises(ValueError, match="incomplete"):
        _trainer(tmp_path, resume_from=incomplete)
