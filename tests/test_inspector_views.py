"""inspector_curses.py: the views of issue 14 and the trust rules of issue 11, on a fake screen
and on real sockets."""

import copy
import curses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading

import pytest
from conftest import ROOT
from test_inspector_ui import FakeConnection, FakeWindow, frame, row, snapshot

import inspector_curses as ui

DEADLINE = 30.0


def full_row(actor_id, type_="Worker", rate=0.0, inbox=0, capacity=1000, total=0, parent=None,
             restarts=0, failures=0, dead=0, receive_s=0.0, ms=0.0, share=0.0, hwm=None,
             overflow="block", strategy=None):
    base = row(actor_id, type_, rate, inbox, capacity, total, parent)
    base.update({"restarts": restarts, "failures": failures, "dead_letters": dead,
                 "receive_s": receive_s, "receive_ms_per_s": ms, "busy_share": share,
                 "inbox_hwm": inbox if hwm is None else hwm, "overflow": overflow,
                 "strategy": strategy})
    return base


def full_snapshot(rows, seq=1, dead_recent=(), by_reason=None, by_target=None, **engine):
    snap = snapshot(rows, seq=seq)
    snap["engine"].update({"restarts": sum(r["restarts"] for r in rows),
                           "failures": sum(r["failures"] for r in rows),
                           "receive_s": 1.0, "busy_share": 0.25,
                           "dead_letters_recent": list(dead_recent),
                           "dead_letters_by_reason": by_reason or {},
                           "dead_letters_by_target": by_target or {}, **engine})
    return snap


ROWS = [
    full_row("sup", "Supervisor", strategy="OneForOne(max_restarts=3)", restarts=0),
    full_row("sup/flaky", "Flaky", rate=5.0, total=50, parent="sup", restarts=7, failures=9,
             receive_s=0.5, ms=12.5, share=0.0125),
    full_row("slow", "Slow", rate=1.0, total=10, inbox=0, hwm=1000, overflow="drop",
             receive_s=30.0, ms=900.0, share=0.9, dead=28000),
    full_row("chatty", "Chatty", rate=50000.0, total=10**6, receive_s=2.0, ms=40.0, share=0.04),
]


def make(rows=ROWS, height=30, width=160, **kw):
    conn = FakeConnection([full_snapshot(rows, **kw)])
    app = ui.App(ui.Model(), conn, ui.View(ui.Theme()))
    app.tick(0.0)
    return app, FakeWindow(height, width)


def body(app, window):
    """The table rows: from the fifth line, less the bottom line."""
    return [line for line in frame(app, window).splitlines()[4:-1] if line.strip()]


# -- per-actor figures ---------------------------------------------------------

def test_the_table_shows_restarts_failures_dead_letters_receive_time_and_high_water():
    app, window = make()

    text = frame(app, window)
    titles = window.lines()[3].split()
    flaky = next(line for line in text.splitlines() if line.startswith(" sup/flaky"))
    slow = next(line for line in text.splitlines() if line.startswith(" slow"))

    for title in ("MS/S", "BUSY", "INBOX", "HWM", "OVERFLOW", "RST", "FAIL", "DEAD", "RECV"):
        assert title in " ".join(titles), title
    assert "12" in flaky.split() and "1.2%" in flaky.split()
    assert "7" in flaky.split() and "9" in flaky.split()
    assert "0/1000" in slow.split() and "1000" in slow.split() and "drop" in slow.split()
    assert "28.0k" in slow.split() and "90%" in slow.split() and "30s" in slow.split()
    assert "restarts 7" in text and "failures 9" in text


def test_an_older_engine_without_the_new_fields_shows_no_empty_columns():
    app, window = make()
    app.model.receive(snapshot([row("a", total=1)], seq=2))

    titles = frame(app, window).splitlines()[3]

    assert "RST" not in titles and "MS/S" not in titles and "HWM" not in titles
    assert "MSGS/S" in titles and "INBOX" in titles


@pytest.mark.parametrize("key", [k for k in ui.SORTS if k != "fill"])
def test_every_column_sorts_and_r_reverses_it(key):
    app, window = make()
    app.model.sort = key
    column = ui.COLUMNS[key]

    forward = [r["id"] for r in app.model.rows()]
    app.press(ord("r"))
    backward = [r["id"] for r in app.model.rows()]

    values = [column.sort(app.model.row(i)) for i in forward]
    assert values == sorted(values, reverse=column.numeric)
    assert [column.sort(app.model.row(i)) for i in backward] == \
        sorted(values, reverse=not column.numeric)
    assert "reversed" in frame(app, window).splitlines()[2]


def test_sort_by_total_puts_the_busiest_actor_first():
    app, window = make()
    while app.model.sort != "total":
        app.press(ord("s"))

    assert body(app, window)[0].split()[0] == "chatty"
    app.press(ord("S"))
    assert app.model.sort == "overflow"


# -- views ---------------------------------------------------------------------

DEAD = [
    {"time": 1000.5, "target": "pool/worker-3", "sender": "client", "reason": "stopped",
     "type": "Job", "repr": "Job(id=9)"},
    {"time": 999.0, "target": "nobody", "sender": None, "reason": "unknown id",
     "type": "str", "repr": "'\x1b[31mhi'"},
]


def test_d_shows_the_dead_letters_most_recent_first_with_counts_by_target_and_reason():
    app, window = make(dead_recent=DEAD, by_reason={"stopped": 40, "unknown id": 2},
                       by_target={"pool/worker-3": 40, "nobody": 2})

    app.press(ord("d"))
    text = frame(app, window)
    lines = text.splitlines()

    assert "by reason: stopped 40, unknown id 2" in text
    assert "by target: pool/worker-3 40, nobody 2" in text
    first = next(i for i, line in enumerate(lines) if "pool/worker-3" in line and "Job" in line)
    second = next(i for i, line in enumerate(lines) if "nobody" in line and "str" in line)
    assert first < second
    assert "client" in lines[first] and "stopped" in lines[first] and "Job(id=9)" in lines[first]
    assert "\x1b" not in text and "'?[31mhi'" in text
    app.press(ord("d"))
    assert app.model.screen == "table"


def test_the_dead_letters_view_of_an_older_engine_says_what_it_lacks():
    app, window = make()
    app.model.receive(snapshot([row("a", total=1)], seq=2))

    app.press(ord("d"))

    assert "does not report dead letters one by one" in frame(app, window)


def test_t_shows_the_supervision_tree_with_strategy_and_restarts():
    app, window = make()

    app.press(ord("t"))
    lines = body(app, window)

    ids = [line.split()[0] for line in lines]
    assert ids == ["chatty", "slow", "sup", "sup/flaky"]
    sup = next(line for line in lines if line.startswith(" sup "))
    flaky = next(line for line in lines if "sup/flaky" in line)
    assert "OneForOne(max_restarts=3)" in sup
    assert flaky.startswith("   sup/flaky")           # indented under its parent
    assert "7" in flaky.split()
    app.press(10)
    assert app.model.detail == "chatty"


def test_the_help_key_lists_every_key():
    app, window = make()

    app.press(ord("?"))
    text = frame(app, window)

    for label, words in app.key_help():
        assert f"{label:<16} {words}" in text
    listed = {key for keys, _, _, _ in app.table for key in keys}
    assert set(app.keys) <= listed
    app.press(ord("x"))
    assert app.model.help is False


def test_the_detail_view_has_the_new_figures():
    app, window = make()
    app.model.selected = "slow"

    app.press(10)
    text = frame(app, window)

    assert "high-water 1,000, overflow drop" in text
    assert "30s total, 900.0 ms/s, 90% of the engine thread" in text
    assert "dead letters to it 28,000" in text


WAITING = ROWS + [
    full_row("producer", "Producer", strategy=None),
    full_row("feeder", "Feeder"),
    full_row("dozing", "Dozing", inbox=1, capacity=1),
]
WAITING[-3]["waiting_on"] = [{"on": "room", "id": "dozing", "messages": 2},
                             {"on": "link", "id": "far"}]
WAITING[-2]["waiting_on"] = [{"on": "link", "id": "far"}]
WAITING[-1]["waiting_on"] = [{"on": "await"}]


def test_the_table_says_what_each_parked_actor_waits_on_and_the_header_counts_them():
    app, window = make(WAITING, waiting=3)

    text = frame(app, window)
    lines = {line.split()[0]: line for line in text.splitlines()[4:-1] if line.strip()}

    column = text.splitlines()[3].index("WAITS ON")
    width = len("room:dozing(2), link:far")         # the longest: the column's width
    cell = {actor: line[column:column + width].rstrip() for actor, line in lines.items()}
    assert cell["producer"] == "room:dozing(2), link:far"
    assert cell["feeder"] == "link:far" and cell["dozing"] == "await"
    assert cell["chatty"] == "-"
    assert "waiting 3" in text.splitlines()[0]


def test_the_waits_column_is_hidden_while_no_actor_waits():
    app, window = make(ROWS, waiting=0)

    text = frame(app, window)

    assert "WAITS ON" not in text and "waiting" not in text.splitlines()[0]


def test_the_detail_view_says_in_words_what_an_actor_waits_on():
    app, window = make(WAITING, waiting=3)
    app.model.selected = "producer"

    app.press(10)
    text = frame(app, window)

    assert ("room in dozing's full inbox for 2 sends; its link to far's engine, which holds "
            "more than it may send soon") in text


# -- layout --------------------------------------------------------------------

LONG = [full_row(f"ingest/partition-consumers/worker-{n}", total=n) for n in (1, 2, 3)]


@pytest.mark.parametrize("width", [60, 200])
def test_ids_sharing_a_long_prefix_stay_distinct_and_the_header_is_never_cut(width):
    app, window = make(LONG, width=width)

    lines = frame(app, window).splitlines()
    cells = [line[1:].split()[0] for line in body(app, window)]

    assert len(set(cells)) == 3
    assert all(cell.endswith(("worker-1", "worker-2", "worker-3")) for cell in cells)
    for field in lines[0].split("  "):
        assert field.strip() in {"demo", "pid 4242", "selectors", "up 1:02:03", "actors 3",
                                 "dead letters 3", "restarts 0", "failures 0", "busy 25%",
                                 "clients 1", ""}
    assert "MSGS/S" in lines[3]
    if width == 200:
        id_width = lines[3].index("TYPE") - 1
        assert id_width <= len(LONG[0]["id"]) + 1
        assert "PARENT" in lines[3] and "RECV" in lines[3]


def test_elide_keeps_ids_that_differ_in_the_middle_apart():
    ids = ["a-1-" + "x" * 30, "a-2-" + "x" * 30, "a-3-" + "x" * 30]

    shown = ui.elide_unique(ids, 12)

    assert len(set(shown)) == 3 and all(len(s) <= 12 for s in shown)
    assert ui.elide("abcdefghij", 5) == "ab\u2026ij"


def test_pause_freezes_the_sparklines_too():
    app, window = make()
    app.model.selected = "chatty"
    app.press(ord("p"))
    before = frame(app, window)

    for seq in range(2, 6):
        rows = [dict(r, messages_per_s=r["messages_per_s"] * seq) for r in ROWS]
        app.connection.pending.append(full_snapshot(rows, seq=seq, rate=1000.0 * seq))
        app.tick(seq)
    paused = frame(app, window)
    app.press(10)
    paused_detail = frame(app, window)
    app.press(ord("p"))

    assert paused == before
    assert "last 1 snapshots" in paused_detail
    assert "last 5 snapshots" in frame(app, window)


def test_drawing_does_not_change_the_model():
    app, window = make()
    app.layout(30, 160)
    before = copy.deepcopy(app.model.__dict__)

    for screen in ("table", "tree", "dead"):
        app.model.screen = screen
        app.view.draw(window, app)
        before["screen"] = screen
        assert app.model.__dict__ == before


# -- the stuck engine ---------------------------------------------------------

def test_no_snapshot_for_a_few_intervals_shows_the_stuck_banner():
    app, window = make()

    app.tick(1.0)
    calm = frame(app, window)
    app.tick(6.0)
    stuck = frame(app, window)

    assert "STUCK" not in calm
    assert stuck.splitlines()[0].strip().startswith("ENGINE STUCK? no snapshot for 6 s")


def test_the_engines_stuck_line_names_the_actor_until_unstuck():
    app, window = make()
    app.connection.pending.append({"v": 1, "type": "stuck", "time": 100.0, "since": 95.0,
                                   "for_s": 5.0, "actor": "slow",
                                   "callback": "receive of slow"})
    app.tick(0.5)
    banner = frame(app, window).splitlines()[0]
    app.tick(8.0)
    later = frame(app, window).splitlines()[0]
    app.connection.pending.append({"v": 1, "type": "unstuck", "time": 108.0, "for_s": 13.0})
    app.connection.pending.append(full_snapshot(ROWS, seq=2))
    app.tick(8.1)

    assert "ENGINE STUCK" in banner and "receive of slow has held the engine thread for 5.0 s" \
        in banner
    assert "no snapshot for 8 s" in later and "for 12.5 s" in later
    assert "STUCK" not in frame(app, window)


# -- untrusted input ----------------------------------------------------------

def test_control_characters_never_reach_the_screen_and_lone_surrogates_draw():
    evil = [full_row("\x1b]0;owned\x07", "\x1b[2J"), full_row("\ud800x", "T\u202eT"),
            full_row("ok", parent="\x9b31m")]
    app, window = make(evil)
    assert "?]0;owned?" in frame(app, window)

    for key in (None, ord("t"), ord("t"), ord("d")):
        if key:
            app.press(key)
        text = frame(app, window)
        assert not any(ord(c) < 32 and c != "\n" or 0x7f <= ord(c) <= 0x9f or
                       0xd800 <= ord(c) <= 0xdfff or c == "\u202e" for c in text)
    out = ui.format_once(full_snapshot(evil))
    assert "\x1b" not in out and "\ud800" not in out


def test_fields_of_the_wrong_type_are_read_as_absent():
    snap = full_snapshot(ROWS)
    snap["actors"] = [{"id": "a", "inbox": "lots", "messages_per_s": None, "restarts": 1.5,
                       "type": 7, "subscriptions": "x"},
                      {"no id": True}, "junk", {"id": 5}]
    snap["engine"]["pid"] = "x"
    snap["engine"]["dead_letters_recent"] = [{"time": "now"}, 3]

    clean = ui.clean_snapshot(snap)

    assert [r["id"] for r in clean["actors"]] == ["a"]
    assert clean["actors"][0]["inbox"] == 0 and clean["actors"][0]["type"] == "?"
    assert clean["actors"][0]["restarts"] == 1
    assert clean["engine"]["dead_letters_recent"][0]["target"] == "?"
    app, window = make()
    app.model.receive(snap)
    frame(app, window)


def test_a_lone_surrogate_id_can_be_stopped():
    app, window = make([full_row("\ud800bad")])
    frame(app, window)

    app.press(ord("k"))
    app.press(ord("y"))

    assert app.connection.sent == [{"cmd": "poison_pill", "id": "\ud800bad"}]
    assert json.dumps(app.connection.sent[0]).isascii()


# -- terminal size ------------------------------------------------------------

class SizedScreen:
    def __init__(self, size):
        self.size = size

    def getmaxyx(self):
        return self.size


def test_every_frame_follows_the_terminals_real_size(monkeypatch):
    resized = []
    monkeypatch.setattr(ui, "terminal_size", lambda fd: (50, 200))
    monkeypatch.setattr(curses, "resizeterm", lambda h, w: resized.append((h, w)))
    monkeypatch.setattr(curses, "update_lines_cols", lambda: None)

    ui.follow_size(SizedScreen((20, 60)), 1)       # curses still thinks it is small
    ui.follow_size(SizedScreen((50, 200)), 1)      # already right: nothing to do

    assert resized == [(50, 200)]


# -- sockets: line bound, directory and peer checks, discovery -----------------

@pytest.fixture
def sockdir():
    path = tempfile.mkdtemp(prefix="bsv-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve_once(path, payload):
    """A server that accepts one client at a time and sends it ``payload``."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(4)

    def run():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                conn.sendall(payload)
            except OSError:
                pass
            conn.close()

    threading.Thread(target=run, daemon=True).start()
    return server


def test_a_line_over_the_bound_drops_the_connection_with_a_reason(sockdir):
    path = os.path.join(sockdir, "big.sock")
    server = serve_once(path, b'{"v":1,"type":"snapshot"' + b" " * (3 << 20))
    conn = ui.Connection(path, max_line=1 << 20)
    try:
        assert conn.connect()
        deadline = __import__("time").monotonic() + DEADLINE
        while conn.connected and __import__("time").monotonic() < deadline:
            conn.poll()

        assert not conn.connected
        assert conn.problem.startswith("the engine sent a line of over 1 MiB")
        assert len(conn.buffer) == 0
    finally:
        server.close()


def test_discovery_refuses_directories_of_others_or_writable_by_others(sockdir):
    mine = os.path.join(sockdir, "mine")
    os.mkdir(mine, 0o700)
    open_dir = os.path.join(sockdir, "open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    servers = [serve_once(os.path.join(d, "app-1.sock"), b"") for d in (mine, open_dir)]
    try:
        problems = []
        found = ui.find_engines([mine, open_dir], problems)

        assert [e.path for e in found] == [os.path.join(mine, "app-1.sock")]
        assert problems == [f"{open_dir} is writable by other users (mode 777): make it "
                            f"private with chmod 700"]
        if os.getuid() == 0:
            os.chmod(open_dir, 0o700)
            os.chown(open_dir, 65534, 65534)
            assert ui.check_dir(open_dir).startswith(f"{open_dir} belongs to user id 65534")
        link = os.path.join(sockdir, "link")
        os.symlink(mine, link)
        assert ui.check_dir(link) == f"{link} is not a directory"
    finally:
        for server in servers:
            server.close()


PLAIN_PYTHON = "/usr/bin/python3"      # one that another user may run


@pytest.mark.skipif(os.getuid() != 0 or not hasattr(socket, "SO_PEERCRED")
                    or not os.path.exists(PLAIN_PYTHON),
                    reason="needs root (to run a server as another user), SO_PEERCRED and a "
                           "python3 that user may run")
def test_a_server_of_another_user_is_refused_even_by_path(sockdir):
    theirs = os.path.join(sockdir, "theirs")
    os.mkdir(theirs, 0o755)
    os.chown(theirs, 65534, 65534)
    os.chmod(sockdir, 0o755)
    path = os.path.join(theirs, "forged-1.sock")
    server = subprocess.Popen([PLAIN_PYTHON, "-c", textwrap.dedent(f"""
        import socket, time
        s = socket.socket(socket.AF_UNIX); s.bind({path!r}); s.listen(4)
        while True:
            c, _ = s.accept()
            try:
                c.sendall(b'{{"v":1,"type":"snapshot","engine":{{}},"actors":[]}}\\n')
            except OSError:
                pass
            c.close()
        """)], user=65534, group=65534, cwd="/")
    try:
        deadline = __import__("time").monotonic() + DEADLINE
        while not os.path.exists(path):
            assert __import__("time").monotonic() < deadline
            __import__("time").sleep(0.02)
        conn = ui.Connection(path)

        assert conn.connect() is False
        assert "served by a process of user id 65534" in conn.problem
        out = subprocess.run([sys.executable, str(ROOT / "inspector_curses.py"), "--once", path],
                             capture_output=True, text=True, timeout=DEADLINE)
        assert out.returncode == 1 and "user id 65534" in out.stderr
    finally:
        server.kill()
        server.wait()


def test_discovery_looks_in_the_engines_fallback_private_directories(sockdir, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", sockdir)
    fallback = tempfile.mkdtemp(prefix=f"backstage-{os.getuid()}-", dir=sockdir)
    server = serve_once(os.path.join(fallback, "app-77.sock"), b"")
    try:
        dirs = ui.socket_dirs()
        found = ui.find_engines()

        assert fallback in dirs
        assert [e.path for e in found] == [os.path.join(fallback, "app-77.sock")]
        assert found[0].pid == 77
    finally:
        server.close()
