"""Coroutine handlers: ``async def receive`` on every backend."""

import asyncio
import re
import subprocess
import sys
import threading

import pytest
from conftest import Recorder, Running, parent_of

import backstage
from backstage import Engine, OneForOne

# What the actors of one test did, in the order they did it.
log = []


@pytest.fixture(autouse=True)
def clear_log():
    log.clear()


class Doubler:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        log.append(("doubler", envelope.message))
        envelope.reply(envelope.message * 2)


class Gate:
    """Holds each asked message, then answers everything it holds when it gets "open".

    It sends itself that "open" when it holds an ask, so the answer comes one
    turn of the gate later: every other ready actor has its turn in between.
    """

    def __init__(self, ctx):
        self.ctx = ctx
        self.held = []

    def receive(self, envelope):
        if envelope.message == "open":
            log.append(("gate", "open"))
            for held in self.held:
                held.reply("through")
            self.held = []
        else:
            self.held.append(envelope)
            self.ctx.send(self.ctx.actor_id, "open")


class AskingActor:
    """For each message, asks "gate" and logs before and after the await."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def receive(self, envelope):
        log.append(("start", envelope.message))
        answer = await self.ctx.ask("gate", envelope.message)
        log.append(("end", envelope.message, answer))


def test_an_async_receive_handles_every_message(engine):
    class Counter:
        def __init__(self, ctx):
            self.ctx = ctx
            self.seen = []

        async def receive(self, envelope):
            self.seen.append(envelope.message)

    counter = engine.spawn_actor(Counter, id="counter")

    for i in range(300):
        engine.send("counter", i)
    engine.run()

    assert counter.seen == list(range(300))


def test_an_async_receive_can_await_an_ask(engine):
    class Asker:
        def __init__(self, ctx):
            self.ctx = ctx
            self.answers = []

        async def receive(self, envelope):
            self.answers.append(await self.ctx.ask("doubler", envelope.message))

    engine.spawn_actor(Doubler, id="doubler")
    asker = engine.spawn_actor(Asker, id="asker")

    engine.send("asker", 21)
    engine.send("asker", 5)
    engine.run()

    assert asker.answers == [42, 10]


def test_an_async_receive_can_await_blocking_work_in_a_thread(engine):
    class Worker:
        def __init__(self, ctx):
            self.ctx = ctx
            self.results = []

        async def receive(self, envelope):
            name = await self.ctx.run_in_thread(lambda: threading.current_thread().name)
            self.results.append((envelope.message, name != threading.current_thread().name))

    worker = engine.spawn_actor(Worker, id="worker")

    engine.send("worker", "job")
    engine.run()

    assert worker.results == [("job", True)]


def test_an_async_receive_can_sleep_and_run_waits_for_it(engine):
    class Sleeper:
        def __init__(self, ctx):
            self.ctx = ctx
            self.woke = False

        async def receive(self, envelope):
            await self.ctx.sleep(0.02)
            self.woke = True

    sleeper = engine.spawn_actor(Sleeper, id="sleeper")

    engine.send("sleeper", "nap")
    engine.run()

    assert sleeper.woke


def test_an_actor_handles_its_next_message_only_after_the_current_coroutine_ends(engine):
    engine.spawn_actor(Gate, id="gate")
    engine.spawn_actor(AskingActor, id="asker")

    engine.send("asker", 1)
    engine.send("asker", 2)
    engine.run()

    assert log == [("start", 1), ("gate", "open"), ("end", 1, "through"),
                   ("start", 2), ("gate", "open"), ("end", 2, "through")]


def test_other_actors_run_while_a_coroutine_is_suspended(engine):
    engine.spawn_actor(Gate, id="gate")
    engine.spawn_actor(AskingActor, id="asker")
    engine.spawn_actor(Doubler, id="doubler")

    engine.send("asker", 1)
    engine.send("doubler", 3)
    engine.send("doubler", 4)
    engine.run()

    # On the asyncio backends the coroutine's first step runs in an asyncio
    # task, after the tick that received the message: only the end is fixed.
    assert log[-2:] == [("gate", "open"), ("end", 1, "through")]
    assert sorted(log[:3]) == [("doubler", 3), ("doubler", 4), ("start", 1)]


def test_order_is_kept_for_messages_that_arrive_while_a_coroutine_is_suspended(engine):
    class Slow:
        def __init__(self, ctx):
            self.ctx = ctx
            self.seen = []

        async def receive(self, envelope):
            if envelope.message % 7 == 0:
                await self.ctx.sleep(0)
            self.seen.append(envelope.message)

    class Feeder:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            for i in range(100, 150):
                self.ctx.send("slow", i)

    slow = engine.spawn_actor(Slow, id="slow")
    engine.spawn_actor(Feeder, id="feeder")

    for i in range(100):
        engine.send("slow", i)
    engine.send("feeder", "go")
    engine.run()

    assert slow.seen == list(range(150))


def test_an_exception_after_an_await_fails_the_ask_of_that_message(engine):
    class Failer:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            await self.ctx.sleep(0)
            raise ValueError(f"cannot handle {envelope.message!r}")

    engine.spawn_actor(Failer, id="failer")

    future = engine.ask("failer", "this")
    engine.run()

    with pytest.raises(ValueError, match=r"^cannot handle 'this'$"):
        future.result()


def test_a_child_whose_coroutine_fails_is_restarted_and_the_message_is_a_dead_letter(engine):
    class Child:
        def __init__(self, ctx):
            self.ctx = ctx
            log.append("init")

        async def receive(self, envelope):
            await self.ctx.sleep(0)
            if envelope.message == "boom":
                raise ValueError("exploded after an await")
            log.append(envelope.message)

    engine.spawn_actor(parent_of(Child, "child", OneForOne()), id="parent")

    engine.send("child", "boom")
    engine.send("child", "after")
    engine.run()

    assert log == ["init", "init", "after"]
    [dead] = engine.dead_letters
    assert dead.envelope.message == "boom"
    assert dead.reason == "receive failed: ValueError('exploded after an await')"


def test_a_failure_before_the_first_await_goes_to_supervision_as_from_a_plain_receive(engine):
    class Failer:
        def __init__(self, ctx):
            self.ctx = ctx
            self.seen = []

        async def receive(self, envelope):
            if envelope.message == "boom":
                raise ValueError("exploded at once")
            self.seen.append(envelope.message)

    failer = engine.spawn_actor(Failer, id="failer")

    future = engine.ask("failer", "boom")
    engine.send("failer", "next")
    engine.run()

    with pytest.raises(ValueError, match=r"^exploded at once$"):
        future.result()
    assert failer.seen == ["next"]        # top-level actors resume by default


def test_a_stopping_actors_suspended_coroutine_is_cancelled_and_deinit_runs_once(engine):
    class Child:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            log.append("waiting")
            self.ctx.send("parent", "stop now")
            try:
                await self.ctx.sleep(60)
            except BaseException as exc:
                log.append(type(exc).__name__)
                raise
            log.append("woke")          # never: the sleep is cancelled

        def deinit(self):
            log.append("deinit")

    engine.spawn_actor(parent_of(Child, "child", stops_on_a_message=True), id="parent")

    engine.send("child", "work")
    future = engine.ask("child", "queued behind it")
    engine.run()                         # would wait 60 s if the sleep went on

    assert log == ["waiting", "CancelledError", "deinit"]
    assert "child" not in engine.actor_ids
    reasons = {d.envelope.message: d.reason for d in engine.dead_letters}
    assert reasons["work"].startswith("actor stopped while handling it")
    assert reasons["queued behind it"].startswith("actor stopped before handling it")
    with pytest.raises(Exception, match=r"did not answer the ask"):
        future.result()


def test_closing_the_engine_cancels_a_suspended_coroutine_and_runs_deinit_once(backend):
    started = threading.Event()

    class Waiter:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            started.set()
            try:
                await self.ctx.sleep(60)
            finally:
                log.append("cleaned up")

        def deinit(self):
            log.append("deinit")

    engine = Engine(backend=backend)
    engine.spawn_actor(Waiter, id="waiter")
    engine.send("waiter", "wait")
    with Running(engine):
        assert started.wait(10)

    assert log == ["cleaned up", "deinit"]


def test_a_poison_pill_sent_during_a_coroutine_waits_for_it_to_end(engine):
    class Finisher:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            await self.ctx.sleep(0.01)
            log.append("finished")

        def deinit(self):
            log.append("deinit")

    engine.spawn_actor(Finisher, id="finisher")

    engine.send("finisher", "work")
    engine.poison_pill("finisher")
    engine.run()

    assert log == ["finished", "deinit"]


def test_a_restarted_async_actor_stays_async(engine):
    class Flaky:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            await self.ctx.sleep(0)
            if envelope.message == "boom":
                raise ValueError("boom")
            log.append(envelope.message)

    engine.spawn_actor(parent_of(Flaky, "flaky", OneForOne()), id="parent")

    engine.send("flaky", "boom")
    engine.send("flaky", "a")
    engine.send("flaky", "b")
    engine.run()

    assert log == ["a", "b"]
    assert engine.restart_count == 1


def test_an_async_receive_replies_with_envelope_reply_after_awaiting(engine):
    class Relay:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            doubled = await self.ctx.ask("doubler", envelope.message)
            envelope.reply(doubled + 1)

    engine.spawn_actor(Doubler, id="doubler")
    engine.spawn_actor(Relay, id="relay")

    future = engine.ask("relay", 20)
    engine.run()

    assert future.result() == 41


def test_an_awaited_ask_that_times_out_raises_in_the_coroutine(engine):
    class Patient:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            try:
                await self.ctx.ask("silent", "never answered", timeout=0.02)
            except TimeoutError:
                log.append("timed out")

    engine.spawn_actor(Recorder, id="silent")
    engine.spawn_actor(Patient, id="patient")

    engine.send("patient", "go")
    engine.run()

    assert log == ["timed out"]


def test_awaiting_asyncio_objects_works_on_the_asyncio_backends(backend):
    if backend == "selectors":
        pytest.skip("asyncio awaitables need an asyncio loop; see the selectors test")

    class AsyncioUser:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            await asyncio.sleep(0.01)
            async with asyncio.timeout(5):
                value = await asyncio.wait_for(self.ctx.ask("doubler", 4), 5)
            event = asyncio.Event()
            asyncio.get_running_loop().call_soon(event.set)
            await event.wait()
            log.append(("value", value, asyncio.current_task() is not None))

    with Engine(backend=backend) as engine:
        engine.spawn_actor(Doubler, id="doubler")
        engine.spawn_actor(AsyncioUser, id="user")
        engine.send("user", "go")
        engine.run()

    assert log == [("doubler", 4), ("value", 8, True)]


def test_awaiting_an_asyncio_object_on_the_selectors_backend_fails_with_advice():
    class AsyncioUser:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            loop = asyncio.new_event_loop()
            try:
                await loop.create_future()
            finally:
                loop.close()

    with Engine(backend="selectors") as engine:
        engine.spawn_actor(AsyncioUser, id="user")
        future = engine.ask("user", "go")
        engine.run()

    with pytest.raises(TypeError, match=r"^an async receive on the selectors backend can "
                                        r"await ctx.ask\(\), ctx.run_in_thread\(\) and "
                                        r"ctx.sleep\(\); to await asyncio objects"):
        future.result()


class AsyncioCalls:
    """Calls asyncio functions that need a running asyncio loop."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def receive(self, envelope):
        if envelope.message == "after an await":
            await self.ctx.sleep(0)
            await asyncio.sleep(0.001)
        elif envelope.message == "sleep":
            await asyncio.sleep(0.001)      # (sleep(0) is a bare yield: no loop needed)
        elif envelope.message == "event":
            await asyncio.Event().wait()
        elif envelope.message == "own":
            raise RuntimeError("the handler's own")
        elif envelope.message == "lock":
            asyncio.Lock().release()            # asyncio's own complaint: not acquired
        envelope.reply("done")


def _asked_on_selectors(call):
    """The future of asking an AsyncioCalls actor ``call`` on the selectors backend."""
    with Engine(backend="selectors") as engine:
        engine.spawn_actor(AsyncioCalls, id="user")
        future = engine.ask("user", call)
        engine.run()
    return future


@pytest.mark.parametrize("call", ["sleep", "event", "after an await"])
def test_asyncio_functions_on_the_selectors_backend_fail_with_advice(call):
    future = _asked_on_selectors(call)

    with pytest.raises(TypeError, match=r"^an async receive on the selectors backend has no "
                                        r"asyncio loop, and asyncio failed for want of one "
                                        r"\((RuntimeError|AttributeError)\(.*\)\); it can "
                                        r"await ctx.ask\(\), .* make the engine with "
                                        r"Engine\(backend='asyncio'\)") as raised:
        future.result()
    assert isinstance(raised.value.__cause__, (RuntimeError, AttributeError))


def test_a_handlers_own_runtime_error_on_the_selectors_backend_is_left_as_it_is():
    future = _asked_on_selectors("own")

    with pytest.raises(RuntimeError, match=r"^the handler's own$"):
        future.result()


def test_asyncios_own_complaints_on_the_selectors_backend_are_left_as_they_are():
    future = _asked_on_selectors("lock")

    with pytest.raises(RuntimeError, match=r"^Lock is not acquired"):
        future.result()


def test_asyncio_functions_work_in_an_async_receive_on_asyncio_loops(backend):
    if backend == "selectors":
        pytest.skip("no asyncio loop on the selectors backend (the test above)")
    with Engine(backend=backend) as engine:
        engine.spawn_actor(AsyncioCalls, id="user")
        futures = [engine.ask("user", call) for call in ("sleep", "after an await")]
        engine.run()

    assert [f.result() for f in futures] == ["done", "done"]


def test_an_async_actor_and_a_plain_one_exchange_messages(engine):
    class Pinger:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            if envelope.message < 10:
                await self.ctx.sleep(0)
                self.ctx.send("ponger", envelope.message + 1)

    class Ponger:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            log.append(envelope.message)
            self.ctx.send("pinger", envelope.message + 1)

    engine.spawn_actor(Pinger, id="pinger")
    engine.spawn_actor(Ponger, id="ponger")

    engine.send("pinger", 0)
    engine.run()

    assert log == [1, 3, 5, 7, 9]


def test_publications_and_monitor_notices_reach_an_async_receive(engine):
    class Watcher:
        def __init__(self, ctx):
            self.ctx = ctx
            self.got = []

        async def receive(self, envelope):
            await self.ctx.sleep(0)
            self.got.append((envelope.message_type.name, envelope.message))

    pub = engine.spawn_actor(Recorder, id="pub")
    watcher = engine.spawn_actor(Watcher, id="watcher")
    watcher.ctx.subscribe_to_actor("pub")
    watcher.ctx.monitor("pub")

    pub.ctx.publish("news")
    engine.run()
    engine.poison_pill("pub")
    engine.run()

    assert watcher.got[0] == ("PUBLISH", "news")
    assert watcher.got[1][0] == "TERMINATED"


def test_an_ask_awaited_by_a_cancelled_coroutine_no_longer_counts_as_work(engine):
    # The ask has no timeout and nobody answers it: if cancelling the
    # coroutine did not end the ask too, run() would never return.
    class Child:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            self.ctx.send("parent", "stop now")
            await self.ctx.ask("silent", "never answered", timeout=None)

    engine.spawn_actor(Recorder, id="silent")
    engine.spawn_actor(parent_of(Child, "child", stops_on_a_message=True), id="parent")

    engine.send("child", "work")
    engine.run()

    assert engine.actor_ids == ["silent"]


def test_an_async_receive_inherited_from_a_base_class_is_driven_too(engine):
    class Base:
        def __init__(self, ctx):
            self.ctx = ctx
            self.seen = []

        async def receive(self, envelope):
            await self.ctx.sleep(0)
            self.seen.append(envelope.message)

    class Derived(Base):
        pass

    derived = engine.spawn_actor(Derived, id="derived")

    engine.send("derived", "x")
    engine.run()

    assert derived.seen == ["x"]


@pytest.mark.parametrize("seconds, error, says", [
    (-1, ValueError, "a finite number of seconds, zero or more, not -1"),
    (float("nan"), ValueError, "a finite number of seconds, zero or more, not nan"),
    (float("inf"), ValueError, "a finite number of seconds, zero or more, not inf"),
    ("1", TypeError, "a number of seconds, such as ctx.sleep(0.5), not '1'"),
    (None, TypeError, "a number of seconds, such as ctx.sleep(0.5), not None"),
])
def test_sleep_needs_a_finite_number_of_seconds(engine, seconds, error, says):
    recorder = engine.spawn_actor(Recorder, id="r")

    with pytest.raises(error, match="^" + re.escape(f"sleep() needs {says}") + "$"):
        recorder.ctx.sleep(seconds)


def test_an_ask_can_be_awaited_in_a_coroutine_of_the_program_on_the_engines_loop():
    async def main():
        engine = Engine(backend="asyncio")      # shares the running loop
        engine.spawn_actor(Doubler, id="doubler")
        actors = asyncio.create_task(engine.run_async())
        value = await engine.ask("doubler", 21)
        engine.stop()
        await actors
        engine.close()
        return value

    assert asyncio.run(main()) == 42


def test_a_sibling_restarted_while_its_coroutine_waits_goes_on_with_its_next_messages(engine):
    # AllForOne: "failing" fails after an await while "waiting" waits for the
    # gate; the restart cancels the waiting coroutine, and the new instance
    # must then take its inbox on (it must not stay parked).
    from backstage import AllForOne

    class Failing:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            await self.ctx.sleep(0)
            raise ValueError("fails after an await")

    class Waiting:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            if envelope.message == "wait":
                self.ctx.send("failing", "go")
                await self.ctx.ask("silent", "never answered", timeout=None)
            log.append(envelope.message)

    class Parent:
        supervisor = AllForOne()

        def __init__(self, ctx):
            self.ctx = ctx
            ctx.spawn_child_actor(Failing, id="failing")
            ctx.spawn_child_actor(Waiting, id="waiting")

        def receive(self, envelope):
            pass

    engine.spawn_actor(Recorder, id="silent")
    engine.spawn_actor(Parent, id="parent")

    engine.send("waiting", "wait")
    engine.send("waiting", "after the restart")
    engine.run()

    assert log == ["after the restart"]
    reasons = {d.envelope.message: d.reason for d in engine.dead_letters}
    assert reasons["wait"] == "actor stopped while handling it (it restarted)"
    assert engine.restart_count == 2


def test_the_typed_async_program_runs():
    # tests/typing/coroutine_program.py: `make lint` type-checks it strictly.
    from conftest import ROOT

    out = subprocess.run([sys.executable, str(ROOT / "tests/typing/coroutine_program.py")],
                         capture_output=True, text=True, timeout=120)

    assert out.returncode == 0, out.stderr
    assert out.stdout == "42 hashed\n"


def test_with_raise_failures_a_coroutine_failing_after_an_await_raises_out_of_run(backend):
    class Failer:
        def __init__(self, ctx):
            self.ctx = ctx

        async def receive(self, envelope):
            await self.ctx.sleep(0)
            raise KeyError("failed after an await")

    with Engine(backend=backend, raise_failures=True) as engine:
        engine.spawn_actor(Failer, id="failer")
        engine.send("failer", "go")

        with pytest.raises(KeyError, match="failed after an await"):
            engine.run()


class InboxWatcher:
    """An async receive that notes the length of its own inbox list each time."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.lengths = []

    async def receive(self, envelope):
        self.lengths.append(len(self.ctx._inbox))


def test_a_long_inbox_handled_one_coroutine_at_a_time_does_not_grow_as_turns_pause(engine):
    # Each message of an async receive may end its turn early; the rest of the
    # batch goes back in front of the inbox.  Put back by insertion, the list
    # grew by a batch per message (and each insertion moved the whole inbox).
    n = 3 * backstage.ACTOR_BATCH * 10
    watcher = engine.spawn_actor(InboxWatcher, "watcher")
    for i in range(n):
        engine.send("watcher", i)
    engine.run()

    assert len(watcher.lengths) == n
    assert max(watcher.lengths) <= n
