import numpy as np
import PIL.Image
import pytest
import torch

from videoai.generate import draw_tracks, export_overlay, export_video, to_uint8_video
from videoai.tokenize.tracks import Tracks


def test_to_uint8_video_accepts_pipeline_outputs():
    floats = np.linspace(0, 1, 5 * 8 * 8 * 3).reshape(5, 8, 8, 3)
    expected = (floats * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(to_uint8_video(floats), expected)
    np.testing.assert_array_equal(to_uint8_video(torch.from_numpy(floats).permute(0, 3, 1, 2)), expected)
    np.testing.assert_array_equal(to_uint8_video([PIL.Image.fromarray(f) for f in expected]), expected)
    with pytest.raises(ValueError, match="one video"):
        to_uint8_video(np.zeros((8, 8, 3)))


def test_draw_tracks_marks_the_path_and_current_point():
    video = np.zeros((5, 32, 32, 3), dtype=np.uint8)
    tracks = Tracks.cat([Tracks.from_polylines([[(4, 16), (28, 16)]], 5, 32, 32), Tracks.static([[16, 4]], 5, 32, 32)])
    drawn = draw_tracks(video, tracks)
    assert drawn.shape == video.shape and video.max() == 0  # input untouched
    last = drawn[-1].max(-1)
    assert last[16, 6:26].min() > 0  # the path so far, left to right
    assert last[16, 28 - 4 : 28 + 5].max() > 0 and drawn[0].max(-1)[16, 20:].max() == 0  # point moves with time
    assert drawn[0].max(-1)[4, 16 - 3 : 16 + 4].max() > 0  # the static anchor
    with pytest.raises(ValueError, match="tracks has 5 frames but the video has 4"):
        draw_tracks(video[:4], tracks)


def test_exports_write_files(tmp_path):
    video = np.random.default_rng(0).random((5, 32, 32, 3))
    tracks = Tracks.from_polylines([[(4, 4), (28, 28)]], 5, 32, 32)
    for name in ("v.mp4", "v.gif"):
        export_video(video, tmp_path / name, fps=4)
        assert (tmp_path / name).stat().st_size > 0
    export_overlay(video, tracks, tmp_path / "overlay.mp4", fps=4, scale=2)
    assert (tmp_path / "overlay.mp4").stat().st_size > 0
