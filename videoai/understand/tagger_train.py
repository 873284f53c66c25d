"""Fine-tune a `VideoTagger` on the shared training loop from a CSV, a labelled folder or synthetic shapes clips."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from videoai.synthetic import TAG_VOCAB, ShapesConfig, make_clip, tags_to_multi_hot
from videoai.train import TrainConfig, Trainer, TrainResult

from ._frames import load_frames, resize_frames
from .tagger import VideoTagger, preprocess_frames

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
_TAG_SEPARATORS = re.compile(r"[|;]")


# ------------------------------------------------------------------------------------------------------- datasets


class LabelledVideoDataset(Dataset):
    """(path, tags) pairs -> {"frames": (T, H, W, 3) uint8, "labels": (V,) float multi-hot over `tags`}."""

    def __init__(self, items: list[tuple[str, list[str]]], tags: list[str], num_frames: int, size: tuple[int, int]):
        if not items:
            raise ValueError("items: expected at least one (path, tags) pair, got none")
        unknown = sorted({t for _, item_tags in items for t in item_tags} - set(tags))
        if unknown:
            raise ValueError(f"tags: {len(unknown)} labelled tags are missing from the vocabulary, e.g. {unknown[:5]}")
        self.items, self.tags, self.num_frames, self.size = items, list(tags), num_frames, tuple(size)
        self._index = {tag: i for i, tag in enumerate(self.tags)}

    @classmethod
    def from_csv(cls, csv_path: str | os.PathLike, *, num_frames: int, size: tuple[int, int],
                 tags: list[str] | None = None) -> "LabelledVideoDataset":
        """CSV rows `path,tags` (tags split on | or ;, paths relative to the CSV's folder, optional header row)."""
        csv_path = Path(csv_path)
        if not csv_path.is_file():
            raise FileNotFoundError(f"csv_path: no such file {str(csv_path)!r} (expected rows 'path,tag1|tag2')")
        items = []
        with open(csv_path, newline="") as f:
            for line_number, row in enumerate(csv.reader(f), start=1):
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                if line_number == 1 and row[0].strip().lower() == "path":
                    continue  # header
                if len(row) != 2:
                    raise ValueError(f"{csv_path}:{line_number}: expected 2 columns 'path,tags', got {len(row)}: {row}")
                path = Path(row[0].strip())
                path = path if path.is_absolute() else csv_path.parent / path
                item_tags = [t.strip() for t in _TAG_SEPARATORS.split(row[1]) if t.strip()]
                if not item_tags:
                    raise ValueError(f"{csv_path}:{line_number}: no tags for {row[0]!r}")
                items.append((str(path), item_tags))
        if not items:
            raise ValueError(f"csv_path: {str(csv_path)!r} holds no labelled rows")
        tags = sorted({t for _, item_tags in items for t in item_tags}) if tags is None else list(tags)
        return cls(items, tags, num_frames, size)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, *, num_frames: int, size: tuple[int, int],
                    tags: list[str] | None = None) -> "LabelledVideoDataset":
        """`folder/labels.csv`, or one subfolder per tag holding that tag's videos (a video may sit in several)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"folder: no such folder {str(folder)!r}")
        if (folder / "labels.csv").is_file():
            return cls.from_csv(folder / "labels.csv", num_frames=num_frames, size=size, tags=tags)
        by_name: dict[str, list[str]] = {}  # relative file name -> tags, so a video in two tag folders gets both
        paths: dict[str, str] = {}
        for tag_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            for video in sorted(tag_dir.iterdir()):
                if video.suffix.lower() in VIDEO_EXTENSIONS:
                    by_name.setdefault(video.name, []).append(tag_dir.name)
                    paths.setdefault(video.name, str(video))
        if not by_name:
            raise ValueError(
                f"folder: {str(folder)!r} has neither labels.csv nor tag subfolders with videos ({VIDEO_EXTENSIONS})"
            )
        items = [(paths[name], item_tags) for name, item_tags in by_name.items()]
        tags = sorted({t for _, item_tags in items for t in item_tags}) if tags is None else list(tags)
        return cls(items, tags, num_frames, size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, item_tags = self.items[index]
        # Resized after decoding: decord's own resize fails for some small output sizes.
        frames = resize_frames(load_frames(path, self.num_frames), self.size)  # (T, H, W, 3) uint8
        labels = torch.zeros(len(self.tags))
        labels[[self._index[t] for t in item_tags]] = 1.0
        return {"frames": frames, "labels": labels}


SYNTHETIC_CONFIGS = (ShapesConfig(still_prob=0.15),)  # the default tagger's data: static camera, some still objects
SYNTHETIC_TAGS = [t for t in TAG_VOCAB if not t.startswith("camera:")]  # shape, color, direction, speed
SYNTHETIC_APPEARANCE_CHANNELS = (16, 32, 64)  # the embedded tagger's appearance branch (VideoTaggerConfig)


class SyntheticTagDataset(Dataset):
    """Clip i = make_clip(seed + i, configs[i % len(configs)]) with its clip tags over `tags`; cached in memory."""

    def __init__(self, num_clips: int, seed: int = 0, configs: tuple[ShapesConfig, ...] = SYNTHETIC_CONFIGS,
                 tags: list[str] | None = None):
        if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"num_clips: expected a positive int, got {num_clips!r}")
        if not configs or not all(isinstance(c, ShapesConfig) for c in configs):
            raise TypeError(f"configs: expected a non-empty tuple of ShapesConfig, got {configs!r}")
        sizes = {(c.num_frames, c.height, c.width) for c in configs}
        if len(sizes) != 1:
            raise ValueError(f"configs: all must share (num_frames, height, width) to batch, got {sorted(sizes)}")
        self.tags = list(SYNTHETIC_TAGS if tags is None else tags)
        unknown = [t for t in self.tags if t not in TAG_VOCAB]
        if unknown:
            raise ValueError(f"tags: expected tags from TAG_VOCAB, got unknown {unknown[:5]}")
        self.num_clips, self.seed, self.configs = num_clips, seed, tuple(configs)
        self._columns = torch.tensor([TAG_VOCAB.index(t) for t in self.tags])
        self._cache: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index not in self._cache:
            clip = make_clip(self.seed + index, self.configs[index % len(self.configs)])
            labels = tags_to_multi_hot(clip.clip_tags)[self._columns]  # (len(TAG_VOCAB),) -> (V,)
            self._cache[index] = {"frames": clip.frames, "labels": labels}
        return self._cache[index]


# --------------------------------------------------------------------------------------------------- augmentation


@dataclass
class Augment:
    """Label-aware flips: horizontal mirror and time reversal, each with the tag pairs it swaps."""

    hflip: bool = True
    reverse: bool = False
    hflip_swaps: list[tuple[str, str]] = field(default_factory=list)
    reverse_swaps: list[tuple[str, str]] = field(default_factory=list)

    def permutations(self, tags: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Index maps (V,) that apply the swaps to a label vector over `tags`."""
        index = {tag: i for i, tag in enumerate(tags)}
        out = []
        for swaps in (self.hflip_swaps, self.reverse_swaps):
            perm = torch.arange(len(tags))
            for a, b in swaps:
                if a in index and b in index:
                    perm[index[a]], perm[index[b]] = index[b], index[a]
            out.append(perm)
        return out[0], out[1]


# Time reversal only: it swaps both motion axes and leaves every shape as drawn. No mirror: squares, triangles and
# crosses are drawn tilted by +11 degrees, so a mirrored clip shows -11 degree shapes that held-out clips never have.
SYNTHETIC_AUGMENT = Augment(
    hflip=False, reverse=True,
    hflip_swaps=[("direction:left", "direction:right")],
    reverse_swaps=[("direction:left", "direction:right"), ("direction:up", "direction:down")],
)


def augment_batch(frames: torch.Tensor, labels: torch.Tensor, augment: Augment, perms) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip / reverse each clip of (B, T, H, W, 3) frames with probability 1/2, swapping its labels (B, V) to match."""
    # (B, T, H, W, 3): a mirror flips W (dim 3), reversing time flips T (dim 1)
    for enabled, dim, perm in ((augment.hflip, 3, perms[0]), (augment.reverse, 1, perms[1])):
        if not enabled:
            continue
        flip = torch.rand(frames.shape[0], device=frames.device) < 0.5  # (B,) from the training RNG stream
        frames = torch.where(flip.view(-1, 1, 1, 1, 1), frames.flip(dim), frames)
        labels = torch.where(flip.view(-1, 1), labels[:, perm.to(labels.device)], labels)
    return frames, labels


# --------------------------------------------------------------------------------------------------------- metrics


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-tag average precision of scores (N, V) against 0/1 labels (N, V) -> (V,), NaN where a tag has no positive.

    Tied scores count as one threshold (as scikit-learn), so a constant score gets AP = prevalence.
    """
    scores, labels = scores.float().cpu(), (labels > 0.5).float().cpu()
    result = torch.full((scores.shape[1],), math.nan)
    for v in range(scores.shape[1]):  # V columns; each step is vectorised over N
        num_positive = labels[:, v].sum()
        if num_positive == 0:
            continue
        order = torch.argsort(scores[:, v], descending=True)
        sorted_scores, hits = scores[order, v], labels[order, v]
        _, counts = torch.unique_consecutive(sorted_scores, return_counts=True)
        group_end = torch.cumsum(counts, 0)  # (G,) rank of each tie group's last item
        true_positives = torch.cumsum(hits, 0)[group_end - 1]  # (G,)
        precision = true_positives / group_end
        recall_gain = torch.diff(true_positives, prepend=torch.zeros(1)) / num_positive
        result[v] = (precision * recall_gain).sum()
    return result


@torch.no_grad()
def predict_scores(model: VideoTagger, dataset: Dataset, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid scores (N, V) and labels (N, V) of a dataset of {"frames", "labels"} items."""
    device = next(model.parameters()).device
    scores, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size):
        pixels = preprocess_frames(batch["frames"].to(device), model.config)
        scores.append(model(pixels).logits.float().sigmoid().cpu())
        labels.append(batch["labels"])
    return torch.cat(scores), torch.cat(labels)


def evaluate_tagger(model: VideoTagger, dataset: Dataset, batch_size: int = 64) -> dict[str, float]:
    """mAP (macro over tags that have a positive) and the number of such tags."""
    was_training = model.training
    model.eval()
    ap = average_precision(*predict_scores(model, dataset, batch_size))
    model.train(was_training)
    valid = ~ap.isnan()
    return {"mAP": float(ap[valid].mean()) if valid.any() else math.nan, "num_tags_scored": int(valid.sum())}


# -------------------------------------------------------------------------------------------------------- training


@dataclass
class TaggerTrainConfig:
    """Optimiser and data settings of `train_tagger` (the loop's own settings live in `TrainConfig`)."""

    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    num_workers: int = 0
    eval_batch_size: int = 64

    def __post_init__(self):
        for name in ("batch_size", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TaggerTrainConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"TaggerTrainConfig.learning_rate must be > 0, got {self.learning_rate!r}")


def _cosine_with_warmup(optimizer, warmup_steps: int, max_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_tagger(
    model: VideoTagger,
    train_dataset: Dataset,
    config: TrainConfig,
    settings: TaggerTrainConfig | None = None,
    *,
    eval_dataset: Dataset | None = None,
    augment: Augment | None = None,
) -> TrainResult:
    """Minimise BCE on multi-hot tags with AdamW + cosine schedule; saves the model to `output_dir/model`."""
    if not isinstance(model, VideoTagger):
        raise TypeError(f"model: expected a VideoTagger, got {type(model).__name__}")
    settings = TaggerTrainConfig() if settings is None else settings
    dataset_tags = getattr(train_dataset, "tags", None)
    if dataset_tags is not None and list(dataset_tags) != list(model.config.tags):
        raise ValueError(
            f"train_dataset: its tags ({len(dataset_tags)}) differ from model.config.tags ({model.config.num_tags}); "
            f"build the model with tags=dataset.tags"
        )
    perms = augment.permutations(model.config.tags) if augment is not None else None

    def loss_fn(wrapped_model, batch):
        frames, labels = batch["frames"], batch["labels"]  # (B, T, H, W, 3) uint8, (B, V)
        if augment is not None:
            frames, labels = augment_batch(frames, labels, augment, perms)
        out = wrapped_model(preprocess_frames(frames, model.config), labels=labels)
        return out.loss

    loader = DataLoader(train_dataset, batch_size=settings.batch_size, shuffle=True, drop_last=True,
                        num_workers=settings.num_workers)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.learning_rate,
    )
    scheduler = _cosine_with_warmup(optimizer, settings.warmup_steps, config.max_steps)
    eval_fn = None
    if eval_dataset is not None:
        eval_fn = lambda m: evaluate_tagger(m, eval_dataset, settings.eval_batch_size)  # noqa: E731
    trainer = Trainer(model, optimizer, loader, loss_fn, config, lr_scheduler=scheduler, eval_fn=eval_fn)
    result = trainer.train()
    if trainer.accelerator.is_main_process:
        save_tagger(trainer.unwrapped_model, Path(config.output_dir) / "model", info=training_info(result, settings,
                    len(train_dataset), trainer.accelerator.device))
    return result


def training_info(result: TrainResult, settings: TaggerTrainConfig, num_clips: int, device) -> dict:
    """What training.json records beside the weights: command, machine, data size, time, final loss and eval."""
    return {
        "command": " ".join(["python"] + sys.argv),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, device {device}, torch threads {torch.get_num_threads()}",
        "train_clips": num_clips, "steps": result.step, "train_seconds": round(result.wall_time, 1),
        "final_loss": result.loss, "eval": result.eval_metrics, "settings": asdict(settings),
    }


def save_tagger(model: VideoTagger, folder: str | os.PathLike, info: dict | None = None) -> Path:
    """Atomically write `model.save_pretrained` (+ training.json when `info`) to `folder` (temp folder + rename)."""
    folder = Path(folder)
    temp = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    model.save_pretrained(temp, safe_serialization=True)
    if info is not None:
        (temp / "training.json").write_text(json.dumps(info, indent=2, default=str))
    for file in temp.iterdir():  # safetensors writes owner-only files; shipped weights must be readable by all
        file.chmod(0o644)
    if folder.exists():
        old = folder.with_name(f".old-{folder.name}-{int(time.time())}")
        folder.rename(old)
        temp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        temp.rename(folder)
    return folder
