"""Semantic IDs: TIGER-style collision-free codes and a prefix trie as a tensor table for constrained decoding."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from videoai.files import atomic_write


def _check_codes(codes: object, name: str, *, depth: int | None = None, non_negative: bool = True) -> None:
    """Raise a clear error unless codes is a 2-D integer tensor (with depth columns, values >= 0)."""
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, L), got {type(codes).__name__}")
    if codes.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, L), got shape {tuple(codes.shape)}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {codes.dtype}")
    if depth is not None and codes.shape[1] != depth:
        raise ValueError(f"{name} must have {depth} columns (the trie depth), got {codes.shape[1]}")
    if non_negative and codes.numel() and bool((codes < 0).any()):
        raise ValueError(f"{name} must be non-negative token ids, got min {int(codes.min())}")


def make_collision_free(codes: torch.Tensor, codebook_size: int | None = None) -> torch.Tensor:
    """Append a disambiguation column to codes (N, L) -> (N, L+1): 0 for the first row of each group of identical
    rows (in row order), then 1, 2, ... for its repeats, so every row becomes unique (as in TIGER).

    codebook_size: if given, raise ValueError when a group needs more suffix tokens than that.
    """
    _check_codes(codes, "codes", non_negative=False)
    num_rows = codes.shape[0]
    if num_rows == 0:
        return codes.new_zeros(0, codes.shape[1] + 1)
    _, group = torch.unique(codes, dim=0, return_inverse=True)  # (N,) group id of each row
    order = torch.argsort(group, stable=True)  # rows grouped, original order kept inside a group
    sizes = torch.bincount(group)  # (G,)
    first = sizes.cumsum(0) - sizes  # (G,) position of each group's first row in `order`
    suffix = torch.empty_like(group)
    suffix[order] = torch.arange(num_rows, device=codes.device) - first[group[order]]  # rank inside the group
    if codebook_size is not None and int(sizes.max()) > codebook_size:
        raise ValueError(f"make_collision_free: a code is shared by {int(sizes.max())} rows but codebook_size is "
                         f"{codebook_size}; the suffix token would not fit")
    return torch.cat([codes, suffix.to(codes.dtype).unsqueeze(1)], dim=1)  # (N, L+1)


class PrefixTrie:
    """Trie of valid ID sequences (one per item) as sorted edge tensors (CSR), usable on any device.

    Node ids are grouped by depth: root 0, then every distinct prefix of length 1, 2, ..., depth, each depth in
    lexicographic order, so the children of a node are a contiguous id range sorted by token. Memory is O(nodes)
    whatever the vocabulary (a dense (internal nodes, vocab) table grows as items x vocab, and the disambiguation
    vocabulary itself grows with the catalogue when many items share a code). step/next_mask/lookup/children are
    pure tensor ops (no host syncs), so batched beam search can run on the device.
    """

    root = 0

    def __init__(self, codes: torch.Tensor, vocab_size: int | None = None) -> None:
        """Build from unique codes (N, L') of items 0..N-1; vocab_size defaults to codes.max() + 1."""
        _check_codes(codes, "codes")
        num_items, depth = codes.shape
        if num_items == 0 or depth == 0:
            raise ValueError(f"codes must have at least one row and one column, got shape {tuple(codes.shape)}")
        min_vocab = int(codes.max()) + 1
        if vocab_size is None:
            vocab_size = min_vocab
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < min_vocab:
            raise ValueError(f"vocab_size must be an int >= codes.max() + 1 = {min_vocab}, got {vocab_size!r}")
        codes = codes.long()
        device = codes.device
        edge_keys = []  # per depth: parent * vocab_size + token of each new node, in node-id order
        node = torch.zeros(num_items, dtype=torch.int64, device=device)  # (N,) node of each item's current prefix
        next_id = 1
        for level in range(1, depth + 1):
            _, prefix = torch.unique(codes[:, :level], dim=0, return_inverse=True)  # (N,) distinct-prefix index
            count = int(prefix.max()) + 1
            # items sharing a prefix write the same key into the same slot, so duplicate writes agree
            keys = torch.empty(count, dtype=torch.int64, device=device)
            keys[prefix] = node * vocab_size + codes[:, level - 1]
            edge_keys.append(keys)
            num_internal = next_id  # ids below the deepest level's are internal nodes
            node = next_id + prefix  # (N,)
            next_id += count
        if next_id - num_internal != num_items:
            raise ValueError(f"codes has {num_items - (next_id - num_internal)} duplicate rows; each item needs a "
                             "unique code (use make_collision_free first)")
        edge_keys = torch.cat(edge_keys)  # (num_nodes - 1,) sorted: lexicographic ids make (parent, token) ascend
        parents = torch.div(edge_keys, vocab_size, rounding_mode="floor")
        first_child = torch.searchsorted(parents, torch.arange(num_internal + 1, device=device)) + 1  # (I+1,)
        item_of_leaf = torch.full((next_id,), -1, dtype=torch.int64, device=device)
        item_of_leaf[node] = torch.arange(num_items, device=device)
        self._set(first_child, edge_keys, item_of_leaf, node, codes, vocab_size)

    def _set(self, first_child, edge_keys, item_of_leaf, leaf_of_item, codes, vocab_size: int) -> None:
        self.first_child = first_child  # (num_internal + 1,) int64: children of n are ids first_child[n:n+2) range
        self.edge_keys = edge_keys  # (num_nodes - 1,) int64, parent * vocab_size + token of nodes 1.., ascending
        self.item_of_leaf = item_of_leaf  # (num_nodes,) int64, item index of a leaf node, -1 for internal nodes
        self.leaf_of_item = leaf_of_item  # (N,) int64, leaf node id of each item
        self.codes = codes  # (N, L') int64, the item codes the trie was built from
        self._vocab_size = vocab_size
        # token of each node (derived, not saved; slot -1 -> spare column vocab_size for children()'s padding)
        self._edge_tokens = torch.cat([edge_keys % vocab_size, edge_keys.new_full((1,), vocab_size)])
        counts = first_child[1:] - first_child[:-1]
        self.max_children = int(counts.max()) if counts.numel() else 0  # width of children() rows before scatter

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def depth(self) -> int:
        return self.codes.shape[1]

    @property
    def num_nodes(self) -> int:
        return self.item_of_leaf.shape[0]

    @property
    def num_internal(self) -> int:
        return self.first_child.shape[0] - 1

    @property
    def num_items(self) -> int:
        return self.codes.shape[0]

    @property
    def device(self) -> torch.device:
        return self.codes.device

    @property
    def table(self) -> torch.Tensor:
        """Dense transition table (num_internal, vocab_size) int32, child id or -1; built on each call (O(I x V))."""
        return self.children(torch.arange(self.num_internal, device=self.device)).to(torch.int32)

    def __len__(self) -> int:
        return self.num_items

    def __repr__(self) -> str:
        return (f"PrefixTrie(num_items={self.num_items}, depth={self.depth}, vocab_size={self.vocab_size}, "
                f"num_nodes={self.num_nodes}, device={self.device})")

    def to(self, device: str | torch.device) -> PrefixTrie:
        """Move all tensors to device (in place) and return self."""
        tensors = (self.first_child, self.edge_keys, self.item_of_leaf, self.leaf_of_item, self.codes)
        self._set(*(t.to(device) for t in tensors), self.vocab_size)
        return self

    def _check_nodes(self, nodes: object, name: str = "nodes") -> None:
        if not isinstance(nodes, torch.Tensor) or nodes.is_floating_point() or nodes.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor of node ids, got {getattr(nodes, 'dtype', type(nodes))}")

    def children(self, nodes: torch.Tensor) -> torch.Tensor:
        """Child node id per token (..., vocab_size) int64 of nodes (...) (no checks); -1 where none, for leaves and
        for ids outside [0, num_nodes)."""
        nodes = nodes.long()
        internal = (nodes >= 0) & (nodes < self.num_internal)  # (...)
        row = torch.where(internal, nodes, self.num_internal)  # off the trie: the sentinel row, no children
        start = self.first_child[row]  # (...)
        count = torch.where(internal, self.first_child[row.clamp(max=self.num_internal - 1) + 1] - start, 0)
        slot = torch.arange(self.max_children, device=nodes.device)  # (W,)
        valid = slot < count[..., None]  # (..., W)
        child = torch.where(valid, start[..., None] + slot, 0)  # candidate child ids; 0 picks the spare token
        token = self._edge_tokens[child - 1]  # child 0 -> index -1 -> the spare column
        out = torch.full((*nodes.shape, self.vocab_size + 1), -1, dtype=torch.int64, device=nodes.device)
        return out.scatter_(-1, token, child.masked_fill_(~valid, -1))[..., :-1]

    def child(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Child node ids (...) int64 of nodes (...) after tokens (...) (no checks); -1 where not a valid prefix."""
        nodes, tokens = nodes.long(), tokens.long()
        valid = (nodes >= 0) & (nodes < self.num_internal) & (tokens >= 0) & (tokens < self.vocab_size)
        key = nodes * self.vocab_size + tokens
        position = torch.searchsorted(self.edge_keys, key).clamp_(max=self.edge_keys.numel() - 1)
        found = valid & (self.edge_keys[position] == key)
        return torch.where(found, position + 1, -1)

    def next_mask(self, nodes: torch.Tensor) -> torch.Tensor:
        """Valid next tokens (..., vocab_size) bool for node ids nodes (...); all False for leaves and -1."""
        self._check_nodes(nodes)
        return self.children(nodes) >= 0

    def step(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Child node ids (...) int64 after emitting tokens (...) at nodes (...); -1 where not a valid prefix."""
        self._check_nodes(nodes)
        self._check_nodes(tokens, "tokens")
        if nodes.shape != tokens.shape:
            raise ValueError(f"nodes and tokens must have the same shape, got {tuple(nodes.shape)} and "
                             f"{tuple(tokens.shape)}")
        return self.child(nodes, tokens)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Item index (B,) int64 for each code row (B, L'), -1 for codes that are not an item."""
        _check_codes(codes, "codes", depth=self.depth, non_negative=False)
        node = torch.zeros(codes.shape[0], dtype=torch.int64, device=self.device)  # (B,) all at root
        codes = codes.to(self.device)
        for level in range(self.depth):
            node = self.step(node, codes[:, level])
        return torch.where(node >= 0, self.item_of_leaf[node.clamp(min=0)], -1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain tensors that rebuild the trie with from_state_dict."""
        return {"first_child": self.first_child, "edge_keys": self.edge_keys, "item_of_leaf": self.item_of_leaf,
                "leaf_of_item": self.leaf_of_item, "codes": self.codes,
                "vocab_size": torch.tensor(self.vocab_size, dtype=torch.int64)}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> PrefixTrie:
        """Rebuild a trie from state_dict() tensors without recomputing it (a dense-table state from before
        is rebuilt from its codes)."""
        keys = ("first_child", "edge_keys", "item_of_leaf", "leaf_of_item", "codes", "vocab_size")
        if isinstance(state, dict) and {"table", "codes"} <= set(state) and "edge_keys" not in state:
            return cls(state["codes"], vocab_size=state["table"].shape[1])
        if not isinstance(state, dict) or set(keys) - set(state):
            raise ValueError(f"state must be a dict with keys {list(keys)}, got {list(getattr(state, 'keys', list)())}")
        first_child, edge_keys, item_of_leaf, leaf_of_item, codes, vocab_size = (state[k] for k in keys)
        if (first_child.ndim != 1 or edge_keys.ndim != 1 or item_of_leaf.shape != (edge_keys.shape[0] + 1,)
                or codes.ndim != 2 or leaf_of_item.shape != codes.shape[:1] or vocab_size.numel() != 1):
            raise ValueError("state tensors have inconsistent shapes: first_child (I+1,), edge_keys (M-1,), "
                             "item_of_leaf (M,), leaf_of_item (N,), codes (N, L), vocab_size () expected, got "
                             f"{[tuple(state[k].shape) for k in keys]}")
        trie = cls.__new__(cls)
        trie._set(first_child.long(), edge_keys.long(), item_of_leaf.long(), leaf_of_item.long(), codes.long(),
                  int(vocab_size))
        return trie

    def save(self, path: str | os.PathLike) -> None:
        """Write the trie to a safetensors file atomically (temp file + rename)."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write(path, lambda temporary: save_file(tensors, temporary))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> PrefixTrie:
        """Read a trie written by save."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"PrefixTrie.load: file {str(path)!r} does not exist")
        return cls.from_state_dict(load_file(path)).to(device)
