"""Shared fixtures: every behaviour test runs on every loop backend."""

import signal
import sys
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


def parent_of(child_class, child_id, supervisor=None):
    """A parent actor class that spawns one child of ``child_class`` at start."""

    class Parent:
        def __init__(self, ctx):
            self.ctx = ctx
            ctx.spawn_child_actor(child_class, id=child_id)

        def receive(self, envelope):
            pass

    if supervisor is not None:
        Parent.supervisor = supervisor
    return Parent
