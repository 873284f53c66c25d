"""Training configuration: one dataclass, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MIXED_PRECISION_MODES = ("no", "bf16", "fp16")


def _check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"TrainConfig.{name} must be {expected}, got {value!r}")


@dataclass
class TrainConfig:
    """Settings for `Trainer`; steps count optimizer updates (each made of `gradient_accumulation_steps` batches)."""

    output_dir: str | Path
    max_steps: int
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0  # None disables clipping
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16"
    ema_decay: float | None = None  # None disables EMA; otherwise diffusers' EMAModel with this max decay
    log_every: int = 10
    eval_every: int | None = None  # eval_fn also runs once at the end of training when given
    checkpoint_every: int | None = None  # a final checkpoint is also written when set
    seed: int = 0  # seeds the training RNG (dropout, noise) and the shuffle order (a function of seed and epoch)
    resume_from: str | Path | None = None  # None | "latest" | path to a checkpoint folder
    keep_last_checkpoints: int | None = None  # None keeps all
    progress_bar: bool = True

    def __post_init__(self):
        if not isinstance(self.output_dir, (str, Path)) or str(self.output_dir) == "":
            raise ValueError(f"TrainConfig.output_dir must be a non-empty path, got {self.output_dir!r}")
        self.output_dir = Path(self.output_dir)
        _check_int("max_steps", self.max_steps, 1)
        _check_int("gradient_accumulation_steps", self.gradient_accumulation_steps, 1)
        _check_int("log_every", self.log_every, 1)
        _check_int("eval_every", self.eval_every, 1, allow_none=True)
        _check_int("checkpoint_every", self.checkpoint_every, 1, allow_none=True)
        _check_int("keep_last_checkpoints", self.keep_last_checkpoints, 1, allow_none=True)
        _check_int("seed", self.seed, 0)
        if self.max_grad_norm is not None and not (
            isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm > 0
        ):
            raise ValueError(f"TrainConfig.max_grad_norm must be a float > 0 or None, got {self.max_grad_norm!r}")
        if self.mixed_precision not in MIXED_PRECISION_MODES:
            raise ValueError(
                f"TrainConfig.mixed_precision must be one of {MIXED_PRECISION_MODES}, got {self.mixed_precision!r}"
            )
        if self.ema_decay is not None and not (isinstance(self.ema_decay, float) and 0.0 < self.ema_decay < 1.0):
            raise ValueError(f"TrainConfig.ema_decay must be a float in (0, 1) or None, got {self.ema_decay!r}")
        if self.resume_from is not None and self.resume_from != "latest":
            if not isinstance(self.resume_from, (str, Path)) or not Path(self.resume_from).is_dir():
                raise ValueError(
                    f"TrainConfig.resume_from must be None, 'latest' or an existing checkpoint folder, "
                    f"got {str(self.resume_from)!r} (no such folder)"
                )
