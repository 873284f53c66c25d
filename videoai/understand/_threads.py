"""Worker threads for the shot detector's heavy steps (decoding, scaling, OpenCV and torch all release the GIL)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

__all__ = ["core_share", "limit_cores", "shared_pool", "split_rows", "usable_cores"]

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_core_limit: int | None = None
_thread_share = threading.local()  # .cores: the cores split_rows may use from this thread (None: all usable)


def _forget_pool_in_child() -> None:
    """A forked child has none of the parent's threads: it starts a pool of its own when it needs one."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def limit_cores(count: int | None) -> None:
    """Use at most `count` cores in this process (None: all), for processes that share a machine (index workers)."""
    global _core_limit
    _core_limit = None if count is None else max(1, int(count))


def usable_cores() -> int:
    """CPU cores this process may run on (at most the `limit_cores` share)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores if _core_limit is None else min(cores, _core_limit)


@contextmanager
def core_share(count: int):
    """Within the block, split_rows called from this thread splits over at most `count` cores: for tasks that run
    side by side, so that together they keep every core busy without queueing slices behind each other."""
    previous = getattr(_thread_share, "cores", None)
    _thread_share.cores = max(1, int(count))
    try:
        yield
    finally:
        _thread_share.cores = previous


def shared_pool() -> ThreadPoolExecutor:
    """One thread per core for short CPU-bound tasks that start no tasks of their own (so none waits on itself)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=usable_cores(), thread_name_prefix="videoai-rows")
        return _pool


def split_rows(fn, *rows: torch.Tensor, min_rows: int = 32, max_rows: int = 4096):
    """fn(*rows) -> a tuple of tensors whose first dimension follows the rows', computed `max_rows` rows at a time
    (bounding fn's temporaries), each block in about equal slices in parallel (CPU tensors only, and only `min_rows`
    rows per slice at least). fn must not call split_rows itself: the slices run on one shared pool."""
    count = rows[0].shape[0]
    if count > max_rows:
        blocks = [split_rows(fn, *(r[a:a + max_rows] for r in rows), min_rows=min_rows, max_rows=max_rows)
                  for a in range(0, count, max_rows)]
        return tuple(torch.cat(columns) for columns in zip(*blocks))
    share = getattr(_thread_share, "cores", None)
    parts = min(usable_cores() if share is None else min(share, usable_cores()), count // min_rows)
    if parts < 2 or rows[0].device.type != "cpu":
        return fn(*rows)
    bounds = [count * k // parts for k in range(parts + 1)]
    pending = [shared_pool().submit(fn, *(r[a:b] for r in rows)) for a, b in zip(bounds, bounds[1:])]
    results = [p.result() for p in pending]
    return tuple(torch.cat(columns) for columns in zip(*results))  # each output's slices, in order
