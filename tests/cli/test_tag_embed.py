"""`videoai tag` and `videoai embed` with the embedded tagger on synthetic clips."""

import json

import numpy as np
import torch
from safetensors import safe_open


def test_tag_json(cli, clips):
    folder, truth = clips
    videos = [folder / c["file"] for c in truth["clips"]]
    code, out, err = cli("tag", *videos, "--top-k", "3", "--batch-size", "1", "--json")
    assert code == 0, err
    records = json.loads(out)
    assert [r["video"] for r in records] == [str(v) for v in videos]
    for record, clip in zip(records, truth["clips"]):
        scores = [t["score"] for t in record["tags"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert all(0 <= s <= 1 for s in scores)
        # the embedded tagger was trained on these shapes: its best tag is one of the clip's true tags
        assert record["tags"][0]["tag"] in clip["clip_tags"]


def test_tag_text_and_restricted_tags(cli, clips):
    folder, truth = clips
    video = folder / truth["clips"][0]["file"]
    code, out, err = cli("tag", video, "--tags", "speed:slow", "speed:fast")
    assert code == 0, err
    line = out.strip()
    assert line.startswith(f"{video}: speed:") and line.count("speed:") == 2


def test_tag_bad_input(cli, clips, corrupt_video, tmp_path, one_line_error):
    folder, truth = clips
    video = folder / truth["clips"][0]["file"]
    code, _, err = cli("tag", video, corrupt_video)
    one_line_error(code, err, "corrupt.mp4")
    code, _, err = cli("tag", video, "--tags", "not-a-tag")
    one_line_error(code, err, "not-a-tag")
    code, _, err = cli("tag", video, "--model", tmp_path)
    one_line_error(code, err)


def test_embed_npy_and_safetensors(cli, clips, tmp_path):
    folder, truth = clips
    first, second = (folder / c["file"] for c in truth["clips"])
    videos = [first, second, first]
    code, out, err = cli("embed", *videos, "--out", tmp_path / "e.npy", "--batch-size", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["num_videos"] == 3
    matrix = np.load(tmp_path / "e.npy")
    assert matrix.shape[0] == 3 and matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(matrix[0], matrix[2], atol=1e-5)  # same video, same vector
    assert abs(float(matrix[0] @ matrix[1])) < 0.999

    code, _, err = cli("embed", *videos[:2], "--out", tmp_path / "e.safetensors")
    assert code == 0, err
    with safe_open(tmp_path / "e.safetensors", "pt") as handle:
        assert json.loads(handle.metadata()["videos"]) == [str(v) for v in videos[:2]]
        torch.testing.assert_close(handle.get_tensor("embeddings"), torch.from_numpy(matrix[:2]), atol=1e-5, rtol=0)


def test_embed_bad_input(cli, clips, tmp_path, one_line_error):
    folder, truth = clips
    video = folder / truth["clips"][0]["file"]
    code, _, err = cli("embed", video, "--out", tmp_path / "e.pt")
    one_line_error(code, err, "--out", ".safetensors")
    code, _, err = cli("embed", video, tmp_path / "missing.mp4", "--out", tmp_path / "e.npy")
    one_line_error(code, err, "missing.mp4")
    assert not (tmp_path / "e.npy").exists()


def test_progress_bar_only_on_a_terminal(cli, clips, monkeypatch):
    folder, truth = clips
    videos = [folder / c["file"] for c in truth["clips"]]
    _, _, err = cli("tag", *videos, "--batch-size", "1")
    assert err == ""  # stderr is no terminal here: logs and pipes stay clean
    monkeypatch.setattr("videoai.cli.common.show_progress", lambda: True)
    _, _, err = cli("tag", *videos, "--batch-size", "1")
    assert "tag: 100%" in err and "2/2" in err
