"""index_videos: a folder of tiny clips (plus corrupt and empty files) -> one Parquet catalogue, resumable."""

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import videoai.understand.index as index_module
import videoai.understand.index_engines as index_engines
from videoai.tokenize import write_video
from videoai.understand.index import (DESCRIPTOR_DIM, WORKER_DIED, CatalogueError, IndexConfig, find_videos,
                                      index_videos, weight_free_embedding)
from videoai.understand.index_table import parts_dir, rows_close
from videoai.understand.shots import Shot
from videoai.understand.tagger import DEFAULT_TAGGER_DIR

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real clips not found at {DATA}")
TIMING = ["elapsed_s"]


def make_clip(path: Path, seed: int, num_frames: int = 16, cut_at: int | None = None) -> Path:
    """A small clip: a coloured square drifting over a flat background; `cut_at` switches to other colours."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)  # (scene, background/square, rgb)
    frames = np.empty((num_frames, 36, 48, 3), dtype=np.uint8)
    for t in range(num_frames):
        scene = int(cut_at is not None and t >= cut_at)
        frames[t] = colours[scene, 0]
        x = 4 + t % 24
        frames[t, 10:22, x:x + 12] = colours[scene, 1]
    write_video(frames, path, fps=10)
    return path


def make_folder(folder: Path) -> Path:
    """cut.mp4 (a cut at frame 20), more/clip1.mp4, clip2.mp4, corrupt.mp4, empty.mp4 and a non-video file."""
    (folder / "more").mkdir(parents=True)
    make_clip(folder / "cut.mp4", seed=0, num_frames=40, cut_at=20)
    make_clip(folder / "more" / "clip1.mp4", seed=1)
    make_clip(folder / "clip2.mp4", seed=2)
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.md").write_text("not a video, not collected from a folder")
    return folder


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("library"))


@pytest.fixture(scope="module")
def catalogue(library, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "catalogue.parquet"
    result = index_videos(library, out, progress=False)
    return out, result


def rows_by_path(out) -> dict[str, dict]:
    return {r["path"]: r for r in pq.read_table(out).drop_columns(TIMING).to_pylist()}


def test_one_row_per_video_with_errors_as_rows(library, catalogue):
    out, result = catalogue
    rows = rows_by_path(out)
    videos = {str(library / n) for n in ("cut.mp4", "more/clip1.mp4", "clip2.mp4", "corrupt.mp4", "empty.mp4")}
    assert set(rows) == videos
    assert (result.analysed, result.reused, result.skipped, result.errors, result.num_rows) == (5, 0, 0, 2, 5)
    assert "VideoReadError" in rows[str(library / "corrupt.mp4")]["error"]
    assert rows[str(library / "empty.mp4")]["error"] == "empty file (0 bytes)"
    for path in videos - {str(library / "corrupt.mp4"), str(library / "empty.mp4")}:
        row = rows[path]
        assert row["error"] is None
        assert row["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert row["file_bytes"] == os.path.getsize(path)
        assert (row["width"], row["height"], row["fps"]) == (48, 36, 10.0)
        assert row["duration"] == pytest.approx(row["num_frames"] / 10.0)
        shots = row["shots"]
        assert shots[0]["start_frame"] == 0 and shots[-1]["end_frame"] == row["num_frames"]
        assert all(a["end_frame"] == b["start_frame"] for a, b in zip(shots, shots[1:]))
        assert len(row["motion"]) == len(shots)
        assert all(0 <= k < row["num_frames"] for k in row["keyframes"]) and row["keyframes"]
        assert row["tags"] == []  # no model: no tags
        assert math.isclose(np.linalg.norm(row["embedding"]), 1.0, rel_tol=1e-5)
    assert [s["start_frame"] for s in rows[str(library / "cut.mp4")]["shots"]] == [0, 20]


def test_schema_and_metadata(catalogue):
    out, _ = catalogue
    schema = pq.read_schema(out)
    assert schema.field("embedding").type == pa.list_(pa.float32(), DESCRIPTOR_DIM)
    shot_fields = {f.name for f in schema.field("shots").type.value_type}
    assert {f.name for f in fields(Shot)} <= shot_fields  # every Shot field, including ones added later
    meta = json.loads(schema.metadata[b"videoai.index"])
    assert meta["tool"] == "videoai index" and meta["model"]["name"] == "weight-free"
    assert meta["embedding_dim"] == DESCRIPTOR_DIM and meta["hash"] == "sha256"
    assert not parts_dir(out).exists()


def test_rerun_skips_reuses_and_replaces(library, catalogue, tmp_path):
    source, _ = catalogue
    folder = tmp_path / "lib"
    shutil.copytree(library, folder)
    out = tmp_path / "cat.parquet"
    shutil.copy(source, out)  # paths differ (another folder), bytes the same: every video is a reuse
    first = index_videos(folder, out, progress=False)
    assert (first.analysed, first.reused, first.skipped) == (0, 5, 0)
    again = index_videos(folder, out, progress=False)
    assert (again.analysed, again.reused, again.skipped, again.num_rows) == (0, 0, 5, 10)
    copied = rows_by_path(out)
    for name in ("cut.mp4", "corrupt.mp4", "empty.mp4"):
        old, new = copied[str(library / name)], copied[str(folder / name)]
        assert {k: v for k, v in old.items() if k != "path"} == {k: v for k, v in new.items() if k != "path"}
    os.utime(folder / "clip2.mp4")  # touched, same bytes: hashed again, analysis reused
    make_clip(folder / "cut.mp4", seed=7)  # new bytes at the same path: analysed, its row replaced
    third = index_videos(folder, out, progress=False)
    assert (third.analysed, third.reused, third.skipped, third.num_rows) == (1, 1, 3, 10)
    rows = rows_by_path(out)
    assert [s["start_frame"] for s in rows[str(folder / "cut.mp4")]["shots"]] == [0]
    assert rows[str(folder / "clip2.mp4")]["embedding"] == rows[str(library / "clip2.mp4")]["embedding"]
    retried = index_videos(folder, out, config=IndexConfig(retry_errors=True), progress=False)
    assert (retried.analysed, retried.skipped, retried.errors) == (2, 3, 2)


def test_resume_after_a_kill_loses_nothing(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(14):
        make_clip(folder / f"v{i:02d}.mp4", seed=100 + i, num_frames=12)
    out = tmp_path / "cat.parquet"
    script = ("from videoai.understand.index import IndexConfig, index_videos\n"
              f"index_videos({str(folder)!r}, {str(out)!r}, config=IndexConfig(part_rows=1), progress=False)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    parts = parts_dir(out)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(parts.glob("part-*.parquet"))) < 3 and process.poll() is None:
        time.sleep(0.01)
    with pytest.raises(CatalogueError, match="out: .* is being written by another run"):
        index_videos(folder, out, progress=False)  # a second run on the same table, while the first holds it
    assert process.poll() is None, "the indexing run finished before it could be killed"
    process.send_signal(signal.SIGKILL)  # the OS frees its lock: the next run goes ahead
    process.wait()
    committed = {p for part in parts.glob("part-*.parquet") for p in pq.read_table(part)["path"].to_pylist()}
    assert len(committed) >= 3 and not out.exists()
    result = index_videos(folder, out, progress=False)
    assert result.skipped == len(committed) and result.analysed == 14 - len(committed)
    table = pq.read_table(out)
    assert sorted(table["path"].to_pylist()) == sorted(str(p) for p in folder.glob("*.mp4"))  # all, once each
    assert table["error"].null_count == 14 and not parts.exists()


def test_ray_local_cluster_gives_the_workers_1_table(library, catalogue, tmp_path):
    ray = pytest.importorskip("ray")
    source, _ = catalogue
    out = tmp_path / "ray.parquet"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        result = index_videos(library, out, engine="ray", progress=False)
    finally:
        ray.shutdown()
    assert (result.analysed, result.errors) == (5, 2)
    assert same_rows(rows_by_path(out), rows_by_path(source))


# Imported by the spawned workers from a file on sys.path (pickle finds a function by module and name).
CRASHING_TASK = """
import os

from videoai.understand.index import index_video


def index_or_die(path, **kwargs):
    if os.path.basename(path) == "die.mp4":
        os._exit(70)  # no Python exception: the process is gone, as after a segfault or an OOM kill
    return index_video(path, **kwargs)
"""


def index_with_a_crash(library, catalogue, tmp_path, monkeypatch, **engine) -> None:
    """Index the library plus die.mp4, whose worker process exits at once; check that only die.mp4 lost its row."""
    source, _ = catalogue
    folder = tmp_path / "lib"
    shutil.copytree(library, folder)
    make_clip(folder / "die.mp4", seed=9)
    (tmp_path / "crashing_task.py").write_text(CRASHING_TASK)
    monkeypatch.syspath_prepend(tmp_path)  # spawned workers start with this process's sys.path
    import crashing_task

    monkeypatch.setattr(index_module, "index_video", crashing_task.index_or_die)
    out = tmp_path / "cat.parquet"
    result = index_videos(folder, out, progress=False, **engine)
    rows = rows_by_path(out)
    died = rows.pop(str(folder / "die.mp4"))
    assert died["error"] == WORKER_DIED and died["embedding"] is None
    assert died["sha256"] == hashlib.sha256((folder / "die.mp4").read_bytes()).hexdigest()
    assert (result.analysed, result.errors, result.num_rows) == (6, 3, 6)
    moved = json.loads(json.dumps(rows_by_path(source)).replace(str(library), str(folder)))  # errors name paths
    assert rows.keys() == moved.keys()
    for path, row in rows.items():  # every other video as in a run without the crash
        assert same_rows(row, moved[path]), path
    again = index_videos(folder, out, progress=False, **engine)  # the dead one is an error row like any other
    assert (again.analysed, again.skipped) == (0, 6)


@pytest.mark.parametrize("workers", [1, 2])  # one worker runs in a process of its own too
def test_a_worker_that_dies_costs_one_row_not_the_run(library, catalogue, tmp_path, monkeypatch, workers):
    index_with_a_crash(library, catalogue, tmp_path, monkeypatch, workers=workers)


@pytest.mark.parametrize("max_blocks", [4096, 2])  # 2: the crashing video's block also holds others
def test_ray_gives_a_crashing_video_one_row_instead_of_retrying_forever(library, catalogue, tmp_path, monkeypatch,
                                                                        max_blocks):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(index_engines, "MAX_RAY_BLOCKS", max_blocks)
    # Ray's workers do not see this process's sys.path: they get the task's module through PYTHONPATH.
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning",
             runtime_env={"env_vars": env})
    try:
        index_with_a_crash(library, catalogue, tmp_path, monkeypatch, engine="ray")
    finally:
        ray.shutdown()


def test_weight_free_worker_imports_no_transformers(library):
    # What a spawned worker imports: index_video's module; transformers (~5 s) only comes with a --model.
    script = ("import sys\nfrom videoai.understand.index import index_video\n"
              f"row = index_video({str(library / 'cut.mp4')!r})\n"
              "print(row['error'], sorted({'transformers', 'diffusers', 'peft'} & set(sys.modules)))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["None", "[]"], result.stdout


def same_rows(a: dict, b: dict) -> bool:
    """Equal tables, floats to 1e-6 relative (another process may sum in another order)."""
    return rows_close(a, b)


def test_sources_lists_and_globs(library, tmp_path):
    listing = tmp_path / "videos.txt"
    os.symlink(library / "cut.mp4", tmp_path / "cut.mp4")
    listing.write_text("# catalogue\ncut.mp4\n\ngone.mp4\n")
    assert find_videos(listing) == [str(tmp_path / "cut.mp4"), str(tmp_path / "gone.mp4")]
    assert find_videos(str(library / "**" / "clip*.mp4")) == [str(library / "clip2.mp4"),
                                                               str(library / "more" / "clip1.mp4")]
    assert find_videos([library / "cut.mp4", library / "cut.mp4"]) == [str(library / "cut.mp4")]
    result = index_videos(listing, tmp_path / "list.parquet", progress=False)
    rows = rows_by_path(tmp_path / "list.parquet")
    assert result.errors == 1 and "FileNotFoundError" in rows[str(tmp_path / "gone.mp4")]["error"]
    assert rows[str(tmp_path / "cut.mp4")]["error"] is None


def test_bad_inputs_are_clear_and_keep_what_exists(library, tmp_path):
    with pytest.raises(ValueError, match="sources: no such file"):
        index_videos(tmp_path / "nowhere", tmp_path / "a.parquet")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("x")
    with pytest.raises(ValueError, match="holds no video files"):
        index_videos(tmp_path / "docs", tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="pattern .* matches no file"):
        index_videos(str(tmp_path / "*.mkv"), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="out: expected a file name ending in .parquet"):
        index_videos(library, tmp_path / "a.csv")
    with pytest.raises(ValueError, match="out: cannot write"):
        index_videos(library, tmp_path / "docs" / "a.md" / "x.parquet")
    with pytest.raises(ValueError, match="engine: expected one of"):
        index_videos(library, tmp_path / "a.parquet", engine="spark")
    with pytest.raises(ValueError, match="address: only used with engine='ray'"):
        index_videos(library, tmp_path / "a.parquet", address="auto")
    with pytest.raises(ValueError, match="model: expected a local model folder"):
        index_videos(library, tmp_path / "a.parquet", model=tmp_path / "no-model")
    with pytest.raises(ValueError, match="keyframes_per_shot"):
        IndexConfig(keyframes_per_shot=0)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), foreign)
    before = foreign.read_bytes()
    with pytest.raises(CatalogueError, match="made by another tool"):
        index_videos(library, foreign)
    assert foreign.read_bytes() == before


def test_model_tags_embeddings_and_no_mixing(library, catalogue, tmp_path):
    source, _ = catalogue
    mixed = tmp_path / "mixed.parquet"
    shutil.copy(source, mixed)
    with pytest.raises(CatalogueError, match="indexed with model"):
        index_videos(library / "cut.mp4", mixed, model=DEFAULT_TAGGER_DIR)
    out = tmp_path / "tagged.parquet"
    index_videos(library / "cut.mp4", out, model=DEFAULT_TAGGER_DIR, config=IndexConfig(top_k=3), progress=False)
    row = pq.read_table(out).to_pylist()[0]
    scores = [t["score"] for t in row["tags"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert math.isclose(np.linalg.norm(row["embedding"]), 1.0, rel_tol=1e-5)
    meta = json.loads(pq.read_schema(out).metadata[b"videoai.index"])
    assert meta["model"]["name"] == "tagger" and meta["model"]["model_type"] and len(meta["model"]["digest"]) == 64


def test_weight_free_embedding_layout():
    shot = Shot(0, 10, 0.0, 1.0)
    from videoai.understand.motion import ShotMotion

    still = ShotMotion(shot, (0.0, 0.0), 1.0, 0.0, 0.0, None, 0.0)
    red = torch.zeros(4, 8, 8, 3, dtype=torch.uint8)
    red[..., 0] = 200
    blue = torch.zeros(4, 8, 8, 3, dtype=torch.uint8)
    blue[..., 2] = 200
    a = weight_free_embedding(red, [shot], [still], 8)
    b = weight_free_embedding(blue, [shot], [still], 8)
    assert a.shape == (DESCRIPTOR_DIM,) and a.dtype == np.float32
    assert math.isclose(float(np.linalg.norm(a)), 1.0, rel_tol=1e-6)
    assert float(a[:72] @ b[:72]) == 0.0  # different hue bins
    assert np.array_equal(a, weight_free_embedding(red, [shot], [still], 8))


@needs_data
def test_shared_clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("counter.mp4", "fades.mp4"):
        os.symlink(DATA / name, folder / name)
    index_videos(folder, tmp_path / "cat.parquet", progress=False)
    rows = rows_by_path(tmp_path / "cat.parquet")
    counter, fades = rows[str(folder / "counter.mp4")], rows[str(folder / "fades.mp4")]
    assert (counter["num_frames"], counter["fps"], counter["width"], counter["height"]) == (30, 10.0, 1920, 1080)
    assert (fades["num_frames"], fades["fps"]) == (250, 25.0)
    assert [s["start_frame"] for s in fades["shots"]] == [0]  # a fade between flat frames is no shot change
