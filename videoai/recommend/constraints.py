"""Trie constraints as tensors: per-node logit bias (0 / -inf) and child table, for decoding and for training.

Training with the same constraint as decoding (softmax over the valid children of each prefix only) makes the
model's output a proper distribution over real items: log P(item) = sum over its tokens of the log-softmax among
the siblings allowed by the trie. Without it the model must also learn which codes exist (most deep prefixes have a
single child), which wastes capacity and leaves the full-vocabulary softmax worse than uniform over items.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass

import torch

_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # trie -> {key: TrieTables}


class _ChildTable:
    """Read-only view of a trie's children widened to the model vocabulary, indexed like a dense (I, V) table:
    table[nodes] -> (..., V) child ids, table[nodes, tokens] -> (...) child ids (-1 where none)."""

    def __init__(self, trie, vocab_size: int):
        self.trie, self.vocab_size = trie, vocab_size
        self.shape = (trie.num_internal, vocab_size)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, tuple):
            nodes, tokens = index
            return self.trie.child(nodes, tokens)  # tokens beyond the trie's vocabulary have no child
        rows = self.trie.children(index)  # (..., V_trie)
        return torch.nn.functional.pad(rows, (0, self.vocab_size - rows.shape[-1]), value=-1)  # (..., V)


class TrieTables:
    """A PrefixTrie's children widened to the model vocabulary, for hot loops (no validation).

    Adapter over videoai.tokenize.PrefixTrie: step_children gives the constraint of every beam/target token and
    child its next node. Nothing dense over the whole trie is stored: the trie keeps O(nodes) edge tensors and the
    (..., V) rows are built for the nodes asked for only (nodes on valid paths are internal by construction).
    """

    def __init__(self, trie, vocab_size: int, device: torch.device | str = "cpu"):
        if trie.vocab_size > vocab_size:
            raise ValueError(f"the trie's vocab_size ({trie.vocab_size}) exceeds the model's codebook_size "
                             f"({vocab_size}); build the model with codebook_size >= trie.vocab_size")
        device = torch.device(device)
        self.trie = trie if trie.device == device else copy.copy(trie).to(device)
        self.children = _ChildTable(self.trie, vocab_size)  # children[nodes] (..., V), children[nodes, tokens]
        self.vocab_size = vocab_size
        self.root = trie.root

    @property
    def bias(self) -> torch.Tensor:
        """0/-inf logit bias (I, V) of every internal node; dense, built on each call (small tries only)."""
        rows = self.children[torch.arange(self.trie.num_internal, device=self.trie.device)]
        return torch.zeros(rows.shape, device=rows.device).masked_fill_(rows < 0, float("-inf"))

    @classmethod
    def of(cls, trie, vocab_size: int, device: torch.device | str = "cpu") -> "TrieTables":
        """Cached tables of `trie` (built once per vocabulary size, device and edge storage)."""
        cache = _TABLES.setdefault(trie, {})
        key = (vocab_size, str(torch.device(device)), trie.edge_keys.data_ptr())
        if key not in cache:
            cache.clear()
            cache[key] = cls(trie, vocab_size, device)
        return cache[key]

    def child(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next node (...) after tokens (...) at nodes (...); -1 off the trie (and for nodes -1)."""
        return self.trie.child(nodes, tokens)

    def paths(self, codes: torch.Tensor) -> torch.Tensor:
        """Node before each token of each ID: codes (..., L) -> (..., L) (column 0 is the root)."""
        nodes = [torch.full(codes.shape[:-1], self.root, dtype=torch.long, device=codes.device)]
        for level in range(codes.shape[-1] - 1):
            nodes.append(self.child(nodes[-1].clamp_min(0), codes[..., level]))
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
        return self.children[nodes]


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
    first = 0  # first node id of the current depth; node ids are grouped by depth
    for _ in range(min(depth, trie.depth)):
        first = int(trie.first_child[first])  # first child of the first node = first node one depth down
    if depth >= trie.depth:
        return trie.num_nodes
    return int(trie.first_child[first])
