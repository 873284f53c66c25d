"""Shared training loop on accelerate: mixed precision, accumulation, clipping, EMA, logging, atomic checkpoints."""

from .checkpoint import find_latest_checkpoint, list_checkpoints
from .config import TrainConfig
from .loop import Trainer, TrainResult
from .metrics import read_log

__all__ = ["TrainConfig", "Trainer", "TrainResult", "find_latest_checkpoint", "list_checkpoints", "read_log"]
