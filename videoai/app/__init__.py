"""The motion-brush web app: draw paths on an image, get a video that follows them (`videoai app`)."""

from .state import MotionSketch, draw_sketch
from .ui import build_app, default_image, launch_app

__all__ = ["MotionSketch", "build_app", "default_image", "draw_sketch", "launch_app"]
