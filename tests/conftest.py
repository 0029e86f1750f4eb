"""Shared fixtures: every behaviour test runs on every loop backend."""

import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import backstage  # noqa: E402


def _backend_params():
    """One pytest parameter per backend in backstage.BACKENDS, skipped with the
    reason where it cannot make a loop here (not in this tree, or what it
    needs, such as uvloop, is not installed)."""
    params = []
    for name in backstage.BACKENDS:
        marks = []
        try:
            backstage.make_loop(name).close()
        except ImportError as exc:
            marks.append(pytest.mark.skip(reason=f"backend {name!r} cannot load here: {exc}"))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def default_sigint() -> None:
    """``preexec_fn`` for a child the test will SIGINT: SIGINT at its default, as
    when started from a terminal.  A background job of a shell without job
    control (``make test &``, some CI runners) starts with SIGINT ignored; its
    children inherit that, Python then leaves it ignored, and the SIGINT the
    test sends does nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler in place for the test (see default_sigint)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session", params=_backend_params())
def backend(request):
    """The name of a loop backend; each behaviour test runs once per backend."""
    return request.param


@pytest.fixture
def engine(backend):
    """A fresh engine on the backend under test, closed afterwards."""
    eng = backstage.Engine(backend=backend)
    yield eng
    eng.close()


class Recorder:
    """An actor that keeps every envelope it receives."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.envelopes = []

    def receive(self, envelope):
        self.envelopes.append(envelope)

    @property
    def messages(self):
        return [e.message for e in self.envelopes]


def parent_of(child_class, child_id, supervisor=None, stops_on_a_message=False):
    """A parent actor class that spawns one child of ``child_class`` at start;
    with ``stops_on_a_message``, it shuts down (and its child with it) on any
    message it gets."""

    class Parent:
        def __init__(self, ctx):
            self.ctx = ctx
            ctx.spawn_child_actor(child_class, id=child_id)

        def receive(self, envelope):
            if stops_on_a_message:
                self.ctx.shutdown()

    if supervisor is not None:
        Parent.supervisor = supervisor
    return Parent


def raised_in_receive(engine, call):
    """What ``call(ctx)`` raises when an actor makes it inside its ``receive`` (some
    calls may only be made there), or None; the engine runs until it is idle."""
    raised = []

    class Caller:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            try:
                call(self.ctx)
            except Exception as exc:        # handed back to the test
                raised.append(exc)

    engine.spawn_actor(Caller, id="caller")
    engine.send("caller", "go")
    engine.run()
    return raised[0] if raised else None


DEADLINE = 30.0     # seconds; generous for a loaded machine, never reached when all is well


def wait_for(predicate, what, timeout=DEADLINE):
    """Polls ``predicate()`` until it is true; AssertionError naming ``what`` if it
    is still false after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Running:
    """The engine runs on a thread (run_forever) inside the block; closed after it."""

    def __init__(self, engine):
        self.engine = engine

    def __enter__(self):
        self.thread = threading.Thread(target=self.engine.run_forever, daemon=True)
        self.thread.start()
        return self.engine

    def __exit__(self, *exc):
        self.engine.close()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive()


@contextlib.contextmanager
def flooding(engine, threads=4):
    """While inside: ``threads`` threads keep sending to a Recorder "sink" on the
    running ``engine``, so that its cross-thread queue stays full."""
    engine.spawn_actor(Recorder, "sink")
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            try:
                engine.send("sink", 1, timeout=0.2)
            except backstage.InboxFull:
                pass

    floods = [threading.Thread(target=flood, daemon=True) for _ in range(threads)]
    for thread in floods:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in floods:
            thread.join(5)


def send_until_in(engine, target_id, message, tries=1000):
    """Send from this thread until the message goes in (InboxFull: wait a ms, again)."""
    for _ in range(tries):
        try:
            engine.send(target_id, message, timeout=1)
            return
        except backstage.InboxFull:
            time.sleep(0.001)
    raise AssertionError(f"{message!r} never went into the queue for {target_id!r}")
