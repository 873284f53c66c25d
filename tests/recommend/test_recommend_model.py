import pytest
import torch

from videoai.recommend import OneRecModel


def random_batch(item_codes, batch=3, length=5, session=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(0, item_codes.shape[0], (batch, length + session), generator=generator)
    history = item_codes[items[:, :length]]
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, :2] = False  # left padding
    history[~mask] = 0
    targets = item_codes[items[:, 1:length + session].unfold(1, session, 1)]  # (B, T, M, L)
    return history, mask, targets, mask[..., None].expand(-1, -1, session)


def test_forward_loss_and_every_position_causality(model, item_codes):
    history, mask, targets, target_mask = random_batch(item_codes)
    out = model(history, mask, targets, target_mask)
    assert out.logits.shape == (3, 5, 3, 8)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.aux_loss > 0
    # changing the last history item must not change the predictions made at earlier positions
    changed = history.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 4
    out2 = model(changed, mask, targets, target_mask)
    assert torch.allclose(out.logits[:, :-1], out2.logits[:, :-1], atol=1e-5)
    assert not torch.allclose(out.logits[:, -1], out2.logits[:, -1], atol=1e-5)


def test_padding_does_not_leak(model, item_codes):
    history, mask, targets, target_mask = random_batch(item_codes)
    garbage = history.clone()
    garbage[0, :2] = 5  # codes under padding
    a = model(history, mask, targets, target_mask).logits[0, 2:]
    b = model(garbage, mask, targets, target_mask).logits[0, 2:]
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("user_state_input", [False, True])
def test_kv_cache_decoding_matches_teacher_forcing(item_codes, make_config, user_state_input):
    torch.manual_seed(0)
    model = OneRecModel(make_config(session_length=2, user_state_input=user_state_input)).eval()
    history, mask, _, _ = random_batch(item_codes)
    sessions = item_codes[torch.tensor([[3, 7], [1, 2], [0, 39]])][:, None]  # (B, 1, M=2, L)
    expected = model.session_log_prob(history, mask, sessions)[:, 0]  # (B,)
    memory, memory_mask = model.encode(history, mask)
    state = model.start_decoding(memory, memory_mask, num_beams=1)
    tokens = sessions.reshape(3, -1)
    total, previous = torch.zeros(3), None
    for step in range(tokens.shape[1]):
        log_probs = model.decode_step(state, previous).log_softmax(-1)  # (B, 1, V)
        total += log_probs[:, 0].gather(1, tokens[:, step:step + 1])[:, 0]
        previous = tokens[:, step:step + 1]
    assert torch.allclose(total, expected, atol=1e-4)


def test_save_load_round_trip(tmp_path, model, item_codes):
    history, mask, targets, target_mask = random_batch(item_codes)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "config.json").is_file()
    loaded = OneRecModel.from_pretrained(tmp_path / "m", local_files_only=True).eval()
    assert loaded.config.num_experts == 4 and loaded.config.codebook_size == 8
    assert torch.allclose(model(history, mask, targets, target_mask).logits,
                          loaded(history, mask, targets, target_mask).logits, atol=1e-6)


def test_user_and_context_features(item_codes, make_config):
    torch.manual_seed(0)
    model = OneRecModel(make_config(num_user_buckets=10, context_dim=3)).eval()
    history, mask, targets, target_mask = random_batch(item_codes)
    a = model(history, mask, targets, target_mask, user_ids=torch.tensor([1, 2, 3]), context=torch.zeros(3, 3))
    b = model(history, mask, targets, target_mask, user_ids=torch.tensor([4, 5, 6]), context=torch.ones(3, 3))
    assert not torch.allclose(a.logits, b.logits)


def test_item_index_embedding(item_codes, trie, make_config):
    from videoai.recommend import beam_search

    torch.manual_seed(0)
    model = OneRecModel(make_config(num_items=40)).eval()
    items = torch.randint(0, 40, (3, 5))
    history, mask = item_codes[items], torch.ones(3, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="history_items"):
        model.encode(history, mask)
    memory, _ = model.encode(history, mask, history_items=items)
    other, _ = model.encode(history, mask, history_items=(items + 1) % 40)
    assert not torch.allclose(memory[:, 1:], other[:, 1:])
    out = beam_search(model, history, mask, trie, num_beams=4, history_items=items)
    assert (out.items >= 0).all()


def test_bad_config(make_config):
    with pytest.raises(ValueError, match="divisible"):
        OneRecModel(make_config(d_model=15))


@pytest.mark.parametrize("node_levels", [1, 2, 3])
def test_node_scores_equal_the_dense_formula(make_config, item_codes, trie, node_levels):
    """Ranged / sparse scoring of prefix-node children == hidden . node_embedding[child] for every child."""
    from videoai.recommend import prefix_node_count, trie_targets

    torch.manual_seed(0)
    model = OneRecModel(make_config(num_prefix_nodes=prefix_node_count(trie, node_levels), node_levels=node_levels))
    torch.nn.init.normal_(model.node_embedding.weight, std=0.5)
    targets = trie_targets(trie, model, item_codes[None, :, None])  # (1, N, 1, L): every item
    hidden = torch.randn(1, item_codes.shape[0], 3, 16)  # (B, R, S, D)
    steps = torch.arange(3)
    logits = model.step_logits(hidden, steps, targets)
    weight = model.token_embedding.weight.view(3, 8, 16)
    expected = torch.einsum("brsd,svd->brsv", hidden, weight)
    child = targets.child_nodes
    known = (child >= 0) & (child < model.config.num_prefix_nodes)
    node = (hidden[..., None, :] * model.node_embedding.weight[child.clamp(0, model.config.num_prefix_nodes - 1)]
            ).sum(-1) * known * (steps < node_levels)[:, None]
    expected = (expected + node).masked_fill(child < 0, float("-inf"))
    assert torch.allclose(logits, expected, atol=1e-5)


def test_node_input_ties_path_nodes_into_the_encoder(make_config, item_codes, trie, tmp_path):
    from videoai.recommend import EvalCollator, beam_search, prefix_node_count

    num_items = item_codes.shape[0]
    config = make_config(num_items=num_items, num_prefix_nodes=prefix_node_count(trie, 3), node_levels=3,
                         node_input=True)
    torch.manual_seed(0)
    model = OneRecModel(config).eval()
    batch = EvalCollator(item_codes, 6)([(torch.arange(i, i + 5), -1) for i in range(3)])
    args = batch["history_codes"], batch["history_mask"]
    with pytest.raises(ValueError, match="attach_trie"):
        model.encode(*args, history_items=batch["history_items"])
    model.attach_trie(trie)
    leaves = model.item_nodes[:, -1]
    assert len(set(leaves.tolist())) == num_items  # the last path node is the item's own leaf
    assert torch.equal(trie.lookup(item_codes), torch.arange(num_items))
    memory, _ = model.encode(*args, history_items=batch["history_items"])
    torch.nn.init.normal_(model.node_embedding.weight, std=0.5)  # tied: the node vectors move the encoder too
    assert not torch.allclose(model.encode(*args, history_items=batch["history_items"])[0], memory)
    out = beam_search(model, *args, trie, num_beams=5, history_items=batch["history_items"])
    model.save_pretrained(tmp_path)
    loaded = OneRecModel.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.item_nodes, model.item_nodes)
    again = beam_search(loaded, *args, trie, num_beams=5, history_items=batch["history_items"])
    assert torch.equal(again.items, out.items) and torch.allclose(again.scores, out.scores)
    with pytest.raises(ValueError, match="node_input"):
        OneRecModel(make_config(node_input=True))


def test_item_loss_is_a_full_softmax_over_tied_item_vectors(make_config, item_codes, trie):
    """item_loss == cross-entropy of h(first-token state) . (item emb + path-node embs) over all items; weight 0
    leaves the loss as it was; the term also trains the encoder and the tied vectors."""
    from videoai.recommend import NextItemCollator, prefix_node_count, trie_targets

    num_items = item_codes.shape[0]
    config = dict(num_items=num_items, num_prefix_nodes=prefix_node_count(trie, 3), node_levels=3, node_input=True)
    with pytest.raises(ValueError, match="node_input"):
        OneRecModel(make_config(item_loss_weight=0.5))
    batch = NextItemCollator(item_codes)([torch.tensor([3, 7, 1, 9]), torch.tensor([5, 2, 8])])
    args = (batch["history_codes"], batch["history_mask"], batch["target_codes"], batch["target_mask"])
    targets = trie_targets(trie, OneRecModel(make_config(**config)), batch["target_codes"])

    def run(weight):
        torch.manual_seed(0)
        model = OneRecModel(make_config(item_loss_weight=weight, **config)).attach_trie(trie).eval()
        return model, model(*args, trie_targets=targets, history_items=batch["history_items"],
                            target_items=batch["target_items"])

    model, out = run(0.5)
    base_model, base = run(0.0)
    assert base.item_loss is None and torch.equal(base.loss, base.token_loss + 0.01 * base.aux_loss)
    assert torch.allclose(out.token_loss, base.token_loss)
    assert torch.allclose(out.loss, base.loss + 0.5 * out.item_loss)
    # by hand: the state at step 0 (BOS) of each real target, scored against every item's composed vector
    memory, memory_mask = model.encode(batch["history_codes"], batch["history_mask"],
                                       history_items=batch["history_items"])
    hidden, _ = model.decode(memory, memory_mask, batch["target_codes"], torch.arange(1, memory.shape[1]),
                             batch["target_mask"], targets.prefix_nodes)  # (B, T, L, D)
    nodes = model.item_nodes  # (N, L), every node known (node_levels = L)
    vectors = model.item_embedding.weight + model.node_embedding.weight[nodes].sum(1)  # (N, D)
    real = batch["target_items"][..., 0] >= 0  # (B, T)
    expected = torch.nn.functional.cross_entropy(hidden[:, :, 0][real] @ vectors.T, batch["target_items"][..., 0][real])
    assert torch.allclose(out.item_loss, expected, atol=1e-5)
    out.item_loss.backward()
    encoder_grad = sum(p.grad.abs().sum() for p in model.encoder_layers.parameters() if p.grad is not None)
    assert model.item_embedding.weight.grad.abs().sum() > 0 and encoder_grad > 0
