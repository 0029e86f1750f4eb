"""End to end: the demo engine and inspector_curses.py in a real tmux session."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from conftest import ROOT, default_sigint

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

DEADLINE = 30.0


class Tmux:
    """A private tmux server (its own -L socket), one 120x40 session."""

    def __init__(self):
        self.base = ["tmux", "-L", f"backstage-test-{uuid.uuid4().hex[:8]}", "-f", "/dev/null"]

    def run(self, *args):
        return subprocess.run(self.base + list(args), capture_output=True, text=True,
                              timeout=DEADLINE, check=True).stdout

    def start(self, command):
        self.run("new-session", "-d", "-x", "120", "-y", "40", "-s", "e2e", command)

    def keys(self, *keys):
        self.run("send-keys", "-t", "e2e", *keys)

    def type(self, text):
        self.run("send-keys", "-t", "e2e", "-l", text)

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "e2e")

    def wait(self, predicate, what):
        deadline = time.monotonic() + DEADLINE
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.05)

    def kill(self):
        subprocess.run(self.base + ["kill-server"], capture_output=True, timeout=DEADLINE)


@pytest.fixture
def tmux():
    session = Tmux()
    yield session
    session.kill()


@pytest.fixture
def demo(backend):
    """The demo on the backend under test, with its socket in a short private dir."""
    directory = tempfile.mkdtemp(prefix="bst-", dir="/tmp")
    path = os.path.join(directory, "demo.sock")
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "demo.py"),
                             "--seconds", "300", "--no-split", "--socket", path,
                             "--backend", backend],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the demo did not open its socket"
        time.sleep(0.02)
    yield proc, path
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(directory, ignore_errors=True)


def table(screen):
    """The first word of each table row: from the fifth line, less the bottom line."""
    lines = [line for line in screen.splitlines()[4:] if line.strip()]
    return [line.split()[0] for line in lines[:-1]]


def test_the_inspector_shows_sorts_filters_stops_an_actor_and_quits(tmux, demo):
    proc, path = demo
    tmux.start(f"{sys.executable} {ROOT / 'inspector_curses.py'} {path}; "
               f"echo INSPECTOR-EXIT=$?; sleep 600")

    # The actor ids appear.
    screen = tmux.wait(lambda s: "pool/worker-1" in s and "session-3" in s, "the actor table")
    assert "demo  pid" in screen and "sort: msgs/s" in screen

    # s: sorted by id, audit comes first.
    tmux.keys("s")
    screen = tmux.wait(lambda s: "sort: id" in s, "the sort by id")
    assert table(screen)[0] == "audit"

    # /: the filter keeps the sessions only.
    tmux.keys("/")
    tmux.type("session")
    tmux.keys("Enter")
    screen = tmux.wait(lambda s: "filter: session" in s, "the filter")
    assert "pool/worker-1" not in screen
    assert set(table(screen)) == {f"session-{n}" for n in range(1, 9)}

    # k then y: session-3 gets a poison pill and leaves the table.
    tmux.keys("/")
    tmux.keys(*["BSpace"] * len("session"))
    tmux.type("session-3")
    tmux.keys("Enter")
    tmux.wait(lambda s: table(s) == ["session-3"], "session-3 alone")
    tmux.keys("k")
    tmux.wait(lambda s: "stop actor 'session-3' with a poison pill? (y/n)" in s, "the question")
    tmux.keys("y")
    screen = tmux.wait(lambda s: "no actor matches the filter" in s, "session-3 to stop")
    assert "poison pill sent to 'session-3'" in screen
    assert "actors 16" in screen

    # q: a clean exit, no traceback.
    tmux.keys("q")
    screen = tmux.wait(lambda s: "INSPECTOR-EXIT=" in s, "the inspector to exit")
    assert "INSPECTOR-EXIT=0" in screen
    assert "Traceback" not in screen
    assert proc.poll() is None, "the demo should still run"
