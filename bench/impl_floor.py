"""The floor: the same work as bare loops over collections.deque and bound-method calls.

No registry, no envelope, no scheduling: what CPython itself allows for "queue
a message, later call a method with it".  Ours is measured as a fraction of it.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections import deque

from bench.common import InOrder, clock, rss_bytes, skynet_check


class Counter:
    __slots__ = ("count",)

    def __init__(self):
        self.count = 0

    def receive(self, message):
        self.count += 1


def burst(n: int) -> dict:
    actor = Counter()
    queue = deque()
    append = queue.append
    t0 = clock()
    for i in range(n):
        append(i)
    receive = actor.receive
    popleft = queue.popleft
    while queue:
        receive(popleft())
    return {"seconds": clock() - t0, "ops": n, "value": actor.count}


def ping_pong(n: int) -> dict:
    queue = deque()
    append = queue.append

    class Player:
        def __init__(self):
            self.other = None
            self.last = None

        def receive(self, value):
            self.last = value
            if value < n:
                append((self.other.receive, value + 1))

    ping, pong = Player(), Player()
    ping.other, pong.other = pong, ping
    popleft = queue.popleft
    t0 = clock()
    append((ping.receive, 1))
    while queue:
        receive, value = popleft()
        receive(value)
    return {"seconds": clock() - t0, "ops": n, "value": max(ping.last, pong.last)}


def fan_out(messages: int, subscribers: int) -> dict:
    subs = [Counter() for _ in range(subscribers)]
    queues = [deque() for _ in subs]
    appends = [q.append for q in queues]
    t0 = clock()
    for i in range(messages):
        for append in appends:
            append(i)
    for sub, queue in zip(subs, queues, strict=True):
        receive = sub.receive
        popleft = queue.popleft
        while queue:
            receive(popleft())
    return {"seconds": clock() - t0, "ops": messages * subscribers,
            "value": sum(s.count for s in subs)}


def ring(actors: int, rounds: int) -> dict:
    queue = deque()
    append = queue.append

    class Node:
        def __init__(self):
            self.next = None
            self.hops = 0

        def receive(self, left):
            self.hops += 1
            if left > 1:
                append((self.next.receive, left - 1))

    nodes = [Node() for _ in range(actors)]
    for i, node in enumerate(nodes):
        node.next = nodes[(i + 1) % actors]
    popleft = queue.popleft
    t0 = clock()
    append((nodes[0].receive, actors * rounds))
    while queue:
        receive, value = popleft()
        receive(value)
    return {"seconds": clock() - t0, "ops": actors * rounds, "value": sum(n.hops for n in nodes)}


def skynet(leaves: int) -> dict:
    skynet_check(leaves)
    queue = deque()
    append = queue.append

    class Node:
        __slots__ = ("parent", "total", "pending", "result")

        def __init__(self, parent):
            self.parent = parent
            self.total = 0
            self.pending = 0

        def receive(self, message):
            if message.__class__ is tuple:
                num, size = message
                if size == 1:
                    return self.reply(num)
                size //= 10
                self.pending = 10
                for i in range(10):
                    append((Node(self).receive, (num + i * size, size)))
            else:
                self.total += message
                self.pending -= 1
                if self.pending == 0:
                    self.reply(self.total)

        def reply(self, value):
            if self.parent is None:
                self.result = value
            else:
                append((self.parent.receive, value))

    root = Node(None)
    popleft = queue.popleft
    t0 = clock()
    append((root.receive, (0, leaves)))
    while queue:
        receive, message = popleft()
        receive(message)
    return {"seconds": clock() - t0, "ops": leaves, "value": root.result}


class Idle:
    __slots__ = ("inbox",)
    stopped = 0

    def __init__(self):
        self.inbox = deque()

    def deinit(self):
        Idle.stopped += 1


def spawn_stop(n: int) -> dict:
    Idle.stopped = 0
    ids = [f"idle{i}" for i in range(n)]
    registry = {}
    t0 = clock()
    for actor_id in ids:
        registry[actor_id] = Idle()
    t1 = clock()
    for actor_id in ids:
        registry.pop(actor_id).deinit()
    t2 = clock()
    return {"spawn_s": t1 - t0, "stop_s": t2 - t1, "ops": n, "value": Idle.stopped}


def idle_memory(n: int) -> dict:
    ids = [f"idle{i}" for i in range(n)]
    gc.collect()
    rss0 = rss_bytes()
    registry = {actor_id: Idle() for actor_id in ids}
    rss = rss_bytes() - rss0
    alive = len(registry)
    del registry
    gc.collect()
    tracemalloc.start()
    t0 = tracemalloc.get_traced_memory()[0]
    registry = {actor_id: Idle() for actor_id in ids}
    traced = tracemalloc.get_traced_memory()[0] - t0
    alive = min(alive, len(registry))   # kept alive until measured
    tracemalloc.stop()
    return {"tm_bytes": traced, "rss_bytes": rss, "ops": n, "value": alive}


def cross_thread(threads: int, per_thread: int) -> dict:
    queue = deque()
    seen = InOrder(threads)
    start = threading.Event()

    def feed(tid):
        append = queue.append
        start.wait()
        for i in range(per_thread):
            append((tid, i))

    workers = [threading.Thread(target=feed, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    total = threads * per_thread
    add = seen.add
    popleft = queue.popleft
    t0 = clock()
    start.set()
    while seen.count < total:
        while queue:
            add(popleft())
    seconds = clock() - t0
    for w in workers:
        w.join()
    return {"seconds": seconds, "ops": total, "value": seen.count if seen.ordered else -1}
