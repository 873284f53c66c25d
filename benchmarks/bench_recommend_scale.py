"""Cost of the OneRec recommender as the catalogue grows: synthetic logs at 10k, 100k and 1M items.

For each size: semantic-ID fit time and peak memory (SemanticIDTokenizer.from_sequences, split into its
co-occurrence embeddings / residual k-means fit / encode / disambiguation (+ spill) / trie steps), training seq/s
(train_onerec on model_for_tokenizer for a few steps), constrained beam-search ms/user at batch 256 and batch 1
(recommend_indices, k=10, 20 beams), tensor bytes of the model and of the trie (+ its decoding tables), and V, the
model's tokens per level (the codebook size, or more if an ID group needs more disambiguation suffixes, which
spill_large_groups avoids while a prefix has room); then the growth exponent of each figure (log-log slope
between consecutive sizes; 1.0 = linear in the catalogue).

    OMP_NUM_THREADS=1 python benchmarks/bench_recommend_scale.py --sizes 10000 100000 1000000

--peer-unspilled adds a second table: the same training and beam-search figures for the IDs of the same fit before
spill_large_groups (what the disambiguation suffix alone gives), timed in the same process just before.

The log has a known structure: items fall in latent clusters of --cluster-size items, each user draws a sequence
from --user-clusters clusters with Zipf-like popularity inside a cluster. Peak memory is the process's resident
high-water mark during a step (reset before it through /proc/self/clear_refs) minus the resident size at its start.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from unittest import mock

import torch

import videoai.recommend.semantic_ids as semantic_ids_module
from videoai.recommend import (
    OptimizerConfig,
    SemanticIDTokenizer,
    TrieTables,
    model_for_tokenizer,
    recommend_indices,
    train_onerec,
)
from videoai.tokenize.residual_kmeans import ResidualKMeans
from videoai.train import TrainConfig

MB = 2**20


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="catalogue sizes")
    p.add_argument("--users-per-item", type=float, default=0.5, help="users = this x items")
    p.add_argument("--max-users", type=int, default=500_000, help="cap on users (memory/time); printed when hit")
    p.add_argument("--mean-length", type=float, default=10.0, help="mean items per user (5 + geometric)")
    p.add_argument("--cluster-size", type=int, default=50, help="items per latent cluster")
    p.add_argument("--user-clusters", type=int, default=2, help="latent clusters each user draws from")
    p.add_argument("--levels", type=int, default=3, help="residual k-means levels (+1 disambiguation token)")
    p.add_argument("--codebook-size", type=int, default=256)
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--kmeans-iters", type=int, default=20, help="Lloyd iterations per level (from_sequences)")
    p.add_argument("--train-steps", type=int, default=10, help="optimizer steps timed (after 1 warm-up step)")
    p.add_argument("--batch-size", type=int, default=256, help="training batch (sequences)")
    p.add_argument("--beam-users", type=int, default=256, help="users searched at batch 256")
    p.add_argument("--single-users", type=int, default=16, help="users searched one at a time")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peer-unspilled", action="store_true",
                   help="also time training and beam search on the same IDs before spill_large_groups (the peer)")
    p.add_argument("--row-json", action="store_true", help=argparse.SUPPRESS)  # child process: one size, JSON row
    return p.parse_args()


# ---- memory -------------------------------------------------------------------------------------------------------
def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1)) * 1024


class PeakMemory:
    """Resident high-water mark over a block, minus the resident size at its start (nested blocks allowed)."""

    highest = 0  # absolute high-water mark seen by any block so far (the kernel's is reset by each block)

    def __enter__(self):
        PeakMemory.highest = max(PeakMemory.highest, _status("VmHWM"))
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        self.start = _status("VmRSS")
        self.outer_highest, PeakMemory.highest = PeakMemory.highest, 0
        return self

    def __exit__(self, *exc):
        peak = max(_status("VmHWM"), PeakMemory.highest)
        self.bytes = peak - self.start
        PeakMemory.highest = max(self.outer_highest, peak)


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# ---- synthetic log ------------------------------------------------------------------------------------------------
def synthetic_log(num_items: int, num_users: int, args) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat item indices (P,) and per-user lengths (U,) of a clustered log (see the module docstring)."""
    g = torch.Generator().manual_seed(args.seed)
    num_clusters = max(1, num_items // args.cluster_size)
    members = torch.randperm(num_items, generator=g)  # items of cluster c: members[c*size:(c+1)*size] (+ rest)
    starts = torch.arange(num_clusters) * args.cluster_size
    sizes = torch.full((num_clusters,), args.cluster_size)
    sizes[-1] = num_items - starts[-1]
    extra = args.mean_length - 5.0
    uniform = torch.rand(num_users, generator=g).clamp_min(1e-12)
    lengths = 5 + (uniform.log() / math.log1p(-1.0 / (extra + 1.0))).long()  # geometric with mean `extra`
    owner = torch.repeat_interleave(torch.arange(num_users), lengths)  # (P,)
    user_clusters = torch.randint(num_clusters, (num_users, args.user_clusters), generator=g)  # (U, C_u)
    pick = torch.randint(args.user_clusters, (owner.numel(),), generator=g)
    cluster = user_clusters[owner, pick]  # (P,)
    rank = (sizes[cluster] * torch.rand(owner.numel(), generator=g).pow(3)).long()  # Zipf-like popularity
    return members[starts[cluster] + rank], lengths


# ---- phases -------------------------------------------------------------------------------------------------------
class Phases:
    """Time and peak memory of named calls made inside from_sequences (patched with timing wrappers)."""

    def __init__(self, keep: tuple[str, ...] = ()):
        self.seconds, self.peak = {}, {}
        self.keep, self.outputs = keep, {}  # outputs of the functions named in keep, by function name

    def wrap(self, name, function):
        def timed(*a, **k):
            with PeakMemory() as memory:
                start = time.perf_counter()
                out = function(*a, **k)
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            if function.__name__ in self.keep:
                self.outputs[function.__name__] = out
            self.peak[name] = max(self.peak.get(name, 0), memory.bytes)
            return out
        return timed

    def patches(self):
        stack = contextlib.ExitStack()
        module = semantic_ids_module
        for attr, name in [("cooccurrence_embeddings", "cooc"), ("make_collision_free", "disamb"),
                           ("spill_large_groups", "disamb"), ("PrefixTrie", "trie")]:
            stack.enter_context(mock.patch.object(module, attr, self.wrap(name, getattr(module, attr))))
        for attr, name in [("fit", "rkm_fit"), ("encode", "rkm_encode")]:
            original = getattr(ResidualKMeans, attr)
            stack.enter_context(mock.patch.object(ResidualKMeans, attr, self.wrap(name, original)))
        return stack


def fit_tokenizer(flat, lengths, num_items, args) -> tuple[SemanticIDTokenizer, SemanticIDTokenizer | None, dict]:
    sequences_list = flat.tolist()
    bounds = [0, *torch.cumsum(lengths, 0).tolist()]
    sequences = [sequences_list[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    phases = Phases(keep=("make_collision_free",) if args.peer_unspilled else ())
    with phases.patches(), PeakMemory() as memory:
        start = time.perf_counter()
        tokenizer = SemanticIDTokenizer.from_sequences(
            sequences, item_ids=range(num_items), levels=args.levels, codebook_size=args.codebook_size,
            embedding_dim=args.embedding_dim, seed=args.seed, iters=args.kmeans_iters)
        total = time.perf_counter() - start
    row = {f"{k}_s": v for k, v in phases.seconds.items()}
    row.update(fit_s=total, fit_peak_mb=memory.bytes / MB, cooc_peak_mb=phases.peak["cooc"] / MB,
               rkm_peak_mb=phases.peak["rkm_fit"] / MB, trie_peak_mb=phases.peak["trie"] / MB,
               vocab=tokenizer.vocab_size, collisions=tokenizer.num_collisions)
    peer = None
    if args.peer_unspilled:  # the same fit with the IDs make_collision_free gave, before spill_large_groups
        peer = copy.copy(tokenizer)
        peer._set_codes(tokenizer.item_ids, phases.outputs["make_collision_free"])
        row.update(peer_vocab=peer.vocab_size, spilled=int((peer.codes != tokenizer.codes).any(1).sum()))
    return tokenizer, peer, row


def train_speed(tokenizer, sequences, args) -> tuple[object, dict]:
    torch.manual_seed(args.seed)
    with PeakMemory() as model_memory:
        # the generative path alone: the item head is a full softmax over the catalogue (O(items) per target, as
        # SASRec's cross-entropy), so model_for_tokenizer's default item_loss_weight is off here
        model = model_for_tokenizer(tokenizer, item_loss_weight=0.0)
    optim = OptimizerConfig(batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp, PeakMemory() as memory:
        config = TrainConfig(output_dir=tmp, max_steps=1, progress_bar=False, log_every=1, seed=args.seed)
        trainer, _ = train_onerec(model, sequences, tokenizer.codes, config, optim, trie=tokenizer.trie)  # warm-up
        trainer.config.max_steps = 1 + args.train_steps
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
    sequences_done = args.train_steps * args.batch_size
    model_bytes = tensor_bytes(list(model.parameters()) + list(model.buffers()))
    return model, {"train_seq_s": sequences_done / seconds, "train_loss": result.loss,
                   "train_peak_mb": memory.bytes / MB, "model_build_mb": model_memory.bytes / MB,
                   "model_mb": model_bytes / MB}


def beam_speed(model, tokenizer, histories, args) -> dict:
    model.eval()
    codes = tokenizer.codes
    recommend_indices(model, histories[:4], codes, tokenizer.trie, k=10, batch_size=256)  # warm-up
    users = histories[:args.beam_users]
    start = time.perf_counter()
    recommend_indices(model, users, codes, tokenizer.trie, k=10, batch_size=256)
    batched = (time.perf_counter() - start) / len(users)
    start = time.perf_counter()
    for history in histories[:args.single_users]:
        recommend_indices(model, [history], codes, tokenizer.trie, k=10, batch_size=1)
    single = (time.perf_counter() - start) / args.single_users
    tables = TrieTables.of(tokenizer.trie, model.config.codebook_size)  # decoding tables (dense ones, if any)
    trie_bytes = tensor_bytes(tokenizer.trie.state_dict().values())
    table_bytes = tensor_bytes([v for v in vars(tables).values() if isinstance(v, torch.Tensor)])
    return {"beam256_ms": 1000 * batched, "beam1_ms": 1000 * single, "trie_mb": trie_bytes / MB,
            "tables_mb": table_bytes / MB, "trie_total_mb": (trie_bytes + table_bytes) / MB}


def run_size(num_items: int, args) -> dict:
    num_users = int(args.users_per_item * num_items)
    if num_users > args.max_users:
        print(f"# {num_items} items: users capped at --max-users {args.max_users} (asked {num_users})")
        num_users = args.max_users
    flat, lengths = synthetic_log(num_items, num_users, args)
    row = {"items": num_items, "users": num_users, "interactions": flat.numel()}
    tokenizer, peer, fit_row = fit_tokenizer(flat, lengths, num_items, args)
    row.update(fit_row)
    sequences = list(torch.split(flat, lengths.tolist()))  # item indices = item ids here
    if peer is not None:  # the peer first, then this tokenizer, each train then beam search
        peer_model, peer_row = train_speed(peer, sequences, args)
        peer_row.update(beam_speed(peer_model, peer, sequences, args))
        row.update({f"peer_{key}": value for key, value in peer_row.items()})
        del peer_model
    model, train_row = train_speed(tokenizer, sequences, args)
    row.update(train_row)
    row.update(beam_speed(model, tokenizer, sequences, args))
    return row


COLUMNS = [  # (key, header, format, grows-with-cost: exponent of the figure itself (True) or of its inverse)
    ("items", "items", "{:>9d}", None), ("users", "users", "{:>8d}", None),
    ("interactions", "events", "{:>9d}", None), ("vocab", "V", "{:>4d}", None),
    ("cooc_s", "cooc s", "{:>7.2f}", True), ("rkm_fit_s", "rkm fit s", "{:>9.2f}", True),
    ("rkm_encode_s", "encode s", "{:>8.2f}", True), ("disamb_s", "disamb s", "{:>8.3f}", True),
    ("trie_s", "trie s", "{:>7.3f}", True), ("fit_s", "fit s", "{:>7.2f}", True),
    ("fit_peak_mb", "fit MB", "{:>7.0f}", True), ("cooc_peak_mb", "cooc MB", "{:>7.0f}", True),
    ("rkm_peak_mb", "rkm MB", "{:>6.0f}", True), ("trie_peak_mb", "trieB MB", "{:>8.0f}", True),
    ("train_seq_s", "train seq/s", "{:>11.1f}", False), ("train_peak_mb", "train MB", "{:>8.0f}", True),
    ("beam256_ms", "beam@256 ms", "{:>11.2f}", True), ("beam1_ms", "beam@1 ms", "{:>9.1f}", True),
    ("model_mb", "model MB", "{:>8.1f}", True),
    ("trie_total_mb", "trie MB", "{:>7.1f}", True),
]


COLUMN = {spec[0]: spec for spec in COLUMNS}


def _with_peer(key: str) -> list[tuple]:
    """Column specs of a figure for the IDs before spill_large_groups ("peer_" key), then for these IDs."""
    _, header, fmt, cost = COLUMN[key]
    peer_header = f"peer {header}"
    return [(f"peer_{key}", peer_header, re.sub(r"\d+", str(len(peer_header)), fmt, count=1), cost), COLUMN[key]]


PEER_COLUMNS = [  # --peer-unspilled: the same figures for the IDs before spill_large_groups
    COLUMN["items"], ("peer_vocab", "peer V", "{:>6d}", None), ("spilled", "spilled items", "{:>13d}", None),
    *(spec for key in ("train_seq_s", "beam256_ms", "beam1_ms", "model_mb") for spec in _with_peer(key)),
]


def print_table(rows: list[dict], columns=COLUMNS) -> None:
    print("| " + " | ".join(header for _, header, _, _ in columns) + " |")
    print("|" + "|".join("---:" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(fmt.format(row[key]) for key, _, fmt, _ in columns) + " |")
    for a, b in zip(rows[:-1], rows[1:]):
        scale = math.log(b["items"] / a["items"])
        cells = []
        for key, _, _, cost in columns:
            if cost is None:
                cells.append(f"{math.log(b[key] / a[key]) / scale:.2f}" if a[key] > 0 and b[key] > 0 else "-")
                continue
            x, y = (a[key], b[key]) if cost else (1.0 / a[key], 1.0 / b[key])
            cells.append(f"{math.log(y / x) / scale:.2f}" if x > 0 and y > 0 else "-")
        cells[0] = f"exp {a['items']}->{b['items']}"
        print("| " + " | ".join(cells) + " |")
    print("(exp rows: log-log slope of each figure against items; train seq/s as its cost per sequence, 1/x)")


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    if not args.row_json:
        print(f"# {' '.join(sys.argv)}")
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {args.threads} thread(s)")
    print(f"# levels={args.levels} codebook={args.codebook_size} dim={args.embedding_dim} "
          f"kmeans_iters={args.kmeans_iters} users/item={args.users_per_item} train_steps={args.train_steps} "
          f"x batch {args.batch_size}; beams 20, k=10")
    if args.row_json:
        print("ROW " + json.dumps(run_size(args.sizes[0], args)))
        return
    rows = []
    for size in args.sizes:  # one fresh process per size: freed memory of a size never hides the next's peaks
        start = time.perf_counter()
        argv = list(sys.argv[1:])
        if "--sizes" in argv:  # drop --sizes and its values
            at = end = argv.index("--sizes")
            while end + 1 < len(argv) and argv[end + 1].isdigit():
                end += 1
            argv = argv[:at] + argv[end + 1:]
        out = subprocess.run([sys.executable, __file__, *argv, "--sizes", str(size), "--row-json"],
                             capture_output=True, text=True, check=True).stdout
        print("".join(line + "\n" for line in out.splitlines() if line.startswith("# ") and "capped" in line), end="")
        rows.append(json.loads(next(line[4:] for line in out.splitlines() if line.startswith("ROW "))))
        print(f"# {size} items done in {time.perf_counter() - start:.0f} s: {rows[-1]}", flush=True)
    print_table(rows)
    if args.peer_unspilled:
        print()
        print_table(rows, PEER_COLUMNS)


if __name__ == "__main__":
    main()
