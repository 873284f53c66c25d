"""`videoai generate` with a tiny random pipeline: both tracks file forms, outputs, and one-line errors."""

import json

import torch

from videoai.tokenize import Tracks, read_video

FAST = ["--steps", "1", "--device", "cpu"]


def test_drawn_paths(cli, tiny_pipeline_dir, image_file, tmp_path):
    paths = tmp_path / "paths.json"
    paths.write_text(json.dumps([[[4, 4], [20, 12], [28, 28]], [[16, 8]]]))  # a path and an anchor, image pixels
    out = tmp_path / "out"
    code, stdout, err = cli("generate", "--image", image_file, "--tracks", paths, "--out", out,
                            "--model-dir", tiny_pipeline_dir, *FAST, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert (report["num_frames"], report["height"], report["width"], report["num_tracks"]) == (5, 32, 32, 2)
    assert read_video(out / "video.mp4").frames.shape == (5, 32, 32, 3)
    assert read_video(out / "overlay.mp4").frames.shape == (5, 256, 256, 3)  # upscaled so paths stay legible
    used = Tracks.from_json(out / "tracks.json")
    assert used.points.shape == (5, 2, 2)
    torch.testing.assert_close(used.points[0, 0], torch.tensor([4.0, 4.0]))
    torch.testing.assert_close(used.points[-1, 0], torch.tensor([28.0, 28.0]))
    torch.testing.assert_close(used.points[:, 1], torch.tensor([[16.0, 8.0]]).expand(5, 2))


def test_timed_tracks_of_another_size_are_resampled_and_scaled(cli, tiny_pipeline_dir, image_file, tmp_path):
    timed = Tracks(torch.tensor([[[0.0, 0.0]], [[63.0, 0.0]], [[63.0, 63.0]]]).repeat_interleave(3, 0)[:9],
                   torch.ones(9, 1, dtype=torch.bool), width=64, height=64)  # 9 frames on a 64x64 frame
    timed.to_json(tmp_path / "timed.json")
    code, stdout, err = cli("generate", "--image", image_file, "--tracks", tmp_path / "timed.json",
                            "--out", tmp_path / "out", "--model-dir", tiny_pipeline_dir, *FAST)
    assert code == 0, err
    assert "5 frames 32x32, 1 track(s)" in stdout
    used = Tracks.from_json(tmp_path / "out" / "tracks.json")
    assert (used.num_frames, used.width, used.height) == (5, 32, 32)
    torch.testing.assert_close(used.points[0, 0], torch.tensor([-0.25, -0.25]))  # pixel-centre scaling 64 -> 32
    torch.testing.assert_close(used.points[-1, 0], torch.tensor([31.25, 31.25]))


def test_seed_makes_it_reproducible(cli, tiny_pipeline_dir, image_file, tmp_path):
    paths = tmp_path / "paths.json"
    paths.write_text("[[[2, 2], [30, 30]]]")
    videos = []
    for name in ("a", "b"):
        code, _, err = cli("generate", "--image", image_file, "--tracks", paths, "--out", tmp_path / name,
                           "--model-dir", tiny_pipeline_dir, *FAST, "--seed", "7")
        assert code == 0, err
        videos.append(read_video(tmp_path / name / "video.mp4").frames)
    assert torch.equal(videos[0], videos[1])


def test_bad_inputs(cli, tiny_pipeline_dir, image_file, tmp_path, one_line_error):
    good = tmp_path / "good.json"
    good.write_text("[[[2, 2], [30, 30]]]")
    common = ["--out", tmp_path / "out", "--model-dir", tiny_pipeline_dir, *FAST]

    code, _, err = cli("generate", "--image", tmp_path / "none.png", "--tracks", good, *common)
    one_line_error(code, err, "--image", "no such file")
    not_image = tmp_path / "not_image.png"
    not_image.write_text("hello")
    code, _, err = cli("generate", "--image", not_image, "--tracks", good, *common)
    one_line_error(code, err, "--image", "not_image.png")

    for name, text, fragment in [("syntax.json", "[[1, 2", "not valid JSON"),
                                 ("shape.json", '{"paths": []}', "'tracks' list"),
                                 ("points.json", '[[["a", 1]]]', "polylines[0]"),
                                 ("lengths.json", '{"num_frames": 2, "tracks": [[[1, 1], [2, 2]], [[1, 1]]]}',
                                  "same length"),
                                 ("visibility.json", '{"tracks": [{"points": [[1, 1], [2, 2]], "visibility": [true]}]}',
                                  "visibility")]:
        (tmp_path / name).write_text(text)
        code, _, err = cli("generate", "--image", image_file, "--tracks", tmp_path / name, *common)
        one_line_error(code, err, "--tracks", fragment)

    code, _, err = cli("generate", "--image", image_file, "--tracks", good, *common[:2], "--model-dir", tmp_path / "x")
    one_line_error(code, err, "--model-dir")
    code, _, err = cli("generate", "--image", image_file, "--tracks", good, *common, "--frames", "4")
    one_line_error(code, err, "num_frames")
    assert not (tmp_path / "out" / "video.mp4").exists()
    code, _, err = cli("generate", "--image", image_file, "--tracks", good, *common, "--guidance-interval", "0")
    one_line_error(code, err, "--guidance-interval")
