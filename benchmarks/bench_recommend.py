"""OneRec-style generative recommender vs SASRec (CE over all items) on Amazon Beauty, leave-last-out, same run.

Prints Recall/NDCG@5/10 on the test split (full item set, history items excluded for both models), training time
and throughput (sequences/s), constrained vs unconstrained beam-search latency per user, and the reward model's
reward + NDCG@10 of generated recommendations before and after iterative preference alignment (DPO).

    python benchmarks/bench_recommend.py --dataset Beauty --epochs 20 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sasrec import SASRec, SASRecConfig, train_sasrec  # noqa: E402

from videoai.recommend import (  # noqa: E402
    AlignmentConfig,
    EvalCollator,
    OneRecModel,
    OptimizerConfig,
    RewardModel,
    RewardModelConfig,
    SemanticIDTokenizer,
    align,
    beam_search,
    config_for_tokenizer,
    cooccurrence_embeddings,
    engagement_examples,
    leave_last_out,
    lr_multiplier,
    make_train_loader,
    ranking_metrics,
    read_user_sequences,
    recommend_indices,
    train_onerec,
    train_reward_model,
)
from videoai.recommend.fusion import fuse, fusion_candidates, mask_seen  # noqa: E402
from videoai.train import TrainConfig  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "amazon"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Beauty",
                   help="file stem in ../shared/data/amazon (Beauty, Sports_and_Outdoors)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs for both models (same budget)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", default="cosine", choices=["constant", "cosine"],
                   help="OneRec's learning-rate decay after warmup")
    p.add_argument("--sasrec-lr-decay", default="constant", choices=["constant", "cosine"],
                   help="SASRec's decay (its reference: constant; cosine to 0 over 6 epochs halves its NDCG@10)")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warmup steps, the same for both models")
    p.add_argument("--max-history", type=int, default=50)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.3, help="SASRec dropout (its reference value; 0.2 scores lower)")
    p.add_argument("--onerec-dropout", type=float, default=0.2,
                   help="OneRec dropout (picked on validation: 0.2 beats 0.1 and 0.3)")
    p.add_argument("--levels", type=int, default=2, help="residual k-means levels (+1 disambiguation token)")
    p.add_argument("--codebook-size", type=int, default=256)
    p.add_argument("--embedding-dim", type=int, default=64, help="co-occurrence (PPMI + SVD) embedding size")
    p.add_argument("--num-experts", type=int, default=4)
    p.add_argument("--expert-d-ff", type=int, default=0, help="hidden size of each expert (0 = 2*d_model)")
    p.add_argument("--moe-dispatch", default="dense", choices=["dense", "capacity"])
    p.add_argument("--num-beams", type=int, default=20, help="beams for evaluation (>= 10)")
    p.add_argument("--eval-users", type=int, default=0, help="evaluate on the first N test users (0 = all)")
    p.add_argument("--latency-users", type=int, default=256)
    p.add_argument("--align-iterations", type=int, default=2, help="0 skips the alignment stage")
    p.add_argument("--align-steps", type=int, default=60)
    p.add_argument("--align-users", type=int, default=4096)
    p.add_argument("--align-beta", type=float, default=0.1)
    p.add_argument("--align-lr", type=float, default=1e-4)
    p.add_argument("--align-anchor-weight", type=float, default=1.0,
                   help="next-token loss on each user's real last item during DPO (AlignmentConfig.anchor_weight)")
    p.add_argument("--reward-epochs", type=int, default=1)
    p.add_argument("--split", default="test", choices=["test", "valid"],
                   help="split of the final ranking: valid scores all validation users (for picking settings; the "
                        "test split is then never read) and skips the latency and alignment stages")
    p.add_argument("--valid-users", type=int, default=1000, help="validation users scored after every epoch (0 = off)")
    p.add_argument("--item-embedding", action=argparse.BooleanOptionalAction, default=True,
                   help="encoder adds a learned item-index embedding to the semantic-ID tokens of each history item")
    p.add_argument("--node-levels", type=int, default=4,
                   help="prefix-node output embeddings for the first N levels, up to levels+1 (all: every trie node, "
                        "leaves = items; 0 = per-level token embeddings only)")
    p.add_argument("--node-input", action=argparse.BooleanOptionalAction, default=True,
                   help="encoder also adds the prefix-node embeddings on each history item's trie path (input/output "
                        "tying; needs --item-embedding and --node-levels > 0)")
    p.add_argument("--item-loss-weight", type=float, default=2.0,
                   help="weight of OneRec's auxiliary full softmax over all items from the first-token decoder state "
                        "(OneRecConfig.item_loss_weight; needs --node-input; 0 = off; default 2, picked on Beauty "
                        "validation users over 0.5, 1 and 4)")
    p.add_argument("--item-score-weights", type=float, nargs="+", default=[2.0],
                   help="rank with log P(ID) + w * log P_head(item) for each w (0 = beam search alone; needs "
                        "--item-loss-weight > 0 or a loaded model with an item head): one result row per w; the "
                        "first is the reported one (default 2, picked on validation users over 0.5, 1 and 4)")
    p.add_argument("--head-only", action="store_true",
                   help="also rank all items by the item head alone (SASRec-style), one more row")
    p.add_argument("--user-state", action=argparse.BooleanOptionalAction, default=True,
                   help="decoder inputs add the encoder output at the latest history item (OneRecConfig."
                        "user_state_input)")
    p.add_argument("--unconstrained-training", action="store_true",
                   help="full-vocabulary softmax in training (default: softmax over the trie's valid children)")
    p.add_argument("--skip-sasrec", action="store_true")
    p.add_argument("--load-onerec", default=None, metavar="DIR",
                   help="evaluate and align a OneRecModel saved by an earlier run (its onerec_model folder, same "
                        "--dataset/--levels/--codebook-size/--embedding-dim/--seed) instead of training one")
    p.add_argument("--skip-onerec", action="store_true", help="peer only (for tuning runs)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="/tmp/bench_recommend")
    return p.parse_args()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sasrec_metrics(model: SASRec, histories: list[torch.Tensor], targets: torch.Tensor, max_history: int) -> dict:
    collate = EvalCollator(None, max_history)
    ranked = [model.recommend(collate([(h, -1) for h in histories[i:i + 512]])["history_items"], 10)
              for i in range(0, len(histories), 512)]
    return ranking_metrics(torch.cat(ranked), targets)


@torch.no_grad()
def fusion_sweep(model, histories, item_codes, trie, weights, num_beams: int) -> dict:
    """Top-10 (n, 10) per item_score_weight from one beam search and one candidate scoring per batch (for picking
    the weight on validation users; recommend_indices also widens the beam for users left short, this does not)."""
    collate = EvalCollator(item_codes, model.config.max_history)
    ranked = {weight: [] for weight in weights}
    for i in range(0, len(histories), 256):
        b = collate([(h, -1) for h in histories[i:i + 256]])
        out = beam_search(model, b["history_codes"], b["history_mask"], trie, num_beams=num_beams, session_length=1,
                          exclude_codes=b["history_codes"], exclude_mask=b["history_mask"],
                          history_items=b["history_items"])
        candidates = fusion_candidates(model, b["history_codes"], b["history_mask"], b["history_items"],
                                       out.items[:, :, 0], out.scores, item_codes, trie)
        for weight in weights:
            ranked[weight].append(fuse(*candidates, weight, 10)[0])
    return {weight: torch.cat(top) for weight, top in ranked.items()}


@torch.no_grad()
def head_metrics(model, histories, targets, item_codes, trie) -> dict:
    """Rank every item by the OneRec item head alone (history items excluded)."""
    collate = EvalCollator(item_codes, model.config.max_history)
    ranked = []
    for i in range(0, len(histories), 512):
        b = collate([(h, -1) for h in histories[i:i + 512]])
        memory = model.encode(b["history_codes"], b["history_mask"], history_items=b["history_items"])
        scores = mask_seen(model.item_log_probs(*memory), b["history_items"], b["history_mask"])  # (b, N)
        ranked.append(scores.topk(10, dim=1).indices)
    return ranking_metrics(torch.cat(ranked), targets)


def beam_latency(model, histories, item_codes, trie, batch_size: int, repeats: int = 5) -> dict:
    """Per-user seconds of beam search (beam 10, one item), constrained vs unconstrained, runs interleaved.

    Returns medians over `repeats` of wall time and of process CPU time (the latter is less disturbed by other
    jobs on a shared machine).
    """
    collate = EvalCollator(item_codes, model.config.max_history)
    batches = [collate([(h, -1) for h in histories[i:i + batch_size]]) for i in range(0, len(histories), batch_size)]

    def run(constrained: bool) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for b in batches:
            beam_search(model, b["history_codes"], b["history_mask"], trie, num_beams=10, session_length=1,
                        constrained=constrained, exclude_codes=b["history_codes"] if constrained else None,
                        exclude_mask=b["history_mask"], history_items=b["history_items"])
        return (time.perf_counter() - wall) / len(histories), (time.process_time() - cpu) / len(histories)

    run(True), run(False)  # warm-up (builds the cached trie tables)
    samples = {True: [], False: []}
    for _ in range(repeats):
        for constrained in (True, False):
            samples[constrained].append(run(constrained))
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    return {name: (median([w for w, _ in samples[c]]), median([c_ for _, c_ in samples[c]]))
            for name, c in (("constrained", True), ("unconstrained", False))}


def print_results(args, results: dict) -> None:
    """Header (command, machine, budget) and the ranking table of the models run."""
    print()
    print(f"## bench_recommend — {args.dataset}, leave-last-out ({args.split} split), full item set, seen items excluded")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, shared with other jobs (load {os.getloadavg()[0]:.1f})")
    print(f"budget: {args.epochs} epochs each, batch {args.batch_size}, AdamW lr {args.lr} (decay: OneRec "
          f"{args.lr_decay}, SASRec {args.sasrec_lr_decay}; {args.warmup_steps} warmup steps), d_model {args.d_model}, "
          f"dropout SASRec {args.dropout} / OneRec {args.onerec_dropout}, "
          f"max history {args.max_history}, {args.num_beams} beams for OneRec's ranking")
    print()
    print("| model | R@5 | N@5 | R@10 | N@10 | train s | train seq/s | eval s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['recall@5']:.4f} | {r['ndcg@5']:.4f} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} | "
              f"{r['train_s']:.0f} | {r['seq_per_s']:.1f} | {r['eval_s']:.0f} |")


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out_dir = Path(args.output_dir)
    path = DATA / f"{args.dataset}.txt"
    if not path.is_file():
        raise SystemExit(f"dataset file {path} not found (expected ../shared/data/amazon/{args.dataset}.txt)")
    log(f"command: python {' '.join(sys.argv)}")
    log(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
        f"torch_threads={torch.get_num_threads()} torch {torch.__version__} load={os.getloadavg()}")

    # ---- data ----------------------------------------------------------------------------------------------------
    data = read_user_sequences(path)
    split = leave_last_out(data)
    item_ids = sorted(data.items)
    index = {item: i for i, item in enumerate(item_ids)}
    to_idx = lambda seq: torch.tensor([index[i] for i in seq], dtype=torch.long)  # noqa: E731
    train = [to_idx(s) for s in split.train]
    test_history = [to_idx(s) for s in getattr(split, f"{args.split}_history")]
    test_target = torch.tensor([index[i] for i in getattr(split, f"{args.split}_target")])
    valid_history = [to_idx(s) for s in split.valid_history[:args.valid_users]]
    valid_target = torch.tensor([index[i] for i in split.valid_target[:args.valid_users]])
    if args.eval_users:
        test_history, test_target = test_history[:args.eval_users], test_target[:args.eval_users]
    log(f"{args.dataset}: {len(data)} users, {len(item_ids)} items, {sum(map(len, data.sequences))} interactions; "
        f"evaluating {len(test_history)} {args.split} users")

    # ---- semantic IDs --------------------------------------------------------------------------------------------
    start = time.perf_counter()
    embeddings = cooccurrence_embeddings(train, len(item_ids), args.embedding_dim)
    tokenizer = SemanticIDTokenizer(args.levels, args.codebook_size, balanced=True, seed=args.seed)
    tokenizer.fit(embeddings, list(range(len(item_ids))))
    item_codes, trie = tokenizer.codes, tokenizer.trie
    tokenizer_seconds = time.perf_counter() - start
    log(f"tokenizer: co-occurrence PPMI+SVD dim {args.embedding_dim} -> {args.levels}x{args.codebook_size} balanced "
        f"RQ-KMeans + disambiguation: {tokenizer.num_collisions} colliding items, max suffix "
        f"{int(item_codes[:, -1].max())}, {tokenizer_seconds:.0f}s")

    batches_per_epoch = len(make_train_loader(train, item_codes, args.batch_size, args.max_history))
    total_steps = args.epochs * batches_per_epoch
    results = {}

    # ---- SASRec peer ---------------------------------------------------------------------------------------------
    if not args.skip_sasrec:
        torch.manual_seed(args.seed)
        sasrec = SASRec(SASRecConfig(len(item_ids), args.max_history, args.d_model, num_heads=1, num_layers=2,
                                     dropout=args.dropout))
        loader = make_train_loader(train, None, args.batch_size, args.max_history, seed=args.seed)
        schedule = partial(lr_multiplier, max_steps=total_steps, warmup_steps=args.warmup_steps,
                           decay=args.sasrec_lr_decay)
        stats = train_sasrec(sasrec, loader, args.epochs, lr=args.lr, log=log, lr_schedule=schedule, eval_fn=(
            (lambda m: sasrec_metrics(m, valid_history, valid_target, args.max_history)) if args.valid_users else None))
        start = time.perf_counter()
        results["SASRec (CE)"] = {**sasrec_metrics(sasrec, test_history, test_target, args.max_history),
                                  "train_s": stats["seconds"], "seq_per_s": stats["sequences_per_second"],
                                  "eval_s": time.perf_counter() - start}
        log(f"SASRec: {results['SASRec (CE)']}")

    if args.skip_onerec:
        print_results(args, results)
        return
    # ---- OneRec --------------------------------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    config = config_for_tokenizer(tokenizer, node_levels=args.node_levels, item_embedding=args.item_embedding,
                                  max_history=args.max_history, d_model=args.d_model, num_heads=2,
                                  num_encoder_layers=2, num_decoder_layers=2, d_ff=4 * args.d_model,
                                  num_experts=args.num_experts, experts_top_k=2, expert_d_ff=args.expert_d_ff or None,
                                  moe_dispatch=args.moe_dispatch, node_input=args.node_input,
                                  item_loss_weight=args.item_loss_weight, user_state_input=args.user_state,
                                  dropout=args.onerec_dropout)
    if args.load_onerec:
        model = OneRecModel.from_pretrained(args.load_onerec)
        if (model.config.num_levels, model.config.codebook_size) != (config.num_levels, config.codebook_size):
            raise SystemExit(f"--load-onerec: {args.load_onerec} has {model.config.num_levels} levels x "
                             f"{model.config.codebook_size} codes, this run's tokenizer {config.num_levels} x "
                             f"{config.codebook_size}")
        if model.config.node_input:
            model.attach_trie(trie)
        result = argparse.Namespace(wall_time=float("nan"), samples_per_second=float("nan"))
        log(f"OneRec: loaded {args.load_onerec} (not trained in this run)")
    else:
        model = OneRecModel(config)
        if config.node_input:
            model.attach_trie(trie)
        train_config = TrainConfig(output_dir=out_dir / "onerec", max_steps=total_steps,
                                   log_every=batches_per_epoch, seed=args.seed, progress_bar=False)
        log(f"OneRec: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
            f"{train_config.max_steps} steps ({batches_per_epoch}/epoch)")
        train_config.eval_every = batches_per_epoch if args.valid_users else None

        def eval_fn(m):
            metrics = ranking_metrics(recommend_indices(m, valid_history, item_codes, trie, 10, args.num_beams)[0],
                                      valid_target)
            log(f"OneRec validation ({len(valid_history)} users): {metrics}")
            return metrics

        _, result = train_onerec(model, train, item_codes, train_config,
                                 OptimizerConfig(batch_size=args.batch_size, learning_rate=args.lr,
                                                 warmup_steps=args.warmup_steps, lr_decay=args.lr_decay),
                                 eval_fn=eval_fn if args.valid_users else None,
                                 trie=None if args.unconstrained_training else trie)
        epoch_losses = result.losses[batches_per_epoch - 1::batches_per_epoch]
        log(f"OneRec train loss per epoch: {[round(loss, 4) for loss in epoch_losses]}")
        model.save_pretrained(out_dir / "onerec_model")  # for --load-onerec
    model.eval()
    start = time.perf_counter()
    if len(args.item_score_weights) == 1:  # the library path, as users rank
        ranked = {args.item_score_weights[0]: recommend_indices(model, test_history, item_codes, trie, 10,
                                                                args.num_beams,
                                                                item_score_weight=args.item_score_weights[0])[0]}
    else:  # one beam search, every weight
        ranked = fusion_sweep(model, test_history, item_codes, trie, args.item_score_weights, args.num_beams)
    eval_s = (time.perf_counter() - start) / len(ranked)
    for number, (weight, top) in enumerate(ranked.items()):
        name = "OneRec (ours)" if number == 0 else f"OneRec, item_score_weight {weight}"
        results[name] = {**ranking_metrics(top, test_target), "train_s": result.wall_time,
                         "seq_per_s": result.samples_per_second, "eval_s": eval_s}
        log(f"{name} (item_score_weight {weight}): {results[name]}")
    if args.head_only:
        start = time.perf_counter()
        results["OneRec item head alone"] = {**head_metrics(model, test_history, test_target, item_codes, trie),
                                             "train_s": result.wall_time, "seq_per_s": result.samples_per_second,
                                             "eval_s": time.perf_counter() - start}
        log(f"item head alone: {results['OneRec item head alone']}")
    if args.split == "valid":
        print_results(args, results)
        return

    # ---- beam search latency -------------------------------------------------------------------------------------
    users = test_history[:args.latency_users]
    latency = {}
    for batch_size in (args.latency_users, 1):
        latency[batch_size] = beam_latency(model, users if batch_size > 1 else users[:16], item_codes, trie, batch_size)
        log(f"beam 10, L={config.num_levels}, batch {batch_size}: {latency[batch_size]}")
    free_ranked, _ = recommend_indices(model, users, item_codes, trie, 10, 10, exclude_seen=False, constrained=False)
    invalid = (free_ranked < 0).float().mean().item()

    # ---- alignment -----------------------------------------------------------------------------------------------
    alignment = None
    if args.align_iterations:
        torch.manual_seed(args.seed)
        reward_model = RewardModel(RewardModelConfig(len(item_ids), args.d_model, args.max_history))
        examples = engagement_examples(train, len(item_ids), horizon=2, num_negatives=4, max_length=args.max_history)
        steps = args.reward_epochs * (len(examples) + 511) // 512
        reward_result = train_reward_model(reward_model, examples, TrainConfig(
            output_dir=out_dir / "reward", max_steps=steps, log_every=max(1, steps // 4), progress_bar=False),
            batch_size=512)
        reward_model.eval()
        log(f"reward model: {len(examples)} examples, {steps} steps, loss {reward_result.losses[0]:.4f} -> "
            f"{reward_result.loss:.4f}, {reward_result.wall_time:.0f}s")

        def reward_and_ndcg(policy):
            items, _ = recommend_indices(policy, test_history, item_codes, trie, 10, args.num_beams)
            collate = EvalCollator(None, args.max_history)
            rewards = [reward_model.session_reward(collate([(h, -1) for h in test_history[i:i + 512]])["history_items"],
                                                   items[i:i + 512, :, None])
                       for i in range(0, len(test_history), 512)]
            rewards = torch.cat(rewards)  # (n, 10) reward of each recommended single-item session
            return {"reward@1": rewards[:, 0].mean().item(), "reward@10": rewards.mean().item(),
                    **ranking_metrics(items, test_target)}

        before = reward_and_ndcg(model)
        align_histories = train[:args.align_users]  # history -> next sessions from the training split only
        rounds = align(model, reward_model, [h for h in align_histories if len(h) >= 1], item_codes, trie,
                       AlignmentConfig(num_iterations=args.align_iterations, steps_per_iteration=args.align_steps,
                                       num_samples=10, beta=args.align_beta, learning_rate=args.align_lr,
                                       anchor_weight=args.align_anchor_weight, seed=args.seed),
                       out_dir / "align", log=log)
        model.eval()
        after = reward_and_ndcg(model)
        alignment = (before, after, rounds)

    # ---- report --------------------------------------------------------------------------------------------------
    print_results(args, results)
    if "SASRec (CE)" in results:
        ours, peer = results["OneRec (ours)"], results["SASRec (CE)"]
        print(f"\nNDCG@10 ratio OneRec / SASRec: {ours['ndcg@10'] / max(peer['ndcg@10'], 1e-12):.3f}; "
              f"train throughput ratio: {ours['seq_per_s'] / peer['seq_per_s']:.3f}")
    print(f"\ntokenizer: {tokenizer_seconds:.0f}s, {tokenizer.num_collisions} items needed a disambiguation token > 0")
    print(f"\n| beam search (beam 10, L={config.num_levels}, one item) | clock | constrained ms/user | "
          "unconstrained ms/user | ratio |")
    print("|---|---|---|---|---|")
    for batch_size, timing in latency.items():
        for column, clock in ((0, "wall"), (1, "process CPU")):
            constrained, free = timing["constrained"][column], timing["unconstrained"][column]
            print(f"| batch {batch_size} | {clock} | {constrained * 1e3:.3f} | {free * 1e3:.3f} | "
                  f"{constrained / free:.3f} |")
    print(f"unconstrained top-10 items that are not real items: {invalid:.4f} (constrained: 0 by construction)")
    if alignment:
        before, after, rounds = alignment
        print("\n| alignment (IPA/DPO) | RM reward top-1 | RM reward top-10 | R@10 | N@10 |")
        print("|---|---|---|---|---|")
        for name, r in (("before", before), ("after", after)):
            print(f"| {name} | {r['reward@1']:.4f} | {r['reward@10']:.4f} | {r['recall@10']:.4f} | "
                  f"{r['ndcg@10']:.4f} |")
        print(f"rounds: {rounds}")


if __name__ == "__main__":
    main()
