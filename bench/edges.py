"""The edge figures of issue 11: a fault soak and an 8-thread flood, per backend.

    python bench/edges.py [--quick] [--backend selectors|asyncio|uvloop]

Fault soak: a tree of 1,001 actors gets messages of which a tenth make receive
fail (the parents restart the failing child), 30 random poison pills, and asks
from another thread (answered, failing in receive, or dropped unanswered).
Printed: sent, handled by receive, dead letters (handled + dead letters must
equal sent), restarts, asks sent and settled
(must be equal), and how the asks ended.

Flood: eight threads call engine.send as fast as they can for a few seconds,
while a timer ticks every 10 ms and two actors play ping-pong.  Printed: the
timer ticks kept (of those due), ping-pong turns during the flood, the peak
length of the cross-thread queue and the peak RSS growth (bounded by
inbound_capacity), and how long stop() takes to end the run.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backstage  # noqa: E402
from backstage import Engine, EngineClosed, InboxFull  # noqa: E402
from bench.soak_actors import FOREVER, LEAVES, Leaf, Root  # noqa: E402

# -- fault soak ----------------------------------------------------------------------

def soak(backend: str, messages: int) -> dict:
    Leaf.delivered = Leaf.faults = 0
    rng = random.Random(1234)
    engine = Engine(backend=backend, supervisor=FOREVER, dead_letters_kept=10**6)
    engine.spawn_actor(Root, id="root")
    leaves = LEAVES
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    pills = set(rng.sample(range(messages), 30))
    futures = []
    sent = 0
    for n in range(messages):
        target = rng.choice(leaves)
        engine.send(target, rng.randrange(10) * 10 + (7 if rng.random() < 0.1 else 1))
        sent += 1
        if n in pills:
            engine.poison_pill(rng.choice(leaves[100:]))   # the first 100 are asked
        if n % 100 == 0:
            kind = rng.choice(["ask", "ask-fail", "ask-drop"])
            futures.append(engine.ask(rng.choice(leaves[:100]), kind, timeout=5))
            sent += 1
    settled = 0
    outcomes: dict[str, int] = {}
    for future in futures:
        try:
            future.result(timeout=30)
            outcome = "replied"
        except Exception as exc:        # noqa: BLE001 - each kind of ending is counted
            outcome = type(exc).__name__
        settled += 1
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    deadline = time.monotonic() + 60
    while Leaf.delivered + engine.dead_letter_count < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.stop()
    runner.join(60)
    # A reply that comes after its ask timed out is a dead letter of its own.
    late = sum(1 for d in engine.dead_letters if d.reason.startswith("reply came after"))
    lost = sent - (Leaf.delivered + engine.dead_letter_count - late)
    result = {
        "sent": sent, "delivered": Leaf.delivered, "dead letters": engine.dead_letter_count,
        "late replies (dead letters too)": late, "lost": lost,
        "restarts": engine.restart_count,
        "asks": len(futures), "asks settled": settled, "ask endings": outcomes,
    }
    engine.close()
    return result


# -- flood ---------------------------------------------------------------------------

class Ticker:
    def __init__(self, ctx):
        self.ticks = 0
        ctx.run_recurring(0.01, self.tick)

    def tick(self):
        self.ticks += 1

    def receive(self, envelope):
        pass


class Player:
    def __init__(self, ctx):
        self.ctx = ctx
        self.turns = 0

    def receive(self, envelope):
        self.turns += 1
        self.ctx.send(envelope.sender_id or "pong", "ball")


class Sink:
    def __init__(self, ctx):
        self.n = 0

    def receive(self, envelope):
        self.n += 1


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def flood(backend: str, seconds: float, threads: int = 8) -> dict:
    engine = Engine(backend=backend)
    ticker = engine.spawn_actor(Ticker, id="ticker")
    ping = engine.spawn_actor(Player, id="ping")
    engine.spawn_actor(Player, id="pong")
    sink = engine.spawn_actor(Sink, id="sink")
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    engine.send("ping", "serve")
    time.sleep(0.2)
    stop = threading.Event()
    sent = [0] * threads
    rss_before = rss_kib()

    def sender(k):
        while not stop.is_set():
            try:
                engine.send("sink", sent[k])
            except (EngineClosed, InboxFull):
                return
            sent[k] += 1

    senders = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(threads)]
    ticks0, turns0, start = ticker.ticks, ping.turns, time.monotonic()
    for s in senders:
        s.start()
    peak_queue = 0
    while time.monotonic() - start < seconds:
        peak_queue = max(peak_queue, len(engine._inbound))
        time.sleep(0.01)
    elapsed = time.monotonic() - start
    ticks, turns = ticker.ticks - ticks0, ping.turns - turns0
    asked_stop = time.monotonic()
    engine.stop()
    runner.join(60)
    stop_latency = time.monotonic() - asked_stop
    stopped = not runner.is_alive()
    engine.close()                       # senders waiting for room get EngineClosed
    stop.set()
    for s in senders:
        s.join(10)
    return {
        "seconds": round(elapsed, 2), "sent": sum(sent), "handled": sink.n,
        "dead letters": engine.dead_letter_count,
        "timer ticks kept": f"{ticks} of {int(elapsed / 0.01)} due",
        "ping-pong turns": turns,
        "peak cross-thread queue": peak_queue,
        "inbound_capacity": backstage.INBOUND_CAPACITY,
        "peak RSS growth MiB": round((rss_kib() - rss_before) / 1024, 1),
        "stop() latency ms": round(stop_latency * 1000, 1), "run ended": stopped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", action="append")
    args = parser.parse_args()
    backends = args.backend or ["selectors", "asyncio", "uvloop"]
    for backend in backends:
        print(f"== {backend}")
        print("fault soak:", soak(backend, 100_000 if args.quick else 650_000), flush=True)
        print("flood:     ", flood(backend, 3.0 if args.quick else 10.0), flush=True)


if __name__ == "__main__":
    main()
