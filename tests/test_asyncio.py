"""An engine inside an asyncio program, on the program's running loop."""

import asyncio
import contextlib
import subprocess
import sys
import threading

import pytest
from conftest import ROOT

from backends.asyncio_backend import set_exception_threadsafe, set_result_threadsafe
from backstage import Engine

TIMEOUT = 30   # seconds; generous, only ever reached when something hangs


@pytest.fixture
def aio_backend(backend):
    """asyncio or uvloop: the backends that can share a running asyncio loop."""
    if backend == "selectors":
        pytest.skip("the selectors backend has no asyncio loop to share")
    return backend


@contextlib.asynccontextmanager
async def running_async(engine):
    """``engine.run_async()`` as a task beside the program's coroutines inside the
    block; the engine stopped, its task awaited and the engine closed after it."""
    runner = asyncio.create_task(engine.run_async())
    try:
        yield runner
    finally:
        engine.stop()
        await asyncio.wait_for(runner, TIMEOUT)
        engine.close()


def run_program(backend, main):
    """asyncio.run(main()) on an event loop of ``backend``'s kind."""
    if backend == "uvloop":
        import uvloop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())


class Counter:
    """Adds numbers; answers ("get", future) by resolving the future with the sum."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.total = 0
        self.deinit_ran = False

    def receive(self, envelope):
        match envelope.message:
            case ("add", n):
                self.total += n
            case ("get", future):
                set_result_threadsafe(future, self.total)
            case ("fail", future):
                set_exception_threadsafe(future, ValueError("no such sum"))

    def deinit(self):
        self.deinit_ran = True


class Gate:
    """Answers ("wait", future) only once it has received "open"."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.waiting = []

    def receive(self, envelope):
        if envelope.message == "open":
            for future in self.waiting:
                set_result_threadsafe(future, "opened")
        else:
            self.waiting.append(envelope.message[1])


def test_a_coroutine_sends_to_an_actor_and_awaits_its_reply(aio_backend):
    async def main():
        engine = Engine(backend=aio_backend)
        engine.spawn_actor(Counter, id="counter")
        async with running_async(engine):
            for n in range(1, 101):
                engine.send("counter", ("add", n))
            reply = asyncio.get_running_loop().create_future()

            engine.send("counter", ("get", reply))
            total = await asyncio.wait_for(reply, TIMEOUT)
        return total

    assert run_program(aio_backend, main) == 5050


def test_awaiting_a_reply_leaves_the_loop_free_for_the_programs_other_coroutines(aio_backend):
    # The gate answers only after another coroutine opens it: were the
    # awaiting coroutine to block the loop, that coroutine could never run.
    async def main():
        engine = Engine(backend=aio_backend)
        engine.spawn_actor(Gate, id="gate")
        async with running_async(engine):
            reply = asyncio.get_running_loop().create_future()

            async def opener():
                await asyncio.sleep(0)
                engine.send("gate", "open")

            engine.send("gate", ("wait", reply))
            opening = asyncio.create_task(opener())
            answer = await asyncio.wait_for(reply, TIMEOUT)

            await opening
        return answer

    assert run_program(aio_backend, main) == "opened"


def test_an_actor_can_fail_a_reply_future(aio_backend):
    async def main():
        engine = Engine(backend=aio_backend)
        engine.spawn_actor(Counter, id="counter")
        async with running_async(engine):
            reply = asyncio.get_running_loop().create_future()

            engine.send("counter", ("fail", reply))
            with pytest.raises(ValueError, match=r"^no such sum$"):
                await asyncio.wait_for(reply, TIMEOUT)

    run_program(aio_backend, main)


def test_a_reply_to_a_cancelled_future_is_dropped_quietly(aio_backend):
    async def main():
        engine = Engine(backend=aio_backend)
        counter = engine.spawn_actor(Counter, id="counter")
        async with running_async(engine):
            abandoned = asyncio.get_running_loop().create_future()
            abandoned.cancel()
            reply = asyncio.get_running_loop().create_future()

            engine.send("counter", ("get", abandoned))
            engine.send("counter", ("add", 7))
            engine.send("counter", ("get", reply))
            total = await asyncio.wait_for(reply, TIMEOUT)
        return total, counter.deinit_ran

    assert run_program(aio_backend, main) == (7, True)


def test_a_send_from_another_thread_reaches_an_actor_on_the_programs_loop(aio_backend):
    async def main():
        engine = Engine(backend=aio_backend)
        engine.spawn_actor(Counter, id="counter")
        async with running_async(engine):
            reply = asyncio.get_running_loop().create_future()
            await asyncio.sleep(0)           # the run has begun: other threads may send

            sender = threading.Thread(target=lambda: (engine.send("counter", ("add", 41)),
                                                      engine.send("counter", ("get", reply))))
            sender.start()
            total = await asyncio.wait_for(reply, TIMEOUT)

            sender.join(TIMEOUT)
        return total

    assert run_program(aio_backend, main) == 41


def test_run_async_goes_on_while_idle_until_stop(aio_backend):
    async def main():
        engine = Engine(backend=aio_backend)
        engine.spawn_actor(Counter, id="counter")
        async with running_async(engine) as runner:
            reply = asyncio.get_running_loop().create_future()
            engine.send("counter", ("get", reply))
            await asyncio.wait_for(reply, TIMEOUT)
            for _ in range(10):
                await asyncio.sleep(0)      # the loop turns with nothing for the actors to do

            still_running = not runner.done()
        return still_running

    assert run_program(aio_backend, main) is True


def test_run_async_until_idle_returns_once_messages_and_timers_are_done(aio_backend):
    async def main():
        engine = Engine(backend=aio_backend)
        counter = engine.spawn_actor(Counter, id="counter")
        engine.send("counter", ("add", 1))
        counter.ctx.send_after(0.01, "counter", ("add", 2))

        await asyncio.wait_for(engine.run_async(until_idle=True), TIMEOUT)

        total = counter.total
        engine.close()
        return total

    assert run_program(aio_backend, main) == 3


def test_stop_before_run_async_leaves_the_programs_loop_running(aio_backend):
    # A stop() with no run going must not stop the loop the program runs:
    # asyncio.run would then fail with "Event loop stopped before Future completed".
    # The stop ends the next run at once; the run after it handles the message.
    # (Whether a message sent before the stopped run is handled depends on the
    # version: 3.12's wait_for awaits the coroutine in the caller's task, 3.11's
    # in a new task, after the engine's tick.  So the message is sent after.)
    async def main():
        engine = Engine(backend=aio_backend)
        counter = engine.spawn_actor(Counter, id="counter")
        engine.stop()
        for _ in range(10):
            await asyncio.sleep(0)
        await asyncio.wait_for(engine.run_async(), TIMEOUT)
        engine.send("counter", ("add", 5))

        # The stop ends the next run at once; the engine's work waits for a run.
        await asyncio.wait_for(engine.run_async(until_idle=True), TIMEOUT)
        await asyncio.wait_for(engine.run_async(until_idle=True), TIMEOUT)

        engine.close()
        return counter.total

    assert run_program(aio_backend, main) == 5


def test_close_in_a_coroutine_ends_run_async_runs_deinit_and_keeps_the_loop_open(aio_backend):
    async def main():
        engine = Engine(backend=aio_backend)
        counter = engine.spawn_actor(Counter, id="counter")
        runner = asyncio.create_task(engine.run_async())
        await asyncio.sleep(0)

        engine.close()
        await asyncio.wait_for(runner, TIMEOUT)

        return engine.closed, counter.deinit_ran, asyncio.get_running_loop().is_closed()

    assert run_program(aio_backend, main) == (True, True, False)


def test_cancelling_run_async_ends_the_run_and_the_engine_can_run_again(aio_backend):
    async def main():
        engine = Engine(backend=aio_backend)
        counter = engine.spawn_actor(Counter, id="counter")
        runner = asyncio.create_task(engine.run_async())
        await asyncio.sleep(0)

        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        engine.send("counter", ("add", 3))
        await asyncio.wait_for(engine.run_async(until_idle=True), TIMEOUT)

        engine.close()
        return counter.total

    assert run_program(aio_backend, main) == 3


def test_run_inside_the_programs_running_loop_says_to_await_run_async(aio_backend):
    async def main():
        engine = Engine(backend=aio_backend)
        engine.spawn_actor(Counter, id="counter")
        engine.send("counter", ("add", 1))

        with pytest.raises(RuntimeError, match=r"^this engine's asyncio loop is already "
                                               r"running .*await engine\.run_async\(\)"):
            engine.run()

        await asyncio.wait_for(engine.run_async(until_idle=True), TIMEOUT)
        total = engine.get_actor("counter").total
        engine.close()
        return total

    assert run_program(aio_backend, main) == 1


def test_run_async_of_an_engine_made_outside_the_program_raises_a_clear_error(aio_backend):
    engine = Engine(backend=aio_backend)        # no loop runs here: it owns a new one

    async def main():
        with pytest.raises(RuntimeError, match=r"^run_async\(\) must be awaited on the "
                                               r"engine's own asyncio loop"):
            await engine.run_async()

    run_program(aio_backend, main)
    engine.close()


def test_run_async_on_the_selectors_backend_raises_a_clear_error():
    async def main():
        engine = Engine(backend="selectors")
        with pytest.raises(TypeError, match=r"^run_async\(\) needs an engine on an asyncio "
                                            r"loop, and this one runs on 'selectors'"):
            await engine.run_async()
        engine.close()

    asyncio.run(main())


def test_the_uvloop_backend_inside_a_plain_asyncio_loop_raises_a_clear_error():
    pytest.importorskip("uvloop", reason="uvloop is not installed here")

    async def main():
        with pytest.raises(ValueError, match=r"^Engine\(backend='uvloop'\) was made inside a "
                                             r"running _UnixSelectorEventLoop, which is not "
                                             r"uvloop: use Engine\(backend='asyncio'\)"):
            Engine(backend="uvloop")

    asyncio.run(main())


def test_the_asyncio_example_runs_and_counts_the_words(aio_backend):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "asyncio_app.py"),
                             "--backend", aio_backend],
                            capture_output=True, text=True, timeout=TIMEOUT)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "words counted by the actor: 15"


def test_a_coroutine_awaits_engine_ask_without_blocking_the_loop(aio_backend):
    class Doubler:
        def __init__(self, ctx):
            pass

        def receive(self, envelope):
            envelope.reply(envelope.message * 2)

    # The actors run on the same loop: an await that blocked would never return.
    async def main():
        engine = Engine(backend=aio_backend)
        engine.spawn_actor(Doubler, id="d")
        actors = asyncio.create_task(engine.run_async())
        try:
            replies = [await asyncio.wait_for(asyncio.wrap_future(engine.ask("d", n)), TIMEOUT)
                       for n in range(20)]
        finally:
            engine.stop()
            await actors
            engine.close()
        return replies

    assert run_program(aio_backend, main) == [2 * n for n in range(20)]
