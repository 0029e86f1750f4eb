"""Figures for supervision/back-pressure/ask: burst under each overflow policy,
and ask round trips per second.  Run: python bench/bench_overflow_ask.py [--quick]

Every figure is the median of several runs (min..max), measured in one process.
"""

import queue
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backstage  # noqa: E402

QUICK = "--quick" in sys.argv
N = 200_000 if QUICK else 1_000_000
ROUNDS = 3 if QUICK else 5


class Sink:
    def __init__(self, ctx):
        self.n = 0

    def receive(self, envelope):
        self.n += 1


class Producer:
    """Sends `total` messages to "sink", 1,000 per turn (it re-sends itself "more")."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.left = 0

    def receive(self, envelope):
        send = self.ctx.send
        for i in range(min(1000, self.left)):
            send("sink", i)
        self.left -= 1000
        if self.left > 0:
            send(self.ctx.actor_id, "more")


class Echo:
    def __init__(self, ctx):
        pass

    def receive(self, envelope):
        envelope.reply(envelope.message)


class Asker:
    """Asks "echo" again each time the previous reply arrives."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.left = 0

    def receive(self, envelope):
        self.ask()

    def ask(self, _future=None):
        if self.left:
            self.left -= 1
            self.ctx.ask("echo", self.left).add_done_callback(self.ask)


def burst_outside(policy):
    engine = backstage.Engine()
    sink = engine.spawn_actor(Sink, id="sink", capacity=N, overflow=policy)
    start = time.perf_counter()
    for i in range(N):
        engine.send("sink", i)
    engine.run()
    elapsed = time.perf_counter() - start
    assert sink.n == N
    engine.close()
    return N / elapsed


def burst_from_actor(policy, capacity):
    engine = backstage.Engine()
    sink = engine.spawn_actor(Sink, id="sink", capacity=capacity, overflow=policy)
    producer = engine.spawn_actor(Producer, id="producer")
    producer.left = N
    start = time.perf_counter()
    engine.send("producer", "go")
    engine.run()
    elapsed = time.perf_counter() - start
    assert sink.n + engine.dead_letter_count == N, (sink.n, engine.dead_letter_count)
    engine.close()
    return N / elapsed


def ask_in_engine():
    engine = backstage.Engine()
    engine.spawn_actor(Echo, id="echo")
    asker = engine.spawn_actor(Asker, id="asker")
    count = N // 10
    asker.left = count
    start = time.perf_counter()
    engine.send("asker", "go")
    engine.run()
    elapsed = time.perf_counter() - start
    engine.close()
    return count / elapsed


def ask_from_thread():
    engine = backstage.Engine()
    engine.spawn_actor(Echo, id="echo")
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    count = N // 100
    start = time.perf_counter()
    for i in range(count):
        assert engine.ask("echo", i).result(5) == i
    elapsed = time.perf_counter() - start
    engine.stop()
    runner.join()
    engine.close()
    return count / elapsed


def bare_thread_round_trip():
    """The floor for a cross-thread ask: two threads and two queue.Queue objects."""
    requests, replies = queue.Queue(), queue.Queue()

    def echo():
        while (item := requests.get()) is not None:
            replies.put(item)

    server = threading.Thread(target=echo)
    server.start()
    count = N // 100
    start = time.perf_counter()
    for i in range(count):
        requests.put(i)
        replies.get()
    elapsed = time.perf_counter() - start
    requests.put(None)
    server.join()
    return count / elapsed


def measure(label, fn, *args):
    runs = [fn(*args) for _ in range(ROUNDS)]
    print(f"| {label} | {statistics.median(runs):,.0f} | {min(runs):,.0f}..{max(runs):,.0f} |")
    return statistics.median(runs)


def main():
    print(f"{N:,} messages, median of {ROUNDS} runs, selectors backend, "
          f"Python {sys.version.split()[0]}\n")
    print("| scenario | per second | min..max |")
    print("| --- | --- | --- |")
    for policy in backstage.OVERFLOW_POLICIES:
        measure(f"burst, engine.send, overflow={policy!r} (never full)", burst_outside, policy)
    for policy in ("grow", "block", "drop"):   # under "fail" the producer's send raises
        measure(f"burst, actor sends, overflow={policy!r}, capacity 1024",
                burst_from_actor, policy, 1024)
    measure("ask round trips, actor to actor (ctx.ask + done callback)", ask_in_engine)
    ours = measure("ask round trips, other thread (engine.ask().result())", ask_from_thread)
    floor = measure("floor: round trips between two threads over queue.Queue",
                    bare_thread_round_trip)
    print(f"\ncross-thread ask: {ours / floor:.2f}x the bare queue.Queue round trip")


if __name__ == "__main__":
    main()
