"""Overhead of videoai.train.Trainer against a plain hand-written torch loop (same model, data, optimizer, clipping).

Run: python benchmarks/bench_train_loop.py [--steps 200] [--rounds 3] [--device cpu]
Each loop runs `rounds` times, interleaved; the median rate is printed (the machine may be shared).
"""

import argparse
import platform
import statistics
import sys
import tempfile
import time

import torch
from torch import nn

from videoai.train import TrainConfig, Trainer

WIDTH, BATCH, NUM_SAMPLES = 128, 64, 4096


def make_setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH))
    x = torch.randn(NUM_SAMPLES, WIDTH)
    dataset = torch.utils.data.TensorDataset(x, x.roll(1, dims=1))
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, drop_last=True)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3), loader


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def plain_loop(steps: int, device: str) -> float:
    """The peer: the loop one would write by hand. Returns steps/s."""
    model, optimizer, loader = make_setup()
    model.to(device)
    batches = iter(loader)
    start = time.perf_counter()
    for _ in range(steps):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        loss = loss_fn(model, (x.to(device), y.to(device)))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()  # wait for the device
    return steps / (time.perf_counter() - start)


def trainer_loop(steps: int, **config) -> float:
    model, optimizer, loader = make_setup()
    with tempfile.TemporaryDirectory() as output_dir:
        config = TrainConfig(output_dir, max_steps=steps, log_every=50, progress_bar=False, **config)
        return Trainer(model, optimizer, loader, loss_fn, config).train().steps_per_second


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="device of the plain loop; the Trainer picks accelerate's")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the peer and the Trainer get the same single core
    plain_loop(20, args.device)  # warm-ups: lazy imports, allocator
    trainer_loop(20, ema_decay=0.999)
    loops = {
        "plain torch loop (peer)": lambda: plain_loop(args.steps, args.device),
        "Trainer": lambda: trainer_loop(args.steps),
        "Trainer + EMA": lambda: trainer_loop(args.steps, ema_decay=0.999),
        "Trainer, accumulation 2 (half the optim steps)": lambda: 2
        * trainer_loop(args.steps // 2, gradient_accumulation_steps=2),
    }
    rates = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, run in loops.items():
            rates[name].append(run())
    rows = [(name, statistics.median(values)) for name, values in rates.items()]
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}, MLP {WIDTH}-{4 * WIDTH}-{WIDTH}, batch {BATCH}, AdamW, clip 1.0")
    print(f"{'loop':48s} {'batches/s':>10s} {'vs peer':>8s}")
    for name, rate in rows:
        print(f"{name:48s} {rate:10.1f} {rate / rows[0][1]:8.2f}")


if __name__ == "__main__":
    main()
