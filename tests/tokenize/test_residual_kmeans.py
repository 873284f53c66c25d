"""Tests for residual k-means: known answers, round trips, balance, determinism, persistence, bad inputs."""

import json

import pytest
import torch

from videoai.tokenize.residual_kmeans import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ResidualKMeans,
    _lloyd_cpu,
    _reseed_empty,
    assign,
    kmeans,
)



def blobs(num_rows=600, dim=8, num_blobs=12, spread=0.2, seed=0, weights=None):
    """Seeded Gaussian mixture: (x (N, D), centers (C, D), component (N,))."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_blobs, dim, generator=g) * 4  # (C, D)
    probs = torch.ones(num_blobs) if weights is None else torch.tensor(weights, dtype=torch.float32)
    component = torch.multinomial(probs, num_rows, replacement=True, generator=g)  # (N,)
    return centers[component] + spread * torch.randn(num_rows, dim, generator=g), centers, component


def test_kmeans_recovers_separated_blob_centers():
    x, centers, _ = blobs(num_blobs=6, spread=0.05)
    found = kmeans(x, 6, iters=10, seed=3)  # (6, D)
    nearest = torch.cdist(centers, found).min(1).values  # each true center has a centroid next to it
    assert found.shape == (6, 8) and found.dtype == torch.float32
    assert nearest.max() < 0.1


def test_bounded_cpu_lloyd_matches_plain_lloyd():
    x, _, _ = blobs(num_rows=3000, dim=16, num_blobs=40, spread=1.0)
    init = x[torch.randperm(3000, generator=torch.Generator().manual_seed(0))[:24]]  # (24, D)
    centroids, labels = _lloyd_cpu(x, x.square().sum(1), init.clone(), iters=15, return_labels=True)
    reference = init.clone()
    for _ in range(15):  # textbook Lloyd: exact distances, every row every iteration
        nearest = torch.cdist(x, reference).argmin(1)
        reference = torch.stack([x[nearest == k].mean(0) for k in range(24)])
    assert torch.allclose(centroids, reference, atol=1e-4)
    assert torch.equal(labels, torch.cdist(x, reference).argmin(1))


def test_plain_loop_for_other_devices_matches_cpu_bounds(monkeypatch):
    x, _, _ = blobs(num_rows=1500, dim=16, num_blobs=30, spread=1.0)
    bounded = ResidualKMeans(2, 16, iters=8, seed=4).fit(x)
    monkeypatch.setattr("videoai.tokenize.residual_kmeans._CPU_BOUNDS", False)  # the loop GPUs run
    plain = ResidualKMeans(2, 16, iters=8, seed=4).fit(x)
    assert torch.allclose(plain.codebooks, bounded.codebooks, atol=1e-4)
    assert torch.equal(plain.encode(x), bounded.encode(x))


def test_minibatch_kmeans_fits_blobs():
    x, centers, _ = blobs(num_blobs=6, spread=0.05)
    found = kmeans(x, 6, iters=40, batch_size=128, seed=3)
    assert torch.cdist(centers, found).min(1).values.max() < 0.2


def test_assign_matches_brute_force_cdist():
    x, _, _ = blobs()
    centroids = kmeans(x, 16, iters=3)
    assert torch.equal(assign(x, centroids), torch.cdist(x, centroids).argmin(1))


def test_balanced_kmeans_gives_near_equal_cluster_sizes_on_skewed_data():
    x, _, _ = blobs(num_rows=500, num_blobs=4, weights=[0.7, 0.2, 0.05, 0.05])
    plain = torch.bincount(assign(x, kmeans(x, 8, iters=8)), minlength=8)
    centroids = kmeans(x, 8, iters=8, balanced=True)
    sizes = torch.bincount(assign(x, centroids, balanced=True), minlength=8)  # (8,)
    assert sizes.sum() == 500 and sizes.max() - sizes.min() <= 1  # 500 / 8 -> sizes 62 or 63
    assert plain.max() - plain.min() > 10  # the unbalanced fit really is skewed on this data


def test_reseed_moves_empty_clusters_to_worst_fit_rows():
    x = torch.arange(10, dtype=torch.float32).unsqueeze(1)  # (10, 1)
    centroids = torch.tensor([[0.0], [100.0], [1.0], [200.0]])
    sq_dists = torch.tensor([0, 0, 1, 4, 9, 16, 25, 36, 49, 64], dtype=torch.float32)
    empty = torch.tensor([False, True, False, True])
    out = _reseed_empty(centroids, empty, x, sq_dists)
    assert out[:, 0].tolist() == [0.0, 9.0, 1.0, 8.0]  # the two empties get the two worst rows


def test_fewer_distinct_rows_than_clusters_stays_finite():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).repeat(10, 1)  # 20 rows, 2 distinct
    model = ResidualKMeans(2, 8, iters=4).fit(x)
    assert torch.isfinite(model.codebooks).all()
    assert torch.allclose(model.decode(model.encode(x)), x, atol=1e-5)


def test_round_trip_error_decreases_with_levels_and_codes_in_range():
    x, _, _ = blobs(num_rows=800, dim=16, num_blobs=40, spread=0.5)
    model = ResidualKMeans(levels=3, codebook_size=16, iters=10).fit(x)
    codes = model.encode(x)  # (N, 3)
    assert codes.shape == (800, 3) and codes.dtype == torch.int64
    assert codes.min() >= 0 and codes.max() < 16
    errors = model.quantization_error(x)  # (3,)
    assert errors.shape == (3,)
    assert errors[0] < x.var(0).mean() and errors[1] < errors[0] and errors[2] < errors[1]
    full = (model.decode(codes) - x).square().mean()
    coarse = (model.decode(codes[:, :1]) - x).square().mean()
    assert torch.allclose(full, errors[2], rtol=1e-4) and torch.allclose(coarse, errors[0], rtol=1e-4)


def test_fit_is_deterministic_given_seed():
    x, _, _ = blobs()
    first = ResidualKMeans(2, 8, iters=5, seed=7).fit(x).codebooks
    again = ResidualKMeans(2, 8, iters=5, seed=7).fit(x).codebooks
    other = ResidualKMeans(2, 8, iters=5, seed=8).fit(x).codebooks
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_balanced_model_encodes_training_set_balanced_per_level():
    x, _, _ = blobs(num_rows=320, num_blobs=3, weights=[0.8, 0.1, 0.1])
    model = ResidualKMeans(2, 8, balanced=True, iters=5).fit(x)
    codes = model.encode(x)  # balanced by default: the config's setting
    for level in range(2):
        assert torch.bincount(codes[:, level], minlength=8).tolist() == [40] * 8
    free = model.encode(x, balanced=False)  # nearest-centroid codes for new items
    assert free.shape == codes.shape


def test_half_precision_input_is_fitted_in_float32():
    x, _, _ = blobs()
    model = ResidualKMeans(1, 8, iters=3).fit(x.half())
    assert model.codebooks.dtype == torch.float32 and model.encode(x.bfloat16()).shape == (600, 1)


def test_save_and_load_round_trip(tmp_path):
    x, _, _ = blobs()
    model = ResidualKMeans(2, 8, balanced=False, iters=4, seed=5).fit(x)
    model.save_pretrained(tmp_path / "rq")
    assert sorted(p.name for p in (tmp_path / "rq").iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    loaded = ResidualKMeans.from_pretrained(tmp_path / "rq")
    assert loaded.config == model.config
    assert torch.equal(loaded.codebooks, model.codebooks)
    assert torch.equal(loaded.encode(x), model.encode(x))


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ResidualKMeans.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        ResidualKMeans.from_pretrained(tmp_path / "empty")
    model = ResidualKMeans(1, 4, iters=2).fit(blobs()[0])
    model.save_pretrained(tmp_path / "rq")
    (tmp_path / "rq" / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        ResidualKMeans.from_pretrained(tmp_path / "rq")
    model.save_pretrained(tmp_path / "bad")
    config = json.loads((tmp_path / "bad" / CONFIG_NAME).read_text())
    (tmp_path / "bad" / CONFIG_NAME).write_text(json.dumps(config | {"codebook_size": 5}))
    with pytest.raises(ValueError, match="shape"):
        ResidualKMeans.from_pretrained(tmp_path / "bad")


def test_unfitted_model_raises():
    model = ResidualKMeans(2, 4)
    with pytest.raises(RuntimeError, match="fit"):
        model.encode(torch.randn(5, 3))
    with pytest.raises(RuntimeError, match="fit"):
        model.save_pretrained("unused")


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.randn(50), "2-D"),
        (torch.randint(0, 5, (50, 4)), "floating-point"),
        (torch.randn(3, 4), "at least 8 rows"),
        (torch.tensor([[float("nan")] * 4] * 50), "NaN"),
        ([[0.0] * 4] * 50, "torch.Tensor"),
    ],
)
def test_bad_fit_inputs(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ResidualKMeans(2, 8).fit(bad)


def test_bad_constructor_and_codes():
    with pytest.raises(ValueError, match="codebook_size"):
        ResidualKMeans(2, 0)
    with pytest.raises(ValueError, match="levels"):
        ResidualKMeans(2.5, 8)
    x, _, _ = blobs()
    model = ResidualKMeans(2, 8, iters=2).fit(x)
    with pytest.raises(ValueError, match="columns"):
        model.encode(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        model.decode(torch.tensor([[0, 8]]))
    with pytest.raises(ValueError, match="1..2 columns"):
        model.decode(torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer"):
        model.decode(torch.zeros(4, 2))
