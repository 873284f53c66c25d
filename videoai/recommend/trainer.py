"""Training and leave-last-out evaluation of OneRecModel through the shared videoai.train Trainer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch.utils.data import DataLoader

from videoai.train import TrainConfig, Trainer, TrainResult

from .beam_search import beam_search
from .constraints import TrieTables, TrieTargets
from .data import EvalCollator, LengthGroupedBatchSampler, NextItemCollator, SequenceDataset
from .fusion import fused_top_k
from .metrics import ranking_metrics


LR_DECAYS = ("constant", "cosine")


@dataclass
class OptimizerConfig:
    """AdamW settings, batch size and learning-rate schedule (linear warmup, then constant or cosine to 0)."""

    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 0
    lr_decay: str = "constant"  # "cosine" anneals to 0 at TrainConfig.max_steps (bench_recommend uses it)

    def __post_init__(self):
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")


def lr_multiplier(step: int, max_steps: int, warmup_steps: int = 0, decay: str = "cosine") -> float:
    """Learning-rate factor at optimizer step `step` (0-based) of `max_steps`: linear warmup, then decay."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_train_loader(sequences: list[torch.Tensor], item_codes: torch.Tensor | None, batch_size: int,
                      max_history: int = 50, session_length: int = 1, seed: int = 0) -> DataLoader:
    """Length-grouped shuffled batches of (history, next session at every position) for training."""
    dataset = SequenceDataset(sequences, max_history)
    sampler = LengthGroupedBatchSampler([len(s) for s in dataset.sequences], batch_size, seed=seed)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=NextItemCollator(item_codes, session_length))


def trie_targets(trie, model, session_codes: torch.Tensor) -> TrieTargets:
    """Trie positions of teacher-forced sessions (..., M, L) for constrained training / scoring."""
    unwrapped = getattr(model, "module", model)  # DDP wrapper
    return TrieTables.of(trie, unwrapped.config.codebook_size, session_codes.device).targets(session_codes)


def next_token_loss(model, batch: dict, trie=None) -> tuple[torch.Tensor, dict]:
    """Teacher-forced next-token loss on semantic IDs at every history position (+ MoE load balancing, + the
    item-level full softmax when model.config.item_loss_weight > 0).

    With a trie, each token's softmax runs over the children the trie allows after its prefix (constrained
    training, the same distribution beam search decodes from).
    """
    targets = None if trie is None else trie_targets(trie, model, batch["target_codes"])
    out = model(batch["history_codes"], batch["history_mask"], batch["target_codes"], batch["target_mask"],
                trie_targets=targets, history_items=batch["history_items"], target_items=batch["target_items"])
    logs = {"token_loss": out.token_loss.detach(), "aux_loss": out.aux_loss.detach()}
    if out.item_loss is not None:
        logs["item_loss"] = out.item_loss.detach()
    return out.loss, logs


def train_onerec(model, sequences: list[torch.Tensor], item_codes: torch.Tensor, config: TrainConfig,
                 optim: OptimizerConfig | None = None, eval_fn=None, trie=None) -> tuple[Trainer, TrainResult]:
    """Train `model` on item-index sequences (training split) for `config.max_steps` optimizer steps.

    trie: the PrefixTrie of item_codes for constrained training (recommended); None trains the full softmax.
    """
    optim = optim or OptimizerConfig()
    if item_codes.shape[1] != model.config.num_levels:
        raise ValueError(f"item_codes must have model.config.num_levels={model.config.num_levels} columns, "
                         f"got {item_codes.shape[1]}")
    loader = make_train_loader(sequences, item_codes, optim.batch_size, model.config.max_history,
                               model.config.session_length, config.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=optim.learning_rate, betas=(0.9, 0.98))
    scheduler = None
    if optim.warmup_steps or optim.lr_decay != "constant":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
            lr_multiplier, max_steps=config.max_steps, warmup_steps=optim.warmup_steps, decay=optim.lr_decay))
    trainer = Trainer(model, optimizer, loader, partial(next_token_loss, trie=trie), config, lr_scheduler=scheduler,
                      eval_fn=eval_fn)
    return trainer, trainer.train()


@torch.no_grad()
def recommend_indices(model, histories: list[torch.Tensor], item_codes: torch.Tensor, trie, k: int = 10,
                      num_beams: int | None = None, exclude_seen: bool = True, batch_size: int = 256,
                      constrained: bool = True, item_score_weight: float | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k next items (n, k) item indices (-1 if fewer valid beams) and log-prob scores (n, k) by beam search.

    item_score_weight w > 0 (None: model.config.item_score_weight) ranks the beam's items and the item head's top
    num_beams items together by log P(ID) + w * log P_head(item) (fusion.fused_top_k; constrained search only);
    the scores are then those fused values.

    num_beams defaults to 2k: a wider beam finds higher-scoring items (on Amazon Beauty 20 beams raise validation
    NDCG@10 about 10% over 10 for top-10). With exclude_seen (and constrained), beams that end on a seen item die
    at the last level, so a user can get fewer than k items; those users are searched again with twice the beams
    until k unseen items come back (or the beam covers the catalogue).
    """
    num_beams = max(k, num_beams or 2 * k)
    model.eval()
    collate = EvalCollator(item_codes, model.config.max_history)
    device = model.device
    max_beams = max(num_beams, item_codes.shape[0])
    weight = getattr(model.config, "item_score_weight", 0.0) if item_score_weight is None else item_score_weight
    if weight < 0 or (weight and not constrained):
        raise ValueError(f"item_score_weight must be >= 0 and needs constrained=True, got {weight!r} "
                         f"(constrained={constrained})")

    def search(rows: list[torch.Tensor], beams: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = collate([(h, -1) for h in rows])
        codes, mask = batch["history_codes"].to(device), batch["history_mask"].to(device)
        history_items = batch["history_items"].to(device)
        encoded = model.encode(codes, mask, history_items=history_items)  # once, for the beam and the fusion
        out = beam_search(model, codes, mask, trie, num_beams=beams, session_length=1, constrained=constrained,
                          exclude_codes=codes if exclude_seen else None, exclude_mask=mask,
                          history_items=history_items, encoded=encoded)
        if weight:
            top, scores = fused_top_k(model, codes, mask, history_items, out.items[:, :, 0], out.scores,
                                      item_codes.to(device), trie, k, weight, exclude_seen, encoded)
            return top.cpu(), scores.cpu()
        return out.items[:, :k, 0].cpu(), out.scores[:, :k].cpu()  # (b, k), (b, k)

    items, scores = [], []
    for start in range(0, len(histories), batch_size):
        rows = histories[start:start + batch_size]
        top, top_scores = search(rows, num_beams)
        beams = num_beams
        short = (top < 0).any(1).nonzero().squeeze(1)  # users with fewer than k unseen items
        while exclude_seen and constrained and short.numel() and beams < max_beams:
            beams = min(2 * beams, max_beams)
            top[short], top_scores[short] = search([rows[i] for i in short.tolist()], beams)
            short = short[(top[short] < 0).any(1)]
        items.append(top)
        scores.append(top_scores)
    return torch.cat(items), torch.cat(scores)


def evaluate_onerec(model, histories: list[torch.Tensor], targets: torch.Tensor, item_codes: torch.Tensor, trie,
                    ks=(5, 10), num_beams: int | None = None, exclude_seen: bool = True,
                    batch_size: int = 256) -> dict[str, float]:
    """Recall@k / NDCG@k over the full item set (beam search ranks every catalogue item it can reach)."""
    ranked, _ = recommend_indices(model, histories, item_codes, trie, max(ks), num_beams, exclude_seen, batch_size)
    return ranking_metrics(ranked, torch.as_tensor(targets), ks)
