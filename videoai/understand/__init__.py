"""Video understanding: shots, keyframes, point tracks and motion (classical, weight-free), tags and embeddings."""

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
from videoai.understand.tagger import VideoTagger, VideoTaggerConfig, load_tagger
from videoai.understand.tagger_train import (
    SYNTHETIC_APPEARANCE_CHANNELS,
    SYNTHETIC_AUGMENT,
    SYNTHETIC_TAGS,
    LabelledVideoDataset,
    SyntheticTagDataset,
    TaggerTrainConfig,
    average_precision,
    evaluate_tagger,
    save_tagger,
    train_tagger,
)
from videoai.understand.tagging import load_video_model, tag_video
from videoai.understand.tracking import sample_tracks, track_motion, track_points
from videoai.understand.transitions import Transition
from videoai.understand.zero_shot import ZeroShotModel, load_zero_shot_model, zero_shot_tags

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
