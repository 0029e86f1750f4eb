"""inspector_curses.py: rendering and keys on a fake screen; --once and discovery for real."""

import curses
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest
from conftest import ROOT, Recorder

import inspector_curses as ui
from backstage import Engine

DEADLINE = 30.0


class FakeWindow:
    """What the View uses of a curses window, as a grid of characters."""

    def __init__(self, height=24, width=100):
        self.height, self.width = height, width
        self.erase()

    def getmaxyx(self):
        return self.height, self.width

    def erase(self):
        self.grid = [[" "] * self.width for _ in range(self.height)]
        self.attrs = {}

    def addnstr(self, y, x, text, n, attr=0):
        if not (0 <= y < self.height and 0 <= x < self.width):
            raise curses.error("addnstr() returned ERR")
        text = text[:n]
        for i, ch in enumerate(text[:self.width - x]):
            self.grid[y][x + i] = ch
        self.attrs[y] = self.attrs.get(y, 0) | attr
        if x + len(text) > self.width or (y == self.height - 1 and x + len(text) >= self.width):
            raise curses.error("addnstr() returned ERR")   # as curses does at the corner

    def lines(self):
        return ["".join(row).rstrip() for row in self.grid]

    def text(self):
        return "\n".join(self.lines())


class FakeConnection:
    def __init__(self, lines=(), connected=True):
        self.pending = list(lines)
        self.connected = connected
        self.path = "/tmp/fake.sock"
        self.sent = []

    def connect(self):
        return self.connected

    def poll(self):
        lines, self.pending = self.pending, []
        return lines

    def send(self, command):
        if not self.connected:
            return False
        self.sent.append(command)
        return True


def row(actor_id, type_="Worker", rate=0.0, inbox=0, capacity=1024, total=0, parent=None,
        subscriptions=(), subscribers=0):
    return {"id": actor_id, "type": type_, "parent": parent, "state": "running",
            "inbox": inbox, "capacity": capacity, "messages_total": total,
            "messages_per_s": rate, "last_message_at": 99.5 if total else None,
            "subscribers": subscribers, "subscriptions": [list(s) for s in subscriptions]}


def snapshot(rows, seq=1, pid=4242, rate=1234.5):
    return {"v": 1, "type": "snapshot", "seq": seq, "time": 100.0, "interval": 0.5,
            "engine": {"pid": pid, "program": "demo", "backend": "selectors",
                       "started_at": 0.0, "uptime": 3723.0, "actors": len(rows),
                       "messages_total": sum(r["messages_total"] for r in rows),
                       "messages_per_s": rate, "messages_per_s_avg": rate,
                       "dead_letters": 3, "clients": 1},
            "actors": rows}


ROWS = [
    row("pool", "Pool", total=0),
    row("pool/worker-10", rate=50.0, inbox=3, total=500, parent="pool"),
    row("pool/worker-2", rate=900.0, inbox=0, total=9000, parent="pool",
        subscriptions=[("clock", "tick")]),
    row("audit", "Audit", rate=10.0, inbox=700, capacity=1024, total=100),
    row("clock", "Clock", rate=0.0, total=0, subscribers=1),
]


def make_app(rows=ROWS, height=24, width=100, connection=None):
    conn = connection or FakeConnection([snapshot(rows)])
    app = ui.App(ui.Model(), conn, ui.View(ui.Theme()))
    app.tick(0.0)
    return app, FakeWindow(height, width)


def frame(app, window):
    window.erase()
    app.render(window)
    return window.text()


def table_ids(app, window):
    """The ids in the table rows, top to bottom."""
    lines = frame(app, window).splitlines()[4:-1]
    known = {r["id"] for r in ROWS} | {r["type"] for r in ROWS}
    return [line.split()[0] for line in lines if line.strip() and line.split()[0] in known]


# -- rendering ---------------------------------------------------------------

def test_the_header_shows_the_engine_and_the_table_every_actor():
    app, window = make_app()

    text = frame(app, window)

    assert "demo  pid 4242  selectors  up 1:02:03  actors 5  dead letters 3" in text
    assert "msgs/s 1234 (avg 1234)" in text
    for r in ROWS:
        assert r["id"] in text
    assert "ID" in window.lines()[3] and "PARENT" in window.lines()[3]
    assert "? help" in window.lines()[-1] and "q quit" in window.lines()[-1]


def test_the_default_sort_is_by_messages_per_second():
    app, window = make_app()

    assert table_ids(app, window) == ["pool/worker-2", "pool/worker-10", "audit", "clock",
                                      "pool"]


def test_s_cycles_the_sort_through_every_column_the_engine_reports():
    app, window = make_app()          # an older engine: no restarts, no receive time...

    seen = []
    for _ in range(6):
        app.press(ord("s"))
        seen.append((app.model.sort, table_ids(app, window)))

    assert [key for key, _ in seen] == ["inbox", "total", "parent", "id", "type", "msgs/s"]
    assert seen[0][1][:2] == ["audit", "pool/worker-10"]
    assert seen[1][1][:2] == ["pool/worker-2", "pool/worker-10"]
    assert seen[3][1] == ["audit", "clock", "pool", "pool/worker-2", "pool/worker-10"]
    assert "sort: msgs/s" in frame(app, window)


def test_slash_filters_by_id_or_type_as_the_user_types():
    app, window = make_app()

    app.press(ord("/"))
    for ch in "work":
        app.press(ord(ch))
    while_typing = table_ids(app, window)
    app.press(10)

    assert while_typing == ["pool/worker-2", "pool/worker-10"]
    assert table_ids(app, window) == ["pool/worker-2", "pool/worker-10"]
    assert "filter: work   2 of 5 shown" in frame(app, window)
    app.press(ord("/"))
    for _ in range(4):
        app.press(curses.KEY_BACKSPACE)
    for ch in "Audit":
        app.press(ord(ch))
    app.press(10)
    assert table_ids(app, window) == ["audit"]


def test_escape_while_filtering_puts_the_old_filter_back():
    app, window = make_app()
    app.press(ord("/"))
    app.press(ord("a"))
    app.press(10)

    app.press(ord("/"))
    app.press(ord("x"))
    app.press(27)

    assert app.model.filter == "a"
    assert app.mode == "table"


def test_keys_typed_in_the_filter_are_not_commands():
    app, window = make_app()

    app.press(ord("/"))
    keep_going = app.press(ord("q"))

    assert keep_going is True
    assert app.model.filter == "q"


def test_g_groups_by_type_with_sums():
    app, window = make_app()

    app.press(ord("g"))
    text = frame(app, window)

    worker_line = next(line for line in text.splitlines() if line.startswith(" Worker"))
    assert worker_line.split()[:3] == ["Worker", "2", "950"]
    assert worker_line.split()[-1] == "9,500"
    assert "grouped by type" in text
    assert "pool/worker-2" not in text


def test_enter_on_a_type_shows_its_actors_and_no_other_type():
    rows = [*ROWS, row("worker-stats", "Stats", rate=5.0), row("wp", "WorkerPool", rate=1.0)]
    app, window = make_app(rows)
    app.press(ord("g"))
    frame(app, window)                      # the cursor is on the first type: Worker

    app.press(10)
    text = frame(app, window)

    assert app.model.grouped is False
    assert app.model.type_filter == "Worker" and app.model.filter == ""
    assert table_ids(app, window) == ["pool/worker-2", "pool/worker-10"]
    assert "type: Worker" in text and "2 of 7 shown" in text
    assert "worker-stats" not in text and " wp " not in text


def test_esc_after_enter_on_a_type_goes_back_to_the_types():
    app, window = make_app()
    app.press(ord("g"))
    frame(app, window)
    app.press(10)
    frame(app, window)

    app.press(27)
    text = frame(app, window)

    assert app.model.grouped is True and app.model.type_filter is None
    assert app.model.selected == "Worker"
    assert "grouped by type" in text and "type: Worker" not in text


def test_arrows_and_pages_move_the_selection_which_follows_its_actor():
    app, window = make_app()
    frame(app, window)

    app.press(curses.KEY_DOWN)
    assert app.model.selected == "pool/worker-10"
    app.model.sort = "id"                   # re-sorted by id: the selection stays on it
    frame(app, window)
    assert app.model.selected == "pool/worker-10"
    assert app.model.cursor == 4
    app.press(curses.KEY_PPAGE)
    assert app.model.selected == "audit"
    app.press(curses.KEY_NPAGE)
    assert app.model.selected == "pool/worker-10"
    app.press(curses.KEY_UP)
    assert app.model.selected == "pool/worker-2"


def test_the_selected_row_is_drawn_highlighted():
    app, window = make_app()
    app.view.theme.selected = curses.A_REVERSE

    frame(app, window)

    assert window.attrs[4] & curses.A_REVERSE
    assert not window.attrs.get(5, 0) & curses.A_REVERSE


def test_a_long_table_scrolls_to_keep_the_cursor_on_screen():
    rows = [row(f"session-{i}", "Session", total=i) for i in range(100)]
    app, window = make_app(rows, height=12)
    app.model.sort = "id"

    for _ in range(30):
        app.press(curses.KEY_DOWN)
    text = frame(app, window)

    assert "session-30" in text
    assert "session-0 " not in text


def test_enter_opens_the_detail_view_with_children_subscriptions_and_history():
    app, window = make_app()
    app.model.receive(snapshot(ROWS, seq=2))
    app.model.sort = "id"                   # audit, clock, pool, ...
    app.press(curses.KEY_DOWN)
    app.press(curses.KEY_DOWN)

    app.press(10)
    text = frame(app, window)

    assert app.model.detail == "pool"
    assert "actor pool" in text
    assert "children       pool/worker-10, pool/worker-2" in text
    assert "msgs/s, last 2 snapshots" in text
    app.press(27)
    assert app.model.detail is None


def test_the_detail_view_lists_subscriptions_and_the_rate_sparkline():
    app, window = make_app()
    frame(app, window)                      # cursor on pool/worker-2, the fastest

    app.press(10)
    text = frame(app, window)

    assert "subscriptions  clock:tick" in text
    assert "parent         pool" in text
    assert "\u2588" in text                  # the sparkline of its rate


def test_k_asks_before_stopping_and_n_stops_nothing():
    app, window = make_app()
    frame(app, window)

    app.press(ord("k"))
    prompt = frame(app, window).splitlines()[-1]
    app.press(ord("n"))

    assert "stop actor 'pool/worker-2' with a poison pill? (y/n)" in prompt
    assert app.connection.sent == []
    assert "not stopped" in frame(app, window)


def test_k_then_y_sends_a_poison_pill_command():
    app, window = make_app()
    frame(app, window)

    app.press(ord("k"))
    app.press(ord("y"))
    app.connection.pending.append({"v": 1, "type": "reply", "cmd": "poison_pill", "ok": True,
                                   "id": "pool/worker-2"})
    app.tick(0.1)

    assert app.connection.sent == [{"cmd": "poison_pill", "id": "pool/worker-2"}]
    assert "poison pill sent to 'pool/worker-2'" in frame(app, window)


def test_an_error_line_from_the_engine_is_shown():
    app, window = make_app()

    app.connection.pending.append({"v": 1, "type": "error", "cmd": "poison_pill",
                                   "error": "no actor has the id 'x'; nothing was stopped"})
    app.tick(0.1)

    assert "engine: no actor has the id 'x'; nothing was stopped" in frame(app, window)


def test_p_pauses_the_table_and_shows_the_newest_snapshot_after():
    app, window = make_app()

    app.press(ord("p"))
    app.connection.pending.append(snapshot(ROWS + [row("newcomer", total=1)], seq=2))
    app.tick(0.1)
    paused = frame(app, window)
    app.press(ord("p"))

    assert "PAUSED" in paused and "newcomer" not in paused
    assert "newcomer" in frame(app, window)


def test_q_quits():
    app, window = make_app()

    assert app.press(ord("q")) is False


def test_narrow_screens_drop_columns_and_tiny_ones_say_so():
    app, _ = make_app()

    wide = frame(app, FakeWindow(24, 120)).splitlines()[3]
    narrow = frame(app, FakeWindow(24, 60)).splitlines()[3]
    tiny = frame(app, FakeWindow(3, 15))

    assert "PARENT" in wide and "TOTAL" in wide
    assert "PARENT" not in narrow and "MSGS/S" in narrow and "INBOX" in narrow
    assert tiny.startswith("terminal too")


@pytest.mark.parametrize("size", [(1, 1), (2, 80), (4, 20), (5, 21), (40, 19), (6, 300)])
def test_any_screen_size_draws_without_error(size):
    app, _ = make_app()
    for mode_keys in ([], [ord("g")], [10], [ord("k")], [ord("/")]):
        for key in mode_keys:
            app.press(key)
        frame(app, FakeWindow(*size))


def test_disconnected_is_shown_and_a_reconnection_is_tried_each_second():
    conn = FakeConnection([snapshot(ROWS)])
    app, window = make_app(connection=conn)
    conn.connected = False
    attempts = []
    conn.connect = lambda: attempts.append(1) or False

    app.tick(10.0)
    app.tick(10.5)
    app.tick(11.0)
    text = frame(app, window)

    assert "DISCONNECTED, retrying" in text
    assert len(attempts) == 2
    assert "pool/worker-2" in text          # the last snapshot stays on screen


def test_a_restarted_engine_starts_new_histories():
    app, window = make_app()
    app.model.receive(snapshot(ROWS, seq=2))

    app.model.receive(snapshot(ROWS, seq=1, pid=5555))

    assert len(app.model.history) == 1
    assert "pid 5555" in frame(app, window)


def test_a_snapshot_of_another_feed_version_is_refused_with_advice():
    model = ui.Model()

    model.receive({**snapshot(ROWS), "v": 2})

    assert model.snapshot is None
    assert model.status.startswith("this engine speaks feed version 2")


def test_formatting_helpers():
    assert ui.fmt_rate(0) == "0.0"
    assert ui.fmt_rate(12345) == "12.3k"
    assert ui.fmt_rate(2_500_000) == "2.50M"
    assert ui.fmt_duration(90061) == "1d 1:01:01"
    assert ui.sparkline([0, 1, 2, 4], 10) == "▁▃▅█"
    assert ui.sparkline([0, 0], 10) == "▁▁"
    assert ui.bar(512, 1024, 4) == "██··"
    assert ui.bar(1, 1024, 4) == "█···"
    assert ui.natural_key("w-10") > ui.natural_key("w-2")


def test_the_built_in_picker_moves_and_picks():
    engines = [ui.EngineSocket("/x/demo-1.sock"), ui.EngineSocket("/x/app-2-22.2.sock")]
    picker = ui.Picker(engines)
    window = FakeWindow(10, 80)

    picker.render(window)
    assert picker.press(curses.KEY_DOWN) is True
    done = picker.press(10)

    assert "several engines are running" in window.text()
    assert "app-2" in window.text() and "pid 22" in window.text()
    assert done is False and picker.chosen is engines[1]
    quitter = ui.Picker(engines)
    assert quitter.press(ord("q")) is False and quitter.chosen is None


def test_format_once_prints_a_plain_table():
    text = ui.format_once(snapshot(ROWS), sort="id")

    lines = text.splitlines()
    assert lines[0].startswith("demo  pid 4242  backend selectors")
    assert lines[1].split() == ["ID", "TYPE", "MSGS/S", "INBOX", "TOTAL", "PARENT"]
    assert [line.split()[0] for line in lines[2:]] == [
        "audit", "clock", "pool", "pool/worker-2", "pool/worker-10"]


# -- against a real engine ---------------------------------------------------

@pytest.fixture
def sockdir():
    path = tempfile.mkdtemp(prefix="bsu-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _serve(engine):
    thread = threading.Thread(target=engine.run_forever, daemon=True)
    thread.start()
    return thread


def test_once_prints_the_actors_of_a_running_engine(backend, sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "e.sock"))
    engine.spawn_actor(Recorder, id="alpha")
    engine.spawn_actor(Recorder, id="beta")
    thread = _serve(engine)

    out = subprocess.run([sys.executable, str(ROOT / "inspector_curses.py"), "--once",
                          engine.inspector_path], capture_output=True, text=True,
                         timeout=DEADLINE)
    engine.close()
    thread.join(DEADLINE)

    assert out.returncode == 0, out.stderr
    assert f"pid {os.getpid()}" in out.stdout
    assert backend in out.stdout
    assert {"alpha", "beta"} <= {line.split()[0] for line in out.stdout.splitlines()[2:]}


def test_discovery_finds_live_engines_and_skips_stale_sockets(backend, sockdir, monkeypatch):
    import socket
    import tempfile
    # Only this test's directories: the user's own engines (a `make demo` in
    # another terminal) live in the temp dir's backstage-<uid>.
    monkeypatch.setenv("XDG_RUNTIME_DIR", sockdir)
    monkeypatch.setattr(tempfile, "tempdir", sockdir)
    engine = Engine(backend=backend, inspector=True)
    stale = os.path.join(os.path.dirname(engine.inspector_path), "gone-999999.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(stale)
    dead.close()

    found = ui.find_engines()
    engine.close()

    assert [e.path for e in found] == [engine.inspector_path]
    assert found[0].pid == os.getpid()


def test_without_a_running_engine_the_user_is_told_what_to_do(sockdir):
    env = {**os.environ, "XDG_RUNTIME_DIR": sockdir, "TMPDIR": sockdir}

    out = subprocess.run([sys.executable, str(ROOT / "inspector_curses.py")], env=env,
                         capture_output=True, text=True, timeout=DEADLINE)
    missing = subprocess.run([sys.executable, str(ROOT / "inspector_curses.py"),
                              os.path.join(sockdir, "nope.sock")], env=env,
                             capture_output=True, text=True, timeout=DEADLINE)

    assert out.returncode == 1
    assert out.stderr.startswith("inspector: no running engine found in ")
    assert "Engine(inspector=True)" in out.stderr
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"inspector: no socket at {sockdir}/nope.sock")
    assert "Traceback" not in out.stderr + missing.stderr
