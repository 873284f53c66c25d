import pytest
import torch

from videoai.tokenize.rasterize import displacement_maps, gaussian_heatmaps, splat_features
from videoai.tokenize.tracks import Tracks


def _pixel(cell):
    """Pixel coordinate (64-px frame) of grid cell `cell` on an 8-cell grid (scale 8, pixel-centre convention)."""
    return 8 * cell + 3.5


def _grid_tracks(cells_per_track, visibility=None, size=8):
    """Tracks on a size x size grid given (T, N, 2) grid positions, stored in pixels of a 8*size frame."""
    grid = torch.as_tensor(cells_per_track, dtype=torch.float32)
    vis = torch.ones(grid.shape[:2], dtype=torch.bool) if visibility is None else torch.as_tensor(visibility)
    return Tracks(_pixel(grid), vis, 8 * size, 8 * size)


def test_heatmap_peak_at_grid_position_and_invisible_is_zero():
    tracks = _grid_tracks([[[2, 5], [6, 1]], [[3, 5], [6, 1]]], visibility=[[True, True], [True, False]])
    maps = gaussian_heatmaps(tracks, 8, 8, sigma=1.0)
    assert maps.shape == (2, 2, 8, 8) and maps.dtype == torch.float32
    peak = maps[1, 0].flatten().argmax()
    assert (peak // 8, peak % 8) == (5, 3) and maps[1, 0, 5, 3] == 1  # (row y, column x)
    assert maps[0, 1, 1, 6] == 1
    assert (maps[1, 1] == 0).all()


def test_heatmap_matches_a_direct_2d_gaussian():
    tracks = Tracks(torch.tensor([[[10.3, 20.8]]]), torch.ones(1, 1, dtype=torch.bool), 32, 32)
    maps = gaussian_heatmaps(tracks, 16, 16, sigma=1.5, truncate=None)  # grid = pixels / 2
    x, y = (10.3 + 0.5) / 2 - 0.5, (20.8 + 0.5) / 2 - 0.5
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    expected = torch.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * 1.5**2))
    assert torch.allclose(maps[0, 0], expected, atol=1e-6)
    truncated = gaussian_heatmaps(tracks, 16, 16, sigma=1.5)  # default: zero beyond 3 sigma per axis
    assert truncated[0, 0, 0, 0] == 0 and truncated[0, 0, 10, 5] == maps[0, 0, 10, 5]


def test_sparse_displacement_of_a_straight_line():
    # track 0 moves +1 cell in x per frame from (2, 3); track 1 is static at (6, 6); track 2 starts off the grid
    cells = [[[2 + t, 3], [6, 6], [-3, 0]] for t in range(4)]
    maps, counts = displacement_maps(_grid_tracks(cells), 8, 8, return_weights=True)
    assert maps.shape == (4, 2, 8, 8) and counts.shape == (4, 1, 8, 8)
    assert torch.allclose(maps[:, :, 3, 2], torch.tensor([[t, 0.0] for t in range(4)]))
    assert (maps[:, :, 6, 6] == 0).all() and (counts[:, 0, 6, 6] == 1).all()
    assert counts.sum() == 4 * 2  # the off-grid track is dropped
    written = torch.zeros(8, 8, dtype=torch.bool)
    written[3, 2] = True
    assert (maps[:, :, ~written] == 0).all()


def test_sparse_displacement_averages_tracks_in_one_cell_and_skips_invisible():
    cells = [[[4, 4], [4, 4]], [[5, 4], [4, 7]]]  # two tracks start in cell (4, 4)
    maps = displacement_maps(_grid_tracks(cells), 8, 8)
    assert torch.allclose(maps[1, :, 4, 4], torch.tensor([0.5, 1.5]))
    hidden = displacement_maps(_grid_tracks(cells, visibility=[[True, True], [True, False]]), 8, 8)
    assert torch.allclose(hidden[1, :, 4, 4], torch.tensor([1.0, 0.0]))


def test_dense_displacement_is_the_known_offset_under_the_gaussian():
    cells = [[[3, 3]], [[5, 2]]]  # offset (2, -1) cells at frame 1
    maps, weights = displacement_maps(_grid_tracks(cells), 8, 8, sigma=1.0, return_weights=True)
    footprint = weights[1, 0] > 0  # 7x7 square (truncate 3 sigma) around (3, 3), cropped by the grid
    assert footprint.sum() == 7 * 7 and weights[1, 0, 3, 3] == 1
    assert torch.allclose(maps[1][:, footprint], torch.tensor([[2.0], [-1.0]]).expand(2, 49))
    assert (maps[1][:, ~footprint] == 0).all() and (maps[0] == 0).all()
    hidden = displacement_maps(_grid_tracks(cells, visibility=[[True], [False]]), 8, 8, sigma=1.0)
    assert (hidden[1] == 0).all()


def test_splat_copies_frame0_feature_to_frame_t_position():
    channels = 3
    features = torch.arange(channels * 64, dtype=torch.float32).view(channels, 8, 8)  # distinct per cell
    cells = [[[1, 2], [6, 6]], [[5, 4], [6, 6]], [[7, 0], [6, 6]]]
    tracks = _grid_tracks(cells, visibility=[[True, True], [True, True], [True, False]])
    feats, weights = splat_features(features, tracks, sigma=0.5, truncate=1.0)
    assert feats.shape == (3, channels, 8, 8) and weights.shape == (3, 1, 8, 8)
    assert torch.allclose(feats[1, :, 4, 5], features[:, 2, 1])  # (row 2, col 1) at frame 0 -> (row 4, col 5)
    assert torch.allclose(feats[2, :, 0, 7], features[:, 2, 1])
    assert torch.allclose(feats[0, :, 2, 1], features[:, 2, 1]) and weights[1, 0, 4, 5] == 1
    assert torch.allclose(feats[1, :, 6, 6], features[:, 6, 6])
    assert feats[2, :, 6, 6].abs().sum() == 0 and weights[2, 0, 6, 6] == 0  # invisible at frame 2
    assert (weights[1, 0, 0, 0] == 0) and (feats[1, :, 0, 0] == 0).all()  # no track reaches


def test_splat_bilinear_sample_and_overlap_average():
    features = torch.zeros(1, 4, 4)
    features[0, 0, 1] = 4.0
    tracks = _grid_tracks([[[0.5, 0.0], [3, 3]], [[2, 2], [2, 2]]], size=4)  # halfway between (0,0)=0 and (0,1)=4
    feats, weights = splat_features(features, tracks, sigma=0.5, truncate=1.0)
    assert torch.allclose(feats[1, 0, 2, 2], torch.tensor(1.0))  # average of 2.0 and 0.0 where both land
    assert weights[1, 0, 2, 2] == 1  # 2 tracks' weight sum clipped to 1


def test_splat_batched_dtype_and_latent_size():
    features = torch.randn(2, 4, 60, 104, dtype=torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(5, 100, 2, generator=generator) * torch.tensor([832.0, 480.0])
    tracks = Tracks(points, torch.rand(5, 100, generator=generator) > 0.2, 832, 480)
    feats, weights = splat_features(features, tracks, sigma=1.0)
    assert feats.shape == (2, 5, 4, 60, 104) and weights.shape == (2, 5, 1, 60, 104)
    assert feats.dtype == torch.bfloat16 and torch.isfinite(feats.float()).all()
    single, _ = splat_features(features[1].float(), tracks, sigma=1.0)
    assert torch.allclose(feats[1].float(), single, atol=0.05, rtol=0.02)
    assert displacement_maps(tracks, 60, 104, sigma=1.0).shape == (5, 2, 60, 104)


def test_no_tracks_gives_zeros():
    tracks = Tracks.from_polylines([], 3, 64, 64)
    assert gaussian_heatmaps(tracks, 8, 8, 1.0).shape == (3, 0, 8, 8)
    assert (displacement_maps(tracks, 8, 8) == 0).all() and (displacement_maps(tracks, 8, 8, 1.0) == 0).all()
    feats, weights = splat_features(torch.ones(2, 8, 8), tracks, 1.0)
    assert (feats == 0).all() and (weights == 0).all()


def test_bad_inputs_raise():
    tracks = _grid_tracks([[[1, 1]]])
    with pytest.raises(TypeError, match="tracks must be"):
        gaussian_heatmaps(torch.zeros(1, 1, 2), 8, 8, 1.0)
    with pytest.raises(ValueError, match="sigma must be a positive"):
        gaussian_heatmaps(tracks, 8, 8, 0.0)
    with pytest.raises(ValueError, match="height must be a positive int"):
        displacement_maps(tracks, 0, 8)
    with pytest.raises(ValueError, match="truncate"):
        displacement_maps(tracks, 8, 8, sigma=1.0, truncate=-1)
    with pytest.raises(ValueError, match="features must be a float tensor"):
        splat_features(torch.zeros(8, 8), tracks, 1.0)
    with pytest.raises(ValueError, match="features must be a float tensor"):
        splat_features(torch.zeros(1, 8, 8, dtype=torch.long), tracks, 1.0)
