import pytest
import torch

from videoai.recommend import (
    OneRecModel,
    OneRecRecommender,
    SemanticIDTokenizer,
    UnknownItemError,
    config_for_tokenizer,
    model_for_tokenizer,
)


@pytest.fixture(params=["plain", "nodes+items", "tied"])
def recommender(request, make_config):
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(32, 6, generator=generator)
    tokenizer = SemanticIDTokenizer(levels=2, codebook_size=4, iters=3).fit(embeddings, [f"v{i}" for i in range(32)])
    torch.manual_seed(0)
    tiny = make_config().to_dict()
    for key in ("num_levels", "codebook_size", "num_items", "num_prefix_nodes", "node_levels", "node_input"):
        tiny.pop(key)
    if request.param == "plain":
        config = make_config(codebook_size=tokenizer.vocab_size, session_length=2)
    elif request.param == "nodes+items":  # prefix-node output embeddings + item-index embeddings in the encoder
        config = config_for_tokenizer(tokenizer, node_levels=2, **{**tiny, "session_length": 2})
        assert config.num_items == 32 and config.num_prefix_nodes > 1
    else:  # the recommended model: nodes at every level, tied into the encoder through each item's trie path
        model = model_for_tokenizer(tokenizer, **{**tiny, "session_length": 2})
        assert model.config.node_levels == tokenizer.num_levels and (model.item_nodes >= 0).all()
        return OneRecRecommender(model.eval(), tokenizer)
    return OneRecRecommender(OneRecModel(config).eval(), tokenizer)


def test_recommend_returns_unseen_real_items(recommender):
    histories = [["v1", "v2", "v3"], ["v9"]]
    items, scores = recommender.recommend(histories, k=5)
    assert len(items) == 2 and all(len(row) == 5 for row in items)
    assert scores.shape == (2, 5)
    for history, row in zip(histories, items):
        assert not set(history) & set(row) and len(set(row)) == 5
        assert all(item in recommender.tokenizer.item_ids for item in row)


def test_generate_sessions(recommender):
    sessions, scores = recommender.generate_sessions([["v1", "v2"]], num_sessions=3)
    assert len(sessions[0]) == 3 and all(len(s) == 2 and len(set(s)) == 2 for s in sessions[0])
    assert scores.shape == (1, 3)


def test_bad_inputs(recommender):
    with pytest.raises(UnknownItemError, match="unknown item id"):
        recommender.recommend([["v1", "nope"]])
    with pytest.raises(ValueError, match=r"histories\[1\] is empty"):
        recommender.recommend([["v1"], []])
    with pytest.raises(TypeError, match="list of item-id lists"):
        recommender.recommend("v1")
    with pytest.raises(ValueError, match="k must be"):
        recommender.recommend([["v1"]], k=0)


def test_mismatched_model_and_tokenizer(recommender, make_config):
    with pytest.raises(ValueError, match="num_levels"):
        OneRecRecommender(OneRecModel(make_config(num_levels=4)), recommender.tokenizer)


def test_save_load_round_trip(recommender, tmp_path):
    recommender.save_pretrained(tmp_path / "rec")
    loaded = OneRecRecommender.from_pretrained(tmp_path / "rec")
    histories = [["v4", "v5"], ["v30", "v1", "v2"]]
    assert loaded.recommend(histories, k=4)[0] == recommender.recommend(histories, k=4)[0]
    with pytest.raises(FileNotFoundError, match="must contain"):
        OneRecRecommender.from_pretrained(tmp_path / "missing")


def _hand_log_prob(recommender, history: list, item, constrained: bool) -> float:
    """Sum over the item's tokens of log-softmax over the whole vocabulary, or (constrained) over the tokens that
    extend its prefix in the catalogue's codes, masked by hand, from the teacher-forced decoder's unmasked logits."""
    from videoai.recommend import EvalCollator, TrieTables, TrieTargets

    model, tokenizer = recommender.model, recommender.tokenizer
    batch = EvalCollator(tokenizer.codes, model.config.max_history)([(tokenizer.item_index(history), -1)])
    codes = tokenizer.encode([item]).view(1, 1, 1, -1)  # (B, R, M, L)
    path = TrieTables.of(recommender.trie, model.config.codebook_size).targets(codes)
    with torch.no_grad():
        memory, memory_mask = model.encode(batch["history_codes"], batch["history_mask"],
                                           history_items=batch["history_items"])
        position = torch.tensor([memory.shape[1] - 1])  # the row sees the whole history
        hidden, _ = model.decode(memory, memory_mask, codes, position, prefix_nodes=path.prefix_nodes)
        steps = torch.arange(codes.shape[-1])
        logits = model.step_logits(hidden, steps, TrieTargets(path.prefix_nodes, path.child_nodes, constrain=False))
    total, all_codes, target = 0.0, tokenizer.codes, codes.flatten()  # (N, L), (L,)
    for level, token in enumerate(target.tolist()):
        row = logits[0, 0, level].double()  # (V,)
        if constrained:  # only the tokens that extend the item's prefix into some real item
            same_prefix = (all_codes[:, :level] == target[:level]).all(1)
            valid = torch.zeros_like(row, dtype=torch.bool)
            valid[all_codes[same_prefix, level]] = True
            row = row.masked_fill(~valid, float("-inf"))
        total += float(row.log_softmax(-1)[token])
    return total


def test_audience_is_the_exact_session_log_prob(recommender):
    histories = [["v1", "v2", "v3"], ["v9"], ["v4", "v5", "v6", "v7", "v8", "v10", "v11", "v12"], ["v30", "v31"]]
    for constrained in (True, False):
        users, log_probs = recommender.audience("v20", histories, batch_size=3, constrained=constrained)
        assert sorted(users.tolist()) == [0, 1, 2, 3] and log_probs.shape == (4,)
        assert torch.all(log_probs[:-1] >= log_probs[1:])
        for user, value in zip(users.tolist(), log_probs.tolist()):
            assert value == pytest.approx(_hand_log_prob(recommender, histories[user], "v20", constrained), abs=1e-4)
    unconstrained = recommender.audience("v20", histories, constrained=False)[1]
    assert torch.all(unconstrained < 0)


def test_audience_matches_beam_search_scores(recommender):
    histories = [["v1", "v2", "v3"], ["v9"], ["v30", "v1"]]
    items, scores = recommender.recommend(histories, k=8)
    for history, row, row_scores in zip(histories, items, scores.tolist()):
        for item, score in zip(row, row_scores):  # every item in the beam, under the same constrained softmax
            value = recommender.audience(item, [history])[1]
            assert value.tolist() == pytest.approx([score], abs=1e-4)


def test_audience_matches_unconstrained_beam_search(recommender):
    from videoai.recommend import EvalCollator, beam_search

    model, tokenizer = recommender.model, recommender.tokenizer
    batch = EvalCollator(tokenizer.codes, model.config.max_history)([(tokenizer.item_index(["v1", "v2"]), -1)])
    out = beam_search(model, batch["history_codes"], batch["history_mask"], recommender.trie, num_beams=6,
                      session_length=1, constrained=False, history_items=batch["history_items"])
    for item, score in zip(out.items[0, :, 0].tolist(), out.scores[0].tolist()):
        if item >= 0:  # a real item decoded freely: same full-softmax score
            value = recommender.audience(tokenizer.item_ids[item], [["v1", "v2"]], constrained=False,
                                         exclude_seen=False)[1]
            assert value.tolist() == pytest.approx([score], abs=1e-4)


def test_audience_ranks_top_and_leaves_out_who_saw_the_item(recommender):
    histories = [[f"v{(u * 3 + t) % 32}" for t in range(4)] for u in range(10)]
    users, log_probs = recommender.audience("v0", histories)
    seen = {u for u, h in enumerate(histories) if "v0" in h}
    assert seen and set(users.tolist()) == set(range(10)) - seen
    assert torch.isfinite(log_probs).all()
    top_users, top_log_probs = recommender.audience("v0", histories, top=3, batch_size=4)
    assert top_users.tolist() == users[:3].tolist()
    assert torch.allclose(top_log_probs, log_probs[:3], atol=1e-5)
    everyone = recommender.audience("v0", histories, exclude_seen=False)[0]
    assert sorted(everyone.tolist()) == list(range(10))
    assert len(recommender.audience("v0", histories, top=50)[0]) == 10 - len(seen)


def test_audience_bad_inputs(recommender):
    with pytest.raises(UnknownItemError, match="item 'nope' is not in the catalogue"):
        recommender.audience("nope", [["v1"]])
    with pytest.raises(ValueError, match="histories is empty"):
        recommender.audience("v1", [])
    with pytest.raises(ValueError, match=r"histories\[1\] is empty"):
        recommender.audience("v1", [["v2"], []])
    with pytest.raises(UnknownItemError, match="unknown item id"):
        recommender.audience("v1", [["v2", "zzz"]])
    with pytest.raises(TypeError, match="list of item-id lists"):
        recommender.audience("v1", "v2")
    for top in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="top must be"):
            recommender.audience("v1", [["v2"]], top=top)
    with pytest.raises(ValueError, match="batch_size must be"):
        recommender.audience("v1", [["v2"]], batch_size=0)
    with pytest.raises(TypeError, match="item must be"):
        recommender.audience(["v1"], [["v2"]])
