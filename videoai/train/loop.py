"""The shared training loop: a plain loop on accelerate with accumulation, clipping, EMA, logging, eval and resume."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, find_batch_size, set_seed
from tqdm.auto import tqdm

from .checkpoint import (
    checkpoint_name,
    find_latest_checkpoint,
    load_ema,
    prune_checkpoints,
    publish_checkpoint,
    read_trainer_state,
    save_ema,
    temp_checkpoint_dir,
    write_trainer_state,
)
from .config import TrainConfig
from .metrics import MetricsLogger, logger

LossFn = Callable[[torch.nn.Module, object], "torch.Tensor | tuple[torch.Tensor, dict]"]


@dataclass
class TrainResult:
    """What `Trainer.train()` returns."""

    step: int  # optimizer steps done in total, counting those before a resume
    loss: float  # loss of the last step (nan if no step was ever taken)
    losses: list[float]  # loss of every step from step 1, averaged over accumulation and processes
    wall_time: float  # seconds this call to train() took
    steps_per_second: float  # this call, not counting evaluation and checkpointing time
    samples_per_second: float  # global samples (all processes), same time window
    eval_metrics: dict[str, float] = field(default_factory=dict)  # the last eval_fn result


def _make_accelerator(config: TrainConfig) -> Accelerator:
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != config.mixed_precision:
        # accelerate keeps one process-wide state and refuses a second precision; a new Trainer may ask for one
        # (tests, notebooks), so drop that state but keep the process group (PartialState).
        AcceleratorState._reset_state(reset_partial_state=False)
    # accelerate only forms a CPU process group (gloo) when asked for cpu; do so for a torchrun launch on a machine
    # without an accelerator instead of silently running N independent trainings.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cpu_only = world_size > 1 and not torch.accelerator.is_available()
    return Accelerator(
        cpu=cpu_only,
        mixed_precision=config.mixed_precision,
        # The scheduler steps once per optimizer step on every process (accelerate's default would step it
        # num_processes times), so a schedule means the same thing on 1 or N processes.
        step_scheduler_with_optimizer=False,
        # The shuffle order is a function of (seed, epoch) only, the same on all processes and after a resume.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )


class Trainer:
    """Train `model` on `train_dataloader` by minimising `loss_fn(model, batch)`; see `TrainConfig`.

    `loss_fn` returns a scalar loss or `(loss, {name: float or scalar tensor})` of extra values to log.
    `eval_fn(model) -> dict` runs on every process under `torch.no_grad()` with the unwrapped model in eval mode;
    the main process's dict is logged. For an exact resume the dataset must be map-style and not draw from the
    global RNG in `__getitem__` (seed per index instead).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        train_dataloader: torch.utils.data.DataLoader,
        loss_fn: LossFn,
        config: TrainConfig,
        lr_scheduler=None,
        eval_fn: Callable[[torch.nn.Module], dict] | None = None,
    ):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if not isinstance(train_dataloader, torch.utils.data.DataLoader):
            raise TypeError(f"train_dataloader must be a torch DataLoader, got {type(train_dataloader).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(model, batch), got {type(loss_fn).__name__}")
        if eval_fn is not None and not callable(eval_fn):
            raise TypeError(f"eval_fn must be callable as eval_fn(model) -> dict or None, got {type(eval_fn).__name__}")
        if config.eval_every is not None and eval_fn is None:
            raise ValueError(f"TrainConfig.eval_every={config.eval_every} needs an eval_fn, got eval_fn=None")
        try:
            num_batches = len(train_dataloader)
        except TypeError:  # iterable dataset without a length
            num_batches = None
        if num_batches == 0:
            raise ValueError("train_dataloader must yield at least one batch, got an empty DataLoader")

        self.config = config
        self.loss_fn = loss_fn
        self.eval_fn = eval_fn
        self.accelerator = _make_accelerator(config)
        set_seed(config.seed)  # the training RNG stream (dropout, noise) starts from the seed
        schedulers = [lr_scheduler] if lr_scheduler is not None else []
        prepared = self.accelerator.prepare(model, optimizer, train_dataloader, *schedulers)
        self.model, self.optimizer, self.train_dataloader = prepared[:3]
        self.lr_scheduler = prepared[3] if schedulers else None

        self.ema_model = None
        if config.ema_decay is not None:
            from diffusers.training_utils import EMAModel  # imported here: diffusers is slow to import

            # Only trainable parameters: a frozen encoder inside the model needs no shadow copy.
            named = [(name, p) for name, p in self.unwrapped_model.named_parameters() if p.requires_grad]
            self._ema_names = [name for name, _ in named]
            self._ema_parameters = [p for _, p in named]
            self.ema_model = EMAModel(self._ema_parameters, decay=config.ema_decay, foreach=True)

        self.metrics = MetricsLogger(config.output_dir, enabled=self.accelerator.is_main_process)
        self.step = 0  # optimizer steps done
        self.epoch = 0  # data position: epoch and batches of it consumed (per process)
        self.batch_in_epoch = 0
        self.losses: list[float] = []
        self._losses_logged = 0  # len(self.losses) at the last log line
        self._pending_losses: list[torch.Tensor] = []  # per-step losses still on device (no host sync per step)
        self._pending_logs: dict[str, list[torch.Tensor]] = {}
        self._last_checkpoint_step = None
        self.eval_metrics: dict[str, float] = {}

        resume = config.resume_from
        if resume == "latest":
            resume = find_latest_checkpoint(config.output_dir)
            if resume is None:
                logger.info("resume_from='latest': no checkpoint in %s, starting from step 0", config.output_dir)
        if resume is not None:
            self.load_checkpoint(resume)

    @property
    def unwrapped_model(self) -> torch.nn.Module:
        """The model without accelerate/DDP wrappers (same parameters)."""
        return self.accelerator.unwrap_model(self.model)

    def ema_state_dict(self) -> dict[str, torch.Tensor]:
        """EMA weights of the trainable parameters by name; `model.load_state_dict(sd, strict=False)` applies them."""
        if self.ema_model is None:
            raise ValueError("Trainer.ema_state_dict needs TrainConfig.ema_decay, got ema_decay=None")
        return dict(zip(self._ema_names, self.ema_model.shadow_params))

    def train(self) -> TrainResult:
        """Run optimizer steps until `config.max_steps`; returns a `TrainResult`."""
        cfg, acc = self.config, self.accelerator
        accumulation = cfg.gradient_accumulation_steps
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        batches = self._batches()
        progress = tqdm(
            total=cfg.max_steps, initial=self.step, desc="train", disable=not (acc.is_main_process and cfg.progress_bar)
        )
        start_step, start_time = self.step, time.perf_counter()
        self._paused = 0.0  # seconds spent in eval and checkpointing, left out of throughput
        self._window_start = (self.step, start_time, 0.0)  # (step, time, paused) at the last log line
        self._window_samples = 0  # samples this process trained on since the last log line
        total_samples = 0

        while self.step < cfg.max_steps:
            step_loss = torch.zeros((), device=acc.device)
            for micro_step in range(accumulation):
                batch = next(batches)
                num_samples = self._num_samples(batch)
                total_samples += num_samples
                self._window_samples += num_samples
                is_last = micro_step == accumulation - 1
                # Gradients are all-reduced across processes only on the last micro-batch of a step.
                with contextlib.nullcontext() if is_last else acc.no_sync(self.model):
                    with acc.autocast():
                        loss, logs = self._compute_loss(batch)
                    acc.backward(loss / accumulation)
                step_loss += loss.detach().float() / accumulation
                for name, value in logs.items():
                    value = torch.as_tensor(value, device=acc.device).detach().float().reshape(())
                    self._pending_logs.setdefault(name, []).append(value)
            if cfg.max_grad_norm is not None:
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self._pending_logs.setdefault("grad_norm", []).append(torch.as_tensor(grad_norm).detach().float())
            self.optimizer.step()
            if self.lr_scheduler is not None and not acc.optimizer_step_was_skipped:
                self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema_model is not None:
                self.ema_model.step(self._ema_parameters)
            self.step += 1
            self._pending_losses.append(step_loss)
            progress.update(1)

            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                progress.set_postfix(loss=f"{self._log_train():.4g}", refresh=False)
            if cfg.eval_every is not None and self.step % cfg.eval_every == 0:
                self._paused_call(self.evaluate)
            if cfg.checkpoint_every is not None and self.step % cfg.checkpoint_every == 0:
                self._paused_call(self.save_checkpoint)

        progress.close()
        batches.close()
        if self.eval_fn is not None and (cfg.eval_every is None or self.step % cfg.eval_every != 0):
            self._paused_call(self.evaluate)
        if cfg.checkpoint_every is not None and self._last_checkpoint_step != self.step:
            self._paused_call(self.save_checkpoint)
        self._sync_pending()

        wall_time = time.perf_counter() - start_time
        train_time = max(wall_time - self._paused, 1e-9)
        return TrainResult(
            step=self.step,
            loss=self.losses[-1] if self.losses else math.nan,
            losses=list(self.losses),
            wall_time=wall_time,
            steps_per_second=(self.step - start_step) / train_time,
            samples_per_second=total_samples * acc.num_processes / train_time,
            eval_metrics=dict(self.eval_metrics),
        )

    def _batches(self):
        """Yield training batches forever, epoch after epoch, starting at the current data position."""
        while True:
            self.train_dataloader.set_epoch(self.epoch)  # shuffle order = f(seed, epoch)
            # accelerate skips dataset.set_epoch when its batch sampler is sharded (2+ processes): tell it here, so
            # datasets that draw per epoch (track sampling) do not repeat epoch 0 on every process.
            dataset = getattr(self.train_dataloader, "dataset", None)
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(self.epoch)
            loader = self.train_dataloader
            if self.batch_in_epoch > 0:
                loader = self.accelerator.skip_first_batches(loader, self.batch_in_epoch)
            iterator = iter(loader)
            # Starting an epoch draws a DataLoader seed from the global RNG. Keep that draw out of the training RNG
            # stream, so a resumed run (which starts mid-epoch) sees the same dropout/noise as an unbroken one.
            with torch.random.fork_rng(devices=[]):
                batch = next(iterator, None)
            while batch is not None:
                self.batch_in_epoch += 1
                yield batch
                batch = next(iterator, None)
            self.epoch += 1
            self.batch_in_epoch = 0

    def _compute_loss(self, batch) -> tuple[torch.Tensor, dict]:
        out = self.loss_fn(self.model, batch)
        loss, logs = out if isinstance(out, tuple) else (out, {})
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise TypeError(f"loss_fn must return a scalar tensor or (loss, dict), got loss {shape}")
        if not isinstance(logs, dict):
            raise TypeError(f"loss_fn's second output must be a dict of values to log, got {type(logs).__name__}")
        for name, value in logs.items():
            if not isinstance(value, (int, float)) and not (isinstance(value, torch.Tensor) and value.numel() == 1):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise TypeError(f"loss_fn's log value {name!r} must be a number or one-element tensor, got {shape}")
        return loss, logs

    @staticmethod
    def _num_samples(batch) -> int:
        try:
            return find_batch_size(batch)
        except (TypeError, ValueError):  # no tensor in the batch: throughput in samples is not known
            return 0

    def _paused_call(self, fn) -> None:
        start = time.perf_counter()
        fn()
        self._paused += time.perf_counter() - start

    def _sync_pending(self, include_logs: bool = True) -> dict[str, float]:
        """Move pending per-step losses (and log values) to the host in one sync, averaged over processes."""
        names = list(self._pending_logs) if include_logs else []
        parts = [torch.stack(self._pending_losses)] if self._pending_losses else []
        parts += [torch.stack(self._pending_logs[name]).mean().reshape(1) for name in names]
        if not parts:
            return {}
        values = self.accelerator.reduce(torch.cat(parts), reduction="mean").tolist()
        num_losses = len(self._pending_losses)
        self.losses.extend(values[:num_losses])
        self._pending_losses.clear()
        for name in names:
            del self._pending_logs[name]
        return dict(zip(names, values[num_losses:]))

    def _log_train(self) -> float:
        """Log mean loss, extra values, learning rate and throughput since the last log line; returns the loss."""
        logs = self._sync_pending()
        window_losses = self.losses[self._losses_logged :]
        self._losses_logged = len(self.losses)
        loss = sum(window_losses) / max(len(window_losses), 1)
        step0, time0, paused0 = self._window_start
        now = time.perf_counter()
        elapsed = max(now - time0 - (self._paused - paused0), 1e-9)
        record = {"step": self.step, "epoch": self.epoch, "loss": loss}
        record["lr"] = float(self.optimizer.param_groups[0]["lr"])
        record.update(logs)
        record["steps_per_second"] = (self.step - step0) / elapsed
        record["samples_per_second"] = self._window_samples * self.accelerator.num_processes / elapsed
        self._window_start, self._window_samples = (self.step, now, self._paused), 0
        self.metrics.log(record)
        return loss

    def evaluate(self) -> dict[str, float]:
        """Run `eval_fn` on the unwrapped model (no grad, eval mode, training RNG untouched) and log its dict."""
        if self.eval_fn is None:
            raise ValueError("Trainer.evaluate needs an eval_fn, got eval_fn=None")
        model = self.unwrapped_model
        was_training = model.training
        model.eval()
        device = self.accelerator.device
        devices = [device] if device.type != "cpu" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices, device_type=device.type):
            metrics = self.eval_fn(model)
        model.train(was_training)
        if not isinstance(metrics, dict):
            raise TypeError(f"eval_fn must return a dict of metrics, got {type(metrics).__name__}")
        self.eval_metrics = {name: float(value) for name, value in metrics.items()}
        self.metrics.log({"step": self.step, **{f"eval/{name}": v for name, v in self.eval_metrics.items()}})
        return self.eval_metrics

    def save_checkpoint(self) -> Path:
        """Atomically write `output_dir/checkpoints/step_XXXXXXX/` for an exact resume; call on every process."""
        acc = self.accelerator
        self._sync_pending(include_logs=False)  # the loss history goes into the checkpoint
        temp_dir = temp_checkpoint_dir(self.config.output_dir, self.step)
        final_dir = temp_dir.with_name(checkpoint_name(self.step))
        if acc.is_main_process:
            shutil.rmtree(temp_dir, ignore_errors=True)  # left by a crash during an earlier save
            temp_dir.mkdir(parents=True)
        acc.wait_for_everyone()
        # model.safetensors, optimizer, scheduler, grad scaler, and each process's RNG states
        acc.save_state(str(temp_dir), safe_serialization=True)
        if acc.is_main_process:
            if self.ema_model is not None:
                save_ema(self.ema_state_dict(), self.ema_model.optimization_step, temp_dir)
            config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.config).items()}
            state = {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}
            state.update(num_processes=acc.num_processes, losses=self.losses, config=config)
            write_trainer_state(temp_dir, state)
        acc.wait_for_everyone()
        if acc.is_main_process:
            publish_checkpoint(temp_dir, final_dir)
            if self.config.keep_last_checkpoints is not None:
                prune_checkpoints(self.config.output_dir, self.config.keep_last_checkpoints)
        acc.wait_for_everyone()
        self._last_checkpoint_step = self.step
        logger.info("saved checkpoint %s", final_dir)
        return final_dir

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, EMA, RNG states, step and data position from a checkpoint folder."""
        path = Path(path)
        state = read_trainer_state(path)  # ValueError if missing or incomplete
        if state["num_processes"] != self.accelerator.num_processes:
            logger.warning(
                "checkpoint %s was written by %d processes, resuming on %d: the data order will differ",
                path, state["num_processes"], self.accelerator.num_processes,
            )
        self.accelerator.load_state(str(path))
        if self.ema_model is not None:
            self.ema_model.optimization_step = load_ema(self.ema_state_dict(), path)
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.losses = list(state["losses"])
        self._losses_logged = len(self.losses)
        self._pending_losses.clear()
        self._pending_logs.clear()
        self._last_checkpoint_step = self.step
        self.metrics.drop_after(self.step)
        logger.info("resumed from %s at step %d", path, self.step)
