"""Content-based semantic IDs from a `videoai index` catalogue, so videos nobody has watched yet can be recommended.

OneRec/TIGER tokenise items from their content: an item's semantic ID comes from its embedding, not from who
watched it, so a new video gets an ID next to similar videos and the model (which scores ID tokens shared by many
items) can generate it. `read_catalogue` reads the Parquet table `videoai index` writes; `tokenizer_from_catalogue`
fits a SemanticIDTokenizer on its (normalised) content embeddings, optionally concatenated with co-occurrence
embeddings of the items that have interactions. Build the model with `model_for_tokenizer(tokenizer,
**CONTENT_ID_MODEL)` (as `videoai recommend train --catalogue` does): prefix-node vectors of deeper levels and the
item head are learned from watched items only and would rank unwatched ones last (benchmarks/bench_cold_start.py).

Item ids: a catalogue row's item id is its `item_id` column when the table has one, else the file stem of its
`path` ("videos/clip_00042.mp4" -> "clip_00042"); ids made only of digits become ints ("0042" -> 42), the rule the
interaction-log readers use, so catalogue and log ids compare equal.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np
import torch
import torch.nn.functional as F

from videoai.catalogue_format import FORMAT_VERSION, TOOL, catalogue_metadata

from .cooccurrence import cooccurrence_embeddings
from .data import _parse_id
from .semantic_ids import SemanticIDTokenizer

# model_for_tokenizer overrides for content IDs: node vectors at the first level only and no item head
CONTENT_ID_MODEL = {"node_levels": 1, "item_loss_weight": 0.0, "item_score_weight": 0.0}

ID_COLUMN = "item_id"


@dataclass
class Catalogue:
    """Item ids and content embeddings (N, D) float32 of a catalogue's usable rows, and what was skipped."""

    path: str
    item_ids: list
    embeddings: torch.Tensor  # (N, D) float32, as stored (not normalised)
    model: dict | str | None  # what made the embeddings, from the table's metadata
    skipped: dict[str, list] = field(default_factory=dict)  # reason -> item ids of rows left out

    @property
    def num_skipped(self) -> int:
        return sum(len(ids) for ids in self.skipped.values())

    def skip_reason(self, item) -> str | None:
        """Why `item`'s row was left out, or None if it was not."""
        return next((reason for reason, ids in self.skipped.items() if item in ids), None)

    def summary(self) -> str:
        """One line: rows used, rows skipped and why."""
        text = f"{len(self.item_ids)} videos with {self.embeddings.shape[1]}-d embeddings"
        if self.num_skipped:
            reasons = ", ".join(f"{len(ids)} {reason}" for reason, ids in self.skipped.items() if ids)
            text += f"; skipped {self.num_skipped} row(s): {reasons}"
        return text


def _item_ids(paths: list, column: list | None) -> list:
    if column is not None:
        return [_parse_id(value.strip()) if isinstance(value, str) else value for value in column]
    return [_parse_id(PurePath(p).stem) if p is not None else None for p in paths]


def _embedding_matrix(column, name: str, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Arrow list column (n rows) -> (matrix (n, D) float32 with zeros for unusable rows, usable mask (n,))."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
            or pa.types.is_fixed_size_list(column.type)) or not pa.types.is_floating(column.type.value_type):
        raise ValueError(f"{name}: {path!r} has an embedding column of type {column.type}, expected a list of floats")
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)  # (n,)
    dims = set(lengths[lengths > 0].tolist())
    if len(dims) > 1:
        raise ValueError(f"{name}: {path!r} has embeddings of sizes {sorted(dims)}, expected one size")
    dim = dims.pop() if dims else 0
    matrix = np.zeros((len(column), dim), dtype=np.float32)
    present = lengths == dim if dim else np.zeros(len(column), dtype=bool)
    if dim:
        # flatten() drops null rows' slots, so it lines up with the rows that have an embedding
        matrix[present] = column.filter(pa.array(present)).flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    usable = present & np.isfinite(matrix).all(1)
    return matrix, usable


def read_catalogue(path: str | os.PathLike, *, name: str = "catalogue") -> Catalogue:
    """Read a `videoai index` Parquet table into item ids and content embeddings; rows with an error or without
    a (finite) embedding are skipped and listed in `skipped`. `name` is the argument named in error messages."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path to a .parquet file, got {type(path).__name__}")
    path = str(path)
    if not Path(path).is_file():
        raise ValueError(f"{name}: no such file {path!r}")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise ValueError(f"{name}: {path!r} is not a readable Parquet file ({str(error).splitlines()[0]})") from None
    meta = catalogue_metadata(schema)
    if meta is None:
        raise ValueError(f"{name}: {path!r} is a Parquet file made by another tool (no {TOOL} metadata); "
                         f"expected a table written by `{TOOL} ... --out {Path(path).name}`")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{name}: {path!r} has {TOOL} format {meta.get('format_version')!r}, this version reads "
                         f"{FORMAT_VERSION}; upgrade videoai")
    missing = [c for c in ("path", "embedding", "error") if c not in schema.names]
    if missing:
        raise ValueError(f"{name}: {path!r} has no {', '.join(missing)} column(s); expected a {TOOL} table")
    table = pq.read_table(path, columns=["path", "embedding", "error"] + [ID_COLUMN] * (ID_COLUMN in schema.names))
    paths = table["path"].to_pylist()
    errors = table["error"].to_pylist()
    ids = _item_ids(paths, table[ID_COLUMN].to_pylist() if ID_COLUMN in schema.names else None)
    matrix, usable = _embedding_matrix(table["embedding"], name, path)

    skipped: dict[str, list] = {"with an error": [], "without an embedding": [], "without an item id": []}
    keep = []
    for row, (item, error) in enumerate(zip(ids, errors)):
        if item is None or item == "":
            skipped["without an item id"].append(paths[row])
        elif error:
            skipped["with an error"].append(item)
        elif not usable[row]:
            skipped["without an embedding"].append(item)
        else:
            keep.append(row)
    if not keep:
        raise ValueError(f"{name}: {path!r} has no row with an embedding and no error ({len(ids)} row(s))")
    item_ids = [ids[row] for row in keep]
    rows_of: dict = {}
    for row in keep:
        rows_of.setdefault(ids[row], []).append(paths[row])
    twice = next(((item, where) for item, where in rows_of.items() if len(where) > 1), None)
    if twice is not None:
        raise ValueError(f"{name}: item id {twice[0]!r} is given by {len(twice[1])} rows ({', '.join(twice[1][:3])}); "
                         f"give the videos unique file names or add a unique {ID_COLUMN!r} column")
    embeddings = torch.from_numpy(matrix[keep])  # (N, D)
    return Catalogue(path, item_ids, embeddings, meta.get("model"), {k: v for k, v in skipped.items() if v})


def check_log_items(catalogue: Catalogue, log_items: Sequence, log: str = "log", *, name: str = "catalogue",
                    log_name: str = "log") -> None:
    """Raise ValueError naming both arguments when items of a log have no usable catalogue row (cold catalogue
    items, in no log, are fine); `log` is the log's file name, `name` / `log_name` the arguments' names."""
    known = set(catalogue.item_ids)
    missing = [item for item in dict.fromkeys(log_items) if item not in known]
    if missing:
        examples = ", ".join(f"{item!r} ({catalogue.skip_reason(item) or 'not in the table'})" for item in missing[:3])
        raise ValueError(f"{log_name}: {len(missing)} item(s) of {log!r} have no usable row in {name} "
                         f"{catalogue.path!r}, e.g. {examples}; catalogue item ids are its {ID_COLUMN!r} column, "
                         f"else the file stems of its paths")


def content_vectors(embeddings: torch.Tensor, center: bool = True) -> torch.Tensor:
    """(N, D) -> (N, D) unit rows; centred on the catalogue mean first so the shared component does not dominate."""
    embeddings = embeddings.float()
    if center:
        embeddings = embeddings - embeddings.mean(0, keepdim=True)
    return F.normalize(embeddings, dim=1)


def tokenizer_from_catalogue(item_ids: Sequence, content_embeddings: torch.Tensor,
                             sequences: Sequence[Sequence] | None = None, fuse_weight: float = 0.0, levels: int = 2,
                             codebook_size: int = 256, embedding_dim: int = 64, window: int = 3, center: bool = True,
                             balanced: bool = True, seed: int = 0, iters: int = 20) -> SemanticIDTokenizer:
    """SemanticIDTokenizer over the whole catalogue from content embeddings (N, D), one row per item id.

    Every item gets an ID from its content, watched or not. With sequences (users' item ids, training split only)
    and fuse_weight > 0, each row is [content unit vector, fuse_weight x co-occurrence unit vector]: items with
    interactions are placed by both, items without any (cold) have a zero co-occurrence part and are placed by
    content. fuse_weight=0 ignores sequences.
    """
    if not isinstance(content_embeddings, torch.Tensor) or content_embeddings.ndim != 2:
        got = getattr(content_embeddings, "shape", type(content_embeddings).__name__)
        raise ValueError(f"content_embeddings: expected a (N, D) tensor, got {got}")
    if not content_embeddings.is_floating_point() or not bool(torch.isfinite(content_embeddings).all()):
        raise ValueError("content_embeddings: expected finite floating-point values")
    item_ids = list(item_ids)
    if len(item_ids) != content_embeddings.shape[0]:
        raise ValueError(f"item_ids: expected one id per embedding row ({content_embeddings.shape[0]}), "
                         f"got {len(item_ids)}")
    if isinstance(fuse_weight, bool) or not isinstance(fuse_weight, (int, float)) or not (
            math.isfinite(fuse_weight) and fuse_weight >= 0):
        raise ValueError(f"fuse_weight: expected a finite number >= 0, got {fuse_weight!r}")
    vectors = content_vectors(content_embeddings, center)  # (N, D)
    if fuse_weight > 0:
        if sequences is None:
            raise ValueError("sequences: fuse_weight > 0 needs the users' item sequences (training split)")
        index = {item: i for i, item in enumerate(item_ids)}
        unknown = [item for seq in sequences for item in seq if item not in index]
        if unknown:
            raise ValueError(f"sequences: {len(unknown)} item(s) are not in item_ids (the catalogue), "
                             f"e.g. {list(dict.fromkeys(unknown))[:5]!r}")
        indexed = [torch.tensor([index[item] for item in seq], dtype=torch.long) for seq in sequences if len(seq)]
        dim = min(embedding_dim, len(item_ids) - 1)
        behaviour = cooccurrence_embeddings(indexed, len(item_ids), dim, window=window, seed=seed)  # (N, d), 0 = cold
        vectors = torch.cat([vectors, fuse_weight * behaviour], 1)  # (N, D + d)
    tokenizer = SemanticIDTokenizer(levels, codebook_size, balanced, iters=iters, seed=seed)
    return tokenizer.fit(vectors, item_ids)
