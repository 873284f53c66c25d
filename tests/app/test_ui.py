"""The app's server side without a browser: generation writes playable videos, inputs are validated."""

import numpy as np
import pytest

from videoai.app import MotionSketch, build_app, default_image, launch_app
from videoai.app.ui import PipelineCache, generate
from videoai.generate import TrajectoryPipelineOutput
from videoai.tokenize.tracks import Tracks
from videoai.tokenize.video_io import read_video


def test_default_image_is_a_synthetic_frame():
    image = default_image()
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, default_image())  # deterministic


class FlatPipeline:
    """Stands in for the pipeline: records the call, returns mid-grey 32 x 32 frames and the requested tracks."""

    def __call__(self, image, tracks, num_frames, num_inference_steps, generator, output_type):
        self.call = dict(image=image, tracks=tracks, num_frames=num_frames, num_inference_steps=num_inference_steps,
                         seed=generator.initial_seed(), output_type=output_type)
        if tracks is not None:
            height, width = image.shape[:2]
            tracks = Tracks.from_polylines(tracks, num_frames, width, height).scale_to(32, 32)
        return TrajectoryPipelineOutput(frames=np.full((1, num_frames, 32, 32, 3), 0.5, np.float32), tracks=tracks)


@pytest.mark.parametrize("drawn", [False, True])
def test_generate_passes_the_sketch_and_writes_video_and_overlay(tmp_path, drawn):
    sketch = MotionSketch().add_vertex(4, 4).add_vertex(50, 40).add_anchor(60, 5) if drawn else MotionSketch()
    pipeline = FlatPipeline()
    video, overlay = generate(pipeline, default_image(), sketch, num_frames=5, num_steps=3, seed=7,
                              output_dir=tmp_path)
    assert pipeline.call["tracks"] == (sketch.polylines() if drawn else None)
    assert (pipeline.call["num_frames"], pipeline.call["num_inference_steps"], pipeline.call["seed"]) == (5, 3, 7)
    clip = read_video(video)
    assert clip.frames.shape == (5, 32, 32, 3)
    assert (clip.frames.float() - 128).abs().max() < 8
    drawn_video = read_video(overlay)
    assert (drawn_video.num_frames, drawn_video.height, drawn_video.width) == (5, 32 * 16, 32 * 16)  # upscaled
    marked = (drawn_video.frames.float() - 128).abs().amax(-1) > 60  # (T, H, W) pixels where tracks are drawn
    assert marked.any() == drawn
    if drawn:  # frame 0: the path starts at image (4, 4) -> video (1.75, 1.75) -> overlay pixel ~(35.5, 35.5)
        assert marked[0, 20:52, 20:52].any() and not marked[0, 300:, :200].any()


def test_generate_runs_the_real_pipeline(tiny_pipeline, tmp_path):
    sketch = MotionSketch().add_vertex(4, 4).add_vertex(50, 40)
    video, overlay = generate(tiny_pipeline, default_image(), sketch, num_frames=5, num_steps=1, seed=0,
                              output_dir=tmp_path)
    assert read_video(video).frames.shape == (5, 32, 32, 3)
    assert read_video(overlay).num_frames == 5


def test_pipeline_cache_builds_once_per_folder():
    calls = []
    cache = PipelineCache(lambda folder: calls.append(folder) or object())
    first = cache.get("")
    assert cache.get(None) is first and cache.get("  ") is first
    other = cache.get(" /models/a ")
    assert other is not first and cache.get("/models/a") is other
    assert calls == [None, "/models/a"]


def test_build_app_validates_its_arguments():
    with pytest.raises(ValueError, match="image"):
        build_app(lambda folder: None, image=np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="num_frames"):
        build_app(lambda folder: None, num_frames=6)
    with pytest.raises(ValueError, match="num_steps"):
        build_app(lambda folder: None, num_steps=0)


def test_launch_app_rejects_bad_arguments_before_serving(tmp_path):
    with pytest.raises(ValueError, match="port"):
        launch_app("127.0.0.1", 70000, pipeline_factory=lambda folder: None)
    with pytest.raises(FileNotFoundError, match="model_dir"):
        launch_app("127.0.0.1", 7860, model_dir=tmp_path / "missing", pipeline_factory=lambda folder: None)
