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


###############################################################################
# Round two (issue 16)
###############################################################################

def actor_burst(n: int) -> dict:
    # The producer's loop appends straight into the counter's deque.
    return burst(n)


class Worker:
    __slots__ = ("total",)

    def __init__(self):
        self.total = 0

    def receive(self, m):
        self.total += m * m % 7


def _drain(producers: int, per_producer: int, consumers: int) -> dict:
    workers = [Worker() for _ in range(consumers)]
    queues = [deque() for _ in workers]
    appends = [q.append for q in queues]
    t0 = clock()
    for p in range(producers):
        if consumers == 1:
            append = appends[0]
            for i in range(per_producer):
                append(i)
        else:
            for i in range(per_producer):
                appends[(i + p) % consumers](i)
    for worker, queue in zip(workers, queues, strict=True):
        receive = worker.receive
        popleft = queue.popleft
        while queue:
            receive(popleft())
    return {"seconds": clock() - t0, "ops": producers * per_producer,
            "value": sum(w.total for w in workers)}


def many_to_one(producers: int, per_producer: int) -> dict:
    return _drain(producers, per_producer, 1)


def many_to_many(producers: int, per_producer: int) -> dict:
    return _drain(producers, per_producer, producers)


class OneShot:
    __slots__ = ("inbox", "home", "id")
    done = 0

    def __init__(self, home, actor_id):
        self.inbox = deque()
        self.home = home
        self.id = actor_id

    def receive(self, message):
        OneShot.done += 1
        del self.home[self.id]


def create_stop(n: int, children: bool) -> dict:
    # A registry dict (and a parent's dict of children); a ready deque.
    OneShot.done = 0
    ids = [f"one{i}" for i in range(n)]
    registry = {}
    kids = {} if children else registry
    ready = deque()
    t0 = clock()
    for actor_id in ids:
        actor = OneShot(kids, actor_id)
        registry[actor_id] = actor
        if children:
            kids[actor_id] = actor
        actor.inbox.append(0)
        ready.append(actor)
    popleft = ready.popleft
    while ready:
        actor = popleft()
        actor.receive(actor.inbox.popleft())
        if children:
            del registry[actor.id]
    seconds = clock() - t0
    left = len(registry) + len(kids)
    return {"seconds": seconds, "ops": n, "value": OneShot.done if left == 0 else -left}


class InOrderCounter:
    """The receiving end of cross_thread_send: counts, and checks the order."""
    __slots__ = ("count", "ordered")

    def __init__(self):
        self.count = 0
        self.ordered = True

    def receive(self, message):
        if message != self.count:
            self.ordered = False
        self.count += 1


# The engine's cross-thread queue is bounded (Engine(inbound_capacity=...),
# 65,536 entries by default); the floor holds the same bound.
INBOUND_CAPACITY = 65536


def cross_thread_send(n: int) -> dict:
    """The bare two-thread hand-off: a deque, and a wake-up byte on a
    socketpair when the consumer sleeps (the self-pipe asyncio uses).

    The same work the scenario asks of an engine: each message handed to a
    receiver's bound method, in order; a wake-up when the consumer sleeps;
    the queue bounded as the engine's is (the sender waits while it is full).
    """
    import select
    import socket

    queue = deque()
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    state = {"sleeping": False}
    start = threading.Event()
    room = threading.Event()
    room.set()

    def feed():
        append = queue.append
        wake = writer.send
        start.wait()
        for i in range(n):
            while len(queue) >= INBOUND_CAPACITY:
                room.clear()
                if len(queue) >= INBOUND_CAPACITY:
                    room.wait(0.05)
            append(i)
            if state["sleeping"]:
                state["sleeping"] = False
                wake(b"\0")

    worker = threading.Thread(target=feed)
    worker.start()
    popleft = queue.popleft
    actor = InOrderCounter()
    receive = actor.receive
    t0 = clock()
    start.set()
    while True:
        while queue:
            receive(popleft())
        if not room.is_set():
            room.set()
        if actor.count >= n:
            break
        state["sleeping"] = True
        if queue:                               # appended before the flag was seen
            state["sleeping"] = False
            continue
        select.select([reader], [], [])
        try:
            reader.recv(4096)
        except BlockingIOError:
            pass
        state["sleeping"] = False
    seconds = clock() - t0
    worker.join()
    reader.close()
    writer.close()
    return {"seconds": seconds, "ops": n, "value": actor.count if actor.ordered else -1}


def cross_thread_ask(n: int) -> dict:
    """The bare round trip: two threads, two queue.Queue objects."""
    import queue as queue_module

    requests, replies = queue_module.Queue(), queue_module.Queue()

    def echo():
        while (item := requests.get()) is not None:
            replies.put(item)

    server = threading.Thread(target=echo)
    server.start()
    put, get = requests.put, replies.get
    ok = 0
    t0 = clock()
    for i in range(n):
        put(i)
        ok += get() == i
    seconds = clock() - t0
    requests.put(None)
    server.join()
    return {"seconds": seconds, "ops": n, "value": ok}
