"""`index_videos`: files, folders, globs or path lists -> one Parquet catalogue, a row per video, resumable.

Each video is analysed by `index_video` (the same function on every engine): content hash (sha256, streamed),
stream facts, shots (`detect_shots`, every `Shot` field), keyframes, per-shot motion, and tags and an embedding
from `model` (a VideoTagger or CLIP / SigLIP / X-CLIP folder). Without a model the embedding is a weight-free
descriptor (`weight_free_embedding`): colour histogram, camera/object motion and shot rhythm, because the embedded
tagger only knows synthetic shapes. Any failure on one file becomes that row's `error`, never the end of the run.

Resuming: a path whose size and mtime match its row is skipped without being read; a changed or new path is
hashed, and when those bytes were analysed before (any path) their analysis is reused, not recomputed. Rows are
committed in parts while the run goes (`index_table`), so a killed run loses at most the rows of the last
`part_seconds`. Identical files inside one run are each analysed: hashing happens in the workers, not the driver,
so a cluster never funnels every byte through one machine. A worker process that dies on a video (a segfault or
OOM kill in a decoder) gives that video a row with `WORKER_DIED` as its error, and the run goes on. One run at a
time writes a table: a second one on the same `out` is refused while the first holds `<out>.lock`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import numbers
import os
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch

from videoai.tokenize import read_video, video_info
from videoai.understand.index_engines import ENGINES, run_engine
from videoai.understand.index_table import (REUSE, CatalogueError, check_compatible, commit_part, existing_files,
                                            lock_table, merge, read_stats)
from videoai.understand.keyframes import keyframes
from videoai.understand.motion import ShotMotion, motion_stats
from videoai.understand.shots import Shot, detect_shots, rgb_to_hsv

__all__ = ["IndexConfig", "IndexResult", "CatalogueError", "find_videos", "index_video", "index_videos",
           "weight_free_embedding"]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".gif")
LIST_SUFFIXES = (".txt", ".lst", ".list")
HSV_BINS = (8, 3, 3)  # hue x saturation x value bins of the weight-free colour histogram
DESCRIPTOR = "weight-free: hsv-histogram-72 + motion-5 + shot-rhythm-3, v1"
DESCRIPTOR_DIM = math.prod(HSV_BINS) + 5 + 3
WORKER_DIED = "worker process died while indexing this file (a crash or out of memory)"


@dataclass
class IndexConfig:
    """How each video is analysed, and how often a run commits its rows."""

    top_k: int = 5  # tags kept per video
    keyframes_per_shot: int = 1
    keyframe_size: int = 144  # short side keyframes are picked at (360 costs ~2x for the same picks mostly)
    motion_size: int = 128  # short side motion is tracked at
    motion_grid: int = 16  # grid x grid points tracked per frame pair
    min_shot_len: int = 15
    descriptor_frames: int = 16  # frames sampled for the weight-free colour histogram
    device: str | None = None  # where a --model runs (None: where it loads, the CPU)
    part_rows: int = 16  # commit a part after this many rows ...
    part_seconds: float = 10.0  # ... or this many seconds, whichever comes first
    retry_errors: bool = False  # analyse again videos whose row has an error

    def __post_init__(self):
        for name in ("top_k", "keyframes_per_shot", "keyframe_size", "motion_size", "descriptor_frames", "part_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        grid = self.motion_grid
        if isinstance(grid, bool) or not isinstance(grid, numbers.Integral) or grid < 2:
            raise ValueError(f"motion_grid: expected an int >= 2, got {self.motion_grid!r}")
        if not isinstance(self.part_seconds, numbers.Real) or not self.part_seconds > 0:
            raise ValueError(f"part_seconds: expected a positive number, got {self.part_seconds!r}")


@dataclass
class IndexResult:
    """What a run did: rows in the table, and how each requested video was handled."""

    out: Path
    num_rows: int  # rows in the table now (this run's and earlier runs')
    analysed: int  # videos analysed by this run
    reused: int  # new paths whose bytes were analysed before (rows copied)
    skipped: int  # paths already in the table, unchanged
    errors: int  # rows of this run with an error
    seconds: float
    error_paths: list[str] = field(default_factory=list)

    @property
    def videos_per_second(self) -> float:
        return (self.analysed + self.reused) / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------------------- sources


def _is_video_name(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(VIDEO_SUFFIXES)


def _folder_videos(folder: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if _is_video_name(f)]
    if not found:
        raise ValueError(f"sources: folder {folder!r} holds no video files (looked for {', '.join(VIDEO_SUFFIXES)})")
    return found


def _list_entries(list_file: str) -> list[str]:
    """Lines of a path list (blank lines and # comments skipped), relative to the list's folder."""
    base = os.path.dirname(os.path.abspath(list_file))
    lines = Path(list_file).read_text().splitlines()
    entries = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    # A listed path that is gone becomes a row with its error: one missing file never stops a catalogue run.
    return [os.path.join(base, e) for e in entries]


def find_videos(sources) -> list[str]:
    """Files, folders (searched recursively), glob patterns and .txt/.lst path lists -> absolute video paths."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not isinstance(sources, (list, tuple)) or not sources:
        raise TypeError(f"sources: expected a path or a non-empty list of paths, got {sources!r}")
    paths: list[str] = []
    for source in sources:
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"sources: expected paths (str or os.PathLike), got {type(source).__name__}")
        source = os.fspath(source)
        if os.path.isdir(source):
            paths += _folder_videos(source)
        elif os.path.isfile(source):
            paths += _list_entries(source) if source.lower().endswith(LIST_SUFFIXES) else [source]
        elif glob.has_magic(source):
            matches = sorted(glob.glob(source, recursive=True))
            if not matches:
                raise ValueError(f"sources: pattern {source!r} matches no file")
            for match in matches:
                paths += _folder_videos(match) if os.path.isdir(match) else [match]
        else:
            raise ValueError(f"sources: no such file, folder or pattern {source!r}")
    return list(dict.fromkeys(os.path.abspath(p) for p in paths))  # absolute (stable across runs), in order, unique


# -------------------------------------------------------------------------------------------------------- one video


def file_sha256(path: str, chunk_bytes: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=2)
def _load_model(folder: str, device: str | None):
    """One load per process, without weight-loading bars: workers and Ray tasks reuse it for every video."""
    from transformers.utils import logging as transformers_logging

    from videoai.understand.tagging import load_video_model

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        return load_video_model(folder, device=device)
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def weight_free_embedding(frames: torch.Tensor, shots: list[Shot], motions: list[ShotMotion], width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 sampled frames + shots + motion -> (DESCRIPTOR_DIM,) float32 unit vector.

    Layout: [0:72] sqrt of the joint HSV histogram (8 hue x 3 saturation x 3 value bins; unit norm by itself),
    [72:77] shot-length-weighted camera pan, |log zoom|, |rotation|, object speed (tanh-squashed, per frame,
    pan and speed as fractions of the width) and moving fraction, [77:80] shot rhythm: tanh(shots per minute / 30),
    tanh(median shot seconds / 10), tanh(std of log shot seconds). Motion and rhythm blocks weigh 0.5 each.
    """
    hsv = rgb_to_hsv(frames.permute(0, 3, 1, 2).float())  # (T, H, W, 3) -> (T, 3, H, W), OpenCV 8-bit scale
    hue_bins, sat_bins, val_bins = HSV_BINS
    hue = (hsv[:, 0] * (hue_bins / 180.0)).long().clamp(0, hue_bins - 1)  # (T, H, W)
    sat = (hsv[:, 1] * (sat_bins / 256.0)).long().clamp(0, sat_bins - 1)
    val = (hsv[:, 2] * (val_bins / 256.0)).long().clamp(0, val_bins - 1)
    counts = torch.bincount(((hue * sat_bins + sat) * val_bins + val).flatten(), minlength=math.prod(HSV_BINS))
    colour = np.sqrt(counts.double().numpy() / counts.sum().item())  # (72,)

    weights = np.array([s.end_frame - s.start_frame for s in shots], dtype=np.float64)
    weights /= weights.sum()
    per_shot = np.array([[math.hypot(*m.pan) / width, abs(math.log(max(m.zoom, 1e-6))), abs(m.rotation),
                          m.object_speed / width, m.moving_fraction] for m in motions])  # (S, 5)
    mean = weights @ per_shot  # (5,)
    motion = np.concatenate([np.tanh(mean[:4] * np.array([100.0, 100.0, 1.0, 100.0])), mean[4:]])

    seconds = np.array([s.end_time - s.start_time for s in shots], dtype=np.float64)
    seconds = np.clip(np.nan_to_num(seconds, nan=0.0), 1e-3, None)
    per_minute = len(shots) / (seconds.sum() / 60.0)
    rhythm = np.tanh([per_minute / 30.0, np.median(seconds) / 10.0, np.log(seconds).std()])

    vector = np.concatenate([colour, 0.5 * motion, 0.5 * rhythm])  # (80,)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _model_outputs(path: str, model, tags, top_k: int) -> tuple[list[dict], list[float]]:
    """Tags (top_k, with scores) and the embedding of one video from a loaded tagger or zero-shot model."""
    from videoai.understand.embed import embed
    from videoai.understand.tagging import tag_video
    from videoai.understand.zero_shot import ZeroShotModel

    zero_shot = isinstance(model, ZeroShotModel)
    frames = read_video(path, num_frames=model.num_frames if zero_shot else model.config.num_frames).frames
    scored = [] if zero_shot and not tags else tag_video(frames, model, top_k=top_k, tags=tags)  # one decode, both
    return [{"tag": t, "score": s} for t, s in scored], embed(frames, model).tolist()


def _analyse(path: str, model, tags, config: IndexConfig) -> dict:
    info = video_info(path)
    shots = detect_shots(path, min_shot_len=config.min_shot_len)
    picked = keyframes(path, shots, config.keyframes_per_shot, size=config.keyframe_size)
    motions = motion_stats(path, shots, size=config.motion_size, grid=config.motion_grid)
    if model is None:
        frames = read_video(path, num_frames=config.descriptor_frames, size=64).frames  # (F, h, w, 3)
        found_tags, embedding = [], weight_free_embedding(frames, shots, motions, info.width).tolist()
    else:
        found_tags, embedding = _model_outputs(path, model, tags, config.top_k)
    motion_rows = []
    for motion in motions:
        row = asdict(motion)
        row.pop("shot")  # the shot is the same-index entry of `shots`
        motion_rows.append(row)
    return {
        "duration": info.duration, "fps": info.fps, "num_frames": info.num_frames, "width": info.width,
        "height": info.height, "shots": [asdict(s) for s in shots], "keyframes": picked, "motion": motion_rows,
        "tags": found_tags, "embedding": embedding,
    }


def index_video(path: str, *, model: str | None = None, tags: tuple[str, ...] | None = None,
                config: IndexConfig | None = None, known_hashes: frozenset = frozenset()) -> dict:
    """One video -> one catalogue row (dict); a file that cannot be read or analysed gets its `error` instead.

    known_hashes: sha256 digests already analysed; a match returns a row flagged to reuse that analysis.
    """
    start = time.perf_counter()
    config = IndexConfig() if config is None else config
    row: dict = {"path": path, "error": None}
    try:
        stat = os.stat(path)
        row["file_bytes"], row["mtime_ns"] = stat.st_size, stat.st_mtime_ns
        row["sha256"] = file_sha256(path)
        if row["sha256"] in known_hashes:
            row[REUSE] = True
        elif stat.st_size == 0:
            row["error"] = "empty file (0 bytes)"
        else:
            loaded = None if model is None else _load_model(model, config.device)
            row.update(_analyse(path, loaded, list(tags) if tags else None, config))
    except Exception as error:  # noqa: BLE001 - one bad file is a row with its error, never the end of the run
        lines = str(error).splitlines()
        row["error"] = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    row["elapsed_s"] = time.perf_counter() - start
    return row


def crashed_row(path: str) -> dict:
    """The row of a video whose worker process died on it: its stat and hash, `WORKER_DIED`, no analysis."""
    row: dict = {"path": path, "error": WORKER_DIED, "elapsed_s": None}
    try:  # hashed here, in the driver, for this one file: a rerun then skips it like any error (or retries it)
        stat = os.stat(path)
        row.update(file_bytes=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=file_sha256(path))
    except OSError:
        pass  # gone since: no stat, so the next run looks at it again
    return row


# ----------------------------------------------------------------------------------------------------------- a run


def _digest_folder(folder: Path) -> str:
    """sha256 over config.json and the weight files (names and bytes): the same weights anywhere match."""
    digest = hashlib.sha256()
    names = [p for p in sorted(folder.iterdir()) if p.is_file() and (
        p.name == "config.json" or p.suffix in (".safetensors", ".bin", ".pt", ".pth"))]
    for file in names:
        digest.update(file.name.encode())
        digest.update(file_sha256(str(file)).encode())
    return digest.hexdigest()


def _identity(model: str | None, tags: tuple[str, ...] | None, config: IndexConfig) -> dict:
    """What made the tags and embeddings; a table only takes rows made the same way."""
    if model is None:
        made_by = {"name": "weight-free", "embedding": DESCRIPTOR}
    else:
        folder = Path(model)
        config_file = folder / "config.json"
        model_type = json.loads(config_file.read_text()).get("model_type") if config_file.is_file() else None
        made_by = {"name": folder.resolve().name, "model_type": model_type, "digest": _digest_folder(folder)}
    return {"model": made_by, "tags": list(tags) if tags else None, "config": asdict(config)}


def _check_out(out) -> Path:
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out: expected a path to a .parquet file, got {type(out).__name__}")
    out = Path(os.path.abspath(out))
    if out.suffix.lower() != ".parquet":
        raise ValueError(f"out: expected a file name ending in .parquet, got {str(out)!r}")
    if out.is_dir():
        raise ValueError(f"out: {str(out)!r} is a folder, expected a .parquet file")
    parent = next((p for p in [out.parent, *out.parent.parents] if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"out: cannot write {str(out)!r} (folder {str(parent)!r} is not writable)")
    return out


def index_videos(sources, out, model=None, workers: int | None = None, engine: str = "local",
                 address: str | None = None, *, tags=None, config: IndexConfig | None = None,
                 progress: bool = True) -> IndexResult:
    """Index videos into the Parquet catalogue `out`, adding to it when it exists (see the module doc).

    Args:
        sources: a path or list of files, folders (recursive), glob patterns, or .txt/.lst files listing paths.
        model: None (weight-free descriptor as embedding, no tags) or a VideoTagger / CLIP / SigLIP / X-CLIP folder.
        workers: processes on this machine (engine "local", default 1), or at most that many videos at once
            on Ray (default: every CPU of the cluster).
        engine: "local" or "ray" (Ray Data; `address` of a running cluster, else a local one is started).
        tags: tags to score (needed for tags from a zero-shot model; a tagger scores its vocabulary when None).
    """
    start = time.perf_counter()
    config = IndexConfig() if config is None else config
    if not isinstance(config, IndexConfig):
        raise TypeError(f"config: expected an IndexConfig, got {type(config).__name__}")
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    if address is not None and engine != "ray":
        raise ValueError(f"address: only used with engine='ray', got engine={engine!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1):
        raise ValueError(f"workers: expected an int >= 1 or None, got {workers!r}")
    if tags is not None:
        if isinstance(tags, str) or not all(isinstance(t, str) and t for t in tags) or not tags:
            raise ValueError(f"tags: expected a non-empty list of non-empty strings, got {tags!r}")
        tags = tuple(tags)
    if model is not None and (not isinstance(model, (str, os.PathLike)) or not os.path.isdir(model)):
        raise ValueError(f"model: expected a local model folder, got {model!r}")
    out = _check_out(out)
    paths = find_videos(sources)
    with lock_table(out):
        return _index_locked(paths, out, model, workers, engine, address, tags, config, progress, start)


def _index_locked(paths: list[str], out: Path, model, workers, engine, address, tags, config: IndexConfig,
                  progress: bool, start: float) -> IndexResult:
    """`index_videos` once its arguments are checked and this run holds the lock of `out`."""
    if model is not None:
        model = os.path.abspath(model)
        try:
            _load_model(model, config.device)  # a broken model fails here, not as an error on every row
        except (OSError, ValueError, TypeError, RuntimeError) as error:
            raise ValueError(f"model: cannot load {model!r}: {str(error).splitlines()[0]}") from error
    identity = _identity(model, tags, config)
    files = existing_files(out)
    for file in files:
        check_compatible(file, identity, out)

    done = read_stats(files)
    usable = {p: r for p, r in done.items() if not (config.retry_errors and r.get("error"))}
    pending = [p for p in paths if not _unchanged(p, usable.get(p))]
    known = frozenset(r["sha256"] for r in usable.values() if r.get("sha256") and not r.get(REUSE))
    task = partial(index_video, model=model, tags=tags, config=config, known_hashes=known)

    from tqdm.auto import tqdm

    analysed = reused = errors = 0
    error_paths, buffer, sequence, last_commit = [], [], 0, time.monotonic()
    rows = run_engine(engine, pending, task, crashed=crashed_row, workers=workers, address=address)
    bar = tqdm(rows, total=len(pending), desc="index", unit="video", disable=None if progress else True)
    try:
        for row in bar:  # rows arrive as workers finish them, in any order
            buffer.append(row)
            reused += bool(row.get(REUSE))
            analysed += not row.get(REUSE)
            if row.get("error"):
                errors += 1
                error_paths.append(row["path"])
                bar.set_postfix(errors=errors)
            if len(buffer) >= config.part_rows or time.monotonic() - last_commit >= config.part_seconds:
                commit_part(out, buffer, identity, sequence)
                buffer, sequence, last_commit = [], sequence + 1, time.monotonic()
    finally:  # Ctrl-C or an engine failure: keep what was finished (a kill -9 loses only the buffer)
        bar.close()
        if buffer:
            commit_part(out, buffer, identity, sequence)
    num_rows = merge(out, identity) if pending or len(files) > 1 or not out.exists() else len(done)
    return IndexResult(out, num_rows, analysed, reused, len(paths) - len(pending), errors,
                       time.perf_counter() - start, error_paths)


def _unchanged(path: str, row: dict | None) -> bool:
    """The path's row is current: same size and mtime, so its bytes need not be read again."""
    if row is None or row.get("mtime_ns") is None or row.get("sha256") is None:
        return False
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return stat.st_size == row.get("file_bytes") and stat.st_mtime_ns == row.get("mtime_ns")
