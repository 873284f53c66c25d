"""Cold start: can OneRec recommend videos nobody watched? Content semantic IDs vs co-occurrence-only IDs, same run.

The demo's synthetic catalogue (videoai.demo: clips with known colours) and simulated users who each like one
colour. 10% of the videos are held out of every training log (they never appear in training). Each tokenizer is
fitted on the whole catalogue; OneRec is trained with the same settings and seed for each. Reported:
- held-out hit@10: over (user, held-out video) pairs where the user's colour is in the video, how often the video
  is in the user's top 10 (history items excluded); chance = a uniform pick of 10 unseen items;
- Recall@10 / NDCG@10 of every user's last (normal) item, leave-last-out, over the whole catalogue.
Content comes from `videoai index` run on the clips (the weight-free descriptor, read back with read_catalogue)
and, with --features tags too, from the embedded tagger's tag scores (what the demo uses).

    OMP_NUM_THREADS=1 python benchmarks/bench_cold_start.py --threads 1
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from videoai.demo.catalogue import make_catalogue, simulate_users
from videoai.generate import default_shapes_config
from videoai.recommend import (
    CONTENT_ID_MODEL,
    OptimizerConfig,
    SemanticIDTokenizer,
    UserSequences,
    leave_last_out,
    model_for_tokenizer,
    ranking_metrics,
    recommend_indices,
    train_onerec,
)
from videoai.recommend.catalogue import read_catalogue, tokenizer_from_catalogue
from videoai.synthetic import write_clips
from videoai.train import TrainConfig
from videoai.understand import tag_video
from videoai.understand.index import index_videos


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--catalogue-size", type=int, default=256)
    p.add_argument("--users", type=int, default=600)
    p.add_argument("--history", type=int, default=12, help="items per simulated user before holding out")
    p.add_argument("--holdout", type=float, default=0.1, help="share of videos held out of every training log")
    p.add_argument("--steps", type=int, default=300, help="training steps per model (same for every model)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--codebook-size", type=int, default=8)
    p.add_argument("--node-levels", type=int, default=1,
                   help="levels scored by prefix-node vectors, every model (default: 1, as `train --catalogue`)")
    p.add_argument("--fuse-weight", type=float, default=1.0, help="co-occurrence weight of the fused row")
    p.add_argument("--features", choices=["index", "tags", "both"], default="index")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def held_out_items(num_items: int, share: float, seed: int) -> set[int]:
    generator = torch.Generator().manual_seed(seed + 7)
    return set(torch.randperm(num_items, generator=generator)[:round(share * num_items)].tolist())


def train_and_score(name, tokenizer, node_levels, split, cold, liked_of_eval, tags_of, args, work) -> dict:
    """Train OneRec on the split's training part; held-out hit@k and normal Recall/NDCG@k from one beam search."""
    torch.manual_seed(args.seed)
    # every variant without the item head, as `recommend train --catalogue` builds content-ID models
    model = model_for_tokenizer(tokenizer, max_history=args.history, d_model=args.d_model, d_ff=4 * args.d_model,
                                **{**CONTENT_ID_MODEL, "node_levels": node_levels})
    train = [tokenizer.item_index(s) for s in split.train]
    start = time.perf_counter()
    _, result = train_onerec(model, train, tokenizer.codes,
                             TrainConfig(output_dir=tempfile.mkdtemp(dir=work), max_steps=args.steps,
                                         seed=args.seed, log_every=10 ** 9, progress_bar=False),
                             OptimizerConfig(batch_size=args.batch_size, learning_rate=args.lr, lr_decay="cosine"),
                             trie=tokenizer.trie)
    train_s = time.perf_counter() - start
    histories = [tokenizer.item_index(h) for h in split.test_history]
    start = time.perf_counter()
    ranked, _ = recommend_indices(model, histories, tokenizer.codes, tokenizer.trie, k=args.k)  # (U, k) indices
    recommend_s = time.perf_counter() - start
    metrics = ranking_metrics(ranked, tokenizer.item_index(split.test_target), (args.k,))
    cold_index = {int(tokenizer.item_index([item])[0]): item for item in cold}
    hits = pairs = 0
    chance = in_taste = 0.0
    for user, (history, top) in enumerate(zip(split.test_history, ranked.tolist())):
        unseen = tokenizer.num_items - len(set(history))
        liked = sum(liked_of_eval[user] in tags for item, tags in tags_of.items() if item not in set(history))
        for index, item in cold_index.items():
            if liked_of_eval[user] in tags_of[item]:
                pairs += 1
                hits += index in top
                chance += min(args.k, unseen) / unseen
                in_taste += min(args.k, liked) / liked
    cold_slots = sum(i in cold_index for row in ranked.tolist() for i in row) / ranked.numel()
    return {"ids": name, "node_levels": node_levels, "hit": hits / pairs, "chance": chance / pairs,
            "in_taste": in_taste / pairs, "pairs": pairs,
            "recall": metrics[f"recall@{args.k}"], "ndcg": metrics[f"ndcg@{args.k}"], "cold_slots": cold_slots,
            "collisions": tokenizer.num_collisions, "loss": float(result.loss), "train_s": train_s,
            "recommend_s": recommend_s}


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    shapes = default_shapes_config()
    catalogue = make_catalogue(args.catalogue_size, shapes, seed=args.seed + 1)
    histories, liked = simulate_users(catalogue, args.users, args.history, seed=args.seed)
    ids = catalogue.item_ids
    cold = {ids[i] for i in held_out_items(len(ids), args.holdout, args.seed)}
    # held-out videos never appear in training: drop them from every log (users keep the rest of their history)
    kept = [(h2, like) for h, like in zip(histories, liked) if len(h2 := [i for i in h if i not in cold]) >= 1]
    logs = [h for h, _ in kept]
    data = UserSequences(list(range(len(logs))), logs)
    split = leave_last_out(data)
    eval_liked = [kept[user][1] for user in split.eval_users]
    tags_of = dict(zip(ids, catalogue.tags))
    assert not cold & {item for seq in split.train for item in seq}

    content: dict[str, tuple[list, torch.Tensor]] = {}
    timings = {}
    if args.features in ("index", "both"):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            write_clips(f"{folder}/clips", args.catalogue_size, shapes, seed=args.seed + 1)  # the same clips
            index_videos(f"{folder}/clips", f"{folder}/catalogue.parquet", progress=False)
            table = read_catalogue(f"{folder}/catalogue.parquet")
        timings["index"] = time.perf_counter() - start
        content["index"] = (table.item_ids, table.embeddings)
    if args.features in ("tags", "both"):
        start = time.perf_counter()
        scored = tag_video(catalogue.videos, top_k=None)
        names = sorted(tag for tag, _ in scored[0])
        content["tags"] = (ids, F.normalize(torch.tensor([[dict(r)[n] for n in names] for r in scored]), dim=-1))
        timings["tags"] = time.perf_counter() - start

    fit = {"levels": args.levels, "codebook_size": args.codebook_size, "seed": args.seed}
    tokenizers = [("co-occurrence only", SemanticIDTokenizer.from_sequences(
        split.train, ids, embedding_dim=min(64, len(ids) // 2), **fit))]
    for source, (item_ids, embeddings) in content.items():
        tokenizers.append((f"content ({source})", tokenizer_from_catalogue(item_ids, embeddings, **fit)))
        tokenizers.append((f"content ({source}) + co-occ x{args.fuse_weight:g}", tokenizer_from_catalogue(
            item_ids, embeddings, split.train, fuse_weight=args.fuse_weight, **fit)))
    runs = [(name, tok, args.node_levels) for name, tok in tokenizers]
    # the log-only default (prefix-node vectors at every level) for the first content IDs: why --catalogue uses 1
    runs.append((tokenizers[1][0], tokenizers[1][1], tokenizers[1][1].num_levels))
    with tempfile.TemporaryDirectory() as work:
        rows = [train_and_score(*run, split, cold, eval_liked, tags_of, args, work) for run in runs]

    print(f"command: {' '.join(['python'] + sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), "
          f"torch {torch.__version__}")
    features = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in timings.items())
    print(f"catalogue {len(ids)} videos, {len(cold)} held out of every training log; {len(logs)} users, "
          f"{len(split.eval_users)} with a test item; {args.steps} steps x batch {args.batch_size}, d_model "
          f"{args.d_model}, {args.levels} levels x {args.codebook_size} codes (+1 disambiguation token); content "
          f"features: {features}")
    print("chance: a uniform top-10 of the user's unseen videos; in-taste: of the unseen videos with the user's colour")
    k = args.k
    print(f"| semantic IDs from | node levels | held-out hit@{k} | chance | in-taste | pairs | cold share of top-{k} | "
          f"Recall@{k} | NDCG@{k} | collisions | final loss | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ids']} | {r['node_levels']} | {r['hit']:.4f} | {r['chance']:.4f} | {r['in_taste']:.4f} | "
              f"{r['pairs']} | {r['cold_slots']:.4f} | {r['recall']:.4f} | {r['ndcg']:.4f} | {r['collisions']} | "
              f"{r['loss']:.3f} | {r['train_s']:.0f} |")
    base = rows[0]["hit"]
    for r in rows[1:-1]:
        ratio = f"{r['hit'] / base:.1f}x" if base > 0 else "inf (co-occurrence only: 0)"
        print(f"held-out hit@{k}: {r['ids']} {r['hit']:.4f} vs co-occurrence only {base:.4f} ({ratio})")
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
