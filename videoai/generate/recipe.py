"""The recipe that builds the embedded default model from scratch on synthetic moving shapes (CPU, minutes).

Stages (each resumable; a finished stage is skipped on rerun): 1. train a tiny AutoencoderKLWan on clip crops and
fit its latent statistics; 2. encode the training clips with their ground-truth tracks (object centroids plus
static background anchors); 3. train a tiny WanTransformer3DModel by flow matching with track conditioning, on
coarse tokens (2x2 latent pixels: cheap steps); 4. convert it to finer tokens (`fine_patch_size`, 1x1 latent pixel:
4x the tokens, so objects of 8-14 px are placed to a finer grid) and fine-tune; save the pipeline
(`TrajectoryImageToVideoPipeline.from_pretrained(output_dir / "model")`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import load_file, save_file

from videoai.synthetic import ShapesConfig, ShapesDataset, SyntheticClip, make_clip
from videoai.tokenize.tracks import Tracks
from videoai.train import TrainConfig

from .default import TinyWanConfig, build_pipeline, build_vae
from .pipeline import TrajectoryImageToVideoPipeline
from .repatch import repatch_transformer
from .train import GeneratorTrainConfig, TrackConditionedLatents, encode_clips, train_generator
from .train_vae import VAETrainConfig, VideoCrops, fit_latent_stats, train_vae

logger = logging.getLogger(__name__)

TRAIN_SEED = 0  # training clips use seeds [TRAIN_SEED, TRAIN_SEED + num_clips)
VAE_SEED = 10_000_000  # VAE crops come from clips [VAE_SEED, ...)
HELD_OUT_SEED = 900_000  # benchmarks and tests draw clips from here on; no training stage touches them


def default_shapes_config() -> ShapesConfig:
    """Synthetic clips of the default model: 64x64, 13 frames, 1-3 shapes moving 1-3 px per frame."""
    return ShapesConfig(num_frames=13, height=64, width=64, min_objects=1, max_objects=3, min_speed=1.0,
                        max_speed=3.0)


def _transformer_training() -> GeneratorTrainConfig:
    """Settings of both transformer stages (3: coarse tokens, 4: fine tokens)."""
    return GeneratorTrainConfig(batch_size=32, learning_rate=1e-3, lr_warmup_steps=100, lr_decay_steps=1000,
                                max_tracks=6, weighting_scheme="none")


@dataclass
class DefaultRecipe:
    """Everything that determines the default model; `train_default_model(DefaultRecipe(output_dir))`."""

    output_dir: str | Path
    model: TinyWanConfig = field(default_factory=TinyWanConfig)
    vae: VAETrainConfig = field(default_factory=VAETrainConfig)
    vae_steps: int = 1400
    vae_full: VAETrainConfig = field(default_factory=lambda: VAETrainConfig(batch_size=4, num_frames=13,
                                                                            crop_size=64))
    vae_full_steps: int = 1500
    vae_clips: int = 4096
    num_clips: int = 1024
    encode_batch_size: int = 32
    num_background_tracks: int = 16  # static anchor candidates per clip (a 4x4 lattice)
    generator: GeneratorTrainConfig = field(default_factory=_transformer_training)
    transformer_steps: int = 7000
    fine_patch_size: tuple[int, int, int] | None = (1, 1, 1)  # None: ship the stage-3 transformer
    fine_generator: GeneratorTrainConfig = field(default_factory=_transformer_training)
    fine_steps: int = 3000
    # sampling operating point saved with the model (pipeline config default_guidance_*; bench_generate.py)
    guidance_scale: float = 5.0
    guidance_interval: float = 0.1
    ema_decay: float | None = 0.995
    checkpoint_every: int = 250
    seed: int = 0


def synthetic_tracks(clip: SyntheticClip, num_background: int = 16) -> Tracks:
    """Ground-truth tracks of a synthetic clip: object centroids + a lattice of background points that follow the
    camera, invisible wherever an object covers them."""
    tracks = clip.tracks
    side = max(1, round(num_background**0.5))
    T, H, W = clip.frames.shape[:3]
    xs = (torch.arange(side) + 0.5) * W / side - 0.5
    ys = (torch.arange(side) + 0.5) * H / side - 0.5
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)  # (M, 2) pixel (x, y)
    offsets = torch.zeros(T, 1, 2)
    if clip.camera_motion is not None:
        offsets = clip.camera_motion.cumsum(0)[:, None]  # (T, 1, 2) background shift since frame 0
    points = grid[None] + offsets  # (T, M, 2)
    pixel = points.round().long()
    inside = (pixel[..., 0] >= 0) & (pixel[..., 0] < W) & (pixel[..., 1] >= 0) & (pixel[..., 1] < H)
    covered = clip.masks.any(1)  # (T, H, W) some object there
    frame = torch.arange(T)[:, None].expand_as(inside)
    hit = covered[frame, pixel[..., 1].clamp(0, H - 1), pixel[..., 0].clamp(0, W - 1)]
    background = Tracks(points, inside & ~hit, tracks.width, tracks.height)
    return Tracks.cat([tracks, background])


def _stage_done(path: Path) -> bool:
    return (path / "DONE").is_file()


def _mark_done(path: Path, info: dict) -> None:
    (path / "DONE").write_text(json.dumps(info, indent=1, default=str))


def _train_vae_phase(recipe: DefaultRecipe, out_dir: Path, vae, videos, config: VAETrainConfig, steps: int):
    """One VAE training phase in out_dir (resumable); returns the VAE saved in out_dir / "final"."""
    if _stage_done(out_dir):
        return AutoencoderKLWan.from_pretrained(out_dir / "final")
    crops = VideoCrops(videos, config.num_frames, config.crop_size, seed=recipe.seed)
    train_config = TrainConfig(output_dir=out_dir, max_steps=steps, log_every=10, seed=recipe.seed,
                               checkpoint_every=50, keep_last_checkpoints=1, resume_from="latest", progress_bar=False)
    result, _ = train_vae(vae, crops, config, train_config)
    vae.eval()
    stats = ShapesDataset(64, default_shapes_config(), seed=VAE_SEED + recipe.vae_clips)
    fit_latent_stats(vae, torch.stack([stats[i]["frames"] for i in range(len(stats))]))
    vae.save_pretrained(out_dir / "final")
    _mark_done(out_dir, {"steps": result.step, "last_loss": result.loss, "wall_time_s": result.wall_time})
    return vae


def _train_vae_stage(recipe: DefaultRecipe, root: Path):
    """Phase 1 on short crops (cheap, learns appearance), phase 2 on whole clips (learns the causal cache over
    every latent frame, as inference uses it)."""
    videos = ShapesDataset(recipe.vae_clips, default_shapes_config(), seed=VAE_SEED)
    vae = _train_vae_phase(recipe, root / "vae", build_vae(recipe.model), videos, recipe.vae, recipe.vae_steps)
    vae.train()
    return _train_vae_phase(recipe, root / "vae_full", vae, videos, recipe.vae_full, recipe.vae_full_steps)


def _encode_stage(recipe: DefaultRecipe, root: Path, vae):
    path = root / "latents.safetensors"
    if path.is_file():
        data = load_file(path)
        points, visibility = data.pop("track_points"), data.pop("track_visibility")
        counts = data.pop("track_counts").tolist()
        tracks, start = [], 0
        for count in counts:
            tracks.append(Tracks(points[:, start : start + count], visibility[:, start : start + count], 64, 64))
            start += count
        return data["latents"], data["conditions"], tracks
    shapes = default_shapes_config()

    def clips():
        for seed in range(TRAIN_SEED, TRAIN_SEED + recipe.num_clips):
            clip = make_clip(seed, shapes)
            yield clip.frames, synthetic_tracks(clip, recipe.num_background_tracks)

    latents, conditions, tracks = encode_clips(vae, clips(), recipe.encode_batch_size)
    tmp = path.with_suffix(".tmp")
    save_file({"latents": latents.contiguous(), "conditions": conditions.contiguous(),
               "track_points": torch.cat([t.points for t in tracks], 1).contiguous(),
               "track_visibility": torch.cat([t.visibility for t in tracks], 1).contiguous(),
               "track_counts": torch.tensor([t.num_tracks for t in tracks])}, tmp)
    tmp.replace(path)
    return latents, conditions, tracks


def _train_transformer_stage(recipe: DefaultRecipe, out_dir: Path, pipe, generator: GeneratorTrainConfig,
                             steps: int, data) -> None:
    """Flow-matching training of pipe.transformer in out_dir (resumable); the result is kept in out_dir / "final"."""
    if _stage_done(out_dir):
        pipe.register_modules(transformer=WanTransformer3DModel.from_pretrained(out_dir / "final"))
        return
    latents, conditions, tracks = data
    dataset = TrackConditionedLatents(latents, conditions, tracks, generator,
                                      temporal_factor=pipe.vae.config.scale_factor_temporal,
                                      track_sigma=pipe.config.track_sigma,
                                      mark_mask=pipe.config.mark_tracks_in_mask,
                                      with_motion_maps=pipe.motion_adapter is not None, seed=recipe.seed)
    config = TrainConfig(output_dir=out_dir, max_steps=steps, log_every=50, seed=recipe.seed,
                         ema_decay=recipe.ema_decay, checkpoint_every=recipe.checkpoint_every,
                         keep_last_checkpoints=1, resume_from="latest", progress_bar=False)
    result, _ = train_generator(pipe, dataset, generator, config)
    pipe.transformer.eval()
    pipe.transformer.save_pretrained(out_dir / "final")
    _mark_done(out_dir, {"steps": result.step, "last_loss": result.loss, "wall_time_s": result.wall_time})


def start_from_pipeline(output_dir: str | Path, pipeline_dir: str | Path) -> None:
    """Mark stages 1 and 3 of a recipe run in output_dir as done with the VAE and transformer of a saved pipeline
    (e.g. the embedded model before stage 4 existed): a rerun then only encodes the clips and runs stage 4."""
    source, root = Path(pipeline_dir), Path(output_dir)
    if not (source / "model_index.json").is_file():
        raise FileNotFoundError(f"pipeline_dir: no saved pipeline (model_index.json) in {str(source)!r}")
    vae = AutoencoderKLWan.from_pretrained(source / "vae")
    for stage in ("vae", "vae_full"):
        vae.save_pretrained(root / stage / "final")
        _mark_done(root / stage, {"from": str(source / "vae")})
    WanTransformer3DModel.from_pretrained(source / "transformer").save_pretrained(root / "transformer" / "final")
    _mark_done(root / "transformer", {"from": str(source / "transformer")})


def train_default_model(recipe: DefaultRecipe) -> TrajectoryImageToVideoPipeline:
    """Run (or resume) all stages; the pipeline is saved to `output_dir / "model"` and returned."""
    if recipe.fine_patch_size is not None and recipe.model.with_motion_adapter:
        raise ValueError("DefaultRecipe.fine_patch_size needs model.with_motion_adapter=False (the adapter's token "
                         "grid is not converted); set fine_patch_size=None or model.patch_size instead")
    root = Path(recipe.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1, default=str))
    torch.manual_seed(recipe.seed)
    logger.info("stage 1/4: VAE")
    vae = _train_vae_stage(recipe, root)
    vae.eval().requires_grad_(False)
    logger.info("stage 2/4: encoding %d clips", recipe.num_clips)
    data = _encode_stage(recipe, root, vae)
    logger.info("stage 3/4: transformer")
    pipe = build_pipeline(recipe.model, vae=vae, seed=recipe.seed)
    _train_transformer_stage(recipe, root / "transformer", pipe, recipe.generator, recipe.transformer_steps, data)
    if recipe.fine_patch_size is not None:
        logger.info("stage 4/4: transformer on %s-voxel tokens", tuple(recipe.fine_patch_size))
        if not _stage_done(root / "transformer_fine"):
            pipe.register_modules(transformer=repatch_transformer(pipe.transformer, recipe.fine_patch_size))
        _train_transformer_stage(recipe, root / "transformer_fine", pipe, recipe.fine_generator, recipe.fine_steps,
                                 data)
    pipe.register_to_config(default_guidance_scale=recipe.guidance_scale,
                            default_guidance_interval=recipe.guidance_interval)
    pipe.save_pretrained(root / "model")
    return pipe
