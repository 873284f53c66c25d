import pytest
import torch

from videoai.recommend import (
    SemanticIDTokenizer,
    UnknownItemError,
    cooccurrence_embeddings,
)
from videoai.tokenize.semantic_ids import make_collision_free


def clustered_embeddings(num_items=48, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, dim, generator=generator) * 5
    return centers[torch.arange(num_items) % 4] + 0.1 * torch.randn(num_items, dim, generator=generator)


def test_fit_gives_unique_ids_and_round_trips():
    embeddings = clustered_embeddings()
    item_ids = [f"item-{i}" for i in range(48)]
    tokenizer = SemanticIDTokenizer(levels=2, codebook_size=4, balanced=True, iters=5).fit(embeddings, item_ids)
    assert tokenizer.codes.shape == (48, 3) and tokenizer.num_levels == 3
    assert torch.unique(tokenizer.codes, dim=0).shape[0] == 48  # collision-free
    codes = tokenizer.encode(["item-5", "item-0", "item-47"])
    assert tokenizer.decode(codes) == ["item-5", "item-0", "item-47"]
    assert tokenizer.lookup(tokenizer.codes).tolist() == list(range(48))
    # balanced level 1: 4 clusters of 12 items
    assert torch.bincount(tokenizer.codes[:, 0], minlength=4).tolist() == [12, 12, 12, 12]
    # the first level follows the cluster structure: items of one cluster share their first token
    for cluster in range(4):
        assert tokenizer.codes[cluster::4, 0].unique().numel() == 1


def test_identical_embeddings_are_disambiguated():
    embeddings = clustered_embeddings(16)
    embeddings[8:] = embeddings[0]  # 9 identical items -> same residual codes
    tokenizer = SemanticIDTokenizer(levels=2, codebook_size=16, balanced=False, iters=3).fit(embeddings)
    assert torch.unique(tokenizer.codes, dim=0).shape[0] == 16
    duplicates = tokenizer.codes[[0] + list(range(8, 16))]
    assert (duplicates[:, :2] == duplicates[0, :2]).all()
    assert sorted(duplicates[:, 2].tolist()) == list(range(9))
    assert tokenizer.num_collisions >= 8


def test_groups_larger_than_the_codebook_spill_to_nearby_codes():
    embeddings = clustered_embeddings(16)
    embeddings[6:] = embeddings[0]  # 11 identical items, codebook 4: the suffix alone would need 11 tokens
    tokenizer = SemanticIDTokenizer(levels=2, codebook_size=4, balanced=False, iters=3).fit(embeddings)
    plain = make_collision_free(tokenizer.quantizer.encode(embeddings))
    assert int(plain[:, -1].max()) == 10
    assert torch.unique(tokenizer.codes, dim=0).shape[0] == 16
    assert tokenizer.vocab_size == 4
    kept = plain[:, -1] < 4
    assert torch.equal(tokenizer.codes[kept], plain[kept])  # only the rows past the 4th of the group move
    moved = tokenizer.codes[~kept]
    assert (moved[:, 0] == plain[0, 0]).all()  # ... and keep their first-level code


def test_zero_signal_catalogue_keeps_a_small_vocabulary():
    # 300 items, users touch only 0..59: 240 items never co-occur and get identical (zero) embeddings
    generator = torch.Generator().manual_seed(0)
    sequences = [torch.randint(0, 60, (8,), generator=generator).tolist() for _ in range(200)]
    tokenizer = SemanticIDTokenizer.from_sequences(sequences, item_ids=range(300), levels=2, codebook_size=8,
                                                   embedding_dim=8, iters=5)
    embeddings = cooccurrence_embeddings([torch.tensor(s) for s in sequences], 300, 8)
    plain = make_collision_free(tokenizer.quantizer.encode(embeddings))
    assert int(plain[:, -1].max()) >= 16  # balanced k-means alone keeps the zero rows in large groups
    assert tokenizer.vocab_size == 8
    assert torch.unique(tokenizer.codes, dim=0).shape[0] == 300
    assert tokenizer.decode(tokenizer.codes) == list(range(300))
    kept = plain[:, -1] < 8
    assert torch.equal(tokenizer.codes[kept], plain[kept])
    assert (embeddings[~kept].norm(dim=1) == 0).all()  # only zero-signal items moved


def test_spill_without_room_keeps_ids_unique():
    # levels=1: the prefix is the root, with room for K*K = 16 rows; 20 identical rows cannot all fit
    embeddings = torch.ones(20, 4)
    tokenizer = SemanticIDTokenizer(levels=1, codebook_size=4, balanced=False, iters=2).fit(embeddings)
    assert torch.unique(tokenizer.codes, dim=0).shape[0] == 20
    assert tokenizer.vocab_size == 8  # 4 rows past the full root keep suffixes 4..7
    assert tokenizer.lookup(tokenizer.codes).tolist() == list(range(20))


def test_unknown_items_and_bad_input():
    tokenizer = SemanticIDTokenizer(levels=2, codebook_size=4, iters=3).fit(clustered_embeddings(), range(48))
    with pytest.raises(UnknownItemError, match="unknown item id"):
        tokenizer.encode([1, 2, 999])
    with pytest.raises(ValueError, match="unknown item id"):  # callers validating input catch ValueError
        tokenizer.encode([999])
    with pytest.raises(TypeError, match="items must be a sequence"):
        tokenizer.encode(5)
    with pytest.raises(ValueError, match="no item"):
        tokenizer.decode(torch.tensor([[3, 3, 7]]))
    with pytest.raises(ValueError, match="one id per embedding row"):
        SemanticIDTokenizer(levels=2, codebook_size=4).fit(clustered_embeddings(), range(10))
    with pytest.raises(ValueError, match="unique"):
        SemanticIDTokenizer(levels=2, codebook_size=4).fit(clustered_embeddings(), [0] * 48)
    with pytest.raises(RuntimeError, match="not fitted"):
        SemanticIDTokenizer().encode([1])


def test_save_load_round_trip(tmp_path):
    tokenizer = SemanticIDTokenizer(levels=2, codebook_size=4, iters=3).fit(clustered_embeddings(), range(100, 148))
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = SemanticIDTokenizer.from_pretrained(tmp_path / "tok")
    assert torch.equal(loaded.codes, tokenizer.codes)
    assert loaded.item_ids == tokenizer.item_ids
    assert torch.equal(loaded.trie.table, tokenizer.trie.table)
    assert loaded.decode(loaded.encode([147, 100])) == [147, 100]
    with pytest.raises(FileNotFoundError, match="missing"):
        SemanticIDTokenizer.from_pretrained(tmp_path / "nothing")


def test_from_sequences_uses_cooccurrence():
    # two communities of items (0..15 and 16..31): items of one community should share their first token more
    generator = torch.Generator().manual_seed(0)
    sequences = [(torch.randint(0, 16, (6,), generator=generator) + 16 * (u % 2)).tolist() for u in range(300)]
    tokenizer = SemanticIDTokenizer.from_sequences(sequences, item_ids=range(32), levels=2, codebook_size=2,
                                                   embedding_dim=4)
    first = tokenizer.codes[:, 0]
    assert (first[:16] == first[0]).all() and (first[16:] == first[16]).all() and first[0] != first[16]
    with pytest.raises(UnknownItemError, match="not in item_ids"):
        SemanticIDTokenizer.from_sequences([[0, 1, 99]], item_ids=range(32), codebook_size=2)
