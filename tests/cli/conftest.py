"""Tiny inputs for the CLI tests: synthetic clips, a random tiny pipeline, an interaction log, a trained recommender."""

import json
import random

import numpy as np
import PIL.Image
import pytest
import torch

from videoai.cli.main import main
from videoai.generate import TinyWanConfig, build_pipeline
from videoai.synthetic import ShapesConfig, write_clips

TINY_PIPE = TinyWanConfig(z_dim=4, vae_base_dim=4, num_layers=2, num_attention_heads=2, attention_head_dim=12,
                          ffn_dim=32, text_dim=8, freq_dim=16, num_frames=5, height=32, width=32)
TINY_RECOMMENDER = ["--steps", "4", "--batch-size", "32", "--d-model", "16", "--max-history", "8", "--levels", "2"]



@pytest.fixture
def cli(capsys):
    """cli(*argv) -> (exit code, stdout, stderr) of `videoai argv...` run in this process."""

    def run(*argv):
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error:" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def one_line_error():
    """one_line_error(code, stderr, *fragments): exit code 2 and exactly one stderr line naming the problem."""
    return _assert_one_line_error


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Two one-shot 16-frame clips and their ground truth (written once per session)."""
    folder = tmp_path_factory.mktemp("clips")
    truth = json.loads(write_clips(folder, 2, ShapesConfig(num_frames=16), seed=3).read_text())
    return folder, truth


@pytest.fixture(scope="session")
def two_shot_clip(tmp_path_factory):
    """A 24-frame clip with a hard cut, and its ground-truth shot starts."""
    folder = tmp_path_factory.mktemp("cut")
    truth = json.loads(write_clips(folder, 1, ShapesConfig(num_frames=24, num_shots=2, min_shot_length=8),
                                   seed=1).read_text())
    return folder / truth["clips"][0]["file"], truth["clips"][0]["shot_starts"]


@pytest.fixture(scope="session")
def corrupt_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "corrupt.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    return path


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipe")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    build_pipeline(TINY_PIPE, seed=0).save_pretrained(folder)
    torch.set_num_threads(threads)
    return folder


@pytest.fixture(scope="session")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "still.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def interaction_log(tmp_path_factory):
    """80 users over 40 items in 4 groups of 10; each user walks through one group in order (CSV with header)."""
    rng = random.Random(0)
    rows = ["user,item,timestamp"]
    for user in range(80):
        group, start = user % 4, rng.randrange(10)
        rows += [f"u{user},{group * 10 + (start + t) % 10},{t}" for t in range(6)]
    path = tmp_path_factory.mktemp("log") / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="session")
def recommender_dir(tmp_path_factory, interaction_log):
    """A recommender trained for a few steps by `videoai recommend train` (once per session)."""
    folder = tmp_path_factory.mktemp("rec") / "model"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    assert main(["recommend", "train", "--log", str(interaction_log), "--out", str(folder), *TINY_RECOMMENDER]) == 0
    torch.set_num_threads(threads)
    return folder
