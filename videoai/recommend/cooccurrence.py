"""Item embeddings from interaction logs alone: PPMI of windowed co-occurrence + truncated SVD.

For catalogues without content (text/video) embeddings, this gives the semantic-ID tokenizer a meaningful input:
items consumed near each other in users' sequences get nearby vectors (Levy & Goldberg 2014: SVD of the shifted
PPMI matrix approximates word2vec's factorisation). Build it from the training split only, so the held-out
validation/test items do not leak into the IDs.
"""

from __future__ import annotations

import torch


def cooccurrence_counts(sequences: list[torch.Tensor], num_items: int, window: int = 3) -> torch.Tensor:
    """Symmetric (N, N) sparse COO co-occurrence matrix; a pair `d` positions apart adds 1/d (d <= window)."""
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if not sequences:
        raise ValueError("sequences must be a non-empty list of 1-D item-index tensors, got an empty list")
    flat = torch.cat([torch.as_tensor(s, dtype=torch.long).flatten() for s in sequences])  # (P,)
    if flat.numel() and (flat.min() < 0 or flat.max() >= num_items):
        raise ValueError(f"sequences must hold item indices in [0, {num_items}), got values in "
                         f"[{int(flat.min())}, {int(flat.max())}]")
    owner = torch.repeat_interleave(torch.arange(len(sequences)), torch.tensor([len(s) for s in sequences]))
    rows, cols, weights = [], [], []
    for distance in range(1, window + 1):  # loop over offsets only; all pairs at one offset are vectorised
        same_user = owner[:-distance] == owner[distance:]
        left, right = flat[:-distance][same_user], flat[distance:][same_user]
        keep = left != right
        left, right = left[keep], right[keep]
        rows += [left, right]
        cols += [right, left]
        weights += [torch.full((2 * left.numel(),), 1.0 / distance)]
    index = torch.stack([torch.cat(rows), torch.cat(cols)])  # (2, nnz)
    return torch.sparse_coo_tensor(index, torch.cat(weights), (num_items, num_items), check_invariants=True).coalesce()


def ppmi(counts: torch.Tensor, smoothing: float = 0.75, shift: float = 1.0) -> torch.Tensor:
    """Shifted positive PMI of a sparse co-occurrence matrix: max(log(p(i,j) / (p(i) p_a(j))) - log(shift), 0).

    smoothing raises context counts to this power (word2vec's 0.75), which damps the PMI of rare items.
    """
    index, values = counts.indices(), counts.values()
    row_sum = torch.zeros(counts.shape[0], dtype=values.dtype).index_add_(0, index[0], values)  # (N,)
    col_weight = row_sum.pow(smoothing)
    # p(i,j) / (p(i) p_a(j)) = c_ij * sum_k c_k^a / (c_i * c_j^a): the grand total cancels
    pmi = torch.log(values * col_weight.sum() / (row_sum[index[0]] * col_weight[index[1]])) - torch.log(
        torch.tensor(float(shift)))
    keep = pmi > 0
    return torch.sparse_coo_tensor(index[:, keep], pmi[keep], counts.shape, check_invariants=True).coalesce()


def cooccurrence_embeddings(sequences: list[torch.Tensor], num_items: int, dim: int = 64, *, window: int = 3,
                            smoothing: float = 0.75, niter: int = 6, seed: int = 0) -> torch.Tensor:
    """L2-normalised item embeddings (N, dim) from item sequences (lists of item indices in [0, N)).

    PPMI of windowed co-occurrence, then a rank-`dim` torch.svd_lowrank; rows are U * sqrt(S). Items that never
    co-occur with another item get a zero row (the tokenizer still gives them unique IDs via disambiguation).
    """
    if not isinstance(dim, int) or not 1 <= dim < num_items:
        raise ValueError(f"dim must be an int in [1, num_items={num_items}), got {dim!r}")
    matrix = ppmi(cooccurrence_counts(sequences, num_items, window), smoothing)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # svd_lowrank draws a random projection
    try:
        u, s, _ = torch.svd_lowrank(matrix, q=dim, niter=niter)  # (N, dim), (dim,)
    finally:
        torch.random.set_rng_state(state)
    embeddings = u * s.sqrt()
    return torch.nn.functional.normalize(embeddings, dim=1)
