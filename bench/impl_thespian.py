"""Thespian 4.x on simpleSystemBase: every actor runs in the caller's thread.

Cross-thread is left out: simpleSystemBase is not thread-safe.
"""

from __future__ import annotations

import gc
import tracemalloc

from thespian.actors import Actor, ActorExitRequest, ActorSystem, ChildActorExited

from bench.common import clock, rss_bytes, skynet_check


def _system() -> ActorSystem:
    return ActorSystem("simpleSystemBase", logDefs=False)


class Counter(Actor):
    def receiveMessage(self, message, sender):
        if message == "count?":
            self.send(sender, getattr(self, "count", 0))
        elif isinstance(message, int):
            self.count = getattr(self, "count", 0) + 1


def burst(n: int) -> dict:
    asys = _system()
    try:
        addr = asys.createActor(Counter)
        tell = asys.tell
        t0 = clock()
        for i in range(n):
            tell(addr, i)
        count = asys.ask(addr, "count?", 10)
        seconds = clock() - t0
    finally:
        asys.shutdown()
    return {"seconds": seconds, "ops": n, "value": count}


class Player(Actor):
    def receiveMessage(self, message, sender):
        if isinstance(message, tuple):       # (other, limit, reporter)
            self.other, self.limit, self.reporter = message
        elif isinstance(message, int):
            if message < self.limit:
                self.send(self.other, message + 1)
            else:
                self.send(self.reporter, message)


class Reporter(Actor):
    def receiveMessage(self, message, sender):
        if message == "result?":
            self.asker = sender
            if hasattr(self, "result"):
                self.send(sender, self.result)
        elif isinstance(message, int):
            self.result = message
            if hasattr(self, "asker"):
                self.send(self.asker, message)


def ping_pong(n: int) -> dict:
    asys = _system()
    try:
        ping, pong = asys.createActor(Player), asys.createActor(Player)
        reporter = asys.createActor(Reporter)
        asys.tell(ping, (pong, n, reporter))
        asys.tell(pong, (ping, n, reporter))
        t0 = clock()
        asys.tell(ping, 1)
        value = asys.ask(reporter, "result?", 10)
        seconds = clock() - t0
    finally:
        asys.shutdown()
    return {"seconds": seconds, "ops": n, "value": value}


class Publisher(Actor):
    def receiveMessage(self, message, sender):
        if isinstance(message, list):
            self.subscribers = message
        elif isinstance(message, int):
            for i in range(message):
                for sub in self.subscribers:
                    self.send(sub, i)


def fan_out(messages: int, subscribers: int) -> dict:
    # No topics in simpleSystemBase's plain actors: the publisher sends to each.
    asys = _system()
    try:
        subs = [asys.createActor(Counter) for _ in range(subscribers)]
        pub = asys.createActor(Publisher)
        asys.tell(pub, subs)
        t0 = clock()
        asys.tell(pub, messages)
        value = sum(asys.ask(sub, "count?", 10) for sub in subs)
        seconds = clock() - t0
    finally:
        asys.shutdown()
    return {"seconds": seconds, "ops": messages * subscribers, "value": value}


class RingNode(Actor):
    def receiveMessage(self, message, sender):
        if isinstance(message, tuple):
            self.next, = message
            self.hops = 0
        elif message == "hops?":
            self.send(sender, self.hops)
        elif isinstance(message, int):
            self.hops += 1
            if message > 1:
                self.send(self.next, message - 1)


def ring(actors: int, rounds: int) -> dict:
    asys = _system()
    try:
        nodes = [asys.createActor(RingNode) for _ in range(actors)]
        for i, node in enumerate(nodes):
            asys.tell(node, (nodes[(i + 1) % actors],))
        t0 = clock()
        asys.tell(nodes[0], actors * rounds)     # runs to completion in this call
        seconds = clock() - t0
        value = sum(asys.ask(node, "hops?", 10) for node in nodes)
    finally:
        asys.shutdown()
    return {"seconds": seconds, "ops": actors * rounds, "value": value}


class Skynet(Actor):
    def receiveMessage(self, message, sender):
        if isinstance(message, tuple):
            num, size, self.parent = message
            if size == 1:
                self.send(self.parent, num)
                return
            size //= 10
            self.pending, self.total = 10, 0
            for i in range(10):
                child = self.createActor(Skynet)
                self.send(child, (num + i * size, size, self.myAddress))
        elif isinstance(message, int):
            self.total += message
            self.pending -= 1
            if self.pending == 0:
                self.send(self.parent, self.total)


class Root(Actor):
    def receiveMessage(self, message, sender):
        if isinstance(message, tuple):
            self.asker = sender
            self.send(self.createActor(Skynet), message + (self.myAddress,))
        elif isinstance(message, int):
            self.send(self.asker, message)


def skynet(leaves: int) -> dict:
    skynet_check(leaves)
    asys = _system()
    try:
        root = asys.createActor(Root)
        t0 = clock()
        value = asys.ask(root, (0, leaves), 60)
        seconds = clock() - t0
    finally:
        asys.shutdown()
    return {"seconds": seconds, "ops": leaves, "value": value}


class Idle(Actor):
    stopped = 0

    def receiveMessage(self, message, sender):
        if isinstance(message, ActorExitRequest):
            Idle.stopped += 1


def spawn_stop(n: int) -> dict:
    Idle.stopped = 0
    asys = _system()
    try:
        t0 = clock()
        addrs = [asys.createActor(Idle) for _ in range(n)]
        t1 = clock()
        for addr in addrs:
            asys.tell(addr, ActorExitRequest())
        t2 = clock()
    finally:
        asys.shutdown()
    return {"spawn_s": t1 - t0, "stop_s": t2 - t1, "ops": n, "value": Idle.stopped}


def idle_memory(n: int) -> dict:
    asys = _system()
    try:
        gc.collect()
        rss0 = rss_bytes()
        addrs = [asys.createActor(Idle) for _ in range(n)]
        gc.collect()
        rss = rss_bytes() - rss0
        alive = len(addrs)
    finally:
        asys.shutdown()
    del addrs
    gc.collect()
    asys = _system()
    try:
        tracemalloc.start()
        t0 = tracemalloc.get_traced_memory()[0]
        addrs = [asys.createActor(Idle) for _ in range(n)]
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - t0
        alive = min(alive, len(addrs))   # kept alive until measured
        tracemalloc.stop()
    finally:
        asys.shutdown()
    return {"tm_bytes": traced, "rss_bytes": rss, "ops": n, "value": alive}


###############################################################################
# Round two (issue 16).  Cross-thread sends and asks are left out, as above.
###############################################################################

class Producer(Actor):
    """On (targets, offset, n): sends 0 .. n-1 to its targets, round robin."""

    def receiveMessage(self, message, sender):
        if isinstance(message, tuple):
            targets, offset, n = message
            k = len(targets)
            send = self.send
            for i in range(n):
                send(targets[(i + offset) % k], i)


class Worker(Actor):
    def receiveMessage(self, message, sender):
        if message == "total?":
            self.send(sender, getattr(self, "total", 0))
        elif isinstance(message, int):
            self.total = getattr(self, "total", 0) + message * message % 7


def actor_burst(n: int) -> dict:
    asys = _system()
    try:
        sink = asys.createActor(Counter)
        producer = asys.createActor(Producer)
        t0 = clock()
        asys.tell(producer, ((sink,), 0, n))     # runs to completion in this call
        count = asys.ask(sink, "count?", 10)
        seconds = clock() - t0
    finally:
        asys.shutdown()
    return {"seconds": seconds, "ops": n, "value": count}


def _drain(producers: int, per_producer: int, consumers: int) -> dict:
    asys = _system()
    try:
        workers = [asys.createActor(Worker) for _ in range(consumers)]
        feeders = [asys.createActor(Producer) for _ in range(producers)]
        t0 = clock()
        for p, feeder in enumerate(feeders):
            asys.tell(feeder, (workers, p, per_producer))
        value = sum(asys.ask(w, "total?", 10) for w in workers)
        seconds = clock() - t0
    finally:
        asys.shutdown()
    return {"seconds": seconds, "ops": producers * per_producer, "value": value}


def many_to_one(producers: int, per_producer: int) -> dict:
    return _drain(producers, per_producer, 1)


def many_to_many(producers: int, per_producer: int) -> dict:
    return _drain(producers, per_producer, producers)


class OneShot(Actor):
    done = 0

    def receiveMessage(self, message, sender):
        if isinstance(message, ActorExitRequest):
            OneShot.done += 1
        elif isinstance(message, int):
            self.send(self.myAddress, ActorExitRequest())


class Parent(Actor):
    """Thespian actors are children of their creator; the parent is told of each exit."""

    def receiveMessage(self, message, sender):
        # Addresses are not hashable: the parent counts its live children.
        if isinstance(message, int):
            self.kids = 0
            for _ in range(message):
                self.kids += 1
                self.send(self.createActor(OneShot), 0)
        elif isinstance(message, ChildActorExited):
            self.kids -= 1
        elif message == "kids?":
            self.send(sender, self.kids)


def create_stop(n: int, children: bool) -> dict:
    OneShot.done = 0
    asys = _system()
    try:
        t0 = clock()
        if children:
            parent = asys.createActor(Parent)
            asys.tell(parent, n)
            left = asys.ask(parent, "kids?", 10)
        else:
            for _ in range(n):
                asys.tell(asys.createActor(OneShot), 0)
            left = 0
        seconds = clock() - t0
    finally:
        asys.shutdown()
    return {"seconds": seconds, "ops": n, "value": OneShot.done if left == 0 else -left}
