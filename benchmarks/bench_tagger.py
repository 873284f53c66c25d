"""Tagger on synthetic shapes: held-out mAP and CPU training time, against a linear probe on colour/motion statistics.

    python benchmarks/bench_tagger.py                       # the embedded tagger (training time from its training.json)
    python benchmarks/bench_tagger.py --train               # train one now and time it, the embedded tagger's recipe

Held-out clips use seeds far from the training seeds (0 .. N-1), drawn from the same recipe (ShapesConfig with
static camera and 15% still objects; tags: shape, colour, direction, speed). mAP = mean over tags of average
precision (tags with no positive are left out).
The peer is a logistic-regression probe on hand-made clip statistics (RGB histogram, mean-pooled first/last frames
and their difference), trained in this run on `--probe-clips` clips.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

from videoai.train import TrainConfig
from videoai.understand.tagger import DEFAULT_TAGGER_DIR, VideoTagger, VideoTaggerConfig, load_tagger
from videoai.understand.tagger_train import (
    SYNTHETIC_APPEARANCE_CHANNELS,
    SYNTHETIC_AUGMENT,
    SYNTHETIC_TAGS,
    SyntheticTagDataset,
    TaggerTrainConfig,
    average_precision,
    predict_scores,
    train_tagger,
)

GROUPS = ("shape", "color", "direction", "speed")
EVAL_SEED = 10_000_000


def clip_statistics(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, F) probe features: 4x4x4 RGB histogram, 8x8 pooled first/last frames and diff."""
    B, T = frames.shape[:2]
    bins = (frames.long() // 64)  # (B, T, H, W, 3) in 0..3
    index = bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]  # (B, T, H, W)
    offsets = torch.arange(B).view(B, 1) * 64
    counts = torch.bincount((index.flatten(1) + offsets).flatten(), minlength=B * 64)  # no (B, N, 64) one-hot
    histogram = counts.view(B, 64).float() / index[0].numel()  # (B, 64)
    ends = frames[:, [0, -1]].permute(0, 1, 4, 2, 3).float().flatten(0, 1) / 255  # (B*2, 3, H, W)
    pooled = F.adaptive_avg_pool2d(ends, 8).reshape(B, 2, -1)  # (B, 2, 192)
    return torch.cat([histogram, pooled[:, 0], pooled[:, 1], pooled[:, 1] - pooled[:, 0]], dim=1)


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([it["frames"] for it in items]), torch.stack([it["labels"] for it in items])


def train_probe(features: torch.Tensor, labels: torch.Tensor, steps: int = 500) -> torch.nn.Module:
    """Multi-label logistic regression (standardised features, AdamW, full batch)."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    probe = torch.nn.Linear(features.shape[1], labels.shape[1])
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    x = (features - mean) / std
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(probe(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return lambda f: probe((f - mean) / std)


def group_map(ap: torch.Tensor, tags: list[str]) -> dict[str, float]:
    out = {"all": float(ap[~ap.isnan()].mean())}
    for group in GROUPS:
        values = torch.stack([ap[i] for i, t in enumerate(tags) if t.startswith(group + ":")])
        values = values[~values.isnan()]
        out[group] = float(values.mean()) if len(values) else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="tagger folder (default: the embedded one)")
    parser.add_argument("--train", action="store_true", help="train a fresh tagger now (timed) instead of loading")
    parser.add_argument("--train-clips", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--eval-clips", type=int, default=500)
    parser.add_argument("--probe-clips", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--output-dir", default="/tmp/videoai_bench_tagger")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    t0 = time.perf_counter()
    eval_set = SyntheticTagDataset(args.eval_clips, seed=EVAL_SEED)
    eval_frames, eval_labels = stack(eval_set)
    print(f"generated {args.eval_clips} held-out clips in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    if args.train:
        model = VideoTagger(VideoTaggerConfig(tags=SYNTHETIC_TAGS, appearance_channels=SYNTHETIC_APPEARANCE_CHANNELS))
        result = train_tagger(model, SyntheticTagDataset(args.train_clips, seed=0),
                              TrainConfig(args.output_dir, max_steps=args.steps, log_every=50, progress_bar=False),
                              TaggerTrainConfig(batch_size=args.batch_size, learning_rate=args.lr),
                              augment=SYNTHETIC_AUGMENT)
        train_seconds, source = result.wall_time, "measured in this run"
        train_clips, steps = args.train_clips, args.steps
    else:
        model = load_tagger(args.model)
        info_file = (DEFAULT_TAGGER_DIR if args.model is None else os.path.abspath(args.model))
        info = json.loads(open(os.path.join(info_file, "training.json")).read())
        train_seconds, source = info["train_seconds"], "recorded in training.json when it was trained"
        train_clips, steps = info.get("train_clips", "?"), info.get("steps", "?")
    model.eval()
    t0 = time.perf_counter()
    scores, labels = predict_scores(model, eval_set)
    tagger_infer = time.perf_counter() - t0
    tagger_map = group_map(average_precision(scores, labels), model.config.tags)
    params = sum(p.numel() for p in model.parameters())
    rows.append(("VideoTagger (RoPE tubelet transformer)", train_clips, steps, train_seconds, tagger_infer, tagger_map))

    t0 = time.perf_counter()
    probe_frames, probe_labels = stack(SyntheticTagDataset(args.probe_clips, seed=0))
    probe = train_probe(clip_statistics(probe_frames), probe_labels)
    probe_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        probe_scores = probe(clip_statistics(eval_frames)).sigmoid()
    probe_infer = time.perf_counter() - t0
    probe_map = group_map(average_precision(probe_scores, eval_labels), eval_set.tags)
    rows.append(("peer: linear probe on RGB histogram + pooled frames", args.probe_clips, 500, probe_train,
                 probe_infer, probe_map))

    print(f"\nHeld-out synthetic clips: {args.eval_clips} (seeds {EVAL_SEED}..), tags scored: "
          f"{int((~average_precision(scores, labels).isnan()).sum())}/{len(eval_set.tags)}; tagger params {params:,}")
    header = ["model", "train clips", "steps", "train s (CPU)", "infer s", "mAP"] + [f"AP {g}" for g in GROUPS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, clips, n_steps, train_s, infer_s, m in rows:
        cells = [name, str(clips), str(n_steps), f"{train_s:.0f}", f"{infer_s:.1f}", f"{m['all']:.3f}"]
        cells += [f"{m[g]:.3f}" for g in GROUPS]
        print("| " + " | ".join(cells) + " |")
    print(f"\nmAP ratio tagger / probe: {tagger_map['all'] / probe_map['all']:.2f}x; tagger training time {source}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), torch "
          f"{torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
