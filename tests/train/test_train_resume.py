"""Exact resume: N steps straight == N/2 steps + checkpoint + resume + N/2 steps, bit for bit."""

import shutil

import pytest
import torch
from tiny_training import make_dataset, make_model, mse_loss

from videoai.train import TrainConfig, Trainer, read_log
from videoai.train.checkpoint import temp_checkpoint_dir, write_trainer_state

MAX_STEPS = 8


def _trainer(output_dir, max_steps, accumulation, **overrides):
    # Dropout + a shuffled loader + AdamW + a warmup schedule + EMA: every piece of state matters for the result.
    model = make_model(dropout=0.3, seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 3))
    # 20 samples / batch 4 = 5 batches an epoch, so the checkpoint lands mid-epoch and the run crosses epochs
    loader = torch.utils.data.DataLoader(make_dataset(20), batch_size=4, shuffle=True)
    config = TrainConfig(
        output_dir,
        max_steps=max_steps,
        gradient_accumulation_steps=accumulation,
        ema_decay=0.9,
        log_every=3,
        seed=7,
        progress_bar=False,
        **overrides,
    )
    return Trainer(model, optimizer, loader, mse_loss, config, lr_scheduler=scheduler)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_resume_is_bit_identical(tmp_path, accumulation):
    straight = _trainer(tmp_path / "straight", MAX_STEPS, accumulation)
    straight_result = straight.train()

    first_half = _trainer(tmp_path / "split", MAX_STEPS // 2, accumulation, checkpoint_every=MAX_STEPS // 2)
    first_half.train()
    # a save that crashed before its rename must not be picked up by resume_from="latest"
    crashed = temp_checkpoint_dir(tmp_path / "split", MAX_STEPS - 1)
    crashed.mkdir()
    write_trainer_state(crashed, {"step": MAX_STEPS - 1})
    torch.manual_seed(12345)  # a different RNG state before resuming: the checkpoint must restore it
    resumed = _trainer(tmp_path / "split", MAX_STEPS, accumulation, resume_from="latest")
    assert resumed.step == MAX_STEPS // 2
    resumed_result = resumed.train()

    assert resumed_result.step == straight_result.step == MAX_STEPS
    assert resumed_result.losses == straight_result.losses and len(straight_result.losses) == MAX_STEPS
    resumed_weights = resumed.unwrapped_model.state_dict()
    for name, value in straight.unwrapped_model.state_dict().items():
        assert torch.equal(value, resumed_weights[name]), name
    for a, b in zip(straight.ema_model.shadow_params, resumed.ema_model.shadow_params):
        assert torch.equal(a, b)
    assert straight.ema_model.optimization_step == resumed.ema_model.optimization_step == MAX_STEPS
    state_a, state_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for key in state_a:
        assert torch.equal(state_a[key]["exp_avg_sq"], state_b[key]["exp_avg_sq"])
    assert straight.lr_scheduler.get_last_lr() == resumed.lr_scheduler.get_last_lr()
    assert (straight.epoch, straight.batch_in_epoch) == (resumed.epoch, resumed.batch_in_epoch)


def test_resume_drops_log_records_written_after_the_checkpoint(tmp_path):
    _trainer(tmp_path, 6, 1, checkpoint_every=2).train()  # logs at steps 3 and 6
    for step in (4, 6):  # as if the run had crashed right after step 6, before its checkpoint
        shutil.rmtree(tmp_path / "checkpoints" / f"step_{step:07d}")
    resumed = _trainer(tmp_path, 6, 1, resume_from="latest")
    assert resumed.step == 2 and [r["step"] for r in read_log(tmp_path)] == []
    resumed.train()
    assert [r["step"] for r in read_log(tmp_path)] == [3, 6]


def test_training_rng_stream_matters(tmp_path):
    """Guard for the test above: the same setup with another RNG state gives other losses (dropout draws)."""
    a = _trainer(tmp_path / "a", 2, 1)
    a.train()
    b = _trainer(tmp_path / "b", 2, 1)
    torch.manual_seed(99)
    b.train()
    assert a.losses != b.losses
