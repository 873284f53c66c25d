"""Trie constraints as tensors: per-node logit bias (0 / -inf) and child table, for decoding and for training.

Training with the same constraint as decoding (softmax over the valid children of each prefix only) makes the
model's output a proper distribution over real items: log P(item) = sum over its tokens of the log-softmax among
the siblings allowed by the trie. Without it the model must also learn which codes exist (most deep prefixes have a
single child), which wastes capacity and leaves the full-vocabulary softmax worse than uniform over items.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # trie -> {key: TrieTables}


class TrieTables:
    """A PrefixTrie's transition table widened to the model vocabulary, plus the 0/-inf logit bias of each node.

    Adapter over videoai.tokenize.PrefixTrie for hot loops: one gather gives the constraint of every beam/target
    token and one its child node, with no validation (nodes on valid paths are internal by construction).
    """

    def __init__(self, trie, vocab_size: int, device: torch.device | str = "cpu"):
        table = trie.table.to(device=device, dtype=torch.long)  # (I, V_trie), child id or -1
        if table.shape[1] > vocab_size:
            raise ValueError(f"the trie's vocab_size ({table.shape[1]}) exceeds the model's codebook_size "
                             f"({vocab_size}); build the model with codebook_size >= trie.vocab_size")
        self.children = torch.nn.functional.pad(table, (0, vocab_size - table.shape[1]), value=-1)  # (I, V)
        self.bias = torch.zeros(self.children.shape, device=device).masked_fill_(self.children < 0, float("-inf"))
        self.root = trie.root

    @classmethod
    def of(cls, trie, vocab_size: int, device: torch.device | str = "cpu") -> "TrieTables":
        """Cached tables of `trie` (built once per vocabulary size, device and table storage)."""
        cache = _TABLES.setdefault(trie, {})
        key = (vocab_size, str(torch.device(device)), trie.table.data_ptr())
        if key not in cache:
            cache.clear()
            cache[key] = cls(trie, vocab_size, device)
        return cache[key]

    def paths(self, codes: torch.Tensor) -> torch.Tensor:
        """Node before each token of each ID: codes (..., L) -> (..., L) (column 0 is the root)."""
        nodes = [torch.full(codes.shape[:-1], self.root, dtype=torch.long, device=codes.device)]
        for level in range(codes.shape[-1] - 1):
            nodes.append(self.children[nodes[-1].clamp_min(0), codes[..., level]])
        return torch.stack(nodes, -1)

    def leaf_parents(self, codes: torch.Tensor) -> torch.Tensor:
        """Node reached after all but the last token of each item; codes (..., L) -> (...)."""
        return self.paths(codes)[..., -1]

    def targets(self, codes: torch.Tensor) -> "TrieTargets":
        """Teacher-forcing trie positions of sessions codes (..., M, L) -> TrieTargets over the M*L steps."""
        prefix = self.paths(codes).flatten(-2)  # (..., S); each item of a session starts again at the root
        return TrieTargets(prefix, self.step_children(prefix))

    def step_children(self, nodes: torch.Tensor) -> torch.Tensor:
        """Child node per candidate token (..., V) of nodes (...); all -1 for nodes off the trie (-1)."""
        children = self.children[nodes.clamp_min(0)]
        return children.masked_fill((nodes < 0)[..., None], -1)


@dataclass
class TrieTargets:
    """Trie positions of teacher-forced or decoded tokens: the node before each token and its children per token.

    prefix_nodes (..., S) and child_nodes (..., S, V) (-1 off the trie). Given to OneRecModel, they restrict each
    softmax to the valid children (unless constrain=False) and feed the prefix-node embeddings (when it has them).
    """

    prefix_nodes: torch.Tensor
    child_nodes: torch.Tensor
    constrain: bool = True


def prefix_node_count(trie, depth: int) -> int:
    """Number of trie nodes at depth <= `depth` (root included): node ids below it are exactly those nodes."""
    codes = trie.codes
    return 1 + sum(torch.unique(codes[:, :d], dim=0).shape[0] for d in range(1, min(depth, codes.shape[1]) + 1))
