"""Tests for semantic IDs: collision-free codes and the prefix trie used for constrained decoding."""

import pytest
import torch

from videoai.tokenize.semantic_ids import PrefixTrie, make_collision_free



def random_items(num_items=300, levels=3, codebook_size=6, seed=0):
    """Collision-free codes (N, levels+1) with plenty of shared prefixes and duplicates resolved."""
    g = torch.Generator().manual_seed(seed)
    return make_collision_free(torch.randint(codebook_size, (num_items, levels), generator=g))


def test_make_collision_free_known_answer():
    codes = torch.tensor([[1, 2], [0, 5], [1, 2], [1, 2], [0, 5], [3, 3]])
    out = make_collision_free(codes)
    assert out.tolist() == [[1, 2, 0], [0, 5, 0], [1, 2, 1], [1, 2, 2], [0, 5, 1], [3, 3, 0]]
    assert out.dtype == codes.dtype


def test_make_collision_free_rows_unique_and_prefix_kept():
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(3, (500, 2), generator=g)  # only 9 distinct codes: heavy collisions
    out = make_collision_free(codes)
    assert out.shape == (500, 3) and torch.equal(out[:, :2], codes)
    assert torch.unique(out, dim=0).shape[0] == 500
    assert make_collision_free(codes[:0]).shape == (0, 3)


def test_make_collision_free_codebook_limit_and_bad_inputs():
    with pytest.raises(ValueError, match="codebook_size"):
        make_collision_free(torch.zeros(5, 2, dtype=torch.int64), codebook_size=4)
    assert make_collision_free(torch.zeros(4, 2, dtype=torch.int64), codebook_size=4)[:, 2].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="integer"):
        make_collision_free(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="2-D"):
        make_collision_free(torch.zeros(5, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        make_collision_free([[1, 2]])


def test_every_item_path_reaches_its_leaf():
    codes = random_items()
    trie = PrefixTrie(codes, vocab_size=8)
    assert trie.root == 0 and trie.depth == 4 and trie.vocab_size == 8 and len(trie) == 300
    nodes = torch.full((300,), trie.root)
    for level in range(trie.depth):
        assert trie.next_mask(nodes)[torch.arange(300), codes[:, level]].all()  # the item's token is allowed
        nodes = trie.step(nodes, codes[:, level])  # (N,)
        assert (nodes >= 0).all()
    assert torch.equal(nodes, trie.leaf_of_item)
    assert torch.equal(trie.item_of_leaf[nodes], torch.arange(300))
    assert not trie.next_mask(nodes).any()  # leaves have no children
    assert torch.equal(trie.lookup(codes), torch.arange(300))


def test_next_mask_allows_exactly_the_prefixes_of_real_items():
    codes = random_items(num_items=120, levels=2, codebook_size=5)
    trie = PrefixTrie(codes)
    prefixes = {tuple(row[:d]) for row in codes.tolist() for d in range(trie.depth + 1)}
    # Walk every distinct prefix and compare the mask with brute force.
    for prefix in sorted(p for p in prefixes if len(p) < trie.depth):
        node = torch.tensor([trie.root])
        for token in prefix:
            node = trie.step(node, torch.tensor([token]))
        allowed = set(torch.nonzero(trie.next_mask(node)[0]).flatten().tolist())
        assert allowed == {t for t in range(trie.vocab_size) if prefix + (t,) in prefixes}


def test_invalid_steps_and_unknown_codes():
    codes = torch.tensor([[0, 1, 0], [0, 1, 1], [2, 0, 0]])
    trie = PrefixTrie(codes, vocab_size=4)
    assert trie.num_internal == 1 + 2 + 2 and trie.num_nodes == 1 + 2 + 2 + 3
    assert trie.step(torch.tensor([0, 0, 0, -1, 0]), torch.tensor([1, 3, -2, 0, 7])).tolist() == [-1] * 5
    mask = trie.next_mask(torch.tensor([0, -1]))
    assert mask[0].tolist() == [True, False, True, False] and not mask[1].any()
    unknown = torch.tensor([[0, 1, 2], [2, 0, 1], [1, 0, 0], [0, 1, 1], [9, 9, 9], [-1, 0, 0]])
    assert trie.lookup(unknown).tolist() == [-1, -1, -1, 1, -1, -1]


def test_batched_constrained_greedy_decoding_only_yields_items():
    codes = random_items(num_items=50, levels=2, codebook_size=16)
    trie = PrefixTrie(codes, vocab_size=16)
    g = torch.Generator().manual_seed(2)
    nodes = torch.zeros(64, dtype=torch.int64)  # (B,) 64 decodes in parallel, no host syncs inside the loop
    tokens = []
    for _ in range(trie.depth):
        logits = torch.randn(64, 16, generator=g).masked_fill(~trie.next_mask(nodes), float("-inf"))  # (B, V)
        token = logits.argmax(-1)  # (B,)
        nodes = trie.step(nodes, token)
        tokens.append(token)
    items = trie.lookup(torch.stack(tokens, 1))
    assert (items >= 0).all() and torch.equal(items, trie.item_of_leaf[nodes])


def test_state_dict_and_file_round_trip(tmp_path):
    codes = random_items()
    trie = PrefixTrie(codes, vocab_size=8)
    again = PrefixTrie.from_state_dict({k: v.clone() for k, v in trie.state_dict().items()})
    trie.save(tmp_path / "trie.safetensors")
    loaded = PrefixTrie.load(tmp_path / "trie.safetensors")
    for other in (again, loaded):
        assert other.depth == trie.depth and other.vocab_size == 8
        assert torch.equal(other.table, trie.table) and torch.equal(other.lookup(codes), torch.arange(300))
    assert loaded.to("cpu") is loaded and loaded.device.type == "cpu"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PrefixTrie.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="keys"):
        PrefixTrie.from_state_dict({"edge_keys": trie.edge_keys})


def dense_reference(codes: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The former dense trie, by brute force: (internal nodes, V) int32 child table and item_of_leaf; node ids by
    depth, each depth's prefixes in lexicographic order."""
    rows, depth = codes.tolist(), codes.shape[1]
    ids, next_id = {(): 0}, 1
    for d in range(1, depth + 1):
        for prefix in sorted({tuple(r[:d]) for r in rows}):
            ids[prefix], next_id = next_id, next_id + 1
    table = torch.full((sum(len(p) < depth for p in ids), vocab_size), -1, dtype=torch.int32)
    for prefix, node in ids.items():
        if prefix:
            table[ids[prefix[:-1]], prefix[-1]] = node
    item_of_leaf = torch.full((next_id,), -1)
    for item, row in enumerate(rows):
        item_of_leaf[ids[tuple(row)]] = item
    return table, item_of_leaf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_trie_matches_the_dense_table(seed):
    codes = random_items(num_items=200, levels=3, codebook_size=5, seed=seed)
    trie = PrefixTrie(codes, vocab_size=9)
    table, item_of_leaf = dense_reference(codes, 9)
    assert torch.equal(trie.table, table) and torch.equal(trie.item_of_leaf, item_of_leaf)
    nodes = torch.arange(-2, trie.num_nodes + 3)  # every node, leaves, and ids off the trie
    padded = torch.cat([table, torch.full((trie.num_nodes - table.shape[0], 9), -1, dtype=torch.int32)])
    inside = (nodes >= 0) & (nodes < trie.num_nodes)
    expected = torch.where(inside[:, None], padded[nodes.clamp(0, trie.num_nodes - 1)].long(), -1)  # (n, V)
    assert torch.equal(trie.children(nodes), expected)
    assert torch.equal(trie.next_mask(nodes), expected >= 0)
    tokens = torch.arange(-1, 11)
    grid_nodes, grid_tokens = nodes[:, None].expand(-1, 12), tokens[None].expand(nodes.numel(), -1)
    in_vocab = (grid_tokens >= 0) & (grid_tokens < 9)
    expected_step = torch.where(in_vocab, expected.gather(1, grid_tokens.clamp(0, 8)), -1)
    assert torch.equal(trie.step(grid_nodes, grid_tokens), expected_step)


def test_table_memory_at_catalogue_scale():
    g = torch.Generator().manual_seed(0)
    codes = make_collision_free(torch.randint(256, (20_000, 3), generator=g))  # (20000, 4)
    trie = PrefixTrie(codes, vocab_size=256)
    stored = sum(t.numel() * t.element_size() for t in trie.state_dict().values())
    assert stored < 2 * 2**20  # O(nodes): a dense (internal x vocab) table was ~40k x 256 x 4 = 40 MB
    assert torch.equal(trie.lookup(codes[:1000]), torch.arange(1000))
    # a large disambiguation vocabulary (many items sharing a code) costs no more
    wide = PrefixTrie(make_collision_free(torch.zeros(3000, 2, dtype=torch.int64)), vocab_size=3000)
    assert sum(t.numel() * t.element_size() for t in wide.state_dict().values()) < 2**20
    assert wide.children(torch.tensor([2])).shape == (1, 3000) and (wide.children(torch.tensor([2])) >= 0).all()


def test_dense_state_dict_from_before_still_loads():
    codes = random_items(num_items=100)
    old = {"table": dense_reference(codes, 8)[0], "codes": codes}
    trie = PrefixTrie.from_state_dict(old)
    assert trie.vocab_size == 8 and torch.equal(trie.lookup(codes), torch.arange(100))


def test_bad_trie_inputs():
    with pytest.raises(ValueError, match="duplicate"):
        PrefixTrie(torch.tensor([[0, 1], [0, 1], [1, 1]]))
    with pytest.raises(ValueError, match="vocab_size"):
        PrefixTrie(torch.tensor([[0, 5]]), vocab_size=4)
    with pytest.raises(ValueError, match="non-negative"):
        PrefixTrie(torch.tensor([[0, -1]]))
    with pytest.raises(ValueError, match="at least one row"):
        PrefixTrie(torch.zeros(0, 3, dtype=torch.int64))
    trie = PrefixTrie(torch.tensor([[0, 1], [1, 1]]))
    with pytest.raises(ValueError, match="2 columns"):
        trie.lookup(torch.tensor([[0, 1, 0]]))
    with pytest.raises(ValueError, match="same shape"):
        trie.step(torch.zeros(3, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer"):
        trie.next_mask(torch.zeros(3))
