"""Memory settings on tiny checkpoints of each public Wan layout: model / sequential / group offload, VAE tiling and
slicing, bf16 — each against the plain run of the same folder; and benchmarks/gpu_generate.py's no-GPU path.

On this CPU-only machine the offload hooks run with the CPU as their execution device (diffusers' `device="cpu"`,
`onload_device=cpu`): weights still leave and come back through the same hooks (sequential offload puts every weight
on the meta device, group offload to disk writes and reads them back), so the pipeline's device handling is exercised.
"""

import subprocess
import sys
from pathlib import Path

import accelerate
import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.hooks.group_offloading import _get_group_onload_device

from videoai.generate import TrajectoryImageToVideoPipeline

from .wan_layouts import LAYOUTS, SIZES, save_layout

NUM_FRAMES = 9  # 3 latent frames
EXACT = dict(atol=1e-5, rtol=0)  # offload and slicing only move weights / split the batch: float noise at most
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_generate.py"


def _modules(pipe) -> dict[str, torch.nn.Module]:
    return {name: part for name, part in pipe.components.items() if isinstance(part, torch.nn.Module)}


def _run(pipe, layout: str, **kwargs) -> np.ndarray:
    """Decoded frames (B, T, H, W, 3) in [0, 1] of the layout's test call (guided, so both branches run)."""
    size = SIZES[layout]
    pixels = np.random.RandomState(0).randint(0, 256, (size, size, 3), dtype=np.uint8)
    if layout == "wan2.1-flf2v":
        kwargs.setdefault("last_image", PIL.Image.fromarray(pixels[::-1].copy()))
    return pipe(PIL.Image.fromarray(pixels), prompt="a red car drives left", negative_prompt="blurry static",
                guidance_scale=5.0, height=size, width=size, num_frames=NUM_FRAMES, num_inference_steps=3,
                generator=torch.Generator().manual_seed(0), output_type="np", max_sequence_length=8,
                **kwargs).frames


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """layout -> (folder, frames of the plain fp32 run)."""
    out = {}
    for layout in LAYOUTS:
        folder = save_layout(layout, tmp_path_factory.mktemp(layout))
        out[layout] = folder, _run(TrajectoryImageToVideoPipeline.from_pretrained(folder), layout)
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_model_cpu_offload_matches_plain(checkpoints, layout):
    folder, plain = checkpoints[layout]
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(folder)
    pipe.enable_model_cpu_offload(device="cpu")
    modules = _modules(pipe)
    # every model of the layout is in the offload chain (none left resident or hooked outside the sequence)
    assert set(modules) <= set(pipe.model_cpu_offload_seq.split("->"))
    assert all(hasattr(module, "_hf_hook") for module in modules.values())
    assert len(pipe._all_hooks) == len(modules)
    np.testing.assert_allclose(_run(pipe, layout), plain, **EXACT)
    np.testing.assert_allclose(_run(pipe, layout), plain, **EXACT)  # hooks re-armed by maybe_free_model_hooks


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sequential_cpu_offload_matches_plain(checkpoints, layout, monkeypatch):
    folder, plain = checkpoints[layout]
    # diffusers passes the execution device as "cpu:0"; accelerate 1.16's sequential hooks then hand modules a plain
    # Tensor in place of their Parameter and fail when offloading it back (diffusers' own WanImageToVideoPipeline
    # fails the same way on CPU). CUDA devices are unaffected; here the hooks get "cpu", the same device.
    cpu_offload = accelerate.cpu_offload
    monkeypatch.setattr(accelerate, "cpu_offload", lambda model, execution_device=None, **kwargs: cpu_offload(
        model, torch.device(torch.device(execution_device).type), **kwargs))
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(folder)
    pipe.enable_sequential_cpu_offload(device="cpu")
    for name, module in _modules(pipe).items():  # every weight waits on the meta device until its layer runs
        assert {parameter.device.type for parameter in module.parameters()} == {"meta"}, name
    np.testing.assert_allclose(_run(pipe, layout), plain, **EXACT)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("offload", ["block_level_to_disk", "leaf_level"])
def test_group_offload_matches_plain(checkpoints, layout, offload, tmp_path):
    folder, plain = checkpoints[layout]
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(folder)
    if offload == "leaf_level":
        pipe.enable_group_offload(onload_device=torch.device("cpu"), offload_type="leaf_level")
    else:  # groups of one block, written to safetensors files and read back on each onload
        pipe.enable_group_offload(onload_device=torch.device("cpu"), offload_type="block_level",
                                  num_blocks_per_group=1, offload_to_disk_path=str(tmp_path))
    for name, module in _modules(pipe).items():
        assert _get_group_onload_device(module) == torch.device("cpu"), name  # raises if no group hook was placed
    np.testing.assert_allclose(_run(pipe, layout), plain, **EXACT)  # a14b: each expert ran its own weights
    if offload != "leaf_level":  # one subfolder per component: diffusers names files by module path ("blocks.0")
        assert {path.parent.name for path in tmp_path.rglob("*.safetensors")} == set(_modules(pipe))


@pytest.mark.parametrize("layout", ["wan2.1-i2v", "wan2.2-ti2v-5b"])  # the 8x Wan 2.1 VAE and the 16x Wan 2.2 one
def test_vae_slicing_matches_plain(checkpoints, layout, monkeypatch):
    folder, _ = checkpoints[layout]
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(folder)
    plain = _run(pipe, layout, num_videos_per_prompt=2)
    pipe.vae.enable_slicing()
    batches = []
    decode = pipe.vae._decode
    monkeypatch.setattr(pipe.vae, "_decode", lambda z, *a, **k: batches.append(z.shape[0]) or decode(z, *a, **k))
    np.testing.assert_allclose(_run(pipe, layout, num_videos_per_prompt=2), plain, **EXACT)
    assert batches == [1, 1]  # two videos decoded one at a time


@pytest.mark.parametrize("layout", ["wan2.1-i2v", "wan2.2-ti2v-5b"])
def test_vae_tiling_close_to_plain(checkpoints, layout, monkeypatch):
    """Tiles of half the frame, overlapping by half a tile. Tiling is an approximation: seams are blended linearly
    over the overlap, and a random tiny VAE (unlike a trained one) has learned nothing that hides them, so the
    tolerance is loose: mean |diff| <= 0.04 and max |diff| <= 0.5 on frames in [0, 1] (measured 0.030 / 0.43 on
    wan2.1-i2v, 0.035 / 0.32 on wan2.2-ti2v-5b); shapes, value range and that both tiled paths ran are exact."""
    folder, plain = checkpoints[layout]
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(folder)
    half = SIZES[layout] // 2
    pipe.vae.enable_tiling(tile_sample_min_height=half, tile_sample_min_width=half,
                           tile_sample_stride_height=half // 2, tile_sample_stride_width=half // 2)
    ran = []
    for name in ("tiled_encode", "tiled_decode"):
        method = getattr(pipe.vae, name)
        monkeypatch.setattr(pipe.vae, name, lambda *a, _m=method, _n=name, **k: ran.append(_n) or _m(*a, **k))
    tiled = _run(pipe, layout)
    assert ran == ["tiled_encode", "tiled_decode"]
    assert tiled.shape == plain.shape and 0 <= tiled.min() and tiled.max() <= 1
    difference = np.abs(tiled - plain)
    assert difference.mean() <= 0.04 and difference.max() <= 0.5, (difference.mean(), difference.max())


@pytest.mark.parametrize("layout", ["wan2.1-i2v", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"])
def test_bf16_close_to_plain(checkpoints, layout):
    """bf16 models with the VAE kept in fp32 (as diffusers' Wan docs load it): mean |diff| <= 0.005 and max
    <= 0.25 on frames in [0, 1] (bf16 keeps 8 bits of mantissa, ~0.4% per value; the random tiny transformers
    amplify it at a few pixels: measured mean 0.0011-0.0026, max 0.014-0.17)."""
    folder, plain = checkpoints[layout]
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(folder, dtype={"default": torch.bfloat16,
                                                                         "vae": torch.float32})
    dtypes = {name: module.dtype for name, module in _modules(pipe).items()}
    assert dtypes.pop("vae") == torch.float32 and set(dtypes.values()) == {torch.bfloat16}
    frames = _run(pipe, layout)
    difference = np.abs(frames - plain)
    assert 0 < difference.max() <= 0.25 and difference.mean() <= 0.005, (difference.mean(), difference.max())


def test_bf16_everywhere_close_to_plain(checkpoints):
    """Every model in bf16, the VAE included: looser (the VAE's bf16 rounding lands on the pixels directly):
    mean |diff| <= 0.01, max <= 0.35."""
    folder, plain = checkpoints["wan2.1-i2v"]
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(folder, dtype=torch.bfloat16)
    assert {module.dtype for module in _modules(pipe).values()} == {torch.bfloat16}
    difference = np.abs(_run(pipe, "wan2.1-i2v") - plain)
    assert difference.mean() <= 0.01 and difference.max() <= 0.35, (difference.mean(), difference.max())


def test_gpu_generate_without_cuda_prints_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this checks the no-CUDA path; the machine has CUDA")
    result = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "CUDA" in lines[0], result.stdout


@pytest.fixture
def gpu_generate(load_benchmark):
    with load_benchmark("gpu_generate") as module:
        yield module


def test_gpu_generate_without_a_checkpoint_folder_prints_one_line(gpu_generate, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # past the CUDA check, to the folder check
    assert gpu_generate.main(["--model", str(tmp_path / "missing")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "missing" in lines[0] and "model_index.json" in lines[0]


def test_gpu_generate_cpu_smoke_run_fills_every_setting(gpu_generate, checkpoints, tmp_path, capsys):
    folder, _ = checkpoints["wan2.1-i2v"]
    assert gpu_generate.main(["--model", str(folder), "--device", "cpu", "--frames", "5", "--height", "32",
                              "--width", "32", "--steps", "2", "--out", str(tmp_path / "report.json")]) == 0
    report = (tmp_path / "report.json").read_text()
    printed = capsys.readouterr().out
    for setting in gpu_generate.SETTINGS:
        assert setting in printed and setting in report
    assert "error" not in printed
