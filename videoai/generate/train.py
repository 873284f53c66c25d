"""Train the trajectory-conditioned Wan denoiser by flow matching on the shared loop (full, LoRA or adapter-only).

Data: clips are VAE-encoded once (`encode_clips`) into normalised video latents + the plain I2V condition of frame
0, each with the clip's tracks from a pluggable track source (synthetic ground truth, or `videoai.understand`'s
point tracker for real clips). Each time a clip is drawn, `TrackConditionedLatents` samples a sparse subset of its
tracks (weighted by motion), drops tracks at random (all of them with `track_dropout`, which trains the
unconditional branch used by classifier-free guidance) and edits the condition with `apply_tracks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3
from torch.utils.data import DataLoader, Dataset
from transformers.optimization import get_wsd_schedule

from videoai.tokenize.tracks import Tracks
from videoai.train import Trainer, TrainConfig, TrainResult

from .conditioning import apply_tracks, motion_maps
from .latents import encode_image_condition, encode_video
from .model import TrajectoryDenoiser
from .motion_adapter import MotionAdapter

TRAIN_MODES = ("full", "lora", "adapter")
TrackSource = Callable[[torch.Tensor], Tracks]  # frames (T, H, W, 3) uint8 -> Tracks (dense or sparse)


@dataclass
class GeneratorTrainConfig:
    """What to train and how tracks are sampled; loop settings (steps, EMA, resume...) live in `TrainConfig`."""

    mode: str = "full"  # "full" | "lora" (peft LoRA on attention) | "adapter" (MotionAdapter only)
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_scheduler: str = "constant_with_warmup"  # any name of diffusers.optimization.get_scheduler
    lr_warmup_steps: int = 50
    # > 0: warmup-stable-decay instead (transformers' get_wsd_schedule): lr_scheduler's constant lr, then a cosine
    # decay to 0 over the last lr_decay_steps steps. A longer run resumed from a stable-phase checkpoint matches one
    # trained from scratch, since the stable phase is the same at any length.
    lr_decay_steps: int = 0
    lora_rank: int = 8
    weighting_scheme: str = "logit_normal"  # timestep density and loss weighting, as diffusers' SD3 trainers
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    min_tracks: int = 1
    max_tracks: int = 8
    motion_power: float = 2.0  # sampling weight of a track = (1 + max displacement in px) ** motion_power
    track_dropout: float = 0.1  # chance a sample gets no tracks at all
    point_dropout: float = 0.1  # chance each sampled track is dropped
    num_workers: int = 0

    def __post_init__(self):
        if self.mode not in TRAIN_MODES:
            raise ValueError(f"GeneratorTrainConfig.mode must be one of {TRAIN_MODES}, got {self.mode!r}")
        if not 1 <= self.min_tracks <= self.max_tracks:
            raise ValueError(f"GeneratorTrainConfig needs 1 <= min_tracks <= max_tracks, got "
                             f"{self.min_tracks}, {self.max_tracks}")
        for name in ("track_dropout", "point_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"GeneratorTrainConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")


def understand_track_source(grid: int = 8, **kwargs) -> TrackSource:
    """Track source for real clips: `videoai.understand.track_points` on a grid x grid lattice."""

    def source(frames: torch.Tensor) -> Tracks:
        from videoai.understand import track_points  # imported on use: understanding is optional for generation

        return track_points(frames, grid=grid, **kwargs)

    return source


@torch.no_grad()
def encode_clips(vae, clips: Iterable[tuple[torch.Tensor, Tracks]], batch_size: int = 8):
    """(frames (T, H, W, 3) uint8, tracks) pairs -> latents (N, C, L, h, w), conditions (N, f + C, L, h, w), tracks."""
    latents, conditions, all_tracks, pending = [], [], [], []

    def flush():
        video = torch.stack([f for f, _ in pending]).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # (B, 3, T, H, W)
        video = video.to(vae.device)
        latents.append(encode_video(vae, video).cpu())
        conditions.append(encode_image_condition(vae, video[:, :, 0], video.shape[2]).cpu())
        all_tracks.extend(t for _, t in pending)
        pending.clear()

    for frames, tracks in clips:
        if not isinstance(tracks, Tracks):
            raise TypeError(f"clips must yield (frames, Tracks) pairs, got {type(tracks).__name__} for tracks")
        pending.append((torch.as_tensor(frames), tracks))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if not latents:
        raise ValueError("clips yielded nothing to encode")
    return torch.cat(latents), torch.cat(conditions), all_tracks


def sample_tracks(tracks: Tracks, config: GeneratorTrainConfig, generator: torch.Generator) -> Tracks:
    """Dense -> sparse: up to max_tracks tracks drawn without replacement, weighted by motion; then dropout."""
    empty = Tracks(tracks.points[:, :0], tracks.visibility[:, :0], tracks.width, tracks.height)
    if tracks.num_tracks == 0 or float(torch.rand((), generator=generator)) < config.track_dropout:
        return empty
    visible = tracks.visibility & tracks.visibility[:1]  # displacement is measured from frame 0
    motion = ((tracks.points - tracks.points[:1]).norm(dim=-1) * visible).amax(0)  # (N,) px
    weights = (1.0 + motion) ** config.motion_power * tracks.visibility.any(0)  # never-visible tracks: weight 0
    available = int((weights > 0).sum())
    if available == 0:
        return empty
    count = int(torch.randint(config.min_tracks, config.max_tracks + 1, (), generator=generator))
    chosen = torch.multinomial(weights, min(count, available), replacement=False, generator=generator)
    keep = torch.rand(chosen.shape[0], generator=generator) >= config.point_dropout
    chosen = chosen[keep]
    return Tracks(tracks.points[:, chosen], tracks.visibility[:, chosen], tracks.width, tracks.height)


class TrackConditionedLatents(Dataset):
    """Encoded clips; item i draws its tracks from a generator seeded by (seed, epoch, i), so resumes are exact."""

    def __init__(self, latents: torch.Tensor, conditions: torch.Tensor, tracks: list[Tracks],
                 config: GeneratorTrainConfig, *, temporal_factor: int = 4, track_sigma: float = 1.0,
                 mark_mask: bool = True, with_motion_maps: bool = False, seed: int = 0):
        if latents.shape[0] != conditions.shape[0] or latents.shape[0] != len(tracks):
            raise ValueError(f"latents, conditions and tracks must have one entry per clip, got "
                             f"{latents.shape[0]}, {conditions.shape[0]}, {len(tracks)}")
        self.latents, self.conditions, self.tracks = latents, conditions, tracks
        self.config, self.temporal_factor, self.track_sigma = config, temporal_factor, track_sigma
        self.mark_mask, self.with_motion_maps, self.seed, self.epoch = mark_mask, with_motion_maps, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.latents.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)
        tracks = sample_tracks(self.tracks[index], self.config, generator)
        condition = apply_tracks(self.conditions[index : index + 1], tracks, self.temporal_factor,
                                 self.track_sigma, self.mark_mask)[0]  # (f + C, L, h, w)
        item = {"latents": self.latents[index], "condition": condition}
        if self.with_motion_maps:
            height, width = condition.shape[-2:]
            item["motion_maps"] = motion_maps(tracks, height, width, self.temporal_factor, self.track_sigma)
            item["motion_active"] = torch.tensor(float(tracks.num_tracks > 0))
        return item


def make_loss_fn(scheduler: FlowMatchEulerDiscreteScheduler, config: GeneratorTrainConfig,
                 timestep_range: tuple[float, float] | None = None):
    """loss_fn(denoiser, batch) for `Trainer`: rectified-flow velocity MSE with SD3-style timestep density.

    Optional batch entries: "noise" and "timestep_density" (u in [0, 1]) drawn per sample by the dataset (else drawn
    here from the global RNG), "text_embeds" / "image_embeds" passed to the denoiser, and "loss_mask"
    (B, 1, L, h, w) weighting where the loss counts. timestep_range (low, high): only training timesteps
    low <= t < high are drawn (one expert of Wan 2.2 A14B).
    """
    train_sigmas = scheduler.sigmas.clone()  # (num_train_timesteps,) training schedule, 1 -> ~0, shift applied
    num_train_timesteps = scheduler.config.num_train_timesteps
    if timestep_range is not None:
        timesteps = train_sigmas * num_train_timesteps
        train_sigmas = train_sigmas[(timesteps >= timestep_range[0]) & (timesteps < timestep_range[1])]
        if train_sigmas.numel() == 0:
            raise ValueError(f"timestep_range={timestep_range} holds none of the scheduler's training timesteps")

    def loss_fn(denoiser: TrajectoryDenoiser, batch: dict) -> tuple[torch.Tensor, dict]:
        clean = batch["latents"]  # (B, C, L, h, w)
        batch_size = clean.shape[0]
        u = batch.get("timestep_density")
        if u is None:
            u = compute_density_for_timestep_sampling(config.weighting_scheme, batch_size, config.logit_mean,
                                                      config.logit_std, config.mode_scale)
        index = (u.cpu() * train_sigmas.numel()).long().clamp(max=train_sigmas.numel() - 1)
        sigma = train_sigmas[index].to(clean.device, clean.dtype).view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
        noise = batch["noise"] if "noise" in batch else torch.randn_like(clean)
        noisy = (1.0 - sigma) * clean + sigma * noise
        prediction = denoiser(noisy, batch["condition"], sigma.flatten() * num_train_timesteps,
                              encoder_hidden_states=batch.get("text_embeds"),
                              encoder_hidden_states_image=batch.get("image_embeds"),
                              motion_maps=batch.get("motion_maps"), motion_active=batch.get("motion_active"))
        weighting = compute_loss_weighting_for_sd3(config.weighting_scheme, sigma)
        error = weighting * (prediction.float() - (noise - clean)) ** 2  # (B, C, L, h, w)
        mask = batch.get("loss_mask")
        if mask is None:
            loss = error.mean()
        else:  # per-sample mean over the counted cells, so the loss is the same on 1 or N processes
            mask = mask.expand_as(error)
            loss = ((error * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1e-6)).mean()
        return loss, {"sigma": sigma.mean()}

    return loss_fn


def add_lora(transformer, config: GeneratorTrainConfig) -> None:
    """peft LoRA (rank = alpha = config.lora_rank) on the attention projections; only its weights train (fp32)."""
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    transformer.requires_grad_(False)
    transformer.add_adapter(LoraConfig(r=config.lora_rank, lora_alpha=config.lora_rank, init_lora_weights="gaussian",
                                       target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    cast_training_params(transformer, torch.float32)  # bf16 base weights keep fp32 LoRA weights for the optimizer


def make_optimizer(parameters: list, config: GeneratorTrainConfig, max_steps: int):
    """AdamW and the learning-rate schedule of `config` over max_steps."""
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    if config.lr_decay_steps:
        if config.lr_warmup_steps + config.lr_decay_steps > max_steps:
            raise ValueError(f"lr_warmup_steps + lr_decay_steps ({config.lr_warmup_steps} + {config.lr_decay_steps}) "
                             f"must fit in max_steps={max_steps}")
        return optimizer, get_wsd_schedule(optimizer, config.lr_warmup_steps, config.lr_decay_steps,
                                           num_training_steps=max_steps)
    return optimizer, get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps,
                                    num_training_steps=max_steps)


def prepare_denoiser(pipe, config: GeneratorTrainConfig) -> TrajectoryDenoiser:
    """Denoiser over the pipeline's transformer (+ adapter) with only the parameters of `config.mode` trainable."""
    transformer = pipe.transformer
    if config.mode == "adapter" and pipe.motion_adapter is None:
        pipe.register_modules(motion_adapter=MotionAdapter(
            num_layers=len(transformer.blocks), inner_dim=transformer.config.num_attention_heads
            * transformer.config.attention_head_dim, in_channels=3 * pipe.vae_scale_factor_temporal,
            patch_size=tuple(transformer.config.patch_size)))
    transformer.requires_grad_(config.mode == "full")
    if config.mode == "lora":
        add_lora(transformer, config)
    if pipe.motion_adapter is not None:
        pipe.motion_adapter.requires_grad_(True)
    return TrajectoryDenoiser(transformer, pipe.motion_adapter)


def train_generator(pipe, dataset: Dataset, config: GeneratorTrainConfig, train_config: TrainConfig,
                    eval_fn=None) -> tuple[TrainResult, Trainer]:
    """Train `pipe`'s denoiser on `dataset` (e.g. `TrackConditionedLatents`); EMA weights, if kept, are copied in."""
    if not isinstance(config, GeneratorTrainConfig):
        raise TypeError(f"config must be a GeneratorTrainConfig, got {type(config).__name__}")
    denoiser = prepare_denoiser(pipe, config)
    parameters = [p for p in denoiser.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError(f"mode={config.mode!r} left nothing to train")
    optimizer, lr_scheduler = make_optimizer(parameters, config, train_config.max_steps)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True,
                        num_workers=config.num_workers)
    loss_fn = make_loss_fn(FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config), config)
    trainer = Trainer(denoiser, optimizer, loader, loss_fn, train_config, lr_scheduler=lr_scheduler,
                      eval_fn=eval_fn)
    result = trainer.train()
    if trainer.ema_model is not None:
        denoiser.load_state_dict(trainer.ema_state_dict(), strict=False)
    return result, trainer


def save_trained(pipe, output_dir, config: GeneratorTrainConfig) -> None:
    """Full / adapter modes: the whole pipeline (`from_pretrained`-able); LoRA mode: LoRA weights only."""
    if config.mode == "lora":
        from peft.utils import get_peft_model_state_dict

        pipe.save_lora_weights(output_dir, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer))
    else:
        pipe.save_pretrained(output_dir)
