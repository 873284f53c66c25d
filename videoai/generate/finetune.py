"""Fine-tune a public Wan layout for trajectory control: peft LoRA on its transformer(s), on the shared training loop.

Data (`encode_finetune_data`): every clip is encoded once — its normalised VAE latents, the layout's plain image
condition of its first frame (`pipe.prepare_latents`, as at inference), its prompt's text embeddings and CLIP image
tokens (`pipe.encode_prompt` / `pipe.encode_image`) — with its tracks from `videoai.understand.track_points`, and
cached in `output_dir/finetune_data.pt`. VAE and encoders stay frozen and are not run again.
Each time a clip is drawn (`TrajectoryFinetuneDataset`), a sparse subset of its tracks is sampled (`sample_tracks`)
and the condition is edited by `layout.with_tracks` with the pipeline's track_conditioning, track_sigma,
track_strength and mark_tracks_in_mask: the condition the guided branch gets at inference. The noise and the
timestep come from a generator seeded by (seed, epoch, index) too, so a run is the same on 1 or N processes and
after a resume. Wan 2.2 A14B: each sample trains the expert whose timestep range its timestep falls in;
`FinetuneConfig.experts` picks the experts trained (and so the timesteps drawn).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling
from torch import nn
from torch.utils.data import DataLoader, Dataset

from videoai.files import atomic_write
from videoai.tokenize.tracks import Tracks
from videoai.tokenize.video_io import read_video
from videoai.train import TrainConfig, Trainer, TrainResult

from .conditioning import check_num_frames
from .latents import encode_video
from .layouts import TRACK_CONDITIONINGS, ImageCondition, WanLayout
from .train import GeneratorTrainConfig, add_lora, make_loss_fn, make_optimizer, sample_tracks, understand_track_source

CACHE_NAME = "finetune_data.pt"
EXPERT_LORA_NAMES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights_transformer_2.safetensors")
TrackSource = Callable[[torch.Tensor], Tracks]  # frames (T, H, W, 3) uint8 -> Tracks in their pixels


@dataclass
class FinetuneConfig(GeneratorTrainConfig):
    """LoRA fine-tuning of a Wan layout; optimisation and track sampling as `GeneratorTrainConfig` (mode "lora")."""

    mode: str = "lora"
    batch_size: int = 1
    learning_rate: float = 1e-4
    lr_warmup_steps: int = 0
    lora_rank: int = 32
    num_frames: int | None = None  # 4k + 1; None: the pipeline's default_num_frames, else 81
    height: int | None = None  # training size; None: the pipeline's default_height / default_width
    width: int | None = None
    fps: float | None = 16.0  # clips are read at this rate from their start; None: num_frames spread over the clip
    prompt: str = ""  # for clips without a caption (CLIP.txt beside CLIP.mp4)
    max_sequence_length: int = 512
    track_grid: int = 8  # track_points on a grid x grid lattice
    track_conditioning: str | None = None  # None: the pipeline's config
    experts: tuple[int, ...] | None = None  # two-expert layouts: 0 high noise, 1 low noise; None: every expert
    gradient_checkpointing: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.mode != "lora":
            raise ValueError(f"FinetuneConfig.mode must be 'lora', got {self.mode!r}")
        for name in ("num_frames", "height", "width"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"FinetuneConfig.{name} must be a positive int or None, got {value!r}")
        if self.fps is not None and (isinstance(self.fps, bool) or not isinstance(self.fps, (int, float))
                                     or self.fps <= 0):
            raise ValueError(f"FinetuneConfig.fps must be a positive number or None, got {self.fps!r}")
        if not isinstance(self.prompt, str):
            raise TypeError(f"FinetuneConfig.prompt must be a str, got {type(self.prompt).__name__}")
        if self.track_conditioning is not None and self.track_conditioning not in TRACK_CONDITIONINGS:
            raise ValueError(f"FinetuneConfig.track_conditioning must be one of {TRACK_CONDITIONINGS} or None, "
                             f"got {self.track_conditioning!r}")
        if self.experts is not None:
            self.experts = tuple(self.experts)
            if not self.experts or not set(self.experts) <= {0, 1} or len(set(self.experts)) != len(self.experts):
                raise ValueError(f"FinetuneConfig.experts must be None or distinct experts from (0, 1), "
                                 f"got {self.experts!r}")


@dataclass
class FinetuneData:
    """Every clip encoded once (CPU tensors); index i is clip `names[i]`."""

    names: list[str]
    latents: torch.Tensor  # (N, C, L, h, w) normalised VAE latents of the clips
    masks: torch.Tensor  # (N, f, L, h, w) I2V mask, or (N, 1, L, h, w) TI2V noise mask
    condition_latents: torch.Tensor  # (N, C, L, h, w) the plain condition's latent
    text_embeds: torch.Tensor  # (P, S, D), one per distinct prompt
    prompt_index: torch.Tensor  # (N,) row of text_embeds
    image_embeds: torch.Tensor | None  # (N, k, S', D') CLIP tokens (k = 2 for first-last-frame), or None
    tracks: list[Tracks]  # in training pixels
    key: str  # what the data was built from (clips, sizes, prompts, model); a cache with another key is rebuilt

    def save(self, path: str | Path) -> None:
        """Write atomically with torch.save (tensors, lists and str only)."""
        state = {name: value for name, value in asdict(self).items() if name != "tracks"}
        state["tracks"] = [(t.points, t.visibility, t.width, t.height) for t in self.tracks]
        atomic_write(path, lambda temporary: torch.save(state, temporary))

    @classmethod
    def load(cls, path: str | Path) -> FinetuneData:
        state = torch.load(path, weights_only=True)
        state["tracks"] = [Tracks(points, visibility, width, height)
                           for points, visibility, width, height in state["tracks"]]
        return cls(**state)


def _training_size(pipe, config: FinetuneConfig) -> tuple[int, int, int]:
    num_frames = config.num_frames or pipe.config.default_num_frames or 81
    check_num_frames(num_frames, pipe.vae_scale_factor_temporal)
    height, width = config.height or pipe.config.default_height, config.width or pipe.config.default_width
    multiple = pipe.spatial_multiple
    for name, value in (("height", height), ("width", width)):
        if value is None:
            raise ValueError(f"FinetuneConfig.{name} is needed: the pipeline has no default_{name}")
        if value % multiple:
            raise ValueError(f"FinetuneConfig.{name} must be a multiple of {multiple}, got {value}")
    return num_frames, height, width


def read_clip(path: Path, config: FinetuneConfig, num_frames: int, height: int,
              width: int) -> tuple[str, torch.Tensor, str]:
    """An mp4 -> (name, frames (num_frames, height, width, 3) uint8, prompt: CLIP.txt beside it, else config.prompt)."""
    if config.fps is None:
        frames = read_video(path, num_frames=num_frames, size=(height, width)).frames
    else:  # the first num_frames frames at config.fps (half a frame of slack so the last one is in)
        frames = read_video(path, fps=config.fps, end=(num_frames - 0.5) / config.fps,
                            size=(height, width)).frames[:num_frames]
    if frames.shape[0] < num_frames:
        raise ValueError(f"clips: {path.name} has {frames.shape[0]} frames at fps={config.fps}, "
                         f"training needs num_frames={num_frames}")
    return path.name, frames, _caption(path, config)


def _caption(path: Path, config: FinetuneConfig) -> str:
    caption = path.with_suffix(".txt")
    return caption.read_text().strip() if caption.is_file() else config.prompt


def _clip_stream(clips, config: FinetuneConfig, num_frames: int, height: int,
                 width: int) -> tuple[str, Iterable[tuple[str, torch.Tensor, str]]]:
    """Folder or in-memory clips (frames, or (frames, prompt) pairs) -> (digest of what they are, (name, frames,
    prompt) clips); a folder's clips are read one at a time while they are encoded and digested by name, size,
    modification time and caption."""
    digest = hashlib.sha256()
    if isinstance(clips, (str, Path)):
        paths = sorted(Path(clips).glob("*.mp4"))
        if not paths:
            raise ValueError(f"clips: no .mp4 files in {str(clips)!r}")
        for path in paths:
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{_caption(path, config)}\0".encode())
        return digest.hexdigest(), (read_clip(path, config, num_frames, height, width) for path in paths)
    checked = []
    for i, clip in enumerate(clips):
        frames, prompt = clip if isinstance(clip, tuple) else (clip, config.prompt)
        frames = torch.as_tensor(frames)
        if frames.dtype != torch.uint8 or frames.ndim != 4 or tuple(frames.shape[1:]) != (height, width, 3) \
                or frames.shape[0] < num_frames:
            raise ValueError(f"clips[{i}] must be uint8 (T >= {num_frames}, {height}, {width}, 3) frames at the "
                             f"training size, got {frames.dtype} {tuple(frames.shape)}")
        checked.append((f"clip_{i:05d}", frames[:num_frames], prompt))
        digest.update(f"{prompt}\0".encode())
        digest.update(frames[:num_frames].numpy().tobytes())
    if not checked:
        raise ValueError("clips is empty")
    return digest.hexdigest(), checked


@torch.no_grad()
def encode_finetune_data(pipe, clips, config: FinetuneConfig, track_source: TrackSource | None = None,
                         key: str = "") -> FinetuneData:
    """Encode (name, frames (T, H, W, 3) uint8, prompt) clips with the pipeline's frozen VAE and encoders."""
    layout, device = pipe.layout, pipe._execution_device
    track_source = track_source or understand_track_source(grid=config.track_grid)
    prompts: dict[str, int] = {}
    names, latents, masks, condition_latents, texts, prompt_index, images, all_tracks = ([] for _ in range(8))
    for name, frames, prompt in clips:
        num_frames, height, width = frames.shape[:3]

        video = frames.permute(3, 0, 1, 2)[None].to(device, torch.float32) / 127.5 - 1.0  # (1, 3, T, H, W)
        latents.append(encode_video(pipe.vae, video).cpu())  # (1, C, L, h, w)
        last = frames[-1] if layout.image_pairs else None  # first-last-frame checkpoints need the last frame
        first_pixels = pipe.preprocess_image(frames[0], height, width)
        last_pixels = None if last is None else pipe.preprocess_image(last, height, width)
        _, condition = pipe.prepare_latents(first_pixels, last_pixels, 1, num_frames,
                                            torch.Generator(device).manual_seed(0), None)
        masks.append(condition.mask.cpu())
        condition_latents.append(condition.latent.cpu())
        if prompt not in prompts:
            prompts[prompt] = len(prompts)
            texts.append(pipe.encode_prompt(prompt, None, 1, False, config.max_sequence_length)[0].cpu())
        prompt_index.append(prompts[prompt])
        image = pipe.encode_image(frames[0], 1, last)  # (k, S', D') or None
        images.append(None if image is None else image.cpu()[None])
        tracks = track_source(frames)
        if not isinstance(tracks, Tracks) or tracks.num_frames != num_frames:
            raise ValueError(f"track_source must return Tracks over the clip's {num_frames} frames, got "
                             f"{getattr(tracks, 'num_frames', type(tracks).__name__)} for {name}")
        all_tracks.append(tracks.to("cpu"))
        names.append(name)
    return FinetuneData(names, torch.cat(latents), torch.cat(masks), torch.cat(condition_latents), torch.cat(texts),
                        torch.tensor(prompt_index), None if images[0] is None else torch.cat(images), all_tracks, key)


class TrajectoryFinetuneDataset(Dataset):
    """Encoded clips; item i draws tracks, noise and timestep from a generator seeded by (seed, epoch, i)."""

    def __init__(self, data: FinetuneData, layout: WanLayout, config: FinetuneConfig, track_conditioning: str,
                 track_sigma: float, track_strength: float, mark_mask: bool, seed: int = 0):
        self.data, self.layout, self.config = data, layout, config
        self.track_conditioning, self.track_sigma, self.track_strength = track_conditioning, track_sigma, track_strength
        self.mark_mask, self.seed, self.epoch = mark_mask, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data.names)

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)

    def tracks_of(self, index: int) -> Tracks:
        """The tracks item `index` trains on this epoch (in training pixels)."""
        return sample_tracks(self.data.tracks[index], self.config, self._generator(index))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        data, config = self.data, self.config
        generator = self._generator(index)
        tracks = sample_tracks(data.tracks[index], config, generator)
        condition = ImageCondition(data.masks[index : index + 1], data.condition_latents[index : index + 1])
        if tracks.num_tracks:  # no tracks: the plain condition, as the pipeline runs without tracks
            condition = self.layout.with_tracks(condition, tracks, self.track_conditioning, self.track_sigma,
                                                self.track_strength, self.mark_mask, self.layout.image_pairs)
        clean = data.latents[index]  # (C, L, h, w)
        item = {
            "latents": clean,
            "condition": torch.cat([condition.mask, condition.latent], 1)[0],  # (f + C or 1 + C, L, h, w)
            "noise": torch.randn(clean.shape, generator=generator),
            "timestep_density": compute_density_for_timestep_sampling(
                config.weighting_scheme, 1, config.logit_mean, config.logit_std, config.mode_scale,
                generator=generator)[0],
            "text_embeds": data.text_embeds[data.prompt_index[index]],  # (S, D)
        }
        if data.image_embeds is not None:
            item["image_embeds"] = data.image_embeds[index]  # (k, S', D')
        if self.layout.expand_timesteps:  # TI2V: the loss counts where the model generates (noise mask)
            item["loss_mask"] = condition.mask[0]  # (1, L, h, w)
        return item


class LayoutDenoiser(nn.Module):
    """Velocity of noisy latents under a layout's condition from the expert(s) being trained, fed as the pipeline
    feeds them (`layout.model_input`); each sample goes to the expert of its timestep.

    Its state_dict holds the trainable (LoRA) weights only, so training checkpoints stay small on 14B models.
    """

    def __init__(self, transformers: dict[int, nn.Module], layout: WanLayout, z_dim: int):
        super().__init__()
        self.experts = nn.ModuleDict({str(expert): model for expert, model in transformers.items()})
        self.layout, self.z_dim = layout, z_dim
        self.register_state_dict_post_hook(_drop_frozen)
        self.register_load_state_dict_post_hook(_ignore_missing_frozen)

    def forward(self, latents: torch.Tensor, condition: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_hidden_states_image: torch.Tensor | None = None, motion_maps=None,
                motion_active=None) -> torch.Tensor:
        """latents (B, C, L, h, w), condition (B, f + C, L, h, w), timestep (B,) in [0, 1000], text (B, S, D),
        CLIP tokens (B, k, S', D') -> velocity (B, C, L, h, w)."""
        if motion_maps is not None:
            raise ValueError("LayoutDenoiser has no motion adapter; the batch must not carry motion_maps")
        mask, latent = condition[:, : -self.z_dim], condition[:, -self.z_dim :]
        routes = torch.tensor([self.layout.expert(t) for t in timestep.detach().cpu()])
        prediction = torch.empty_like(latents)
        unused = []
        for expert, model in self.experts.items():
            rows = (routes == int(expert)).nonzero().flatten().to(latents.device)
            if rows.numel() == 0:
                unused.append(model)
                continue
            hidden, model_timestep = self.layout.model_input(
                latents[rows], ImageCondition(mask[rows], latent[rows]), timestep[rows])
            image = encoder_hidden_states_image
            image = None if image is None else image[rows].flatten(0, 1)  # (b * k, S', D'), as the pipeline feeds
            output = model(hidden_states=hidden.to(model.dtype), timestep=model_timestep,
                           encoder_hidden_states=encoder_hidden_states[rows], encoder_hidden_states_image=image,
                           return_dict=False)[0]
            prediction = prediction.index_copy(0, rows, output.to(prediction.dtype))
        if len(unused) != len(self.experts) and unused:
            # An expert without samples in this batch still joins the backward pass with zero gradients, so
            # distributed data parallel sees every trainable parameter used on every process.
            prediction = prediction + 0.0 * sum(p.sum() for m in unused for p in m.parameters() if p.requires_grad)
        return prediction


def _drop_frozen(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            state_dict.pop(prefix + name, None)


def _ignore_missing_frozen(module: nn.Module, incompatible_keys) -> None:
    frozen = {name for name, parameter in module.named_parameters() if not parameter.requires_grad}
    incompatible_keys.missing_keys[:] = [key for key in incompatible_keys.missing_keys
                                         if key not in frozen and key.partition(".")[2] not in frozen]


def _expert_models(pipe, config: FinetuneConfig) -> dict[int, nn.Module]:
    layout = pipe.layout
    available = (0,) if layout.boundary_timestep is None else (0, 1)
    experts = config.experts or available
    if not set(experts) <= set(available):
        raise ValueError(f"FinetuneConfig.experts={config.experts} but this {layout.name} checkpoint has "
                         f"expert(s) {available}")
    return {expert: pipe.transformer if expert == 0 else pipe.transformer_2 for expert in sorted(experts)}


def _timestep_range(layout: WanLayout, experts: Iterable[int]) -> tuple[float, float] | None:
    experts = set(experts)
    if layout.boundary_timestep is None or experts == {0, 1}:
        return None
    return (layout.boundary_timestep, float("inf")) if experts == {0} else (0.0, layout.boundary_timestep)


def load_or_encode_data(pipe, clips, config: FinetuneConfig, cache_dir: str | Path | None,
                        track_source: TrackSource | None = None) -> FinetuneData:
    """`encode_finetune_data`, reusing `cache_dir/finetune_data.pt` when it was built from the same clips."""
    size = _training_size(pipe, config)
    digest, clips = _clip_stream(clips, config, *size)
    settings = {"size": size, "fps": config.fps, "grid": config.track_grid, "model": str(pipe.name_or_path),
                "max_sequence_length": config.max_sequence_length, "layout": pipe.layout.name}
    key = json.dumps(settings, sort_keys=True) + digest
    cache = None if cache_dir is None else Path(cache_dir) / CACHE_NAME
    if cache is not None and cache.is_file():
        data = FinetuneData.load(cache)
        if data.key == key:
            return data
    data = encode_finetune_data(pipe, clips, config, track_source, key)
    if cache is not None:
        data.save(cache)
    return data


def finetune_lora(pipe, clips, config: FinetuneConfig, train_config: TrainConfig,
                  track_source: TrackSource | None = None) -> tuple[TrainResult, Trainer]:
    """LoRA-fine-tune `pipe`'s transformer(s) for trajectory control on `clips` (a folder of mp4s with optional
    CLIP.txt captions, or (T, H, W, 3) uint8 frames / (frames, prompt) pairs at the training size).

    track_source: frames -> Tracks (default: `track_points` on a config.track_grid lattice). The LoRA stays in
    `pipe`; save it with `save_lora`. Returns the loop's result and the `Trainer`.
    """
    from .pipeline import TrajectoryImageToVideoPipeline

    if not isinstance(pipe, TrajectoryImageToVideoPipeline):
        raise TypeError(f"pipe must be a TrajectoryImageToVideoPipeline, got {type(pipe).__name__}")
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    if pipe.motion_adapter is not None:
        raise ValueError("pipe has a motion_adapter, which finetune_lora would leave out of training; fine-tune a "
                         "pipeline without one")
    layout = pipe.layout
    track_conditioning = config.track_conditioning or pipe.config.track_conditioning
    layout.check_call(layout.image_pairs, None, track_conditioning)
    data = load_or_encode_data(pipe, clips, config, train_config.output_dir, track_source)

    for part in (pipe.vae, pipe.text_encoder, pipe.image_encoder, pipe.transformer, pipe.transformer_2):
        if part is not None:
            part.requires_grad_(False)
    experts = _expert_models(pipe, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)  # the LoRA init, the same on every process and in every run
        for model in experts.values():
            add_lora(model, config)
    for model in experts.values():
        if config.gradient_checkpointing:
            model.enable_gradient_checkpointing()
    denoiser = LayoutDenoiser(experts, layout, pipe.vae.config.z_dim)

    dataset = TrajectoryFinetuneDataset(data, layout, config, track_conditioning, pipe.config.track_sigma,
                                        pipe.config.track_strength, pipe.config.mark_tracks_in_mask,
                                        seed=train_config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True,
                        num_workers=config.num_workers)
    scheduler_config = pipe.scheduler.config  # Wan ships UniPC with flow_shift; train on the same shifted sigmas
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=scheduler_config.get("num_train_timesteps", 1000),
        shift=scheduler_config.get("flow_shift", scheduler_config.get("shift", 1.0)))
    loss_fn = make_loss_fn(scheduler, config, _timestep_range(layout, experts))
    optimizer, lr_scheduler = make_optimizer([p for p in denoiser.parameters() if p.requires_grad], config,
                                             train_config.max_steps)
    trainer = Trainer(denoiser, optimizer, loader, loss_fn, train_config, lr_scheduler=lr_scheduler)
    result = trainer.train()
    if trainer.ema_model is not None:
        denoiser.load_state_dict(trainer.ema_state_dict(), strict=False)
    for model in experts.values():
        model.disable_gradient_checkpointing()
    return result, trainer


def save_lora(pipe, output_dir: str | Path, is_main_process: bool = True) -> list[Path]:
    """Write each trained expert's LoRA with diffusers' `save_lora_weights` (transformer: the default file name that
    `pipe.load_lora_weights(dir)` reads; transformer_2: EXPERT_LORA_NAMES[1]); returns the files."""
    from peft.utils import get_peft_model_state_dict

    written = []
    for model, weight_name in zip((pipe.transformer, pipe.transformer_2), EXPERT_LORA_NAMES):
        if model is None or not getattr(model, "peft_config", None):
            continue
        pipe.save_lora_weights(output_dir, transformer_lora_layers=get_peft_model_state_dict(model),
                               is_main_process=is_main_process, weight_name=weight_name)
        written.append(Path(output_dir) / weight_name)
    if not written:
        raise ValueError("pipe has no LoRA to save: run finetune_lora first")
    return written


def load_lora(pipe, lora_dir: str | Path) -> None:
    """Load what `save_lora` wrote into each expert (`load_lora_weights`, `load_into_transformer_2` for the second)."""
    lora_dir = Path(lora_dir)
    found = [name for name in EXPERT_LORA_NAMES if (lora_dir / name).is_file()]
    if not found:
        raise FileNotFoundError(f"lora_dir: none of {EXPERT_LORA_NAMES} in {str(lora_dir)!r}")
    for expert, weight_name in enumerate(EXPERT_LORA_NAMES):
        if weight_name in found:
            pipe.load_lora_weights(lora_dir, weight_name=weight_name, load_into_transformer_2=expert == 1)
