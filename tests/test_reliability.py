"""Promises at the edges (issue 11): floods, long timers, asks, fan-out, deep trees.

One test per defect of the issue, each on every backend.  A test that finds a
hang fails within its own guard (a thread joined with a timeout), never by
hanging the suite; the engine fixture's close() then ends the stuck run.
"""

import gc
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import Recorder

import backstage
from backstage import Engine, EngineClosed, InboxFull, Terminated

TESTS = Path(__file__).resolve().parent
GUARD = 10      # seconds; generous, only ever reached when something hangs


def run_in_thread(engine, forever=False):
    """Run the engine in a daemon thread; the caller joins it with a timeout."""
    runner = threading.Thread(target=engine.run_forever if forever else engine.run,
                              daemon=True)
    runner.start()
    return runner


def returns(runner, timeout=GUARD):
    runner.join(timeout)
    return not runner.is_alive()


class Ticker:
    """Counts the ticks of its recurring timer; sets ``ticked`` after ``enough``."""
    interval = 0.005
    enough = 5

    def __init__(self, ctx):
        self.ctx = ctx
        self.ticks = 0
        self.ticked = threading.Event()
        self.timer = ctx.run_recurring(self.interval, self.tick)

    def tick(self):
        self.ticks += 1
        if self.ticks >= self.enough:
            self.ticked.set()

    def receive(self, envelope):
        pass


class Gate:
    """Blocks the engine thread in receive until ``opened`` is set (or GUARD passes)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.entered = threading.Event()
        self.opened = threading.Event()

    def receive(self, envelope):
        self.entered.set()
        self.opened.wait(GUARD)


class Flood:
    """``threads`` threads sending to ``target`` until ``stop()``; ``sent`` counts."""

    def __init__(self, engine, target, threads=8, **send_kwargs):
        self.sent = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(engine, target, send_kwargs),
                                          daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _send(self, engine, target, send_kwargs):
        n = 0
        while not self._stop.is_set():
            try:
                engine.send(target, n, **send_kwargs)
            except (EngineClosed, InboxFull):
                pass
            n += 1
            self.sent += 1

    def wait_sent(self, count):
        return wait_until(lambda: self.sent >= count)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(GUARD)


def close_in_thread(engine, timeout=GUARD):
    """close() with a guard: a close stuck behind a defect must not hang the suite."""
    closer = threading.Thread(target=engine.close, daemon=True)
    closer.start()
    return returns(closer, timeout)


def wait_until(predicate, timeout=GUARD):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- 1. cross-thread floods ----------------------------------------------------------


def in_subprocess(scenario, backend, timeout=150):
    """``scenario(backend)``'s dict, computed in a Python process of its own.

    For floods: a flood that a defect lets run away burns the CPU and memory
    of whatever process runs it, so it runs in one that is killed after
    ``timeout`` seconds (then None), and the rest of the suite never sees it.
    """
    code = (f"import json, sys; sys.path[:0] = [{str(TESTS)!r}, {str(TESTS.parent)!r}]; "
            f"import test_reliability as t; print(json.dumps(t.{scenario.__name__}({backend!r})))")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def flood_with_a_timer(backend):
    """Eight threads flood the engine; does its timer go on ticking, does stop() return?"""
    engine = Engine(backend=backend)
    engine.spawn_actor(Recorder, id="sink")
    ticker = engine.spawn_actor(Ticker, "ticker")
    runner = run_in_thread(engine, forever=True)
    flood = Flood(engine, "sink", threads=8)
    flood.wait_sent(100_000)
    before = ticker.ticks
    ticked = wait_until(lambda: ticker.ticks >= before + 5, 30)
    engine.stop()
    stopped = returns(runner, 30)
    closed = close_in_thread(engine, 30)    # senders waiting for room get EngineClosed
    flood.stop()
    return {"ticked": ticked, "stopped": stopped, "closed": closed}


@pytest.mark.timeout(240)
def test_timers_keep_firing_and_stop_returns_while_eight_threads_flood_the_engine(backend):
    result = in_subprocess(flood_with_a_timer, backend)

    assert result == {"ticked": True, "stopped": True, "closed": True}


@pytest.mark.timeout(60)
def test_a_foreign_sender_gets_inbox_full_when_the_cross_thread_queue_is_full(backend):
    engine = Engine(backend=backend, inbound_capacity=100, inbound_overflow="fail")
    try:
        gate = engine.spawn_actor(Gate, "gate")
        sink = engine.spawn_actor(Recorder, "sink")
        engine.send("gate", "block the engine thread")
        runner = run_in_thread(engine, forever=True)
        assert gate.entered.wait(GUARD)
        accepted = 0
        result = {}

        def send_until_refused():
            nonlocal accepted
            try:
                for n in range(10_000):
                    engine.send("sink", n)
                    accepted += 1
            except InboxFull as exc:
                result["refused"] = exc

        sender = threading.Thread(target=send_until_refused, daemon=True)
        sender.start()
        sender.join(GUARD)
        gate.opened.set()
        wait_until(lambda: len(sink.messages) >= accepted)
        engine.stop()
        assert returns(runner)
    finally:
        gate.opened.set()
        engine.close()

    assert accepted == 100
    assert str(result["refused"]).startswith("the engine's cross-thread queue is full")
    assert sink.messages == list(range(100))


@pytest.mark.timeout(60)
def test_a_foreign_sender_blocks_while_the_cross_thread_queue_is_full(backend):
    engine = Engine(backend=backend, inbound_capacity=10)
    try:
        gate = engine.spawn_actor(Gate, "gate")
        sink = engine.spawn_actor(Recorder, "sink")
        engine.send("gate", "block the engine thread")
        runner = run_in_thread(engine, forever=True)
        assert gate.entered.wait(GUARD)
        done = threading.Event()

        def send_twenty():
            for n in range(20):
                engine.send("sink", n)
            done.set()

        sender = threading.Thread(target=send_twenty, daemon=True)
        sender.start()
        blocked = not done.wait(0.5)
        refused = None
        try:
            engine.send("sink", "late", timeout=0.05)
        except InboxFull as exc:
            refused = exc
        gate.opened.set()
        finished = done.wait(GUARD)
        wait_until(lambda: len(sink.messages) >= 20)
        engine.stop()
        assert returns(runner)
    finally:
        gate.opened.set()
        engine.close()

    assert blocked, "twenty sends went into a cross-thread queue of ten"
    assert isinstance(refused, InboxFull)
    assert finished
    assert [m for m in sink.messages if m != "late"] == list(range(20))


class Echo:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        envelope.reply(envelope.message)


def flood_with_asks(backend):
    """Eight threads flood the engine with asks; does close() return?"""
    engine = Engine(backend=backend)
    engine.spawn_actor(Echo, "echo")
    runner = run_in_thread(engine, forever=True)
    stop = threading.Event()
    asked = [0]

    def asker():
        while not stop.is_set():
            try:
                engine.ask("echo", 1, timeout=None)
            except EngineClosed:
                return
            asked[0] += 1

    askers = [threading.Thread(target=asker, daemon=True) for _ in range(8)]
    for a in askers:
        a.start()
    wait_until(lambda: asked[0] >= 100_000)
    closed = close_in_thread(engine, 30)
    stop.set()
    return {"closed": closed, "run returned": returns(runner, 30)}


@pytest.mark.timeout(240)
def test_close_returns_while_eight_threads_flood_the_engine_with_asks(backend):
    result = in_subprocess(flood_with_asks, backend)

    assert result == {"closed": True, "run returned": True}


# -- 2. long timers -----------------------------------------------------------------


class LongTimer:
    def __init__(self, ctx):
        self.ctx = ctx
        ctx.send_after(30 * 24 * 3600, ctx.actor_id, "a month later")

    def receive(self, envelope):
        pass


@pytest.mark.timeout(60)
def test_a_timer_thirty_days_away_leaves_the_loop_working(engine):
    engine.spawn_actor(LongTimer, "later")
    sink = engine.spawn_actor(Recorder, "sink")
    runner = run_in_thread(engine, forever=True)
    engine.send("sink", "now")
    wait_until(lambda: sink.messages)
    engine.stop()
    returned = returns(runner)

    assert sink.messages == ["now"]
    assert returned


@pytest.mark.parametrize("delay", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_delay_is_refused_at_the_call(engine, delay):
    actor = engine.spawn_actor(Recorder, "a")

    with pytest.raises(ValueError, match=r"^send_after\(\) needs a finite delay_s"):
        actor.ctx.send_after(delay, "a", "never")


# -- 3. every ask ends --------------------------------------------------------------


class QuitsWithoutReplying:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        self.ctx.shutdown()


class KeepsQuiet:
    """Handles every message and never replies, nor keeps the envelope."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.count = 0

    def receive(self, envelope):
        self.count += 1


@pytest.mark.timeout(60)
def test_an_ask_fails_when_its_target_stops_without_replying(engine):
    engine.spawn_actor(QuitsWithoutReplying, "quitter")
    future = engine.ask("quitter", "question", timeout=None)

    assert returns(run_in_thread(engine)), "run() waited for an ask nobody can answer"
    assert future.done()
    with pytest.raises(backstage.BackstageError,
                       match=r"^'quitter' handled the ask without replying"):
        future.result(0)


@pytest.mark.timeout(60)
def test_an_ask_whose_envelope_is_dropped_unanswered_fails_and_run_returns(engine):
    quiet = engine.spawn_actor(KeepsQuiet, "quiet")
    future = engine.ask("quiet", "question", timeout=None)

    assert returns(run_in_thread(engine)), "run() waited for an ask that was dropped"
    assert quiet.count == 1
    with pytest.raises(backstage.BackstageError,
                       match=r"^'quiet' handled the ask without replying"):
        future.result(0)


@pytest.mark.timeout(60)
def test_a_cancelled_ask_no_longer_counts_as_work(engine):
    gate = engine.spawn_actor(Gate, "gate")
    gate.opened.set()
    future = engine.ask("gate", "question", timeout=None)
    engine.send("gate", "something else")

    assert future.cancel()
    assert returns(run_in_thread(engine)), "run() waited for a cancelled ask"


class Account(Echo):
    """An Echo with a method to call through a proxy."""
    balance = 0

    def deposit(self, amount):
        self.balance += amount
        return self.balance


@pytest.mark.timeout(60)
def test_a_cancelled_proxy_call_no_longer_counts_as_work(engine):
    engine.spawn_actor(Account, "account")
    future = engine.proxy("account", Account).deposit(5)

    assert future.cancel()
    assert returns(run_in_thread(engine)), "run() waited for a cancelled proxy call"
    assert [d.reason for d in engine.dead_letters] == [
        "reply came after the ask was answered or timed out"]


@pytest.mark.timeout(60)
def test_an_ask_cancelled_on_another_thread_before_the_engine_took_it_no_longer_counts_as_work(
        engine):
    engine.spawn_actor(Account, "account")

    def ask_and_cancel():
        # More than one drain's worth queued ahead: the engine takes the ask in a
        # later drain than the one that releases the cancelled ask.
        for i in range(3 * backstage.INBOUND_BUDGET):
            engine.send("account", i)
        assert engine.ask("account", "question", timeout=None).cancel()

    other = threading.Thread(target=ask_and_cancel)
    other.start()
    other.join(GUARD)

    assert returns(run_in_thread(engine)), "run() waited for a cancelled ask"


# -- 4. fan-out to a full inbox -------------------------------------------------------


class Publisher:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        self.ctx.publish(envelope.message)


class Subscriber(Recorder):
    def __init__(self, ctx):
        super().__init__(ctx)
        ctx.subscribe_to_actor("pub")


def test_a_full_subscriber_gets_a_dead_letter_and_the_others_still_get_the_publication(engine):
    engine.spawn_actor(Publisher, "pub")
    engine.spawn_actor(Subscriber, "full", capacity=1, overflow="fail")
    later = engine.spawn_actor(Subscriber, "later")
    engine.send("full", "fills its inbox")

    engine.get_actor("pub").ctx.publish("news")
    engine.run()

    assert later.messages == ["news"]
    assert [(d.target_id, d.envelope.message) for d in engine.dead_letters] == [("full", "news")]


class Watcher(Recorder):
    def __init__(self, ctx):
        super().__init__(ctx)
        ctx.monitor("target")


def test_a_full_watcher_gets_a_dead_letter_and_the_others_still_hear_of_the_stop(engine):
    engine.spawn_actor(Recorder, "target")
    engine.spawn_actor(Watcher, "full", capacity=1, overflow="fail")
    later = engine.spawn_actor(Watcher, "later")
    engine.poison_pill("target")            # the target's turn comes first ...
    engine.send("full", "fills its inbox")  # ... while this inbox is full

    engine.run()

    assert later.messages == [Terminated("target", "stopped by poison pill")]
    assert "target" not in engine.actor_ids
    assert [(d.target_id, d.envelope.message) for d in engine.dead_letters] == \
        [("full", Terminated("target", "stopped by poison pill"))]


# -- 5. a message whose repr raises, or is huge ----------------------------------------


class Unprintable:
    reprs = 0

    def __repr__(self):
        type(self).reprs += 1
        raise RuntimeError("no repr for you")


class FailsOnUnprintable(Recorder):
    def receive(self, envelope):
        if isinstance(envelope.message, Unprintable):
            raise ValueError("cannot handle this")
        super().receive(envelope)


@pytest.mark.timeout(60)
def test_a_failing_message_whose_repr_raises_does_not_wedge_its_actor(engine):
    actor = engine.spawn_actor(FailsOnUnprintable, "a")
    for message in (1, Unprintable(), 2, 3):
        engine.send("a", message)

    runner = run_in_thread(engine)
    assert returns(runner)
    engine.send("a", 4)
    assert returns(run_in_thread(engine))
    assert actor.messages == [1, 2, 3, 4]


def test_the_failure_path_formats_nothing_when_logging_is_off(engine):
    engine.spawn_actor(FailsOnUnprintable, "a")
    logger = logging.getLogger("backstage")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    Unprintable.reprs = 0
    try:
        engine.send("a", Unprintable())
        engine.run()
    finally:
        logger.setLevel(level)

    assert Unprintable.reprs == 0


class FailsOnEverything:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        raise ValueError("no")


def test_a_failure_on_a_huge_message_logs_a_capped_line(engine, caplog):
    engine.spawn_actor(FailsOnEverything, "a")

    engine.send("a", "x" * 10_000_000)
    with caplog.at_level(logging.ERROR, logger="backstage"):
        engine.run()

    assert caplog.records
    assert all(len(r.getMessage()) < 2_000 for r in caplog.records)


# -- 6. deep trees and many children ----------------------------------------------


class Node:
    deinits = 0

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        pass

    def deinit(self):
        type(self).deinits += 1


def chain(engine, depth):
    ctx = engine.spawn_actor(Node, "n0").ctx
    for i in range(1, depth):
        ctx = ctx.spawn_child_actor(Node, f"n{i}").ctx


def test_stopping_a_chain_three_thousand_deep_runs_every_deinit(engine):
    chain(engine, 3000)
    Node.deinits = 0

    engine.poison_pill("n0")
    engine.run()

    assert Node.deinits == 3000
    assert engine.actor_ids == []


def test_closing_an_engine_with_a_chain_three_thousand_deep_runs_every_deinit(backend):
    engine = Engine(backend=backend)
    chain(engine, 3000)
    Node.deinits = 0

    engine.close()

    assert Node.deinits == 3000


# -- 7. spawns racing close() ---------------------------------------------------------


class Counted:
    inits = 0
    deinits = 0
    lock = threading.Lock()

    def __init__(self, ctx):
        with self.lock:
            type(self).inits += 1

    def receive(self, envelope):
        pass

    def deinit(self):
        with self.lock:
            type(self).deinits += 1


@pytest.mark.timeout(120)
def test_actors_spawned_from_another_thread_while_the_engine_closes_are_all_deinited(backend):
    trials = 100
    leaks = 0
    for _ in range(trials):
        Counted.inits = Counted.deinits = 0
        engine = Engine(backend=backend)
        runner = run_in_thread(engine, forever=True)
        started = threading.Event()

        def spawner(engine=engine, started=started):
            n = 0
            while True:
                try:
                    engine.spawn_actor(Counted, f"c{n}")
                except EngineClosed:
                    return
                n += 1
                started.set()

        thread = threading.Thread(target=spawner, daemon=True)
        thread.start()
        started.wait(GUARD)
        engine.close()
        thread.join(GUARD)
        runner.join(GUARD)
        if Counted.inits != Counted.deinits or engine.actor_ids:
            leaks += 1

    assert leaks == 0, f"{leaks} of {trials} closes left actors not deinit'ed"


# -- 8. watches ------------------------------------------------------------------------


class WatchesBadFd:
    def __init__(self, ctx):
        self.ctx = ctx
        self.error = None

    def receive(self, envelope):
        try:
            self.ctx.watch_readable(envelope.message, lambda: None)
        except Exception as exc:        # noqa: BLE001 - what it raised is checked below
            self.error = exc


@pytest.mark.timeout(60)
def test_a_watch_that_fails_to_register_does_not_count_as_work(engine):
    actor = engine.spawn_actor(WatchesBadFd, "w")
    engine.send("w", 99999)

    assert returns(run_in_thread(engine)), "run() counted a watch that never registered"
    assert isinstance(actor.error, ValueError)


class WatchesReused:
    """Watches one socket, closes it without unwatch, then watches a new one
    that the kernel gives the same fd number."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.fired = threading.Event()
        self.same_number = None
        self.sockets = []

    def receive(self, envelope):
        old_r, old_w = socket.socketpair()
        self.ctx.watch_readable(old_r, lambda: None)
        number = old_r.fileno()
        old_r.close()                   # closed without unwatch: the stale registration
        old_w.close()
        new_r, new_w = socket.socketpair()
        if new_r.fileno() != number:
            new_r, new_w = new_w, new_r
        self.same_number = new_r.fileno() == number
        self.sockets = [new_r, new_w]
        self.ctx.watch_readable(new_r, self.on_readable)
        new_w.send(b"x")

    def on_readable(self):
        self.fired.set()
        self.ctx.unwatch(self.sockets[0])
        for s in self.sockets:
            s.close()


@pytest.mark.timeout(60)
def test_a_socket_given_the_fd_number_of_a_closed_watched_one_is_watched_for_real(engine):
    actor = engine.spawn_actor(WatchesReused, "w")
    engine.send("w", "go")
    runner = run_in_thread(engine, forever=True)
    fired = actor.fired.wait(GUARD / 4)
    engine.stop()
    runner.join(GUARD)

    if not actor.same_number:
        pytest.skip("this loop keeps a closed watched socket's fd number from reuse")
    assert fired, "the new socket's readiness never reached the callback"


# -- 9. leaks ------------------------------------------------------------------------


class ShortLivedWatcher:
    def __init__(self, ctx):
        self.ctx = ctx
        ctx.monitor("long")
        ctx.shutdown()

    def receive(self, envelope):
        pass


def contexts_alive():
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is backstage.Context)


def test_short_lived_actors_that_monitor_a_long_lived_one_leave_nothing_behind(engine):
    engine.spawn_actor(Recorder, "long")
    before = contexts_alive()

    for n in range(1000):
        engine.spawn_actor(ShortLivedWatcher, f"short{n}")
        engine.run()

    assert contexts_alive() - before < 10


# -- 15. SystemExit in a deinit during close -----------------------------------------------


class ExitsInDeinit:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        pass

    def deinit(self):
        raise SystemExit(3)


class ParentOfExiter(Recorder):
    deinit_ran = False

    def __init__(self, ctx):
        super().__init__(ctx)
        ctx.spawn_child_actor(ExitsInDeinit, "child")

    def deinit(self):
        type(self).deinit_ran = True


def test_system_exit_in_a_deinit_during_close_finishes_the_close_then_propagates(backend):
    engine = Engine(backend=backend)
    engine.spawn_actor(ParentOfExiter, "parent")
    engine.spawn_actor(Recorder, "other")
    engine.send("other", "queued")
    ParentOfExiter.deinit_ran = False

    with pytest.raises(SystemExit):
        engine.close()

    assert ParentOfExiter.deinit_ran
    assert engine.actor_ids == []
    assert [d.envelope.message for d in engine.dead_letters] == ["queued"]
    with pytest.raises(EngineClosed):
        engine.run()


# -- 16. idleness reached while draining the cross-thread queue --------------------------


@pytest.mark.timeout(60)
def test_run_returns_when_the_last_work_ends_while_calls_from_other_threads_wait(engine):
    gate = engine.spawn_actor(Gate, "gate")
    engine.send("gate", "the last piece of work")
    runner = run_in_thread(engine)
    assert gate.entered.wait(GUARD)

    engine.send("nobody", 1)        # queued for the engine thread while it is busy
    engine.send("nobody", 2)
    gate.opened.set()

    assert returns(runner), "run() missed that it became idle during the cross-thread drain"
    assert engine.dead_letter_count == 2


# -- 13. the asyncio backend on the program's loop ---------------------------------------


def run_program(backend, main):
    import asyncio
    if backend == "uvloop":
        import uvloop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())


@pytest.fixture
def aio_backend(backend):
    if backend == "selectors":
        pytest.skip("the selectors backend has no asyncio loop to share")
    return backend


class FastTicker(Ticker):
    interval = 0.001
    enough = 3


@pytest.mark.timeout(60)
def test_cancelling_the_task_of_run_async_stops_the_engines_work_on_the_loop(aio_backend):
    import asyncio

    async def main():
        engine = Engine(backend=aio_backend)
        ticker = engine.spawn_actor(FastTicker, "ticker")
        sink = engine.spawn_actor(Recorder, "sink")
        task = asyncio.create_task(engine.run_async())
        while not ticker.ticked.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ticks = ticker.ticks
        engine.send("sink", "while nobody runs the engine")
        for _ in range(50):
            await asyncio.sleep(0.002)
        paused = (ticker.ticks - ticks, list(sink.messages))
        task = asyncio.create_task(engine.run_async())
        while not sink.messages:
            await asyncio.sleep(0.001)
        engine.close()
        await asyncio.wait_for(task, GUARD)
        return paused, sink.messages

    paused, delivered = run_program(aio_backend, main)

    assert paused == (0, [])
    assert delivered == ["while nobody runs the engine"]


def test_a_send_after_the_programs_loop_closed_raises_engine_closed(aio_backend):
    async def main():
        engine = Engine(backend=aio_backend)
        engine.spawn_actor(Recorder, "sink")
        return engine

    engine = run_program(aio_backend, main)

    with pytest.raises(EngineClosed, match=r"^the asyncio loop under this engine was closed"):
        engine.send("sink", "after the loop closed")


# -- 10. the inspector feed out of file descriptors ---------------------------------------

_LIMITED_FEED = """
import logging, resource, sys
sys.path.insert(0, {root!r})
from backstage import Engine
logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
engine = Engine(backend={backend!r}, inspector={path!r})
print("ready", flush=True)
engine.run_forever()
"""


@pytest.mark.timeout(120)
def test_the_inspector_feed_out_of_file_descriptors_pauses_accepting_and_resumes(
        backend, tmp_path):
    path = str(tmp_path / "feed.sock")
    script = _LIMITED_FEED.format(root=str(TESTS.parent), backend=backend, path=path)
    engine = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(engine.stderr), daemon=True)
    reader.start()
    clients = []
    try:
        assert engine.stdout.readline().strip() == "ready"
        for _ in range(60):             # more than the engine has descriptors for
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(path)
            clients.append(client)
        ran_out = wait_until(lambda: any("accept failed" in line for line in lines))
        time.sleep(1.0)                 # the window in which the old loop spun
        for client in clients:
            client.close()
        clients.clear()
        late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        late.settimeout(GUARD)
        late.connect(path)
        snapshot = late.makefile("rb").readline()     # accepted once fds are free again
        late.close()
    finally:
        for client in clients:
            client.close()
        engine.terminate()
        engine.wait(GUARD)
        reader.join(GUARD)

    failures = [line for line in lines if "accept failed" in line]
    assert ran_out, "the engine never ran out of file descriptors; nothing was tested"
    assert len(failures) <= 30, f"{len(failures)} 'accept failed' lines (it spun: thousands)"
    assert snapshot.startswith(b"{")
