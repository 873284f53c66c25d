import pytest
import torch

from videoai.recommend import OneRecModel, beam_search, trie_targets


def histories(item_codes, batch=4, length=5, seed=1):
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(0, item_codes.shape[0], (batch, length), generator=generator)
    return items, item_codes[items], torch.ones(batch, length, dtype=torch.bool)


def test_constrained_beams_are_always_real_items(model, item_codes, trie):
    for seed in range(3):
        torch.manual_seed(seed)
        for module in model.modules():  # several random models: none may yield an invalid item
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=1.0)
        _, history, mask = histories(item_codes, seed=seed)
        out = beam_search(model, history, mask, trie, num_beams=6)
        assert out.items.shape == (4, 6, 1) and out.codes.shape == (4, 6, 1, 3)
        assert (out.items >= 0).all()
        assert torch.equal(item_codes[out.items[..., 0]], out.codes[:, :, 0])
        assert all(len(set(row)) == 6 for row in out.items[..., 0].tolist())  # distinct items per user
        assert (out.scores[:, :-1] >= out.scores[:, 1:]).all()  # best first


def test_unconstrained_can_leave_the_catalogue(model, item_codes, trie):
    torch.manual_seed(0)
    _, history, mask = histories(item_codes)
    out = beam_search(model, history, mask, trie, num_beams=16, constrained=False)
    assert (out.items < 0).any()  # random model: some token sequences are not items


def test_scores_are_session_log_probs(model, item_codes, trie):
    _, history, mask = histories(item_codes)
    out = beam_search(model, history, mask, trie, num_beams=5, constrained=False)
    expected = model.session_log_prob(history, mask, out.codes)  # full softmax
    assert torch.allclose(out.scores, expected, atol=1e-4)
    out = beam_search(model, history, mask, trie, num_beams=5)
    expected = model.session_log_prob(history, mask, out.codes, trie_targets=trie_targets(trie, model, out.codes))
    assert torch.allclose(out.scores, expected, atol=1e-4)  # softmax over the trie's children only
    # constrained log-probs are a distribution over items: they sum to 1 over the whole catalogue
    all_items = item_codes[None, :, None].expand(4, -1, -1, -1)  # (B, N, M=1, L)
    logp = model.session_log_prob(history, mask, all_items, trie_targets=trie_targets(trie, model, all_items))
    assert torch.allclose(logp.exp().sum(1), torch.ones(4), atol=1e-4)


def test_excluded_and_repeated_items_never_come_back(make_config, item_codes, trie):
    torch.manual_seed(0)
    model = OneRecModel(make_config(session_length=3)).eval()
    items, history, mask = histories(item_codes)
    out = beam_search(model, history, mask, trie, num_beams=8, exclude_codes=history, exclude_mask=mask)
    assert out.items.shape == (4, 8, 3) and (out.items >= 0).all()
    for user in range(4):
        seen = set(items[user].tolist())
        for session in out.items[user].tolist():
            assert not seen & set(session)
            assert len(set(session)) == 3  # no item twice in a session
    # padded (masked-out) history entries exclude nothing
    mask[:, :] = False
    free = beam_search(model, history, mask, trie, num_beams=8, exclude_codes=history, exclude_mask=mask)
    assert (free.items >= 0).all()


def test_more_beams_than_items_leaves_dead_beams(model, item_codes):
    from videoai.tokenize.semantic_ids import PrefixTrie

    small = PrefixTrie(item_codes[:3], vocab_size=8)
    _, history, mask = histories(item_codes)
    out = beam_search(model, history, mask, small, num_beams=5)
    assert (out.items[:, :3] >= 0).all() and (out.items[:, 3:] == -1).all()
    assert torch.isneginf(out.scores[:, 3:]).all()


def test_prefix_node_model(node_model, item_codes, trie):
    from videoai.recommend import prefix_node_count

    assert prefix_node_count(trie, 2) == 1 + torch.unique(item_codes[:, :1]).numel() + torch.unique(
        item_codes[:, :2], dim=0).shape[0]
    _, history, mask = histories(item_codes)
    with pytest.raises(ValueError, match="trie"):
        node_model.session_log_prob(history, mask, item_codes[None, :2, None].expand(4, -1, -1, -1))
    out = beam_search(node_model, history, mask, trie, num_beams=6)
    assert (out.items >= 0).all()
    expected = node_model.session_log_prob(history, mask, out.codes, trie_targets=trie_targets(trie, node_model,
                                                                                               out.codes))
    assert torch.allclose(out.scores, expected, atol=1e-4)  # KV-cached decoding == teacher forcing
    all_items = item_codes[None, :, None].expand(4, -1, -1, -1)
    logp = node_model.session_log_prob(history, mask, all_items,
                                       trie_targets=trie_targets(trie, node_model, all_items))
    assert torch.allclose(logp.exp().sum(1), torch.ones(4), atol=1e-4)
    # the node term changes the distribution compared to the same network without it
    node_model.node_embedding.weight.data.zero_()
    flat = node_model.session_log_prob(history, mask, all_items, trie_targets=trie_targets(trie, node_model, all_items))
    assert not torch.allclose(flat, logp, atol=1e-3)
    free = beam_search(node_model, history, mask, trie, num_beams=6, constrained=False)
    assert free.items.shape == (4, 6, 1)
