import multiprocessing
import os

import pytest
import torch

from videoai.understand._threads import core_share, split_rows, usable_cores


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


def test_split_rows_works_a_block_at_a_time_in_order():
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return (x + 1,)

    x = torch.arange(250.0)[:, None]
    (out,) = split_rows(fn, x, min_rows=10, max_rows=100)  # blocks of 100, 100 and 50 rows
    assert torch.equal(out, x + 1) and max(calls) <= 100 and sum(calls) == 250


def test_a_core_share_caps_the_slices_of_this_thread_only():
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return (x,)

    rows = torch.zeros(400, 1)
    with core_share(1):
        split_rows(fn, rows, min_rows=10)
    assert calls == [400]  # one slice: the other core belongs to a task running beside this one
    calls.clear()
    split_rows(fn, rows, min_rows=10)
    assert len(calls) == min(usable_cores(), 40)


def _doubled_in_child(queue) -> None:
    rows = torch.arange(100.0)[:, None]
    queue.put(float(split_rows(lambda x: (x * 2,), rows, min_rows=10)[0].sum()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_gets_a_pool_of_its_own():
    split_rows(lambda x: (x,), torch.zeros(100, 1), min_rows=10)  # the parent's pool exists before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_doubled_in_child, args=(queue,))
    child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and queue.get(timeout=5) == 9900.0
