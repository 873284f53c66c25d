"""Training metrics: one JSON line per record in `output_dir/train_log.jsonl`, one readable line to the logger."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

logger = logging.getLogger("videoai.train")

LOG_FILE_NAME = "train_log.jsonl"


def format_record(record: dict) -> str:
    """`step 20 | loss 0.1234 | samples_per_second 512.0 | ...` for humans."""
    parts = []
    for key, value in record.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " | ".join(parts)


class MetricsLogger:
    """Append records to a JSONL file and the `videoai.train` logger (main process only when `enabled`)."""

    def __init__(self, output_dir: str | Path, enabled: bool = True):
        self.path = Path(output_dir) / LOG_FILE_NAME
        self.enabled = enabled

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:  # reopen each time: logs are rare and this survives crashes
            f.write(json.dumps(record) + "\n")
        logger.info(format_record(record))

    def drop_after(self, step: int) -> None:
        """Forget records past `step` (written before a crash, about to be redone by a resumed run)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [record for record in read_log(self.path.parent) if record.get("step", 0) <= step]
        temp = self.path.with_name(self.path.name + ".tmp")
        with open(temp, "w") as f:
            f.writelines(json.dumps(record) + "\n" for record in kept)
        os.replace(temp, self.path)


def read_log(output_dir: str | Path) -> list[dict]:
    """All records written so far to `output_dir/train_log.jsonl`."""
    path = Path(output_dir) / LOG_FILE_NAME
    if not path.is_file():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
