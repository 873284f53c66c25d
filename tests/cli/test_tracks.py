"""`videoai tracks`: tracks JSON that follows the synthetic objects, readable by Tracks.from_json; overlay video."""

import json

import torch

from videoai.tokenize import Tracks, read_video


def test_points_follow_the_objects(cli, clips, tmp_path):
    folder, truth = clips
    record = truth["clips"][0]
    expected = Tracks.from_json(record["tracks"])  # (T, N) object centroids
    start = " ".join(f"{x},{y}" for x, y in expected.points[0].tolist())
    out = tmp_path / "sub" / "tracks.json"
    code, stdout, err = cli("tracks", folder / record["file"], "--out", out, "--points", start, "--json")
    assert code == 0, err
    assert json.loads(stdout)["num_tracks"] == expected.num_tracks
    tracks = Tracks.from_json(out)
    assert (tracks.num_frames, tracks.width, tracks.height) == (16, 64, 64)
    both = tracks.visibility & expected.visibility
    error = (tracks.points - expected.points).norm(dim=-1)[both]  # pixels
    assert both.float().mean() > 0.5 and error.mean() < 2.0, error


def test_grid_and_overlay(cli, clips, tmp_path):
    folder, truth = clips
    code, stdout, err = cli("tracks", folder / truth["clips"][1]["file"], "--out", tmp_path / "t.json", "--grid", "3",
                            "--overlay", tmp_path / "overlay.mp4")
    assert code == 0, err
    assert "9 track(s) x 16 frames" in stdout
    tracks = Tracks.from_json(tmp_path / "t.json")
    assert tracks.points.shape == (16, 9, 2)
    overlay = read_video(tmp_path / "overlay.mp4")
    assert overlay.frames.shape == (16, 64, 64, 3)
    source = read_video(folder / truth["clips"][1]["file"])
    assert not torch.equal(overlay.frames, source.frames)  # the tracks are drawn on it


def test_bad_points(cli, clips, tmp_path, one_line_error):
    folder, truth = clips
    video = folder / truth["clips"][0]["file"]
    code, _, err = cli("tracks", video, "--out", tmp_path / "t.json", "--points", "10,20 3")
    one_line_error(code, err, "--points", "'3'")
    code, _, err = cli("tracks", video, "--out", tmp_path / "t.txt")
    one_line_error(code, err, "--out", ".json")
    assert not (tmp_path / "t.json").exists()


def test_bad_video(cli, corrupt_video, tmp_path, one_line_error):
    code, _, err = cli("tracks", corrupt_video, "--out", tmp_path / "t.json")
    one_line_error(code, err, "corrupt.mp4")
    code, _, err = cli("tracks", tmp_path / "missing.mp4", "--out", tmp_path / "t.json")
    one_line_error(code, err, "no such file")
