import pytest
import torch

from videoai.recommend import EvalCollator, OneRecRecommender, SemanticIDTokenizer, model_for_tokenizer
from videoai.recommend.constraints import TrieTables
from videoai.recommend.trainer import recommend_indices


@pytest.fixture
def recommender(make_config):
    """The recommended tiny model (nodes at every level, tied item vectors) with random, non-trivial weights."""
    embeddings = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    tokenizer = SemanticIDTokenizer(levels=2, codebook_size=4, iters=3).fit(embeddings, [f"v{i}" for i in range(32)])
    tiny = make_config().to_dict()
    for key in ("num_levels", "codebook_size", "num_items", "num_prefix_nodes", "node_levels", "node_input"):
        tiny.pop(key)
    torch.manual_seed(0)
    model = model_for_tokenizer(tokenizer, **tiny).eval()
    for embedding in (model.item_embedding, model.node_embedding):
        torch.nn.init.normal_(embedding.weight, std=0.5)  # make the item head's ranking differ from the beam's
    return OneRecRecommender(model, tokenizer)


HISTORIES = [[1, 2, 3], [9], [4, 5, 6, 7, 8, 10, 11, 12], [30, 31], [0]]


def _exact_fused(recommender, history: list[int], weight: float) -> torch.Tensor:
    """Brute force: log P(ID) of every item by teacher forcing + weight * the head's log-softmax, seen items -inf."""
    model, codes = recommender.model, recommender.tokenizer.codes
    batch = EvalCollator(codes, model.config.max_history)([(torch.tensor(history), -1)])
    tables = TrieTables.of(recommender.trie, model.config.codebook_size)
    sessions = codes[:, None, None, :].transpose(0, 1)  # (1, N, 1, L): every item as a one-item session
    generative = model.session_log_prob(batch["history_codes"], batch["history_mask"], sessions,
                                        trie_targets=tables.targets(sessions), history_items=batch["history_items"])[0]
    memory = model.encode(batch["history_codes"], batch["history_mask"], history_items=batch["history_items"])
    head = model.item_log_probs(*memory)[0]
    fused = generative + weight * head
    fused[torch.tensor(history)] = float("-inf")
    return fused


@torch.no_grad()
@pytest.mark.parametrize("weight", [0.5, 2.0])
def test_fused_ranking_equals_brute_force_when_the_beam_covers_the_catalogue(recommender, weight):
    codes = recommender.tokenizer.codes
    histories = [torch.tensor(h) for h in HISTORIES]
    items, scores = recommend_indices(recommender.model, histories, codes, recommender.trie, k=6, num_beams=32,
                                      item_score_weight=weight)
    for history, row, row_scores in zip(HISTORIES, items, scores):
        exact = _exact_fused(recommender, history, weight)
        best = exact.topk(6)
        assert row.tolist() == best.indices.tolist()
        assert torch.allclose(row_scores, best.values, atol=1e-4)


@torch.no_grad()
def test_fused_scores_are_exact_for_items_beam_search_missed(recommender):
    """A narrow beam: the head's candidates outside it are scored by teacher forcing, exactly."""
    codes = recommender.tokenizer.codes
    histories = [torch.tensor(h) for h in HISTORIES]
    beam_items, _ = recommend_indices(recommender.model, histories, codes, recommender.trie, k=4, num_beams=4,
                                      item_score_weight=0.0)
    items, scores = recommend_indices(recommender.model, histories, codes, recommender.trie, k=4, num_beams=4,
                                      item_score_weight=3.0)
    assert not torch.equal(items, beam_items)  # the head changes the ranking
    outside = 0
    for history, row, row_scores, beam_row in zip(HISTORIES, items, scores, beam_items):
        exact = _exact_fused(recommender, history, 3.0)
        assert torch.allclose(row_scores, exact[row], atol=1e-4)
        assert not set(row.tolist()) & set(history)
        outside += len(set(row.tolist()) - set(beam_row.tolist()))
    assert outside > 0


def test_weight_zero_is_beam_search_and_config_default_applies(recommender):
    codes = recommender.tokenizer.codes
    histories = [torch.tensor(h) for h in HISTORIES]
    model = recommender.model
    plain = recommend_indices(model, histories, codes, recommender.trie, k=5)
    model.config.item_score_weight = 1.0
    try:
        default = recommend_indices(model, histories, codes, recommender.trie, k=5)
        explicit = recommend_indices(model, histories, codes, recommender.trie, k=5, item_score_weight=1.0)
        assert torch.equal(default[0], explicit[0])
        assert torch.equal(recommend_indices(model, histories, codes, recommender.trie, k=5,
                                             item_score_weight=0.0)[0], plain[0])
    finally:
        model.config.item_score_weight = 0.0


def test_bad_weight_is_refused(recommender):
    codes = recommender.tokenizer.codes
    with pytest.raises(ValueError, match="item_score_weight"):
        recommend_indices(recommender.model, [torch.tensor([1])], codes, recommender.trie, item_score_weight=-1.0)
    with pytest.raises(ValueError, match="item_score_weight"):
        recommend_indices(recommender.model, [torch.tensor([1])], codes, recommender.trie, item_score_weight=1.0,
                          constrained=False)


def test_each_history_is_encoded_once_for_beam_and_fusion(recommender, monkeypatch):
    codes = recommender.tokenizer.codes
    histories = [torch.tensor(h) for h in HISTORIES]
    model = recommender.model
    expected = recommend_indices(model, histories, codes, recommender.trie, k=4, num_beams=8, item_score_weight=2.0)
    calls = []
    encode = model.encode

    def counting_encode(*args, **kwargs):
        calls.append(args[0].shape[0])
        return encode(*args, **kwargs)

    monkeypatch.setattr(model, "encode", counting_encode)
    items, scores = recommend_indices(model, histories, codes, recommender.trie, k=4, num_beams=8,
                                      item_score_weight=2.0, batch_size=2)
    assert calls == [2, 2, 1]  # one encode per batch of histories, shared by beam search and the fused ranking
    assert torch.equal(items, expected[0]) and torch.allclose(scores, expected[1], atol=1e-5)
