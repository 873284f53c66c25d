"""Interaction logs -> chronological user sequences -> leave-last-out split -> padded semantic-ID batches."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler


class InteractionLogError(ValueError):
    """A log file that cannot be parsed; the message names the file, the line and what was wrong."""


@dataclass
class UserSequences:
    """Chronological item sequences per user (external ids); labels (same shape) when the log had feedback."""

    users: list
    sequences: list[list]
    labels: list[list[float]] | None = None

    def __len__(self) -> int:
        return len(self.users)

    @property
    def items(self) -> list:
        """Distinct items in order of first appearance."""
        return list(dict.fromkeys(item for seq in self.sequences for item in seq))


def _parse_id(token: str):
    """Integer ids stay ints (ICLRec/Amazon files), anything else stays a string."""
    return int(token) if token.lstrip("-").isdigit() else token


def read_user_sequences(path: str | os.PathLike) -> UserSequences:
    """Read the ICLRec format: one line per user, `user item item ...`, items already in chronological order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_user_sequences: no such file {str(path)!r}")
    users, sequences = [], []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                raise InteractionLogError(f"{path}:{number}: expected 'user item [item ...]', got {line.strip()!r}")
            users.append(_parse_id(tokens[0]))
            sequences.append([_parse_id(t) for t in tokens[1:]])
    if not users:
        raise InteractionLogError(f"{path}: no user lines found (expected 'user item item ...' per line)")
    return UserSequences(users, sequences)


def read_interactions(path: str | os.PathLike, delimiter: str | None = None,
                      min_label: float | None = None) -> UserSequences:
    """Read a log with rows `user, item, timestamp[, label]` (CSV/TSV, optional header) into sorted sequences.

    Rows are sorted by timestamp per user (stable, so ties keep file order). min_label keeps only rows with
    label >= min_label (e.g. 1 for positive feedback); labels are kept in `UserSequences.labels`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_interactions: no such file {str(path)!r}")
    with path.open(newline="") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        if delimiter is None:
            delimiter = "\t" if "\t" in sample else ","
        rows = list(csv.reader(handle, delimiter=delimiter))
    rows = [(n, r) for n, r in enumerate(rows, 1) if any(c.strip() for c in r)]
    if rows and rows[0][1][0].strip().lower() in ("user", "user_id", "userid"):
        rows = rows[1:]  # header
    if not rows:
        raise InteractionLogError(f"{path}: no interaction rows (expected 'user,item,timestamp[,label]')")
    per_user: dict = {}
    width = len(rows[0][1])
    for number, row in rows:
        if len(row) not in (3, 4) or len(row) != width:
            raise InteractionLogError(f"{path}:{number}: expected {width if width in (3, 4) else '3 or 4'} columns "
                                      f"(user, item, timestamp[, label]), got {len(row)}: {row!r}")
        try:
            timestamp = float(row[2])
            label = float(row[3]) if len(row) == 4 else 1.0
        except ValueError:
            raise InteractionLogError(
                f"{path}:{number}: timestamp and label must be numbers, got {row[2:]!r}") from None
        if not math.isfinite(timestamp):
            raise InteractionLogError(f"{path}:{number}: timestamp must be finite, got {row[2]!r}")
        if min_label is not None and label < min_label:
            continue
        per_user.setdefault(_parse_id(row[0].strip()), []).append((timestamp, _parse_id(row[1].strip()), label))
    users, sequences, labels = [], [], []
    for user, events in per_user.items():
        events.sort(key=lambda e: e[0])
        users.append(user)
        sequences.append([e[1] for e in events])
        labels.append([e[2] for e in events])
    return UserSequences(users, sequences, labels if width == 4 else None)


@dataclass
class LeaveLastOutSplit:
    """Per-user split: train = items[:-2]; validation predicts items[-2] from items[:-2]; test items[-1] from [:-1].

    Users with fewer than 3 items only contribute to training (there is nothing to hold out).
    """

    train: list[list]
    valid_history: list[list] = field(default_factory=list)
    valid_target: list = field(default_factory=list)
    test_history: list[list] = field(default_factory=list)
    test_target: list = field(default_factory=list)
    eval_users: list = field(default_factory=list)


def leave_last_out(data: UserSequences) -> LeaveLastOutSplit:
    """Chronological leave-last-out split (last item test, second-to-last validation)."""
    if not isinstance(data, UserSequences):
        raise TypeError(f"data must be a UserSequences, got {type(data).__name__}")
    split = LeaveLastOutSplit(train=[])
    for user, seq in zip(data.users, data.sequences):
        if len(seq) < 3:
            split.train.append(list(seq))
            continue
        split.train.append(seq[:-2])
        split.valid_history.append(seq[:-2])
        split.valid_target.append(seq[-2])
        split.test_history.append(seq[:-1])
        split.test_target.append(seq[-1])
        split.eval_users.append(user)
    return split


class SequenceDataset(Dataset):
    """Training sequences of item indices; item i is the user's last `max_length + 1` items (history + next)."""

    def __init__(self, sequences: list[torch.Tensor], max_length: int):
        self.sequences = [torch.as_tensor(s, dtype=torch.long)[-(max_length + 1):] for s in sequences if len(s) >= 2]
        if not self.sequences:
            raise ValueError("SequenceDataset needs at least one sequence with >= 2 items, got none")

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.sequences[index]


def pad_left(sequences: list[torch.Tensor], length: int | None = None, value: int = -1) -> torch.Tensor:
    """Left-pad 1-D tensors to (B, length) (default: the longest), keeping each sequence's most recent items."""
    length = length or max(len(s) for s in sequences)
    out = torch.full((len(sequences), length), value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        seq = seq[-length:]
        if len(seq):
            out[row, length - len(seq):] = seq
    return out


class NextItemCollator:
    """Batches training sequences: history (B, T) and, at every position t, the next M items (B, T, M).

    With item_codes (N, L) it also adds semantic-ID tensors for OneRecModel. -1 marks padding in item tensors.
    """

    def __init__(self, item_codes: torch.Tensor | None = None, session_length: int = 1):
        self.item_codes, self.session_length = item_codes, session_length

    def __call__(self, sequences: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        padded = pad_left(sequences)  # (B, T+1)
        history = padded[:, :-1]  # (B, T)
        tail = torch.full((padded.shape[0], self.session_length - 1), -1, dtype=torch.long)
        following = torch.cat([padded[:, 1:], tail], 1)  # (B, T+M-1)
        targets = following.unfold(1, self.session_length, 1)  # (B, T, M)
        targets = targets.masked_fill((history < 0)[..., None], -1)  # no target from a padded position
        batch = {"history_items": history, "target_items": targets}
        if self.item_codes is not None:
            batch.update(items_to_codes(history, self.item_codes, "history"))
            batch.update(items_to_codes(targets, self.item_codes, "target"))
        return batch


class EvalCollator:
    """Batches (history, target) pairs: history (B, T) left-padded to max_length, target (B,)."""

    def __init__(self, item_codes: torch.Tensor | None = None, max_length: int = 50):
        self.item_codes, self.max_length = item_codes, max_length

    def __call__(self, pairs: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
        history = pad_left([torch.as_tensor(h, dtype=torch.long)[-self.max_length:] for h, _ in pairs])
        batch = {"history_items": history, "target": torch.tensor([t for _, t in pairs], dtype=torch.long)}
        if self.item_codes is not None:
            batch.update(items_to_codes(history, self.item_codes, "history"))
        return batch


def items_to_codes(items: torch.Tensor, item_codes: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """items (...) with -1 padding -> {prefix_codes (..., L) (padding -> 0), prefix_mask (...)}."""
    mask = items >= 0
    codes = item_codes[items.clamp_min(0)].masked_fill(~mask[..., None], 0)
    return {f"{prefix}_codes": codes, f"{prefix}_mask": mask}


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length sequences (less padding); the order depends only on (seed, epoch).

    Indices are shuffled, cut into chunks of `group_batches` batches, each chunk is sorted by length and cut into
    batches, and the batches are shuffled again: the same batches-per-epoch and sampling as random batching, with
    padding close to the minimum. `epoch` advances on each iteration (or set it with `set_epoch`).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, group_batches: int = 50,
                 drop_last: bool = False):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.seed, self.group_batches, self.drop_last = batch_size, seed, group_batches, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        count = len(self.lengths)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=generator)
        chunk = self.batch_size * self.group_batches
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start:start + chunk]
            part = part[torch.argsort(self.lengths[part], descending=True, stable=True)]
            batches += list(part.split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()  # only the very last batch can be short: chunks are whole batches
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[index].tolist()
