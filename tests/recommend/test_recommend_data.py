import pytest
import torch

from videoai.recommend import (
    EvalCollator,
    InteractionLogError,
    LengthGroupedBatchSampler,
    NextItemCollator,
    UserSequences,
    leave_last_out,
    read_interactions,
    read_user_sequences,
)


def test_read_user_sequences_iclrec_format(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("1 10 11 12\n2 11 13\n\n3 a1 b2 c3\n")
    data = read_user_sequences(path)
    assert data.users == [1, 2, 3]
    assert data.sequences == [[10, 11, 12], [11, 13], ["a1", "b2", "c3"]]
    path.write_text("1 10 11\n7\n")
    with pytest.raises(InteractionLogError, match=r"log.txt:2: expected 'user item"):
        read_user_sequences(path)
    path.write_text("\n\n")
    with pytest.raises(InteractionLogError, match="no user lines"):
        read_user_sequences(path)
    with pytest.raises(FileNotFoundError):
        read_user_sequences(tmp_path / "missing.txt")


def test_read_interactions_sorts_by_time_and_keeps_labels(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp,label\nu1,i3,30,1\nu1,i1,10,0\nu2,i2,5,1\nu1,i2,20,1\n")
    data = read_interactions(path)
    assert data.users == ["u1", "u2"]
    assert data.sequences == [["i1", "i2", "i3"], ["i2"]]
    assert data.labels == [[0.0, 1.0, 1.0], [1.0]]
    assert read_interactions(path, min_label=1).sequences == [["i2", "i3"], ["i2"]]
    tsv = tmp_path / "log.tsv"
    tsv.write_text("1\t5\t2.5\n1\t4\t1.0\n")
    assert read_interactions(tsv).sequences == [[4, 5]] and read_interactions(tsv).labels is None


@pytest.mark.parametrize("text, message", [
    ("u1,i1,notatime\n", "timestamp and label must be numbers"),
    ("u1,i1\n", "expected 3 or 4 columns"),
    ("u1,i1,1\nu1,i2,2,1\n", "expected 3 columns"),
    ("u1,i1,inf\n", "must be finite"),
    ("user,item,timestamp\n", "no interaction rows"),
])
def test_malformed_logs(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InteractionLogError, match=message):
        read_interactions(path)


def test_leave_last_out():
    data = UserSequences(users=["a", "b"], sequences=[[1, 2, 3, 4, 5], [7, 8]])
    split = leave_last_out(data)
    assert split.train == [[1, 2, 3], [7, 8]]
    assert split.valid_history == [[1, 2, 3]] and split.valid_target == [4]
    assert split.test_history == [[1, 2, 3, 4]] and split.test_target == [5]
    assert split.eval_users == ["a"]
    with pytest.raises(TypeError, match="UserSequences"):
        leave_last_out([[1, 2, 3]])


def test_collator_targets_every_position():
    codes = torch.arange(10)[:, None].repeat(1, 3) * torch.tensor([1, 10, 100])  # item i -> (i, 10i, 100i)
    batch = NextItemCollator(codes, session_length=2)([torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6])])
    assert batch["history_items"].tolist() == [[1, 2, 3], [-1, -1, 5]]
    assert batch["target_items"].tolist() == [[[2, 3], [3, 4], [4, -1]], [[-1, -1], [-1, -1], [6, -1]]]
    assert batch["history_codes"].shape == (2, 3, 3) and batch["target_codes"].shape == (2, 3, 2, 3)
    assert batch["history_codes"][0, 1].tolist() == [2, 20, 200]
    assert batch["target_mask"].sum() == 6
    assert (batch["history_codes"][~batch["history_mask"]] == 0).all()
    evaluation = EvalCollator(codes, max_length=2)([(torch.tensor([1, 2, 3]), 4), (torch.tensor([5]), 6)])
    assert evaluation["history_items"].tolist() == [[2, 3], [-1, 5]] and evaluation["target"].tolist() == [4, 6]


def test_length_grouped_sampler_is_a_deterministic_permutation():
    lengths = torch.randint(1, 50, (1000,), generator=torch.Generator().manual_seed(0)).tolist()
    sampler = LengthGroupedBatchSampler(lengths, batch_size=32, seed=3, group_batches=4)
    sampler.set_epoch(5)
    first = list(sampler)
    sampler.set_epoch(5)
    assert list(sampler) == first  # same (seed, epoch) -> same batches
    assert list(sampler) != first  # iterating advances the epoch
    assert sorted(i for b in first for i in b) == list(range(1000)) and len(first) == len(sampler) == 32
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first) / len(first)
    assert spread < 20  # batches hold similar lengths (random batches would spread ~45)
    assert len(list(LengthGroupedBatchSampler(lengths, 300, drop_last=True))) == 3
