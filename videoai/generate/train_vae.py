"""Train a small AutoencoderKLWan for reconstruction (L1 + MSE + tiny KL) on the shared loop; fit latent statistics.

Used to build the embedded default model: the causal Wan VAE is trained on short random crops (1 + 4k frames, a
spatial window), which its convolutions carry over to whole clips. Trained from scratch, a small Wan VAE falls into
predicting each clip's mean colour (its latent barely varies at init, so the decoder learns to ignore it); an
auxiliary linear read-out of the block-averaged video from the latent (dropped after training) keeps the latent
informative from the first step and breaks that plateau.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKLWan
from diffusers.optimization import get_scheduler
from torch import nn
from torch.utils.data import DataLoader, Dataset

from videoai.train import Trainer, TrainConfig, TrainResult


@dataclass
class VAETrainConfig:
    """Crop size, batch and loss weights for `train_vae`."""

    batch_size: int = 16
    num_frames: int = 5  # frames per crop, 4k + 1
    crop_size: int = 32  # square crop side in pixels, a multiple of the VAE's spatial factor
    learning_rate: float = 1e-3
    lr_warmup_steps: int = 20
    kl_weight: float = 1e-6
    readout_weight: float = 1.0  # auxiliary linear read-out of the block-averaged video from the latent
    saturation_weight: float = 4.0  # pixel error weight 1 + this * saturation of the target (colourful content)


class VideoCrops(Dataset):
    """Random (frames, window) crops of a dataset of videos (3, T, H, W) in [-1, 1]; seeded by (seed, epoch, i)."""

    def __init__(self, videos: Dataset, num_frames: int, crop_size: int, seed: int = 0, key: str = "frames"):
        self.videos, self.num_frames, self.crop_size, self.seed, self.key, self.epoch = (
            videos, num_frames, crop_size, seed, key, 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> torch.Tensor:
        video = self.videos[index]
        video = video[self.key] if isinstance(video, dict) else video  # (3, T, H, W)
        _, num_frames, height, width = video.shape
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)
        t0 = int(torch.randint(0, num_frames - self.num_frames + 1, (), generator=generator))
        y0 = int(torch.randint(0, height - self.crop_size + 1, (), generator=generator))
        x0 = int(torch.randint(0, width - self.crop_size + 1, (), generator=generator))
        return video[:, t0 : t0 + self.num_frames, y0 : y0 + self.crop_size, x0 : x0 + self.crop_size]


class VAEWithReadout(nn.Module):
    """The VAE plus the auxiliary 1x1 read-out (latent -> block-averaged RGB) used only while training."""

    def __init__(self, vae: AutoencoderKLWan):
        super().__init__()
        self.vae = vae
        self.readout = nn.Conv3d(vae.config.z_dim, 3, kernel_size=1)


def block_average(video: torch.Tensor, spatial: int, temporal: int) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, 3, L, H/s, W/s): mean over each latent cell (frame 0 alone, then groups of f)."""
    pooled = nn.functional.avg_pool3d(video, (1, spatial, spatial))  # (B, 3, T, h, w)
    rest = pooled[:, :, 1:].unflatten(2, (-1, temporal)).mean(3)  # (B, 3, L-1, h, w)
    return torch.cat([pooled[:, :, :1], rest], 2)


def make_vae_loss_fn(config: VAETrainConfig):
    """loss_fn(model, video (B, 3, T, H, W)) -> weighted L1 + MSE + kl_weight * KL + readout_weight * read-out MSE."""

    def loss_fn(model: VAEWithReadout, video: torch.Tensor):
        vae = model.vae
        posterior = vae.encode(video).latent_dist
        latents = posterior.sample()
        reconstruction = vae.decode(latents).sample
        error = reconstruction - video
        saturation = (video.amax(1, keepdim=True) - video.amin(1, keepdim=True)) / 2  # (B, 1, T, H, W) in [0, 1]
        weight = 1.0 + config.saturation_weight * saturation
        mse = error.square().mean()
        target = block_average(video, vae.config.scale_factor_spatial, vae.config.scale_factor_temporal)
        readout = (model.readout(posterior.mode()) - target).square().mean()
        loss = (weight * (error.abs() + error.square())).mean() + config.kl_weight * posterior.kl().mean()
        loss = loss + config.readout_weight * readout
        return loss, {"psnr": 10 * torch.log10(4.0 / mse.detach()), "readout": readout.detach()}

    return loss_fn


def train_vae(vae: AutoencoderKLWan, dataset: Dataset, config: VAETrainConfig,
              train_config: TrainConfig) -> tuple[TrainResult, Trainer]:
    """Train `vae` in place on crops from `dataset` (e.g. `VideoCrops`); EMA weights, if kept, are copied in."""
    model = VAEWithReadout(vae)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=config.lr_warmup_steps)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True)
    trainer = Trainer(model, optimizer, loader, make_vae_loss_fn(config), train_config, lr_scheduler=lr_scheduler)
    result = trainer.train()
    if trainer.ema_model is not None:
        model.load_state_dict(trainer.ema_state_dict(), strict=False)
    return result, trainer


@torch.no_grad()
def fit_latent_stats(vae: AutoencoderKLWan, videos: torch.Tensor, batch_size: int = 16) -> None:
    """Set `latents_mean` / `latents_std` in the VAE config to the per-channel statistics of videos (N, 3, T, H, W)."""
    latents = torch.cat([vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist.mode().float().cpu()
                         for chunk in videos.split(batch_size)])  # (N, C, L, h, w)
    channels = latents.transpose(0, 1).flatten(1)  # (C, N*L*h*w)
    vae.register_to_config(latents_mean=channels.mean(1).tolist(), latents_std=channels.std(1).clamp_min(1e-4).tolist())
