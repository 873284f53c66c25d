"""A small multi-label video tagger: tubelet tokens with 3-D RoPE through SDPA attention, or a VideoMAE backbone."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from videoai.tokenize.patches import patchify
from videoai.tokenize.rope import rope_3d, apply_rope

from ._frames import to_pixels

DEFAULT_TAGGER_DIR = Path(__file__).resolve().parents[1] / "assets" / "understand" / "tagger"


class VideoTaggerConfig(PretrainedConfig):
    """Tag vocabulary, input sampling (frames, size, normalisation) and transformer sizes of a `VideoTagger`."""

    model_type = "videoai_tagger"

    def __init__(
        self,
        tags: list[str] | tuple[str, ...] = ("tag",),
        num_frames: int = 16,
        height: int = 64,
        width: int = 64,
        patch_size: tuple[int, int, int] = (2, 16, 16),  # (pt, ph, pw) tubelet in pixels, one token each
        # Per-frame stride-2 3x3 convs before patchify; () for none. Three reach a 15-pixel receptive field, the size
        # of a whole synthetic shape (8-14 px), so each feature cell can see a shape's outline, not just its colour.
        stem_channels: tuple[int, ...] = (32, 64, 128),
        temporal_difference: bool = True,  # add x_t - x_{t-1} as 3 more input channels: motion made explicit
        # A per-frame CNN (first conv at full resolution) max-pooled over positions, on `appearance_frames` frames,
        # with its own zero-initialised logit path added to the trunk's: small objects' shapes, which 16-pixel
        # tubelet tokens blur (a shared head over both let the trunk's features crowd it out). () (none) by default
        # so that saved taggers without this key load as they were; the synthetic recipe uses (16, 32, 64).
        appearance_channels: tuple[int, ...] = (),
        appearance_frames: int = 2,
        hidden_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        rope_theta: float = 10000.0,
        image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        image_std: tuple[float, float, float] = (0.5, 0.5, 0.5),
        backbone_config: dict | None = None,  # a VideoMAEConfig dict: use VideoMAE instead of the RoPE transformer
        **kwargs,
    ):
        tags = list(tags)
        if not tags or not all(isinstance(t, str) and t for t in tags) or len(set(tags)) != len(tags):
            raise ValueError(f"tags: expected a non-empty list of distinct non-empty strings, got {tags!r}")
        patch_size = tuple(int(p) for p in patch_size)
        if len(patch_size) != 3 or min(patch_size) <= 0:
            raise ValueError(f"patch_size: expected three positive ints (pt, ph, pw), got {patch_size!r}")
        stem_channels = [int(c) for c in stem_channels]
        if backbone_config is None:
            stride = 2 ** len(stem_channels)
            if patch_size[1] % stride or patch_size[2] % stride:
                raise ValueError(
                    f"patch_size: spatial sides must be multiples of the stem stride {stride} "
                    f"({len(stem_channels)} stride-2 convs), got {patch_size}"
                )
            for name, size, p in (("num_frames", num_frames, patch_size[0]), ("height", height, patch_size[1]),
                                  ("width", width, patch_size[2])):
                if size <= 0 or size % p:
                    raise ValueError(f"{name}: expected a positive multiple of the patch size {p}, got {size}")
            if hidden_size % num_heads or (hidden_size // num_heads) % 2 or hidden_size // num_heads < 6:
                raise ValueError(
                    f"hidden_size/num_heads: head_dim must be an even int >= 6 for 3-D RoPE, got "
                    f"{hidden_size}/{num_heads}"
                )
        self.tags = tags
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.patch_size, self.stem_channels = list(patch_size), stem_channels
        self.temporal_difference = bool(temporal_difference)
        self.appearance_channels, self.appearance_frames = [int(c) for c in appearance_channels], int(appearance_frames)
        if self.appearance_channels and not 1 <= self.appearance_frames <= self.num_frames:
            raise ValueError(
                f"appearance_frames: expected an int in [1, num_frames={self.num_frames}], got {appearance_frames}"
            )
        self.hidden_size, self.num_layers, self.num_heads = hidden_size, num_layers, num_heads
        self.mlp_ratio, self.dropout, self.rope_theta = mlp_ratio, dropout, rope_theta
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.backbone_config = backbone_config
        super().__init__(**kwargs)

    @property
    def num_tags(self) -> int:
        return len(self.tags)


@dataclass
class VideoTaggerOutput(ModelOutput):
    """logits (B, V) per tag, embeddings (B, D) pooled features (not normalised), loss when labels were given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None


class Attention(nn.Module):
    """Multi-head self-attention; queries and keys rotated by the token's (t, h, w) position, then SDPA."""

    def __init__(self, config: VideoTaggerConfig):
        super().__init__()
        self.num_heads, self.dropout = config.num_heads, config.dropout
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)  # (B, h, N, d)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))  # (B, h, N, d) -> (B, N, D)


class Block(nn.Module):
    """Pre-norm transformer block: RoPE attention and a GELU MLP, each on a residual branch."""

    def __init__(self, config: VideoTaggerConfig):
        super().__init__()
        hidden = int(config.hidden_size * config.mlp_ratio)
        self.norm1 = nn.LayerNorm(config.hidden_size)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_size, hidden), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(hidden, config.hidden_size),
        )

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


def preprocess_frames(frames: torch.Tensor, config: VideoTaggerConfig) -> torch.Tensor:
    """(T, H, W, 3) or (B, T, H, W, 3) uint8 -> (B, T, 3, height, width) float normalised, on the frames' device."""
    if frames.ndim == 4:
        frames = frames.unsqueeze(0)
    if frames.ndim != 5 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(
            f"frames: expected uint8 (T, H, W, 3) or (B, T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    return to_pixels(frames, (config.height, config.width), config.image_mean, config.image_std)


class ConvStem(nn.Module):
    """Per-frame stride-2 3x3 convolutions: local colour/edge features before tubelets are cut (hybrid ViT)."""

    def __init__(self, in_channels: int, channels: list[int]):
        super().__init__()
        layers, previous = [], in_channels
        for c in channels:
            layers += [nn.Conv2d(previous, c, 3, stride=2, padding=1), nn.GELU()]
            previous = c
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T = x.shape[:2]
        x = self.layers(x.flatten(0, 1))  # (B*T, C_in, H, W) -> (B*T, C, H/s, W/s)
        return x.unflatten(0, (B, T)).transpose(1, 2)  # (B, C, T, H/s, W/s)


class AppearanceBranch(nn.Module):
    """Per-frame CNN, full-resolution first conv then stride-2 convs, max-pooled over frames and positions."""

    def __init__(self, channels: list[int]):
        super().__init__()
        layers, previous = [], 3
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(previous, c, 3, stride=1 if i == 0 else 2, padding=1), nn.GELU()]
            previous = c
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        x = self.layers(x.flatten(0, 1))  # (B*T, 3, H, W) -> (B*T, C, h, w)
        return x.amax(dim=(2, 3)).unflatten(0, (B, -1)).amax(dim=1)  # (B, C): max over positions, then frames


class VideoTagger(PreTrainedModel):
    """Video -> per-tag logits (multi-label, BCE) and a pooled embedding; `save_pretrained` writes safetensors."""

    config_class = VideoTaggerConfig
    base_model_prefix = "tagger"
    main_input_name = "pixel_values"

    def __init__(self, config: VideoTaggerConfig):
        super().__init__(config)
        if config.backbone_config is not None:
            from transformers import VideoMAEConfig, VideoMAEModel

            self.backbone = VideoMAEModel(VideoMAEConfig(**config.backbone_config))
            width = self.backbone.config.hidden_size
        else:
            stride = 2 ** len(config.stem_channels)
            pt, ph, pw = config.patch_size
            self.token_patch = (pt, ph // stride, pw // stride)  # tubelet on the stem's feature map
            pixel_channels = 6 if config.temporal_difference else 3
            self.stem = ConvStem(pixel_channels, config.stem_channels)
            in_channels = config.stem_channels[-1] if config.stem_channels else pixel_channels
            self.patch_embed = nn.Linear(in_channels * pt * (ph // stride) * (pw // stride), config.hidden_size)
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
            width = config.hidden_size
        # Mean and max over tokens: the mean summarises the scene, the max keeps small objects a mean would dilute.
        self.norm = nn.LayerNorm(2 * width)
        self.head = nn.Linear(2 * width, config.num_tags)
        self.appearance = self.appearance_norm = self.appearance_head = None
        if config.appearance_channels:
            self.appearance = AppearanceBranch(config.appearance_channels)
            self.appearance_norm = nn.LayerNorm(config.appearance_channels[-1])
            self.appearance_head = nn.Linear(config.appearance_channels[-1], config.num_tags)
        self._rope_cache: dict = {}
        self.post_init()
        if self.appearance_head is not None:  # starts as the trunk-only tagger; the branch earns its say
            nn.init.zeros_(self.appearance_head.weight)
            nn.init.zeros_(self.appearance_head.bias)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):  # ReLU-family gain keeps the stem's activations at unit scale
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _rope(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables (N, head_dim) for `grid`, built once per grid and device."""
        key = (grid, device)
        if key not in self._rope_cache:
            head_dim = self.config.hidden_size // self.config.num_heads
            self._rope_cache[key] = rope_3d(grid, head_dim, theta=self.config.rope_theta, device=device)
        return self._rope_cache[key]

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) normalised pixels -> (B, F) features: token mean and max (normalised), appearance max."""
        if pixel_values.ndim != 5 or pixel_values.shape[2] != 3:
            raise ValueError(f"pixel_values: expected (B, T, 3, H, W), got {tuple(pixel_values.shape)}")
        if not pixel_values.is_floating_point():
            raise TypeError(f"pixel_values: expected a float tensor (see `preprocess`), got {pixel_values.dtype}")
        if self.config.backbone_config is not None:
            x = self.backbone(pixel_values=pixel_values.to(self.backbone.dtype)).last_hidden_state  # (B, N, D)
        else:
            x = pixel_values.to(self.patch_embed.weight.dtype)  # a bf16 / fp16 model takes float32 preprocess output
            if self.config.temporal_difference:  # first frame's difference is 0
                x = torch.cat([x, torch.diff(x, dim=1, prepend=x[:, :1])], dim=2)  # (B, T, 6, H, W)
            x = self.stem(x)  # (B, T, C_in, H, W) -> (B, C, T, H/s, W/s)
            tokens, grid = patchify(x, self.token_patch)  # (B, N, C*pt*ph*pw / s^2)
            x = self.patch_embed(tokens)  # (B, N, D)
            cos, sin = self._rope(grid, x.device)
            for block in self.blocks:
                x = block(x, cos, sin)
        features = self.norm(torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=-1))  # (B, N, D) -> (B, 2D)
        if self.appearance is not None:
            step = max(1, pixel_values.shape[1] // self.config.appearance_frames)
            frames = pixel_values[:, ::step][:, :self.config.appearance_frames]  # (B, T', 3, H, W) spread over the clip
            appearance = self.appearance_norm(self.appearance(frames.to(self.head.weight.dtype)))  # (B, C)
            features = torch.cat([features, appearance], dim=-1)  # (B, 2D + C)
        return features

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> VideoTaggerOutput:
        """pixel_values (B, T, 3, H, W); labels (B, V) multi-hot in [0, 1] -> logits (B, V), embeddings, loss."""
        embeddings = self.features(pixel_values)  # (B, F)
        trunk_width = self.head.in_features
        logits = self.head(embeddings[:, :trunk_width])  # (B, V)
        if self.appearance_head is not None:
            logits = logits + self.appearance_head(embeddings[:, trunk_width:])  # (B, C) -> (B, V)
        loss = None
        if labels is not None:
            if labels.shape != logits.shape:
                raise ValueError(f"labels: expected shape {tuple(logits.shape)} (B, num_tags), got {tuple(labels.shape)}")
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return VideoTaggerOutput(loss=loss, logits=logits, embeddings=embeddings)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) or (B, T, H, W, 3) uint8 -> (B, T, 3, height, width) float, see `preprocess_frames`."""
        return preprocess_frames(frames, self.config)

    def with_tags(self, tags: list[str]) -> "VideoTagger":
        """A copy for a new tag vocabulary: same trunk weights, head rows kept for shared tags, new rows initialised."""
        config = VideoTaggerConfig(**{**self.config.to_dict(), "tags": list(tags)})
        model = type(self)(config).to(self.device)
        heads = ["head"] + (["appearance_head"] if self.appearance_head is not None else [])
        state = {k: v for k, v in self.state_dict().items() if k.split(".")[0] not in heads}
        model.load_state_dict(state, strict=False)
        with torch.no_grad():
            for new_index, tag in enumerate(config.tags):
                if tag in self.config.tags:
                    old_index = self.config.tags.index(tag)
                    for name in heads:
                        getattr(model, name).weight[new_index] = getattr(self, name).weight[old_index]
                        getattr(model, name).bias[new_index] = getattr(self, name).bias[old_index]
        return model

    @classmethod
    def from_videomae(cls, folder: str | os.PathLike, tags: list[str], **config_kwargs) -> "VideoTagger":
        """A tagger on a pretrained VideoMAE backbone read from a local folder (no download); new tag head."""
        from transformers import VideoMAEModel

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"backbone folder {str(folder)!r}: expected a local VideoMAE checkpoint (config.json + "
                f"model.safetensors, as written by save_pretrained), found no config.json"
            )
        backbone = VideoMAEModel.from_pretrained(folder, local_files_only=True)
        image_mean, image_std = config_kwargs.pop("image_mean", None), config_kwargs.pop("image_std", None)
        processor_file = folder / "preprocessor_config.json"
        if (image_mean is None or image_std is None) and processor_file.is_file():
            import json

            processor = json.loads(processor_file.read_text())
            image_mean = image_mean or processor.get("image_mean")
            image_std = image_std or processor.get("image_std")
        size = backbone.config.image_size
        config = VideoTaggerConfig(
            tags=tags, num_frames=backbone.config.num_frames,
            height=size if isinstance(size, int) else size[0], width=size if isinstance(size, int) else size[1],
            image_mean=image_mean or (0.485, 0.456, 0.406), image_std=image_std or (0.229, 0.224, 0.225),
            stem_channels=(), temporal_difference=False, appearance_channels=(),
            backbone_config=backbone.config.to_dict(), **config_kwargs,
        )
        model = cls(config)
        model.backbone.load_state_dict(backbone.state_dict())
        return model


def load_tagger(path: str | os.PathLike | None = None, *, device=None) -> VideoTagger:
    """A saved `VideoTagger` from a local folder (None: the embedded default trained on synthetic shapes)."""
    folder = DEFAULT_TAGGER_DIR if path is None else Path(path)
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"tagger folder {str(folder)!r}: expected config.json and model.safetensors written by "
            f"VideoTagger.save_pretrained, found {sorted(p.name for p in folder.iterdir()) if folder.is_dir() else 'no folder'}"
        )
    model = VideoTagger.from_pretrained(folder, local_files_only=True)
    return model.to(device).eval() if device is not None else model.eval()
