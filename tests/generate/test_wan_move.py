"""wan_move_condition: Wan-Move's latent trajectory guidance, checked against hand-computed cells."""

import pytest
import torch

from videoai.generate.wan_move import wan_move_condition
from videoai.tokenize import Tracks

S = 8  # VAE spatial factor
F = 4  # VAE temporal factor
T, L, H, W = 9, 3, 4, 4  # pixel frames, latent frames, latent grid; frames are 32 x 32 pixels


def latent(batch=1, channels=2):
    return torch.arange(batch * channels * L * H * W, dtype=torch.float32).view(batch, channels, L, H, W) + 1.0


def tracks_from(points, visibility=None):
    """points: list over tracks of T (x, y) pairs -> Tracks (T, N) on a 32 x 32 frame."""
    pts = torch.tensor(points, dtype=torch.float32).transpose(0, 1)  # (N, T, 2) -> (T, N, 2)
    if visibility is None:
        visibility = torch.ones(pts.shape[:2], dtype=torch.bool)
    else:
        visibility = torch.tensor(visibility, dtype=torch.bool).transpose(0, 1)
    return Tracks(pts, visibility, 32, 32)


def path(frame0, frame4, frame8, filler=(100.0, 100.0)):
    """A track with given positions at pixel frames 0, 4, 8 and `filler` (far outside) everywhere else."""
    points = [filler] * T
    points[0], points[4], points[8] = frame0, frame4, frame8
    return points


def test_single_track_copies_frame0_cell_to_sampled_positions():
    cond = latent()
    # frame 0 at (x=3, y=10) -> cell (row 1, col 0); frame 4 at (20, 5) -> (0, 2); frame 8 at (31.9, 31.9) -> (3, 3)
    out = wan_move_condition(cond, tracks_from([path((3.0, 10.0), (20.0, 5.0), (31.9, 31.9))]), S)
    expected = cond.clone()
    expected[:, :, 1, 0, 2] = cond[:, :, 0, 1, 0]
    expected[:, :, 2, 3, 3] = cond[:, :, 0, 1, 0]
    assert torch.equal(out, expected)


def test_samples_pixel_frame_4k_not_an_average():
    cond = latent()
    # Frames 1-3 and 5-7 sit on cell (2, 2), inside; only frames 4 and 8 may be used.
    points = [(17.0, 17.0)] * T
    points[0], points[4], points[8] = (1.0, 1.0), (9.0, 1.0), (25.0, 1.0)  # cells (0,0) -> (0,1), (0,3)
    visibility = [[True] * T]
    visibility[0][4] = False  # invisible at the sampled frame 4, visible on its neighbours: no write in latent frame 1
    out = wan_move_condition(cond, tracks_from([points], visibility), S)
    expected = cond.clone()
    expected[:, :, 2, 0, 3] = cond[:, :, 0, 0, 0]
    assert torch.equal(out, expected)


def test_strength_blends_with_the_old_latent():
    cond = latent()
    tracks = tracks_from([path((3.0, 10.0), (20.0, 5.0), (31.9, 31.9))])
    out = wan_move_condition(cond, tracks, S, strength=0.25)
    expected = cond.clone()
    for frame, row, col in [(1, 0, 2), (2, 3, 3)]:
        expected[:, :, frame, row, col] = 0.75 * cond[:, :, frame, row, col] + 0.25 * cond[:, :, 0, 1, 0]
    torch.testing.assert_close(out, expected)
    assert torch.equal(wan_move_condition(cond, tracks, S, strength=0.0), cond)


def test_invisible_points_leave_their_frame_untouched():
    cond = latent()
    visibility = [[True] * T]
    visibility[0][8] = False
    out = wan_move_condition(cond, tracks_from([path((3.0, 10.0), (20.0, 5.0), (31.9, 31.9))], visibility), S)
    expected = cond.clone()
    expected[:, :, 1, 0, 2] = cond[:, :, 0, 1, 0]
    assert torch.equal(out, expected)


@pytest.mark.parametrize("outside", [(-0.1, 5.0), (5.0, -0.5), (32.0, 5.0), (5.0, 32.0), (40.0, 40.0)])
def test_points_outside_the_frame_are_skipped(outside):
    cond = latent()
    out = wan_move_condition(cond, tracks_from([path((3.0, 10.0), outside, (0.0, 0.0))]), S)
    expected = cond.clone()
    expected[:, :, 2, 0, 0] = cond[:, :, 0, 1, 0]  # frame 8 at (0, 0) is inside: the frame edge counts
    assert torch.equal(out, expected)


@pytest.mark.parametrize("first", ["invisible", (-1.0, 3.0), (3.0, 32.5)])
def test_track_with_invisible_or_outside_first_point_is_skipped(first):
    cond = latent()
    frame0 = (3.0, 10.0) if first == "invisible" else first
    visibility = [[True] * T]
    visibility[0][0] = first != "invisible"
    out = wan_move_condition(cond, tracks_from([path(frame0, (20.0, 5.0), (31.9, 31.9))], visibility), S)
    assert torch.equal(out, cond)


def test_two_tracks_on_one_cell_highest_index_wins_without_compounding():
    cond = latent()
    first = path((3.0, 10.0), (20.0, 5.0), (100.0, 100.0))  # source (1, 0) -> frame 1 cell (0, 2)
    second = path((30.0, 30.0), (23.0, 2.0), (100.0, 100.0))  # source (3, 3) -> the same frame 1 cell (0, 2)
    for order, winner in [((first, second), (3, 3)), ((second, first), (1, 0))]:
        out = wan_move_condition(cond, tracks_from(list(order)), S, strength=0.5)
        expected = cond.clone()
        expected[:, :, 1, 0, 2] = 0.5 * cond[:, :, 1, 0, 2] + 0.5 * cond[:, :, 0, winner[0], winner[1]]
        torch.testing.assert_close(out, expected)


def test_batch_uses_each_element_own_first_frame_and_input_is_kept():
    cond = latent(batch=2, channels=3)
    before = cond.clone()
    out = wan_move_condition(cond, tracks_from([path((3.0, 10.0), (20.0, 5.0), (100.0, 100.0))]), S)
    assert torch.equal(cond, before)
    for b in range(2):
        assert torch.equal(out[b, :, 1, 0, 2], cond[b, :, 0, 1, 0])


def test_bfloat16_strength_one_is_an_exact_copy():
    cond = torch.randn(1, 4, L, H, W).to(torch.bfloat16)
    out = wan_move_condition(cond, tracks_from([path((3.0, 10.0), (20.0, 5.0), (31.9, 31.9))]), S)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out[:, :, 1, 0, 2], cond[:, :, 0, 1, 0])
    assert torch.equal(out[:, :, 2, 3, 3], cond[:, :, 0, 1, 0])


def loop_reference(cond, tracks, strength):
    """Per-point loop of the same rule (tracks in index order, each write from the unedited latent)."""
    out = cond.clone()
    for n in range(tracks.num_tracks):
        cells = []
        for k in range(L):
            x, y = tracks.points[F * k, n].tolist()
            ok = bool(tracks.visibility[F * k, n]) and 0 <= x < tracks.width and 0 <= y < tracks.height
            cells.append((int(y // S), int(x // S)) if ok else None)
        if cells[0] is None:
            continue
        for k in range(1, L):
            if cells[k] is not None:
                row, col = cells[k]
                source = cond[:, :, 0, cells[0][0], cells[0][1]]
                out[:, :, k, row, col] = torch.lerp(cond[:, :, k, row, col], source, strength)
    return out


def test_matches_a_per_point_loop_on_random_crowded_tracks():
    generator = torch.Generator().manual_seed(0)
    cond = torch.randn(2, 3, L, H, W, generator=generator)
    points = torch.rand(T, 40, 2, generator=generator) * 40 - 4  # some outside, many collisions on 16 cells
    visibility = torch.rand(T, 40, generator=generator) > 0.2
    tracks = Tracks(points, visibility, 32, 32)
    for strength in (1.0, 0.3):
        torch.testing.assert_close(wan_move_condition(cond, tracks, S, strength=strength),
                                   loop_reference(cond, tracks, strength))


def test_no_tracks_or_single_latent_frame_returns_an_unchanged_copy():
    cond = latent()
    empty = Tracks(torch.zeros(T, 0, 2), torch.zeros(T, 0, dtype=torch.bool), 32, 32)
    out = wan_move_condition(cond, empty, S)
    assert torch.equal(out, cond) and out.data_ptr() != cond.data_ptr()
    one = latent()[:, :, :1]
    single = Tracks(torch.ones(1, 1, 2), torch.ones(1, 1, dtype=torch.bool), 32, 32)
    assert torch.equal(wan_move_condition(one, single, S), one)


def test_bad_inputs_raise_clear_errors():
    cond = latent()
    tracks = tracks_from([path((3.0, 10.0), (20.0, 5.0), (31.9, 31.9))])
    with pytest.raises(ValueError, match="track_strength"):
        wan_move_condition(cond, tracks, S, strength=-0.1)
    with pytest.raises(ValueError, match="track_strength"):
        wan_move_condition(cond, tracks, S, strength=float("nan"))
    with pytest.raises(ValueError, match="5 pixel frames.*got 9"):
        wan_move_condition(cond[:, :, :2], tracks, S)
    with pytest.raises(ValueError, match="latent grid"):
        wan_move_condition(cond, Tracks(tracks.points, tracks.visibility, 64, 32), S)
    with pytest.raises(ValueError, match="latent_condition"):
        wan_move_condition(cond[0], tracks, S)
    with pytest.raises(TypeError, match="tracks"):
        wan_move_condition(cond, tracks.points, S)
    with pytest.raises(ValueError, match="spatial_factor"):
        wan_move_condition(cond, tracks, 0)
