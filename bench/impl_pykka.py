"""Pykka 4.x: ThreadingActor (a thread per actor), tell and ask.

Skynet is left out: a million actors would be a million threads.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc

import pykka

from bench.common import InOrder, clock, rss_bytes


class Counter(pykka.ThreadingActor):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_receive(self, message):
        if message == "count?":
            return self.count
        self.count += 1


def burst(n: int) -> dict:
    ref = Counter.start()
    try:
        tell = ref.tell
        t0 = clock()
        for i in range(n):
            tell(i)
        count = ref.ask("count?")       # answered after every earlier tell
        seconds = clock() - t0
    finally:
        ref.stop()
    return {"seconds": seconds, "ops": n, "value": count}


class Player(pykka.ThreadingActor):
    def __init__(self, limit, done, event):
        super().__init__()
        self.limit = limit
        self.done = done
        self.event = event
        self.other = None

    def on_receive(self, message):
        if isinstance(message, pykka.ActorRef):
            self.other = message
        elif message < self.limit:
            self.other.tell(message + 1)
        else:
            self.done.append(message)
            self.event.set()


def ping_pong(n: int) -> dict:
    done = []
    event = threading.Event()
    ping, pong = Player.start(n, done, event), Player.start(n, done, event)
    ping.tell(pong)
    pong.tell(ping)
    try:
        t0 = clock()
        ping.tell(1)
        event.wait()
        seconds = clock() - t0
    finally:
        pykka.ActorRegistry.stop_all()
    return {"seconds": seconds, "ops": n, "value": done[0]}


def fan_out(messages: int, subscribers: int) -> dict:
    # No pub/sub in Pykka: the publisher tells each subscriber.
    refs = [Counter.start() for _ in range(subscribers)]
    try:
        t0 = clock()
        for i in range(messages):
            for ref in refs:
                ref.tell(i)
        value = sum(ref.ask("count?") for ref in refs)
        seconds = clock() - t0
    finally:
        pykka.ActorRegistry.stop_all()
    return {"seconds": seconds, "ops": messages * subscribers, "value": value}


class RingNode(pykka.ThreadingActor):
    def __init__(self, event):
        super().__init__()
        self.next = None
        self.hops = 0
        self.event = event

    def on_receive(self, message):
        if isinstance(message, pykka.ActorRef):
            self.next = message
        elif message == "hops?":
            return self.hops
        else:
            self.hops += 1
            if message > 1:
                self.next.tell(message - 1)
            else:
                self.event.set()


def ring(actors: int, rounds: int) -> dict:
    event = threading.Event()
    refs = [RingNode.start(event) for _ in range(actors)]
    try:
        for i, ref in enumerate(refs):
            ref.tell(refs[(i + 1) % actors])
        t0 = clock()
        refs[0].tell(actors * rounds)
        event.wait()
        seconds = clock() - t0
        value = sum(ref.ask("hops?") for ref in refs)
    finally:
        pykka.ActorRegistry.stop_all()
    return {"seconds": seconds, "ops": actors * rounds, "value": value}


class Idle(pykka.ThreadingActor):
    def on_receive(self, message):
        pass


def spawn_stop(n: int) -> dict:
    t0 = clock()
    refs = [Idle.start() for _ in range(n)]
    t1 = clock()
    futures = [ref.stop(block=False) for ref in refs]
    stopped = sum(1 for f in futures if f.get() is not False)
    t2 = clock()
    return {"spawn_s": t1 - t0, "stop_s": t2 - t1, "ops": n, "value": stopped}


def idle_memory(n: int) -> dict:
    gc.collect()
    rss0 = rss_bytes()
    refs = [Idle.start() for _ in range(n)]
    gc.collect()
    rss = rss_bytes() - rss0
    alive = sum(ref.is_alive() for ref in refs)
    pykka.ActorRegistry.stop_all()
    del refs
    gc.collect()
    tracemalloc.start()
    t0 = tracemalloc.get_traced_memory()[0]
    refs = [Idle.start() for _ in range(n)]
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - t0
    alive = min(alive, len(refs))   # kept alive until measured
    tracemalloc.stop()
    pykka.ActorRegistry.stop_all()
    return {"tm_bytes": traced, "rss_bytes": rss, "ops": n, "value": alive}


class Sink(pykka.ThreadingActor):
    def __init__(self, threads, total, event):
        super().__init__()
        self.seen = InOrder(threads)
        self.total = total
        self.event = event

    def on_receive(self, message):
        if message == "seen?":
            return self.seen.count if self.seen.ordered else -1
        self.seen.add(message)
        if self.seen.count == self.total:
            self.event.set()


def cross_thread(threads: int, per_thread: int) -> dict:
    event = threading.Event()
    ref = Sink.start(threads, threads * per_thread, event)
    start = threading.Event()

    def feed(tid):
        tell = ref.tell
        start.wait()
        for i in range(per_thread):
            tell((tid, i))

    workers = [threading.Thread(target=feed, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    try:
        t0 = clock()
        start.set()
        event.wait()
        seconds = clock() - t0
        for w in workers:
            w.join()
        value = ref.ask("seen?")
    finally:
        ref.stop()
    return {"seconds": seconds, "ops": threads * per_thread, "value": value}


###############################################################################
# Round two (issue 16)
###############################################################################

class Producer(pykka.ThreadingActor):
    """On (targets, offset, n): tells 0 .. n-1 to its targets, round robin."""

    def on_receive(self, message):
        targets, offset, n = message
        if len(targets) == 1:
            tell = targets[0].tell
            for i in range(n):
                tell(i)
        else:
            k = len(targets)
            for i in range(n):
                targets[(i + offset) % k].tell(i)


def actor_burst(n: int) -> dict:
    ref = Counter.start()
    producer = Producer.start()
    try:
        t0 = clock()
        producer.ask(((ref,), 0, n))     # returns once every tell is queued
        count = ref.ask("count?")        # answered after every earlier tell
        seconds = clock() - t0
    finally:
        pykka.ActorRegistry.stop_all()
    return {"seconds": seconds, "ops": n, "value": count}


class Worker(pykka.ThreadingActor):
    def __init__(self, quota, done):
        super().__init__()
        self.total = 0
        self.left = quota
        self.done = done

    def on_receive(self, message):
        if message == "total?":
            return self.total
        self.total += message * message % 7
        self.left -= 1
        if self.left == 0:
            self.done.release()


def _drain(producers: int, per_producer: int, consumers: int) -> dict:
    quota = [sum(len(range((k - p) % consumers, per_producer, consumers))
                 for p in range(producers)) for k in range(consumers)]
    done = threading.Semaphore(0)
    workers = [Worker.start(quota[k], done) for k in range(consumers)]
    feeders = [Producer.start() for _ in range(producers)]
    try:
        t0 = clock()
        for p, feeder in enumerate(feeders):
            feeder.tell((workers, p, per_producer))
        for _ in range(consumers):
            done.acquire()
        seconds = clock() - t0
        value = sum(w.ask("total?") for w in workers)
    finally:
        pykka.ActorRegistry.stop_all()
    return {"seconds": seconds, "ops": producers * per_producer, "value": value}


def many_to_one(producers: int, per_producer: int) -> dict:
    return _drain(producers, per_producer, 1)


def many_to_many(producers: int, per_producer: int) -> dict:
    return _drain(producers, per_producer, producers)


class OneShot(pykka.ThreadingActor):
    def __init__(self, done, parent=None):
        super().__init__()
        self.done = done
        self.parent = parent

    def on_receive(self, message):
        self.stop()

    def on_stop(self):
        if self.parent is not None:
            self.parent.tell(self.actor_ref)
        self.done.release()


class Parent(pykka.ThreadingActor):
    """Pykka has no children: the parent starts the actors and keeps their refs."""

    def __init__(self, done):
        super().__init__()
        self.done = done
        self.kids = set()

    def on_receive(self, message):
        if isinstance(message, int):
            for _ in range(message):
                ref = OneShot.start(self.done, self.actor_ref)
                self.kids.add(ref)
                ref.tell(0)
        elif message == "kids?":
            return len(self.kids)
        else:
            self.kids.discard(message)


def create_stop(n: int, children: bool) -> dict:
    done = threading.Semaphore(0)
    try:
        t0 = clock()
        if children:
            parent = Parent.start(done)
            parent.tell(n)
        else:
            for _ in range(n):
                OneShot.start(done).tell(0)
        for _ in range(n):
            done.acquire()
        seconds = clock() - t0
        left = parent.ask("kids?") if children else 0
    finally:
        pykka.ActorRegistry.stop_all()
    return {"seconds": seconds, "ops": n, "value": n if left == 0 else -left}


class Tally(pykka.ThreadingActor):
    def __init__(self, total, event):
        super().__init__()
        self.count = 0
        self.ordered = True
        self.total = total
        self.event = event

    def on_receive(self, message):
        if message == "count?":
            return self.count if self.ordered else -1
        if message != self.count:
            self.ordered = False
        self.count += 1
        if self.count == self.total:
            self.event.set()


def cross_thread_send(n: int) -> dict:
    # Every Pykka tell crosses threads: the actor has its own.
    event = threading.Event()
    ref = Tally.start(n, event)
    try:
        tell = ref.tell
        t0 = clock()
        for i in range(n):
            tell(i)
        event.wait()
        seconds = clock() - t0
        value = ref.ask("count?")
    finally:
        ref.stop()
    return {"seconds": seconds, "ops": n, "value": value}


class Echo(pykka.ThreadingActor):
    def on_receive(self, message):
        return message


def cross_thread_ask(n: int) -> dict:
    ref = Echo.start()
    try:
        ask = ref.ask
        ok = 0
        t0 = clock()
        for i in range(n):
            ok += ask(i) == i
        seconds = clock() - t0
    finally:
        ref.stop()
    return {"seconds": seconds, "ops": n, "value": ok}
