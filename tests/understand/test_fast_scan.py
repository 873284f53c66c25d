from pathlib import Path

import numpy as np
import pytest
import torch

from videoai.synthetic import ShapesConfig, make_clip
from videoai.tokenize.video_io import VideoReadError, write_video
from videoai.understand.content_score import scan_scores
from videoai.understand.fast_scan import fast_scan_scores

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video"
WEIGHTS = (1.0, 1.0, 1.0, 0.0)


def check_close_to_scan_scores(path, tolerance):
    fast, full = fast_scan_scores(path, WEIGHTS), scan_scores(path, WEIGHTS)
    assert fast.scores.shape == full.scores.shape and fast.thumbnails.shape == full.thumbnails.shape
    torch.testing.assert_close(fast.timestamps, full.timestamps, rtol=0, atol=0)  # same frames, same times
    assert fast.end_time == full.end_time and bool(fast.exact.all())
    assert (fast.scores - full.scores).abs().max() <= tolerance  # only the scaler differs
    return fast


def test_every_frame_scored_like_the_bilinear_pass(tmp_path):
    clip = make_clip(0, ShapesConfig(num_frames=40, height=144, width=256, num_shots=2, min_shot_length=16))
    path = tmp_path / "shapes.mp4"
    write_video(clip.frames, path, 25)
    fast = check_close_to_scan_scores(path, 4.0)
    assert int(fast.scores.argmax()) == clip.shot_starts[1]


@pytest.mark.skipif(not DATA.exists(), reason=f"real clips not found at {DATA}")
def test_counter_borderline_change_stays_under_the_threshold():
    fast = check_close_to_scan_scores(DATA / "counter.mp4", 1.5)
    assert fast.scores[10] > 27 and 24 < fast.scores[20] < 27  # the change at 20 is a borderline non-cut


def test_corrupt_file_raises(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError):
        fast_scan_scores(corrupt, WEIGHTS)
