"""GPU check: CPU-vs-device correctness, host syncs in the hot loops, and throughput against a CPU run, one table.

    python benchmarks/gpu_check.py --out runs/gpu_check          # on a CUDA machine (< 8 min on one H100/H200)
    python benchmarks/gpu_check.py --device cpu --out /tmp/gc    # CPU smoke run: every section at small sizes
    python benchmarks/gpu_check.py --only sync speed_wan         # a subset (section or function-name prefixes)

Sections: correctness (the same inputs on CPU and the device agree within dtype tolerance), sync (each hot loop
runs under torch.cuda.set_sync_debug_mode("error") after one warm-up call; on failure it is rerun under "warn" and
every sync site is listed as file:line), speed (device vs a CPU run of the same work in this script, peak device
memory). Each section catches its own failure and reports it as a row. Without CUDA (and without --device cpu) it
prints one line and exits 0. Writes gpu_check.json and gpu_check.md to --out (atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PACKAGE = str(REPO / "videoai") + "/"  # frames of the SDK itself, named in sync and error reports
CLIP_CANDIDATES = (REPO.parent / "shared" / "data" / "video" / "testvideo.mp4",
                   REPO / "shared" / "data" / "video" / "testvideo.mp4")
NEEDS_GPU = "gpu_check: needs a CUDA GPU and none is available (run with --device cpu for the CPU smoke run)"

# Public Wan 2.1 transformer configs (diffusers WanTransformer3DModel). "1.3b": the T2V-1.3B sizes with the I2V
# input layout our pipeline uses (16 noise + 4 mask + 16 condition channels, no CLIP); "14b": Wan2.1-I2V-14B-480P.
WAN_CONFIGS = {
    "1.3b": dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=36,
                 out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None,
                 rope_max_seq_len=1024),
    "14b": dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120,
                rope_max_seq_len=1024),
    "tiny": dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=36,
                 out_channels=16, text_dim=64, freq_dim=32, ffn_dim=128, num_layers=2, cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None,
                 rope_max_seq_len=1024),
}


@dataclass
class Sizes:
    """Problem sizes of the speed sections (the correctness and sync sections always run tiny models)."""

    kmeans_rows: int = 1_000_000
    kmeans_dim: int = 256
    kmeans_levels: int = 3
    kmeans_codes: int = 256
    kmeans_iters: int = 20
    wan: str = "1.3b"
    wan_video: tuple[int, int, int] = (81, 480, 832)  # frames, height, width
    wan_text_tokens: int = 512
    cpu_wan_video: tuple[int, int, int] = (17, 240, 416)  # the same-work CPU comparison: smaller clip ...
    cpu_wan_layers: int = 1  # ... and this many blocks, run on both CPU and the device
    onerec_items: int = 12_101  # Amazon Beauty's catalogue size
    onerec_levels: int = 3
    onerec_codebook: int = 256
    onerec_users: int = 1024
    onerec_history: int = 50
    onerec_beams: int = 20
    onerec_d_model: int = 64
    tagger_batch: int = 64
    decode_frames: int = 240
    repeats: int = 3


SMALL = Sizes(kmeans_rows=4000, kmeans_dim=32, kmeans_levels=2, kmeans_codes=32, kmeans_iters=5, wan="tiny",
              wan_video=(9, 64, 64), wan_text_tokens=8, cpu_wan_video=(5, 32, 32), onerec_items=400,
              onerec_levels=2, onerec_codebook=16, onerec_users=64, onerec_history=20, onerec_beams=5,
              onerec_d_model=32, tagger_batch=4, decode_frames=24, repeats=1)


@dataclass
class Row:
    """One line of the table; numbers holds the raw figures behind the formatted columns."""

    section: str  # correctness | sync | speed
    name: str
    status: str  # pass | FAIL | ok | n/a (cpu) | error | skipped
    device: str = ""
    cpu: str = ""
    ratio: str = ""
    peak_mib: str = ""
    detail: str = ""
    numbers: dict = field(default_factory=dict)


@dataclass
class Context:
    """What every section gets: the target device, sizes, a scratch folder and a real or synthetic clip."""

    device: torch.device
    sizes: Sizes
    workdir: Path
    clip: Path
    clip_is_real: bool


# ----------------------------------------------------------------------------------------------------- helpers
def _short(path: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def where(stack: list[traceback.FrameSummary]) -> str:
    """file:line of the innermost videoai frame, plus the innermost library frame below it (if not torch's)."""
    ours = [f for f in stack if f.filename.startswith(PACKAGE)]
    inner = [f for f in stack if "/torch/" not in f.filename and "warnings" not in f.filename]
    parts = [f"{_short(ours[-1].filename)}:{ours[-1].lineno}"] if ours else []
    if inner and (not ours or inner[-1] is not ours[-1]):
        parts.append(f"{_short(inner[-1].filename)}:{inner[-1].lineno}")
    return " -> ".join(parts) or "?"


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Seconds per call of fn, after `warmup` calls; the device is synchronised only around the timed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


@contextlib.contextmanager
def peak_memory(device: torch.device, out: dict):
    """Record the peak device memory (MiB) allocated inside the block into out["peak_mib"]."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield
    if device.type == "cuda":
        synchronize(device)
        out["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20


@contextlib.contextmanager
def strict_fp32():
    """No TF32 in matmuls/convolutions while comparing float32 results against the CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def building(device: torch.device, dtype: torch.dtype):
    """Create modules directly on `device` in `dtype` (a 14B model never exists in float32 or on the host)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def compare(name: str, expected: torch.Tensor, got: torch.Tensor, atol: float, rtol: float = 0.0) -> Row:
    """A correctness row: got (device) against expected (CPU) within atol + rtol * |expected|."""
    got = got.detach().cpu()
    if got.shape != expected.shape:
        return Row("correctness", name, "FAIL", detail=f"shape {tuple(got.shape)} != {tuple(expected.shape)}")
    if not expected.is_floating_point():
        mismatch = (got != expected).float().mean().item()
        return Row("correctness", name, "pass" if mismatch == 0 else "FAIL", detail=f"mismatch {mismatch:.2%}",
                   numbers={"mismatch": mismatch})
    error = (got.double() - expected.double()).abs()
    bound = atol + rtol * expected.double().abs()
    ok = bool((error <= bound).all()) and bool(torch.isfinite(got).all())
    max_error = error.max().item() if error.numel() else 0.0
    return Row("correctness", name, "pass" if ok else "FAIL", detail=f"max|d|={max_error:.2e} (atol {atol:g})",
               numbers={"max_abs_error": max_error})


def sync_sites(fn, enable: bool = True) -> list[str]:
    """Call fn under sync debug mode "warn" and return each distinct sync site (file:line), in order."""
    sites: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            sites.append(where(traceback.extract_stack()[:-1]))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        if enable:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            if enable:
                torch.cuda.set_sync_debug_mode("default")
    return list(dict.fromkeys(sites))


def sync_row(name: str, fn, device: torch.device, calls: int = 2) -> Row:
    """Warm up with one call, then run fn `calls` times under sync debug mode "error" (CUDA only)."""
    fn()  # first call: lazy init (cuBLAS handles, caches) may sync legitimately
    if device.type != "cuda":
        fn()  # the same code path runs on CPU, so the smoke run still exercises it
        return Row("sync", name, "n/a (cpu)")
    synchronize(device)
    try:
        torch.cuda.set_sync_debug_mode("error")
        for _ in range(calls):
            fn()
    except RuntimeError as error:
        torch.cuda.set_sync_debug_mode("default")
        first = where(traceback.extract_tb(error.__traceback__))
        try:
            sites = sync_sites(fn)
        except Exception as rerun_error:  # noqa: BLE001 - the first site is still worth reporting
            sites = [f"(warn rerun failed: {first_line(rerun_error)})"]
        return Row("sync", name, "FAIL", detail=f"first sync at {first}; all: {'; '.join(sites)}",
                   numbers={"sites": sites})
    finally:
        torch.cuda.set_sync_debug_mode("default")
        synchronize(device)
    return Row("sync", name, "ok", detail=f"{calls} calls, no host sync")


def speed_row(name: str, unit: str, device_rate: float | None, cpu_rate: float | None, peak: dict,
              detail: str = "") -> Row:
    """A speed row from throughputs (higher is better); None shows as n/a."""
    fmt = lambda r: "n/a" if r is None else f"{r:,.3g} {unit}"  # noqa: E731
    ratio = f"{device_rate / cpu_rate:.1f}x" if device_rate and cpu_rate else ""
    peak_mib = f"{peak['peak_mib']:,.0f}" if "peak_mib" in peak else ""
    return Row("speed", name, "ok", fmt(device_rate), fmt(cpu_rate), ratio, peak_mib, detail,
               numbers={"device": device_rate, "cpu": cpu_rate, "peak_mib": peak.get("peak_mib"), "unit": unit})


def random_tracks(num_frames: int, num_tracks: int, width: int, height: int, seed: int = 0):
    """Straight-line tracks with a few invisible points: Tracks (T, N) in width x height pixels."""
    from videoai.tokenize import Tracks

    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height], dtype=torch.float32)
    start, end = torch.rand(num_tracks, 2, generator=g) * size, torch.rand(num_tracks, 2, generator=g) * size
    alpha = torch.linspace(0, 1, num_frames)[:, None, None]  # (T, 1, 1)
    points = start + alpha * (end - start)  # (T, N, 2)
    visible = torch.rand(num_frames, num_tracks, generator=g) > 0.1
    visible[0] = True
    return Tracks(points, visible, width, height)


# ----------------------------------------------------------------------------------------------- shared fixtures
def onerec_fixture(num_items: int, levels: int, codebook: int, users: int, history: int, d_model: int,
                   dropout: float, seed: int = 0):
    """Tokenizer fitted on random item embeddings, a model_for_tokenizer model and full-length user sequences."""
    from videoai.recommend import SemanticIDTokenizer, model_for_tokenizer

    g = torch.Generator().manual_seed(seed)
    tokenizer = SemanticIDTokenizer(levels=levels, codebook_size=codebook, iters=5, seed=seed)
    tokenizer.fit(torch.randn(num_items, 32, generator=g))
    torch.manual_seed(seed)
    model = model_for_tokenizer(tokenizer, d_model=d_model, num_heads=2, d_ff=4 * d_model, dropout=dropout,
                                max_history=history)
    sequences = [torch.randint(num_items, (history + 1,), generator=g) for _ in range(users)]
    return tokenizer, model, sequences


def onerec_batches(tokenizer, model, sequences, device):
    """(beam-search inputs, training batch) on device, built by the package's own collators."""
    from videoai.recommend import EvalCollator, NextItemCollator

    evaluation = EvalCollator(tokenizer.codes, model.config.max_history)([(s[:-1], -1) for s in sequences])
    train = NextItemCollator(tokenizer.codes, model.config.session_length)(sequences)
    return ({k: v.to(device) for k, v in evaluation.items()}, {k: v.to(device) for k, v in train.items()})


def beam_call(model, batch, trie, beams: int):
    from videoai.recommend import beam_search

    return beam_search(model, batch["history_codes"], batch["history_mask"], trie, num_beams=beams,
                       exclude_codes=batch["history_codes"], exclude_mask=batch["history_mask"],
                       history_items=batch["history_items"])


def train_step_fn(model, loss_fn, device: torch.device):
    """One optimizer step as the shared Trainer runs it (autocast bf16 on CUDA, clip 1.0, AdamW)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def tiny_pipeline(device: torch.device, with_adapter: bool = True):
    from videoai.generate import TinyWanConfig, build_pipeline

    return build_pipeline(TinyWanConfig(with_motion_adapter=with_adapter, num_layers=2)).to(device)


def denoise_setup(pipe, device: torch.device, steps: int = 4, seed: int = 0):
    """A denoising step as the pipeline's loop runs it (tracks on: track-edited condition + adapter modulations)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from videoai.generate import TrajectoryDenoiser, apply_tracks, encode_image_condition, motion_maps

    cfg = pipe.config
    frames, height, width = cfg.default_num_frames, cfg.default_height, cfg.default_width
    factor = pipe.vae_scale_factor_temporal
    g = torch.Generator().manual_seed(seed)
    image = (torch.rand(1, 3, height, width, generator=g) * 2 - 1).to(device)
    condition = encode_image_condition(pipe.vae, image, frames)  # (1, f + C, L, h, w)
    tracks = random_tracks(frames, 6, width, height, seed).to(device)
    condition = apply_tracks(condition, tracks, factor, cfg.track_sigma)
    maps = motion_maps(tracks, condition.shape[-2], condition.shape[-1], factor, cfg.track_sigma)[None]
    with torch.no_grad():
        modulations = pipe.motion_adapter(maps, torch.ones(1, device=device))
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps, device=device)
    denoiser = TrajectoryDenoiser(pipe.transformer).eval()
    channels = pipe.vae.config.z_dim
    state = {"latents": torch.randn(1, channels, *condition.shape[2:], generator=g).to(device), "i": 0}

    @torch.no_grad()
    def step():
        if state["i"] == steps:  # start a new generation: the scheduler resets its step index
            scheduler.set_timesteps(steps, device=device)
            state["i"] = 0
        t = scheduler.timesteps[state["i"]]
        velocity = denoiser(state["latents"], condition, t.expand(1), modulations=modulations).float()
        state["latents"] = scheduler.step(velocity, t, state["latents"], return_dict=False)[0]
        state["i"] += 1

    return step


# -------------------------------------------------------------------------------------------------- correctness
def check_tokenize(ctx: Context) -> list[Row]:
    """read_video -> patchify -> projection -> 3-D RoPE on the CPU and the device."""
    from videoai.tokenize import apply_rope, patchify, read_video, rope_3d, unpatchify

    clip = read_video(ctx.clip, num_frames=8, size=(64, 112))
    heads, head_dim, patch = 2, 48, (2, 16, 16)
    g = torch.Generator().manual_seed(0)
    projection = torch.randn(3 * 2 * 16 * 16, heads * head_dim, generator=g) / 40

    def run(device):
        video = clip.frames.to(device).permute(3, 0, 1, 2)[None].float() / 255  # (1, 3, T, H, W)
        tokens, grid = patchify(video, patch)  # (1, N, 3*pt*ph*pw)
        assert torch.equal(unpatchify(tokens, patch, grid), video)
        q = (tokens @ projection.to(device)).unflatten(-1, (heads, head_dim)).transpose(1, 2)  # (1, H, N, hd)
        cos, sin = rope_3d(grid, head_dim, device=device)
        return apply_rope(q, cos, sin)

    with strict_fp32():
        row = compare("read_video+patchify+rope_3d", run(torch.device("cpu")), run(ctx.device), atol=1e-4)
    row.detail += f"; {'real' if ctx.clip_is_real else 'synthetic'} clip {tuple(clip.frames.shape)}"
    return [row]


def check_rasterize(ctx: Context) -> list[Row]:
    """Gaussian heatmaps, sparse/dense displacement maps and splat_features of the same tracks."""
    from videoai.tokenize import displacement_maps, gaussian_heatmaps, splat_features

    tracks = random_tracks(9, 24, 96, 64)
    features = torch.randn(2, 4, 16, 24, generator=torch.Generator().manual_seed(1))

    def run(device):
        t = tracks.to(device)
        sparse, count = displacement_maps(t, 16, 24, return_weights=True)
        dense, weight = displacement_maps(t, 16, 24, 1.5, return_weights=True)
        feats, splat_weight = splat_features(features.to(device), t, 1.5)
        return [gaussian_heatmaps(t, 16, 24, 1.5), sparse, count, dense, weight, feats, splat_weight]

    with strict_fp32():
        expected, got = run(torch.device("cpu")), run(ctx.device)
    names = ["gaussian_heatmaps", "displacement_maps sparse", "sparse counts", "displacement_maps dense",
             "dense weights", "splat_features", "splat weights"]
    rows = [compare(n, e, d, atol=1e-5) for n, e, d in zip(names, expected, got)]
    worst = max(r.numbers.get("max_abs_error", 0.0) for r in rows)
    failed = [r.name for r in rows if r.status != "pass"]
    return [Row("correctness", "rasterize (heatmaps, displacement, splat)", "FAIL" if failed else "pass",
                detail=f"max|d|={worst:.2e} over 7 outputs" + (f"; failed: {failed}" if failed else ""),
                numbers={"max_abs_error": worst})]


def check_kmeans_assign(ctx: Context) -> list[Row]:
    """ResidualKMeans fitted on the CPU, codes of the same rows on the CPU and on the device."""
    from videoai.tokenize import ResidualKMeans

    x = torch.randn(3000, 32, generator=torch.Generator().manual_seed(2))
    model = ResidualKMeans(3, 32, iters=5).fit(x)
    with strict_fp32():
        expected = model.encode(x)
        on_device = copy.deepcopy(model).to(ctx.device)
        got = on_device.encode(x.to(ctx.device)).cpu()
        error_cpu, error_device = model.quantization_error(x), on_device.quantization_error(x.to(ctx.device)).cpu()
    agree = (got == expected).all(1).float().mean().item()
    # A different summation order may flip a row whose two nearest centroids tie to float precision; allow 0.1%.
    ok = agree >= 0.999 and torch.allclose(error_cpu, error_device, rtol=1e-4)
    return [Row("correctness", "ResidualKMeans encode (assign)", "pass" if ok else "FAIL",
                detail=f"rows with identical codes {agree:.2%}; mse cpu {error_cpu[-1]:.5f} dev {error_device[-1]:.5f}",
                numbers={"agreement": agree})]


def check_generate(ctx: Context) -> list[Row]:
    """The embedded default generation pipeline, tracks on, fixed latents, 3 steps, decoded frames."""
    from videoai.generate import DEFAULT_MODEL_DIR, TinyWanConfig, build_pipeline, load_default_pipeline

    embedded = (DEFAULT_MODEL_DIR / "model_index.json").is_file()
    load = load_default_pipeline if embedded else (lambda: build_pipeline(TinyWanConfig()))
    g = torch.Generator().manual_seed(3)

    def run(device, latents, image, tracks):
        pipe = load().to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe(image, tracks=tracks, num_inference_steps=3, latents=latents.clone(), output_type="pt").frames

    pipe = load()
    frames, height, width = (pipe.config.default_num_frames, pipe.config.default_height, pipe.config.default_width)
    latent_shape = (1, pipe.vae.config.z_dim, (frames - 1) // pipe.vae_scale_factor_temporal + 1,
                    height // pipe.vae_scale_factor_spatial, width // pipe.vae_scale_factor_spatial)
    latents, image = torch.randn(latent_shape, generator=g), torch.rand(3, height, width, generator=g)
    tracks = [torch.tensor([[10.0, 12.0], [40.0, 30.0]]), torch.tensor([[50.0, 50.0], [20.0, 44.0]])]
    with strict_fp32():
        row = compare("generation pipeline (tracks on)", run("cpu", latents, image, tracks),
                      run(ctx.device, latents, image, tracks), atol=2e-3)
    row.detail += f"; {'embedded default' if embedded else 'random tiny'} model, {frames}x{height}x{width}"
    return [row]


def check_beam_search(ctx: Context) -> list[Row]:
    """OneRec constrained beam search of a tiny model_for_tokenizer model: items and scores."""
    tokenizer, model, sequences = onerec_fixture(300, 2, 16, 16, 10, 32, dropout=0.0)
    model.eval()
    results = []
    with strict_fp32():
        for device in (torch.device("cpu"), ctx.device):
            on_device = copy.deepcopy(model).to(device)
            batch, _ = onerec_batches(tokenizer, on_device, sequences, device)
            results.append(beam_call(on_device, batch, tokenizer.trie.to(device), beams=5))
    items = compare("beam search items", results[0].items, results[1].items, atol=0)
    scores = compare("beam search scores", results[0].scores, results[1].scores, atol=1e-4)
    ok = items.status == scores.status == "pass"
    return [Row("correctness", "OneRec beam search", "pass" if ok else "FAIL",
                detail=f"items {items.detail}; scores {scores.detail}", numbers={**items.numbers, **scores.numbers})]


def check_tagger(ctx: Context) -> list[Row]:
    """The embedded tagger's logits for the same clips (preprocessing on each device)."""
    from videoai.tokenize import read_video
    from videoai.understand import load_tagger

    model = load_tagger()
    clips = [read_video(ctx.clip, num_frames=model.config.num_frames, start=s, end=s + 2.0, size=(96, 128)).frames
             for s in (0.0, 2.0)]
    frames = torch.stack(clips)  # (B, T, H, W, 3) uint8

    def run(device):
        tagger = copy.deepcopy(model).to(device)
        with torch.no_grad():
            return tagger(tagger.preprocess(frames.to(device))).logits

    with strict_fp32():
        expected, got = run(torch.device("cpu")), run(ctx.device)
    row = compare("tagger logits", expected, got, atol=1e-3)
    same_top = bool((expected.argmax(-1) == got.cpu().argmax(-1)).all())
    if not same_top:
        row.status = "FAIL"
    row.detail += f"; same top tag: {same_top}"
    return [row]


def check_track_points(ctx: Context) -> list[Row]:
    """track_points runs on the CPU (OpenCV LK): deterministic, and its Tracks rasterize the same on the device."""
    from videoai.generate import latent_frame_tracks
    from videoai.tokenize import displacement_maps, read_video
    from videoai.understand import track_points

    frames = read_video(ctx.clip, num_frames=9, size=96).frames
    first, second = track_points(frames, grid=6), track_points(frames, grid=6)
    deterministic = torch.equal(first.points, second.points) and torch.equal(first.visibility, second.visibility)

    def run(device):
        latent = latent_frame_tracks(first.to(device), 4)
        return displacement_maps(latent, 12, 16, 1.0)

    with strict_fp32():
        row = compare("track_points", run(torch.device("cpu")), run(ctx.device), atol=1e-5)
    if not deterministic:
        row.status = "FAIL"
    row.detail += f"; repeat-identical: {deterministic}; {first.num_tracks} tracks (OpenCV on the CPU)"
    return [row]


# --------------------------------------------------------------------------------------------------------- sync
def sync_denoise(ctx: Context) -> list[Row]:
    pipe = tiny_pipeline(ctx.device)
    return [sync_row("denoising step (tiny Wan, tracks + adapter)", denoise_setup(pipe, ctx.device), ctx.device)]


def sync_beam_search(ctx: Context) -> list[Row]:
    tokenizer, model, sequences = onerec_fixture(300, 2, 16, 32, 10, 32, dropout=0.0)
    model = model.to(ctx.device).eval()
    batch, _ = onerec_batches(tokenizer, model, sequences, ctx.device)
    trie = tokenizer.trie.to(ctx.device)
    return [sync_row("beam search (whole call, 2 levels)", lambda: beam_call(model, batch, trie, 5), ctx.device)]


def sync_train_onerec(ctx: Context) -> list[Row]:
    from videoai.recommend import next_token_loss

    tokenizer, model, sequences = onerec_fixture(300, 2, 16, 32, 10, 32, dropout=0.1)
    model = model.to(ctx.device)
    _, batch = onerec_batches(tokenizer, model, sequences, ctx.device)
    trie = tokenizer.trie.to(ctx.device)
    step = train_step_fn(model, lambda: next_token_loss(model, batch, trie)[0], ctx.device)
    return [sync_row("OneRec training step", step, ctx.device)]


def sync_train_generator(ctx: Context) -> list[Row]:
    from diffusers import FlowMatchEulerDiscreteScheduler

    from videoai.generate import GeneratorTrainConfig, motion_maps
    from videoai.generate.train import make_loss_fn, prepare_denoiser

    pipe = tiny_pipeline(ctx.device)
    config = GeneratorTrainConfig(mode="full")
    denoiser = prepare_denoiser(pipe, config)
    loss_fn = make_loss_fn(FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config), config)
    frames, size, factor = pipe.config.default_num_frames, pipe.config.default_height, pipe.vae_scale_factor_temporal
    latent_frames, cells = (frames - 1) // factor + 1, size // pipe.vae_scale_factor_spatial
    channels = pipe.vae.config.z_dim
    g = torch.Generator().manual_seed(4)
    tracks = random_tracks(frames, 4, size, size)
    batch = {
        "latents": torch.randn(2, channels, latent_frames, cells, cells, generator=g),
        "condition": torch.randn(2, factor + channels, latent_frames, cells, cells, generator=g),
        "motion_maps": motion_maps(tracks, cells, cells, factor, 1.0)[None].expand(2, -1, -1, -1, -1),
        "motion_active": torch.ones(2),
    }
    batch = {k: v.to(ctx.device) for k, v in batch.items()}
    step = train_step_fn(denoiser, lambda: loss_fn(denoiser, batch)[0], ctx.device)
    return [sync_row("generator training step (full + adapter)", step, ctx.device)]


def sync_train_tagger(ctx: Context) -> list[Row]:
    from videoai.understand import SYNTHETIC_AUGMENT, VideoTagger, VideoTaggerConfig
    from videoai.understand.tagger import preprocess_frames
    from videoai.understand.tagger_train import augment_batch

    torch.manual_seed(5)
    tags = ["direction:left", "direction:right", "direction:up", "direction:down", "shape:circle"]
    model = VideoTagger(VideoTaggerConfig(tags=tags, num_frames=4, appearance_channels=(8, 16))).to(ctx.device)
    perms = SYNTHETIC_AUGMENT.permutations(tags)
    g = torch.Generator().manual_seed(5)
    frames = torch.randint(0, 256, (2, 4, 64, 64, 3), dtype=torch.uint8, generator=g).to(ctx.device)
    labels = (torch.rand(2, len(tags), generator=g) > 0.5).float().to(ctx.device)

    def loss():  # train_tagger's loss_fn, with its synthetic-recipe augmentation
        f, y = augment_batch(frames, labels, SYNTHETIC_AUGMENT, perms)
        return model(preprocess_frames(f, model.config), labels=y).loss

    return [sync_row("tagger training step (+ augment)", train_step_fn(model, loss, ctx.device), ctx.device)]


def sync_kmeans(ctx: Context) -> list[Row]:
    # The iterations are called below the public kmeans(), whose input check syncs once by design (bool(isfinite)).
    from videoai.tokenize.residual_kmeans import _fit_kmeans

    x = torch.randn(4096, 32, generator=torch.Generator().manual_seed(6)).to(ctx.device)
    fit = lambda: _fit_kmeans(x, 64, iters=5, batch_size=None, balanced=False, seed=0,  # noqa: E731
                              init_sample_size=None, return_labels=True)
    minibatch = lambda: _fit_kmeans(x, 64, iters=5, batch_size=1024, balanced=False, seed=0,  # noqa: E731
                                    init_sample_size=None, return_labels=True)
    return [sync_row("k-means iterations (full batch, incl. k-means++)", fit, ctx.device),
            sync_row("k-means iterations (mini-batch)", minibatch, ctx.device)]


# -------------------------------------------------------------------------------------------------------- speed
def speed_kmeans(ctx: Context) -> list[Row]:
    """ResidualKMeans.fit on N x D: device vs CPU (same data), and faiss (GPU if it has one, else CPU) as the peer."""
    from videoai.tokenize import ResidualKMeans

    s = ctx.sizes
    g = torch.Generator().manual_seed(7)
    centers = torch.randn(4 * s.kmeans_codes, s.kmeans_dim, generator=g)
    x = centers[torch.randint(centers.shape[0], (s.kmeans_rows,), generator=g)]
    x += 0.3 * torch.randn(x.shape, generator=g)  # (N, D) Gaussian mixture
    fitted = []

    def fit(data):
        fitted.append(ResidualKMeans(s.kmeans_levels, s.kmeans_codes, iters=s.kmeans_iters).fit(data))

    peak, x_device = {}, x.to(ctx.device)
    with peak_memory(ctx.device, peak):
        device_time = timed(lambda: fit(x_device), ctx.device, repeats=1, warmup=1 if ctx.device.type == "cuda" else 0)
    cpu_time = timed(lambda: fit(x), torch.device("cpu"), repeats=1, warmup=0)
    mse = fitted[0].quantization_error(x_device)[-1].item()
    detail = (f"{s.kmeans_rows:,}x{s.kmeans_dim}, {s.kmeans_levels} levels x {s.kmeans_codes}, {s.kmeans_iters} "
              f"iters; mse {mse:.4f}")
    rows = [speed_row("ResidualKMeans fit", "rows/s", s.kmeans_rows / device_time, s.kmeans_rows / cpu_time, peak,
                      detail)]
    try:
        import faiss
    except ImportError:
        return rows + [Row("speed", "faiss k-means (peer)", "skipped", detail="faiss not importable")]
    use_gpu = ctx.device.type == "cuda" and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    data = x.numpy()

    def faiss_fit():
        residual = data.copy()
        for level in range(s.kmeans_levels):
            km = faiss.Kmeans(s.kmeans_dim, s.kmeans_codes, niter=s.kmeans_iters, seed=level, gpu=use_gpu,
                              max_points_per_centroid=s.kmeans_rows)  # train on every row, as ours does
            km.train(residual)
            _, labels = km.index.search(residual, 1)
            residual -= km.centroids[labels[:, 0]]
        return float((residual**2).mean())

    start = time.perf_counter()
    faiss_mse = faiss_fit()
    faiss_rate = s.kmeans_rows / (time.perf_counter() - start)
    kind = "faiss-gpu" if use_gpu else "faiss-cpu"
    rows.append(speed_row(f"{kind} k-means (peer, same work)", "rows/s", faiss_rate if use_gpu else None,
                          None if use_gpu else faiss_rate, {}, f"mse {faiss_mse:.4f}; ours/peer "
                          f"{(s.kmeans_rows / device_time) / faiss_rate:.1f}x"))
    return rows


def wan_step(config: dict, video: tuple[int, int, int], text_tokens: int, device: torch.device, with_tracks: bool,
             repeats: int, peak: dict, seed: int = 0) -> float:
    """Seconds per denoising step of a random bf16 WanTransformer3DModel (+ tracks: edited condition, adapter)."""
    from diffusers import WanTransformer3DModel

    from videoai.generate import MotionAdapter, TrajectoryDenoiser, apply_tracks, motion_maps

    torch.manual_seed(seed)
    frames, height, width = video
    latent = ((frames - 1) // 4 + 1, height // 8, width // 8)  # Wan VAE: 4x time, 8x space
    dtype = torch.bfloat16
    with peak_memory(device, peak):
        with building(device, dtype):
            transformer = WanTransformer3DModel(**config).eval().requires_grad_(False)
        channels = config["out_channels"]
        latents = torch.randn(1, channels, *latent, device=device, dtype=dtype)
        condition = torch.randn(1, 4 + channels, *latent, device=device)  # (1, f + C, L, h, w)
        modulations = None
        if with_tracks:
            tracks = random_tracks(frames, 16, width, height, seed).to(device)
            condition = apply_tracks(condition, tracks, 4, 1.0)
            with building(device, dtype):
                inner_dim = config["num_attention_heads"] * config["attention_head_dim"]
                adapter = MotionAdapter(config["num_layers"], inner_dim, patch_size=config["patch_size"]).eval()
            with torch.no_grad():
                modulations = adapter(motion_maps(tracks, *latent[1:], 4, 1.0)[None].to(dtype))
        condition = condition.to(dtype)
        text = torch.zeros(1, text_tokens, config["text_dim"], device=device, dtype=dtype)
        image = None if config["image_dim"] is None else torch.zeros(1, 257, config["image_dim"], device=device,
                                                                     dtype=dtype)
        denoiser = TrajectoryDenoiser(transformer)
        timestep = torch.full((1,), 500.0, device=device)

        @torch.no_grad()
        def step():
            denoiser(latents, condition, timestep, text, image, modulations=modulations)

        seconds = timed(step, device, repeats)
    return seconds


def speed_wan(ctx: Context) -> list[Row]:
    """A denoising step at the full size on the device, and a smaller same-work step on both CPU and device."""
    s = ctx.sizes
    config = WAN_CONFIGS[s.wan]
    frames, height, width = s.wan_video
    tokens = ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)
    rows = []
    for with_tracks in (False, True):
        peak = {}
        name = f"Wan {s.wan} step {height}x{width}x{frames} " + ("with tracks" if with_tracks else "no tracks")
        if ctx.device.type == "cuda" or s.wan == "tiny":
            seconds = wan_step(config, s.wan_video, s.wan_text_tokens, ctx.device, with_tracks, s.repeats, peak)
            rows.append(speed_row(name, "steps/s", 1 / seconds, None, peak,
                                  f"{tokens:,} tokens, {seconds:.3f} s/step, bf16; CPU: see the same-work row"))
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    small = dict(config, num_layers=s.cpu_wan_layers)
    frames, height, width = s.cpu_wan_video
    peak = {}
    device_seconds = wan_step(small, s.cpu_wan_video, s.wan_text_tokens, ctx.device, True, s.repeats, peak)
    cpu_seconds = wan_step(small, s.cpu_wan_video, s.wan_text_tokens, torch.device("cpu"), True, 1, {})
    rows.append(speed_row(f"Wan {s.wan} {s.cpu_wan_layers}-block step {height}x{width}x{frames} (same work)",
                          "steps/s", 1 / device_seconds, 1 / cpu_seconds, peak, "bf16 on both, tracks on"))
    return rows


def speed_onerec(ctx: Context) -> list[Row]:
    """OneRec training tokens/s and constrained beam-search users/s at the configured batch."""
    from videoai.recommend import next_token_loss

    s = ctx.sizes
    tokenizer, model, sequences = onerec_fixture(s.onerec_items, s.onerec_levels, s.onerec_codebook, s.onerec_users,
                                                 s.onerec_history, s.onerec_d_model, dropout=0.2)
    levels = model.config.num_levels
    tokens = s.onerec_users * s.onerec_history * levels  # teacher-forced targets per step
    rates = {}
    for device in (ctx.device, torch.device("cpu")):
        replica = copy.deepcopy(model).to(device)
        evaluation, train = onerec_batches(tokenizer, replica, sequences, device)
        trie = tokenizer.trie.to(device)
        step = train_step_fn(replica, lambda: next_token_loss(replica, train, trie)[0], device)
        peak = {}
        with peak_memory(device, peak):
            train_seconds = timed(step, device, s.repeats)
        replica.eval()
        with peak_memory(device, peak.setdefault("beam", {})):
            beam_seconds = timed(lambda: beam_call(replica, evaluation, trie, s.onerec_beams), device, s.repeats)
        rates[device.type] = (tokens / train_seconds, s.onerec_users / beam_seconds, peak)
    dev, cpu = rates[ctx.device.type], rates["cpu"]
    detail = (f"{s.onerec_items:,} items, {levels} tokens/item, d_model {s.onerec_d_model}, history "
              f"{s.onerec_history}, batch {s.onerec_users}")
    return [speed_row("OneRec training", "tokens/s", dev[0], cpu[0], dev[2], detail + "; bf16 autocast on CUDA"),
            speed_row(f"OneRec beam search ({s.onerec_beams} beams)", "users/s", dev[1], cpu[1], dev[2]["beam"],
                      detail)]


def speed_tagger(ctx: Context) -> list[Row]:
    """The embedded tagger: preprocess + forward of a batch of uint8 clips, clips/s."""
    from videoai.understand import load_tagger

    model = load_tagger()
    c = model.config
    frames = torch.randint(0, 256, (ctx.sizes.tagger_batch, c.num_frames, 2 * c.height, 2 * c.width, 3),
                           dtype=torch.uint8, generator=torch.Generator().manual_seed(8))
    rates, peak = {}, {}
    for device in (ctx.device, torch.device("cpu")):
        tagger, batch = copy.deepcopy(model).to(device), frames.to(device)

        @torch.no_grad()
        def forward():
            tagger(tagger.preprocess(batch))

        with peak_memory(device, peak):
            rates[device.type] = ctx.sizes.tagger_batch / timed(forward, device, ctx.sizes.repeats)
    return [speed_row("tagger inference", "clips/s", rates[ctx.device.type], rates["cpu"], peak,
                      f"batch {ctx.sizes.tagger_batch} x {c.num_frames} frames, {c.height}x{c.width} input, fp32")]


def gpu_decode(path: Path, num_frames: int, device: torch.device) -> tuple[int, str]:
    """Decode the first num_frames frames on the GPU: torchcodec (CUDA), else PyAV with NVDEC; (frames, how)."""
    try:
        from torchcodec.decoders import VideoDecoder

        decoder = VideoDecoder(str(path), device=str(device))
        batch = decoder.get_frames_in_range(0, min(num_frames, len(decoder)))
        return batch.data.shape[0], "torchcodec (NVDEC)"
    except ImportError:
        pass
    import av
    from av.codec.hwaccel import HWAccel

    count = 0
    with av.open(str(path), hwaccel=HWAccel(device_type="cuda", allow_software_fallback=False)) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
            count += 1
            if count == num_frames:
                break
    return count, "PyAV hwaccel=cuda (NVDEC)"


def speed_decode(ctx: Context) -> list[Row]:
    """Decode frames/s: the SDK's reader on the CPU (decord / PyAV) against a GPU decoder where one exists."""
    from videoai.tokenize import iter_video_chunks

    count = ctx.sizes.decode_frames
    start, decoded = time.perf_counter(), 0
    for chunk in iter_video_chunks(ctx.clip, chunk_size=min(64, count)):  # the first `count` frames, in order
        decoded += chunk.num_frames
        if decoded >= count:
            break
    cpu_rate = decoded / (time.perf_counter() - start)
    count = decoded  # the GPU decodes exactly these frames
    detail = f"{'real' if ctx.clip_is_real else 'synthetic'} clip {chunk.width}x{chunk.height}, first {count} frames"
    if ctx.device.type != "cuda":
        return [speed_row("decode (iter_video_chunks on CPU)", "frames/s", None, cpu_rate, {},
                          detail + "; GPU: n/a (cpu)")]
    try:
        gpu_decode(ctx.clip, 8, ctx.device)  # warm-up: decoder creation
        start = time.perf_counter()
        decoded, how = gpu_decode(ctx.clip, count, ctx.device)
        synchronize(ctx.device)
        device_rate = decoded / (time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 - no GPU decoder is a result, not a crash
        return [speed_row("decode", "frames/s", None, cpu_rate, {}, f"{detail}; GPU decode n/a: {first_line(error)}")]
    return [speed_row(f"decode ({how} vs iter_video_chunks CPU)", "frames/s", device_rate, cpu_rate, {}, detail)]


SECTIONS = {
    "correctness": [check_tokenize, check_rasterize, check_kmeans_assign, check_generate, check_beam_search,
                    check_tagger, check_track_points],
    "sync": [sync_denoise, sync_beam_search, sync_train_onerec, sync_train_generator, sync_train_tagger, sync_kmeans],
    "speed": [speed_kmeans, speed_wan, speed_onerec, speed_tagger, speed_decode],
}


# ------------------------------------------------------------------------------------------------ running, output
def run_section(section: str, fn, ctx: Context) -> list[Row]:
    """Run one check; an exception becomes an error row with its first line and where it was raised."""
    start = time.perf_counter()
    try:
        rows = fn(ctx)
    except Exception as error:  # noqa: BLE001 - one failing check must not hide the others
        if ctx.device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
        rows = [Row(section, fn.__name__, "error",
                    detail=f"{first_line(error)} at {where(traceback.extract_tb(error.__traceback__))}")]
    seconds = time.perf_counter() - start
    for row in rows:
        row.numbers.update(check=fn.__name__, section_seconds=round(seconds, 2))
    print(f"  {fn.__name__}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return rows


def synthetic_clip(path: Path) -> Path:
    """A 5 s 640x360 clip of moving colour blocks written with the SDK's writer (when no real clip is at hand)."""
    from videoai.tokenize import write_video

    t = torch.arange(150)[:, None, None]
    y, x = torch.arange(360)[None, :, None], torch.arange(640)[None, None, :]
    planes = torch.broadcast_tensors((x + 4 * t) % 256, (y + 2 * t) % 256, ((x // 40 + y // 40 + t // 30) % 2) * 255)
    frames = torch.stack(planes, -1)  # (150, 360, 640, 3)
    write_video(frames.to(torch.uint8), path, fps=30)
    return path


COLUMNS = ("section", "name", "status", "device", "cpu", "ratio", "peak_mib", "detail")


def table(rows: list[Row]) -> str:
    """Plain-text table, one line per row."""
    cells = [COLUMNS] + [tuple(str(getattr(r, c)) for c in COLUMNS) for r in rows]
    widths = [min(max(len(line[i]) for line in cells), 60 if i < 7 else 10_000) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells)


def markdown(rows: list[Row], header: dict) -> str:
    lines = [f"{k}: {v}  " for k, v in header.items()] + ["", "| " + " | ".join(COLUMNS) + " |",
                                                             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(getattr(r, c)).replace("|", "/") for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, rows: list[Row], header: dict) -> None:
    from videoai.files import atomic_write

    payload = json.dumps({"header": header, "rows": [asdict(r) for r in rows]}, indent=2, default=str)
    atomic_write(out / "gpu_check.json", lambda p: Path(p).write_text(payload))
    atomic_write(out / "gpu_check.md", lambda p: Path(p).write_text(markdown(rows, header)))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="target device (cuda, cuda:1, or cpu for the smoke run)")
    p.add_argument("--small", action="store_true", help="small sizes (automatic with --device cpu)")
    p.add_argument("--wan", choices=sorted(WAN_CONFIGS), default=None, help="Wan config of the speed step")
    p.add_argument("--clip", type=Path, default=None, help="video for the tokenize/tagger/decode checks")
    p.add_argument("--only", nargs="*", default=None, help="run sections/functions whose name starts with these")
    p.add_argument("--out", type=Path, default=None, help="folder for gpu_check.json and gpu_check.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(NEEDS_GPU)
        return 0
    device = torch.device(args.device)
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"--device: expected cuda[:N] or cpu, got {args.device!r}")
    sizes = SMALL if (args.small or device.type == "cpu") else Sizes()
    if args.wan:
        sizes = replace(sizes, wan=args.wan)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        workdir = Path(scratch)
        clip = args.clip or next((c for c in CLIP_CANDIDATES if c.is_file()), None)
        ctx = Context(device, sizes, workdir, clip or synthetic_clip(workdir / "synthetic.mp4"), clip is not None)
        rows, start = [], time.perf_counter()
        for section, functions in SECTIONS.items():
            for fn in functions:
                if args.only is None or any(fn.__name__.startswith(o) or section == o for o in args.only):
                    rows += run_section(section, fn, ctx)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    header = {"command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "device": f"{device} ({name})", "cpu threads": torch.get_num_threads(), "torch": torch.__version__,
              "sizes": "small" if sizes.kmeans_rows == SMALL.kmeans_rows else "full",
              "seconds": round(time.perf_counter() - start, 1)}
    print("\n".join(f"{k}: {v}" for k, v in header.items()))
    print(table(rows))
    if args.out is not None:
        write_outputs(args.out, rows, header)
    return 1 if any(r.status in ("FAIL", "error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
