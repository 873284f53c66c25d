"""Tiny CPU training pieces shared by the train tests; run under torchrun by the multi-process test.

Usage as a script: python tiny_training.py OUTPUT_DIR PER_PROCESS_BATCH_SIZE MAX_STEPS
"""

import sys

import torch
from torch import nn

from videoai.train import TrainConfig, Trainer

NUM_FEATURES = 8


def make_dataset(num_samples: int = 20, seed: int = 0) -> torch.utils.data.TensorDataset:
    """Noisy linear regression data: x (N, 8), y (N, 1)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, NUM_FEATURES, generator=generator)
    w = torch.randn(NUM_FEATURES, 1, generator=generator)
    y = x @ w + 0.1 * torch.randn(num_samples, 1, generator=generator)
    return torch.utils.data.TensorDataset(x, y)


def make_model(dropout: float = 0.0, seed: int = 0) -> nn.Module:
    """A 2-layer MLP; dropout > 0 makes training depend on the RNG stream."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(NUM_FEATURES, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def mse_loss(model, batch):
    """loss_fn(model, batch) -> (loss, logs)."""
    x, y = batch
    prediction = model(x)  # (B, 1)
    return nn.functional.mse_loss(prediction, y), {"prediction_mean": prediction.mean()}


def train_sgd(output_dir, batch_size: int, max_steps: int, num_samples: int = 32) -> Trainer:
    """Deterministic model, plain SGD, shuffled data: one global batch gives the same weights on 1 or N processes."""
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = torch.utils.data.DataLoader(make_dataset(num_samples), batch_size=batch_size, shuffle=True)
    config = TrainConfig(output_dir, max_steps=max_steps, checkpoint_every=max_steps, log_every=2, progress_bar=False)
    trainer = Trainer(model, optimizer, loader, mse_loss, config)
    trainer.train()
    return trainer


if __name__ == "__main__":
    torch.set_num_threads(1)
    train_sgd(sys.argv[1], batch_size=int(sys.argv[2]), max_steps=int(sys.argv[3]))
