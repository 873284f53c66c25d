"""`videoai shots`: shots, keyframes and motion of a synthetic clip with a known cut; bad files fail in one line."""

import json


def test_finds_the_cut_with_keyframes_and_motion(cli, two_shot_clip):
    path, shot_starts = two_shot_clip
    code, out, err = cli("shots", path, "--min-shot-len", "4", "--keyframes", "1", "--motion", "--json")
    assert code == 0, err
    report = json.loads(out)
    shots = report["shots"]
    assert [s["start_frame"] for s in shots] == shot_starts
    assert shots[-1]["end_frame"] == 24
    for shot in shots:
        assert len(shot["keyframes"]) <= 1
        assert all(shot["start_frame"] <= f < shot["end_frame"] for f in shot["keyframes"])
        assert shot["motion"]["zoom"] > 0 and 0 <= shot["motion"]["moving_fraction"] <= 1
    assert shots[0]["start_time"] == 0.0 and shots[1]["start_time"] > 0


def test_text_output(cli, two_shot_clip):
    code, out, _ = cli("shots", two_shot_clip[0], "--min-shot-len", "4")
    assert code == 0
    assert out.splitlines()[0] == "2 shot(s)"
    assert out.splitlines()[1].startswith("shot 0: frames 0-")


def test_missing_file(cli, tmp_path, one_line_error):
    code, _, err = cli("shots", tmp_path / "nope.mp4")
    one_line_error(code, err, "no such file", "nope.mp4")


def test_corrupt_video(cli, corrupt_video, one_line_error):
    code, _, err = cli("shots", corrupt_video)
    one_line_error(code, err, "corrupt.mp4")
