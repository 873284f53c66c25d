import torch

from videoai.understand._threads import split_rows


def test_split_rows_gives_what_one_call_gives():
    calls = []

    def fn(x, y):
        calls.append(x.shape[0])
        return x * 2, (x + y).sum(1)

    x, y = torch.randn(100, 3), torch.randn(100, 3)
    doubled, summed = split_rows(fn, x, y, min_rows=10)
    assert torch.equal(doubled, x * 2) and torch.equal(summed, (x + y).sum(1))
    assert sum(calls) == 100
    calls.clear()
    split_rows(fn, x[:15], y[:15], min_rows=10)  # too few rows to split
    assert calls == [15]
