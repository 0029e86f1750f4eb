"""run_forever() in the main thread ends cleanly on SIGINT and SIGTERM."""

import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, default_sigint

from backstage import Engine

TIMEOUT = 60   # seconds; generous, only ever reached when something hangs

# A program whose actors say when the run has begun and when deinit runs, and
# which reports the signal handlers it has once run_forever() has returned.
PROGRAM = textwrap.dedent("""
    import signal, sys, time
    sys.path.insert(0, {root!r})
    import backstage

    class Parent:
        def __init__(self, ctx):
            self.ctx = ctx
            ctx.spawn_child_actor(Child, id="child")
            ctx.send_after(0, ctx.actor_id, "started")
        def receive(self, envelope):
            print("running", flush=True)    # handlers are in place, the loop is idle
        def deinit(self):
            print("deinit parent", flush=True)
            if {hang_in_deinit!r}:
                time.sleep(60)

    class Child:
        def __init__(self, ctx):
            self.ctx = ctx
        def receive(self, envelope):
            pass
        def deinit(self):
            print("deinit child", flush=True)

    engine = backstage.Engine(backend={backend!r})
    engine.spawn_actor(Parent, id="parent")
    engine.run_forever()
    print("returned closed=%s" % engine.closed, flush=True)
    print("handlers restored=%s" % (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL), flush=True)
""")


def start_program(backend, hang_in_deinit=False):
    source = PROGRAM.format(root=str(ROOT), backend=backend, hang_in_deinit=hang_in_deinit)
    process = subprocess.Popen([sys.executable, "-c", source], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    line = process.stdout.readline()      # blocks until the run has begun (or the end)
    if line != "running\n":
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the program did not start: {line + out!r} {err!r}")
    return process


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_closes_the_engine_runs_deinit_and_exits_without_a_traceback(backend, signum):
    process = start_program(backend)

    process.send_signal(signum)
    out, err = process.communicate(timeout=TIMEOUT)

    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert out.splitlines() == ["deinit child", "deinit parent", "returned closed=True",
                                "handlers restored=True"]


def test_a_second_sigint_interrupts_a_deinit_that_hangs(backend):
    process = start_program(backend, hang_in_deinit=True)

    process.send_signal(signal.SIGINT)
    assert process.stdout.readline() == "deinit child\n"
    assert process.stdout.readline() == "deinit parent\n"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=TIMEOUT)

    assert process.returncode != 0
    assert "KeyboardInterrupt" in err
    assert "returned" not in out


class HandlerSpy:
    """Records the SIGINT handler in place while the engine runs, then stops it."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.during = None
        ctx.send_after(0, ctx.actor_id, "look")

    def receive(self, envelope):
        self.during = signal.getsignal(signal.SIGINT)
        self.ctx.engine.stop()


def test_run_forever_restores_the_handler_it_replaced(backend, python_sigint_handler):
    engine = Engine(backend=backend)
    spy = engine.spawn_actor(HandlerSpy, id="spy")
    before = signal.getsignal(signal.SIGINT)

    engine.run_forever()

    assert before in (signal.default_int_handler, signal.SIG_DFL)
    assert spy.during == engine._on_stop_signal
    assert signal.getsignal(signal.SIGINT) is before
    engine.close()


def test_run_forever_leaves_a_handler_the_program_set_alone(backend):
    def own_handler(signum, frame):
        pass

    engine = Engine(backend=backend)
    spy = engine.spawn_actor(HandlerSpy, id="spy")
    previous = signal.signal(signal.SIGINT, own_handler)
    try:
        engine.run_forever()
    finally:
        signal.signal(signal.SIGINT, previous)

    assert spy.during is own_handler
    engine.close()


def test_a_signal_handler_queued_on_a_closed_engine_is_harmless(backend):
    # A signal that lands after the run ended, before its handler is put back.
    engine = Engine(backend=backend)
    engine.close()

    engine._on_stop_signal(signal.SIGINT, None)

    assert engine.closed
