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
