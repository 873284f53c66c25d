"""Batched beam search over semantic-ID tokens, constrained by a prefix trie so every item is a real one."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .constraints import TrieTables, TrieTargets


@dataclass
class BeamSearchOutput:
    """Beams, best first: items (B, K, M) item indices (-1: invalid/dead beam), codes (B, K, M, L), scores (B, K)."""

    items: torch.Tensor
    codes: torch.Tensor
    scores: torch.Tensor


def _blocked_leaves(nodes: torch.Tensor, parents: torch.Tensor, last_tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """nodes (B, K); excluded items as parents/last_tokens (B, K|1, S) -> (B, K, V) bias, -inf where excluded."""
    hit = (parents == nodes[..., None]).float()  # (B, K, S)
    last_tokens = last_tokens.expand(-1, nodes.shape[1], -1)
    count = hit.new_zeros(*nodes.shape, vocab).scatter_add_(2, last_tokens, hit)  # duplicates add up
    return count.masked_fill(count > 0, float("-inf"))


@torch.no_grad()
def beam_search(model, history_codes: torch.Tensor, history_mask: torch.Tensor, trie, *, num_beams: int = 10,
                session_length: int | None = None, constrained: bool = True, exclude_codes: torch.Tensor | None = None,
                exclude_mask: torch.Tensor | None = None, exclude_repeats: bool = True,
                user_ids: torch.Tensor | None = None, context: torch.Tensor | None = None,
                history_items: torch.Tensor | None = None,
                encoded: tuple[torch.Tensor, torch.Tensor] | None = None) -> BeamSearchOutput:
    """Generate `num_beams` sessions of M items x L tokens for each of B users at once.

    history_codes (B, T, L), history_mask (B, T). With constrained=True, tokens that leave the trie get -inf, so
    every finished item is a real item; exclude_codes (B, S, L) / exclude_mask (B, S) are items (e.g. the history)
    whose leaf tokens are masked at the last level; exclude_repeats also masks items already in the beam's session.
    constrained=False decodes freely (items not in the catalogue come back as -1); exclusions need the trie walk
    and are ignored then. Scores are summed log-probabilities: with constrained=True under the trie-renormalised
    softmax (= model.session_log_prob with the trie bias), else under the full softmax. `trie` is a
    videoai.tokenize PrefixTrie. encoded: (memory, memory_mask) that model.encode already gave for these histories
    (e.g. shared with the fused ranking), used instead of encoding again. The only Python loop is over the M*L
    decode steps.
    """
    levels, vocab = model.config.num_levels, model.config.codebook_size
    session_length = session_length or model.config.session_length
    batch, beams, steps = history_codes.shape[0], num_beams, session_length * levels
    device = history_codes.device
    tables = TrieTables.of(trie, vocab, device)
    uses_nodes = getattr(model, "node_embedding", None) is not None  # the trie position is a model input then
    memory, memory_mask = encoded or model.encode(history_codes, history_mask, user_ids, context, history_items)
    state = model.start_decoding(memory, memory_mask, beams)

    scores = torch.full((batch, beams), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one so the first step yields distinct tokens
    tokens = torch.zeros(batch, beams, steps, dtype=torch.long, device=device)
    nodes = torch.full((batch, beams), tables.root, dtype=torch.long, device=device)
    # excluded leaves as (parent node, last token): history items per user (B, 1, S), session items per beam
    seen_parents = seen_tokens = None
    if constrained and exclude_codes is not None and exclude_codes.shape[1] > 0:
        seen_parents = tables.leaf_parents(exclude_codes.clamp_min(0))  # (B, S)
        if exclude_mask is not None:
            seen_parents = seen_parents.masked_fill(~exclude_mask, -2)  # -2 matches no node
        seen_parents, seen_tokens = seen_parents[:, None], exclude_codes[:, None, :, -1].clamp_min(0)
    session_parents = torch.empty(batch, beams, 0, dtype=torch.long, device=device)
    session_tokens = session_parents.clone()

    previous = None
    for step in range(steps):
        level = step % levels
        trie_step = None
        if constrained or uses_nodes:
            # dead beams (-inf score, node -1) look up the root when constrained: finite logits, no NaN
            current = nodes.clamp_min(0) if constrained else nodes
            trie_step = TrieTargets(current, tables.step_children(current), constrain=constrained)
        # constrained: softmax over the trie's valid children only, as in constrained training
        log_probs = model.decode_step(state, previous, trie_step).log_softmax(-1)  # (B, K, V)
        if constrained and level == levels - 1:
            # exclusions only remove items, they do not renormalise (scores stay equal to session_log_prob)
            if seen_parents is not None:
                log_probs = log_probs + _blocked_leaves(nodes, seen_parents, seen_tokens, vocab)
            if session_parents.shape[-1] > 0:
                log_probs = log_probs + _blocked_leaves(nodes, session_parents, session_tokens, vocab)
        candidates = (scores[..., None] + log_probs).view(batch, beams * vocab)  # (B, K*V)
        scores, flat = candidates.topk(beams, dim=-1)  # (B, K)
        parent, token = flat // vocab, flat % vocab
        state.reorder(parent)
        tokens = tokens.gather(1, parent[..., None].expand_as(tokens))
        tokens[:, :, step] = token
        if constrained or uses_nodes:
            nodes = nodes.gather(1, parent)
            if session_parents.shape[-1] > 0:
                index = parent[..., None].expand_as(session_parents)
                session_parents, session_tokens = session_parents.gather(1, index), session_tokens.gather(1, index)
            if level == levels - 1:  # item finished: back to the root for the next item of the session
                if exclude_repeats and step + 1 < steps:
                    session_parents = torch.cat([session_parents, nodes[..., None]], -1)
                    session_tokens = torch.cat([session_tokens, token[..., None]], -1)
                nodes = torch.full_like(nodes, tables.root)
            else:  # dead (-inf) or, unconstrained, off-trie beams hold -1
                nodes = tables.child(nodes, token)  # -1 stays -1
        previous = token
    codes = tokens.view(batch, beams, session_length, levels)
    items = trie.lookup(codes.reshape(-1, levels)).view(batch, beams, session_length)  # (B, K, M)
    items = items.masked_fill(scores.isneginf()[..., None], -1)
    return BeamSearchOutput(items=items, codes=codes, scores=scores)
