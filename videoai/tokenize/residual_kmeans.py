"""Residual k-means (RQ-KMeans) on torch: k-means++ init, mini-batch and balanced (OneRec-style) options.

Distances are one GEMM per bounded block (||x||^2 - 2 x.c + ||c||^2), centroid sums use index_add_, and nothing
loops over points or clusters in Python. k-means++ seeds from a random subsample (16 * K rows by default) since
its K sequential steps over all N rows would cost more than the Lloyd iterations. On CPU the full-batch Lloyd
loop also uses Hamerly's bounds to skip rows whose assignment cannot change (same result, fewer distances).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from videoai.files import atomic_write

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# Rows per distance block: a (rows, K) float32 block stays near this many bytes whatever N is.
_BLOCK_BYTES = 16 * 2**20
# Full-batch Lloyd on CPU uses Hamerly's bounds (_lloyd_cpu); other devices run the sync-free plain loop.
_CPU_BOUNDS = True


def _check_embeddings(
    x: object, name: str, *, min_rows: int = 1, dim: int | None = None, device: torch.device | None = None
) -> None:
    """Raise a clear error unless x is a finite 2-D float tensor with enough rows (and the expected width/device)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {x.shape[0]}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns (the fitted dim), got {x.shape[1]}")
    if device is not None and x.device != device:
        raise ValueError(f"{name} must be on {device} (where the centroids are), got {x.device}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf values")


def _check_positive_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _rows_per_block(num_clusters: int) -> int:
    return max(256, _BLOCK_BYTES // (4 * num_clusters))


def _nearest(
    x: torch.Tensor,
    centroids: torch.Tensor,
    x_sq: torch.Tensor,
    *,
    closed: torch.Tensor | None = None,
    hint: torch.Tensor | None = None,
    with_second: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Nearest (open) centroid per row in bounded-memory blocks.

    Returns labels (N,) int64, squared distance to it (N,), and to the second nearest (N,) if with_second.
    hint (N,): previous labels (CPU only; costs a host sync per block). An index-returning min over (rows, K)
    costs ~10x a value-only amin on CPU, so only rows whose hinted centroid is no longer nearest pay the argmin.
    """
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the argmin only needs the last two terms, one GEMM per block.
    c_sq = centroids.square().sum(1)  # (K,)
    if closed is not None:
        c_sq = c_sq.masked_fill(closed, float("inf"))
    num_rows = x.shape[0]
    labels = torch.empty(num_rows, dtype=torch.int64, device=x.device)
    sq_dists = torch.empty(num_rows, dtype=x.dtype, device=x.device)
    second = torch.empty(num_rows, dtype=x.dtype, device=x.device) if with_second else None
    step = _rows_per_block(centroids.shape[0])
    for start in range(0, num_rows, step):
        rows = slice(start, start + step)
        block = torch.addmm(c_sq, x[rows], centroids.T, alpha=-2.0)  # (rows, K)
        if hint is None:
            torch.min(block, dim=1, out=(sq_dists[rows], labels[rows]))
        else:
            torch.amin(block, dim=1, out=sq_dists[rows])
            guess = hint[rows].clone()  # (rows,)
            changed = torch.nonzero(block.gather(1, guess.unsqueeze(1)).squeeze(1) > sq_dists[rows]).squeeze(1)
            guess[changed] = block[changed].argmin(1)
            labels[rows] = guess
        if second is not None:
            block.scatter_(1, labels[rows].unsqueeze(1), float("inf"))  # hide the nearest to read the second
            torch.amin(block, dim=1, out=second[rows])
    sq_dists = sq_dists.add_(x_sq).clamp_(min=0.0)
    return labels, sq_dists, None if second is None else second.add_(x_sq).clamp_(min=0.0)


def _balanced_nearest(
    x: torch.Tensor, centroids: torch.Tensor, x_sq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Capacity-constrained assignment: every cluster gets floor(N/K) or floor(N/K)+1 rows.

    Greedy in rounds (vectorised, one host sync per round): each unassigned row proposes to its nearest cluster
    that still has room; a cluster keeps its closest proposers up to its remaining room and is closed once full.
    Every round closes each over-subscribed cluster, so it ends in at most K+1 rounds (usually a handful).
    """
    num_rows, num_clusters = x.shape[0], centroids.shape[0]
    device = x.device
    labels = torch.empty(num_rows, dtype=torch.int64, device=device)
    sq_dists = torch.empty(num_rows, dtype=x.dtype, device=device)
    room = torch.full((num_clusters,), num_rows // num_clusters, dtype=torch.int64, device=device)  # (K,)
    pending = torch.arange(num_rows, device=device)
    while pending.numel() > 0:
        if not bool((room > 0).any()):
            room += 1  # the last N mod K rows: at most one more per cluster
        proposal, dist, _ = _nearest(x[pending], centroids, x_sq[pending], closed=room == 0)  # (P,), (P,)
        # Order proposals by (cluster, distance): sort by distance, then stably by cluster.
        order = torch.argsort(dist)
        order = order[torch.argsort(proposal[order], stable=True)]
        cluster = proposal[order]
        counts = torch.bincount(proposal, minlength=num_clusters)  # (K,)
        first = counts.cumsum(0) - counts
        rank = torch.arange(order.numel(), device=device) - first[cluster]
        accept = rank < room[cluster]
        taken = order[accept]
        labels[pending[taken]] = proposal[taken]
        sq_dists[pending[taken]] = dist[taken]
        room -= torch.bincount(proposal[taken], minlength=num_clusters)
        pending = pending[order[~accept]]
    return labels, sq_dists


def _kmeans_plus_plus(x: torch.Tensor, num_clusters: int, sample_size: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (D^2 sampling) on a random subsample of sample_size rows: (K, D)."""
    # k-means++ is K sequential steps over the data; a subsample keeps it cheap at a small cost in seed quality.
    if sample_size < x.shape[0]:
        x = x[torch.randperm(x.shape[0], generator=generator, device=x.device)[:sample_size]]
    x_sq = x.square().sum(1)  # (n,)
    centroids = x.new_empty(num_clusters, x.shape[1])  # (K, D)
    pick = torch.randint(x.shape[0], (1,), generator=generator, device=x.device)
    centroids[0:1] = x[pick]
    d2 = (x_sq - 2.0 * (x @ centroids[0]) + x_sq[pick]).clamp_(min=0.0)  # (n,)
    ones = torch.ones_like(d2)
    for k in range(1, num_clusters):
        # Fewer distinct rows than K makes every weight 0: fall back to uniform (duplicates, re-seeded later).
        weights = torch.where(d2.sum() > 0, d2, ones)
        pick = torch.multinomial(weights, 1, generator=generator)  # (1,)
        centroids[k : k + 1] = x[pick]
        torch.minimum(d2, (x_sq - 2.0 * (x @ centroids[k]) + x_sq[pick]).clamp_(min=0.0), out=d2)
    return centroids


def _reseed_empty(
    centroids: torch.Tensor, empty: torch.Tensor, x: torch.Tensor, sq_dists: torch.Tensor
) -> torch.Tensor:
    """Move empty clusters onto the rows worst served by the current centroids, without a host sync."""
    num_clusters = centroids.shape[0]
    worst = torch.topk(sq_dists, k=min(num_clusters, sq_dists.shape[0])).indices  # (<=K,)
    slot = (empty.cumsum(0) - 1).clamp_(min=0, max=worst.shape[0] - 1)  # i-th empty cluster -> i-th worst row
    return torch.where(empty.unsqueeze(1), x[worst[slot]], centroids)


def _mean_update(
    x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, sq_dists: torch.Tensor
) -> torch.Tensor:
    """Lloyd update (K, D): each centroid moves to the mean of its rows; empty ones are re-seeded."""
    sums = torch.zeros_like(centroids).index_add_(0, labels, x)  # (K, D)
    counts = torch.bincount(labels, minlength=centroids.shape[0]).to(x.dtype)  # (K,)
    means = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp(min=1).unsqueeze(1), centroids)
    return _reseed_empty(means, counts == 0, x, sq_dists)


def _lloyd_cpu(
    x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, iters: int, return_labels: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Full-batch Lloyd with Hamerly's bounds (2010): the same iterations as plain Lloyd, but rows whose nearest
    centroid provably cannot have changed skip the distance GEMM, and cluster sums are updated only for rows
    that switched. Compacting rows needs host syncs, so this is the CPU path (written here: neither torch nor
    faiss offers bounded Lloyd on tensors)."""
    num_rows, num_clusters = x.shape[0], centroids.shape[0]
    labels, sq_dists, second_sq = _nearest(x, centroids, x_sq, with_second=True)
    upper, lower = sq_dists.sqrt(), second_sq.sqrt()  # (N,) bounds on the distance to own / any other centroid
    sums = torch.zeros_like(centroids).index_add_(0, labels, x)  # (K, D) running per-cluster sums
    counts = torch.bincount(labels, minlength=num_clusters).to(x.dtype)  # (K,)
    for it in range(iters):
        means = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp(min=1).unsqueeze(1), centroids)
        new = _reseed_empty(means, counts == 0, x, upper.square())
        moved = (new - centroids).norm(dim=1)  # (K,)
        centroids = new
        if it == iters - 1 and not return_labels:
            break
        # After the move the own centroid is at most moved[label] farther, any other at most its move closer.
        top_moves, top_ids = torch.topk(moved, k=min(2, num_clusters))
        other_move = torch.where(labels == top_ids[0], top_moves[-1], top_moves[0]) if num_clusters > 1 else 0.0
        upper += moved[labels]
        lower -= other_move
        gaps = torch.cdist(centroids, centroids).fill_diagonal_(float("inf"))  # (K, K)
        bound = torch.maximum(lower, 0.5 * gaps.amin(1)[labels])  # no other centroid can be nearer than this
        rows = torch.nonzero(upper > bound).squeeze(1)  # host sync: CPU path only
        # A row's GEMM costs ~4x copying it out (measured on CPU), so gather unless most rows need a look.
        if rows.numel() > 0.8 * num_rows:
            old = labels
            labels, sq, second_sq = _nearest(x, centroids, x_sq, hint=old, with_second=True)
            upper, lower, new_labels, xr = sq.sqrt_(), second_sq.sqrt_(), labels, x
        else:
            old, xr = labels[rows], x.index_select(0, rows)  # (R,), (R, D)
            new_labels, sq, second_sq = _nearest(xr, centroids, x_sq[rows], hint=old, with_second=True)
            labels[rows], upper[rows], lower[rows] = new_labels, sq.sqrt_(), second_sq.sqrt_()
        switched = torch.nonzero(new_labels != old).squeeze(1)
        joined, left, rows_moved = new_labels[switched], old[switched], xr[switched]
        sums.index_add_(0, joined, rows_moved).index_add_(0, left, rows_moved, alpha=-1)
        counts += torch.bincount(joined, minlength=num_clusters) - torch.bincount(left, minlength=num_clusters)
    return centroids, labels if return_labels else None


def _fit_kmeans(
    x: torch.Tensor,
    num_clusters: int,
    *,
    iters: int,
    batch_size: int | None,
    balanced: bool,
    seed: int,
    init_sample_size: int | None,
    return_labels: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Lloyd (or mini-batch) k-means on float32 x (N, D): (centroids (K, D), final labels (N,) or None)."""
    num_rows = x.shape[0]
    generator = torch.Generator(device=x.device).manual_seed(seed)
    sample_size = init_sample_size if init_sample_size is not None else 16 * num_clusters
    centroids = _kmeans_plus_plus(x, num_clusters, min(sample_size, num_rows), generator)  # (K, D)
    x_sq = torch.einsum("nd,nd->n", x, x)  # (N,)
    mini_batch = batch_size is not None and batch_size < num_rows
    if x.device.type == "cpu" and _CPU_BOUNDS and not balanced and not mini_batch:
        return _lloyd_cpu(x, x_sq, centroids, iters, return_labels)
    seen = torch.zeros(num_clusters, dtype=x.dtype, device=x.device)  # mini-batch: rows seen per cluster
    assign_fn = _balanced_nearest if balanced else _nearest
    for _ in range(iters):
        if mini_batch:
            rows = torch.randint(num_rows, (batch_size,), generator=generator, device=x.device)
            xb, xb_sq = x[rows], x_sq[rows]  # (B, D), (B,)
        else:
            xb, xb_sq = x, x_sq
        labels, sq_dists = assign_fn(xb, centroids, xb_sq)[:2]
        if not mini_batch:
            centroids = _mean_update(x, labels, centroids, sq_dists)
            continue
        # Per-cluster learning rate 1/seen (Sculley 2010): centroid = running mean of the rows it has seen.
        sums = torch.zeros_like(centroids).index_add_(0, labels, xb)  # (K, D)
        counts = torch.bincount(labels, minlength=num_clusters).to(x.dtype)  # (K,)
        seen += counts
        centroids = centroids + (sums - counts.unsqueeze(1) * centroids) / seen.clamp(min=1).unsqueeze(1)
        centroids = _reseed_empty(centroids, seen == 0, xb, sq_dists)
    labels = assign_fn(x, centroids, x_sq)[0] if return_labels else None
    return centroids, labels


def kmeans(
    x: torch.Tensor,
    num_clusters: int,
    *,
    iters: int = 20,
    batch_size: int | None = None,
    balanced: bool = False,
    seed: int = 0,
    init_sample_size: int | None = None,
) -> torch.Tensor:
    """Fit k-means on x (N, D) on x's device and return float32 centroids (K, D).

    iters: Lloyd iterations (or mini-batch steps when batch_size is set). balanced: capacity-constrained
    assignment, every cluster gets ~N/K rows (per mini-batch when batch_size is set). init_sample_size: k-means++
    runs on this many random rows (default 16 * num_clusters). Empty clusters are re-seeded at the worst-fit rows.
    """
    _check_positive_int(num_clusters, "num_clusters")
    _check_positive_int(iters, "iters")
    if batch_size is not None:
        _check_positive_int(batch_size, "batch_size")
    _check_embeddings(x, "x", min_rows=num_clusters)
    return _fit_kmeans(
        x.float(), num_clusters, iters=iters, batch_size=batch_size, balanced=balanced, seed=seed,
        init_sample_size=init_sample_size, return_labels=False,
    )[0]


def assign(x: torch.Tensor, centroids: torch.Tensor, *, balanced: bool = False) -> torch.Tensor:
    """Index (N,) int64 of the nearest centroid (K, D) for each row of x (N, D); balanced caps sizes at ~N/K."""
    if not isinstance(centroids, torch.Tensor) or centroids.ndim != 2:
        raise ValueError(f"centroids must be a 2-D tensor (K, D), got {getattr(centroids, 'shape', type(centroids))}")
    _check_embeddings(x, "x", dim=centroids.shape[1], device=centroids.device)
    x = x.to(centroids.dtype)
    return (_balanced_nearest if balanced else _nearest)(x, centroids, x.square().sum(1))[0]


@dataclass
class ResidualKMeansConfig:
    """Settings of a ResidualKMeans; saved as config.json beside the codebooks."""

    levels: int
    codebook_size: int
    balanced: bool = False
    iters: int = 20
    batch_size: int | None = None
    init_sample_size: int | None = None
    seed: int = 0
    dim: int | None = None  # set by fit


class ResidualKMeans(nn.Module):
    """Residual quantizer: level l runs k-means on the residual left by levels < l; codes are (N, levels)."""

    def __init__(
        self,
        levels: int,
        codebook_size: int,
        balanced: bool = False,
        *,
        iters: int = 20,
        batch_size: int | None = None,
        init_sample_size: int | None = None,
        seed: int = 0,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        for value, name in [(levels, "levels"), (codebook_size, "codebook_size"), (iters, "iters")]:
            _check_positive_int(value, name)
        for value, name in [(batch_size, "batch_size"), (init_sample_size, "init_sample_size"), (dim, "dim")]:
            if value is not None:
                _check_positive_int(value, name)
        self.config = ResidualKMeansConfig(
            levels, codebook_size, bool(balanced), iters, batch_size, init_sample_size, seed, dim
        )
        codebooks = None if dim is None else torch.zeros(levels, codebook_size, dim)
        self.register_buffer("codebooks", codebooks)  # (L, K, D) float32 once fitted

    @property
    def is_fitted(self) -> bool:
        return self.codebooks is not None

    def _require_fitted(self, method: str) -> None:
        if self.codebooks is None:
            raise RuntimeError(f"ResidualKMeans.{method} needs a fitted model: call fit(x) or from_pretrained(dir)")

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> ResidualKMeans:
        """Fit all levels on x (N, D), N >= codebook_size; computes in float32 on x's device."""
        cfg = self.config
        _check_embeddings(x, "x", min_rows=cfg.codebook_size)
        residual = x.float()  # (N, D)
        codebooks = []
        for level in range(cfg.levels):
            centroids, labels = _fit_kmeans(
                residual, cfg.codebook_size, iters=cfg.iters, batch_size=cfg.batch_size, balanced=cfg.balanced,
                seed=cfg.seed + level, init_sample_size=cfg.init_sample_size, return_labels=True,
            )
            residual = residual - centroids[labels]  # (N, D)
            codebooks.append(centroids)
        self.codebooks = torch.stack(codebooks)  # (L, K, D)
        cfg.dim = x.shape[1]
        return self

    @torch.no_grad()
    def encode(self, x: torch.Tensor, balanced: bool | None = None) -> torch.Tensor:
        """Codes (N, L) int64 for x (N, D).

        balanced (default: the config's) uses the capacity-constrained assignment over the rows given, as in
        fit; it therefore depends on the whole batch. Pass balanced=False to encode new items independently.
        """
        self._require_fitted("encode")
        _check_embeddings(x, "x", dim=self.config.dim, device=self.codebooks.device)
        balanced = self.config.balanced if balanced is None else balanced
        assign_fn = _balanced_nearest if balanced else _nearest
        residual = x.to(self.codebooks.dtype)  # (N, D)
        codes = []
        for centroids in self.codebooks:  # (K, D) per level
            labels = assign_fn(residual, centroids, residual.square().sum(1))[0]  # (N,)
            residual = residual - centroids[labels]
            codes.append(labels)
        return torch.stack(codes, dim=1)  # (N, L)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstruction (N, D) from codes (N, l), 1 <= l <= levels (a prefix of levels decodes coarser)."""
        self._require_fitted("decode")
        cfg = self.config
        if not isinstance(codes, torch.Tensor) or codes.ndim != 2 or codes.is_floating_point() or codes.is_complex():
            raise ValueError(f"codes must be a 2-D integer tensor (N, levels), got {getattr(codes, 'shape', codes)}")
        if not 1 <= codes.shape[1] <= cfg.levels:
            raise ValueError(f"codes must have 1..{cfg.levels} columns (levels), got {codes.shape[1]}")
        if codes.numel() and not bool(((codes >= 0) & (codes < cfg.codebook_size)).all()):
            raise ValueError(f"codes must lie in [0, {cfg.codebook_size}), got values outside it")
        levels = torch.arange(codes.shape[1], device=self.codebooks.device)
        codes = codes.to(device=self.codebooks.device, dtype=torch.int64)
        return self.codebooks[levels, codes].sum(1)  # (N, l, D) -> (N, D)

    @torch.no_grad()
    def quantization_error(self, x: torch.Tensor, balanced: bool | None = None) -> torch.Tensor:
        """Mean squared residual (over rows and dims) after each level of encode(x, balanced): (L,) float32."""
        codes = self.encode(x, balanced)  # (N, L), validates x
        residual = x.to(self.codebooks.dtype)  # (N, D)
        errors = []
        for level, centroids in enumerate(self.codebooks):
            residual = residual - centroids[codes[:, level]]
            errors.append(residual.square().mean())
        return torch.stack(errors)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write config.json and model.safetensors into save_directory, each atomically (temp file + rename)."""
        self._require_fitted("save_pretrained")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"codebooks": self.codebooks.detach().to("cpu", torch.float32).contiguous()}
        atomic_write(directory / WEIGHTS_NAME, lambda path: save_file(tensors, path))
        config_text = json.dumps(asdict(self.config), indent=2)
        atomic_write(directory / CONFIG_NAME, lambda path: Path(path).write_text(config_text))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> ResidualKMeans:
        """Load a model written by save_pretrained from a local folder."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"ResidualKMeans.from_pretrained: directory {str(directory)!r} does not exist")
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"ResidualKMeans.from_pretrained: {name} missing in {str(directory)!r}")
        config = json.loads((directory / CONFIG_NAME).read_text())
        known = {f.name for f in fields(ResidualKMeansConfig)}
        required = {"levels", "codebook_size", "dim"}
        if not isinstance(config, dict) or set(config) - known or required - set(config) or config["dim"] is None:
            raise ValueError(f"ResidualKMeans.from_pretrained: {CONFIG_NAME} in {str(directory)!r} is not a fitted "
                             f"ResidualKMeans config (needs {sorted(required)} with dim set, allows {sorted(known)}), "
                             f"got {config}")
        model = cls(**config)
        codebooks = load_file(directory / WEIGHTS_NAME).get("codebooks")
        expected = (model.config.levels, model.config.codebook_size, model.config.dim)
        if codebooks is None or tuple(codebooks.shape) != expected:
            got = None if codebooks is None else tuple(codebooks.shape)
            raise ValueError(f"ResidualKMeans.from_pretrained: codebooks must have shape {expected}, got {got}")
        model.codebooks = codebooks
        return model.to(device)
