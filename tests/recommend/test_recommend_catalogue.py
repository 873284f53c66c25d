"""Catalogue -> content semantic IDs: reading `videoai index` tables, refusing others, IDs for unwatched videos."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from videoai.recommend.catalogue import (
    check_log_items,
    read_catalogue,
    tokenizer_from_catalogue,
)

META = {b"videoai.index": json.dumps({"tool": "videoai index", "format_version": 1, "model": {"name": "weight-free"}})}


def write_table(path, paths, embeddings, errors=None, item_ids=None, metadata=META, dim=None):
    """A catalogue table as `videoai index` writes it (path, embedding fixed_size_list<float32>, error)."""
    columns = {"path": pa.array(paths, pa.string()),
               "embedding": pa.array(embeddings, pa.list_(pa.float32(), dim) if dim else pa.list_(pa.float32())),
               "error": pa.array(errors or [None] * len(paths), pa.string())}
    if item_ids is not None:
        columns["item_id"] = pa.array(item_ids)
    table = pa.table(columns)
    pq.write_table(table.replace_schema_metadata(metadata) if metadata else table, path)
    return path


def grouped_embeddings(num_items, groups=4, dim=8, seed=0):
    """(N, dim) content vectors: item i sits near the centre of group i % groups."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(groups, dim, generator=generator) * 3
    return centres[torch.arange(num_items) % groups] + 0.1 * torch.randn(num_items, dim, generator=generator)


def test_reads_ids_and_embeddings_and_skips_bad_rows(tmp_path):
    rows = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], None, [0.5, 0.5, 0.0], [float("nan"), 0.0, 1.0], [0.0, 0.0, 1.0]]
    paths = ["/v/a.mp4", "/v/sub/b.mkv", "/v/c.mp4", "/v/d.mp4", "/v/e.mp4", "/v/0042.mp4"]
    errors = [None, None, None, "ValueError: cannot decode", None, None]
    catalogue = read_catalogue(write_table(tmp_path / "cat.parquet", paths, rows, errors, dim=3))
    assert catalogue.item_ids == ["a", "b", 42]  # file stems; digit-only ids are ints, as in the log readers
    assert catalogue.embeddings.dtype == torch.float32 and catalogue.embeddings.shape == (3, 3)
    assert torch.equal(catalogue.embeddings[1], torch.tensor([0.0, 1.0, 0.0]))
    assert catalogue.skipped == {"with an error": ["d"], "without an embedding": ["c", "e"]}
    assert catalogue.model == {"name": "weight-free"}
    assert "skipped 3 row(s): 1 with an error, 2 without an embedding" in catalogue.summary()


def test_item_id_column_wins_over_file_stems(tmp_path):
    path = write_table(tmp_path / "cat.parquet", ["/x/a.mp4", "/y/a.mp4"], [[1.0, 0.0], [0.0, 1.0]],
                       item_ids=["video-1", "0007"])
    assert read_catalogue(path).item_ids == ["video-1", 7]


def test_duplicate_stems_are_refused(tmp_path):
    path = write_table(tmp_path / "cat.parquet", ["/x/a.mp4", "/y/a.mp4"], [[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="catalogue: item id 'a' is given by 2 rows .*item_id"):
        read_catalogue(path)


def test_refuses_files_that_are_not_ours(tmp_path):
    foreign = write_table(tmp_path / "foreign.parquet", ["/a.mp4"], [[1.0]], metadata=None)
    with pytest.raises(ValueError, match="--catalogue: .*made by another tool"):
        read_catalogue(foreign, name="--catalogue")
    newer = {b"videoai.index": json.dumps({"tool": "videoai index", "format_version": 99})}
    with pytest.raises(ValueError, match="format 99"):
        read_catalogue(write_table(tmp_path / "new.parquet", ["/a.mp4"], [[1.0]], metadata=newer))
    text = tmp_path / "notes.parquet"
    text.write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        read_catalogue(text)
    with pytest.raises(ValueError, match="no such file"):
        read_catalogue(tmp_path / "missing.parquet")
    only_errors = write_table(tmp_path / "bad.parquet", ["/a.mp4"], [None], ["OSError: gone"])
    with pytest.raises(ValueError, match="no row with an embedding"):
        read_catalogue(only_errors)


def test_log_items_without_a_row_name_both_arguments(tmp_path):
    path = write_table(tmp_path / "cat.parquet", ["/a.mp4", "/b.mp4"], [[1.0], None], [None, "OSError: corrupt"])
    catalogue = read_catalogue(path)
    check_log_items(catalogue, ["a"], "log.csv")  # catalogue items nobody watched are fine
    with pytest.raises(ValueError, match=r"--log: 2 item\(s\) of 'log.csv' have no usable row in --catalogue .*"
                                         r"'b' \(with an error\), 'z' \(not in the table\)"):
        check_log_items(catalogue, ["a", "b", "z"], "log.csv", name="--catalogue", log_name="--log")


def test_tokenizer_gives_cold_items_ids_next_to_similar_content():
    ids = [f"v{i:02d}" for i in range(32)]
    content = grouped_embeddings(32)
    watched = [ids[i] for i in range(24)]  # v24..v31 are cold: in no sequence
    sequences = [watched[g::4] for g in range(4)] * 3
    for fuse_weight in (0.0, 1.0):
        tokenizer = tokenizer_from_catalogue(ids, content, sequences, fuse_weight=fuse_weight, levels=2,
                                             codebook_size=4, embedding_dim=8)
        assert tokenizer.item_ids == ids and tokenizer.num_items == 32
        first = tokenizer.encode(ids)[:, 0]  # (32,) first-level code
        for cold in range(24, 32):  # a cold item shares its first code with the watched items of its group
            group = [first[i] for i in range(24) if i % 4 == cold % 4]
            assert all(code == first[cold] for code in group), (fuse_weight, cold)
        assert tokenizer.decode(tokenizer.encode(ids[24:])) == ids[24:]


def test_tokenizer_checks_its_inputs():
    ids, content = [f"v{i}" for i in range(8)], grouped_embeddings(8)
    with pytest.raises(ValueError, match="item_ids: expected one id per embedding row"):
        tokenizer_from_catalogue(ids[:7], content, codebook_size=2)
    with pytest.raises(ValueError, match="content_embeddings: expected a \\(N, D\\) tensor"):
        tokenizer_from_catalogue(ids, content[0], codebook_size=2)
    with pytest.raises(ValueError, match="sequences: fuse_weight > 0 needs"):
        tokenizer_from_catalogue(ids, content, fuse_weight=0.5, codebook_size=2)
    with pytest.raises(ValueError, match="fuse_weight: expected a finite number >= 0"):
        tokenizer_from_catalogue(ids, content, [ids], fuse_weight=-1.0, codebook_size=2)
    with pytest.raises(ValueError, match=r"sequences: 1 item\(s\) are not in item_ids .*'x'"):
        tokenizer_from_catalogue(ids, content, [ids[:3] + ["x"]], fuse_weight=1.0, codebook_size=2, embedding_dim=2)


def test_reads_a_table_written_by_the_indexer(tmp_path, clips_folder):
    from videoai.understand.index import index_videos

    (clips_folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(64)))
    index_videos(clips_folder, tmp_path / "catalogue.parquet", progress=False)
    catalogue = read_catalogue(tmp_path / "catalogue.parquet")
    assert catalogue.item_ids == ["clip_00000", "clip_00001"]
    assert catalogue.skipped == {"with an error": ["broken"]}
    assert catalogue.embeddings.shape[0] == 2 and bool(torch.isfinite(catalogue.embeddings).all())
    tokenizer_from_catalogue(catalogue.item_ids, catalogue.embeddings, levels=1, codebook_size=2)


@pytest.fixture
def clips_folder(tmp_path):
    from videoai.synthetic import ShapesConfig, write_clips

    folder = tmp_path / "clips"
    write_clips(folder, 2, ShapesConfig(num_frames=8, height=32, width=32), seed=5)
    (folder / "ground_truth.json").unlink()
    return folder
