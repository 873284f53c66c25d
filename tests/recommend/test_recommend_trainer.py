from types import SimpleNamespace

import pytest
import torch

from videoai.recommend import (EvalCollator, OneRecModel, OptimizerConfig, beam_search, evaluate_onerec,
                               lr_multiplier, recommend_indices, train_onerec)
from videoai.tokenize.semantic_ids import PrefixTrie
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


class FixedPreferenceModel(torch.nn.Module):
    """Stub decoder for beam search: prefers low tokens among the trie's children, far more strongly at level 0."""

    def __init__(self, num_levels: int, codebook_size: int):
        super().__init__()
        self.config = SimpleNamespace(num_levels=num_levels, codebook_size=codebook_size, session_length=1,
                                      max_history=50)
        self.device = torch.device("cpu")

    def encode(self, history_codes, history_mask, *unused, **unused_by_name):
        return history_codes.new_zeros(history_codes.shape[0], 1, 1).float(), history_mask

    def start_decoding(self, memory, memory_mask, num_beams):
        return SimpleNamespace(step=0, reorder=lambda parent: None)  # logits ignore the prefix: nothing to reorder

    def decode_step(self, state, previous, trie_step):
        scale = 100.0 if state.step % self.config.num_levels == 0 else 10.0
        state.step += 1
        logits = -scale * torch.arange(self.config.codebook_size).float().expand_as(trie_step.child_nodes)  # (B,K,V)
        return logits.masked_fill(trie_step.child_nodes < 0, float("-inf"))  # constrained, as OneRecModel


def test_exclude_seen_widens_the_beam_to_return_k_unseen_items():
    # the preferred subtree (first token 0) holds 6 single-child prefixes, all of them seen by the user
    codes = torch.tensor([[first, second, 0] for first, width in ((0, 6), (1, 4), (2, 4)) for second in range(width)])
    trie = PrefixTrie(codes, vocab_size=8)
    model, seen, k = FixedPreferenceModel(3, 8), torch.arange(6), 3
    batch = EvalCollator(codes, 50)([(seen, -1)])
    plain = beam_search(model, batch["history_codes"], batch["history_mask"], trie, num_beams=k,
                        exclude_codes=batch["history_codes"], exclude_mask=batch["history_mask"])
    assert (plain.items < 0).all()  # every k-beam prefix ends on a seen item: the case widening fixes
    items, scores = recommend_indices(model, [seen], codes, trie, k=k)
    assert items.tolist() == [[6, 7, 8]]  # the best unseen items, best first
    assert torch.isfinite(scores).all() and (scores[:, :-1] >= scores[:, 1:]).all()
    items, _ = recommend_indices(model, [seen], codes, trie, k=k, exclude_seen=False)
    assert items.tolist() == [[0, 1, 2]]


def test_lr_schedule_warms_up_then_anneals_to_zero():
    factors = [lr_multiplier(step, max_steps=12, warmup_steps=2) for step in range(12)]
    assert factors[:2] == [0.5, 1.0] and factors[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[2:], factors[3:])) and factors[-1] < 0.05
    assert lr_multiplier(11, max_steps=12, warmup_steps=2, decay="constant") == 1.0
    with pytest.raises(ValueError, match="lr_decay"):
        OptimizerConfig(lr_decay="linear")
