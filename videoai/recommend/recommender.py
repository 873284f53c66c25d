"""OneRecRecommender: a OneRecModel with its SemanticIDTokenizer, taking and returning raw item ids."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .beam_search import beam_search
from .constraints import TrieTables, TrieTargets, prefix_node_count
from .data import EvalCollator
from .model import OneRecConfig, OneRecModel
from .semantic_ids import SemanticIDTokenizer, UnknownItemError
from .trainer import recommend_indices

MODEL_DIR, TOKENIZER_DIR = "model", "tokenizer"
# model_for_tokenizer's settings beyond OneRecConfig's defaults (bench_recommend's, picked on validation users)
RECOMMENDED = dict(d_model=64, d_ff=256, num_experts=4, experts_top_k=2, moe_dispatch="dense", dropout=0.2,
                   item_loss_weight=2.0, item_score_weight=2.0)


def config_for_tokenizer(tokenizer: SemanticIDTokenizer, node_levels: int | None = None, item_embedding: bool = True,
                         **overrides) -> OneRecConfig:
    """OneRecConfig sized for `tokenizer`: its tokens per item and vocabulary, prefix-node embeddings for the first
    `node_levels` levels (None: all, so the last level scores items by their own leaf vectors) and (optionally)
    item-index embeddings in the encoder; `overrides` set any other field.

    With node_input=True in `overrides`, call model.attach_trie(tokenizer.trie) on the new model (model_for_tokenizer
    does both)."""
    node_levels = tokenizer.num_levels if node_levels is None else node_levels
    return OneRecConfig(num_levels=tokenizer.num_levels, codebook_size=tokenizer.vocab_size,
                        num_items=tokenizer.num_items if item_embedding else 0,
                        num_prefix_nodes=prefix_node_count(tokenizer.trie, node_levels) if node_levels else 0,
                        node_levels=node_levels, **overrides)


def model_for_tokenizer(tokenizer: SemanticIDTokenizer, node_input: bool = True, user_state_input: bool = True,
                        **overrides) -> OneRecModel:
    """A new OneRecModel for `tokenizer` with the recommended settings (those of bench_recommend, picked on Amazon
    Beauty validation users): item-index embeddings, prefix-node embeddings at every level, (node_input) the same
    node vectors added to each history item in the encoder, (user_state_input) the encoder's output at the latest
    item added to every decoder input, an item head trained beside the tokens (item_loss_weight 2) whose
    full-catalogue scores re-rank the beam (item_score_weight, see fusion.py), 4 experts run densely, dropout 0.2.

    On Amazon Beauty node_input lifts NDCG@10 from 0.0164 to 0.0207 (4 epochs), user_state_input test NDCG@10 from
    0.0381 to 0.0467, and the fused ranking validation NDCG@10 from 0.0643 (beam alone) to 0.0683 (all validation
    users, mean of 3 seeds; weight 2 over 1 and 4: 0.0681; bench_recommend, 20 epochs). item_loss_weight 2 over
    0.5 / 1 / 4 (Beauty validation, seed 0): fused 0.0716 vs 0.0684 / 0.0706 / 0.0717, the beam alone 0.0640 vs
    0.0646 / 0.0651 / 0.0612. `overrides` go to config_for_tokenizer (e.g. d_model, node_levels, dropout)."""
    settings = {**RECOMMENDED, **overrides}
    if not node_input:  # the item head scores the tied item vectors, which need node_input
        settings["item_loss_weight"] = overrides.get("item_loss_weight", 0.0)
    if not settings["item_loss_weight"]:  # an untrained item head must not rank
        settings["item_score_weight"] = overrides.get("item_score_weight", 0.0)
    if "d_model" in overrides and "d_ff" not in overrides:
        settings["d_ff"] = 4 * overrides["d_model"]
    model = OneRecModel(config_for_tokenizer(tokenizer, node_input=node_input, user_state_input=user_state_input,
                                             **settings))
    return model.attach_trie(tokenizer.trie) if node_input else model


class OneRecRecommender:
    """Recommend items / generate sessions for histories of item ids; save and load model + tokenizer together."""

    def __init__(self, model: OneRecModel, tokenizer: SemanticIDTokenizer):
        if model.config.num_levels != tokenizer.num_levels:
            raise ValueError(f"model.config.num_levels ({model.config.num_levels}) must equal the tokenizer's "
                             f"tokens per item ({tokenizer.num_levels})")
        if model.config.codebook_size < tokenizer.vocab_size:
            raise ValueError(f"model.config.codebook_size ({model.config.codebook_size}) must be >= the tokenizer's "
                             f"vocab_size ({tokenizer.vocab_size})")
        if model.config.num_items not in (0, tokenizer.num_items):
            raise ValueError(f"model.config.num_items ({model.config.num_items}) must be 0 or the tokenizer's "
                             f"num_items ({tokenizer.num_items})")
        self.model, self.tokenizer = model, tokenizer
        self.trie = tokenizer.trie.to(model.device)
        if model.config.node_input and not model.has_item_nodes():
            model.attach_trie(self.trie)

    def _indices(self, histories: Sequence[Sequence]) -> list[torch.Tensor]:
        if isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence):
            raise TypeError(f"histories must be a list of item-id lists, got {type(histories).__name__}")
        out = []
        for number, history in enumerate(histories):
            if isinstance(history, (str, bytes)) or not isinstance(history, Sequence | torch.Tensor):
                raise TypeError(f"histories[{number}] must be a list of item ids, got {type(history).__name__}")
            if len(history) == 0:
                raise ValueError(f"histories[{number}] is empty: OneRec conditions on at least one past item")
            out.append(self.tokenizer.item_index(history))
        return out

    @torch.no_grad()
    def recommend(self, histories: Sequence[Sequence], k: int = 10, num_beams: int | None = None,
                  exclude_seen: bool = True) -> tuple[list[list], torch.Tensor]:
        """Top-k next items per history (item ids, best first) and their log-prob scores (n, k)."""
        if not isinstance(k, int) or not 1 <= k <= self.tokenizer.num_items:
            raise ValueError(f"k must be an int in [1, {self.tokenizer.num_items}], got {k!r}")
        codes = self.tokenizer.codes.to(self.model.device)
        items, scores = recommend_indices(self.model, self._indices(histories), codes, self.trie, k, num_beams,
                                          exclude_seen)
        ids = [[self.tokenizer.item_ids[i] for i in row if i >= 0] for row in items.tolist()]
        return ids, scores

    @torch.no_grad()
    def generate_sessions(self, histories: Sequence[Sequence], num_sessions: int = 5, session_length: int | None = None,
                          exclude_seen: bool = True) -> tuple[list[list[list]], torch.Tensor]:
        """`num_sessions` sessions of M distinct real items per history (item ids) and their log-probs (n, K)."""
        self.model.eval()
        collate = EvalCollator(self.tokenizer.codes, self.model.config.max_history)
        batch = collate([(h, -1) for h in self._indices(histories)])
        codes, mask = batch["history_codes"].to(self.model.device), batch["history_mask"].to(self.model.device)
        out = beam_search(self.model, codes, mask, self.trie, num_beams=num_sessions, session_length=session_length,
                          exclude_codes=codes if exclude_seen else None, exclude_mask=mask,
                          history_items=batch["history_items"].to(self.model.device))
        sessions = [[[self.tokenizer.item_ids[i] for i in session if i >= 0] for session in user]
                    for user in out.items.tolist()]
        return sessions, out.scores

    @torch.no_grad()
    def audience(self, item, histories: Sequence[Sequence], top: int | None = None, batch_size: int = 256,
                 constrained: bool = True, exclude_seen: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Users most likely to pick `item` next: positions into `histories` (n,) and log P(item | history) (n,),
        best first; `top` keeps the first `top` (None: all).

        The log-probability is exact: the item's semantic-ID tokens teacher-forced after each whole history
        (its last max_history items, as beam search sees them) and summed. constrained=True (the default,
        as recommend() decodes) takes each token's softmax over the children the prefix trie allows, so the figure
        equals the score constrained beam search gives the item and is a distribution over real items;
        constrained=False uses the full-vocabulary softmax instead. exclude_seen leaves out users whose history
        (all of it, not only the window the model sees) already holds the item, so fewer than `top` may come back.
        """
        if isinstance(top, bool) or not (top is None or isinstance(top, int) and top >= 1):
            raise ValueError(f"top must be None or an int >= 1, got {top!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        try:
            target = int(self.tokenizer.item_index([item])[0])
        except UnknownItemError:
            raise UnknownItemError(f"item {item!r} is not in the catalogue: the tokenizer was fitted on "
                                   f"{self.tokenizer.num_items} items") from None
        except TypeError:
            raise TypeError(f"item must be an item id (hashable), got {type(item).__name__}") from None
        rows = self._indices(histories)
        if not rows:
            raise ValueError("histories is empty: pass at least one user's item-id list")
        self.model.eval()
        device, levels = self.model.device, self.model.config.num_levels
        codes = self.tokenizer.codes.to(device)
        collate = EvalCollator(codes, self.model.config.max_history)
        session = codes[target].view(1, 1, 1, levels)  # (1, R=1, M=1, L)
        path = TrieTables.of(self.trie, self.model.config.codebook_size, device).targets(session)  # (1, 1, L[, V])
        log_probs = []
        for start in range(0, len(rows), batch_size):
            batch = collate([(h, -1) for h in rows[start:start + batch_size]])
            size = batch["history_items"].shape[0]
            # the trie walk is needed even unconstrained: it feeds the prefix-node embeddings of models that have them
            trie = TrieTargets(path.prefix_nodes.expand(size, -1, -1), path.child_nodes.expand(size, -1, -1, -1),
                               constrain=constrained)
            scores = self.model.session_log_prob(
                batch["history_codes"].to(device), batch["history_mask"].to(device), session.expand(size, -1, -1, -1),
                trie_targets=trie, history_items=batch["history_items"].to(device))[:, 0]  # (b,)
            log_probs.append(scores.cpu())
        log_probs = torch.cat(log_probs)  # (n,)
        if exclude_seen:  # the whole history counts here, not only the window the model sees
            seen = torch.tensor([bool((history == target).any()) for history in rows])
            log_probs = log_probs.masked_fill(seen, float("-inf"))
        order = torch.sort(log_probs, descending=True, stable=True).indices  # ties: earlier users first
        order = order[log_probs[order] > float("-inf")][:top]  # users who saw the item cannot pick it again
        return order, log_probs[order]

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """model/ (config.json + model.safetensors) and tokenizer/ in `directory`."""
        directory = Path(directory)
        self.model.save_pretrained(directory / MODEL_DIR)
        self.tokenizer.save_pretrained(directory / TOKENIZER_DIR)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> "OneRecRecommender":
        """Load from a local folder written by save_pretrained (never downloads)."""
        directory = Path(directory)
        if not (directory / MODEL_DIR).is_dir() or not (directory / TOKENIZER_DIR).is_dir():
            raise FileNotFoundError(f"OneRecRecommender.from_pretrained: {str(directory)!r} must contain "
                                    f"{MODEL_DIR}/ and {TOKENIZER_DIR}/ (written by save_pretrained)")
        model = OneRecModel.from_pretrained(directory / MODEL_DIR, local_files_only=True).to(device).eval()
        return cls(model, SemanticIDTokenizer.from_pretrained(directory / TOKENIZER_DIR))
