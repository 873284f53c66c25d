"""Shared, device-agnostic tokenization: video I/O, patches and 3-D RoPE, motion tracks, semantic IDs."""

from videoai.tokenize.patches import patch_grid, patchify, unpatchify
from videoai.tokenize.rasterize import displacement_maps, gaussian_heatmaps, splat_features
from videoai.tokenize.residual_kmeans import ResidualKMeans, kmeans
from videoai.tokenize.rope import apply_rope, rope_3d, rope_axis_dims
from videoai.tokenize.scan import VideoScanner
from videoai.tokenize.semantic_ids import PrefixTrie, make_collision_free
from videoai.tokenize.tracks import Tracks
from videoai.tokenize.video_io import (
    VideoClip,
    VideoInfo,
    VideoReadError,
    iter_video_chunks,
    read_video,
    video_info,
    write_video,
)

__all__ = [
    "PrefixTrie",
    "ResidualKMeans",
    "Tracks",
    "VideoClip",
    "VideoInfo",
    "VideoReadError",
    "VideoScanner",
    "apply_rope",
    "displacement_maps",
    "gaussian_heatmaps",
    "iter_video_chunks",
    "kmeans",
    "make_collision_free",
    "patch_grid",
    "patchify",
    "read_video",
    "rope_3d",
    "rope_axis_dims",
    "splat_features",
    "unpatchify",
    "video_info",
    "write_video",
]
