"""Iterative preference alignment (OneRec's IPA): beam-searched sessions, reward-model pairs, DPO vs a frozen reference.

Each iteration freezes a copy of the policy as reference, generates `num_samples` sessions per user with
trie-constrained beam search, scores them with the reward model, keeps the best and the worst as a
(chosen, rejected) pair when their rewards differ by at least `min_reward_gap`, and runs DPO steps through the
shared Trainer. The reference log-probabilities are computed once per iteration (the reference is frozen).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from videoai.train import TrainConfig, Trainer

from .beam_search import beam_search
from .data import EvalCollator, items_to_codes, pad_left
from .trainer import trie_targets


@dataclass
class AlignmentConfig:
    """DPO settings; steps count optimizer updates per iteration."""

    num_iterations: int = 2
    steps_per_iteration: int = 100
    num_samples: int = 8  # sessions sampled per user by beam search
    beta: float = 0.1
    sft_weight: float = 0.0  # optional next-token loss on the chosen session, per token
    # Next-token loss on the user's real last session (history[:-M] -> history[-M:]), per token, added to DPO as
    # OneRec mixes its NTP loss on logged data into preference training: it keeps the policy on what users did
    # while the reward model pulls it elsewhere (without it, DPO chases the reward model's favourites).
    anchor_weight: float = 1.0
    min_reward_gap: float = 0.05
    constrained: bool = True  # session log-probs under the trie-renormalised softmax (as constrained training)
    learning_rate: float = 1e-4
    batch_size: int = 128
    generation_batch_size: int = 512
    seed: int = 0


class PreferenceDataset(Dataset):
    """Preference pairs: history (T,), chosen/rejected sessions (M,) of item indices, reference log-probs."""

    def __init__(self, history: list[torch.Tensor], chosen: torch.Tensor, rejected: torch.Tensor,
                 reference_logp: torch.Tensor, rewards: torch.Tensor):
        self.history, self.chosen, self.rejected = history, chosen, rejected
        self.reference_logp, self.rewards = reference_logp, rewards  # (P, 2) each: chosen, rejected

    def longer_than(self, length: int) -> "PreferenceDataset":
        """The pairs whose history has more than `length` items (room for a real session of `length` items)."""
        keep = torch.tensor([i for i, h in enumerate(self.history) if len(h) > length], dtype=torch.long)
        return PreferenceDataset([self.history[i] for i in keep.tolist()], self.chosen[keep], self.rejected[keep],
                                 self.reference_logp[keep], self.rewards[keep])

    def __len__(self) -> int:
        return len(self.history)

    def __getitem__(self, index: int):
        return self.history[index], self.chosen[index], self.rejected[index], self.reference_logp[index]


class PreferenceCollator:
    """Batches preference pairs into OneRec inputs; sessions become codes (B, 2, M, L) (chosen first).

    anchor_length M > 0: also each history's last M items as the real session ("anchor_session_codes" (B, 1, M, L))
    after the items before them ("anchor_history_*"); histories must be longer than M (`longer_than`).
    """

    def __init__(self, item_codes: torch.Tensor, max_length: int = 50, anchor_length: int = 0):
        self.item_codes, self.max_length, self.anchor_length = item_codes, max_length, anchor_length

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        history, chosen, rejected, reference_logp = zip(*examples)
        batch = {}
        if self.anchor_length:
            m = self.anchor_length
            batch["anchor_history_items"] = pad_left([h[:-m][-self.max_length:] for h in history])  # (B, T')
            batch.update(items_to_codes(batch["anchor_history_items"], self.item_codes, "anchor_history"))
            sessions = torch.stack([h[-m:] for h in history])  # (B, M)
            batch["anchor_session_codes"] = self.item_codes[sessions][:, None]  # (B, 1, M, L)
        history = pad_left([h[-self.max_length:] for h in history])
        sessions = torch.stack([torch.stack(chosen), torch.stack(rejected)], 1)  # (B, 2, M)
        batch.update({"history_items": history, "reference_logp": torch.stack(reference_logp)})
        batch.update(items_to_codes(history, self.item_codes, "history"))
        batch["session_codes"] = self.item_codes[sessions]  # (B, 2, M, L)
        return batch


@torch.no_grad()
def build_preference_pairs(reference, reward_model, histories: list[torch.Tensor], item_codes: torch.Tensor, trie,
                           config: AlignmentConfig, max_history: int = 50) -> PreferenceDataset:
    """Sample sessions with the (frozen) reference, score them, keep (best, worst) pairs with a clear reward gap."""
    reference.eval()
    reward_model.eval()
    collate = EvalCollator(item_codes, max_history)
    kept_history, chosen, rejected, reference_logp, rewards = [], [], [], [], []
    for start in range(0, len(histories), config.generation_batch_size):
        part = histories[start:start + config.generation_batch_size]
        batch = collate([(h, -1) for h in part])
        out = beam_search(reference, batch["history_codes"], batch["history_mask"], trie,
                          num_beams=config.num_samples, exclude_codes=batch["history_codes"],
                          exclude_mask=batch["history_mask"], history_items=batch["history_items"])
        valid = (out.items >= 0).all(-1)  # (B, K) finished sessions of real items
        reward = reward_model.session_reward(batch["history_items"], out.items)  # (B, K)
        best = reward.masked_fill(~valid, float("-inf")).argmax(1)
        worst = reward.masked_fill(~valid, float("inf")).argmin(1)
        rows = torch.arange(len(part))
        gap = reward[rows, best] - reward[rows, worst]
        keep = (gap >= config.min_reward_gap) & valid.any(1)
        if not bool(keep.any()):
            continue
        sessions = torch.stack([out.items[rows, best], out.items[rows, worst]], 1)[keep]  # (P, 2, M)
        codes = item_codes[sessions]  # (P, 2, M, L)
        targets = trie_targets(trie, reference, codes) if config.constrained else None
        logp = reference.session_log_prob(batch["history_codes"][keep], batch["history_mask"][keep], codes,
                                          trie_targets=targets, history_items=batch["history_items"][keep])
        kept_history += [h[-max_history:] for h, k in zip(part, keep.tolist()) if k]
        chosen.append(sessions[:, 0])
        rejected.append(sessions[:, 1])
        reference_logp.append(logp)
        rewards.append(torch.stack([reward[rows, best], reward[rows, worst]], 1)[keep])
    if not kept_history:
        empty = torch.empty(0, reference.config.session_length, dtype=torch.long)
        return PreferenceDataset([], empty, empty, torch.empty(0, 2), torch.empty(0, 2))
    return PreferenceDataset(kept_history, torch.cat(chosen), torch.cat(rejected), torch.cat(reference_logp),
                             torch.cat(rewards))


def dpo_loss(model, batch: dict, beta: float = 0.1, sft_weight: float = 0.0, trie=None,
             anchor_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    """DPO: -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) with session log-probs; dropout off (as TRL).

    trie: score sessions under the trie-constrained softmax (must match how reference_logp was computed).
    anchor_weight: add the per-token NLL of the real session in batch["anchor_session_codes"] (see AlignmentConfig).
    """
    was_training = model.training
    model.eval()  # same network as the reference at step 0: the margin starts at exactly 0
    try:
        targets = None if trie is None else trie_targets(trie, model, batch["session_codes"])
        logp = model.session_log_prob(batch["history_codes"], batch["history_mask"], batch["session_codes"],
                                      trie_targets=targets, history_items=batch.get("history_items"))  # (B, 2)
        anchor_logp = None
        if anchor_weight:
            if "anchor_session_codes" not in batch:
                raise ValueError("anchor_weight > 0 needs batch['anchor_session_codes'] "
                                 "(PreferenceCollator with anchor_length > 0)")
            anchor = batch["anchor_session_codes"]  # (B, 1, M, L)
            anchor_logp = model.session_log_prob(
                batch["anchor_history_codes"], batch["anchor_history_mask"], anchor,
                trie_targets=None if trie is None else trie_targets(trie, model, anchor),
                history_items=batch["anchor_history_items"])[:, 0]  # (B, 1) -> (B,)
    finally:
        model.train(was_training)
    ratio = logp - batch["reference_logp"]  # (B, 2)
    margin = beta * (ratio[:, 0] - ratio[:, 1])
    loss = -F.logsigmoid(margin).mean()
    if sft_weight:
        loss = loss - sft_weight * logp[:, 0].mean() / batch["session_codes"][0, 0].numel()
    if anchor_logp is not None:
        loss = loss - anchor_weight * anchor_logp.mean() / batch["anchor_session_codes"][0, 0].numel()
    logs = {"margin": margin.mean().detach(), "pair_accuracy": (margin > 0).float().mean().detach(),
            "chosen_logp": logp[:, 0].mean().detach(), "rejected_logp": logp[:, 1].mean().detach()}
    return loss, logs


def freeze(model):
    """A frozen copy (eval mode, no gradients) to serve as the DPO reference."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def align(policy, reward_model, histories: list[torch.Tensor], item_codes: torch.Tensor, trie,
          config: AlignmentConfig, output_dir: str | Path, log=print) -> list[dict]:
    """Run `config.num_iterations` rounds of sample -> score -> pair -> DPO; returns per-round statistics."""
    if not histories:
        raise ValueError("align needs at least one user history, got an empty list")
    anchor_length = policy.config.session_length if config.anchor_weight else 0  # the real session after a history
    rounds = []
    for iteration in range(config.num_iterations):
        reference = freeze(policy)
        pairs = build_preference_pairs(reference, reward_model, histories, item_codes, trie, config,
                                       policy.config.max_history)
        if anchor_length:
            pairs = pairs.longer_than(anchor_length)
        stats = {"iteration": iteration, "pairs": len(pairs)}
        if len(pairs) == 0:
            longer = f" and a history longer than {anchor_length}" if anchor_length else ""
            log(f"alignment round {iteration}: no pair with a reward gap >= {config.min_reward_gap}{longer}; stopping")
            rounds.append(stats)
            break
        stats.update(chosen_reward=pairs.rewards[:, 0].mean().item(), rejected_reward=pairs.rewards[:, 1].mean().item())
        collate = PreferenceCollator(item_codes, policy.config.max_history, anchor_length)
        loader = DataLoader(pairs, batch_size=config.batch_size, shuffle=True, collate_fn=collate)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=config.learning_rate, weight_decay=0.0)
        train_config = TrainConfig(output_dir=Path(output_dir) / f"round_{iteration}",
                                   max_steps=config.steps_per_iteration,
                                   seed=config.seed + iteration, log_every=max(1, config.steps_per_iteration // 5),
                                   progress_bar=False)
        constraint = trie if config.constrained else None
        result = Trainer(policy, optimizer, loader,
                         lambda m, b: dpo_loss(m, b, config.beta, config.sft_weight, constraint, config.anchor_weight),
                         train_config).train()
        stats.update(final_loss=result.loss, seconds=result.wall_time)
        log(f"alignment round {iteration}: {len(pairs)} pairs, chosen reward {stats['chosen_reward']:.4f}, "
            f"rejected {stats['rejected_reward']:.4f}, DPO loss {result.losses[0]:.4f} -> {result.loss:.4f}")
        rounds.append(stats)
    return rounds
