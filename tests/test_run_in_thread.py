"""Blocking work: ctx.run_in_thread on the engine's bounded worker pool."""

import threading

import pytest
from conftest import Recorder, Running, flooding, raised_in_receive, send_until_in

from backstage import AskFuture, Engine, EngineClosed


class Offloader:
    """Runs the function each message carries on the engine's pool, and reports back.

    A message is ``(fn, args, to)``: the result (or the exception) goes to
    actor ``to`` as ``("ok", value, thread_of_callback)`` or ``("failed", exc, ...)``.
    """

    def __init__(self, ctx):
        self.ctx = ctx
        self.futures = []

    def receive(self, envelope):
        fn, args, to = envelope.message
        future = self.ctx.run_in_thread(fn, *args)
        self.futures.append(future)

        def report(done):
            exc = done.exception()
            if exc is None:
                self.ctx.send(to, ("ok", done.result(), threading.get_ident()))
            else:
                self.ctx.send(to, ("failed", exc, threading.get_ident()))

        future.add_done_callback(report)


def test_run_in_thread_returns_a_future_of_the_function_result(engine):
    engine.spawn_actor(Offloader, id="off")
    rec = engine.spawn_actor(Recorder, id="rec")

    engine.send("off", (pow, (2, 10), "rec"))
    engine.run()

    [(outcome, value, _)] = rec.messages
    assert (outcome, value) == ("ok", 1024)
    assert isinstance(engine.get_actor("off").futures[0], AskFuture)


def test_the_function_runs_on_a_worker_thread_and_its_callbacks_on_the_engine_thread(engine):
    engine.spawn_actor(Offloader, id="off")
    rec = engine.spawn_actor(Recorder, id="rec")
    engine_thread = threading.get_ident()      # run() runs the engine on this thread

    engine.send("off", (threading.get_ident, (), "rec"))
    engine.run()

    [(outcome, worker_thread, callback_thread)] = rec.messages
    assert outcome == "ok"
    assert worker_thread != engine_thread
    assert callback_thread == engine_thread


def test_keyword_arguments_reach_the_function(engine):
    class Caller:
        def __init__(self, ctx):
            self.ctx = ctx
            self.future = None

        def receive(self, envelope):
            self.future = self.ctx.run_in_thread(int, "ff", base=16)

    caller = engine.spawn_actor(Caller, id="c")

    engine.send("c", "go")
    engine.run()

    assert caller.future.result() == 255


def test_an_exception_in_the_function_fails_the_future(engine):
    def explode():
        raise KeyError("no such page")

    engine.spawn_actor(Offloader, id="off")
    rec = engine.spawn_actor(Recorder, id="rec")

    engine.send("off", (explode, (), "rec"))
    engine.run()

    [(outcome, exc, _)] = rec.messages
    assert outcome == "failed"
    assert isinstance(exc, KeyError)


def test_run_counts_blocking_work_until_it_settles(engine):
    # Without the count, run() would return while the worker still sleeps,
    # and the result would never be delivered.
    release = threading.Event()

    def slow():
        release.wait(10)
        return "done"

    engine.spawn_actor(Offloader, id="off")
    rec = engine.spawn_actor(Recorder, id="rec")
    threading.Timer(0.05, release.set).start()

    engine.send("off", (slow, (), "rec"))
    engine.run()

    assert [m[:2] for m in rec.messages] == [("ok", "done")]


def test_blocking_work_does_not_stall_other_actors(engine):
    # The job blocks until another actor runs; if it blocked the engine
    # thread, that actor could never run and the wait would time out.
    released = threading.Event()

    class Releaser:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            released.set()

    engine.spawn_actor(Offloader, id="off")
    engine.spawn_actor(Releaser, id="releaser")
    rec = engine.spawn_actor(Recorder, id="rec")

    engine.send("off", (released.wait, (10,), "rec"))
    engine.send("releaser", "release")
    engine.run()

    assert [m[:2] for m in rec.messages] == [("ok", True)]


def test_the_pool_runs_as_many_jobs_at_once_as_its_size_and_no_more(backend):
    lock = threading.Lock()
    running = [0]
    peak = [0]
    both_in = threading.Barrier(2)

    def job():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            both_in.wait(10)       # two jobs must be in at once, or this breaks
        except threading.BrokenBarrierError:
            pass
        with lock:
            running[0] -= 1
        return True

    with Engine(backend=backend, thread_pool_size=2) as engine:
        engine.spawn_actor(Offloader, id="off")
        rec = engine.spawn_actor(Recorder, id="rec")
        for _ in range(6):
            engine.send("off", (job, (), "rec"))
        engine.run()

    assert [m[:2] for m in rec.messages] == [("ok", True)] * 6
    assert peak[0] == 2
    assert not both_in.broken


def test_a_job_still_running_when_the_engine_closes_fails_its_future(backend):
    started = threading.Event()
    release = threading.Event()

    def job():
        started.set()
        release.wait(10)

    class Starter:
        def __init__(self, ctx):
            self.ctx = ctx
            self.future = None

        def receive(self, envelope):
            self.future = self.ctx.run_in_thread(job)

    engine = Engine(backend=backend)
    starter = engine.spawn_actor(Starter, id="starter")
    engine.send("starter", "go")
    try:
        with Running(engine):
            assert started.wait(10)
    finally:
        release.set()

    with pytest.raises(EngineClosed, match=r"^the job did not finish before the engine closed"):
        starter.future.result(timeout=10)


def test_run_in_thread_needs_a_callable(engine):
    error = raised_in_receive(engine, lambda ctx: ctx.run_in_thread("not a function"))

    assert isinstance(error, TypeError)
    assert str(error).startswith("run_in_thread() needs a function to call")


@pytest.mark.parametrize("size", [0, -1, 2.5, True, "4"])
def test_the_thread_pool_size_must_be_a_positive_int(size):
    with pytest.raises((TypeError, ValueError), match=r"^thread_pool_size must be an int of at "
                                                      r"least 1"):
        Engine(thread_pool_size=size)


class _Sleeper:
    """On each message, 20 jobs of 10 ms; their futures in ``futures``."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.futures = []

    def receive(self, envelope):
        import time
        for _ in range(20):
            self.futures.append(self.ctx.run_in_thread(time.sleep, 0.01))


def test_jobs_end_while_other_threads_keep_the_queue_full_under_inbound_overflow_fail(
        backend):
    # A job's result comes back through the cross-thread queue; under "fail" a
    # full queue refused it, and the job's future never ended.
    engine = Engine(backend=backend, inbound_capacity=16, inbound_overflow="fail",
                    thread_pool_size=4)
    sleeper = engine.spawn_actor(_Sleeper, "w")
    runner = threading.Thread(target=engine.run_forever, daemon=True)
    runner.start()
    with flooding(engine):
        for i in range(5):
            send_until_in(engine, "w", i)
            threading.Event().wait(0.05)
        threading.Event().wait(0.3)
    for future in sleeper.futures:
        assert future.exception(timeout=5) is None
    engine.stop()
    runner.join(5)
    engine.close()
