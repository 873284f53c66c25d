"""`videoai index`: folder -> Parquet catalogue, reruns add nothing twice, --workers 2 matches 1, one-line errors."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from videoai.understand.index_table import lock_table
from videoai.understand.tagger import DEFAULT_TAGGER_DIR


@pytest.fixture(scope="module")
def library(tmp_path_factory, clips, corrupt_video):
    """The two session clips, a corrupt file and an empty one."""
    folder = tmp_path_factory.mktemp("library")
    for video in sorted(clips[0].glob("*.mp4")):
        shutil.copy(video, folder / video.name)
    shutil.copy(corrupt_video, folder / "corrupt.mp4")
    (folder / "empty.mp4").write_bytes(b"")
    return folder


def table_rows(path) -> list[dict]:
    return pq.read_table(path).drop_columns(["elapsed_s"]).to_pylist()


def test_index_a_folder_then_rerun(cli, library, tmp_path):
    out = tmp_path / "catalogue.parquet"
    code, stdout, err = cli("index", library, "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert (summary["rows"], summary["analysed"], summary["errors"]) == (4, 4, 2)
    rows = {r["path"].rsplit("/", 1)[1]: r for r in table_rows(out)}
    assert rows["empty.mp4"]["error"] and rows["corrupt.mp4"]["error"]
    assert all(rows[n]["error"] is None and len(rows[n]["embedding"]) == 80 for n in rows if n.startswith("clip"))
    code, stdout, err = cli("index", library, "--out", out)
    assert code == 0, err
    assert "4 row(s)" in stdout and "0 analysed" in stdout and "4 unchanged" in stdout


def test_workers_2_gives_the_workers_1_table(cli, library, tmp_path):
    assert cli("index", library, "--out", tmp_path / "one.parquet")[0] == 0
    code, _, err = cli("index", library, "--out", tmp_path / "two.parquet", "--workers", "2")
    assert code == 0, err
    one, two = table_rows(tmp_path / "one.parquet"), table_rows(tmp_path / "two.parquet")
    assert [r["path"] for r in one] == [r["path"] for r in two]
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        assert {k: a[k] for k in a if k not in ("motion", "embedding")} == \
               {k: b[k] for k in b if k not in ("motion", "embedding")}
        assert (a["embedding"] is None) == (b["embedding"] is None)
        if a["embedding"] is not None:
            assert a["embedding"] == pytest.approx(b["embedding"], rel=1e-5, abs=1e-7)


def test_model_folder_gives_tags(cli, library, tmp_path):
    out = tmp_path / "tagged.parquet"
    code, _, err = cli("index", library / "clip_00000.mp4", "--out", out, "--model", DEFAULT_TAGGER_DIR, "--top-k", "2")
    assert code == 0, err
    (row,) = table_rows(out)
    assert len(row["tags"]) == 2 and row["error"] is None


def test_one_line_errors(cli, library, tmp_path, one_line_error):
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)
    one_line_error(*cli("index", library, "--out", foreign)[::2], "--out", "another tool")
    one_line_error(*cli("index", tmp_path / "missing", "--out", tmp_path / "a.parquet")[::2], "SRC:", "missing")
    one_line_error(*cli("index", library, "--out", tmp_path / "a.csv")[::2], "--out", ".parquet")
    one_line_error(*cli("index", library, "--out", tmp_path / "a.parquet", "--address", "auto")[::2],
                   "--address", "--engine ray")
    one_line_error(*cli("index", library, "--out", tmp_path / "a.parquet", "--model", tmp_path)[::2], "--model")
    assert pq.read_table(foreign).column_names == ["x"]
    busy = tmp_path / "busy.parquet"
    with lock_table(busy):  # as another run holds it
        one_line_error(*cli("index", library, "--out", busy)[::2], "--out", "another run")
    assert not busy.exists()
