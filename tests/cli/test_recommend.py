"""`videoai recommend train|eval|serve-batch|audience` on a tiny synthetic interaction log."""

import json

import pytest

from videoai.recommend import OneRecRecommender


def test_train_writes_a_loadable_recommender(recommender_dir, interaction_log):
    recommender = OneRecRecommender.from_pretrained(recommender_dir)
    assert recommender.tokenizer.num_items == 40
    assert sorted(recommender.tokenizer.item_ids) == list(range(40))  # the whole catalogue, test items included
    report = json.loads((recommender_dir / "training.json").read_text())
    assert (report["users"], report["items"], report["steps"]) == (80, 40, 4)


def test_train_json_on_a_sequences_log(cli, tmp_path):
    log = tmp_path / "seq.txt"  # 'user item item ...' lines
    log.write_text("\n".join(f"{u} " + " ".join(str((u + t) % 16) for t in range(5)) for u in range(20)) + "\n")
    code, out, err = cli("recommend", "train", "--log", log, "--out", tmp_path / "m", "--steps", "1", "--d-model", "8",
                         "--levels", "1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["users"], report["items"], report["steps"]) == (20, 16, 1)
    assert (tmp_path / "m" / "model").is_dir() and (tmp_path / "m" / "tokenizer").is_dir()


def test_eval_prints_recall_and_ndcg(cli, recommender_dir, interaction_log):
    code, out, err = cli("recommend", "eval", "--model", recommender_dir, "--log", interaction_log, "--device", "cpu")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "leave-last-out test, 80 users, 40 items"
    assert lines[1].startswith("Recall@5 ") and "NDCG@5 " in lines[1]
    assert lines[2].startswith("Recall@10 ") and "NDCG@10 " in lines[2]

    code, out, err = cli("recommend", "eval", "--model", recommender_dir, "--log", interaction_log, "--device", "cpu",
                         "--max-users", "30", "--batch-size", "7", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["users"] == 30
    metrics = report["metrics"]
    assert set(metrics) == {"recall@5", "ndcg@5", "recall@10", "ndcg@10"}
    assert all(0 <= v <= 1 for v in metrics.values())
    assert metrics["recall@5"] <= metrics["recall@10"] and metrics["ndcg@5"] <= metrics["recall@5"]


def test_serve_batch_jsonl(cli, recommender_dir, tmp_path):
    histories = tmp_path / "histories.jsonl"
    histories.write_text('{"user": "a", "items": [1, 2, 3]}\n\n{"user": 7, "items": [21]}\n{"items": [35, 36]}\n')
    out = tmp_path / "recs.jsonl"
    code, stdout, err = cli("recommend", "serve-batch", "--model", recommender_dir, "--histories", histories,
                            "--out", out, "--k", "4", "--num-beams", "12", "--batch-size", "2", "--device", "cpu",
                            "--json")
    assert code == 0, err
    assert json.loads(stdout) == {"out": str(out), "users": 3, "k": 4}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user"] for r in records] == ["a", 7, 2]
    seen = [{1, 2, 3}, {21}, {35, 36}]
    for record, history in zip(records, seen):
        assert set(record) == {"user", "items", "scores"}
        assert 1 <= len(record["items"]) <= 4 and len(record["scores"]) == len(record["items"])
        assert len(set(record["items"])) == len(record["items"]) and not history & set(record["items"])
        assert all(0 <= item < 40 for item in record["items"])
        assert record["scores"] == sorted(record["scores"], reverse=True)


def test_serve_batch_from_a_log(cli, recommender_dir, interaction_log, tmp_path):
    out = tmp_path / "recs.jsonl"
    code, stdout, err = cli("recommend", "serve-batch", "--model", recommender_dir, "--histories", interaction_log,
                            "--out", out, "--k", "2", "--include-seen", "--device", "cpu")
    assert code == 0, err
    assert stdout.strip() == f"wrote {out}: top-2 items for 80 user(s)"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["user"] for r in records] == [f"u{u}" for u in range(80)]
    assert all(len(r["items"]) == 2 for r in records)  # nothing excluded: k beams always give k items


def test_bad_inputs(cli, recommender_dir, interaction_log, tmp_path, one_line_error):
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"user": "a", "items": [1, 2]}\n{"user": "b", "items": [3, 999]}\n')
    code, _, err = cli("recommend", "serve-batch", "--model", recommender_dir, "--histories", unknown,
                       "--out", tmp_path / "r.jsonl")
    one_line_error(code, err, "unknown.jsonl:2", "999")
    assert not (tmp_path / "r.jsonl").exists()

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"user": "a", "items": [1, 2]}\n{"user": "b", "items": 3}\n')
    code, _, err = cli("recommend", "serve-batch", "--model", recommender_dir, "--histories", broken,
                       "--out", tmp_path / "r.jsonl")
    one_line_error(code, err, "broken.jsonl:2")
    code, _, err = cli("recommend", "serve-batch", "--model", recommender_dir, "--histories", unknown,
                       "--out", tmp_path / "r.json")
    one_line_error(code, err, "--out", ".jsonl")

    malformed = tmp_path / "malformed.csv"
    malformed.write_text("user,item,timestamp\nu1,1,0\nu1,2,yesterday\n")
    code, _, err = cli("recommend", "eval", "--model", recommender_dir, "--log", malformed)
    one_line_error(code, err, "malformed.csv:3", "timestamp")
    code, _, err = cli("recommend", "train", "--log", malformed, "--out", tmp_path / "m")
    one_line_error(code, err, "malformed.csv:3")
    assert not (tmp_path / "m").exists()

    other = tmp_path / "other.csv"
    other.write_text("".join(f"u{u},{item},{t}\n" for u in range(3) for t, item in enumerate([1, 2, 500 + u])))
    code, _, err = cli("recommend", "eval", "--model", recommender_dir, "--log", other)
    one_line_error(code, err, "other.csv", "500")

    code, _, err = cli("recommend", "eval", "--model", tmp_path / "nothing", "--log", interaction_log)
    one_line_error(code, err, "--model")
    code, _, err = cli("recommend", "eval", "--model", recommender_dir, "--log", tmp_path / "nothing.csv")
    one_line_error(code, err, "--log", "no such file")
    code, _, err = cli("recommend", "serve-batch", "--model", recommender_dir, "--histories", interaction_log,
                       "--out", tmp_path / "r.jsonl", "--k", "41")
    one_line_error(code, err, "--k", "40")


def test_audience_ranks_users_by_log_prob(cli, recommender_dir, interaction_log, tmp_path):
    recommender = OneRecRecommender.from_pretrained(recommender_dir)
    histories = tmp_path / "histories.jsonl"
    histories.write_text('{"user": "a", "items": [1, 2, 3]}\n{"user": "b", "items": [21, 22]}\n'
                         '{"user": "c", "items": [5, 6]}\n{"items": [35]}\n')
    out = tmp_path / "audience.jsonl"
    code, stdout, err = cli("recommend", "audience", "--model", recommender_dir, "--item", "5", "--histories",
                            histories, "--top", "2", "--out", out, "--batch-size", "3", "--device", "cpu", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert (report["item"], report["users"], report["left_out_seen"], report["out"]) == (5, 4, 1, str(out))
    users, log_probs = recommender.audience(5, [[1, 2, 3], [21, 22], [5, 6], [35]], top=2)
    names = ["a", "b", "c", 3]
    assert report["top"] == [{"user": names[u], "log_prob": round(lp, 4)}
                             for u, lp in zip(users.tolist(), log_probs.tolist())]
    assert [json.loads(line) for line in out.read_text().splitlines()] == report["top"]

    code, stdout, err = cli("recommend", "audience", "--model", recommender_dir, "--item", "5", "--histories",
                            interaction_log, "--top", "3", "--include-seen")
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert lines[0] == "audience of item 5: top 3 of 80 users by log P(next item | history)"
    scores = [float(line.split("\t")[1]) for line in lines[1:]]
    assert len(scores) == 3 and all(line.startswith("u") for line in lines[1:]) and scores == sorted(scores)[::-1]


def test_audience_bad_inputs(cli, recommender_dir, interaction_log, tmp_path, one_line_error, capsys):
    base = ("recommend", "audience", "--model", recommender_dir, "--histories", interaction_log)
    code, _, err = cli(*base, "--item", "999")
    one_line_error(code, err, "--item", "999", "40 items")
    code, _, err = cli(*base, "--item", "pear")
    one_line_error(code, err, "--item", "pear")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, err = cli("recommend", "audience", "--model", recommender_dir, "--histories", empty, "--item", "1")
    one_line_error(code, err, "--histories", "no history")
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"user": "a", "items": [1, 2]}\n{"user": "b", "items": [3, 777]}\n')
    code, _, err = cli("recommend", "audience", "--model", recommender_dir, "--histories", unknown, "--item", "1",
                       "--out", tmp_path / "a.jsonl")
    one_line_error(code, err, "unknown.jsonl:2", "777")
    assert not (tmp_path / "a.jsonl").exists()
    code, _, err = cli(*base, "--item", "1", "--out", tmp_path / "a.json")
    one_line_error(code, err, "--out", ".jsonl")
    with pytest.raises(SystemExit) as exit_info:
        cli(*base, "--item", "1", "--top", "0")
    assert exit_info.value.code == 2 and "--top" in capsys.readouterr().err
