"""The scenarios on backstage, written as a user would: public API only.

Every function takes ``backend`` ("selectors", "asyncio", "uvloop").
"""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import backstage  # noqa: E402
from bench.common import InOrder, clock, rss_bytes, skynet_check  # noqa: E402


class Counter:
    def __init__(self, ctx):
        self.ctx = ctx
        self.count = 0

    def receive(self, envelope):
        self.count += 1


def burst(backend: str, n: int) -> dict:
    with backstage.Engine(backend=backend) as engine:
        sink = engine.spawn_actor(Counter, id="sink", capacity=n)
        send = engine.send
        t0 = clock()
        for i in range(n):
            send("sink", i)
        engine.run()
        seconds = clock() - t0
    return {"seconds": seconds, "ops": n, "value": sink.count}


class Player:
    limit = 0

    def __init__(self, ctx):
        self.ctx = ctx
        self.other = "pong" if ctx.actor_id == "ping" else "ping"
        self.last = None

    def receive(self, envelope):
        value = envelope.message
        self.last = value
        if value < self.limit:
            self.ctx.send(self.other, value + 1)


def ping_pong(backend: str, n: int) -> dict:
    with backstage.Engine(backend=backend) as engine:
        ping = engine.spawn_actor(Player, id="ping")
        pong = engine.spawn_actor(Player, id="pong")
        ping.limit = pong.limit = n
        t0 = clock()
        engine.send("ping", 1)
        engine.run()
        seconds = clock() - t0
    return {"seconds": seconds, "ops": n, "value": max(ping.last, pong.last)}


class Publisher:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        publish = self.ctx.publish
        for i in range(envelope.message):
            publish(i)


class Subscriber:
    def __init__(self, ctx):
        self.ctx = ctx
        self.count = 0
        ctx.subscribe_to_actor("publisher")

    def receive(self, envelope):
        self.count += 1


def fan_out(backend: str, messages: int, subscribers: int) -> dict:
    with backstage.Engine(backend=backend) as engine:
        engine.spawn_actor(Publisher, id="publisher")
        subs = [engine.spawn_actor(Subscriber, id=f"sub{i}", capacity=messages)
                for i in range(subscribers)]
        t0 = clock()
        engine.send("publisher", messages)
        engine.run()
        seconds = clock() - t0
    return {"seconds": seconds, "ops": messages * subscribers,
            "value": sum(s.count for s in subs)}


class RingNode:
    def __init__(self, ctx):
        self.ctx = ctx
        self.next_id = None
        self.hops = 0

    def receive(self, envelope):
        left = envelope.message
        self.hops += 1
        if left > 1:
            self.ctx.send(self.next_id, left - 1)


def ring(backend: str, actors: int, rounds: int) -> dict:
    with backstage.Engine(backend=backend) as engine:
        nodes = [engine.spawn_actor(RingNode, id=f"ring{i}") for i in range(actors)]
        for i, node in enumerate(nodes):
            node.next_id = f"ring{(i + 1) % actors}"
        t0 = clock()
        engine.send("ring0", actors * rounds)
        engine.run()
        seconds = clock() - t0
    return {"seconds": seconds, "ops": actors * rounds, "value": sum(n.hops for n in nodes)}


class Skynet:
    """A node of the tree: (num, size) spawns ten children; a number is a child's sum."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.total = 0
        self.pending = 0

    def receive(self, envelope):
        message = envelope.message
        ctx = self.ctx
        if message.__class__ is tuple:
            num, size = message
            if size == 1:
                self._reply(num)
                return
            size //= 10
            self.pending = 10
            spawn = ctx.spawn_child_actor
            send = ctx.send
            for i in range(10):
                child_num = num + i * size
                child_id = f"{child_num}/{size}"
                spawn(Skynet, id=child_id, capacity=1)
                send(child_id, (child_num, size))
        else:
            self.total += message
            self.pending -= 1
            if self.pending == 0:
                self._reply(self.total)

    def _reply(self, value):
        # A finished node tells its parent and stops, as a task would return.
        ctx = self.ctx
        if ctx.parent is None:
            self.result = value
        else:
            ctx.send(ctx.parent, value)
        ctx.shutdown()


def skynet(backend: str, leaves: int) -> dict:
    skynet_check(leaves)
    with backstage.Engine(backend=backend) as engine:
        root = engine.spawn_actor(Skynet, id="skynet")
        root.result = None
        t0 = clock()
        engine.send("skynet", (0, leaves))
        engine.run()
        seconds = clock() - t0
    return {"seconds": seconds, "ops": leaves, "value": root.result}


class Idle:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        pass

    def deinit(self):
        Idle.stopped += 1


def spawn_stop(backend: str, n: int) -> dict:
    Idle.stopped = 0
    with backstage.Engine(backend=backend) as engine:
        ids = [f"idle{i}" for i in range(n)]
        spawn = engine.spawn_actor
        t0 = clock()
        for actor_id in ids:
            spawn(Idle, id=actor_id)
        t1 = clock()
        pill = engine.poison_pill
        for actor_id in ids:
            pill(actor_id)
        engine.run()
        t2 = clock()
        left = len(engine.actor_ids)
    return {"spawn_s": t1 - t0, "stop_s": t2 - t1, "ops": n,
            "value": Idle.stopped if left == 0 else -left}


def idle_memory(backend: str, n: int) -> dict:
    Idle.stopped = 0
    ids = [f"idle{i}" for i in range(n)]
    with backstage.Engine(backend=backend) as engine:
        gc.collect()
        rss0 = rss_bytes()
        for actor_id in ids:
            engine.spawn_actor(Idle, id=actor_id)
        gc.collect()
        rss = rss_bytes() - rss0
        alive = len(engine.actor_ids)
    # The same again under tracemalloc, in a fresh engine.
    gc.collect()
    tracemalloc.start()
    with backstage.Engine(backend=backend) as engine:
        t0 = tracemalloc.get_traced_memory()[0]
        for actor_id in ids:
            engine.spawn_actor(Idle, id=actor_id)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - t0
        tracemalloc.stop()
    return {"tm_bytes": traced, "rss_bytes": rss, "ops": n, "value": alive}


class Sink:
    def __init__(self, ctx):
        self.ctx = ctx
        self.seen = None
        self.total = 0

    def receive(self, envelope):
        seen = self.seen
        seen.add(envelope.message)
        if seen.count == self.total:
            self.ctx.engine.stop()


def cross_thread(backend: str, threads: int, per_thread: int) -> dict:
    with backstage.Engine(backend=backend) as engine:
        sink = engine.spawn_actor(Sink, id="sink", capacity=threads * per_thread)
        sink.seen = InOrder(threads)
        sink.total = threads * per_thread
        start = threading.Event()

        def feed(tid):
            send = engine.send
            start.wait()
            for i in range(per_thread):
                send("sink", (tid, i))

        workers = [threading.Thread(target=feed, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        t0 = clock()
        start.set()
        engine.run_forever()
        seconds = clock() - t0
        for w in workers:
            w.join()
    seen = sink.seen
    return {"seconds": seconds, "ops": threads * per_thread,
            "value": seen.count if seen.ordered else -1}


###############################################################################
# Round two (issue 16): actors sending in bulk, creation at scale, one thread
###############################################################################

class Producer:
    """On a count n, sends 0 .. n-1 with ctx.send: to one target, or round-robin
    over its targets starting at its offset.  All in one receive."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.targets = ("sink",)
        self.offset = 0

    def receive(self, envelope):
        n = envelope.message
        send = self.ctx.send
        targets = self.targets
        if len(targets) == 1:
            target = targets[0]
            for i in range(n):
                send(target, i)
        else:
            k, offset = len(targets), self.offset
            for i in range(n):
                send(targets[(i + offset) % k], i)


class Worker:
    """A consumer with a small computation per message (common.work, inline)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.total = 0

    def receive(self, envelope):
        m = envelope.message
        self.total += m * m % 7


def actor_burst(backend: str, n: int) -> dict:
    with backstage.Engine(backend=backend) as engine:
        sink = engine.spawn_actor(Counter, id="sink", capacity=n)
        engine.spawn_actor(Producer, id="producer")
        t0 = clock()
        engine.send("producer", n)
        engine.run()
        seconds = clock() - t0
    return {"seconds": seconds, "ops": n, "value": sink.count}


def _drain(backend: str, producers: int, per_producer: int, consumers: int) -> dict:
    with backstage.Engine(backend=backend) as engine:
        ids = tuple(f"worker{k}" for k in range(consumers))
        workers = [engine.spawn_actor(Worker, id=i, capacity=per_producer * producers)
                   for i in ids]
        for p in range(producers):
            producer = engine.spawn_actor(Producer, id=f"producer{p}")
            producer.targets = ids
            producer.offset = p
        t0 = clock()
        for p in range(producers):
            engine.send(f"producer{p}", per_producer)
        engine.run()
        seconds = clock() - t0
    return {"seconds": seconds, "ops": producers * per_producer,
            "value": sum(w.total for w in workers)}


def many_to_one(backend: str, producers: int, per_producer: int) -> dict:
    return _drain(backend, producers, per_producer, 1)


def many_to_many(backend: str, producers: int, per_producer: int) -> dict:
    return _drain(backend, producers, per_producer, producers)


class OneShot:
    """Handles one message, then stops."""
    done = 0

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        OneShot.done += 1
        self.ctx.shutdown()


class Parent:
    """On a list of ids: spawns each as a child and sends it one message."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        spawn = self.ctx.spawn_child_actor
        send = self.ctx.send
        for child_id in envelope.message:
            spawn(OneShot, id=child_id, capacity=1)
            send(child_id, 0)


def create_stop(backend: str, n: int, children: bool) -> dict:
    """N actors made, each sent one message, each stopping on it: top-level
    (spawned from outside) or as children of one parent actor."""
    OneShot.done = 0
    ids = [f"one{i}" for i in range(n)]
    with backstage.Engine(backend=backend) as engine:
        if children:
            engine.spawn_actor(Parent, id="parent")
            t0 = clock()
            engine.send("parent", ids)
            engine.run()
            seconds = clock() - t0
            left = len(engine.actor_ids) - 1
        else:
            spawn, send = engine.spawn_actor, engine.send
            t0 = clock()
            for actor_id in ids:
                spawn(OneShot, id=actor_id, capacity=1)
                send(actor_id, 0)
            engine.run()
            seconds = clock() - t0
            left = len(engine.actor_ids)
    return {"seconds": seconds, "ops": n, "value": OneShot.done if left == 0 else -left}


class Tally:
    """Counts 0, 1, 2, ... in order and stops the engine at the last one."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.count = 0
        self.total = 0
        self.ordered = True

    def receive(self, envelope):
        if envelope.message != self.count:
            self.ordered = False
        self.count += 1
        if self.count == self.total:
            self.ctx.engine.stop()


def cross_thread_send(backend: str, n: int) -> dict:
    """One other thread sends n messages with engine.send to an actor."""
    with backstage.Engine(backend=backend) as engine:
        tally = engine.spawn_actor(Tally, id="tally", capacity=n)
        tally.total = n
        start = threading.Event()

        def feed():
            send = engine.send
            start.wait()
            for i in range(n):
                send("tally", i)

        worker = threading.Thread(target=feed)
        worker.start()
        t0 = clock()
        start.set()
        engine.run_forever()
        seconds = clock() - t0
        worker.join()
    return {"seconds": seconds, "ops": n, "value": tally.count if tally.ordered else -1}


class Echo:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        envelope.reply(envelope.message)


def cross_thread_ask(backend: str, n: int) -> dict:
    """Round trips: engine.ask(...).result() from another thread, one at a time."""
    with backstage.Engine(backend=backend) as engine:
        engine.spawn_actor(Echo, id="echo")
        runner = threading.Thread(target=engine.run_forever)
        runner.start()
        try:
            ask = engine.ask
            ok = 0
            t0 = clock()
            for i in range(n):
                ok += ask("echo", i).result(10) == i
            seconds = clock() - t0
        finally:
            engine.stop()
            runner.join()
    return {"seconds": seconds, "ops": n, "value": ok}


###############################################################################
# Issue 13's figures: a new API against its baseline, both in each run.
# While an API is missing these return {"skipped": ...}, not an error.
###############################################################################

def _missing(what: str) -> dict:
    return {"skipped": f"n/a (API missing: {what})"}


class Calc:
    def __init__(self, ctx):
        self.ctx = ctx

    def add(self, x):
        return x + 1

    def receive(self, envelope):
        envelope.reply(envelope.message + 1)


def proxy_call(backend: str, n: int, window: int = 1_000) -> dict:
    """n calls engine.proxy(id).add(i) against n engine.ask(id, i, timeout=None)
    (a proxy's calls have no timeout by default: no timer either side), issued
    ``window`` at a time and drained by run(); every result is checked.

    Windows, not all n at once: with 50,000 futures alive the cyclic GC's
    passes over them dominate (asks 40k/s at 5,000 but 14k/s at 50,000 with
    the collector on, flat with it off), which would measure the collector.
    """
    with backstage.Engine(backend=backend) as engine:
        if not hasattr(engine, "proxy"):
            return _missing("engine.proxy")
        engine.spawn_actor(Calc, id="calc")
        proxy = engine.proxy("calc")
        ask = engine.ask
        starts = range(0, n, window)
        t0 = clock()
        got = 0
        for start in starts:
            futures = [proxy.add(i) for i in range(start, min(start + window, n))]
            engine.run()
            got += sum(f.result() for f in futures)
        seconds = clock() - t0
        t0 = clock()
        got_base = 0
        for start in starts:
            futures = [ask("calc", i, timeout=None) for i in range(start, min(start + window, n))]
            engine.run()
            got_base += sum(f.result() for f in futures)
        base = clock() - t0
    want = n * (n + 1) // 2
    return {"seconds": seconds, "base_seconds": base, "ops": n,
            "value": n if got == want == got_base else -1}


class Light:
    """A CPU-light handler; a class-wide total, so routees add up without
    knowing how the pool exposes them."""
    total = 0

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        Light.total += 1


def pool_8(backend: str, n: int) -> dict:
    """n engine.send to a pool of 8 routees (round robin) against n to one actor."""
    with backstage.Engine(backend=backend) as engine:
        if not hasattr(engine, "spawn_pool"):
            return _missing("engine.spawn_pool")
        engine.spawn_pool(Light, "pool", 8)
        engine.spawn_actor(Light, id="one", capacity=n)
        send = engine.send
        counts = []
        times = []
        for target in ("pool", "one"):
            Light.total = 0
            t0 = clock()
            for i in range(n):
                send(target, i)
            engine.run()
            times.append(clock() - t0)
            counts.append(Light.total)
    return {"seconds": times[0], "base_seconds": times[1], "ops": n,
            "value": n if counts == [n, n] else -1}


class AsyncCounter:
    def __init__(self, ctx):
        self.ctx = ctx
        self.count = 0

    async def receive(self, envelope):
        self.count += 1


def async_receive(backend: str, n: int) -> dict:
    """A burst of n to an `async def receive` that awaits nothing, against the
    same burst to a plain receive."""
    with backstage.Engine(backend=backend) as engine:
        try:
            with warnings.catch_warnings():     # "never awaited", before issue 13
                warnings.simplefilter("ignore", RuntimeWarning)
                probe = engine.spawn_actor(AsyncCounter, id="probe")
                engine.send("probe", 0)
                engine.run()
        except Exception as exc:     # refused at spawn until issue 13 lands
            return _missing(f"async def receive ({exc.__class__.__name__} at spawn)")
        if probe.count != 1:
            return _missing("async def receive (the message was not handled)")
        coro = engine.spawn_actor(AsyncCounter, id="async", capacity=n)
        plain = engine.spawn_actor(Counter, id="plain", capacity=n)
        send = engine.send
        times = []
        for target in ("async", "plain"):
            t0 = clock()
            for i in range(n):
                send(target, i)
            engine.run()
            times.append(clock() - t0)
    return {"seconds": times[0], "base_seconds": times[1], "ops": n,
            "value": n if coro.count == plain.count == n else -1}


def _one() -> int:
    return 1


class Offloader:
    """Runs _one in the engine's pool, the next call when the last one is done."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.left = 0
        self.done = 0

    def receive(self, envelope):
        self.left = envelope.message
        self.next()

    def next(self, future=None):
        if future is not None:
            self.done += future.result()
        if self.left:
            self.left -= 1
            self.ctx.run_in_thread(_one).add_done_callback(self.next)


def run_in_thread(backend: str, n: int) -> dict:
    """Round trips of ctx.run_in_thread, one at a time, against a bare
    ThreadPoolExecutor.submit().result() loop."""
    from concurrent.futures import ThreadPoolExecutor
    with backstage.Engine(backend=backend) as engine:
        if not hasattr(backstage.Context, "run_in_thread"):
            return _missing("ctx.run_in_thread")
        offloader = engine.spawn_actor(Offloader, id="offloader")
        t0 = clock()
        engine.send("offloader", n)
        engine.run()
        seconds = clock() - t0
    with ThreadPoolExecutor() as pool:
        submit = pool.submit
        done = 0
        t0 = clock()
        for _ in range(n):
            done += submit(_one).result()
        base = clock() - t0
    return {"seconds": seconds, "base_seconds": base, "ops": n,
            "value": n if offloader.done == done == n else -1}
