import pytest
import torch

from videoai.recommend import cooccurrence_counts, cooccurrence_embeddings, ppmi


def test_counts_are_symmetric_and_distance_weighted():
    counts = cooccurrence_counts([torch.tensor([0, 1, 2]), torch.tensor([3, 0])], num_items=4, window=2).to_dense()
    assert torch.equal(counts, counts.T)
    assert counts[0, 1] == 1.0 and counts[1, 2] == 1.0 and counts[0, 2] == 0.5 and counts[3, 0] == 1.0
    assert counts[1, 3] == 0.0  # different users never co-occur
    assert counts.diagonal().sum() == 0


def test_ppmi_is_positive_and_sparse():
    counts = cooccurrence_counts([torch.tensor([0, 1, 0, 1]), torch.tensor([2, 3, 2, 3]), torch.tensor([1, 2])], 4)
    matrix = ppmi(counts)
    assert (matrix.values() > 0).all()
    assert matrix.shape == (4, 4)


def test_embeddings_separate_item_groups():
    generator = torch.Generator().manual_seed(0)
    # two communities: users consume items 0..9 or 10..19, never across
    sequences = [torch.randint(0, 10, (8,), generator=generator) + 10 * (u % 2) for u in range(200)]
    emb = cooccurrence_embeddings(sequences, 20, dim=4)
    assert emb.shape == (20, 4)
    assert torch.allclose(emb.norm(dim=1), torch.ones(20), atol=1e-5)
    sim = emb @ emb.T
    within = (sim[:10, :10].mean() + sim[10:, 10:].mean()) / 2
    across = sim[:10, 10:].mean()
    assert within > across + 0.5


def test_bad_input():
    with pytest.raises(ValueError, match="item indices"):
        cooccurrence_counts([torch.tensor([0, 5])], num_items=3)
    with pytest.raises(ValueError, match="window"):
        cooccurrence_counts([torch.tensor([0, 1])], num_items=3, window=0)
    with pytest.raises(ValueError, match="non-empty"):
        cooccurrence_counts([], num_items=3)
    with pytest.raises(ValueError, match="dim"):
        cooccurrence_embeddings([torch.tensor([0, 1])], num_items=3, dim=3)


def test_items_without_cooccurrence_get_zero_rows():
    # the tokenizer spreads these identical rows over codes (spill_large_groups); the embedding itself stays zero
    generator = torch.Generator().manual_seed(0)
    sequences = [torch.randint(0, 10, (6,), generator=generator) for _ in range(50)] + [torch.tensor([12])]
    emb = cooccurrence_embeddings(sequences, 16, dim=4)
    assert (emb[10:].norm(dim=1) == 0).all()  # never seen, or seen alone (item 12)
    assert torch.allclose(emb[:10].norm(dim=1), torch.ones(10), atol=1e-5)
