"""Actors inside an asyncio program, on the program's own event loop.

    python examples/asyncio_app.py              # or: --backend uvloop

The engine is made inside a coroutine, so it shares the running loop, and
``engine.run_async()`` runs as one more task beside the program's coroutines.
Coroutines send to actors as usual and await replies through a future that
travels in the message: awaiting it never blocks the loop.
"""

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # backstage.py beside examples/

from backstage import Context, Engine, Envelope  # noqa: E402

try:                    # installed with pip: the backends are inside the backstage package
    from backstage.backends.asyncio_backend import (  # type: ignore[import-not-found,unused-ignore]
        set_result_threadsafe,
    )
except ImportError:     # a checkout, or backstage.py copied with backends/ beside it
    from backends.asyncio_backend import set_result_threadsafe


class WordCounter:
    """Counts the words of the lines it is sent; ("total", future) gets the count."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.words = 0

    def receive(self, envelope: Envelope) -> None:
        match envelope.message:
            case ("total", future):
                set_result_threadsafe(future, self.words)   # from any thread; ok if cancelled
            case str(line):
                self.words += len(line.split())


async def ask(engine: Engine, actor_id: str, request: Any, timeout: float = 5.0) -> Any:
    """Send (request, future) to an actor and await the actor's answer."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    engine.send(actor_id, (request, future))
    return await asyncio.wait_for(future, timeout)


async def reader(engine: Engine, name: str, lines: list[str]) -> None:
    """One of the program's own coroutines: it feeds the actor as lines 'arrive'."""
    for line in lines:
        engine.send("counter", line)
        await asyncio.sleep(0.001)          # stands for waiting on a network, a queue...
    print(f"{name}: sent {len(lines)} lines")


async def main(backend: str) -> None:
    engine = Engine(backend=backend)        # made in a coroutine: it shares this loop
    engine.spawn_actor(WordCounter, id="counter")
    actors = asyncio.create_task(engine.run_async())

    await asyncio.gather(
        reader(engine, "poem", ["the actors share", "the program's loop"]),
        reader(engine, "prose", ["coroutines and actors", "side by side", "on one thread"]),
    )
    print("words counted by the actor:", await ask(engine, "counter", "total"))

    engine.stop()                           # run_async() returns; the loop goes on
    await actors
    engine.close()                          # every actor's deinit; the loop stays open


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "uvloop"], default="asyncio")
    backend = parser.parse_args().backend
    if backend == "uvloop":
        try:
            import uvloop
        except ImportError:
            sys.exit("--backend uvloop needs the uvloop package: pip install uvloop "
                     "(make test installs it in .venv: .venv/bin/python examples/asyncio_app.py "
                     "--backend uvloop)")
        uvloop.run(main(backend))
    else:
        asyncio.run(main(backend))
