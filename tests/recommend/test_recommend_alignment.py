import copy
import math
from dataclasses import replace

import pytest
import torch

from videoai.recommend import (
    AlignmentConfig,
    PreferenceCollator,
    RewardModel,
    RewardModelConfig,
    align,
    beam_search,
    build_preference_pairs,
    dpo_loss,
    engagement_examples,
    freeze,
    train_reward_model,
)
from videoai.train import TrainConfig


class IndexReward(torch.nn.Module):
    """Stub reward model: prefers high item indices (a known answer for the pair builder and the alignment loop)."""

    def session_reward(self, history, sessions):
        return torch.where(sessions >= 0, sessions.float() / 40, torch.zeros(())).mean(-1)


def user_histories(num_users=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 40, (4,), generator=generator) for _ in range(num_users)]


def test_dpo_loss_mechanics(model, item_codes):
    policy = model.train()
    reference = freeze(policy)
    assert not any(p.requires_grad for p in reference.parameters())
    history = item_codes[torch.tensor([[1, 2, 3], [4, 5, 6]])]
    mask = torch.ones(2, 3, dtype=torch.bool)
    sessions = item_codes[torch.tensor([[[7], [8]], [[9], [10]]])]  # (B, 2 = chosen/rejected, M, L)
    batch = {"history_codes": history, "history_mask": mask, "session_codes": sessions,
             "reference_logp": reference.session_log_prob(history, mask, sessions)}
    loss, logs = dpo_loss(policy, batch, beta=0.5)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)  # policy == reference: zero margin
    assert policy.training  # dpo_loss restores the mode it switched off for the forward
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    for _ in range(5):
        loss, logs = dpo_loss(policy, batch, beta=0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loss, logs = dpo_loss(policy, batch, beta=0.5)
    assert loss.item() < math.log(2) - 0.05 and logs["margin"] > 0 and logs["pair_accuracy"] == 1.0
    before = reference.session_log_prob(history, mask, sessions)
    assert torch.allclose(before, batch["reference_logp"])  # the reference did not move


def test_preference_pairs_pick_best_and_worst(model, item_codes, trie):
    config = AlignmentConfig(num_samples=6, min_reward_gap=0.0, generation_batch_size=5)
    histories = user_histories()
    pairs = build_preference_pairs(model, IndexReward(), histories, item_codes, trie, config, max_history=6)
    assert len(pairs) == 12
    for user, history in enumerate(histories):
        collate = PreferenceCollator(item_codes)([pairs[user]])
        assert collate["session_codes"].shape == (1, 2, 1, 3)
        out = beam_search(model, item_codes[history][None], torch.ones(1, 4, dtype=torch.bool), trie, num_beams=6,
                          exclude_codes=item_codes[history][None])
        beams = out.items[0, :, 0].tolist()
        assert pairs.chosen[user, 0].item() == max(beams) and pairs.rejected[user, 0].item() == min(beams)
        assert not set(history.tolist()) & set(beams)
    strict = build_preference_pairs(model, IndexReward(), histories, item_codes, trie,
                                    AlignmentConfig(num_samples=6, min_reward_gap=2.0), max_history=6)
    assert len(strict) == 0  # no pair has a reward gap of 2 (rewards lie in [0, 1))


def test_alignment_raises_the_reward(model, item_codes, trie, tmp_path):
    torch.manual_seed(0)
    histories = user_histories(16)
    collate = lambda hs: item_codes[torch.stack(hs)]  # noqa: E731  all histories have 4 items
    mask = torch.ones(16, 4, dtype=torch.bool)

    def top_reward(policy):
        out = beam_search(policy.eval(), collate(histories), mask, trie, num_beams=4)
        return IndexReward().session_reward(None, out.items).mean().item()

    before = top_reward(model)
    start = copy.deepcopy(model)
    config = AlignmentConfig(num_iterations=3, steps_per_iteration=8, num_samples=6, beta=0.5, learning_rate=3e-2,
                             batch_size=8, min_reward_gap=0.0, anchor_weight=0.0)  # pure DPO
    rounds = align(model, IndexReward(), histories, item_codes, trie, config, tmp_path, log=lambda _: None)
    assert [r["pairs"] for r in rounds] == [16, 16, 16]
    assert top_reward(model) > before + 0.1

    def real_last_logp(policy):  # log-prob of each user's real last item after the items before it
        codes = item_codes[torch.stack(histories)]  # (16, 4, L)
        return policy.eval().session_log_prob(codes[:, :-1], mask[:, :-1], codes[:, -1:, None]).mean().item()

    anchored = copy.deepcopy(start)
    align(anchored, IndexReward(), histories, item_codes, trie, replace(config, anchor_weight=1.0), tmp_path / "a",
          log=lambda _: None)
    assert real_last_logp(anchored) > real_last_logp(model)  # the anchor keeps the policy on what users did
    with pytest.raises(ValueError, match="at least one user history"):
        align(model, IndexReward(), [], item_codes, trie, config, tmp_path)


def test_reward_model_learns_engagement(tmp_path):
    torch.manual_seed(0)
    sequences = [(torch.arange(6) + 2 * u) % 20 for u in range(40)]  # the next items follow the last one
    examples = engagement_examples(sequences, num_items=20, horizon=2, num_negatives=2)
    history, items, labels = examples[0]
    assert history.tolist() == [0] and items[:2].tolist() == [1, 2] and labels.tolist()[:2] == [1.0, 1.0]
    assert (labels[2:] == 0).all()
    model = RewardModel(RewardModelConfig(num_items=20, d_model=16))
    result = train_reward_model(model, examples, TrainConfig(output_dir=tmp_path, max_steps=40, progress_bar=False),
                                batch_size=32, learning_rate=1e-2)
    assert sum(result.losses[-5:]) / 5 < sum(result.losses[:5]) / 5 - 0.2
    model.eval()
    reward = model.session_reward(torch.tensor([[3, 4, 5]]), torch.tensor([[[6, 7], [15, -1]]]))
    assert reward.shape == (1, 2) and reward[0, 0] > reward[0, 1]
    with pytest.raises(ValueError, match="horizon"):
        engagement_examples(sequences, 20, horizon=0)


def test_engagement_from_explicit_feedback():
    from videoai.recommend import engagement_examples_from_labels

    examples = engagement_examples_from_labels([torch.tensor([3, 4, 5])], [[1.0, 0.0, 1.0]])
    assert len(examples) == 2
    history, items, labels = examples[1]
    assert history.tolist() == [3, 4] and items.tolist() == [5] and labels.tolist() == [1.0]
    assert examples[0][2].tolist() == [0.0]


def test_anchor_adds_the_real_session_nll(model, item_codes, trie):
    histories = user_histories()
    pairs = build_preference_pairs(model, IndexReward(), histories, item_codes, trie,
                                   AlignmentConfig(num_samples=6, min_reward_gap=0.0), max_history=6)
    anchored = pairs.longer_than(1)
    batch = PreferenceCollator(item_codes, anchor_length=1)([anchored[i] for i in range(3)])
    history = torch.stack(histories[:3])  # (3, 4)
    assert torch.equal(batch["anchor_history_items"], history[:, :-1])  # history before the real session
    assert torch.equal(batch["anchor_session_codes"], item_codes[history[:, -1:]][:, None])  # (3, 1, M=1, L)
    plain, _ = dpo_loss(model, batch, beta=0.5, trie=trie)
    anchored_loss, _ = dpo_loss(model, batch, beta=0.5, trie=trie, anchor_weight=2.0)
    from videoai.recommend.trainer import trie_targets

    real = batch["anchor_session_codes"]
    nll = -model.session_log_prob(batch["anchor_history_codes"], batch["anchor_history_mask"], real,
                                  trie_targets=trie_targets(trie, model, real),
                                  history_items=batch["anchor_history_items"]).mean() / real[0, 0].numel()
    assert anchored_loss.item() == pytest.approx(plain.item() + 2.0 * nll.item(), rel=1e-5)
    with pytest.raises(ValueError, match="anchor_session_codes"):
        dpo_loss(model, PreferenceCollator(item_codes)([pairs[0]]), anchor_weight=1.0)
    short = pairs.longer_than(4)  # every history has 4 items: none is longer than the session
    assert len(short) == 0
