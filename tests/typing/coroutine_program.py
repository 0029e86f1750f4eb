"""An async actor, typed the way a strict codebase types it: `make lint` runs
`mypy --strict` on it (the tests/typing folder), and tests/test_coroutines.py
runs it: it prints "42 hashed".
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import assert_type

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a checkout: backstage.py

from backstage import AskFuture, Context, Engine, Envelope  # noqa: E402


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Doubler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def receive(self, envelope: Envelope) -> None:
        envelope.reply(envelope.message * 2)


class Worker:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.seen: list[str] = []
        ctx.become(self.first)

    async def receive(self, envelope: Envelope) -> None:
        job = self.ctx.run_in_thread(digest, envelope.message)
        assert_type(job, AskFuture[str])
        hashed: str = await job
        self.seen.append("hashed" if len(hashed) == 64 else "?")

    async def first(self, envelope: Envelope) -> None:
        doubled: int = await self.ctx.ask("doubler", 21)
        await self.ctx.sleep(0)
        self.seen.append(str(doubled))
        self.ctx.stash(envelope)
        self.ctx.unbecome()
        self.ctx.unstash_all()

    def forward_it(self, envelope: Envelope) -> None:
        self.ctx.forward("doubler", envelope)


def main() -> None:
    with Engine(thread_pool_size=2) as engine:
        engine.spawn_actor(Doubler, id="doubler")
        worker = engine.spawn_actor(Worker, id="worker")
        assert_type(worker, Worker)
        engine.send("worker", b"data")
        engine.run()
        print(" ".join(worker.seen))


if __name__ == "__main__":
    main()
