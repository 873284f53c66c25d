"""Trajectory-controlled image-to-video on diffusers' Wan stack: pipeline, conditioning, motion adapter, training."""

from .conditioning import (apply_tracks, latent_frame_tracks, latent_num_frames, motion_maps, pin_tracks,
                           splat_first_frame, track_mask)
from .default import DEFAULT_MODEL_DIR, TinyWanConfig, build_pipeline, load_default_pipeline
from .evaluate import color_centroids, end_point_error
from .finetune import FinetuneConfig, finetune_lora, load_lora, save_lora
from .latents import encode_image_condition, encode_video
from .layouts import TRACK_CONDITIONINGS, WanLayout, resolve_layout
from .model import TrajectoryDenoiser
from .motion_adapter import MotionAdapter
from .overlay import draw_tracks, export_overlay, export_video, to_uint8_video
from .pipeline import TrajectoryImageToVideoPipeline, TrajectoryPipelineOutput
from .recipe import DefaultRecipe, default_shapes_config, start_from_pipeline, synthetic_tracks, train_default_model
from .repatch import repatch_transformer
from .single_file import OriginalCheckpointError, load_original_wan_transformer
from .train import (
    GeneratorTrainConfig,
    TrackConditionedLatents,
    encode_clips,
    sample_tracks,
    save_trained,
    train_generator,
    understand_track_source,
)
from .train_vae import VAETrainConfig, VideoCrops, fit_latent_stats, train_vae
from .wan_move import wan_move_condition

__all__ = [
    "FinetuneConfig",
    "finetune_lora",
    "load_lora",
    "save_lora",
    "TRACK_CONDITIONINGS",
    "WanLayout",
    "pin_tracks",
    "resolve_layout",
    "splat_first_frame",
    "DEFAULT_MODEL_DIR",
    "DefaultRecipe",
    "repatch_transformer",
    "start_from_pipeline",
    "default_shapes_config",
    "GeneratorTrainConfig",
    "MotionAdapter",
    "OriginalCheckpointError",
    "TinyWanConfig",
    "TrackConditionedLatents",
    "TrajectoryDenoiser",
    "TrajectoryImageToVideoPipeline",
    "TrajectoryPipelineOutput",
    "VAETrainConfig",
    "VideoCrops",
    "apply_tracks",
    "build_pipeline",
    "color_centroids",
    "draw_tracks",
    "encode_clips",
    "encode_image_condition",
    "encode_video",
    "end_point_error",
    "export_overlay",
    "export_video",
    "fit_latent_stats",
    "latent_frame_tracks",
    "latent_num_frames",
    "load_original_wan_transformer",
    "load_default_pipeline",
    "motion_maps",
    "sample_tracks",
    "save_trained",
    "synthetic_tracks",
    "to_uint8_video",
    "track_mask",
    "train_default_model",
    "train_generator",
    "train_vae",
    "understand_track_source",
    "wan_move_condition",
]
