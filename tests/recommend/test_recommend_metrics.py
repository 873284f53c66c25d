import math

import pytest
import torch

from videoai.recommend import ndcg_at_k, ranking_metrics, recall_at_k


def test_known_answers():
    ranked = torch.tensor([[5, 3, 9], [1, 2, 3], [7, 8, 6]])
    targets = torch.tensor([3, 4, 7])
    assert recall_at_k(ranked, targets, 1).tolist() == [0, 0, 1]
    assert recall_at_k(ranked, targets, 2).tolist() == [1, 0, 1]
    assert ndcg_at_k(ranked, targets, 3).tolist() == pytest.approx([1 / math.log2(3), 0.0, 1.0])
    metrics = ranking_metrics(ranked, targets, ks=(1, 3))
    assert metrics["recall@3"] == pytest.approx(2 / 3)
    assert metrics["ndcg@1"] == pytest.approx(1 / 3)


def test_bad_shapes():
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="ranked must be"):
        ndcg_at_k(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, dtype=torch.long), 2)
