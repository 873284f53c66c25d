"""Where `index_videos` runs its per-video function: a pool of processes on this machine, or Ray Data.

Every engine takes the same picklable `task(path) -> row` and yields rows as they finish (any order); the caller
commits and merges them, so resuming and the table are the same whatever ran the videos.

A local worker process that dies (a segfault or OOM kill in a decoder) breaks the whole pool, and its Python
exception cannot say which video did it: every video that was in flight then runs alone in a new pool, so a
second death names its video, which becomes the row `crashed(path)`; then the rest go on in parallel again.
On Ray a task whose worker dies is retried once (Ray Data's default is to retry it forever, so one file that
crashes its decoder would hang the run); a block still failing then is dropped by Ray Data (`max_errored_blocks`
unlimited for this dataset). Past MAX_RAY_BLOCKS videos a block holds several, so the videos of dropped blocks run
once more, one per block; a video still failing then gets the row `crashed(path)`.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import warnings
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Callable, Iterator

from videoai.understand._threads import limit_cores, usable_cores

ENGINES = ("local", "ray")
MAX_RAY_BLOCKS = 4096  # one video per block up to this many: small catalogues spread over every CPU

_worker_task: Callable[[str], dict] | None = None


def _init_worker(task: Callable[[str], dict], workers: int) -> None:
    """Pool initializer: one intra-op thread per process and a share of the cores for the shot detector's threads
    (the processes share the machine), the task kept once."""
    import torch

    global _worker_task
    torch.set_num_threads(1)
    limit_cores(usable_cores() // workers)
    _worker_task = task


def _run_in_worker(path: str) -> dict:
    return _worker_task(path)


def _new_pool(task: Callable[[str], dict], workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: torch and the decoder's threads do not survive a fork, and spawn behaves the same on every OS.
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(task, workers))


def run_local(paths: list[str], task: Callable[[str], dict], workers: int | None,
              crashed: Callable[[str], dict]) -> Iterator[dict]:
    """A spawn pool of `workers` processes (default 1), at most 2 videos per worker queued at a time. One worker
    too runs in a process of its own: a decoder that crashes on a file then costs that file's row, not the run.

    crashed(path) -> the row of a video whose worker process died while running it.
    """
    workers = workers or 1
    if not paths:
        return
    pool = _new_pool(task, workers)
    queue = iter(paths)
    running: dict[Future, str] = {}
    suspects: list[str] = []  # in flight when the pool broke: each runs alone until none is left
    try:
        while True:
            if suspects:
                path = suspects.pop()
                try:
                    row = pool.submit(_run_in_worker, path).result()
                except BrokenProcessPool:  # it died running only this video: this video killed it
                    row = crashed(path)
                    pool.shutdown(cancel_futures=True)
                    pool = _new_pool(task, workers)
                yield row
                continue
            broken = False
            for path in islice(queue, 2 * workers - len(running)):
                try:
                    running[pool.submit(_run_in_worker, path)] = path
                except BrokenProcessPool:  # broke since the last wait
                    suspects.append(path)
                    broken = True
                    break
            if not broken:
                if not running:
                    return
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    path = running.pop(future)
                    try:
                        row = future.result()
                    except BrokenProcessPool:
                        suspects.append(path)
                        broken = True
                        continue
                    yield row
            if broken:  # every unfinished video may be the one that died; finished rows are already yielded
                suspects += running.values()
                running.clear()
                pool.shutdown(cancel_futures=True)
                pool = _new_pool(task, workers)
    finally:
        pool.shutdown(cancel_futures=True)


def _ray_row(item: dict, task: Callable[[str], dict]) -> dict:
    limit_cores(1)  # each task holds one CPU of the cluster
    # Pickled so Ray Data never infers or unifies the nested column types; the caller builds the table.
    return {"path": item["path"], "row": pickle.dumps(task(item["path"]))}


def _ray_rows(paths: list[str], task: Callable[[str], dict], workers: int | None) -> Iterator[dict]:
    """Records {"path", "row" (pickled)} of one Ray Data pass over `paths`, one video per block up to MAX_RAY_BLOCKS."""
    import ray

    dataset = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=min(len(paths), MAX_RAY_BLOCKS))
    with warnings.catch_warnings():  # Ray 2.60 deprecates remote args as keywords but names no max_retries yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        dataset = dataset.map(_ray_row, fn_kwargs={"task": task}, num_cpus=1, concurrency=workers, max_retries=1)
    yield from dataset.iter_rows()


def run_ray(paths: list[str], task: Callable[[str], dict], workers: int | None, address: str | None,
            crashed: Callable[[str], dict]) -> Iterator[dict]:
    """`ray.data.from_items(paths).map(task)` on the cluster at `address` (or the running / a new local one);
    crashed(path) -> the row of a video whose task kept failing (see the module doc)."""
    if not paths:
        return
    try:
        import ray
    except ImportError as error:
        raise ImportError("engine='ray' needs Ray Data: pip install 'ray[data]'") from error
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="warning")
    context = ray.data.DataContext.get_current()  # datasets take a copy when they are made: set it first
    context.enable_progress_bars = False  # ours counts videos/s
    errored_blocks, context.max_errored_blocks = context.max_errored_blocks, -1
    ray_data_logger = logging.getLogger("ray.data")  # its execution-plan notes would break up our progress bar
    level = ray_data_logger.level
    ray_data_logger.setLevel(logging.ERROR)
    missing = Counter(paths)  # the videos whose rows have not come back

    def rows_of(chunk: list[str]) -> Iterator[dict]:
        for record in _ray_rows(chunk, task, workers):
            missing[record["path"]] -= 1
            yield pickle.loads(record["row"])

    try:
        yield from rows_of(paths)
        if len(paths) > MAX_RAY_BLOCKS:  # a dropped block held several videos: run those once more, one per block
            retry = list(missing.elements())
            for start in range(0, len(retry), MAX_RAY_BLOCKS):
                yield from rows_of(retry[start:start + MAX_RAY_BLOCKS])
        for path in missing.elements():
            yield crashed(path)
    finally:
        context.max_errored_blocks = errored_blocks
        ray_data_logger.setLevel(level)
        if started:
            ray.shutdown()


def run_engine(engine: str, paths: list[str], task: Callable[[str], dict], *, crashed: Callable[[str], dict],
               workers: int | None = None, address: str | None = None) -> Iterator[dict]:
    """Rows of `task` over `paths` on `engine` ("local" or "ray"), yielded as they finish.

    crashed(path) -> the row of a video whose worker process died running it.
    """
    if engine == "ray":
        return run_ray(paths, task, workers, address, crashed)
    return run_local(paths, task, workers, crashed)
