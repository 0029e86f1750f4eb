"""Actors for bench/bench_cluster.py: backstage actors, and Ray's own for comparison.

In a module of its own so that the engine processes import it quickly.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import ray


class Source:
    """On ("go", target, n, chunk): sends 0 .. n-1, ``chunk`` per turn (one tick
    each); with ``many``, each turn's as one ctx.send_many."""

    def __init__(self, ctx: Any, many: bool = False) -> None:
        self.ctx = ctx
        self.started = 0.0
        self.many = many

    def receive(self, envelope: Any) -> None:
        message = envelope.message
        if message == "started":
            envelope.reply(self.started)
        elif message[0] == "go":
            _, target, n, chunk = message
            self.started = time.monotonic()
            self.ctx.send(self.ctx.actor_id, ("more", target, 0, n, chunk))
            envelope.reply(True)
        else:
            _, target, start, n, chunk = message
            send = self.ctx.send
            if self.many:
                self.ctx.send_many(target, list(range(start, min(n, start + chunk))))
            else:
                for i in range(start, min(n, start + chunk)):
                    send(target, i)
            if start + chunk < n:
                send(self.ctx.actor_id, ("more", target, start + chunk, n, chunk))


class Sink:
    """Counts messages; notes the time the ``n``-th arrived.

    Asked "ended", it answers once the ``n``-th message is handled: the end of
    a run is then known without polling the engines (Ray's side learns it by
    the order of its calls), so no look at the engines is in the CPU measured.
    Messages are told from the "ended" question by their class, as Ray's
    counter tells them by the method called: one check, no string comparison.
    """

    def __init__(self, ctx: Any, n: int) -> None:
        self.n = n
        self.count = 0
        self.ended = 0.0
        self.asker: Any = None

    def receive(self, envelope: Any) -> None:
        if envelope.message.__class__ is str:          # "ended"
            if self.count >= self.n:
                envelope.reply(self.ended)
            else:
                self.asker = envelope
            return
        self.count += 1
        if self.count == self.n:
            self.ended = time.monotonic()
            if self.asker is not None:
                self.asker.reply(self.ended)


class Pinger:
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.times: list[float] = []
        self.asker: Any = None
        self.left = 0

    def receive(self, envelope: Any) -> None:
        message = envelope.message
        if type(message) is tuple:
            _, self.pong, self.left = message
            self.asker = envelope
            self.times.append(time.monotonic())
            self.ctx.send(self.pong, "ping")
            return
        self.times.append(time.monotonic())
        self.left -= 1
        if self.left:
            self.ctx.send(self.pong, "ping")
        else:
            self.asker.reply(self.times)


class Ponger:
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def receive(self, envelope: Any) -> None:
        self.ctx.send(envelope.sender_id, "pong")


class Spinner:
    """On ("go", jobs, work): ``jobs`` jobs of ``work`` iterations, one per turn."""

    def __init__(self, ctx: Any, sink: str) -> None:
        self.ctx = ctx
        self.sink = sink

    def receive(self, envelope: Any) -> None:
        message = envelope.message
        if message[0] == "go":
            _, jobs, work = message
            for _ in range(jobs):
                self.ctx.send(self.ctx.actor_id, ("job", work))
            envelope.reply(True)
            return
        total = 0
        for i in range(message[1]):
            total += i
        self.ctx.send(self.sink, total)


class Burner:
    """A routee of a pool: each ask is ``work`` iterations of spinning; answers
    with the engine number it ran on."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def receive(self, envelope: Any) -> None:
        total = 0
        for i in range(envelope.message):
            total += i
        from backends.ray_transport import this_engine
        envelope.reply(this_engine())


class SpinSink:
    def __init__(self, ctx: Any) -> None:
        self.ended = 0.0

    def receive(self, envelope: Any) -> None:
        if envelope.message == "ended":
            envelope.reply(self.ended)
        else:
            self.ended = time.monotonic()


# -- Ray's own, for comparison ----------------------------------------------------------

class _Counter:
    """Ray's side of a throughput run: counts messages, notes when the n-th came."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.end = 0.0

    def pid(self) -> int:
        return os.getpid()

    @ray.method(enable_task_events=False)
    def recv(self, batch: list) -> None:
        # One handler call per message, as an actor's receive is: the work a
        # Ray program does to handle a batch of messages.
        on_message = self.on_message
        for message in batch:
            on_message(message)

    def on_message(self, message: Any) -> None:
        self.count += 1
        if self.count == self.n:
            self.end = time.monotonic()

    def ended(self) -> float:
        return self.end


@ray.remote(num_cpus=0)
class RayReceiver(_Counter):
    """Receives batches (one way)."""


@ray.remote(num_cpus=0)
class RaySender:
    def pid(self) -> int:
        return os.getpid()

    def go(self, receiver: Any, n: int, batch: int, window: int) -> float:
        return _ray_send(receiver, n, batch, window)


def _ray_send(receiver: Any, n: int, batch: int, window: int) -> float:
    """Ray's own batched sends: at most ``window`` calls in flight; the start time."""
    start = time.monotonic()
    inflight: list = []
    pending: list = []
    for i in range(n):
        # One append per message, as a program that batches its sends does.
        pending.append(i)
        if len(pending) == batch or i == n - 1:
            if len(inflight) >= window:
                _, inflight = ray.wait(inflight, num_returns=1)
            inflight.append(receiver.recv.remote(pending))
            pending = []
    ray.wait(inflight, num_returns=len(inflight))
    return start


@ray.remote(num_cpus=0, max_concurrency=2)
class RayPeer(_Counter):
    """Sends and receives in one process, as an engine does: the both-ways
    comparison (one process per side, as with two engines)."""

    def go(self, receiver: Any, n: int, batch: int, window: int) -> float:
        return _ray_send(receiver, n, batch, window)


@ray.remote(num_cpus=0)
class RayPonger:
    async def ping(self) -> str:
        return "pong"


@ray.remote(num_cpus=0)
class RayPinger:
    async def go(self, pong: Any, rounds: int) -> list:
        times = [time.monotonic()]
        for _ in range(rounds):
            await pong.ping.remote()
            times.append(time.monotonic())
        await asyncio.sleep(0)
        return times
