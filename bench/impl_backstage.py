"""The scenarios on backstage, written as a user would: public API only.

Every function takes ``backend`` ("selectors", "asyncio", "uvloop").
"""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
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
