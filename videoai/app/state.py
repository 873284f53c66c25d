"""Path-editing state of the motion brush: `MotionSketch` (paths + anchors, undoable) and its preview drawing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from videoai.tokenize.tracks import Tracks

Point = tuple[float, float]
MAX_UNDO = 256  # edits remembered by undo

# Track colours (RGB) in the order of videoai.generate.overlay's, so a path keeps its colour in the overlay video
# (tracks are the paths, then the anchors).
TRACK_COLORS = ((255, 255, 255), (255, 64, 64), (64, 255, 64), (64, 128, 255), (255, 220, 0), (255, 0, 255),
                (0, 255, 255), (255, 128, 0))


def _check_point(x: Any, y: Any) -> Point:
    for name, value in (("x", x), ("y", y)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number (pixel coordinate), got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    return float(x), float(y)


@dataclass(frozen=True)
class MotionSketch:
    """User-drawn motion in image pixels (x, y): paths (>= 1 vertex each; one vertex holds a point still) and static
    anchors. Immutable: every edit returns a new sketch holding the earlier states, so `undo` is exact."""

    paths: tuple[tuple[Point, ...], ...] = ()
    anchors: tuple[Point, ...] = ()
    path_open: bool = False  # whether the next vertex extends the last path (False: it starts a new path)
    # Earlier (paths, anchors, path_open), oldest first; flat so gradio's per-session deepcopy stays shallow.
    history: tuple[tuple[Any, Any, bool], ...] = field(default=(), repr=False, compare=False)

    @property
    def num_tracks(self) -> int:
        return len(self.paths) + len(self.anchors)

    @property
    def is_empty(self) -> bool:
        return self.num_tracks == 0

    def _edit(self, **changes) -> MotionSketch:
        history = (self.history + ((self.paths, self.anchors, self.path_open),))[-MAX_UNDO:]
        return replace(self, history=history, **changes)

    def add_vertex(self, x: float, y: float) -> MotionSketch:
        """Append (x, y) to the current path, or start a path with it after `new_path`."""
        point = _check_point(x, y)
        if self.path_open and self.paths:
            return self._edit(paths=self.paths[:-1] + (self.paths[-1] + (point,),))
        return self._edit(paths=self.paths + ((point,),), path_open=True)

    def add_anchor(self, x: float, y: float) -> MotionSketch:
        """Add a static point: content there should stay still."""
        return self._edit(anchors=self.anchors + (_check_point(x, y),))

    def new_path(self) -> MotionSketch:
        """Close the current path; the next vertex starts a new one. A no-op when no path is open."""
        return self._edit(path_open=False) if self.path_open else self

    def undo(self) -> MotionSketch:
        """The sketch before the last edit (the same sketch when there is nothing to undo)."""
        if not self.history:
            return self
        paths, anchors, path_open = self.history[-1]
        return MotionSketch(paths, anchors, path_open, self.history[:-1])

    def clear(self) -> MotionSketch:
        """Remove every path and anchor (undoable)."""
        return self._edit(paths=(), anchors=(), path_open=False) if self.num_tracks or self.path_open else self

    def polylines(self) -> list[list[Point]]:
        """Paths then anchors, as the pipeline's `tracks` argument (an anchor is a one-point polyline)."""
        return [list(path) for path in self.paths] + [[anchor] for anchor in self.anchors]

    def to_tracks(self, num_frames: int, width: int, height: int) -> Tracks:
        """`Tracks` of num_frames frames: each path resampled arc-length-uniform, anchors held still."""
        return Tracks.from_polylines(self.polylines(), num_frames, width, height)

    def describe(self) -> str:
        """One line for the UI: counts and what the next click does."""
        vertices = sum(len(path) for path in self.paths)
        state = "next click extends path" if self.path_open else "next click starts a new path"
        return (f"{len(self.paths)} path(s), {vertices} vertices, {len(self.anchors)} anchor(s); "
                f"in path mode the {state}")


def display_scale(height: int, width: int, target: int = 512, max_side: int = 1024) -> float:
    """Canvas scale: an integer upscale showing a small image at about `target` pixels on its long side, 1 for a
    mid-sized one, 1/k shrinking a large one to at most `max_side` (keeps each click's redraw cheap)."""
    long_side = max(height, width)
    if long_side > max_side:
        return 1 / math.ceil(long_side / max_side)
    return float(max(1, target // long_side))


def canvas_to_image(x: float, y: float, scale: float) -> Point:
    """Pixel (x, y) on a canvas scaled by `scale` -> pixel (x, y) on the image (pixel centres at integers)."""
    return (x + 0.5) / scale - 0.5, (y + 0.5) / scale - 0.5


def draw_sketch(image: np.ndarray, sketch: MotionSketch, scale: float = 1) -> np.ndarray:
    """Preview: `image` (H, W, 3) uint8 scaled by `scale` (an integer: nearest upscale; 1/k: area downscale) with
    the paths (arrow at the end, dots at vertices) and anchors (squares) drawn on it -> (H', W', 3) uint8.
    Colours follow track order."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 array, got {getattr(image, 'shape', type(image))}")
    if scale >= 1 and scale == int(scale):
        factor = int(scale)
        canvas = np.ascontiguousarray(np.repeat(np.repeat(image, factor, axis=0), factor, axis=1))
    elif 0 < scale < 1 and (1 / scale) == round(1 / scale):
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        canvas = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    else:
        raise ValueError(f"scale must be a positive integer or 1/k for an integer k, got {scale!r}")
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 170))
    radius = 2 * thickness + 1
    shift = 4  # cv2 sub-pixel drawing: coordinates in 1/16 pixel

    def fixed(points) -> np.ndarray:  # image pixels -> canvas pixels in cv2 fixed point, (K, 2) int32
        canvas_points = (np.asarray(points, dtype=np.float64) + 0.5) * scale - 0.5
        return np.round(canvas_points * (1 << shift)).astype(np.int32)

    # cv2 draws one primitive per call; these loops run over a handful of user clicks, not pixels.
    for index, path in enumerate(sketch.paths):
        color = TRACK_COLORS[index % len(TRACK_COLORS)]
        points = fixed(path)
        if len(points) > 1:
            cv2.polylines(canvas, [points[:-1].reshape(-1, 1, 2)], False, color, thickness, cv2.LINE_AA, shift)
            tail = (points[-1] - points[-2]).astype(np.float64)
            length = float(np.hypot(*tail))
            tip_length = min(0.9, 6 * radius * (1 << shift) / length) if length > 0 else 0.0
            cv2.arrowedLine(canvas, tuple(int(v) for v in points[-2]), tuple(int(v) for v in points[-1]), color,
                            thickness, cv2.LINE_AA, shift, tip_length)
        for point in points:
            cv2.circle(canvas, tuple(int(v) for v in point), radius << shift, color, -1, cv2.LINE_AA, shift)
    for index, (x, y) in enumerate(fixed(sketch.anchors).reshape(-1, 2), start=len(sketch.paths)):
        size = (radius + 1) << shift
        corners = (int(x) - size, int(y) - size), (int(x) + size, int(y) + size)
        cv2.rectangle(canvas, *corners, (0, 0, 0), thickness + 2, cv2.LINE_AA, shift)  # outline for contrast
        cv2.rectangle(canvas, *corners, TRACK_COLORS[index % len(TRACK_COLORS)], thickness, cv2.LINE_AA, shift)
    return canvas
