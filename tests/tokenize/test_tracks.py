import json
import math

import pytest
import torch

from videoai.tokenize.tracks import Tracks


def _arc_position_on_l_path(points):
    """Arc length along the path (0,0) -> (30,0) -> (30,10) of points lying on it."""
    x, y = points.unbind(-1)
    return torch.where(y.abs() < 1e-6, x, 30 + y)


def test_from_polylines_is_arc_length_uniform_and_keeps_endpoints():
    tracks = Tracks.from_polylines([[(0, 0), (30, 0), (30, 10)]], num_frames=9, width=64, height=64)
    assert tracks.points.shape == (9, 1, 2) and tracks.points.dtype == torch.float32
    assert torch.allclose(_arc_position_on_l_path(tracks.points[:, 0]), torch.linspace(0, 40, 9), atol=1e-5)
    assert tracks.points[0, 0].tolist() == [0, 0] and tracks.points[-1, 0].tolist() == [30, 10]
    assert tracks.visibility.all()


def test_irregular_vertices_on_a_line_give_equal_steps():
    line = [(2, 1), (2.5, 2), (3, 3), (6, 9), (6.1, 9.2), (12, 21)]
    tracks = Tracks.from_polylines([line], num_frames=7, width=32, height=32)
    steps = (tracks.points[1:, 0] - tracks.points[:-1, 0]).norm(dim=-1)
    assert torch.allclose(steps, steps.mean().expand_as(steps), atol=1e-4)
    assert torch.allclose(tracks.points[[0, -1], 0], torch.tensor([[2.0, 1.0], [12.0, 21.0]]))


def test_polylines_of_different_lengths_and_static_cases():
    polylines = [[(0, 0), (8, 0)], [(5, 6)], [(3, 3), (3, 3), (3, 3)], [(0, 0), (0, 0), (0, 4), (0, 4), (4, 4)]]
    tracks = Tracks.from_polylines(polylines, num_frames=5, width=16, height=16)
    assert tracks.num_tracks == 4 and tracks.num_frames == 5
    assert torch.allclose(tracks.points[:, 0, 0], torch.tensor([0.0, 2, 4, 6, 8]))
    assert (tracks.points[:, 1] == torch.tensor([5.0, 6.0])).all()  # single point: static
    assert (tracks.points[:, 2] == torch.tensor([3.0, 3.0])).all()  # zero-length path: static
    # duplicate vertices do not change the arc-length parametrisation
    assert torch.allclose(tracks.points[:, 3], torch.tensor([[0.0, 0], [0, 2], [0, 4], [2, 4], [4, 4]]))


def test_per_vertex_visibility_takes_nearest_vertex():
    tracks = Tracks.from_polylines(
        [[(0, 0), (10, 0), (20, 0)]], 5, 32, 32, visibility=[[True, False, True]]
    )  # samples at arc 0, 5, 10, 15, 20 -> nearest vertices 0, 1 (tie), 1, 2 (tie), 2
    assert tracks.visibility[:, 0].tolist() == [True, False, False, True, True]


def test_static_and_cat():
    anchors = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    static = Tracks.static(anchors, num_frames=4, width=8, height=8)
    assert static.points.shape == (4, 2, 2) and (static.points == anchors).all() and static.visibility.all()
    moving = Tracks.from_polylines([[(0, 0), (3, 0)]], 4, 8, 8)
    both = Tracks.cat([static, moving])
    assert both.num_tracks == 3 and torch.equal(both.points[:, 2], moving.points[:, 0])
    with pytest.raises(ValueError, match="frames"):
        Tracks.cat([static, Tracks.static(anchors, 5, 8, 8)])
    with pytest.raises(ValueError, match="scale_to"):
        Tracks.cat([static, Tracks.static(anchors, 4, 16, 8)])


def test_scale_to_pixel_centre_convention_and_round_trip():
    tracks = Tracks.from_polylines([[(-0.5, -0.5), (63.5, 31.5)], [(3.5, 7.0)]], 3, 64, 32)
    small = tracks.scale_to(8, 4)
    assert (small.width, small.height) == (8, 4)
    # frame edges stay on frame edges; a point on pixel centre 3.5 of 64 maps to (3.5 + 0.5) / 8 - 0.5
    assert torch.allclose(small.points[0, 0], torch.tensor([-0.5, -0.5]))
    assert torch.allclose(small.points[-1, 0], torch.tensor([7.5, 3.5]))
    assert torch.allclose(small.points[0, 1], torch.tensor([(3.5 + 0.5) / 8 - 0.5, (7.0 + 0.5) / 8 - 0.5]))
    assert torch.allclose(small.scale_to(64, 32).points, tracks.points, atol=1e-5)
    assert small.in_frame().all()


def test_resample_in_time():
    tracks = Tracks.from_polylines([[(0, 0), (12, 0)]], 4, 16, 16)  # x = 0, 4, 8, 12
    finer = tracks.resample(7)
    assert torch.allclose(finer.points[:, 0, 0], torch.arange(7.0) * 2)
    assert torch.allclose(finer.resample(4).points, tracks.points)
    assert tracks.resample(1).points[0, 0].tolist() == [0, 0]


def test_to_device_keeps_contents():
    tracks = Tracks.static([[1.0, 2.0]], 2, 8, 8).to("cpu")
    assert tracks.device.type == "cpu" and tracks.points[1, 0].tolist() == [1, 2]


def test_out_of_frame_keep_clip_error():
    path = [(-4.0, 2.0), (6.0, 2.0)]  # starts left of an 8x8 frame
    kept = Tracks.from_polylines([path], 3, 8, 8)
    assert kept.points[0, 0, 0] == -4 and kept.visibility.all()
    assert kept.in_frame()[:, 0].tolist() == [False, True, True]
    clipped = Tracks.from_polylines([path], 3, 8, 8, out_of_frame="clip")
    assert clipped.points[0, 0].tolist() == [-0.5, 2.0] and clipped.visibility[:, 0].tolist() == [False, True, True]
    assert torch.equal(kept.clip_to_frame().points, clipped.points)
    with pytest.raises(ValueError, match="track 0 at frame 0.*outside the 8x8 frame"):
        Tracks.from_polylines([path], 3, 8, 8, out_of_frame="error")
    with pytest.raises(ValueError, match="out_of_frame"):
        Tracks.static([[1, 1]], 3, 8, 8, out_of_frame="wrap")
    assert Tracks.static([[7.5, -0.5]], 2, 8, 8, out_of_frame="error").visibility.all()  # edges are in frame


def test_constructor_validation():
    good_points, good_vis = torch.zeros(3, 2, 2), torch.ones(3, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="points must be finite"):
        Tracks(torch.tensor([[[0.0, math.nan]]]), torch.ones(1, 1, dtype=torch.bool), 8, 8)
    with pytest.raises(ValueError, match=r"points must have shape \(T, N, 2\)"):
        Tracks(torch.zeros(3, 2, 3), good_vis, 8, 8)
    with pytest.raises(TypeError, match="points must be a float tensor"):
        Tracks(good_points.bool(), good_vis, 8, 8)
    with pytest.raises(TypeError, match="points must be a torch.Tensor"):
        Tracks(good_points.tolist(), good_vis, 8, 8)
    with pytest.raises(TypeError, match="visibility must be a bool tensor"):
        Tracks(good_points, good_vis.float(), 8, 8)
    with pytest.raises(ValueError, match="visibility must have shape"):
        Tracks(good_points, good_vis[:, :1], 8, 8)
    with pytest.raises(ValueError, match="width must be a positive int"):
        Tracks(good_points, good_vis, 0, 8)
    assert Tracks(good_points.double(), good_vis, 8, 8).points.dtype == torch.float32


def test_classmethod_validation():
    with pytest.raises(ValueError, match=r"polylines\[1\] must be finite"):
        Tracks.from_polylines([[(0, 0)], [(0, 0), (math.inf, 1)]], 4, 8, 8)
    with pytest.raises(ValueError, match=r"polylines\[0\] must be a \(K, 2\)"):
        Tracks.from_polylines([[0, 1, 2]], 4, 8, 8)
    with pytest.raises(TypeError, match=r"polylines\[0\] must be an array of numbers"):
        Tracks.from_polylines([[("a", "b")]], 4, 8, 8)
    with pytest.raises(ValueError, match="num_frames must be a positive int"):
        Tracks.from_polylines([[(0, 0)]], 0, 8, 8)
    with pytest.raises(ValueError, match=r"visibility\[0\] must be 2 bools"):
        Tracks.from_polylines([[(0, 0), (1, 1)]], 4, 8, 8, visibility=[[True]])
    with pytest.raises(ValueError, match=r"points must have shape \(N, 2\)"):
        Tracks.static([1.0, 2.0], 3, 8, 8)
    with pytest.raises(ValueError, match="points must be finite"):
        Tracks.static([[math.nan, 2.0]], 3, 8, 8)
    assert Tracks.from_polylines([], 3, 8, 8).points.shape == (3, 0, 2)


def test_json_round_trip_and_drawn_paths(tmp_path):
    tracks = Tracks.from_polylines([[(0, 0), (9, 3)], [(4, 4)]], 5, 16, 8, visibility=[[True, False], [True]])
    path = tmp_path / "tracks.json"
    tracks.to_json(path)
    loaded = Tracks.from_json(path)  # one point per frame: taken as timed tracks
    assert torch.equal(loaded.points, tracks.points) and torch.equal(loaded.visibility, tracks.visibility)
    assert (loaded.width, loaded.height) == (16, 8)
    # the size args rescale from the JSON's own frame size
    assert torch.allclose(Tracks.from_json(path, width=32, height=16).points, tracks.scale_to(32, 16).points)

    drawn = tmp_path / "drawn.json"
    drawn.write_text(json.dumps([[[0, 0], [10, 0]], [[2, 2]]]))  # bare list of polylines: needs a size
    resampled = Tracks.from_json(drawn, num_frames=3, width=16, height=16)
    assert torch.allclose(resampled.points[:, 0, 0], torch.tensor([0.0, 5.0, 10.0]))
    with pytest.raises(ValueError, match="width"):
        Tracks.from_json(drawn, num_frames=3)
    with pytest.raises(ValueError, match="same length"):
        Tracks.from_json(drawn, width=16, height=16)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="could not read tracks JSON"):
        Tracks.from_json(bad)
