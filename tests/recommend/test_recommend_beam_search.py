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


class DenseTables:
    """The former TrieTables: a dense (internal nodes, V) child table, indexed directly (reference for old == new)."""

    def __init__(self, trie, vocab_size):
        table = trie.table.long()  # (I, V_trie), dense
        self.children = torch.nn.functional.pad(table, (0, vocab_size - table.shape[1]), value=-1)  # (I, V)
        self.root = trie.root

    def child(self, nodes, tokens):
        return torch.where(nodes >= 0, self.children[nodes.clamp_min(0), tokens], -1)

    def paths(self, codes):
        nodes = [torch.full(codes.shape[:-1], self.root, dtype=torch.long)]
        for level in range(codes.shape[-1] - 1):
            nodes.append(self.children[nodes[-1].clamp_min(0), codes[..., level]])
        return torch.stack(nodes, -1)

    def leaf_parents(self, codes):
        return self.paths(codes)[..., -1]

    def step_children(self, nodes):
        return self.children[nodes.clamp_min(0)].masked_fill((nodes < 0)[..., None], -1)


def test_sparse_tables_match_the_dense_table(item_codes, trie):
    from videoai.recommend import TrieTables

    dense, sparse = DenseTables(trie, 10), TrieTables(trie, 10)
    nodes = torch.arange(-1, trie.num_internal)
    assert torch.equal(sparse.step_children(nodes), dense.step_children(nodes))
    assert torch.equal(sparse.paths(item_codes), dense.paths(item_codes))
    tokens = torch.randint(0, 10, nodes.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sparse.child(nodes, tokens), dense.child(nodes, tokens))
    assert torch.equal(sparse.children[nodes.clamp_min(0), tokens], dense.children[nodes.clamp_min(0), tokens])
    assert torch.equal(sparse.bias.isinf(), dense.children < 0)


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 5])
def test_prefix_node_count_matches_distinct_prefixes(item_codes, trie, depth):
    from videoai.recommend import prefix_node_count

    expected = 1 + sum(torch.unique(item_codes[:, :d], dim=0).shape[0] for d in range(1, min(depth, 3) + 1))
    assert prefix_node_count(trie, depth) == expected


@pytest.mark.parametrize("use_nodes", [False, True])
def test_beam_search_same_with_sparse_and_dense_tables(model, node_model, item_codes, trie, use_nodes, monkeypatch):
    from videoai.recommend import TrieTables

    net = node_model if use_nodes else model
    _, history, mask = histories(item_codes)
    kwargs = dict(num_beams=6, exclude_codes=history, exclude_mask=mask)
    sparse = beam_search(net, history, mask, trie, **kwargs)
    monkeypatch.setattr(TrieTables, "of", classmethod(lambda cls, t, v, d="cpu": DenseTables(t, v)))
    dense = beam_search(net, history, mask, trie, **kwargs)
    assert torch.equal(sparse.items, dense.items) and torch.equal(sparse.codes, dense.codes)
    assert torch.equal(sparse.scores, dense.scores)
