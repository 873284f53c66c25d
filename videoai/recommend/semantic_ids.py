"""SemanticIDTokenizer: item embeddings -> collision-free semantic IDs (residual k-means) + prefix trie + id maps."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from videoai.tokenize.residual_kmeans import ResidualKMeans
from videoai.tokenize.semantic_ids import PrefixTrie, make_collision_free

from .cooccurrence import cooccurrence_embeddings

CONFIG_NAME = "tokenizer_config.json"
CODES_NAME = "codes.safetensors"
QUANTIZER_DIR = "quantizer"


class UnknownItemError(KeyError, ValueError):
    """An item id that the tokenizer was not fitted on (a KeyError for lookups, a ValueError for bad input)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class SemanticIDTokenizer:
    """Maps items to `levels` residual-k-means codes plus one disambiguation token, as TIGER/OneRec.

    `codes` (N, levels+1) are unique per item; `trie` holds exactly these sequences so constrained decoding can only
    produce real items. Item ids can be ints or strings; they are kept in fit order (item index = position).
    """

    def __init__(self, levels: int = 3, codebook_size: int = 256, balanced: bool = True, iters: int = 20,
                 seed: int = 0):
        self.quantizer = ResidualKMeans(levels, codebook_size, balanced, iters=iters, seed=seed)
        self.item_ids: list = []
        self._index: dict = {}
        self.codes: torch.Tensor | None = None
        self.trie: PrefixTrie | None = None

    # ---- fitting -------------------------------------------------------------------------------------------------
    def fit(self, embeddings: torch.Tensor, item_ids: Sequence | None = None) -> "SemanticIDTokenizer":
        """Fit the quantizer on embeddings (N, D), one row per item id (default ids 0..N-1)."""
        if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2:
            got = getattr(embeddings, "shape", type(embeddings))
            raise ValueError(f"embeddings must be a (N, D) tensor, got {got}")
        item_ids = list(range(embeddings.shape[0])) if item_ids is None else list(item_ids)
        if len(item_ids) != embeddings.shape[0]:
            raise ValueError(f"item_ids must have one id per embedding row ({embeddings.shape[0]}), "
                             f"got {len(item_ids)}")
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("item_ids must be unique, got duplicates")
        codebook_size = self.quantizer.config.codebook_size
        if embeddings.shape[0] < codebook_size:
            raise ValueError(f"need at least codebook_size={codebook_size} items to fit, got {embeddings.shape[0]}")
        self.quantizer.fit(embeddings)
        codes = self.quantizer.encode(embeddings)  # (N, levels), balanced over the catalogue when configured
        codes = spill_large_groups(make_collision_free(codes), embeddings, self.quantizer)  # (N, levels+1)
        self._set_codes(item_ids, codes)
        return self

    @classmethod
    def from_sequences(cls, sequences: Sequence[Sequence], item_ids: Sequence | None = None, levels: int = 3,
                       codebook_size: int = 256, embedding_dim: int = 64, window: int = 3, balanced: bool = True,
                       seed: int = 0, iters: int = 20) -> "SemanticIDTokenizer":
        """Fit on a catalogue without content embeddings: co-occurrence (PPMI + SVD) embeddings of `sequences`.

        sequences: users' chronological item ids (use the training split only); item_ids: the whole catalogue
        (default: the items in sequences, sorted), items that never co-occur get a zero embedding and unique IDs
        through the disambiguation token (spread over nearby last-level codes past codebook_size of them, see
        spill_large_groups); iters: Lloyd iterations per residual k-means level.
        """
        item_ids = sorted({item for seq in sequences for item in seq}) if item_ids is None else list(item_ids)
        index = {item: i for i, item in enumerate(item_ids)}
        missing = [item for seq in sequences for item in seq if item not in index]
        if missing:
            raise UnknownItemError(f"{len(missing)} item(s) in sequences are not in item_ids, e.g. {missing[:5]!r}")
        indexed = [torch.tensor([index[item] for item in seq], dtype=torch.long) for seq in sequences if len(seq)]
        embeddings = cooccurrence_embeddings(indexed, len(item_ids), embedding_dim, window=window, seed=seed)
        return cls(levels, codebook_size, balanced, iters=iters, seed=seed).fit(embeddings, item_ids)

    def _set_codes(self, item_ids: list, codes: torch.Tensor) -> None:
        self.item_ids = item_ids
        self._index = {item: index for index, item in enumerate(item_ids)}
        self.codes = codes.long()  # (N, L)
        self.trie = PrefixTrie(self.codes, vocab_size=self.vocab_size)  # table width = the model's level vocab

    def _require_fitted(self) -> None:
        if self.codes is None:
            raise RuntimeError("SemanticIDTokenizer is not fitted: call fit(embeddings, item_ids) or from_pretrained")

    # ---- properties ----------------------------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        self._require_fitted()
        return self.codes.shape[0]

    @property
    def num_levels(self) -> int:
        """Tokens per item, the disambiguation token included."""
        self._require_fitted()
        return self.codes.shape[1]

    @property
    def vocab_size(self) -> int:
        """Tokens per level the model needs: the codebook size, or more if an ID group needed more suffixes."""
        self._require_fitted()
        return max(self.quantizer.config.codebook_size, int(self.codes.max()) + 1)

    @property
    def num_collisions(self) -> int:
        """Items that share their residual-k-means codes with an earlier item (disambiguation token > 0)."""
        self._require_fitted()
        return int((self.codes[:, -1] > 0).sum())

    # ---- mapping -------------------------------------------------------------------------------------------------
    def item_index(self, items: Sequence) -> torch.Tensor:
        """Item ids -> item indices (n,) int64; unknown ids raise UnknownItemError listing them."""
        self._require_fitted()
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence | torch.Tensor):
            raise TypeError(f"items must be a sequence of item ids, got {type(items).__name__}")
        items = items.tolist() if isinstance(items, torch.Tensor) else items
        unknown = [item for item in items if item not in self._index]
        if unknown:
            raise UnknownItemError(f"{len(unknown)} unknown item id(s), e.g. {unknown[:5]!r}: the tokenizer was "
                                   f"fitted on {self.num_items} items")
        return torch.tensor([self._index[item] for item in items], dtype=torch.long)

    def encode(self, items: Sequence) -> torch.Tensor:
        """Item ids -> semantic IDs (n, L) int64."""
        return self.codes[self.item_index(items)]

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Semantic IDs (n, L) -> item indices (n,), -1 where the ID is not an item."""
        self._require_fitted()
        if not isinstance(codes, torch.Tensor) or codes.ndim != 2 or codes.shape[1] != self.num_levels:
            raise ValueError(f"codes must be a (n, {self.num_levels}) tensor, got {getattr(codes, 'shape', codes)}")
        return self.trie.lookup(codes.long())

    def decode(self, codes: torch.Tensor) -> list:
        """Semantic IDs (n, L) -> item ids; an ID that is no item raises ValueError."""
        index = self.lookup(codes)
        if bool((index < 0).any()):
            bad = codes[index < 0][:3].tolist()
            raise ValueError(f"codes contain {int((index < 0).sum())} sequence(s) that are no item, e.g. {bad}")
        return [self.item_ids[i] for i in index.tolist()]

    # ---- persistence ---------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write quantizer/, codes.safetensors and tokenizer_config.json (item ids) into `directory` (atomic each)."""
        self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.quantizer.save_pretrained(directory / QUANTIZER_DIR)
        _atomic(directory / CODES_NAME, lambda p: save_file({"codes": self.codes.cpu().contiguous()}, p))
        config = {"item_ids": self.item_ids, "num_levels": self.num_levels}
        _atomic(directory / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(config)))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "SemanticIDTokenizer":
        """Load a tokenizer written by save_pretrained from a local folder."""
        directory = Path(directory)
        for name in (CONFIG_NAME, CODES_NAME, QUANTIZER_DIR):
            if not (directory / name).exists():
                raise FileNotFoundError(f"SemanticIDTokenizer.from_pretrained: {name} missing in {str(directory)!r}")
        config = json.loads((directory / CONFIG_NAME).read_text())
        quantizer = ResidualKMeans.from_pretrained(directory / QUANTIZER_DIR)
        tokenizer = cls(quantizer.config.levels, quantizer.config.codebook_size, quantizer.config.balanced)
        tokenizer.quantizer = quantizer
        codes = load_file(directory / CODES_NAME)["codes"]
        if codes.shape != (len(config["item_ids"]), config["num_levels"]):
            raise ValueError(f"{CODES_NAME} has shape {tuple(codes.shape)}, expected "
                             f"({len(config['item_ids'])}, {config['num_levels']}) from {CONFIG_NAME}")
        tokenizer._set_codes(config["item_ids"], codes)
        return tokenizer


def spill_large_groups(ids: torch.Tensor, embeddings: torch.Tensor, quantizer: ResidualKMeans) -> torch.Tensor:
    """Keep the disambiguation token below codebook_size K: the rows after the K-th of an ID group move to the
    nearest last-level codes (under the same coarser prefix) that still have room.

    ids (N, L+1) from make_collision_free; returned as is when no group is larger than K. Only rows with a
    suffix >= K change: their group shares all residual codes, so its rows are ones the quantizer cannot tell
    apart (identical embeddings, e.g. items that never co-occur), and balanced k-means keeps such a group in
    chunks of about N/K, which would make the model's vocabulary (and its output layer) grow with the
    catalogue. A moved row takes the next free suffix of its new code, so no other item's ID changes. Rows that
    find no room (a prefix holding more than K*K rows) keep their code and a suffix >= K.
    """
    size = quantizer.config.codebook_size
    if int(ids[:, -1].max()) < size:
        return ids
    ids = ids.clone()
    last = ids.shape[1] - 2  # column of the last residual level; ids[:, :last] is the prefix it refines
    codebook = quantizer.codebooks[last]  # (K, D)
    embeddings = embeddings.to(codebook)
    over = ids[:, -1] >= size  # (N,)
    settled = ~over  # rows whose ID is final; in each (prefix, code) their suffixes are 0, 1, ..., count-1
    over_rows = over.nonzero().squeeze(1)  # (M,) ascending, so rows keep their order inside a group
    groups, group_of = torch.unique(ids[over_rows, :-1], dim=0, return_inverse=True)  # (G, L), (M,)
    for g in range(groups.shape[0]):
        rows, prefix = over_rows[group_of == g], groups[g, :last]  # (m,), (last,)
        same_prefix = settled & (ids[:, :last] == prefix).all(1)  # (N,)
        taken = torch.bincount(ids[same_prefix, last], minlength=size)  # (K,) suffixes used per last-level code
        residual = embeddings[rows].mean(0)  # (D,) what the last level quantizes, rows being (near) identical
        if last > 0:
            residual = residual - quantizer.decode(prefix.unsqueeze(0))[0]
        order = torch.argsort((codebook - residual).square().sum(1), stable=True)  # (K,) nearest code first
        room = (size - taken[order]).clamp(min=0)  # (K,) free suffixes in preference order
        end = room.cumsum(0)  # (K,) rows placed once codes order[:i+1] are full
        placed = min(rows.numel(), int(end[-1]))
        slot = torch.searchsorted(end, torch.arange(placed, device=ids.device), right=True)  # (placed,)
        code = order[slot]
        ids[rows[:placed], last] = code
        ids[rows[:placed], -1] = taken[code] + torch.arange(placed, device=ids.device) - (end - room)[slot]
        ids[rows[placed:], -1] = size + torch.arange(rows.numel() - placed, device=ids.device)  # no room left
        settled[rows[:placed]] = True
    return ids


def _atomic(target: Path, write) -> None:
    """write(temp path) beside target, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
