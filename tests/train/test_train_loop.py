"""The loop itself: learning, logging, evaluation, accumulation, clipping, EMA, mixed precision, bad inputs."""

import math

import pytest
import torch
from safetensors.torch import load_file
from tiny_training import make_dataset, make_model, mse_loss

from videoai.train import TrainConfig, Trainer, read_log


def _trainer(output_dir, *, lr=0.05, batch_size=4, loss_fn=mse_loss, eval_fn=None, model=None, **overrides):
    model = make_model() if model is None else model
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(make_dataset(32), batch_size=batch_size, shuffle=True)
    overrides = {"max_steps": 8, "progress_bar": False, **overrides}
    return Trainer(model, optimizer, loader, loss_fn, TrainConfig(output_dir, **overrides), eval_fn=eval_fn)


def test_learns_and_reports(tmp_path):
    eval_calls = []

    def eval_fn(model):
        eval_calls.append(model.training)
        x, y = make_dataset(32)[:]
        return {"mse": torch.nn.functional.mse_loss(model(x), y)}

    trainer = _trainer(tmp_path, lr=0.1, max_grad_norm=10.0, max_steps=40, log_every=10, eval_every=20, eval_fn=eval_fn)
    result = trainer.train()
    assert result.step == 40 and len(result.losses) == 40 and result.loss == result.losses[-1]
    assert sum(result.losses[-5:]) < 0.25 * sum(result.losses[:5])
    assert result.steps_per_second > 0 and result.samples_per_second == pytest.approx(4 * result.steps_per_second)
    assert result.wall_time > 0 and eval_calls == [False, False] and trainer.model.training
    assert result.eval_metrics["mse"] < result.losses[0]

    records = read_log(tmp_path)
    train_records = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_records] == [10, 20, 30, 40]
    assert train_records[-1]["loss"] == pytest.approx(sum(result.losses[30:]) / 10)
    for key in ("epoch", "lr", "grad_norm", "prediction_mean", "steps_per_second", "samples_per_second"):
        assert math.isfinite(train_records[-1][key])
    eval_records = [r for r in records if "eval/mse" in r]
    assert [r["step"] for r in eval_records] == [20, 40]
    assert eval_records[-1]["eval/mse"] == result.eval_metrics["mse"]


def test_accumulation_matches_a_bigger_batch(tmp_path):
    # 2 micro-batches of 4 == 1 batch of 8 from the same shuffled order (plain SGD, no dropout)
    accumulated = _trainer(tmp_path / "a", batch_size=4, gradient_accumulation_steps=2, max_steps=6)
    big_batch = _trainer(tmp_path / "b", batch_size=8, max_steps=6)
    accumulated.train()
    big_batch.train()
    for a, b in zip(accumulated.unwrapped_model.parameters(), big_batch.unwrapped_model.parameters()):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(torch.tensor(accumulated.losses), torch.tensor(big_batch.losses))


def test_clipping_bounds_the_update(tmp_path):
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    _trainer(tmp_path, model=model, lr=1.0, max_grad_norm=1e-3, max_steps=1).train()
    update = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert update.norm().item() == pytest.approx(1e-3, rel=1e-4)


def test_ema_follows_diffusers_schedule(tmp_path):
    decay = 0.5
    seen = []  # parameters at the start of each step == parameters after the previous step

    def recording_loss(model, batch):
        seen.append([p.detach().clone() for p in model.parameters()])
        return mse_loss(model, batch)

    model = make_model()
    model[0].bias.requires_grad_(False)  # frozen: no EMA copy
    trainer = _trainer(tmp_path, model=model, loss_fn=recording_loss, ema_decay=decay, max_steps=5, checkpoint_every=5)
    trainer.train()
    after_step = seen[1:] + [[p.detach().clone() for p in model.parameters()]]
    expected = after_step[0]  # the first update uses decay 0
    for k in range(2, 6):  # diffusers' EMAModel: decay = min((1 + s) / (10 + s), max decay) with s = step - 1
        d = min(k / (9 + k), decay)
        expected = [d * e + (1 - d) * p for e, p in zip(expected, after_step[k - 1])]
    names = [name for name, _ in model.named_parameters()]
    ema = trainer.ema_state_dict()
    assert sorted(ema) == sorted(set(names) - {"0.bias"})
    for name, value in zip(names, expected):
        if name in ema:
            torch.testing.assert_close(ema[name], value)
    saved = load_file(tmp_path / "checkpoints" / "step_0000005" / "ema_model.safetensors")
    assert model.load_state_dict(saved, strict=False).missing_keys == ["0.bias"]
    torch.testing.assert_close(model[3].weight, ema["3.weight"])


def test_bf16_then_fp32_in_one_process(tmp_path):
    trainer = _trainer(tmp_path / "bf16", mixed_precision="bf16", max_steps=3)
    result = trainer.train()
    assert all(math.isfinite(loss) for loss in result.losses)
    assert all(p.dtype == torch.float32 for p in trainer.unwrapped_model.parameters())
    assert _trainer(tmp_path / "fp32", max_steps=2).train().step == 2  # a new Trainer may change precision


def test_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="scalar tensor"):
        _trainer(tmp_path, loss_fn=lambda model, batch: model(batch[0])).train()
    with pytest.raises(ValueError, match="eval_every.*eval_fn"):
        _trainer(tmp_path, eval_every=2)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        Trainer(make_model(), torch.optim.SGD(make_model().parameters(), lr=0.1), None, mse_loss, {"max_steps": 1})
    empty = torch.utils.data.DataLoader(make_dataset(2), batch_size=4, drop_last=True)
    with pytest.raises(ValueError, match="at least one batch"):
        model = make_model()
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), empty, mse_loss, TrainConfig(tmp_path, max_steps=1))
