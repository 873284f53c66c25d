import pytest
import torch

from videoai.recommend import OneRecModel, OptimizerConfig, evaluate_onerec, recommend_indices, train_onerec
from videoai.train import TrainConfig


def cyclic_sequences(num_users=96, num_items=40, length=8):
    """Each user walks the catalogue with a fixed stride: the next item is learnable from the last one."""
    generator = torch.Generator().manual_seed(0)
    starts = torch.randint(0, num_items, (num_users,), generator=generator)
    return [(start + 3 * torch.arange(length)) % num_items for start in starts]


def train(make_config, item_codes, output_dir, max_steps, resume_from=None, checkpoint_every=None, trie=None):
    torch.manual_seed(0)
    model = OneRecModel(make_config(d_model=32, d_ff=64, dropout=0.1))
    config = TrainConfig(output_dir=output_dir, max_steps=max_steps, checkpoint_every=checkpoint_every,
                         resume_from=resume_from, progress_bar=False, log_every=1)
    _, result = train_onerec(model, cyclic_sequences(), item_codes, config,
                             OptimizerConfig(batch_size=16, learning_rate=5e-3), trie=trie)
    return model, result


@pytest.mark.parametrize("constrained", [True, False])
def test_training_lowers_loss_and_learns_the_pattern(make_config, item_codes, trie, tmp_path, constrained):
    model, result = train(make_config, item_codes, tmp_path / "run", max_steps=60, trie=trie if constrained else None)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.5
    histories = [(i + 3 * torch.arange(5)) % 40 for i in range(0, 40, 2)]
    targets = torch.tensor([(i + 15) % 40 for i in range(0, 40, 2)])
    metrics = evaluate_onerec(model, histories, targets, item_codes, trie, ks=(5,))
    assert metrics["recall@5"] >= 0.5  # guessing: 5/35
    items, scores = recommend_indices(model, histories, item_codes, trie, k=3)
    assert items.shape == (20, 3) and (items >= 0).all() and (scores[:, 0] >= scores[:, 1]).all()


def test_resume_is_exact(make_config, item_codes, trie, tmp_path):
    straight, straight_result = train(make_config, item_codes, tmp_path / "a", max_steps=10, trie=trie)
    train(make_config, item_codes, tmp_path / "b", max_steps=7, checkpoint_every=7, trie=trie)  # mid-epoch 2
    resumed, resumed_result = train(make_config, item_codes, tmp_path / "b", max_steps=10, resume_from="latest",
                                    trie=trie)
    assert resumed_result.step == 10
    assert torch.allclose(torch.tensor(straight_result.losses), torch.tensor(resumed_result.losses), atol=1e-6)
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
