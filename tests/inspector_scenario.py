"""Small engines for the inspector's tmux tests: python inspector_scenario.py NAME SOCKET.

Each serves its feed on SOCKET (interval 0.2 s) until SIGINT/SIGTERM or 300 s.
"""

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import backstage  # noqa: E402

LONG_PREFIX = "ingest/partition-consumers/worker-"


@dataclasses.dataclass
class Job:
    n: int


class Sink:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        pass


class Ticker:
    """Sends ``count`` messages to each target every ``every`` seconds."""

    targets: list = []
    count = 1
    every = 0.1

    def __init__(self, ctx):
        self.ctx = ctx
        ctx.run_recurring(self.every, self.tick)

    def tick(self):
        for target in self.targets:
            for n in range(self.count):
                self.ctx.send(target, Job(n))

    def receive(self, envelope):
        pass


class Flaky:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        raise ValueError("flaky fails on every message")


class Supervisor:
    supervisor = backstage.OneForOne(max_restarts=100_000, within_s=1.0)

    def __init__(self, ctx):
        self.ctx = ctx
        ctx.spawn_child_actor(Flaky, id="sup/flaky")

    def receive(self, envelope):
        pass


class Slow:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        time.sleep(0.002)


class Blocker:
    def __init__(self, ctx):
        self.ctx = ctx
        ctx.send_after(1.0, ctx.actor_id, "block")

    def receive(self, envelope):
        if envelope.message == "block":
            time.sleep(6.0)


class Dozing:
    """Awaits a long sleep on its first message: parked, its inbox unread."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def receive(self, envelope):
        await self.ctx.sleep(600)


class Producer:
    """Sends ``n`` messages to "dozing" on n."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        for n in range(envelope.message):
            self.ctx.send("dozing", Job(n))


def ticker(targets, count=1, every=0.1):
    return type("Ticker", (Ticker,), {"targets": targets, "count": count, "every": every})


def widths(engine):
    ids = [f"{LONG_PREFIX}{n}" for n in (1, 2, 3)]
    for actor_id in ids:
        engine.spawn_actor(Sink, id=actor_id)
    engine.spawn_actor(ticker(ids), id="ticker")


def poison(engine):
    engine.spawn_actor(Sink, id="victim")
    engine.poison_pill("victim")
    for n in range(5):
        engine.send("victim", Job(n))          # queued behind the pill: dead letters


def restarts(engine):
    engine.spawn_actor(Supervisor, id="sup")
    engine.spawn_actor(ticker(["sup/flaky"], every=0.05), id="ticker")


def flood(engine):
    engine.spawn_actor(Slow, id="slow", capacity=100, overflow="drop")
    engine.spawn_actor(ticker(["slow"], count=500, every=0.05), id="ticker")


def stuck(engine):
    engine.spawn_actor(Blocker, id="blocker")
    engine.spawn_actor(Sink, id="bystander")


def waiting(engine):
    engine.spawn_actor(Dozing, id="dozing", capacity=1, overflow="block")
    engine.spawn_actor(Producer, id="producer")
    engine.send("dozing", "sleep")
    engine.send("producer", 3)          # one fits the inbox; two wait for room


def types(engine):
    """Types whose names share a prefix, and an id holding another type's name."""
    worker, stats = type("Worker", (Sink,), {}), type("Stats", (Sink,), {})
    engine.spawn_actor(worker, id="w1")
    engine.spawn_actor(worker, id="w2")
    engine.spawn_actor(stats, id="worker-stats")
    engine.spawn_actor(type("WorkerPool", (Sink,), {}), id="wp")


SCENARIOS = {f.__name__: f for f in (widths, poison, restarts, flood, stuck, waiting, types)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("socket")
    parser.add_argument("--backend", default="selectors")
    args = parser.parse_args()
    engine = backstage.Engine(backend=args.backend, inspector=args.socket,
                              inspector_interval=0.2)
    SCENARIOS[args.scenario](engine)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    thread = threading.Thread(target=engine.run_forever, daemon=True)
    thread.start()
    done.wait(300)
    engine.stop()
    thread.join(30)
    engine.close()


if __name__ == "__main__":
    main()
