"""Messages per second on each loop backend: burst and ping-pong.

    python bench/bench_backends.py [--runs 5] [--burst 1000000] [--bounces 200000]

- burst: 1,000,000 engine.send() to one actor, then run(); the time covers
  the sends and the run.
- ping-pong: two actors bounce one message 200,000 times (each bounce is one
  delivered message), so only one message is ever in flight.

Each figure is the median of --runs runs, all backends in one process run.
Standalone: needs only backstage.py and backends/ (uvloop if installed).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backstage import Engine  # noqa: E402


class Sink:
    def __init__(self, ctx):
        self.ctx = ctx
        self.count = 0

    def receive(self, envelope):
        self.count += 1


class Player:
    """Sends every message it gets back to its sender, until the count runs out."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.left = 0

    def receive(self, envelope):
        left = envelope.message - 1
        if left > 0:
            self.ctx.send(envelope.sender_id, left)
        else:
            self.left = left


def burst(backend: str, n: int) -> float:
    with Engine(backend=backend) as engine:
        sink = engine.spawn_actor(Sink, id="sink")
        send = engine.send
        start = time.perf_counter()
        for i in range(n):
            send("sink", i)
        engine.run()
        elapsed = time.perf_counter() - start
        assert sink.count == n
    return n / elapsed


def ping_pong(backend: str, bounces: int) -> float:
    with Engine(backend=backend) as engine:
        engine.spawn_actor(Player, id="ping")
        engine.spawn_actor(Player, id="pong")
        start = time.perf_counter()
        engine.get_context("ping").send("pong", bounces)
        engine.run()
        elapsed = time.perf_counter() - start
    return bounces / elapsed


def median_rate(fn, backend: str, n: int, runs: int) -> float:
    rates = []
    for _ in range(runs):
        gc.collect()
        rates.append(fn(backend, n))
    return statistics.median(rates)


def available_backends() -> list[str]:
    names = ["selectors", "asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        names.append("uvloop")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=1_000_000)
    parser.add_argument("--bounces", type=int, default=200_000)
    args = parser.parse_args(argv)

    print(f"Python {sys.version.split()[0]}, median of {args.runs} runs")
    print(f"{'backend':<10} {'burst msgs/s':>14} {'ping-pong msgs/s':>18}")
    for backend in available_backends():
        b = median_rate(burst, backend, args.burst, args.runs)
        p = median_rate(ping_pong, backend, args.bounces, args.runs)
        print(f"{backend:<10} {b:>14,.0f} {p:>18,.0f}", flush=True)


if __name__ == "__main__":
    main()
