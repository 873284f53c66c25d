"""The catalogue table of `index_videos`: its columns and metadata, parts committed during a run, the final merge.

A run holds an exclusive lock on `<out>.lock` from its first read to its merge, so two runs never interleave.
A run appends rows to small Parquet parts in `<out>.parts/` (each written to a temporary name and renamed, so a
killed run leaves only whole parts); the merge reads the old table and every part, keeps the newest row per path,
fills rows that reuse an earlier analysis of the same bytes, and renames the merged table over `out`.
Rows pass through Python dicts (not Arrow compute) because shots and motion are structs inferred from the
dataclasses `detect_shots` / `motion_stats` return, so fields added to `Shot` later flow into the table unchanged.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from videoai.catalogue_format import FORMAT_VERSION, METADATA_KEY, TOOL, catalogue_metadata
from videoai.files import atomic_write

REUSE = "_reuse"  # parts only: the row reuses the analysis of an earlier row with the same content hash
STAT_COLUMNS = ("path", "sha256", "file_bytes", "mtime_ns", "error")
# Columns copied from the row that analysed the same bytes; the rest (path, stat, timing) belong to the file.
ANALYSIS_COLUMNS = ("duration", "fps", "num_frames", "width", "height", "shots", "keyframes", "motion", "tags",
                    "embedding", "error")
FIXED_TYPES = {
    "path": pa.string(),
    "sha256": pa.string(),
    "file_bytes": pa.int64(),
    "mtime_ns": pa.int64(),
    "duration": pa.float64(),
    "fps": pa.float64(),
    "num_frames": pa.int64(),
    "width": pa.int32(),
    "height": pa.int32(),
    "keyframes": pa.list_(pa.int64()),
    "tags": pa.list_(pa.struct([("tag", pa.string()), ("score", pa.float32())])),
    "embedding": pa.list_(pa.float32()),  # fixed_size_list<float32>[D] in the merged table
    "error": pa.string(),
    "elapsed_s": pa.float64(),
}
COLUMNS = ("path", "sha256", "file_bytes", "mtime_ns", "duration", "fps", "num_frames", "width", "height", "shots",
           "keyframes", "motion", "tags", "embedding", "error", "elapsed_s")


class CatalogueError(ValueError):
    """`out` (or its parts folder) cannot take this run's rows: another tool's file, or another model's table."""


def parts_dir(out: Path) -> Path:
    """Where a run commits its parts: `<out>.parts/` beside the table."""
    return out.with_name(out.name + ".parts")


def lock_path(out: Path) -> Path:
    """The lock file a run holds while it reads and writes `out`: `<out>.lock` beside the table (left there)."""
    return out.with_name(out.name + ".lock")


@contextmanager
def lock_table(out: Path):
    """Hold the exclusive lock of `out` (an OS file lock, freed even when the process is killed), or raise
    CatalogueError when another run holds it: two merges at once would each drop the other's new rows."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path(out), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CatalogueError(f"out: {str(out)!r} is being written by another run (it holds {str(lock_path(out))!r});"
                             " wait for that run to end or pick another --out") from None
    try:
        yield
    finally:
        lock.release()


def check_compatible(file: Path, identity: dict, out: Path) -> None:
    """Raise CatalogueError unless `file` is a Parquet file made by this tool with the same model and tags."""
    try:
        schema = pq.read_schema(file)
    except (pa.ArrowInvalid, OSError) as error:
        raise CatalogueError(f"out: {str(out)!r} holds {str(file)!r}, which is not a readable Parquet file "
                             f"({str(error).splitlines()[0]}); pick another --out or remove it") from None
    meta = catalogue_metadata(schema)
    if meta is None:
        raise CatalogueError(f"out: {str(file)!r} is a Parquet file made by another tool (no {TOOL} metadata); "
                             "pick another --out, this run will not append to it")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CatalogueError(f"out: {str(file)!r} has {TOOL} format {meta.get('format_version')}, "
                             f"this version writes {FORMAT_VERSION}; pick another --out")
    for key in ("model", "tags"):
        if meta.get(key) != identity.get(key):
            raise CatalogueError(f"out: {str(file)!r} was indexed with {key} {meta.get(key)!r}, this run uses "
                                 f"{identity.get(key)!r}; pick another --out or rerun with the same {key}")


def existing_files(out: Path) -> list[Path]:
    """The table (when present) then its committed parts, oldest first (part names sort by commit time)."""
    files = [out] if out.exists() else []
    folder = parts_dir(out)
    if folder.is_dir():
        files += sorted(p for p in folder.glob("part-*.parquet") if p.is_file())
    return files


def read_stats(files: list[Path]) -> dict[str, dict]:
    """path -> its newest row's path, sha256, file_bytes, mtime_ns and error (what resuming needs, no embeddings)."""
    latest: dict[str, dict] = {}
    for file in files:
        names = pq.read_schema(file).names
        for row in pq.read_table(file, columns=[c for c in STAT_COLUMNS + (REUSE,) if c in names]).to_pylist():
            latest[row["path"]] = row
    return latest


def _column(name: str, values: list) -> pa.Array:
    if name in FIXED_TYPES:
        return pa.array(values, type=FIXED_TYPES[name])
    return pa.array(values)  # shots / motion: list<struct> inferred from the dataclasses' fields


def build_table(rows: list[dict], identity: dict, *, with_reuse: bool) -> pa.Table:
    """Rows (dicts) -> a table with our metadata; `with_reuse` keeps the parts-only reuse flag."""
    names = list(COLUMNS) + ([REUSE] if with_reuse else [])
    arrays = [_column(n, [r.get(n) for r in rows]) if n != REUSE else pa.array([bool(r.get(REUSE)) for r in rows])
              for n in names]
    meta = {**identity, "tool": TOOL, "format_version": FORMAT_VERSION, "hash": "sha256",
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return pa.Table.from_arrays(arrays, names=names).replace_schema_metadata({METADATA_KEY: json.dumps(meta)})


def commit_part(out: Path, rows: list[dict], identity: dict, sequence: int) -> Path:
    """Write rows as one part, atomically (temporary name + rename); returns its path."""
    folder = parts_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"part-{time.time_ns():020d}-{os.getpid()}-{sequence:06d}.parquet"
    table = build_table(rows, identity, with_reuse=True)
    atomic_write(part, lambda temporary: pq.write_table(table, temporary))
    return part


def merge(out: Path, identity: dict) -> int:
    """Old table + parts -> one table at `out` (newest row per path, sorted by path), then drop the parts; rows."""
    latest: dict[str, dict] = {}
    analysed: dict[str, dict] = {}  # sha256 -> a row that analysed those bytes (newest, one without error first)
    for file in existing_files(out):
        for row in pq.read_table(file).to_pylist():
            latest[row["path"]] = row
            digest = row.get("sha256")
            # Superseded rows count too: a touched file's new row reuses the analysis of its own old row.
            if not row.get(REUSE) and digest is not None and not (
                    row.get("error") and digest in analysed and not analysed[digest].get("error")):
                analysed[digest] = row
    rows = []
    for path in sorted(latest):
        row = dict(latest[path])
        if row.pop(REUSE, False):
            source = analysed.get(row["sha256"])
            if source is None:  # its twin's row was replaced since: index it again on the next run
                row["error"] = "reused an analysis no longer in the table; rerun to index it"
                row["mtime_ns"] = None
            else:
                row.update({name: source.get(name) for name in ANALYSIS_COLUMNS})
        rows.append(row)
    table = build_table(rows, identity, with_reuse=False)
    dims = {len(r["embedding"]) for r in rows if r.get("embedding") is not None}
    if len(dims) > 1:
        raise CatalogueError(f"out: rows of {str(out)!r} have embeddings of sizes {sorted(dims)}; expected one size")
    if dims:
        dim = dims.pop()
        index = table.schema.get_field_index("embedding")
        table = table.set_column(index, "embedding", table["embedding"].cast(pa.list_(pa.float32(), dim)))
        meta = {**catalogue_metadata(table.schema), "embedding_dim": dim}
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)})
    atomic_write(out, lambda temporary: pq.write_table(table, temporary))
    shutil.rmtree(parts_dir(out), ignore_errors=True)
    return table.num_rows


def rows_close(a, b, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Rows (nested dicts / lists) equal, floats within tolerance: runs in other processes may sum in another order."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(rows_close(a[k], b[k], rel_tol, abs_tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(rows_close(x, y, rel_tol, abs_tol) for x, y in zip(a, b))
    return a == b
