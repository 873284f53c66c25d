"""MotionSketch: path editing, exact undo, conversion to Tracks, and the preview drawing."""

import numpy as np
import pytest

from videoai.app.state import MAX_UNDO, MotionSketch, canvas_to_image, display_scale, draw_sketch


def test_vertices_extend_the_current_path_until_new_path():
    sketch = MotionSketch().add_vertex(1, 2).add_vertex(3, 4)
    assert sketch.paths == (((1.0, 2.0), (3.0, 4.0)),)
    sketch = sketch.new_path().add_vertex(5, 6).add_vertex(7, 8)
    assert sketch.paths == (((1.0, 2.0), (3.0, 4.0)), ((5.0, 6.0), (7.0, 8.0)))
    assert sketch.num_tracks == 2


def test_anchors_do_not_interrupt_the_open_path():
    sketch = MotionSketch().add_vertex(0, 0).add_anchor(9, 9).add_vertex(4, 0)
    assert sketch.paths == (((0.0, 0.0), (4.0, 0.0)),)
    assert sketch.anchors == ((9.0, 9.0),)
    assert sketch.polylines() == [[(0.0, 0.0), (4.0, 0.0)], [(9.0, 9.0)]]


def test_undo_steps_back_through_every_edit_exactly():
    states = [MotionSketch()]
    for edit in (lambda s: s.add_vertex(1, 1), lambda s: s.add_anchor(2, 2), lambda s: s.add_vertex(3, 3),
                 lambda s: s.new_path(), lambda s: s.add_vertex(4, 4), lambda s: s.clear()):
        states.append(edit(states[-1]))
    assert states[-1].is_empty
    sketch = states[-1]
    for expected in reversed(states[:-1]):
        sketch = sketch.undo()
        assert (sketch.paths, sketch.anchors, sketch.path_open) == (expected.paths, expected.anchors,
                                                                    expected.path_open)
    assert sketch.undo() == sketch  # nothing left to undo
    # after undoing "new path" the next vertex extends the old path again
    reopened = states[4].undo().add_vertex(5, 5)
    assert reopened.paths == (((1.0, 1.0), (3.0, 3.0), (5.0, 5.0)),)


def test_no_op_edits_add_no_history_and_history_is_bounded():
    sketch = MotionSketch()
    assert sketch.new_path() is sketch and sketch.clear() is sketch
    for i in range(MAX_UNDO + 10):
        sketch = sketch.add_anchor(i, i)
    assert len(sketch.history) == MAX_UNDO
    for _ in range(MAX_UNDO + 5):
        sketch = sketch.undo()
    assert len(sketch.anchors) == 10


def test_to_tracks_resamples_paths_and_holds_anchors():
    sketch = MotionSketch().add_vertex(0, 10).add_vertex(8, 10).add_anchor(3, 4)
    tracks = sketch.to_tracks(num_frames=5, width=16, height=16)
    assert tracks.points.shape == (5, 2, 2)
    np.testing.assert_allclose(tracks.points[:, 0, 0].numpy(), [0, 2, 4, 6, 8])
    np.testing.assert_allclose(tracks.points[:, 1].numpy(), np.tile([[3.0, 4.0]], (5, 1)))


@pytest.mark.parametrize("x, y, error", [("1", 2, TypeError), (True, 2, TypeError), (1, float("nan"), ValueError)])
def test_bad_points_are_rejected(x, y, error):
    with pytest.raises(error, match="x|y"):
        MotionSketch().add_vertex(x, y)


def test_canvas_coordinates_round_trip_through_the_display_scale():
    assert display_scale(64, 64) == 8 and display_scale(600, 800) == 1 and display_scale(100, 200) == 2
    assert display_scale(3000, 4000) == 1 / 4 and display_scale(1025, 10) == 1 / 2
    for scale in (8, 1, 1 / 4):
        for x, y in [(0, 0), (10, 63), (31.5, 7.25)]:
            canvas = ((x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5)
            np.testing.assert_allclose(canvas_to_image(*canvas, scale), (x, y))
    # a click anywhere inside a canvas block lands inside that image pixel
    assert round(canvas_to_image(0, 0, 8)[0]) == 0 and round(canvas_to_image(7, 7, 8)[1]) == 0
    # a downscaled canvas pixel maps to the centre of the image pixels it averages
    assert canvas_to_image(0, 0, 1 / 4) == (1.5, 1.5)


def test_draw_sketch_marks_paths_and_anchors_only_where_drawn():
    image = np.full((16, 16, 3), 50, np.uint8)
    empty = draw_sketch(image, MotionSketch(), scale=4)
    assert empty.shape == (64, 64, 3) and (empty == 50).all()
    sketch = MotionSketch().add_vertex(2, 2).add_vertex(2, 13).add_anchor(12, 12)
    canvas = draw_sketch(image, sketch, scale=4)
    changed = (canvas != 50).any(-1)  # (64, 64)
    assert changed[2 * 4 + 1, 2 * 4 + 1] and changed[30, 2 * 4 + 1] and changed[13 * 4 + 1, 2 * 4 + 1]
    assert changed[12 * 4 + 1 - 4, 12 * 4 + 1]  # the anchor's square outline
    assert not changed[:, 26:40].any()  # nothing between the path and the anchor's column
    with pytest.raises(ValueError, match="image"):
        draw_sketch(image.astype(np.float32), sketch)
    with pytest.raises(ValueError, match="scale"):
        draw_sketch(image, sketch, scale=1.5)


def test_draw_sketch_shrinks_large_images():
    image = np.zeros((2000, 3000, 3), np.uint8)
    sketch = MotionSketch().add_vertex(1500, 1000).add_vertex(2900, 1000)
    canvas = draw_sketch(image, sketch, scale=display_scale(2000, 3000))  # 1/3
    assert canvas.shape == (667, 1000, 3)
    assert canvas[333, 500:960].any(-1).all()  # the path runs from x = 500 to 966 on the canvas
    assert not canvas[100].any()
