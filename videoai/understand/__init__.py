"""Video understanding: shots, keyframes, point tracks and motion (classical, weight-free), tags and embeddings."""

from importlib import import_module

from videoai.understand.embed import embed
from videoai.understand.index import (
    CatalogueError,
    IndexConfig,
    IndexResult,
    find_videos,
    index_videos,
    weight_free_embedding,
)
from videoai.understand.keyframes import frame_sharpness, hamming_distance, keyframes, perceptual_hash
from videoai.understand.motion import ShotMotion, camera_motion, motion_stats
from videoai.understand.shots import Shot, content_scores, detect_shots, rgb_to_hsv
from videoai.understand.tracking import sample_tracks, track_motion, track_points
from videoai.understand.transitions import Transition
from videoai.understand.zero_shot import ZeroShotModel, load_zero_shot_model, zero_shot_tags

# Names whose modules import transformers (~5 s) load on first use (PEP 562), so a catalogue worker that only
# needs shots, keyframes and motion starts without it.
_LAZY = {
    "VideoTagger": "tagger", "VideoTaggerConfig": "tagger", "load_tagger": "tagger",
    "SYNTHETIC_APPEARANCE_CHANNELS": "tagger_train", "SYNTHETIC_AUGMENT": "tagger_train",
    "SYNTHETIC_TAGS": "tagger_train", "LabelledVideoDataset": "tagger_train", "SyntheticTagDataset": "tagger_train",
    "TaggerTrainConfig": "tagger_train", "average_precision": "tagger_train", "evaluate_tagger": "tagger_train",
    "save_tagger": "tagger_train", "train_tagger": "tagger_train",
    "load_video_model": "tagging", "tag_video": "tagging",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CatalogueError",
    "IndexConfig",
    "IndexResult",
    "find_videos",
    "index_videos",
    "weight_free_embedding",
    "SYNTHETIC_APPEARANCE_CHANNELS",
    "SYNTHETIC_AUGMENT",
    "SYNTHETIC_TAGS",
    "save_tagger",
    "LabelledVideoDataset",
    "Shot",
    "Transition",
    "ShotMotion",
    "SyntheticTagDataset",
    "TaggerTrainConfig",
    "VideoTagger",
    "VideoTaggerConfig",
    "ZeroShotModel",
    "average_precision",
    "camera_motion",
    "content_scores",
    "detect_shots",
    "embed",
    "evaluate_tagger",
    "frame_sharpness",
    "hamming_distance",
    "keyframes",
    "load_tagger",
    "load_video_model",
    "load_zero_shot_model",
    "motion_stats",
    "perceptual_hash",
    "rgb_to_hsv",
    "sample_tracks",
    "tag_video",
    "track_motion",
    "track_points",
    "train_tagger",
    "zero_shot_tags",
]
