"""Seeded moving-shapes clips with exact ground truth (tracks, tags, cuts, camera pan) for tests and toy training,
and wipes between any two frame runs (ground truth for the shot detector)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch.utils.data import Dataset

from videoai.tokenize.tracks import Tracks
from videoai.tokenize.video_io import write_video

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLORS = {  # saturated RGB; backgrounds are kept low-saturation so these stay separable
    "red": (230, 30, 30),
    "green": (30, 210, 50),
    "blue": (30, 70, 240),
    "yellow": (245, 225, 20),
    "magenta": (225, 40, 225),
    "cyan": (20, 225, 230),
}
DIRECTIONS = ("right", "down", "left", "up", "still")  # image axes: x right, y down ("up" means y decreases)
SPEEDS = ("still", "slow", "fast")
CAMERA = ("static", "pan")
TAG_VOCAB = (
    [f"shape:{s}" for s in SHAPES]
    + [f"color:{c}" for c in COLORS]
    + [f"direction:{d}" for d in DIRECTIONS]
    + [f"speed:{s}" for s in SPEEDS]
    + [f"camera:{c}" for c in CAMERA]
)
_TAG_INDEX = {tag: i for i, tag in enumerate(TAG_VOCAB)}
_NUM_WAVES = 8  # sinusoids per background texture
_TILT = math.radians(11.0)  # polygon tilt, see _shape_mask


@dataclass
class ShapesConfig:
    """Clip geometry and sampling ranges; all sizes in pixels, speeds in pixels per frame."""

    num_frames: int = 16
    height: int = 64
    width: int = 64
    min_objects: int = 1  # per shot
    max_objects: int = 2
    num_shots: int = 1  # >1 inserts hard cuts; every shot has a new background and new objects
    min_shot_length: int = 4
    camera_pan: bool = False
    min_pan_speed: float = 0.5
    max_pan_speed: float = 1.0
    min_speed: float = 0.5  # slow objects move in the lower 40% of [min_speed, max_speed], fast in the upper 40%
    max_speed: float = 2.0
    min_size: int = 8  # diameter of the circle enclosing the shape
    max_size: int = 14
    still_prob: float = 0.0  # chance an object does not move (direction and speed "still")
    direction_jitter: float = 20.0  # degrees off the tagged axis, < 45 so the tag stays the dominant axis
    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = tuple(COLORS)

    def __post_init__(self):
        for name in ("num_frames", "height", "width", "min_objects", "max_objects", "num_shots",
                     "min_shot_length", "min_size", "max_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ShapesConfig.{name} must be an int, got {type(value).__name__}")
        self.shapes, self.colors = tuple(self.shapes), tuple(self.colors)

        def check(ok: bool, name: str, expected: str):
            if not ok:
                raise ValueError(f"ShapesConfig.{name} must be {expected}, got {getattr(self, name)!r}")

        check(len(self.shapes) > 0 and set(self.shapes) <= set(SHAPES), "shapes", f"a non-empty subset of {SHAPES}")
        check(len(self.colors) > 0 and set(self.colors) <= set(COLORS), "colors",
              f"a non-empty subset of {tuple(COLORS)}")
        check(self.num_frames >= 2, "num_frames", ">= 2")
        check(self.height >= 16, "height", ">= 16")
        check(self.width >= 16, "width", ">= 16")
        check(self.min_objects >= 1, "min_objects", ">= 1")
        check(self.min_objects <= self.max_objects <= len(self.colors), "max_objects",
              f"in [min_objects={self.min_objects}, len(colors)={len(self.colors)}] (colours are unique per shot)")
        check(self.num_shots >= 1, "num_shots", ">= 1")
        check(self.min_shot_length >= 2, "min_shot_length", ">= 2")
        check(self.num_shots * self.min_shot_length <= self.num_frames, "num_shots",
              f"<= num_frames // min_shot_length = {self.num_frames // self.min_shot_length}")
        check(isinstance(self.camera_pan, bool), "camera_pan", "a bool")
        check(0 <= self.min_pan_speed <= self.max_pan_speed, "min_pan_speed",
              f"in [0, max_pan_speed={self.max_pan_speed}]")
        check(0 < self.min_speed < self.max_speed, "min_speed", f"in (0, max_speed={self.max_speed})")
        check(self.min_size >= 6, "min_size", ">= 6 (smaller shapes lose their form)")
        check(self.max_size >= self.min_size, "max_size", f">= min_size={self.min_size}")
        check(0 <= self.still_prob <= 1, "still_prob", "in [0, 1]")
        check(0 <= self.direction_jitter < 45, "direction_jitter", "in [0, 45) degrees")
        # Objects never leave the frame: the longest shot's travel plus the object must fit in the frame.
        longest_shot = self.num_frames - (self.num_shots - 1) * self.min_shot_length
        pan = self.max_pan_speed if self.camera_pan else 0.0
        travel = (self.max_speed + pan) * (longest_shot - 1) + self.max_size + 2
        check(travel <= min(self.height, self.width), "max_speed",
              f"small enough that (max_speed + max_pan_speed) * (longest shot {longest_shot} - 1) + max_size + 2 "
              f"<= min(height, width) = {min(self.height, self.width)} (needed {travel:.1f})")

    @property
    def max_tracks(self) -> int:
        """Most objects (tracks) a clip can hold: padding size used by `ShapesDataset`."""
        return self.max_objects * self.num_shots


@dataclass
class SyntheticClip:
    """One clip and its ground truth; object n lives only in shot `object_shot[n]`; pixel (x, y) as in `Tracks`."""

    frames: torch.Tensor  # (T, H, W, 3) uint8
    tracks: Tracks  # (T, N) object centroids; invisible outside the object's shot or when its centre is covered
    masks: torch.Tensor  # (T, N, H, W) bool, pixels showing each object (after occlusion)
    tags: list[dict[str, str]]  # per object: shape, color, direction, speed (direction from world motion)
    clip_tags: list[str]  # sorted union of object tags plus "camera:static|pan"
    shot_starts: list[int]  # first frame of each shot, starts with 0
    object_shot: torch.Tensor  # (N,) int64 shot index of each object
    camera_motion: torch.Tensor | None  # (T, 2) background (dx, dy) from frame t-1 to t (0 at shot starts)
    seed: int


def object_tag_strings(tags: dict[str, str]) -> list[str]:
    """{"shape": "circle", ...} -> ["shape:circle", ...]."""
    return [f"{key}:{value}" for key, value in tags.items()]


def tags_to_multi_hot(tags: Iterable[str] | dict[str, str]) -> torch.Tensor:
    """Tag strings (or one object's tag dict) -> (len(TAG_VOCAB),) float32 multi-hot."""
    if isinstance(tags, dict):
        tags = object_tag_strings(tags)
    if isinstance(tags, str):
        raise TypeError(f"tags must be an iterable of tag strings, got a single str {tags!r}")
    out = torch.zeros(len(TAG_VOCAB))
    for tag in tags:
        if tag not in _TAG_INDEX:
            raise ValueError(f"tags: unknown tag {tag!r}; expected one of TAG_VOCAB")
        out[_TAG_INDEX[tag]] = 1.0
    return out


def _uniform(gen: torch.Generator, low: float, high: float, size=()) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, generator=gen, dtype=torch.float64)


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    """Integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (), generator=gen))


def _shape_mask(shape: str, dx: torch.Tensor, dy: torch.Tensor, radius: float) -> torch.Tensor:
    """Exact mask of `shape` centred on its centroid; dx, dy (T, H, W) pixel offsets from the centre -> bool."""
    if shape == "circle":
        return dx.square() + dy.square() <= radius**2
    if shape in ("square", "triangle", "cross"):
        # Tilted so no edge lies along a pixel row or column: a straight edge on the grid snaps to whole rows and
        # biases the mask centroid by up to 0.5 px; tilted edges average out (centroid error < 0.5 px, measured).
        cos, sin = math.cos(_TILT), math.sin(_TILT)
        dx, dy = cos * dx + sin * dy, cos * dy - sin * dx
    if shape == "square":
        return torch.maximum(dx.abs(), dy.abs()) <= 0.75 * radius
    if shape == "cross":
        arm, thick = 0.9 * radius, 0.3 * radius
        ax, ay = dx.abs(), dy.abs()
        return ((ax <= arm) & (ay <= thick)) | ((ax <= thick) & (ay <= arm))
    # triangle / star: half-planes whose normals point at the (upright) vertices, at angles -90 + 360/k * i.
    k = 3 if shape == "triangle" else 5
    angles = torch.tensor([-math.pi / 2 + 2 * math.pi * i / k for i in range(k)], dtype=dx.dtype, device=dx.device)
    proj = dx.unsqueeze(-1) * torch.cos(angles) + dy.unsqueeze(-1) * torch.sin(angles)  # (T, H, W, k)
    if shape == "triangle":  # equilateral with circumradius `radius`: each edge at radius/2 opposite its vertex
        return (-proj <= radius / 2).all(-1)
    # Star: the central pentagon lies inside all 5 chords, each arm beyond exactly one. Chords at 0.42 r (a true
    # pentagram has 0.31 r) with tips cut by the circle give fatter arms that still read as a star when small.
    return ((proj > 0.42 * radius).sum(-1) <= 1) & (dx.square() + dy.square() <= radius**2)


def _shot_starts(gen: torch.Generator, config: ShapesConfig) -> list[int]:
    """Random cut positions with every shot at least `min_shot_length` frames."""
    slack = config.num_frames - config.num_shots * config.min_shot_length
    extra = torch.sort(torch.randint(0, slack + 1, (config.num_shots - 1,), generator=gen)).values.tolist()
    return [0] + [(i + 1) * config.min_shot_length + e for i, e in enumerate(extra)]


def _render_background(gen, height, width, offsets, bright, device) -> torch.Tensor:
    """Sum of random sinusoids, translated by `offsets` (T, 2) -> (T, H, W, 3) float32 in [0, 255]."""
    period = _uniform(gen, 6.0, 24.0, (_NUM_WAVES,))
    angle = _uniform(gen, 0.0, math.pi, (_NUM_WAVES,))
    phase = _uniform(gen, 0.0, 2 * math.pi, (_NUM_WAVES,))
    amplitude = _uniform(gen, 4.0, 12.0, (_NUM_WAVES, 1)) * _uniform(gen, 0.7, 1.3, (_NUM_WAVES, 3))  # (K, 3) tinted
    base = bright * _uniform(gen, 0.8, 1.2, (3,))  # (3,) low saturation
    freq = torch.stack([torch.cos(angle), torch.sin(angle)], -1) * (2 * math.pi / period[:, None])  # (K, 2)
    freq, phase, amplitude, base, offsets = (
        v.to(device, torch.float32) for v in (freq, phase, amplitude, base, offsets))
    # The texture moves with the camera: pixel (x, y) at frame t shows texture point (x - ox_t, y - oy_t).
    x = torch.arange(width, device=device, dtype=torch.float32) - offsets[:, 0, None, None]  # (T, 1, W)
    y = torch.arange(height, device=device, dtype=torch.float32)[:, None] - offsets[:, 1, None, None]  # (T, H, 1)
    waves = torch.sin(x[..., None] * freq[:, 0] + y[..., None] * freq[:, 1] + phase)  # (T, H, W, K)
    return (base + waves @ amplitude).clamp(0, 255)  # (T, H, W, 3)


def _sample_object(gen, config: ShapesConfig, color: str, length: int, pan: torch.Tensor):
    """Tags, radius and image-space centres (L, 2) float64 of one object that stays inside the frame for the shot."""
    shape = config.shapes[_randint(gen, 0, len(config.shapes) - 1)]
    radius = float(_uniform(gen, config.min_size, config.max_size)) / 2
    if bool(torch.rand((), generator=gen) < config.still_prob):
        direction, speed_tag, velocity = "still", "still", torch.zeros(2, dtype=torch.float64)
    else:
        direction = DIRECTIONS[_randint(gen, 0, 3)]
        fast = bool(torch.rand((), generator=gen) < 0.5)
        span = config.max_speed - config.min_speed
        low = config.min_speed + (0.6 * span if fast else 0.0)
        speed = _uniform(gen, low, low + 0.4 * span)
        jitter = math.radians(config.direction_jitter)
        angle = DIRECTIONS.index(direction) * math.pi / 2 + _uniform(gen, -jitter, jitter)
        speed_tag, velocity = ("fast" if fast else "slow"), speed * torch.stack([torch.cos(angle), torch.sin(angle)])
    # Image motion = own (world) motion + camera; the start is drawn so the whole shape stays inside the frame.
    image_velocity = velocity + pan  # (2,)
    travel = image_velocity * (length - 1)
    low_xy = radius + 1 - travel.clamp(max=0)
    frame_max = torch.tensor([config.width - 1, config.height - 1], dtype=torch.float64)
    high_xy = frame_max - radius - 1 - travel.clamp(min=0)
    start_xy = low_xy + (high_xy - low_xy) * torch.rand(2, generator=gen, dtype=torch.float64)
    centres = start_xy + torch.arange(length, dtype=torch.float64)[:, None] * image_velocity  # (L, 2)
    tags = {"shape": shape, "color": color, "direction": direction, "speed": speed_tag}
    return tags, radius, centres


def make_clip(seed: int, config: ShapesConfig | None = None, *, device: str | torch.device = "cpu") -> SyntheticClip:
    """Generate clip `seed` of `config`; identical output for the same seed, config and device."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    config = ShapesConfig() if config is None else config
    if not isinstance(config, ShapesConfig):
        raise TypeError(f"config must be a ShapesConfig, got {type(config).__name__}")
    gen = torch.Generator().manual_seed(seed)  # all sampling on CPU, so parameters do not depend on the device
    T, H, W = config.num_frames, config.height, config.width
    starts = _shot_starts(gen, config)
    frames = torch.empty(T, H, W, 3, device=device)  # float32 canvas, rounded to uint8 at the end
    masks = []  # per object (T, H, W) bool, visible pixels
    points = torch.zeros(T, 0, 2)  # (T, N, 2)
    visibility = torch.zeros(T, 0, dtype=torch.bool)  # (T, N)
    offsets = torch.zeros(T, 2, dtype=torch.float64)  # camera offset of the texture within each shot
    tags, object_shot = [], []
    ys = torch.arange(H, device=device, dtype=torch.float32)[None, :, None]  # (1, H, 1)
    xs = torch.arange(W, device=device, dtype=torch.float32)[None, None, :]  # (1, 1, W)
    low_first = bool(torch.rand((), generator=gen) < 0.5)
    for shot, (start, end) in enumerate(zip(starts, starts[1:] + [T])):
        length = end - start
        pan = torch.zeros(2, dtype=torch.float64)
        if config.camera_pan:
            pan_angle = _uniform(gen, 0.0, 2 * math.pi)
            pan = _uniform(gen, config.min_pan_speed, config.max_pan_speed) * torch.stack(
                [torch.cos(pan_angle), torch.sin(pan_angle)])
        offsets[start:end] = torch.arange(length, dtype=torch.float64)[:, None] * pan  # (L, 2)
        # Alternate dark / bright shots so every cut is a large, unmistakable change.
        bright = _uniform(gen, 50.0, 100.0) if (shot % 2 == 0) == low_first else _uniform(gen, 150.0, 200.0)
        frames[start:end] = _render_background(gen, H, W, offsets[start:end], bright, device)

        num_objects = _randint(gen, config.min_objects, config.max_objects)
        colors = [config.colors[i] for i in torch.randperm(len(config.colors), generator=gen)[:num_objects].tolist()]
        shot_points = torch.zeros(T, num_objects, 2)  # (T, K, 2), held at the shot's ends outside it
        shot_masks = torch.zeros(num_objects, T, H, W, dtype=torch.bool, device=device)  # (K, T, H, W)
        for k, color in enumerate(colors):  # drawn in order, later objects on top
            object_tags, radius, centres = _sample_object(gen, config, color, length, pan)
            shot_points[:start, k], shot_points[start:end, k], shot_points[end:, k] = centres[0], centres, centres[-1]
            c = shot_points[start:end, k].to(device)  # (L, 2) float32, exactly the track
            shot_masks[k, start:end] = _shape_mask(object_tags["shape"], xs - c[:, 0, None, None],
                                                   ys - c[:, 1, None, None], radius)  # (L, H, W)
            frames[shot_masks[k]] = torch.tensor(COLORS[color], dtype=torch.float32, device=device)
            tags.append(object_tags)
            object_shot.append(shot)
        # Pixels covered by an object drawn later; a track is invisible where its centre pixel is covered.
        drawn_at_or_after = shot_masks.flip(0).int().cumsum(0).flip(0)  # (K, T, H, W)
        covered = drawn_at_or_after > shot_masks.int()
        masks.append(shot_masks & ~covered)
        pixel = shot_points.round().long().to(device)  # (T, K, 2)
        frame_index, object_index = torch.arange(T, device=device)[:, None], torch.arange(num_objects, device=device)
        centre_covered = covered[object_index, frame_index, pixel[..., 1], pixel[..., 0]].cpu()  # (T, K)
        in_shot = torch.zeros(T, 1, dtype=torch.bool)
        in_shot[start:end] = True
        points = torch.cat([points, shot_points], 1)
        visibility = torch.cat([visibility, in_shot & ~centre_covered], 1)

    camera_motion = None
    if config.camera_pan:
        camera_motion = torch.zeros(T, 2)
        camera_motion[1:] = (offsets[1:] - offsets[:-1]).float()
        camera_motion[starts] = 0.0
    clip_tags = {tag for object_tags in tags for tag in object_tag_strings(object_tags)}
    clip_tags.add("camera:pan" if config.camera_pan else "camera:static")
    return SyntheticClip(
        frames=frames.round().to(torch.uint8),
        tracks=Tracks(points=points, visibility=visibility, width=W, height=H),
        masks=torch.cat(masks, 0).transpose(0, 1).contiguous(),  # (N, T, H, W) -> (T, N, H, W)
        tags=tags,
        clip_tags=sorted(clip_tags),
        shot_starts=starts,
        object_shot=torch.tensor(object_shot, dtype=torch.int64),
        camera_motion=camera_motion,
        seed=seed,
    )


class ShapesDataset(Dataset):
    """`num_clips` clips (item i uses seed + i) as DataLoader-ready dicts, tracks padded to `config.max_tracks`."""

    def __init__(self, num_clips: int, config: ShapesConfig | None = None, seed: int = 0, normalize: bool = True):
        if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"num_clips must be a positive int, got {num_clips!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.num_clips, self.seed, self.normalize = num_clips, seed, normalize
        self.config = ShapesConfig() if config is None else config
        if not isinstance(self.config, ShapesConfig):
            raise TypeError(f"config must be a ShapesConfig, got {type(self.config).__name__}")

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """frames (3, T, H, W) float in [-1, 1] (or (T, H, W, 3) uint8 if not normalize), padded tracks and tags."""
        if not -self.num_clips <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        clip = make_clip(self.seed + index % self.num_clips, self.config)
        T, N, max_tracks = self.config.num_frames, clip.tracks.num_tracks, self.config.max_tracks
        frames = clip.frames
        if self.normalize:
            frames = frames.permute(3, 0, 1, 2).float() / 127.5 - 1.0  # (T, H, W, 3) -> (3, T, H, W)
        points = torch.zeros(T, max_tracks, 2)
        points[:, :N] = clip.tracks.points
        visibility = torch.zeros(T, max_tracks, dtype=torch.bool)
        visibility[:, :N] = clip.tracks.visibility
        object_tags = torch.zeros(max_tracks, len(TAG_VOCAB))
        for n, obj in enumerate(clip.tags):
            object_tags[n] = tags_to_multi_hot(obj)
        shot_start = torch.zeros(T, dtype=torch.bool)
        shot_start[clip.shot_starts] = True
        return {
            "frames": frames,
            "track_points": points,  # (T, max_tracks, 2) pixel (x, y)
            "track_visibility": visibility,  # (T, max_tracks)
            "track_mask": torch.arange(max_tracks) < N,  # (max_tracks,) real tracks vs padding
            "tags": tags_to_multi_hot(clip.clip_tags),  # (V,)
            "object_tags": object_tags,  # (max_tracks, V)
            "shot_start": shot_start,  # (T,)
            "camera_motion": clip.camera_motion if clip.camera_motion is not None else torch.zeros(T, 2),
            "seed": torch.tensor(clip.seed),
        }


def write_clips(out_dir: str | Path, num_clips: int, config: ShapesConfig | None = None, seed: int = 0,
                fps: float = 8.0) -> Path:
    """Write clip_00000.mp4, ... and ground_truth.json (tracks, tags, cuts, pan) to `out_dir`; returns the json path."""
    if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
        raise ValueError(f"num_clips must be a positive int, got {num_clips!r}")
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    config = ShapesConfig() if config is None else config
    if not isinstance(config, ShapesConfig):
        raise TypeError(f"config must be a ShapesConfig, got {type(config).__name__}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(num_clips):
        clip = make_clip(seed + i, config)
        name = f"clip_{i:05d}.mp4"
        write_video(clip.frames, out_dir / name, fps)
        records.append({
            "file": name,
            "seed": seed + i,
            "tracks": clip.tracks.to_json(),  # readable with Tracks.from_json
            "tags": clip.tags,
            "object_shot": clip.object_shot.tolist(),
            "clip_tags": clip.clip_tags,
            "shot_starts": clip.shot_starts,
            "camera_motion": None if clip.camera_motion is None else clip.camera_motion.tolist(),
        })
    config_dict = {f.name: getattr(config, f.name) for f in fields(config)}
    ground_truth = {"fps": fps, "config": config_dict, "tag_vocab": TAG_VOCAB, "clips": records}
    path = out_dir / "ground_truth.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(ground_truth))
    tmp.replace(path)
    return path


WIPE_DIRECTIONS = ("right", "left", "down", "up", "diagonal")


def wipe(outgoing: torch.Tensor, incoming: torch.Tensor, direction: str) -> torch.Tensor:
    """(L, h, w, 3) frames where `incoming` replaces `outgoing` (both (L, h, w, 3)) region by region, from the left
    edge ("right"), the right edge ("left"), the top ("down"), the bottom ("up") or the top-left corner ("diagonal");
    frame i shows the new picture on (i + 1) / (L + 1) of its area."""
    if direction not in WIPE_DIRECTIONS:
        raise ValueError(f"direction: expected one of {WIPE_DIRECTIONS}, got {direction!r}")
    if outgoing.shape != incoming.shape or outgoing.dim() != 4:
        raise ValueError(f"incoming: expected (L, h, w, 3) frames shaped like outgoing {tuple(outgoing.shape)}, "
                         f"got {tuple(incoming.shape)}")
    length, height, width, _ = outgoing.shape
    rows = (torch.arange(height, dtype=torch.float32)[:, None] + 0.5) / height  # (h, 1) in (0, 1)
    cols = (torch.arange(width, dtype=torch.float32)[None, :] + 0.5) / width  # (1, w)
    fronts = {"right": cols, "left": 1 - cols, "down": rows, "up": 1 - rows, "diagonal": rows + cols}
    front = fronts[direction].expand(height, width)  # (h, w): where the new picture arrives first, lowest
    # Rank of each pixel along the front: the revealed area then grows linearly whatever the front's shape.
    rank = torch.empty(height * width)
    rank[front.flatten().argsort(stable=True)] = torch.arange(height * width, dtype=torch.float32)
    share = torch.arange(1, length + 1, dtype=torch.float32)[:, None] / (length + 1)  # (L, 1)
    revealed = (rank[None, :] < share * height * width).view(length, height, width, 1)  # (L, h, w, 1)
    return torch.where(revealed, incoming, outgoing)
