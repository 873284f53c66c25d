"""Every subcommand answers --help, and the tracks file format the help points to exists."""

from pathlib import Path

import pytest

from videoai.cli.main import SUBCOMMANDS, main

COMMANDS = [[name] for name in SUBCOMMANDS] + [["recommend", action] for action in ("train", "eval", "serve-batch", "serve", "audience")]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: videoai {' '.join(argv)}")


def test_new_subcommands_registered():
    assert {"generate", "tracks", "shots", "tag", "embed", "recommend"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("command", ["generate", "tracks"])
def test_help_points_to_the_tracks_format(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "docs/tracks_format.md" in capsys.readouterr().out
    doc = Path(__file__).resolve().parents[2] / "docs" / "tracks_format.md"
    assert "num_frames" in doc.read_text()


def test_json_flag_everywhere(capsys):
    for argv in COMMANDS:
        if argv[0] in ("demo", "app", "recommend") and len(argv) == 1:
            continue
        if argv == ["recommend", "serve"]:  # a server: its output is the HTTP answers, already JSON
            continue
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        assert "--json" in capsys.readouterr().out, argv
