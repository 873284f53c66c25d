"""Reward model: predicted engagement of a generated session, learned from logged (or held-out future) interactions.

Engagement without explicit feedback: for a user whose log is cut at position c, an item is *engaged* if it is
among the user's next `horizon` interactions after c (held-out future), and not engaged if it is a random item the
user never interacts with. The reward model learns P(engaged | history, item) from every cut of every training
sequence; a session's reward is the mean engagement probability of its items. With explicit feedback (a label per
logged interaction, e.g. watch-time or like), `engagement_examples_from_labels` uses the labels instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from videoai.train import TrainConfig, Trainer, TrainResult

from .data import pad_left


@dataclass
class RewardModelConfig:
    num_items: int
    d_model: int = 64
    max_length: int = 50
    dropout: float = 0.1


class RewardModel(nn.Module):
    """P(engage | history, item): a GRU user state scored against item embeddings by a small MLP."""

    def __init__(self, config: RewardModelConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.item_embedding = nn.Embedding(config.num_items + 1, d, padding_idx=0)  # row 0 = padding
        self.gru = nn.GRU(d, d, batch_first=True)
        self.score = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(d, 1))
        self.drop = nn.Dropout(config.dropout)

    def user_state(self, history: torch.Tensor) -> torch.Tensor:
        """history (B, T) left-padded item indices (-1 = padding) -> (B, D)."""
        _, last = self.gru(self.drop(self.item_embedding(history[:, -self.config.max_length:] + 1)))
        return last[0]

    def forward(self, history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """history (B, T), items (B, R, M) item indices -> engagement logits (B, R, M)."""
        user = self.user_state(history)[:, None, None].expand(*items.shape, -1)  # (B, R, M, D)
        item = self.item_embedding(items.clamp_min(-1) + 1)  # (B, R, M, D)
        return self.score(torch.cat([user, item, user * item], -1)).squeeze(-1)

    @torch.no_grad()
    def session_reward(self, history: torch.Tensor, sessions: torch.Tensor) -> torch.Tensor:
        """Mean engagement probability of each session's items; sessions (B, R, M), -1 items count as 0 -> (B, R)."""
        prob = torch.sigmoid(self.forward(history, sessions)) * (sessions >= 0)
        return prob.mean(-1)


class EngagementDataset(Dataset):
    """(history, candidate items, labels) examples; item i has candidates (R,) and labels (R,) with -1 padding."""

    def __init__(self, histories: list[torch.Tensor], items: torch.Tensor, labels: torch.Tensor, max_length: int = 50):
        self.histories = [h[-max_length:] for h in histories]
        self.items, self.labels = items, labels

    def __len__(self) -> int:
        return len(self.histories)

    def __getitem__(self, index: int):
        return self.histories[index], self.items[index], self.labels[index]


def collate_engagement(examples) -> dict[str, torch.Tensor]:
    histories, items, labels = zip(*examples)
    return {"history_items": pad_left(list(histories)), "items": torch.stack(items), "labels": torch.stack(labels)}


def engagement_examples(sequences: list[torch.Tensor], num_items: int, horizon: int = 2, num_negatives: int = 4,
                        max_length: int = 50, seed: int = 0) -> EngagementDataset:
    """Examples from every cut of every sequence: the next `horizon` items are engaged, random items are not."""
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    generator = torch.Generator().manual_seed(seed)
    histories, positives = [], []
    for seq in sequences:
        seq = torch.as_tensor(seq, dtype=torch.long)
        for cut in range(1, len(seq)):
            histories.append(seq[max(0, cut - max_length):cut])
            future = seq[cut:cut + horizon]
            positives.append(F.pad(future, (0, horizon - len(future)), value=-1))
    if not histories:
        raise ValueError("engagement_examples needs sequences with >= 2 items, got none")
    positives = torch.stack(positives)  # (E, horizon)
    negatives = torch.randint(num_items, (len(histories), num_negatives), generator=generator)  # (E, negatives)
    items = torch.cat([positives, negatives], 1)
    labels = torch.cat([torch.ones(positives.shape), torch.zeros(negatives.shape)], 1)
    labels = labels.masked_fill(items < 0, -1.0)  # -1 = no example (future shorter than the horizon)
    return EngagementDataset(histories, items, labels, max_length)


def engagement_examples_from_labels(sequences: list[torch.Tensor], labels: list[list[float]],
                                    max_length: int = 50) -> EngagementDataset:
    """Examples from explicit feedback: history before each logged interaction, the item, its label in [0, 1]."""
    histories, items, targets = [], [], []
    for seq, seq_labels in zip(sequences, labels):
        seq = torch.as_tensor(seq, dtype=torch.long)
        for cut in range(1, len(seq)):
            histories.append(seq[max(0, cut - max_length):cut])
            items.append(seq[cut])
            targets.append(float(seq_labels[cut]))
    if not histories:
        raise ValueError("engagement_examples_from_labels needs sequences with >= 2 items, got none")
    items = torch.stack(items)[:, None]
    return EngagementDataset(histories, items, torch.tensor(targets).clamp(0, 1)[:, None], max_length)


def reward_loss(model: RewardModel, batch: dict) -> tuple[torch.Tensor, dict]:
    """Binary cross-entropy on engagement labels (entries labelled -1 are padding)."""
    logits = model(batch["history_items"], batch["items"][..., None]).squeeze(-1)  # (B, R)
    labels = batch["labels"]
    valid = labels >= 0
    loss = F.binary_cross_entropy_with_logits(logits, labels.clamp_min(0), weight=valid.float(), reduction="sum")
    loss = loss / valid.sum().clamp_min(1)
    accuracy = (((logits > 0).float() == labels) & valid).sum() / valid.sum().clamp_min(1)
    return loss, {"accuracy": accuracy.detach()}


def train_reward_model(model: RewardModel, dataset: EngagementDataset, config: TrainConfig, batch_size: int = 256,
                       learning_rate: float = 1e-3) -> TrainResult:
    """Fit the reward model with the shared Trainer (BCE on engagement labels)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate_engagement)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    return Trainer(model, optimizer, loader, reward_loss, config).train()
