"""The motion-brush web app (Gradio Blocks): draw paths on an image, generate a video that follows them."""

from __future__ import annotations

import os

# Local-first: no usage analytics or telemetry; must be set before gradio / huggingface_hub are imported.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import hashlib  # noqa: E402
import io  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import torch  # noqa: E402

from videoai.synthetic import ShapesConfig, make_clip  # noqa: E402

from .state import MotionSketch, canvas_to_image, display_scale, draw_sketch  # noqa: E402

PipelineFactory = Callable[[str | None], Any]
MODES = ("path", "anchor")
FPS = 8.0
HELP = """# videoai motion brush
Upload an image (or keep the default one). **Click on the right-hand image** to draw: in *path* mode each click adds
a vertex to the current path (**New path** starts another); in *anchor* mode a click pins a point that should stay
still. Then press **Generate**: the content under each path's first point moves along it over the video."""


def default_image(seed: int = 3) -> np.ndarray:
    """The bundled default image: frame 0 of a synthetic moving-shapes clip, (64, 64, 3) uint8."""
    config = ShapesConfig(num_frames=4, height=64, width=64, min_objects=3, max_objects=3)
    return make_clip(seed, config).frames[0].numpy()


def load_pipeline(model_dir: str | None, device: str | torch.device | None = None):
    """The embedded default pipeline (model_dir None) or one saved in a local folder, moved to `device`."""
    from videoai.generate import TrajectoryImageToVideoPipeline, load_default_pipeline

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if model_dir is None:
        return load_default_pipeline(device=device)
    return TrajectoryImageToVideoPipeline.from_pretrained(model_dir).to(device)


class PipelineCache:
    """Builds each pipeline once (per model folder) and hands the same object to later requests."""

    def __init__(self, factory: PipelineFactory):
        self.factory = factory
        self.pipelines: dict[str | None, Any] = {}
        self.lock = threading.Lock()

    def get(self, model_dir: str | None) -> Any:
        model_dir = (model_dir or "").strip() or None
        with self.lock:
            if model_dir not in self.pipelines:
                self.pipelines[model_dir] = self.factory(model_dir)
            return self.pipelines[model_dir]


def save_png(image: np.ndarray, folder: Path) -> str:
    """Write `image` (H, W, 3) uint8 once, atomically, as folder/<content hash>.png -> its path.

    Gradio copies a returned path into its cache only if absent, whereas a returned array is re-encoded over the
    same cache file every time, so a browser still fetching it can get a truncated image.
    """
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="png")
    data = buffer.getvalue()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.stem}.{uuid.uuid4().hex}.tmp")
        temporary.write_bytes(data)
        temporary.replace(path)
    return str(path)


def generate(pipeline: Any, image: np.ndarray, sketch: MotionSketch, num_frames: int, num_steps: int, seed: int,
             output_dir: str | Path) -> tuple[str, str]:
    """Run `pipeline` on the image and the sketch's paths; write video.mp4 and overlay.mp4 -> their paths."""
    from videoai.generate import export_overlay, export_video
    from videoai.tokenize.tracks import Tracks

    generator = torch.Generator().manual_seed(int(seed))
    output = pipeline(image=image, tracks=sketch.polylines() or None, num_frames=int(num_frames),
                      num_inference_steps=int(num_steps), generator=generator, output_type="np")
    frames = output.frames[0]  # (T, H, W, 3) float in [0, 1]
    tracks = output.tracks
    if tracks is None:  # nothing drawn: the overlay is the plain video
        tracks = Tracks.from_polylines([], frames.shape[0], frames.shape[2], frames.shape[1])
    folder = Path(output_dir) / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True, exist_ok=True)
    video_path, overlay_path = folder / "video.mp4", folder / "overlay.mp4"
    export_video(frames, str(video_path), fps=FPS)
    export_overlay(frames, tracks, str(overlay_path), fps=FPS, scale=max(1, int(display_scale(*frames.shape[1:3]))))
    return str(video_path), str(overlay_path)


def build_app(pipeline_factory: PipelineFactory | None = None, *, model_dir: str | None = None,
              image: np.ndarray | None = None, output_dir: str | Path | None = None,
              device: str | torch.device | None = None, num_frames: int = 13, num_steps: int = 20) -> gr.Blocks:
    """The motion-brush app as a `gr.Blocks` (not launched).

    pipeline_factory: called with the model folder the user named (None: the default model) and returns a
    `TrajectoryImageToVideoPipeline`-like callable; default: `load_pipeline` on `device`. Built once per folder.
    model_dir: the folder shown in the model box at start. image: the starting image (H, W, 3) uint8 (default:
    `default_image()`). output_dir: where generated videos go (default: a new temporary folder).
    """
    if image is None:
        image = default_image()
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 array, got {getattr(image, 'shape', type(image))}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 5 or num_frames % 4 != 1:
        raise ValueError(f"num_frames must be an int 4k + 1 >= 5, got {num_frames!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    cache = PipelineCache(pipeline_factory or (lambda folder: load_pipeline(folder, device)))
    output_dir = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="videoai-app-"))

    def redraw(current_image: np.ndarray | None, sketch: MotionSketch) -> tuple[str | None, str]:
        """(path of the canvas image or None, status line) for the current image and sketch."""
        if current_image is None:
            return None, "Upload an image to start drawing."
        canvas = draw_sketch(current_image, sketch, display_scale(*current_image.shape[:2]))
        return save_png(canvas, output_dir / "canvas"), sketch.describe()

    def on_image(new_image):
        sketch = MotionSketch()  # a new image starts a new drawing
        return (sketch, *redraw(new_image, sketch))

    def on_click(current_image, sketch: MotionSketch, mode: str, event: gr.SelectData):
        if current_image is None:
            raise gr.Error("Upload an image first.")
        x, y = canvas_to_image(*event.index, display_scale(*current_image.shape[:2]))
        sketch = sketch.add_anchor(x, y) if mode == "anchor" else sketch.add_vertex(x, y)
        canvas_path, status_line = redraw(current_image, sketch)
        return sketch, canvas_path, f"{status_line}; last click at image pixel ({x:.1f}, {y:.1f})"

    def on_edit(edit: Callable[[MotionSketch], MotionSketch]):
        def handler(current_image, sketch: MotionSketch):
            sketch = edit(sketch)
            return (sketch, *redraw(current_image, sketch))

        return handler

    def on_generate(current_image, sketch: MotionSketch, folder: str, frames: float, steps: float, seed: float,
                    progress=gr.Progress(track_tqdm=True)):  # the pipeline's per-step tqdm bar drives the progress
        if current_image is None:
            raise gr.Error("Upload an image first.")
        progress(0, desc="Loading the model")
        try:
            pipeline = cache.get(folder)
            progress(0, desc="Generating")
            video, overlay = generate(pipeline, current_image, sketch, int(frames), int(steps), int(seed or 0),
                                      output_dir)
        except (ValueError, TypeError, OSError, RuntimeError) as error:
            raise gr.Error(f"{type(error).__name__}: {error}") from error
        return video, overlay, f"Done: {sketch.num_tracks} track(s), {int(frames)} frames, {int(steps)} steps."

    with gr.Blocks(title="videoai motion brush", analytics_enabled=False) as app:
        sketch_state = gr.State(MotionSketch())
        gr.Markdown(HELP)
        with gr.Row():
            with gr.Column():
                image_input = gr.Image(value=image, type="numpy", image_mode="RGB", sources=["upload", "clipboard"],
                                       label="Image", elem_id="image-input")
                model_box = gr.Textbox(value=model_dir or "", label="Model folder",
                                       placeholder="empty: the embedded default model", elem_id="model-dir")
                frames_slider = gr.Slider(5, 81, value=num_frames, step=4, label="Frames (4k + 1)",
                                          elem_id="num-frames")
                steps_slider = gr.Slider(1, 100, value=num_steps, step=1, label="Denoising steps",
                                         elem_id="num-steps")
                seed_box = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
            with gr.Column():
                canvas = gr.Image(value=redraw(image, MotionSketch())[0], interactive=False, format="png",
                                  label="Click to draw paths", buttons=[], elem_id="canvas")
                mode_radio = gr.Radio(list(MODES), value="path", label="A click adds", elem_id="mode")
                with gr.Row():
                    new_path_button = gr.Button("New path", elem_id="new-path")
                    undo_button = gr.Button("Undo", elem_id="undo")
                    clear_button = gr.Button("Clear", elem_id="clear")
                status = gr.Markdown(MotionSketch().describe(), elem_id="status")
        generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
        with gr.Row():
            video_output = gr.Video(label="Generated video", autoplay=True, loop=True, elem_id="video")
            overlay_output = gr.Video(label="Video with the paths drawn", autoplay=True, loop=True,
                                      elem_id="overlay")
        result = gr.Markdown(elem_id="result")

        drawing = [sketch_state, canvas, status]
        quiet = dict(show_progress="hidden")  # redraws take milliseconds; a spinner per click would only flicker
        # .input fires once per user upload/removal (.change fires twice on an upload)
        image_input.input(on_image, image_input, drawing, **quiet)
        canvas.select(on_click, [image_input, sketch_state, mode_radio], drawing, **quiet)
        new_path_button.click(on_edit(MotionSketch.new_path), [image_input, sketch_state], drawing, **quiet)
        undo_button.click(on_edit(MotionSketch.undo), [image_input, sketch_state], drawing, **quiet)
        clear_button.click(on_edit(MotionSketch.clear), [image_input, sketch_state], drawing, **quiet)
        # one generation at a time (they share one model); drawing stays responsive meanwhile
        generate_button.click(on_generate, [image_input, sketch_state, model_box, frames_slider, steps_slider,
                                            seed_box], [video_output, overlay_output, result], concurrency_limit=1)
    app.pipeline_cache = cache  # lets launch_app load the starting model before serving
    return app


def launch_app(host: str = "127.0.0.1", port: int = 7860, model_dir: str | None = None, *,
               device: str | torch.device | None = None, pipeline_factory: PipelineFactory | None = None,
               output_dir: str | Path | None = None, num_frames: int = 13, num_steps: int = 20,
               block: bool = True) -> gr.Blocks:
    """Serve the motion-brush app on http://host:port (local only, nothing public).

    The model (model_dir, default: the embedded one) is loaded before serving, so a bad folder fails here.
    num_frames / num_steps: the sliders' starting values. block=False returns at once with the server running in
    the background (stop it with `app.close()`).
    """
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an int in [1, 65535], got {port!r}")
    if model_dir is not None and not Path(model_dir).is_dir():
        raise FileNotFoundError(f"model_dir {str(model_dir)!r} is not a folder (expected a saved pipeline)")
    model_dir = None if model_dir is None else str(model_dir)
    app = build_app(pipeline_factory, model_dir=model_dir, output_dir=output_dir, device=device,
                    num_frames=num_frames, num_steps=num_steps)
    app.pipeline_cache.get(model_dir)
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
               show_error=True, footer_links=["settings"], enable_monitoring=False, mcp_server=False)
    return app
