"""Online serving of a OneRecRecommender: a FastAPI app whose requests are micro-batched into one beam search."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from .recommender import OneRecRecommender


class RecommendRequest(BaseModel):
    """Body of POST /recommend."""

    model_config = ConfigDict(extra="forbid")
    items: list[StrictInt | StrictStr] = Field(min_length=1, description="the user's history, oldest first")
    k: StrictInt = Field(10, ge=1, description="number of items to recommend")


class RecommendResponse(BaseModel):
    """Answer of POST /recommend: items best first, their log-probabilities, history ids the model does not know."""

    items: list[StrictInt | StrictStr]
    scores: list[float]
    unknown_items: list[StrictInt | StrictStr]


@dataclass
class BatchStats:
    """Counters of a MicroBatcher (read by /health and the tests)."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    overloaded: int = 0
    timed_out: int = 0


class Overloaded(RuntimeError):
    """More requests are waiting than MicroBatcher.max_queue allows (HTTP 503)."""


@dataclass
class _Pending:
    history: list
    k: int
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Gathers concurrent requests into one `recommend` call: up to max_batch_size, waiting at most max_wait_ms
    after the first; the model runs in a worker thread so the event loop keeps accepting requests meanwhile.

    max_queue: most requests waiting for a batch (more raise Overloaded at once, so an overloaded server sheds load
    instead of answering everyone late); timeout_ms: a request not answered by then raises TimeoutError and is
    dropped from its batch if the search has not started (None: no limit)."""

    def __init__(self, recommender: OneRecRecommender, max_batch_size: int = 32, max_wait_ms: float = 5.0,
                 num_beams: int | None = None, max_queue: int = 1024, timeout_ms: float | None = None):
        if not isinstance(max_batch_size, int) or isinstance(max_batch_size, bool) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive int, got {max_batch_size!r}")
        if not isinstance(max_wait_ms, (int, float)) or isinstance(max_wait_ms, bool) or not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be a number >= 0, got {max_wait_ms!r}")
        if num_beams is not None and (not isinstance(num_beams, int) or isinstance(num_beams, bool) or num_beams < 1):
            raise ValueError(f"num_beams must be None or a positive int, got {num_beams!r}")
        if not isinstance(max_queue, int) or isinstance(max_queue, bool) or max_queue < 1:
            raise ValueError(f"max_queue must be a positive int, got {max_queue!r}")
        if timeout_ms is not None and (not isinstance(timeout_ms, (int, float)) or isinstance(timeout_ms, bool)
                                       or not 0 < timeout_ms < float("inf")):
            raise ValueError(f"timeout_ms must be None or a finite number > 0, got {timeout_ms!r}")
        self.recommender, self.num_beams = recommender, num_beams
        self.max_queue, self.timeout_ms = max_queue, timeout_ms
        self.max_batch_size, self.max_wait_ms = max_batch_size, float(max_wait_ms)
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for a batch now."""
        return 0 if self._queue is None else self._queue.qsize()

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._worker = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop; requests still queued fail with CancelledError."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait().future.cancel()

    async def recommend(self, history: list, k: int) -> tuple[list, list[float]]:
        """Top-k unseen items of one (known, non-empty) history and their log-probs, via the next batch."""
        if not self.running:
            raise RuntimeError("MicroBatcher is not running: call start() inside the event loop first")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(history, k, future))
        except asyncio.QueueFull:
            self.stats.overloaded += 1
            raise Overloaded(f"{self.max_queue} requests are already waiting (max_queue)") from None
        if self.timeout_ms is None:
            return await future
        try:  # on timeout wait_for cancels the future, so the batch loop skips or ignores it
            return await asyncio.wait_for(future, self.timeout_ms / 1000)
        except TimeoutError:
            self.stats.timed_out += 1
            raise TimeoutError(f"not answered within {self.timeout_ms:g} ms (timeout_ms)") from None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_ms / 1000
            while len(batch) < self.max_batch_size:
                if not self._queue.empty():  # take what is already waiting without sleeping
                    batch.append(self._queue.get_nowait())
                    continue
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            await self._run(batch)

    async def _run(self, batch: list[_Pending]) -> None:
        batch = [pending for pending in batch if not pending.future.done()]  # drop requests whose client left
        if not batch:
            return
        k = max(pending.k for pending in batch)  # one search at the largest k; each answer is cut to its own k
        try:
            items, scores = await asyncio.to_thread(self.recommender.recommend, [p.history for p in batch], k,
                                                    self.num_beams)
        except asyncio.CancelledError:  # stop() during a search: its requests are cancelled, not left hanging
            for pending in batch:
                pending.future.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - every waiting request gets the model's error; serving goes on
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        self.stats.requests += len(batch)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for pending, row, row_scores in zip(batch, items, scores.tolist()):
            row = row[:pending.k]  # fewer than k when the catalogue minus the history is smaller
            if not pending.future.done():
                pending.future.set_result((row, row_scores[:len(row)]))


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A TCP socket listening on host:port (port 0: any free port), ready for uvicorn.Server.run(sockets=[...])."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         proto=socket.IPPROTO_TCP)[0]
    # proto must be IPPROTO_TCP, not 0 (socket.create_server's): asyncio sets TCP_NODELAY on accepted connections
    # only then, and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _error(status: int, field_name: str, message: str) -> JSONResponse:
    return JSONResponse({"error": f"{field_name}: {message}", "field": field_name}, status_code=status)


def _validation_error(error: RequestValidationError, num_items: int) -> JSONResponse:
    """Pydantic's error list -> one line naming the first bad field and what it should be."""
    first = error.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return _error(400, "body", f"not valid JSON ({first.get('ctx', {}).get('error', first.get('msg'))})")
    expected = {"items": "a non-empty list of item ids (ints or strings)", "k": f"an int in [1, {num_items}]"}
    name = loc[0] if loc else "body"
    if name not in expected:
        if first.get("type") == "extra_forbidden":
            return _error(422, name, "unknown field; expected only 'items' and 'k'")
        return _error(422, "body", f"expected a JSON object {{\"items\": [item id, ...], \"k\": 10}}, "
                                   f"got {first.get('input')!r:.80}")
    if first.get("type") == "missing":
        return _error(422, name, f"missing; expected {expected[name]}")
    if name == "items" and len(loc) > 1:  # items.3 names the bad element
        return _error(422, f"items.{loc[1]}", f"expected an item id (int or string), got {first.get('input')!r:.80}")
    return _error(422, name, f"expected {expected[name]}, got {first.get('input')!r:.80}")


def create_app(recommender: OneRecRecommender, max_batch_size: int = 32, max_wait_ms: float = 5.0,
               num_beams: int | None = None, max_queue: int = 1024, timeout_ms: float | None = None) -> FastAPI:
    """FastAPI app: POST /recommend {"items": [...], "k": 10} -> {"items", "scores", "unknown_items"}; GET /health.

    503 (with Retry-After) when max_queue requests already wait, 504 when a request is not answered within
    timeout_ms (MicroBatcher)."""
    if not isinstance(recommender, OneRecRecommender):
        raise TypeError(f"recommender must be a OneRecRecommender, got {type(recommender).__name__}")
    batcher = MicroBatcher(recommender, max_batch_size, max_wait_ms, num_beams, max_queue, timeout_ms)
    known = set(recommender.tokenizer.item_ids)
    num_items = recommender.tokenizer.num_items

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="videoai recommend", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return _validation_error(error, num_items)

    @app.get("/health")
    async def health() -> JSONResponse:
        if not batcher.running:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok", "num_items": num_items, "max_batch_size": batcher.max_batch_size,
                             "max_wait_ms": batcher.max_wait_ms, "max_queue": batcher.max_queue,
                             "timeout_ms": batcher.timeout_ms, "queued": batcher.queued, **vars(batcher.stats)})

    @app.post("/recommend", response_model=RecommendResponse,
              responses={400: {"description": "body is not JSON"}, 422: {"description": "bad field (named)"},
                         503: {"description": "too many requests waiting"}, 504: {"description": "timed out"}})
    async def recommend(body: RecommendRequest):
        if body.k > num_items:
            return _error(422, "k", f"expected an int in [1, {num_items}] (the catalogue size), got {body.k}")
        history = [item for item in body.items if item in known]
        unknown = list(dict.fromkeys(item for item in body.items if item not in known))
        if not history:
            return _error(422, "items", f"none of the {len(body.items)} item id(s) is in the catalogue, "
                                        f"e.g. {unknown[:5]!r}")
        try:
            items, scores = await batcher.recommend(history, body.k)
        except Overloaded as error:
            return JSONResponse({"error": f"busy: {error}; retry later"}, status_code=503, headers={"Retry-After": "1"})
        except TimeoutError as error:
            return JSONResponse({"error": f"timeout: {error}"}, status_code=504)
        except Exception as error:  # noqa: BLE001 - a model failure is a 500 with its one-line reason
            reason = str(error).splitlines()[0] if str(error) else ""
            return JSONResponse({"error": f"model: {type(error).__name__}: {reason}"}, status_code=500)
        return {"items": items, "scores": scores, "unknown_items": unknown}

    return app
