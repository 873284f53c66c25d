"""TrainConfig validation: bad values raise ValueError naming the field."""

import pytest

from videoai.train import TrainConfig


@pytest.mark.parametrize("max_steps", [0, -3, 2.5, True])
def test_max_steps_must_be_positive_int(tmp_path, max_steps):
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig(tmp_path, max_steps=max_steps)


def test_unknown_mixed_precision(tmp_path):
    with pytest.raises(ValueError, match="mixed_precision.*'fp8'"):
        TrainConfig(tmp_path, max_steps=1, mixed_precision="fp8")


def test_resume_path_missing(tmp_path):
    with pytest.raises(ValueError, match="resume_from.*no such folder"):
        TrainConfig(tmp_path, max_steps=1, resume_from=tmp_path / "checkpoints" / "step_0000001")


@pytest.mark.parametrize(
    "field, value",
    [
        ("gradient_accumulation_steps", 0),
        ("max_grad_norm", 0.0),
        ("ema_decay", 1.0),
        ("log_every", 0),
        ("eval_every", 0),
        ("checkpoint_every", -1),
        ("keep_last_checkpoints", 0),
    ],
)
def test_other_bad_values(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(tmp_path, max_steps=1, **{field: value})


def test_defaults_and_latest_are_accepted(tmp_path):
    config = TrainConfig(str(tmp_path), max_steps=5, resume_from="latest", max_grad_norm=None, ema_decay=0.99)
    assert config.output_dir == tmp_path and config.mixed_precision == "no" and config.log_every == 10
