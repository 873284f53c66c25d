"""HTTP serving of a tiny OneRecRecommender: answers, micro-batching, bad requests, health, a short load run."""

import asyncio
import contextlib
import socket
import threading
import time

import httpx
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

from videoai.recommend import OneRecRecommender, SemanticIDTokenizer, model_for_tokenizer
from videoai.recommend.serving import MicroBatcher, create_app, listening_socket

HISTORIES = [["v1", "v2", "v3"], ["v9"], ["v30", "v4"], ["v7", "v8", "v9", "v10", "v11", "v12", "v13"], ["v0"],
             ["v5", "v5", "v6"]]


class CountingRecommender(OneRecRecommender):
    """Records (number of histories, k) of every model call; optionally fails the first `fail` calls."""

    def __init__(self, recommender: OneRecRecommender, fail: int = 0):
        super().__init__(recommender.model, recommender.tokenizer)
        self.calls, self.fail = [], fail

    def recommend(self, histories, k=10, num_beams=None, exclude_seen=True):
        self.calls.append((len(histories), k))
        if len(self.calls) <= self.fail:
            raise RuntimeError("model fell over")
        return super().recommend(histories, k, num_beams, exclude_seen)


@pytest.fixture(scope="module")
def recommender() -> OneRecRecommender:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    tokenizer = SemanticIDTokenizer(levels=2, codebook_size=4, iters=3).fit(torch.randn(32, 6, generator=generator),
                                                                           [f"v{i}" for i in range(32)])
    torch.manual_seed(0)
    model = model_for_tokenizer(tokenizer, max_history=6, d_model=16, num_heads=2, num_encoder_layers=1,
                                num_decoder_layers=2, d_ff=32, num_experts=4, experts_top_k=2, dropout=0.0)
    torch.set_num_threads(threads)
    return OneRecRecommender(model.eval(), tokenizer)


@contextlib.contextmanager
def live_server(app):
    """Serve `app` with uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):  # at most 10 s
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


async def post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    """POST every body at once (one connection each) and return the responses in order."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(*(client.post("/recommend", json=body) for body in bodies))


def expected(recommender, history, k, num_beams=None):
    items, scores = recommender.recommend([history], k=k, num_beams=num_beams)
    return items[0], scores[0, :len(items[0])].tolist()


def assert_answer(answer: dict, items: list, scores: list) -> None:
    assert answer["items"] == items
    assert answer["scores"] == pytest.approx(scores, abs=1e-5)


def test_answers_equal_recommend_and_health(recommender):
    with TestClient(create_app(recommender, max_batch_size=4, max_wait_ms=1)) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["num_items"] == 32
        for history, k in zip(HISTORIES, [1, 3, 5, 10, 32 - 1, 4]):
            response = client.post("/recommend", json={"items": history, "k": k})
            assert response.status_code == 200, response.text
            answer = response.json()
            assert_answer(answer, *expected(recommender, history, k))
            assert answer["unknown_items"] == [] and not set(history) & set(answer["items"])
            assert answer["scores"] == sorted(answer["scores"], reverse=True)
        default_k = client.post("/recommend", json={"items": ["v3"]}).json()
        assert len(default_k["items"]) == 10


def test_unknown_items_are_skipped_and_reported(recommender):
    with TestClient(create_app(recommender, max_wait_ms=0)) as client:
        answer = client.post("/recommend", json={"items": ["v1", "nope", 99, "v2", "nope"], "k": 4}).json()
    assert_answer(answer, *expected(recommender, ["v1", "v2"], 4))
    assert answer["unknown_items"] == ["nope", 99]


def test_health_is_503_until_the_batcher_runs(recommender):
    client = TestClient(create_app(recommender))  # no `with`: the lifespan (which starts the batcher) never ran
    response = client.get("/health")
    assert response.status_code == 503 and response.json() == {"status": "starting"}


@pytest.mark.parametrize("body, status, field", [
    ({"items": [], "k": 3}, 422, "items"),
    ({"k": 3}, 422, "items"),
    ({"items": "v1"}, 422, "items"),
    ({"items": ["v1", 1.5]}, 422, "items.1"),
    ({"items": ["v1", True]}, 422, "items.1"),
    ({"items": ["nope", 7]}, 422, "items"),  # nothing known is left
    ({"items": ["v1"], "k": 0}, 422, "k"),
    ({"items": ["v1"], "k": -2}, 422, "k"),
    ({"items": ["v1"], "k": 33}, 422, "k"),  # larger than the catalogue
    ({"items": ["v1"], "k": "3"}, 422, "k"),
    ({"items": ["v1"], "k": 2.0}, 422, "k"),
    ({"items": ["v1"], "k": None}, 422, "k"),
    ({"items": ["v1"], "num_beams": 4}, 422, "num_beams"),
    ([["v1"]], 422, "body"),
    (("application/json", b"{\"items\": ["), 400, "body"),  # malformed JSON
    (("application/json", b"items=v1"), 400, "body"),
    (("text/plain", b"items=v1"), 422, "body"),
    (None, 422, "body"),
])
def test_bad_requests_get_a_4xx_naming_the_field(recommender, body, status, field):
    with TestClient(create_app(recommender)) as client:
        if isinstance(body, tuple):
            response = client.post("/recommend", content=body[1], headers={"content-type": body[0]})
        else:
            response = client.post("/recommend", json=body) if body is not None else client.post("/recommend")
        assert response.status_code == status, response.text
        error = response.json()
        assert error["field"] == field and error["error"].startswith(f"{field}: ") and "\n" not in error["error"]
        assert client.get("/health").json()["requests"] == 0  # nothing reached the model


def test_listening_socket_is_tcp_so_responses_are_not_delayed():
    # proto 0 would make asyncio skip TCP_NODELAY on accepted connections: +40 ms per response (delayed ACK)
    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP and sock.getsockname()[1] > 0
        with socket.create_connection(sock.getsockname()), sock.accept()[0] as accepted:
            assert accepted.proto == socket.IPPROTO_TCP


def test_bad_arguments(recommender):
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(recommender, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        create_app(recommender, max_wait_ms=-1)
    with pytest.raises(ValueError, match="num_beams"):
        create_app(recommender, num_beams=0)
    with pytest.raises(TypeError, match="recommender must be a OneRecRecommender"):
        create_app("model/")
    with pytest.raises(ValueError, match="max_queue"):
        create_app(recommender, max_queue=0)
    with pytest.raises(ValueError, match="timeout_ms"):
        MicroBatcher(recommender, timeout_ms=0)


class SlowRecommender(CountingRecommender):
    """Blocks its first `slow` model calls until `release` is set (or 10 s pass)."""

    def __init__(self, recommender, slow: int = 1):
        super().__init__(recommender)
        self.slow, self.release, self.entered = slow, threading.Event(), threading.Event()

    def recommend(self, histories, k=10, num_beams=None, exclude_seen=True):
        if len(self.calls) < self.slow:
            self.entered.set()
            self.release.wait(10)
        return super().recommend(histories, k, num_beams, exclude_seen)


def test_a_full_queue_answers_503_and_serving_goes_on(recommender):
    slow = SlowRecommender(recommender)
    app = create_app(slow, max_batch_size=1, max_wait_ms=0, max_queue=1)
    body = {"items": ["v1"], "k": 2}

    async def scenario(url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            first = asyncio.create_task(client.post("/recommend", json=body))  # taken by the batch loop, blocks
            await asyncio.to_thread(slow.entered.wait, 10)
            second = asyncio.create_task(client.post("/recommend", json=body))  # fills the queue of 1
            while (await client.get("/health")).json()["queued"] < 1:
                await asyncio.sleep(0.01)
            third = await client.post("/recommend", json=body)  # no room: shed at once
            slow.release.set()
            return await first, await second, third, (await client.get("/health")).json()

    with live_server(app) as url:
        first, second, third, health = asyncio.run(scenario(url))
    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 503 and third.headers["retry-after"] == "1"
    assert "max_queue" in third.json()["error"] and health["overloaded"] == 1


def test_a_request_past_its_timeout_answers_504_and_serving_goes_on(recommender):
    slow = SlowRecommender(recommender)
    with TestClient(create_app(slow, max_wait_ms=0, timeout_ms=200)) as client:
        late = client.post("/recommend", json={"items": ["v1"], "k": 2})
        assert late.status_code == 504 and "200 ms" in late.json()["error"]
        slow.release.set()
        answer = client.post("/recommend", json={"items": ["v1"], "k": 2})
        assert answer.status_code == 200, answer.text
        assert client.get("/health").json()["timed_out"] == 1


def test_concurrent_requests_are_one_model_call(recommender):
    counting = CountingRecommender(recommender)
    # the batch closes when full, long before the 5 s wait
    app = create_app(counting, max_batch_size=len(HISTORIES), max_wait_ms=5000, num_beams=12)
    ks = [3, 1, 6, 2, 5, 4]
    with live_server(app) as url:
        started = time.perf_counter()
        responses = asyncio.run(post_all(url, [{"items": h, "k": k} for h, k in zip(HISTORIES, ks)]))
        assert time.perf_counter() - started < 4
        health = httpx.get(f"{url}/health").json()
    assert counting.calls == [(len(HISTORIES), max(ks))]  # one search at the largest k
    assert (health["batches"], health["requests"], health["largest_batch"]) == (1, len(HISTORIES), len(HISTORIES))
    for response, history, k in zip(responses, HISTORIES, ks):
        assert response.status_code == 200, response.text
        assert_answer(response.json(), *expected(recommender, history, k, num_beams=12))


def test_batch_size_one_serves_one_at_a_time_and_the_wait_is_bounded(recommender):
    counting = CountingRecommender(recommender)
    with live_server(create_app(counting, max_batch_size=1, max_wait_ms=5000)) as url:
        responses = asyncio.run(post_all(url, [{"items": h, "k": 2} for h in HISTORIES[:4]]))
    assert all(r.status_code == 200 for r in responses)
    assert counting.calls == [(1, 2)] * 4

    counting.calls.clear()
    with TestClient(create_app(counting, max_batch_size=64, max_wait_ms=300)) as client:
        started = time.perf_counter()
        assert client.post("/recommend", json={"items": ["v1"], "k": 2}).status_code == 200
        waited = time.perf_counter() - started
    assert 0.29 <= waited < 10 and counting.calls == [(1, 2)]  # a lone request waits max_wait_ms, then runs


def test_a_model_error_is_a_500_and_serving_goes_on(recommender):
    counting = CountingRecommender(recommender, fail=1)
    with TestClient(create_app(counting, max_wait_ms=0)) as client:
        failed = client.post("/recommend", json={"items": ["v1"], "k": 2})
        assert failed.status_code == 500 and failed.json()["error"] == "model: RuntimeError: model fell over"
        assert client.post("/recommend", json={"items": ["v1"], "k": 2}).status_code == 200


def test_short_load_run_through_the_benchmark_driver(recommender, load_benchmark):
    with load_benchmark("bench_serve") as bench:
        _short_load_run(recommender, bench)


def _short_load_run(recommender, bench):
    bodies = [{"items": h, "k": 5} for h in HISTORIES]
    counting = CountingRecommender(recommender)
    # a wait long enough that concurrent clients share calls even on a loaded machine
    with live_server(create_app(counting, max_batch_size=8, max_wait_ms=50)) as url:
        result = asyncio.run(bench.drive(url, bodies, clients=8, seconds=2.0))
        health = httpx.get(f"{url}/health").json()
    assert result.errors == 0 and result.ok >= 8 and result.ok == health["requests"]
    assert 0 < result.p50_ms <= result.p99_ms
    assert health["batches"] < health["requests"]  # concurrent clients shared model calls
    assert sum(size for size, _ in counting.calls) == health["requests"]
