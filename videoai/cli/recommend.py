"""`videoai recommend train|eval|serve-batch|serve|audience`: a OneRec-style recommender on an interaction log."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from videoai.cli.common import (
    CLIError,
    add_device_flag,
    add_json_flag,
    atomic_write,
    check_suffix,
    emit,
    existing_dir,
    existing_file,
    pick_device,
    positive_int,
    progress,
    quiet_model_loading,
    show_progress,
    write_json,
)

LOG_FORMATS = ("auto", "sequences", "interactions")
LOG_HELP = ("interaction log: 'user,item,timestamp[,label]' rows (CSV/TSV, optional header) or 'user item item ...' "
            "lines (one user per line, items in time order)")

BEAMS_HELP = ("beam width (default: twice the largest k); users left with fewer than k unseen items are searched "
              "again with wider beams")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "recommend", help="train / evaluate / serve a generative recommender; find an item's audience",
        description="OneRec-style recommender: items get semantic IDs (residual k-means of co-occurrence "
                    "embeddings), an encoder-decoder writes the next item's ID under a prefix trie.")
    commands = parser.add_subparsers(dest="recommend_command", metavar="ACTION", required=True)

    train = commands.add_parser("train", help="fit the tokenizer and train OneRec on a log; save a recommender folder",
                                description="Fit semantic IDs (from co-occurrence in --log, or from the content of "
                                            "--catalogue) and train OneRec on the training part of the leave-last-out "
                                            "split of --log; save model/ and tokenizer/ to --out.")
    _add_log_args(train)
    train.add_argument("--catalogue", metavar="PARQUET",
                       help="`videoai index` table: IDs from its content embeddings, so unwatched videos can be "
                            "recommended; item ids: its item_id column, else file stems (every --log item needs one)")
    train.add_argument("--fuse-cooccurrence", type=float, default=0.0, metavar="WEIGHT",
                       help="with --catalogue: append WEIGHT x the co-occurrence embedding of each watched item to "
                            "its content embedding (default: 0, content only)")
    train.add_argument("--out", required=True, metavar="DIR", help="recommender folder to write")
    train.add_argument("--epochs", type=positive_int, default=20,
                       help="passes over the training split (default: 20, the benchmark's budget: 20 x ceil(users / "
                            "batch size) steps, e.g. 1,760 on Amazon Beauty and 2,800 on Sports_and_Outdoors)")
    train.add_argument("--steps", type=positive_int, help="optimizer steps (overrides --epochs)")
    train.add_argument("--batch-size", type=positive_int, default=256, help="default: 256")
    train.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, cosine decay (default: 1e-3)")
    train.add_argument("--levels", type=positive_int, default=2, help="residual k-means levels per ID (default: 2)")
    train.add_argument("--codebook-size", type=positive_int,
                       help="codes per level (default: 256, smaller for catalogues under 1024 items)")
    train.add_argument("--embedding-dim", type=positive_int,
                       help="co-occurrence embedding size (default: 64, smaller for catalogues under 128 items)")
    train.add_argument("--d-model", type=positive_int, default=64, help="model width (default: 64)")
    train.add_argument("--max-history", type=positive_int, default=50, help="items of history seen (default: 50)")
    train.add_argument("--seed", type=int, default=0)
    add_json_flag(train)
    train.set_defaults(run=run_train)

    evaluate = commands.add_parser("eval", help="Recall/NDCG@5/10 on the leave-last-out test split of a log",
                                   description="Predict every user's last item from the items before it and print "
                                               "Recall@k and NDCG@k over the whole catalogue.")
    _add_model_arg(evaluate)
    _add_log_args(evaluate)
    evaluate.add_argument("--k", type=positive_int, nargs="+", default=[5, 10], help="cut-offs (default: 5 10)")
    evaluate.add_argument("--max-users", type=positive_int, help="score only the first N test users")
    evaluate.add_argument("--num-beams", type=positive_int, help=BEAMS_HELP)
    evaluate.add_argument("--batch-size", type=positive_int, default=256, help="users per beam search (default: 256)")
    add_device_flag(evaluate)
    add_json_flag(evaluate)
    evaluate.set_defaults(run=run_eval)

    serve = commands.add_parser("serve-batch", help="top-k recommendations for a file of histories -> JSON lines",
                                description="Recommend the next items for every history in --histories and write "
                                            "one JSON object per line to --out: {\"user\", \"items\", \"scores\"} "
                                            "(items best first, scores are log-probabilities).")
    _add_model_arg(serve)
    serve.add_argument("--histories", required=True,
                       help="JSON lines {\"user\": ..., \"items\": [item, ...]} (.jsonl / .json), or a log as for "
                            "train (each user's whole sequence is the history)")
    serve.add_argument("--format", choices=LOG_FORMATS, default="auto", help="format of a non-JSON --histories file")
    serve.add_argument("--out", required=True, help="JSON lines file to write (.jsonl)")
    serve.add_argument("--k", type=positive_int, default=10, help="items per user (default: 10)")
    serve.add_argument("--include-seen", action="store_true", help="allow items already in the history")
    serve.add_argument("--num-beams", type=positive_int, help=BEAMS_HELP)
    serve.add_argument("--batch-size", type=positive_int, default=256, help="users per beam search (default: 256)")
    add_device_flag(serve)
    add_json_flag(serve)
    serve.set_defaults(run=run_serve)
    from videoai.cli import recommend_audience, recommend_serve

    recommend_serve.add_parser(commands)
    recommend_audience.add_parser(commands)


def _add_log_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", required=True, help=LOG_HELP)
    parser.add_argument("--format", choices=LOG_FORMATS, default="auto",
                        help="auto (default): rows with ',' or a tab are interactions, else sequences")


def _add_model_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="folder written by `videoai recommend train`")


# ----------------------------------------------------------------------------------------------------------- inputs


def read_log(path: str, log_format: str):
    """UserSequences from an interaction log; the format is sniffed from the first line unless given."""
    from videoai.recommend import read_interactions, read_user_sequences

    file = existing_file(path, "--log")
    if log_format == "auto":
        try:
            with file.open() as handle:
                first = next((line for line in handle if line.strip()), "")
        except UnicodeDecodeError:
            raise CLIError(f"--log: {path!r} is not a text file") from None
        log_format = "interactions" if ("," in first or "\t" in first) else "sequences"
    try:
        return read_interactions(file) if log_format == "interactions" else read_user_sequences(file)
    except UnicodeDecodeError:
        raise CLIError(f"--log: {path!r} is not a text file") from None


def load_recommender(path: str, device: str | None):
    from videoai.recommend import OneRecRecommender

    existing_dir(path, "--model")
    with quiet_model_loading():
        return OneRecRecommender.from_pretrained(path, device=pick_device(device))


def item_indices(tokenizer, histories: list, where: list[str]) -> list:
    """Item ids -> index tensors, with a one-line error naming the offending line for unknown ids."""
    from videoai.recommend import UnknownItemError

    indices = []
    for history, place in zip(histories, where):
        try:
            indices.append(tokenizer.item_index(history))
        except UnknownItemError as error:
            raise CLIError(f"{place}: {error}") from None
    return indices


def read_histories(path: str, log_format: str) -> tuple[list, list[list], list[str]]:
    """(users, histories, where) from JSON lines or a log file; `where` names each history's origin for errors."""
    file = existing_file(path, "--histories")
    if file.suffix.lower() not in (".jsonl", ".json"):
        data = read_log(path, log_format)
        return data.users, data.sequences, [f"{path}: user {user!r}" for user in data.users]
    users, histories, where = [], [], []
    try:
        lines = file.read_text().splitlines()
    except UnicodeDecodeError:
        raise CLIError(f"--histories: {path!r} is not a text file") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CLIError(f"{path}:{number}: not valid JSON ({error})") from None
        items = record.get("items") if isinstance(record, dict) else None
        if not isinstance(items, list) or not items or not all(isinstance(i, (int, str)) for i in items):
            raise CLIError(f"{path}:{number}: expected {{\"user\": ..., \"items\": [item id, ...]}} with at least one "
                           f"int or string item id, got {line.strip()[:120]!r}")
        users.append(record.get("user", len(users)))
        histories.append(items)
        where.append(f"{path}:{number}")
    if not histories:
        raise CLIError(f"--histories: {path!r} holds no history")
    return users, histories, where


# ------------------------------------------------------------------------------------------------------------ train


def _default_codebook_size(num_items: int) -> int:
    """256 codes per level, fewer for small catalogues: balanced k-means needs several items per code."""
    return min(256, 2 ** int(math.log2(max(num_items // 4, 2))))


def run_train(args: argparse.Namespace) -> None:
    from videoai.recommend import (
        CONTENT_ID_MODEL,
        OneRecRecommender,
        OptimizerConfig,
        SemanticIDTokenizer,
        check_log_items,
        leave_last_out,
        make_train_loader,
        model_for_tokenizer,
        read_catalogue,
        tokenizer_from_catalogue,
        train_onerec,
    )
    from videoai.train import TrainConfig

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out: {args.out!r} exists and is not a folder")
    if not (math.isfinite(args.fuse_cooccurrence) and args.fuse_cooccurrence >= 0):
        raise CLIError(f"--fuse-cooccurrence: expected a number >= 0, got {args.fuse_cooccurrence}")
    if args.fuse_cooccurrence and args.catalogue is None:
        raise CLIError("--fuse-cooccurrence: only used with --catalogue (without it the IDs are co-occurrence only)")
    data = read_log(args.log, args.format)
    split = leave_last_out(data)
    catalogue = None if args.catalogue is None else read_catalogue(args.catalogue, name="--catalogue")
    if catalogue is not None:
        check_log_items(catalogue, data.items, args.log, name="--catalogue", log_name="--log")
    items = data.items if catalogue is None else catalogue.item_ids
    codebook_size = args.codebook_size or _default_codebook_size(len(items))
    # The whole catalogue gets IDs (test items included); co-occurrence comes from the training split only.
    embedding_dim = args.embedding_dim or min(64, max(1, len(items) // 2))
    fit = {"levels": args.levels, "codebook_size": codebook_size, "embedding_dim": embedding_dim, "seed": args.seed}
    if catalogue is None:
        tokenizer = SemanticIDTokenizer.from_sequences(split.train, items, **fit)
    else:
        tokenizer = tokenizer_from_catalogue(items, catalogue.embeddings, split.train,
                                             fuse_weight=args.fuse_cooccurrence, **fit)
    train = [tokenizer.item_index(sequence) for sequence in split.train]
    content = {} if catalogue is None else CONTENT_ID_MODEL  # no deep node vectors or item head: see catalogue.py
    model = model_for_tokenizer(tokenizer, max_history=args.max_history, d_model=args.d_model, **content)
    steps = args.steps or args.epochs * len(make_train_loader(train, tokenizer.codes, args.batch_size,
                                                               args.max_history))
    _, result = train_onerec(model, train, tokenizer.codes,
                             TrainConfig(output_dir=out / "train", max_steps=steps, seed=max(args.seed, 0),
                                         progress_bar=show_progress()),
                             OptimizerConfig(batch_size=args.batch_size, learning_rate=args.lr, lr_decay="cosine"),
                             trie=tokenizer.trie)
    with quiet_model_loading():
        OneRecRecommender(model, tokenizer).save_pretrained(out)
    report = {"model": str(out), "log": args.log, "users": len(data), "items": len(items),
              "levels": tokenizer.num_levels, "codebook_size": codebook_size, "collisions": tokenizer.num_collisions,
              "steps": result.step, "final_loss": round(float(result.loss), 4),
              "seconds": round(result.wall_time, 1)}
    text = (f"trained {result.step} steps in {result.wall_time:.0f}s on {len(data)} users / {len(items)} items "
            f"(semantic IDs: {tokenizer.num_levels} tokens, {codebook_size} codes per level), final loss "
            f"{result.loss:.4f}; recommender saved to {out}")
    if catalogue is not None:
        watched = {item for sequence in split.train for item in sequence}
        report.update(catalogue=args.catalogue, embedding_model=catalogue.model, skipped_rows=catalogue.num_skipped,
                      fuse_cooccurrence=args.fuse_cooccurrence, cold_items=sum(i not in watched for i in items))
        text += f"\ncatalogue: {catalogue.summary()}; {report['cold_items']} never watched in training, IDs by content"
    write_json(out / "training.json", report)
    emit(args, report, text)


# ------------------------------------------------------------------------------------------------------------- eval


def run_eval(args: argparse.Namespace) -> None:
    from videoai.recommend import evaluate_onerec, leave_last_out

    recommender = load_recommender(args.model, args.device)
    tokenizer = recommender.tokenizer
    split = leave_last_out(read_log(args.log, args.format))
    histories, targets, users = split.test_history, split.test_target, split.eval_users
    if args.max_users:
        histories, targets, users = histories[:args.max_users], targets[:args.max_users], users[:args.max_users]
    if not histories:
        raise CLIError(f"--log: {args.log!r} has no user with 3 or more items, so no leave-last-out test case")
    if max(args.k) > tokenizer.num_items:
        raise CLIError(f"--k: at most the catalogue size {tokenizer.num_items}, got {max(args.k)}")
    where = [f"{args.log}: user {user!r}" for user in users]
    history_indices = item_indices(tokenizer, histories, where)
    target_indices = item_indices(tokenizer, [[t] for t in targets], where)
    ks = tuple(sorted(set(args.k)))
    totals: dict[str, float] = {}
    # Metrics are means over users, so batch means weighted by batch size give the exact total.
    with progress(total=len(histories), desc="eval", unit="user") as bar:
        for start in range(0, len(histories), args.batch_size):
            stop = min(start + args.batch_size, len(histories))
            targets_batch = [t[0] for t in target_indices[start:stop]]
            metrics = evaluate_onerec(recommender.model, history_indices[start:stop], targets_batch, tokenizer.codes,
                                      recommender.trie, ks, num_beams=args.num_beams,
                                      batch_size=args.batch_size)
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + value * (stop - start)
            bar.update(stop - start)
    metrics = {name: round(value / len(histories), 4) for name, value in totals.items()}
    report = {"model": args.model, "log": args.log, "users": len(histories), "metrics": metrics}
    lines = [f"leave-last-out test, {len(histories)} users, {tokenizer.num_items} items"]
    lines += [f"Recall@{k} {metrics[f'recall@{k}']:.4f}  NDCG@{k} {metrics[f'ndcg@{k}']:.4f}" for k in ks]
    emit(args, report, "\n".join(lines))


# ------------------------------------------------------------------------------------------------------ serve-batch


def run_serve(args: argparse.Namespace) -> None:
    out = check_suffix(args.out, (".jsonl",), "--out")
    recommender = load_recommender(args.model, args.device)
    users, histories, where = read_histories(args.histories, args.format)
    item_indices(recommender.tokenizer, histories, where)  # every id known before any work or output
    if args.k > recommender.tokenizer.num_items:
        raise CLIError(f"--k: at most the catalogue size {recommender.tokenizer.num_items}, got {args.k}")
    lines = []
    with progress(total=len(histories), desc="recommend", unit="user") as bar:
        for start in range(0, len(histories), args.batch_size):
            batch = histories[start:start + args.batch_size]
            items, scores = recommender.recommend(batch, k=args.k, num_beams=args.num_beams,
                                                  exclude_seen=not args.include_seen)
            for user, row, row_scores in zip(users[start:], items, scores.tolist()):
                # fewer than k when the catalogue minus the history is smaller; invalid beams sort last
                lines.append(json.dumps({"user": user, "items": row,
                                         "scores": [round(s, 4) for s in row_scores[:len(row)]]}))
            bar.update(len(batch))
    atomic_write(out, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    report = {"out": str(out), "users": len(lines), "k": args.k}
    emit(args, report, f"wrote {out}: top-{args.k} items for {len(lines)} user(s)")
