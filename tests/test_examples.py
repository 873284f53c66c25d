"""Every script in examples/ runs as-is on tiny settings (each in this process via runpy, as `python examples/x.py`)."""

import json
import logging
import runpy
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from videoai.generate import TinyWanConfig, build_pipeline
from videoai.synthetic import ShapesConfig, write_clips
from videoai.tokenize import read_video

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_PIPE = TinyWanConfig(z_dim=4, vae_base_dim=4, num_layers=2, num_attention_heads=2, attention_head_dim=12,
                          ffn_dim=32, text_dim=8, freq_dim=16, num_frames=5, height=32, width=32)


def run_example(name: str, *argv, capsys) -> str:
    """Run examples/<name> as __main__ with argv; returns its stdout."""
    threads, old_argv = torch.get_num_threads(), sys.argv
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sys.argv = [str(EXAMPLES / name), *map(str, argv)]
    capsys.readouterr()
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        sys.argv = old_argv
        torch.set_num_threads(threads)  # some examples take --threads
        root.handlers[:], root.level = handlers, level  # and some call logging.basicConfig
    return capsys.readouterr().out


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tests share few cores with other jobs
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    truth = json.loads(write_clips(folder, 2, ShapesConfig(num_frames=8, height=32, width=32, max_speed=1.5,
                                                           max_size=10)).read_text())
    return [folder / c["file"] for c in truth["clips"]]


def test_every_example_is_tested():
    tested = {"generate_with_paths.py", "train_generator.py", "tag_and_embed.py", "finetune_tagger.py",
              "finetune_wan_lora.py",
              "recommend_train_eval.py", "full_loop.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_generate_with_paths(tmp_path, capsys):
    build_pipeline(TINY_PIPE, seed=0).save_pretrained(tmp_path / "pipe")
    image = tmp_path / "still.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    run_example("generate_with_paths.py", "--model", tmp_path / "pipe", "--image", image, "--paths",
                "4,4 28,28; 16,8", "--steps", "1", "--out", out, capsys=capsys)
    assert read_video(out / "video.mp4").frames.shape == (5, 32, 32, 3)
    assert (out / "video.gif").is_file() and (out / "overlay.mp4").is_file()


def test_train_generator(tmp_path, capsys):
    out = run_example("train_generator.py", "--output-dir", tmp_path, "--vae-steps", "1", "--vae-full-steps", "1",
                      "--transformer-steps", "1", "--fine-steps", "1", "--lr-decay-steps", "0", "--num-clips", "32",
                      "--threads", "1", capsys=capsys)
    assert (tmp_path / "model" / "model_index.json").is_file()
    assert (tmp_path / "transformer_fine" / "DONE").is_file()
    assert "saved" in out


def test_tag_and_embed(clips, tmp_path, capsys):
    out = run_example("tag_and_embed.py", *clips, "--top-k", "2", "--save-embeddings", tmp_path / "e.pt",
                      capsys=capsys)
    assert out.count(".mp4: ") == 2
    saved = torch.load(tmp_path / "e.pt", weights_only=True)
    assert saved["embeddings"].shape[0] == 2


def test_finetune_tagger(tmp_path, capsys):
    out = run_example("finetune_tagger.py", "--synthetic", "4", "--steps", "2", "--batch-size", "2", "--out", tmp_path,
                      "--threads", "1", capsys=capsys)
    assert "trained 2 steps" in out
    assert (tmp_path / "model" / "config.json").is_file()


def test_recommend_train_eval(tmp_path, capsys):
    log = tmp_path / "log.csv"  # 60 users walking through 4 groups of 20 items (the example embeds in 64 dims)
    log.write_text("".join(f"u{u},{(u % 4) * 20 + (u + t) % 20},{t}\n" for u in range(60) for t in range(6)))
    out = run_example("recommend_train_eval.py", "--log", log, "--output", tmp_path / "run", "--epochs", "1",
                      "--batch-size", "32", "--levels", "2", "--codebook-size", "8", "--d-model", "16",
                      "--eval-users", "20", capsys=capsys)
    assert "recall@10" in out
    assert (tmp_path / "run" / "recommender" / "model").is_dir()


def test_full_loop(tmp_path, capsys):
    out = run_example("full_loop.py", "--out", tmp_path, "--steps", "1", "--recommender-steps", "2",
                      "--catalogue-size", "32", "--num-users", "16", "--history-length", "4", capsys=capsys)
    assert "wrote" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"creation", "understanding", "distribution"} <= set(report)
    assert (tmp_path / "video.mp4").is_file() and (tmp_path / "overlay.mp4").is_file()


def test_finetune_wan_lora(clips, tmp_path, capsys):
    build_pipeline(TINY_PIPE, seed=0).save_pretrained(tmp_path / "pipe")
    out = run_example("finetune_wan_lora.py", "--model", tmp_path / "pipe", "--clips", clips[0].parent, "--out",
                      tmp_path / "lora", "--steps", "2", "--rank", "4", "--frames", "5", "--fps", "8",
                      "--track-grid", "4", capsys=capsys)
    assert "trained 2 steps" in out
    assert (tmp_path / "lora" / "pytorch_lora_weights.safetensors").is_file()
