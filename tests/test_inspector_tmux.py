"""End to end: engines and inspector_curses.py in a real terminal (tmux).

Each test runs its own tmux server on a private socket (-S) in a temporary
directory, kills it and removes the directory: nothing is left behind.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import ROOT, default_sigint

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

DEADLINE = 30.0
SCENARIO = ROOT / "tests" / "inspector_scenario.py"
LONG_PREFIX = "ingest/partition-consumers/worker-"


class Tmux:
    """A private tmux server (its own -S socket in its own directory), one session."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="bstx-", dir="/tmp")
        self.socket = os.path.join(self.directory, "tmux.sock")
        self.base = ["tmux", "-S", self.socket, "-f", "/dev/null"]

    def run(self, *args):
        return subprocess.run(self.base + list(args), capture_output=True, text=True,
                              timeout=DEADLINE, check=True).stdout

    def start(self, command, width=120, height=40):
        self.run("new-session", "-d", "-x", str(width), "-y", str(height), "-s", "e2e", command)

    def inspect(self, path, width=120, height=40):
        """The inspector on ``path``; the pane stays open after it exits."""
        self.start(f"{sys.executable} {ROOT / 'inspector_curses.py'} {path}; "
                   f"echo INSPECTOR-EXIT=$?; sleep 600", width, height)

    def keys(self, *keys):
        self.run("send-keys", "-t", "e2e", *keys)

    def type(self, text):
        self.run("send-keys", "-t", "e2e", "-l", text)

    def resize(self, width, height):
        self.run("resize-window", "-t", "e2e", "-x", str(width), "-y", str(height))

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "e2e")

    def wait(self, predicate, what, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.05)

    def kill(self):
        subprocess.run(self.base + ["kill-server"], capture_output=True, timeout=DEADLINE)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def tmux():
    session = Tmux()
    yield session
    session.kill()


def test_the_tmux_server_leaves_nothing_behind():
    session = Tmux()
    session.start("sleep 600")
    session.kill()

    assert not os.path.exists(session.directory)
    assert subprocess.run(session.base + ["has-session"], capture_output=True,
                          timeout=DEADLINE).returncode != 0


def start_program(args, directory):
    """Start ``python ARGS`` ("{}" in ARGS: the socket ``directory/e.sock``); wait for it."""
    path = os.path.join(directory, "e.sock")
    # Its output goes to a file: a pipe nobody reads would fill and stall it.
    with open(os.path.join(directory, "output.txt"), "w") as output:
        proc = subprocess.Popen([sys.executable, *(str(a).replace("{}", path) for a in args)],
                                stdout=output, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=default_sigint)
    deadline = time.monotonic() + DEADLINE
    try:
        while not os.path.exists(path):
            assert proc.poll() is None, open(os.path.join(directory, "output.txt")).read()
            assert time.monotonic() < deadline, "the program did not open its socket"
            time.sleep(0.02)
    except BaseException:
        stop_program(proc, directory)
        raise
    return proc, path


def stop_program(proc, directory):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def scenario(backend):
    """scenario(name): an engine of tests/inspector_scenario.py on the backend under test."""
    started = []

    def start(name):
        directory = tempfile.mkdtemp(prefix="bst-", dir="/tmp")
        proc, path = start_program([SCENARIO, name, "--backend", backend, "{}"], directory)
        started.append((proc, directory))
        return path

    yield start
    for proc, directory in started:
        stop_program(proc, directory)


@pytest.fixture
def demo(backend):
    """The demo on the backend under test, with its socket in a short private dir."""
    directory = tempfile.mkdtemp(prefix="bst-", dir="/tmp")
    proc, path = start_program([ROOT / "examples" / "demo.py", "--seconds", "300", "--no-split",
                                "--backend", backend, "--socket", "{}"], directory)
    yield proc, path
    stop_program(proc, directory)


def table(screen):
    """The first word of each table row: below the column titles, less the bottom line."""
    lines = screen.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"^ (ID|TYPE)\b", line)), None)
    if start is None:
        return []
    rows = [line for line in lines[start + 1:] if line.strip()]
    return [line.split()[0] for line in rows[:-1]]


def cell(screen, actor_id, title):
    """The text in column ``title`` of the row of ``actor_id``."""
    lines = screen.splitlines()
    header = next(line for line in lines if re.match(r"^ ID", line))
    match = re.search(r"(?<= )" + re.escape(title) + r"[\u25bc\u25b2]?(?= |$)", header)
    assert match, f"no column {title} in {header!r}"
    row = next(line for line in lines if line.startswith(f" {actor_id} "))
    first, last = match.start(), match.start() + len(title) - 1   # left or right aligned
    for token in re.finditer(r"\S+", row):
        if token.start() <= last < token.end() or token.start() <= first < token.end():
            return token.group()
    return ""


def test_the_inspector_shows_sorts_filters_stops_an_actor_and_quits(tmux, demo):
    proc, path = demo
    tmux.inspect(path)

    # The actor ids appear.
    screen = tmux.wait(lambda s: "pool/1" in s and "session-3" in s, "the actor table")
    assert "demo  pid" in screen and "sort: msgs/s" in screen

    # S: sorted by id (the column before msgs/s is type, the one before it id).
    tmux.keys("S", "S")
    screen = tmux.wait(lambda s: "sort: id" in s, "the sort by id")
    assert table(screen)[0] == "audit"

    # /: the filter keeps the sessions only.
    tmux.keys("/")
    tmux.type("session")
    tmux.keys("Enter")
    screen = tmux.wait(lambda s: "filter: session" in s, "the filter")
    assert "pool/1" not in screen
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


def dead_rows(screen):
    return [line for line in screen.splitlines() if " victim " in line and "Job(n=" in line]


def test_the_dead_letters_view_after_a_poison_pill_with_messages_queued(tmux, scenario):
    tmux.inspect(scenario("poison"), width=140)
    tmux.wait(lambda s: "bystander" in s or "dead letters 5" in s, "the first snapshot")

    tmux.keys("d")
    screen = tmux.wait(lambda s: "by target: victim 5" in s and len(dead_rows(s)) == 5,
                       "the dead letters view")

    rows = dead_rows(screen)
    assert [re.search(r"Job\(n=(\d)\)", line).group(1) for line in rows] == list("43210")
    assert "by reason:" in screen
    assert all(" Job " in line for line in rows)


def test_enter_on_a_type_shows_that_types_actors_and_esc_goes_back(tmux, scenario):
    tmux.inspect(scenario("types"), width=140)
    tmux.wait(lambda s: "worker-stats" in s, "the first snapshot")

    tmux.keys("g")
    screen = tmux.wait(lambda s: "grouped by type" in s, "the types")
    assert table(screen) == ["Stats", "Worker", "WorkerPool"]
    tmux.keys("Down", "Enter")
    screen = tmux.wait(lambda s: "type: Worker" in s, "the actors of Worker")
    assert sorted(table(screen)) == ["w1", "w2"]
    tmux.keys("Escape")
    screen = tmux.wait(lambda s: "grouped by type" in s, "the types again")
    assert table(screen) == ["Stats", "Worker", "WorkerPool"]


def test_restarts_are_shown_for_a_failing_child(tmux, scenario):
    tmux.inspect(scenario("restarts"), width=160)

    screen = tmux.wait(lambda s: "sup/flaky" in s and cell(s, "sup/flaky", "RST") not in
                       ("", "0", "-"), "restarts of sup/flaky")

    assert int(cell(screen, "sup/flaky", "RST")) > 0
    assert int(cell(screen, "sup/flaky", "FAIL")) > 0
    tmux.keys("t")
    screen = tmux.wait(lambda s: "supervision tree" in s, "the tree")
    assert re.search(r"^\s+sup/flaky", screen, re.M)
    assert "OneForOne(max_restarts=100000" in screen


def test_the_high_water_mark_of_a_flooded_actor_with_drop(tmux, scenario):
    tmux.inspect(scenario("flood"), width=160)

    screen = tmux.wait(lambda s: " slow " in s and cell(s, "slow", "HWM") == "100",
                       "the high-water mark of slow at its capacity")

    assert cell(screen, "slow", "OVERFLOW") == "drop"
    assert cell(screen, "slow", "INBOX").endswith("/100")
    assert int(cell(screen, "slow", "DEAD").replace("k", "000").replace(".", "")) > 0


def test_what_parked_actors_wait_on_shows_in_the_table_and_the_detail_view(tmux, scenario):
    tmux.inspect(scenario("waiting"), width=160)

    screen = tmux.wait(lambda s: " producer " in s and "WAITS ON" in s
                       and cell(s, "producer", "WAITS ON") == "room:dozing(2)",
                       "producer waiting for room in dozing's inbox")

    assert cell(screen, "dozing", "WAITS ON") == "await"
    assert "waiting 2" in screen.splitlines()[0]
    tmux.keys("/")                                      # filter to it, open its detail
    tmux.type("producer")
    tmux.keys("Enter")
    tmux.wait(lambda s: table(s) == ["producer"], "producer alone")
    tmux.keys("Enter")
    screen = tmux.wait(lambda s: "actor producer" in s, "producer's detail view")
    assert "room in dozing's full inbox for 2 sends" in screen


def test_the_stuck_engine_banner_names_the_blocking_actor(tmux, scenario):
    tmux.inspect(scenario("stuck"), width=160)
    tmux.wait(lambda s: "bystander" in s, "the table")

    screen = tmux.wait(lambda s: "ENGINE STUCK" in s and "blocker" in s.splitlines()[0],
                       "the stuck banner")

    banner = screen.splitlines()[0]
    assert "has held the engine thread for" in banner
    assert "receive of blocker" in banner or "actor blocker" in banner
    screen = tmux.wait(lambda s: "no snapshot for" in s.splitlines()[0], "the waiting time")
    tmux.wait(lambda s: "STUCK" not in s, "the banner to go once the engine moves", 40)


def test_the_help_key_lists_every_key(tmux, scenario):
    tmux.inspect(scenario("widths"))
    tmux.wait(lambda s: LONG_PREFIX in s, "the table")

    tmux.keys("?")
    screen = tmux.wait(lambda s: "keys (any key closes this)" in s, "the help")

    for words in ("this help", "sort by the next column", "reverse the sort", "filter by id",
                  "group by type", "dead letters", "supervision tree", "detail",
                  "poison pill", "pause", "quit"):
        assert words in screen, words
    tmux.keys("x")
    tmux.wait(lambda s: "keys (any key closes this)" not in s, "the help to close")


@pytest.mark.parametrize("width", [60, 200])
def test_columns_fit_the_width_and_ids_sharing_a_long_prefix_stay_distinct(tmux, scenario,
                                                                          width):
    tmux.inspect(scenario("widths"), width=width)

    screen = tmux.wait(lambda s: len([r for r in table(s) if "worker-" in r]) == 3,
                       "three workers")

    workers = [r for r in table(screen) if "worker-" in r]
    assert len(set(workers)) == 3
    assert sorted(w[-1] for w in workers) == ["1", "2", "3"]
    lines = screen.splitlines()
    assert all(len(line) <= width for line in lines)
    header = lines[0]
    assert "dead lett" not in header or "dead letters" in header
    titles = next(line for line in lines if re.match(r"^ ID", line))
    if width == 200:
        assert all(w.startswith(LONG_PREFIX) for w in workers)     # whole ids
        assert titles.index("TYPE") < len(LONG_PREFIX) + 6           # not 118 columns of id
        assert "PARENT" in titles
    else:
        assert "MSGS/S" in titles and "INBOX" in titles


def test_every_frame_lays_out_for_the_terminals_real_size(tmux, scenario):
    tmux.inspect(scenario("widths"), width=160, height=30)
    tmux.wait(lambda s: LONG_PREFIX + "3" in s, "the table")

    for _ in range(6):
        tmux.resize(50, 15)
        time.sleep(0.3)
        tmux.resize(160, 30)
        # The whole frame, footer included: tmux may show a frame half drawn.
        tmux.wait(lambda s: LONG_PREFIX + "3" in s and "PARENT" in s
                  and len((s.splitlines() or [""])[-1].rstrip()) > 50,
                  "the full-size layout after growing back, its last line as wide", timeout=5)
