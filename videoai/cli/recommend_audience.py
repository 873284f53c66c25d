"""`videoai recommend audience`: the users most likely to pick a given item next (e.g. who to show a new upload)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from videoai.cli.common import (
    CLIError,
    add_device_flag,
    add_json_flag,
    atomic_write,
    check_suffix,
    emit,
    positive_int,
)


def add_parser(commands) -> None:
    """Add the `audience` action to the `recommend` ACTION subparsers."""
    from videoai.cli.recommend import LOG_FORMATS

    audience = commands.add_parser(
        "audience", help="the users most likely to pick an item next, with log-probabilities",
        description="Rank the users of --histories by log P(next item = --item | history): the exact log-probability "
                    "of the item's semantic ID under the model, with the same trie-constrained softmax that "
                    "recommendations are scored with (so the figures compare with `serve-batch` scores). Users whose "
                    "history already holds the item are left out unless --include-seen.")
    audience.add_argument("--model", required=True, metavar="DIR", help="folder written by `videoai recommend train`")
    audience.add_argument("--item", required=True, metavar="ID", help="item id (as in the log) to find an audience for")
    audience.add_argument("--histories", required=True, metavar="FILE",
                          help="JSON lines {\"user\": ..., \"items\": [item, ...]} (.jsonl / .json), or a log as for "
                               "train (each user's whole sequence is the history)")
    audience.add_argument("--format", choices=LOG_FORMATS, default="auto", help="format of a non-JSON --histories file")
    audience.add_argument("--top", type=positive_int, default=10, metavar="N", help="users to keep (default: 10)")
    audience.add_argument("--include-seen", action="store_true", help="also rank users who already have the item")
    audience.add_argument("--out", metavar="FILE",
                          help="also write the top users as JSON lines {\"user\", \"log_prob\"} (.jsonl)")
    audience.add_argument("--batch-size", type=positive_int, default=256, help="users per model call (default: 256)")
    add_device_flag(audience)
    add_json_flag(audience)
    audience.set_defaults(run=run_audience)


def resolve_item(tokenizer, text: str):
    """The catalogue's id for --item: the text itself, or its int when the log's ids are numbers."""
    candidates = [text]
    try:
        candidates.append(int(text))
    except ValueError:
        pass
    known = set(tokenizer.item_ids)
    for candidate in candidates:
        if candidate in known:
            return candidate
    raise CLIError(f"--item: {text!r} is not in the model's catalogue ({tokenizer.num_items} items)")


def run_audience(args: argparse.Namespace) -> None:
    from videoai.cli.recommend import item_indices, load_recommender, read_histories

    out = check_suffix(args.out, (".jsonl",), "--out") if args.out else None
    recommender = load_recommender(args.model, args.device)
    item = resolve_item(recommender.tokenizer, args.item)
    users, histories, where = read_histories(args.histories, args.format)
    indices = item_indices(recommender.tokenizer, histories, where)  # every id known before any work or output
    positions, log_probs = recommender.audience(item, histories, top=args.top, batch_size=args.batch_size,
                                                exclude_seen=not args.include_seen)
    top = [{"user": users[p], "log_prob": round(lp, 4)} for p, lp in zip(positions.tolist(), log_probs.tolist())]
    target = int(recommender.tokenizer.item_index([item])[0])
    seen = 0 if args.include_seen else sum(bool((history == target).any()) for history in indices)
    if out is not None:
        atomic_write(out, lambda tmp: Path(tmp).write_text("".join(json.dumps(row) + "\n" for row in top)))
    report = {"item": item, "users": len(histories), "left_out_seen": seen, "top": top}
    if out is not None:
        report["out"] = str(out)
    lines = [f"audience of item {item!r}: top {len(top)} of {len(histories)} users by log P(next item | history)"
             + (f", {seen} who already have it left out" if seen else "")]
    lines += [f"{row['user']}\t{row['log_prob']:.4f}" for row in top]
    if out is not None:
        lines.append(f"wrote {out}")
    emit(args, report, "\n".join(lines))
