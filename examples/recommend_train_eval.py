"""Train a OneRec-style generative recommender on an interaction log and report leave-last-out Recall/NDCG.

    python examples/recommend_train_eval.py --log ../shared/data/amazon/Beauty.txt --output /tmp/onerec
    python examples/recommend_train_eval.py --log interactions.csv   # rows: user,item,timestamp[,label]

Multi-process: `accelerate launch examples/recommend_train_eval.py ...` (the shared Trainer handles the processes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate import PartialState

from videoai.recommend import (
    OneRecRecommender,
    OptimizerConfig,
    SemanticIDTokenizer,
    evaluate_onerec,
    leave_last_out,
    make_train_loader,
    model_for_tokenizer,
    read_interactions,
    read_user_sequences,
    train_onerec,
)
from videoai.train import TrainConfig


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, help="ICLRec .txt (user item item ...) or .csv/.tsv interaction log")
    parser.add_argument("--output", default="/tmp/onerec")
    parser.add_argument("--epochs", type=int, default=20, help="the benchmark's budget (1,760 steps on Beauty)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--eval-users", type=int, default=2000, help="test users to score (0 = all)")
    args = parser.parse_args()

    path = Path(args.log)
    data = read_user_sequences(path) if path.suffix == ".txt" else read_interactions(path)
    split = leave_last_out(data)
    tokenizer = SemanticIDTokenizer.from_sequences(split.train, sorted(data.items), args.levels, args.codebook_size)
    train = [tokenizer.item_index(seq) for seq in split.train]
    model = model_for_tokenizer(tokenizer, d_model=args.d_model)
    steps = args.epochs * len(make_train_loader(train, tokenizer.codes, args.batch_size))
    train_onerec(model, train, tokenizer.codes,
                 TrainConfig(output_dir=Path(args.output) / "train", max_steps=steps, checkpoint_every=steps),
                 OptimizerConfig(batch_size=args.batch_size, learning_rate=args.lr, lr_decay="cosine"),
                 trie=tokenizer.trie)

    if not PartialState().is_main_process:  # evaluate and save once
        return
    users = slice(0, args.eval_users or None)
    histories = [tokenizer.item_index(h) for h in split.test_history[users]]
    targets = tokenizer.item_index(split.test_target[users])
    metrics = evaluate_onerec(model, histories, targets, tokenizer.codes, tokenizer.trie)
    print({name: round(value, 4) for name, value in metrics.items()})
    OneRecRecommender(model, tokenizer).save_pretrained(Path(args.output) / "recommender")


if __name__ == "__main__":
    main()
