"""OneRec-style encoder-decoder over semantic-ID tokens (transformers PreTrainedModel, safetensors checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers import initialization as init

from videoai.tokenize.semantic_ids import PrefixTrie

from .constraints import TrieTargets
from .layers import DecoderLayer, EncoderLayer
from .moe import MoEFeedForward


class OneRecConfig(PretrainedConfig):
    """Sizes of the OneRec model; `num_levels` counts every token of an item's semantic ID (incl. disambiguation)."""

    model_type = "videoai_onerec"

    def __init__(self, num_levels: int = 4, codebook_size: int = 256, session_length: int = 1, max_history: int = 50,
                 d_model: int = 64, num_heads: int = 2, num_encoder_layers: int = 2, num_decoder_layers: int = 2,
                 d_ff: int = 256, num_experts: int = 4, experts_top_k: int = 2, moe_every: int = 1,
                 expert_d_ff: int | None = None, capacity_factor: float = 1.25, moe_dispatch: str = "capacity",
                 dropout: float = 0.2, num_user_buckets: int = 0, context_dim: int = 0,
                 aux_loss_weight: float = 0.01, tie_output: bool = True, initializer_range: float = 0.02,
                 num_items: int = 0, num_prefix_nodes: int = 0, node_levels: int = 2, node_input: bool = False,
                 item_loss_weight: float = 0.0, user_state_input: bool = False, item_score_weight: float = 0.0,
                 **kwargs):
        self.num_levels, self.codebook_size, self.session_length = num_levels, codebook_size, session_length
        self.max_history, self.d_model, self.num_heads = max_history, d_model, num_heads
        self.num_encoder_layers, self.num_decoder_layers, self.d_ff = num_encoder_layers, num_decoder_layers, d_ff
        self.num_experts, self.experts_top_k, self.moe_every = num_experts, experts_top_k, moe_every
        # default: top_k experts of d_ff / top_k each = the active compute of one dense d_ff layer
        self.expert_d_ff = expert_d_ff or max(1, d_ff // max(experts_top_k, 1))
        self.capacity_factor, self.dropout, self.aux_loss_weight = capacity_factor, dropout, aux_loss_weight
        self.moe_dispatch = moe_dispatch  # "capacity" (GShard, scales to many experts) or "dense" (few experts, CPU)
        self.num_user_buckets, self.context_dim, self.tie_output = num_user_buckets, context_dim, tie_output
        self.initializer_range = initializer_range
        # > 0: the encoder also adds a learned embedding of each history item's index to its semantic-ID tokens
        # (hybrid input; the decoder still generates semantic IDs only)
        self.num_items = num_items
        # > 0: learned embeddings of the first `num_prefix_nodes` trie nodes (root and all prefixes of length
        # <= node_levels, see constraints.prefix_node_count); they score each candidate child at the first
        # node_levels levels and are added to the decoder input, giving prefix-specific capacity that the
        # per-level token embeddings (shared by all prefixes) lack. Needs trie_targets in forward/decoding.
        self.num_prefix_nodes, self.node_levels = num_prefix_nodes, node_levels
        # True (needs num_items and num_prefix_nodes > 0): the encoder also adds the prefix-node embeddings on each
        # history item's trie path, the same vectors that score those nodes as outputs (input/output tying, as
        # SASRec ties its item embeddings); the path table comes from OneRecModel.attach_trie
        self.node_input = node_input
        # > 0 (needs node_input): adds this weight x a full softmax over all items, scored from the decoder state
        # that predicts each target item's first token against the item vectors the encoder adds to its history
        # items (item_vectors: item-index + path-node embeddings), as SASRec's tied CE; beam search still decodes
        self.item_loss_weight = item_loss_weight
        # True: every decoder input also adds the encoder's output at the last history item the decoder may see
        # (the causal summary SASRec scores from). Otherwise the first decode step sees the history only through
        # cross-attention from a query that is the same for every user, which cannot single out the latest item.
        # Sequential logs gain (Amazon Beauty NDCG@10 +23%); the demo's taste-only simulated users do not.
        self.user_state_input = user_state_input
        # > 0 (needs num_items): recommend ranks beam-search and item-head candidates by
        # log P(semantic ID) + item_score_weight * log P_head(item) (fusion.fused_top_k)
        self.item_score_weight = item_score_weight
        super().__init__(**kwargs)


@dataclass
class OneRecOutput:
    """loss = token_loss + aux_loss_weight * aux_loss (+ item_loss_weight * item_loss when computed); logits
    (B, R, S, V) over each step's level vocabulary."""

    loss: torch.Tensor | None
    token_loss: torch.Tensor | None
    aux_loss: torch.Tensor
    logits: torch.Tensor
    item_loss: torch.Tensor | None = None


@dataclass
class DecoderState:
    """Incremental decoding state for B users x K beams: cross-attention K/V per layer and self-attention caches."""

    memory_kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (B, H, T+1, D/H)
    memory_mask: torch.Tensor  # (B, 1, 1, T+1)
    caches: list[list]  # per layer [keys, values] (B*K, H, steps, D/H)
    num_beams: int
    step: int = 0
    user_state: torch.Tensor | None = None  # (B, 1, 1, D) added to every decoder input (config.user_state_input)

    def reorder(self, beam_index: torch.Tensor) -> None:
        """Keep, for each user, the cache rows of the chosen parent beams; beam_index (B, K)."""
        batch, beams = beam_index.shape
        for cache in self.caches:
            for i in range(2):
                rows = cache[i].view(batch, beams, *cache[i].shape[1:])  # (B, K, H, s, d)
                index = beam_index.view(batch, beams, 1, 1, 1).expand(-1, -1, *rows.shape[2:])
                cache[i] = rows.gather(1, index).view_as(cache[i])


class OneRecModel(PreTrainedModel):
    """Causal encoder over history items + decoder generating a session of M items x L semantic-ID tokens."""

    config_class = OneRecConfig
    base_model_prefix = "onerec"
    main_input_name = "history_codes"

    def __init__(self, config: OneRecConfig):
        super().__init__(config)
        d, levels, vocab = config.d_model, config.num_levels, config.codebook_size
        self.token_embedding = nn.Embedding(levels * vocab, d)  # one table per level, stacked
        self.history_position = nn.Embedding(config.max_history, d)
        self.item_embedding = nn.Embedding(config.num_items, d) if config.num_items else None
        self.prefix = nn.Parameter(torch.zeros(d))  # always-visible memory slot (user / context / global)
        self.user_embedding = nn.Embedding(config.num_user_buckets, d) if config.num_user_buckets else None
        self.context_proj = nn.Linear(config.context_dim, d) if config.context_dim else None
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(d, config.num_heads, config.d_ff, config.dropout) for _ in range(config.num_encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.bos = nn.Parameter(torch.zeros(d))
        self.step_position = nn.Embedding(config.session_length * levels, d)
        self.node_embedding = nn.Embedding(config.num_prefix_nodes, d) if config.num_prefix_nodes else None
        if config.node_input and not (config.num_items and config.num_prefix_nodes):
            raise ValueError(f"node_input=True needs num_items > 0 and num_prefix_nodes > 0, got num_items="
                             f"{config.num_items}, num_prefix_nodes={config.num_prefix_nodes}")
        if config.item_loss_weight and not config.node_input:
            raise ValueError(f"item_loss_weight={config.item_loss_weight} needs node_input=True (item vectors are "
                             "composed from each item's path-node embeddings)")
        if config.node_input:  # trie nodes on each item's path (depth 1..L), -1 = none; saved with the weights
            self.register_buffer("item_nodes", torch.full((config.num_items, levels), -1, dtype=torch.long))
        self._item_nodes_filled = False  # host-side cache of has_item_nodes(), so encode does not sync every call
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(d, config.num_heads, config.d_ff, config.dropout,
                         num_experts=config.num_experts if (i + 1) % max(config.moe_every, 1) == 0 else 0,
                         top_k=config.experts_top_k, capacity_factor=config.capacity_factor,
                         expert_d_ff=config.expert_d_ff, dispatch=config.moe_dispatch)
            for i in range(config.num_decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)
        self.output = None if config.tie_output else nn.Linear(d, levels * vocab, bias=False)
        self.drop = nn.Dropout(config.dropout)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, OneRecModel):
            init.normal_(module.prefix, std=std)
            init.normal_(module.bos, std=std)
        elif isinstance(module, MoEFeedForward):
            for param in (module.w_in, module.w_out):
                init.normal_(param, std=std)
            for param in (module.b_in, module.b_out):
                init.zeros_(param)

    @torch.no_grad()
    def attach_trie(self, trie) -> "OneRecModel":
        """Fill the item -> path-node table used by node_input from a PrefixTrie over this model's items."""
        from .constraints import TrieTables

        if not self.config.node_input:
            raise ValueError("attach_trie: this model has config.node_input=False (no path-node input to fill)")
        codes = trie.codes.to(self.item_nodes.device)
        if codes.shape != self.item_nodes.shape:
            raise ValueError(f"attach_trie: the trie has codes of shape {tuple(codes.shape)}, expected "
                             f"(num_items, num_levels) = {tuple(self.item_nodes.shape)}")
        tables = TrieTables.of(trie, self.config.codebook_size, codes.device)
        before = tables.paths(codes)  # (N, L): node before each token
        leaf = tables.children[before[:, -1], codes[:, -1]]  # (N,)
        self.item_nodes.copy_(torch.cat([before[:, 1:], leaf[:, None]], 1))  # (N, L): node after each token
        self._item_nodes_filled = True
        return self

    def has_item_nodes(self) -> bool:
        """Whether item_nodes holds trie paths (from attach_trie or loaded weights); read from the device once."""
        if not self._item_nodes_filled:
            self._item_nodes_filled = bool((self.item_nodes[:, 0] >= 0).any())
        return self._item_nodes_filled

    # ---- encoder -------------------------------------------------------------------------------------------------
    def embed_items(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., L) -> item vectors (...,  D): sum of the per-level token embeddings."""
        offsets = torch.arange(codes.shape[-1], device=codes.device) * self.config.codebook_size
        return self.token_embedding(codes + offsets).sum(-2)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """Item indices (...) -> (..., D): item-index embedding (+ the prefix-node embeddings on the item's trie path
        with node_input). The encoder adds them to each history item; the item-level loss scores them as outputs."""
        vectors = self.item_embedding(items)  # (..., D)
        if self.config.node_input:
            if not self.has_item_nodes():
                raise ValueError("this model has config.node_input=True: call model.attach_trie(trie) first")
            nodes = self.item_nodes[items]  # (..., L)
            known = (nodes >= 0) & (nodes < self.config.num_prefix_nodes)
            path = self.node_embedding(nodes.clamp(0, self.config.num_prefix_nodes - 1)) * known[..., None]
            vectors = vectors + path.sum(-2)  # (..., D)
        return vectors

    def item_loss(self, hidden: torch.Tensor, target_items: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over all items of each target item (B, R, M) (-1 = none) scored from the decoder states
        hidden (B, R, S, D) that predict its first token: logit(item) = h . item_vectors(item)."""
        first = hidden[..., ::self.config.num_levels, :]  # (B, R, M, D)
        valid = target_items >= 0
        vectors = self.item_vectors(torch.arange(self.config.num_items, device=hidden.device))  # (N, D)
        logits = first[valid] @ vectors.T  # (n, N), real targets only
        return F.cross_entropy(logits.float(), target_items[valid])

    def encode(self, history_codes: torch.Tensor, history_mask: torch.Tensor, user_ids: torch.Tensor | None = None,
               context: torch.Tensor | None = None, history_items: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """history_codes (B, T, L) left-padded, history_mask (B, T) -> memory (B, T+1, D), memory_mask (B, T+1).

        history_items (B, T) item indices are used only when config.num_items > 0 (and then required).
        """
        batch, length, _ = history_codes.shape
        if length > self.config.max_history:
            raise ValueError(f"history_codes has {length} positions, more than config.max_history="
                             f"{self.config.max_history}: keep the most recent items (the collators do)")
        codes = history_codes.clamp_min(0)
        positions = torch.arange(self.config.max_history - length, self.config.max_history, device=codes.device)
        items = self.embed_items(codes) + self.history_position(positions)  # (B, T, D), right-aligned positions
        if self.item_embedding is not None:
            if history_items is None:
                raise ValueError("this model has config.num_items > 0: pass history_items (B, T) item indices")
            items = items + self.item_vectors(history_items.clamp(0, self.config.num_items - 1))
        items = items * history_mask[..., None]
        prefix = self.prefix.expand(batch, 1, -1)  # (B, 1, D)
        if self.user_embedding is not None and user_ids is not None:
            prefix = prefix + self.user_embedding(user_ids % self.config.num_user_buckets)[:, None]
        if self.context_proj is not None and context is not None:
            prefix = prefix + self.context_proj(context)[:, None]
        x = self.drop(torch.cat([prefix, items], 1))  # (B, T+1, D)
        memory_mask = torch.cat([history_mask.new_ones(batch, 1), history_mask], 1)  # (B, T+1)
        causal = torch.ones(length + 1, length + 1, dtype=torch.bool, device=x.device).tril()
        mask = causal & memory_mask[:, None, None, :]  # (B, 1, T+1, T+1); key 0 keeps every row non-empty
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x), memory_mask

    # ---- decoder -------------------------------------------------------------------------------------------------
    def step_logits(self, hidden: torch.Tensor, steps: torch.Tensor, trie: TrieTargets | None = None) -> torch.Tensor:
        """hidden (..., S, D) at decode steps `steps` (S,) -> logits (..., S, V) over each step's level tokens.

        With trie targets the first node_levels levels add h . node_embedding[child] per candidate child, and
        tokens off the trie get -inf (softmax over valid children only).
        """
        levels, vocab = self.config.num_levels, self.config.codebook_size
        weight = self.token_embedding.weight if self.output is None else self.output.weight
        weight = weight.view(levels, vocab, -1)[steps % levels]  # (S, V, D)
        logits = torch.einsum("...sd,svd->...sv", hidden, weight)
        if trie is None:
            if self.node_embedding is not None:
                raise ValueError("this model has prefix-node embeddings (config.num_prefix_nodes > 0): pass trie "
                                 "targets (TrieTables.targets / trie_targets) so candidate children are known")
            return logits
        children = trie.child_nodes  # (..., S, V)
        if self.node_embedding is not None:
            for step in ((steps % levels) < self.config.node_levels).nonzero().flatten().tolist():
                node_term = self._node_term(hidden[..., step, :], children[..., step, :])  # (..., V)
                if node_term is not None:
                    logits = logits.index_add(-2, steps.new_tensor([step]), node_term[..., None, :].to(logits.dtype))
        return logits.masked_fill(children < 0, float("-inf")) if trie.constrain else logits

    def _node_term(self, hidden: torch.Tensor, child: torch.Tensor) -> torch.Tensor | None:
        """hidden (..., D) . node_embedding[child] for child nodes (..., V) (0 where unknown); None if none known.

        Children of one level are a contiguous id range (nodes are numbered by depth), so shallow levels score
        against that range only; deep levels, where nearly every node has one child, gather just the valid pairs.
        """
        known = (child >= 0) & (child < self.config.num_prefix_nodes)  # (..., V)
        pairs = known.nonzero(as_tuple=True)
        if not pairs[0].numel():
            return None
        valid = child[pairs]  # (nnz,)
        low, high = int(valid.min()), int(valid.max())
        rows, width = known[..., 0].numel(), high - low + 1
        weight = self.node_embedding.weight
        if pairs[0].numel() * hidden.shape[-1] < rows * width:  # few pairs: gather them (nnz x D) instead
            term = (hidden[pairs[:-1]] * weight[valid]).sum(-1)  # (nnz,)
            return hidden.new_zeros(child.shape).index_put(pairs, term)
        scores = hidden @ weight[low:high + 1].T  # (..., width)
        return scores.gather(-1, (child - low).clamp(0, width - 1)) * known

    def embed_steps(self, previous: torch.Tensor | None, steps: torch.Tensor, batch_shape,
                    prefix_nodes: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder inputs for `steps` (S,): BOS at step 0, else the previous token (..., S) of level (step-1) % L;
        plus the embedding of the trie node reached so far (..., S) when the model has prefix-node embeddings."""
        levels, vocab = self.config.num_levels, self.config.codebook_size
        x = self.bos.expand(*batch_shape, 1, -1) + self.step_position(steps)
        if previous is not None:
            tokens = self.token_embedding(previous + ((steps - 1).clamp_min(0) % levels) * vocab)  # (..., S, D)
            x = torch.where((steps == 0)[:, None], x, tokens + self.step_position(steps))
        if self.node_embedding is not None and prefix_nodes is not None:
            num_nodes = self.config.num_prefix_nodes
            known = (prefix_nodes >= 0) & (prefix_nodes < num_nodes)
            x = x + self.node_embedding(prefix_nodes.clamp(0, num_nodes - 1)) * known[..., None]
        return x

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention keys/values of each decoder layer, computed once per user."""
        return [layer.cross_attn.project_kv(memory) for layer in self.decoder_layers]

    def decode(self, memory: torch.Tensor, memory_mask: torch.Tensor, target_codes: torch.Tensor,
               row_positions: torch.Tensor, target_mask: torch.Tensor | None = None,
               prefix_nodes: torch.Tensor | None = None):
        """Teacher-forced decoder over rows of target sessions.

        memory (B, T+1, D); target_codes (B, R, M, L); row_positions (R,) memory index each row may see up to
        (history position t predicts the session after item t); target_mask (B, R, M). Returns (hidden (B,R,S,D), aux).
        """
        batch, rows, session, levels = target_codes.shape
        steps = session * levels
        tokens = target_codes.clamp_min(0).reshape(batch, rows, steps)  # (B, R, S)
        step_ids = torch.arange(steps, device=tokens.device)
        previous = torch.cat([tokens.new_zeros(batch, rows, 1), tokens[..., :-1]], -1)  # shift right
        x = self.embed_steps(previous, step_ids, (batch, rows), prefix_nodes)  # (B, R, S, D)
        if self.config.user_state_input:
            x = x + memory[:, row_positions, None]  # (B, R, 1, D): encoder output at each row's last visible item
        x = self.drop(x)
        visible = torch.arange(memory.shape[1], device=memory.device)[None, :] <= row_positions[:, None]  # (R, T+1)
        cross_mask = visible.repeat_interleave(steps, 0)[None, None] & memory_mask[:, None, None, :]  # (B,1,R*S,T+1)
        token_mask = None
        if target_mask is not None:
            token_mask = target_mask[..., None].expand(-1, -1, -1, levels).reshape(batch, rows, steps)
        aux_loss = memory.new_zeros(())
        for layer, kv in zip(self.decoder_layers, self.memory_kv(memory)):
            x, aux = layer(x, kv, cross_mask, token_mask)
            aux_loss = aux_loss + aux
        return self.decoder_norm(x), aux_loss

    def forward(self, history_codes: torch.Tensor, history_mask: torch.Tensor, target_codes: torch.Tensor,
                target_mask: torch.Tensor | None = None, user_ids: torch.Tensor | None = None,
                context: torch.Tensor | None = None, every_position: bool = True,
                trie_targets: TrieTargets | None = None, history_items: torch.Tensor | None = None,
                target_items: torch.Tensor | None = None) -> OneRecOutput:
        """Next-session token loss.

        every_position=True: target_codes (B, T, M, L) holds, for every history position t, the M items after t
        (teacher forcing at each position, SASRec-style). False: target_codes (B, R, M, L) are R sessions that all
        follow the whole history (e.g. chosen/rejected sessions). target_mask (B, R|T, M) marks real target items.
        trie_targets (TrieTables.targets of target_codes) gives constrained training: every softmax runs over the
        children the trie allows (the returned logits are -inf elsewhere); required with prefix-node embeddings.
        target_items (B, R|T, M) item indices of the targets (-1 = none): with config.item_loss_weight > 0 the loss
        adds the item-level full softmax (item_loss); without them it is not computed.
        """
        memory, memory_mask = self.encode(history_codes, history_mask, user_ids, context, history_items)
        rows, length = target_codes.shape[1], history_codes.shape[1]
        if every_position:
            row_positions = torch.arange(1, length + 1, device=memory.device)
        else:
            row_positions = torch.full((rows,), length, device=memory.device)
        prefix_nodes = None if trie_targets is None else trie_targets.prefix_nodes
        hidden, aux_loss = self.decode(memory, memory_mask, target_codes, row_positions, target_mask, prefix_nodes)
        steps = torch.arange(hidden.shape[2], device=hidden.device)
        logits = self.step_logits(hidden, steps, trie_targets)  # (B, R, S, V)
        labels = target_codes.flatten(2)  # (B, R, S)
        if target_mask is not None:
            valid = target_mask[..., None].expand_as(target_codes).reshape_as(labels)
            labels = torch.where(valid, labels, torch.full_like(labels, -100))
        token_loss = F.cross_entropy(logits.flatten(0, 2).float(), labels.flatten(), ignore_index=-100)
        loss = token_loss + self.config.aux_loss_weight * aux_loss
        item_loss = None
        if self.config.item_loss_weight and target_items is not None:
            item_loss = self.item_loss(hidden, target_items)
            loss = loss + self.config.item_loss_weight * item_loss
        return OneRecOutput(loss=loss, token_loss=token_loss, aux_loss=aux_loss, logits=logits, item_loss=item_loss)

    def session_log_prob(self, history_codes: torch.Tensor, history_mask: torch.Tensor, session_codes: torch.Tensor,
                         user_ids: torch.Tensor | None = None, context: torch.Tensor | None = None,
                         trie_targets: TrieTargets | None = None, history_items: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """Sum of token log-probabilities of R sessions (B, R, M, L) following the whole history -> (B, R).

        With trie_targets this is the trie-constrained log-probability (= constrained beam-search scores).
        """
        memory, memory_mask = self.encode(history_codes, history_mask, user_ids, context, history_items)
        return self.score_sessions(memory, memory_mask, session_codes, trie_targets)

    def score_sessions(self, memory: torch.Tensor, memory_mask: torch.Tensor, session_codes: torch.Tensor,
                       trie_targets: TrieTargets | None = None) -> torch.Tensor:
        """session_log_prob from the encoder's output (encode once, score several sets of sessions): memory
        (B, T+1, D), memory_mask (B, T+1), sessions (B, R, M, L) that follow the whole history -> (B, R)."""
        rows = torch.full((session_codes.shape[1],), memory.shape[1] - 1, device=memory.device)  # (R,)
        prefix = None if trie_targets is None else trie_targets.prefix_nodes
        hidden, _ = self.decode(memory, memory_mask, session_codes, rows, None, prefix)  # (B, R, S, D)
        logits = self.step_logits(hidden, torch.arange(hidden.shape[2], device=hidden.device), trie_targets)
        labels = session_codes.flatten(2)[..., None]  # (B, R, S, 1)
        return logits.float().log_softmax(-1).gather(-1, labels).squeeze(-1).sum(-1)

    def item_log_probs(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Log-softmax over all items (B, N) of the item head from the encoder's output memory (B, T+1, D): the
        decoder state that predicts the next item's first token, dotted with item_vectors (the scores item_loss
        trains; SASRec-style full-catalogue ranking)."""
        if not self.config.num_items:
            raise ValueError("item_log_probs needs item vectors: this model has config.num_items = 0")
        batch = memory.shape[0]
        bos = torch.zeros(batch, 1, 1, 1, dtype=torch.long, device=memory.device)  # (B, R=1, M=1, L=1): BOS only
        row = torch.full((1,), memory.shape[1] - 1, device=memory.device)  # the whole history
        root = torch.full((batch, 1, 1), PrefixTrie.root, dtype=torch.long, device=memory.device)  # (B, 1, S=1)
        hidden, _ = self.decode(memory, memory_mask, bos, row, None, root)  # (B, 1, 1, D)
        vectors = self.item_vectors(torch.arange(self.config.num_items, device=hidden.device))  # (N, D)
        return (hidden[:, 0, 0] @ vectors.T).float().log_softmax(-1)  # (B, N)

    # ---- incremental decoding (used by beam search) ---------------------------------------------------------------
    def start_decoding(self, memory: torch.Tensor, memory_mask: torch.Tensor, num_beams: int) -> DecoderState:
        """Prepare KV caches for B users x `num_beams` beams."""
        return DecoderState(memory_kv=self.memory_kv(memory), memory_mask=memory_mask[:, None, None, :],
                            caches=[[None, None] for _ in self.decoder_layers], num_beams=num_beams,
                            user_state=memory[:, -1, None, None] if self.config.user_state_input else None)

    def decode_step(self, state: DecoderState, previous: torch.Tensor | None,
                    trie: TrieTargets | None = None) -> torch.Tensor:
        """One decode step for all beams -> logits (B, K, V).

        previous (B, K): tokens of the last step (None at step 0); trie: the beams' current nodes (B, K) and their
        children (B, K, V) (TrieTables.step_children): logits off the trie are -inf, prefix-node embeddings apply.
        """
        batch, beams = state.memory_mask.shape[0], state.num_beams
        step = torch.tensor([state.step], device=state.memory_mask.device)
        step_trie = None if trie is None else TrieTargets(trie.prefix_nodes[..., None], trie.child_nodes[..., None, :],
                                                               trie.constrain)
        x = self.embed_steps(None if previous is None else previous[..., None], step, (batch, beams),
                             None if trie is None else step_trie.prefix_nodes)  # (B, K, 1, D)
        if state.user_state is not None:
            x = x + state.user_state  # left-padded histories: memory[:, -1] is the latest item's output
        for layer, kv, cache in zip(self.decoder_layers, state.memory_kv, state.caches):
            x, _ = layer(x, kv, state.memory_mask, None, cache)
        logits = self.step_logits(self.decoder_norm(x), step, step_trie)[:, :, 0]  # (B, K, V)
        state.step += 1
        return logits.float()
