"""Load test of `videoai recommend serve` over loopback: micro-batched vs one request at a time, same run.

Starts the server twice on 127.0.0.1 (--max-batch-size B, then 1) with the same model, drives each with N concurrent
clients (httpx, asyncio) sending the same requests (histories of Amazon Beauty users) for a bounded time, and prints
throughput, p50/p99 latency, errors and the mean batch the server formed. Without --model it first trains a small
recommender with `videoai recommend train` (few steps: speed, not accuracy, is measured here).

    python benchmarks/bench_serve.py --clients 32 --seconds 20 --threads 1
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "amazon"


@dataclass
class LoadResult:
    """What N clients saw in a bounded run."""

    ok: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def drive(url: str, bodies: list[dict], clients: int, seconds: float, timeout: float = 60.0) -> LoadResult:
    """`clients` concurrent loops POSTing bodies (client c sends c, c+N, ... cyclically) until `seconds` pass."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def one_client(number: int) -> None:
        nonlocal errors
        index = number
        # one AsyncClient (one connection) per client: a shared pool of N connections halves httpx's throughput
        async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
            while time.perf_counter() < deadline:  # bounded: each request ends within `timeout`
                sent = time.perf_counter()
                try:
                    response = await client.post("/recommend", json=bodies[index % len(bodies)])
                    failed = response.status_code != 200
                except httpx.HTTPError:
                    failed = True
                if failed:
                    errors += 1
                else:
                    latencies.append(1000 * (time.perf_counter() - sent))
                index += clients

    await asyncio.gather(*(one_client(c) for c in range(clients)))
    elapsed = time.perf_counter() - start
    if not latencies:
        return LoadResult(0, errors, elapsed, float("nan"), float("nan"))
    return LoadResult(len(latencies), errors, elapsed, percentile(latencies, 50), percentile(latencies, 99))


class ServerProcess:
    """`videoai recommend serve` on 127.0.0.1 and a free port, in a child process (stopped by its own pid)."""

    def __init__(self, model: Path, max_batch_size: int, max_wait_ms: float, threads: int, num_beams: int | None):
        command = [sys.executable, "-m", "videoai.cli", "recommend", "serve", "--model", str(model), "--port", "0",
                   "--max-batch-size", str(max_batch_size), "--max-wait-ms", str(max_wait_ms), "--device", "cpu"]
        command += ["--num-beams", str(num_beams)] if num_beams else []
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env)
        line = self.process.stdout.readline()  # "serving ... on http://127.0.0.1:PORT: ..." once the model is loaded
        if " on http://" not in line:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}")
        self.url = line.split(" on ", 1)[1].split(": ", 1)[0]
        for _ in range(600):  # at most 60 s
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.url}/health never answered 200")

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)


def train_small_model(log: Path, out: Path, steps: int, threads: int) -> None:
    command = [sys.executable, "-m", "videoai.cli", "recommend", "train", "--log", str(log), "--out", str(out),
               "--steps", str(steps)]
    print("training:", " ".join(command[1:]), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, env=env)


def request_bodies(log: Path, count: int, k: int, max_history: int, seed: int) -> list[dict]:
    """`count` requests: random users' histories (all items but the held-out last one, the latest max_history)."""
    sequences = [line.split()[1:] for line in log.read_text().splitlines() if line.strip()]
    sequences = [[int(item) for item in s[:-1][-max_history:]] for s in sequences if len(s) >= 3]
    rng = random.Random(seed)
    return [{"items": rng.choice(sequences), "k": k} for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="recommender folder (default: train a small one on --log)")
    parser.add_argument("--log", type=Path, default=DATA / "Beauty.txt", help="'user item item ...' lines")
    parser.add_argument("--train-steps", type=int, default=30, help="steps of the small model (default: 30)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0, help="load time per server (default: 20)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--num-beams", type=int, help="fixed beam width (default: the server's, 2k)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server (default: 1)")
    parser.add_argument("--requests", type=int, default=2000, help="distinct request bodies (default: 2000)")
    args = parser.parse_args()
    if not args.log.is_file():
        sys.exit(f"--log: no such file {str(args.log)!r} (the Amazon logs live in ../shared/data/amazon)")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as scratch:
        model = args.model
        if model is None:
            model = Path(scratch) / "model"
            train_small_model(args.log, model, args.train_steps, args.threads)
        bodies = request_bodies(args.log, args.requests, args.k, 50, seed=0)
        rows = []
        for name, batch in ((f"micro-batched (max {args.max_batch_size}, {args.max_wait_ms:g} ms)",
                             args.max_batch_size), ("one at a time (max 1)", 1)):
            server = ServerProcess(model, batch, args.max_wait_ms, args.threads, args.num_beams)
            try:
                asyncio.run(drive(server.url, bodies[:args.clients], args.clients, 1.0))  # warm-up, not counted
                before = server.stats()
                result = asyncio.run(drive(server.url, bodies, args.clients, args.seconds))
                after = server.stats()
            finally:
                server.stop()
            mean_batch = (after["requests"] - before["requests"]) / max(1, after["batches"] - before["batches"])
            rows.append((name, result, mean_batch))

    print(f"\n{args.clients} concurrent clients, {args.seconds:g} s each, k={args.k}, model {args.model or 'small'}")
    print(f"{'server':<36} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ok':>7} {'mean batch':>11}")
    for name, result, mean_batch in rows:
        print(f"{name:<36} {result.throughput:>8.1f} {result.p50_ms:>8.1f} {result.p99_ms:>8.1f} "
              f"{result.errors:>7} {result.ok:>7} {mean_batch:>11.1f}")
    batched, single = rows[0][1], rows[1][1]
    print(f"micro-batched / one at a time: throughput {batched.throughput / max(single.throughput, 1e-9):.2f}x, "
          f"p50 latency {batched.p50_ms / single.p50_ms:.2f}x, p99 latency {batched.p99_ms / single.p99_ms:.2f}x")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"server torch threads {args.threads}, Python {platform.python_version()}, load average before/after "
          f"{load_before[0]:.1f}/{os.getloadavg()[0]:.1f} (a shared machine: other jobs change these figures)")


if __name__ == "__main__":
    main()
