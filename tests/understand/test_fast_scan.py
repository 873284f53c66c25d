from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from videoai.synthetic import ShapesConfig, make_clip
from videoai.tokenize.scan import VideoScanner
from videoai.tokenize.video_io import VideoReadError, write_video
from videoai.understand import fast_scan
from videoai.understand.content_score import ContentScorer, scan_scores
from videoai.understand.fast_scan import fast_scan_scores, plan_pieces

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


def test_pieces_follow_keyframes_and_balance_the_workers():
    assert plan_pieces([0, 30, 180, 480], 720, 2) == [(0, 180), (180, 480), (480, 720)]
    assert plan_pieces([0, 30, 180, 480], 720, 1) == [(0, 720)]
    assert plan_pieces([0, 250], 300, 2) == [(0, 300)]  # a last piece under MIN_PIECE frames joins the one before
    assert plan_pieces(list(range(250)), 250, 2) == [(0, 64), (64, 128), (128, 250)]  # every frame a keyframe


@pytest.mark.parametrize("gop", ["keyint=40:scenecut=0", "keyint=40:scenecut=0:open-gop=1"])
def test_pieces_score_every_frame_bit_for_bit_like_one_decoder(tmp_path, gop):
    # B frames (x264's default), and with an open GOP the B frames before each keyframe refer to the piece before.
    clip = make_clip(1, ShapesConfig(num_frames=200, height=144, width=256, num_shots=5, min_shot_length=36,
                                     camera_pan=True, max_pan_speed=0.5, min_pan_speed=0.25, max_speed=1.0))
    path = tmp_path / "gops.mp4"
    write_video(clip.frames, path, 25, encoder_options={"x264-params": gop})
    scanner = VideoScanner(path, 72)
    assert len(plan_pieces(scanner.keyframe_indices, scanner.num_frames, 2)) >= 2
    one, pieces = fast_scan_scores(path, WEIGHTS, workers=1), fast_scan_scores(path, WEIGHTS, workers=2)
    for field in ("scores", "spreads", "thumbnails", "timestamps"):
        assert torch.equal(getattr(one, field), getattr(pieces, field)), field
    assert int(pieces.scores.argmax()) in clip.shot_starts[1:]


def test_a_piece_that_does_not_decode_sends_the_file_to_one_decoder(tmp_path, monkeypatch):
    clip = make_clip(2, ShapesConfig(num_frames=160, height=144, width=256, num_shots=4, min_shot_length=36,
                                     max_speed=1.0))
    path = tmp_path / "lying_keyframes.mp4"
    write_video(clip.frames, path, 25, encoder_options={"x264-params": "keyint=40:scenecut=0"})
    one = fast_scan_scores(path, WEIGHTS, workers=1)
    decoded = fast_scan._decoded

    def failing_after_a_seek(scanner, start, *args):
        if start > 0:
            raise VideoReadError(scanner.path, f"frame {start} did not decode")
        return decoded(scanner, start, *args)

    monkeypatch.setattr(fast_scan, "_decoded", failing_after_a_seek)
    assert torch.equal(fast_scan_scores(path, WEIGHTS, workers=2).scores, one.scores)


def test_cpu_scores_are_mean_absolute_hsv_differences():
    # 100x200 frames: the scorer works 6 frames at a time, so chunks of 16 cross its steps and each other.
    frames = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (32, 100, 200, 3), dtype=np.uint8))
    hsv = np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2HSV) for frame in frames.numpy()]).astype(np.float64)
    expected = np.abs(np.diff(hsv, axis=0)).mean(axis=(1, 2)) @ np.array([0.25, 0.25, 0.5])  # (31,)
    scorer = ContentScorer((1.0, 1.0, 2.0, 0.0))
    scores = torch.cat([scorer(frames[:16])[0], scorer(frames[16:])[0]])
    assert scores[0] == 0
    np.testing.assert_allclose(scores[1:].numpy(), expected, rtol=1e-5)
