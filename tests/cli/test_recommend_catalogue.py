"""`videoai recommend train --catalogue`: semantic IDs from a `videoai index` table, unwatched videos recommendable."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from videoai.recommend import OneRecRecommender

META = {b"videoai.index": json.dumps({"tool": "videoai index", "format_version": 1, "model": {"name": "weight-free"}})}
NUM_ITEMS, GROUPS, COLD = 48, 4, 8  # v40..v47 are in the catalogue but in no log
TINY = ["--steps", "4", "--batch-size", "32", "--d-model", "16", "--max-history", "8", "--levels", "2",
        "--codebook-size", "4"]


@pytest.fixture(scope="module")
def catalogue_and_log(tmp_path_factory):
    """A catalogue of 48 videos in 4 content groups (+ one corrupt row) and a log of 60 users over 40 of them."""
    folder = tmp_path_factory.mktemp("catalogue")
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(GROUPS, 8, generator=generator) * 3
    content = centres[torch.arange(NUM_ITEMS) % GROUPS] + 0.1 * torch.randn(NUM_ITEMS, 8, generator=generator)
    paths = [f"/videos/v{i:02d}.mp4" for i in range(NUM_ITEMS)] + ["/videos/broken.mp4"]
    table = pa.table({"path": pa.array(paths),
                      "embedding": pa.array(content.tolist() + [None], pa.list_(pa.float32(), 8)),
                      "error": pa.array([None] * NUM_ITEMS + ["OSError: corrupt"], pa.string())})
    pq.write_table(table.replace_schema_metadata(META), folder / "catalogue.parquet")
    rows = ["user,item,timestamp"]
    for user in range(60):  # each user watches items of one content group, in order
        group = user % GROUPS
        rows += [f"u{user},v{group + GROUPS * ((user + t) % 10):02d},{t}" for t in range(6)]
    (folder / "log.csv").write_text("\n".join(rows) + "\n")
    return folder / "catalogue.parquet", folder / "log.csv"


def test_train_from_a_catalogue_recommends_unwatched_videos(cli, catalogue_and_log, tmp_path):
    catalogue, log = catalogue_and_log
    out = tmp_path / "model"
    code, stdout, err = cli("recommend", "train", "--log", log, "--catalogue", catalogue, "--out", out, *TINY)
    assert code == 0, err
    assert "catalogue: 48 videos with 8-d embeddings; skipped 1 row(s): 1 with an error" in stdout
    report = json.loads((out / "training.json").read_text())
    assert (report["items"], report["cold_items"], report["skipped_rows"]) == (NUM_ITEMS, COLD, 1)
    assert report["embedding_model"] == {"name": "weight-free"}

    recommender = OneRecRecommender.from_pretrained(out)
    cold = [f"v{i}" for i in range(40, NUM_ITEMS)]
    assert recommender.tokenizer.num_items == NUM_ITEMS and set(cold) <= set(recommender.tokenizer.item_ids)
    history = ["v00", "v04", "v08"]
    items, _ = recommender.recommend([history], k=NUM_ITEMS - len(history))
    assert set(cold) <= set(items[0])  # every unwatched video is reachable by constrained decoding
    assert recommender.audience("v44", [history, ["v01", "v05"]])[0].numel() == 2


def test_fused_ids_json_report(cli, catalogue_and_log, tmp_path):
    catalogue, log = catalogue_and_log
    code, stdout, err = cli("recommend", "train", "--log", log, "--catalogue", catalogue, "--out", tmp_path / "m",
                            "--fuse-cooccurrence", "0.5", "--embedding-dim", "8", "--json", *TINY)
    assert code == 0, err
    report = json.loads(stdout)
    assert (report["fuse_cooccurrence"], report["cold_items"], report["items"]) == (0.5, COLD, NUM_ITEMS)


def test_catalogue_errors_name_the_argument(cli, one_line_error, catalogue_and_log, tmp_path):
    catalogue, log = catalogue_and_log
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"path": ["/a.mp4"], "embedding": [[1.0]], "error": [None]}), foreign)
    code, _, err = cli("recommend", "train", "--log", log, "--catalogue", foreign, "--out", tmp_path / "m", *TINY)
    one_line_error(code, err, "--catalogue:", "another tool")

    other_log = tmp_path / "other.csv"
    other_log.write_text("user,item,timestamp\nu1,v00,1\nu1,broken,2\nu1,zz,3\n")
    code, _, err = cli("recommend", "train", "--log", other_log, "--catalogue", catalogue, "--out", tmp_path / "m",
                       *TINY)
    one_line_error(code, err, "--log:", "--catalogue", "'broken' (with an error)", "'zz' (not in the table)")

    code, _, err = cli("recommend", "train", "--log", log, "--out", tmp_path / "m", "--fuse-cooccurrence", "1", *TINY)
    one_line_error(code, err, "--fuse-cooccurrence:", "--catalogue")
    code, _, err = cli("recommend", "train", "--log", log, "--catalogue", catalogue, "--out", tmp_path / "m",
                       "--fuse-cooccurrence", "-1", *TINY)
    one_line_error(code, err, "--fuse-cooccurrence:", ">= 0")
    assert not (tmp_path / "m").exists()  # nothing written on bad input
