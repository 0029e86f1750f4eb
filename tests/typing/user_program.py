"""A user's program, typed the way a strict codebase types it: `make lint` runs
`mypy --strict` on it, and tests/test_typing.py runs it and checks that mypy
still catches a typo through what the library hands back.

Each `assert_type` pins a type the library must give (not Any: mypy --strict
fails an assert_type of an Any expression).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import assert_type

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a checkout: backstage.py

import backstage  # noqa: E402
from backstage import (  # noqa: E402
    Context,
    DeadLetter,
    Directive,
    Engine,
    Envelope,
    MessageType,
    OneForOne,
    Terminated,
)


class Counter:
    """Counts ("add", n) messages; answers "total" asks."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.count = 0

    def receive(self, envelope: Envelope) -> None:
        match envelope.message:
            case ("add", int(n)):
                self.count += n
            case "total":
                envelope.reply(self.count)


class Pool:
    """A parent with typed children, restarting them on failure."""

    supervisor = OneForOne(max_restarts=3, within_s=5.0,
                           decider=lambda exc: Directive.RESTART)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.workers: list[Counter] = [
            ctx.spawn_child_actor(Counter, id=f"{ctx.actor_id}/{i}") for i in range(2)]
        self.stopped: list[str] = []
        for worker in self.workers:
            ctx.monitor(worker.ctx.actor_id)

    def receive(self, envelope: Envelope) -> None:
        if envelope.message_type is MessageType.TERMINATED:
            assert isinstance(envelope.message, Terminated)
            self.stopped.append(envelope.message.actor_id)
        elif envelope.message_type is MessageType.PUBLISH:
            for worker in self.workers:
                self.ctx.send(worker.ctx.actor_id, ("add", 1))


class DeadLetterLog:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.seen: list[DeadLetter] = []
        ctx.subscribe_to_dead_letters()

    def receive(self, envelope: Envelope) -> None:
        if isinstance(envelope.message, DeadLetter):
            self.seen.append(envelope.message)


def threads_and_asks() -> int:
    with Engine() as engine:
        counter = engine.spawn_actor(Counter, "counter")
        assert_type(counter, Counter)
        assert_type(counter.count, int)
        pool = engine.spawn_actor(Pool, id="pool", capacity=64, overflow="block")
        assert_type(pool.workers[0].count, int)
        pool.ctx.subscribe_to_actor("counter")
        log = engine.spawn_actor(DeadLetterLog, id="log")

        runner = threading.Thread(target=engine.run_forever)
        runner.start()
        for n in range(10):
            engine.send("counter", ("add", n))
        counter.ctx.publish("tick")
        answer: Future[object] = engine.ask("counter", "total", timeout=5.0)
        total = answer.result(timeout=5.0)
        engine.send("nobody", "lost")
        engine.stop()
        runner.join()

        timer = counter.ctx.send_after(60.0, "counter", ("add", 1))
        timer.cancel()
        assert_type(engine.actor_ids, list[str])
        assert_type(engine.get_actor("counter", Counter), Counter | None)
        assert_type(pool.ctx.get_actor("counter", Counter), Counter | None)
        assert isinstance(total, int)
        assert log.seen or engine.dead_letter_count >= 1
        return total


async def inside_asyncio() -> int:
    engine = backstage.Engine(backend="asyncio")     # shares the running loop
    counter = engine.spawn_actor(Counter, id="counter")
    actors = asyncio.create_task(engine.run_async())
    engine.send("counter", ("add", 21))
    reply = await asyncio.wrap_future(engine.ask("counter", "total"))
    engine.stop()
    await actors
    engine.close()
    assert_type(counter.count, int)
    return int(str(reply)) * 2


if __name__ == "__main__":
    print(threads_and_asks(), asyncio.run(inside_asyncio()))
