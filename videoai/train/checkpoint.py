"""Checkpoint folders: atomic publish (temp folder + rename), finding the latest complete one, pruning."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

CHECKPOINTS_SUBDIR = "checkpoints"
TRAINER_STATE_NAME = "trainer_state.json"  # written last into the temp folder; marks a checkpoint as complete
EMA_WEIGHTS_NAME = "ema_model.safetensors"
_CHECKPOINT_RE = re.compile(r"^step_(\d{7,})$")  # temp (".tmp-...") and trash (".old-...") folders never match


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint taken after `step` optimizer steps."""
    return f"step_{step:07d}"


def temp_checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """Temp folder a checkpoint is written into before it is renamed into place (same filesystem)."""
    return Path(output_dir) / CHECKPOINTS_SUBDIR / f".tmp-{checkpoint_name(step)}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under `output_dir/checkpoints`, oldest first; leftover temp folders are ignored."""
    root = Path(output_dir) / CHECKPOINTS_SUBDIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.is_dir() and (path / TRAINER_STATE_NAME).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def find_latest_checkpoint(output_dir: str | Path) -> Path | None:
    """Newest complete checkpoint folder under `output_dir/checkpoints`, or None."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def _fsync_tree(folder: Path) -> None:
    # Flush file contents before the rename so a crash cannot publish a folder of empty files.
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def publish_checkpoint(temp_dir: str | Path, final_dir: str | Path) -> Path:
    """Atomically move a fully written `temp_dir` to `final_dir` (replacing an older folder of the same name)."""
    temp_dir, final_dir = Path(temp_dir), Path(final_dir)
    _fsync_tree(temp_dir)
    trash = None
    if final_dir.exists():  # os.replace cannot overwrite a non-empty folder: move the old one aside first
        trash = final_dir.with_name(f".old-{final_dir.name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final_dir, trash)
    os.replace(temp_dir, final_dir)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    return final_dir


def prune_checkpoints(output_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` complete checkpoints; returns the deleted folders."""
    doomed = list_checkpoints(output_dir)[:-keep_last]
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def write_trainer_state(folder: str | Path, state: dict) -> None:
    """Write the loop's own state (step, data position, loss history) as JSON."""
    with open(Path(folder) / TRAINER_STATE_NAME, "w") as f:
        json.dump(state, f)


def read_trainer_state(folder: str | Path) -> dict:
    """Read what `write_trainer_state` wrote; ValueError if `folder` is not a complete checkpoint."""
    if not Path(folder).is_dir():
        raise ValueError(f"checkpoint folder {str(folder)!r} does not exist")
    path = Path(folder) / TRAINER_STATE_NAME
    if not path.is_file():
        raise ValueError(f"checkpoint folder {str(folder)!r} is incomplete: no {TRAINER_STATE_NAME}")
    with open(path) as f:
        return json.load(f)


def save_ema(ema_state_dict: dict[str, torch.Tensor], optimization_step: int, folder: str | Path) -> None:
    """Save EMA weights as safetensors keyed by parameter name (loadable into the model), with the EMA step."""
    tensors = {name: p.detach().cpu().contiguous() for name, p in ema_state_dict.items()}
    metadata = {"optimization_step": str(optimization_step)}
    save_file(tensors, str(Path(folder) / EMA_WEIGHTS_NAME), metadata=metadata)


def load_ema(ema_state_dict: dict[str, torch.Tensor], folder: str | Path) -> int:
    """Copy what `save_ema` wrote into the tensors of `ema_state_dict` (in place); returns the EMA step."""
    path = Path(folder) / EMA_WEIGHTS_NAME
    if not path.is_file():
        raise ValueError(f"checkpoint {str(folder)!r} has no {EMA_WEIGHTS_NAME} (TrainConfig.ema_decay is set)")
    tensors = load_file(str(path))
    missing = sorted(set(ema_state_dict) - set(tensors))
    if missing:
        raise ValueError(f"{path} lacks EMA weights for parameters {missing[:5]}")
    with torch.no_grad():
        for name, shadow in ema_state_dict.items():
            shadow.copy_(tensors[name])
    with safe_open(str(path), framework="pt") as f:
        return int(f.metadata()["optimization_step"])
