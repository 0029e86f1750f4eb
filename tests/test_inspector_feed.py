"""The inspector's stats feed: a Unix socket of JSON snapshots, on real sockets."""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading

import pytest
from conftest import DEADLINE, ROOT, Recorder, Running, wait_for

import backstage
from backstage import BackstageError, Engine

ENGINE_KEYS = {"pid", "program", "backend", "started_at", "uptime", "actors", "messages_total",
               "messages_per_s", "messages_per_s_avg", "dead_letters", "restarts", "clients",
               "failures", "receive_s", "busy_share", "dead_letters_by_reason",
               "dead_letters_by_target", "dead_letters_recent", "waiting"}
ACTOR_KEYS = {"id", "type", "parent", "state", "inbox", "capacity", "overflow", "messages_total",
              "messages_per_s", "last_message_at", "subscribers", "subscriptions", "restarts",
              "failures", "dead_letters", "receive_s", "receive_ms_per_s", "busy_share",
              "inbox_hwm", "strategy", "waiting_on"}


@pytest.fixture
def sockdir():
    """A short private directory: Unix socket paths are limited to ~104 bytes."""
    path = tempfile.mkdtemp(prefix="bsi-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Client:
    """A test client of the feed: reads lines, sends commands."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def line(self):
        raw = self.file.readline()
        assert raw.endswith(b"\n"), f"the feed closed the connection: {raw!r}"
        return json.loads(raw)

    def until(self, predicate, lines=10_000):
        for _ in range(lines):
            obj = self.line()
            if predicate(obj):
                return obj
        raise AssertionError("no matching line")

    def snapshot(self, predicate=lambda s: True):
        return self.until(lambda o: o["type"] == "snapshot" and predicate(o))

    def reply(self, lines=10_000):
        return self.until(lambda o: o["type"] != "snapshot", lines)

    def send(self, obj):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\n"
        self.sock.sendall(data)

    def close(self):
        self.file.close()
        self.sock.close()


class Parent:
    def __init__(self, ctx):
        self.ctx = ctx
        ctx.spawn_child_actor(Recorder, id="parent/child")

    def receive(self, envelope):
        pass


class Stoppable(Recorder):
    deinits = 0

    def deinit(self):
        Stoppable.deinits += 1


def by_id(snapshot):
    return {row["id"]: row for row in snapshot["actors"]}


# -- the snapshot ------------------------------------------------------------

def test_snapshots_follow_the_documented_schema(backend, sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"))
    engine.spawn_actor(Parent, id="parent")
    listener = engine.spawn_actor(Recorder, id="listener")
    listener.ctx.subscribe_to_actor_topic("parent", "news")
    for i in range(10):
        engine.send("listener", i)
    engine.send("nobody", "lost")

    with Running(engine):
        client = Client(engine.inspector_path)
        snap = client.snapshot(lambda s: s["engine"]["messages_total"] == 10)
        client.close()

    assert snap["v"] == 1
    assert set(snap) == {"v", "type", "seq", "time", "interval", "engine", "actors"}
    assert set(snap["engine"]) == ENGINE_KEYS
    assert snap["engine"]["pid"] == os.getpid()
    assert snap["engine"]["backend"] == backend
    assert snap["engine"]["actors"] == 3
    assert snap["engine"]["dead_letters"] == 1
    assert snap["engine"]["clients"] == 1
    assert snap["interval"] == backstage.INSPECTOR_INTERVAL
    rows = by_id(snap)
    assert [r["id"] for r in snap["actors"]] == ["parent", "parent/child", "listener"]
    assert all(set(r) == ACTOR_KEYS for r in snap["actors"])
    assert rows["parent/child"]["parent"] == "parent"
    assert rows["parent"]["parent"] is None
    assert rows["parent"]["type"] == "Parent"
    assert rows["parent"]["subscribers"] == 1
    assert rows["listener"]["subscriptions"] == [["parent", "news"]]
    assert rows["listener"]["messages_total"] == 10
    assert rows["listener"]["inbox"] == 0
    assert rows["listener"]["capacity"] == 1024
    assert rows["listener"]["state"] == "running"
    assert rows["listener"]["last_message_at"] <= snap["time"]
    assert rows["parent"]["last_message_at"] is None


def test_rates_are_rolling_averages_with_the_smoothing_factor(backend, sockdir, monkeypatch):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"))
    ctx = engine.spawn_actor(Recorder, id="r").ctx
    feed = engine._inspector
    clock = [feed._sampled_at]
    monkeypatch.setattr(engine._loop, "time", lambda: clock[0])
    a = backstage.INSPECTOR_SMOOTHING

    ctx._count, clock[0] = 100, clock[0] + 1.0       # 100 msgs/s in the first second
    feed._sample()
    ctx._count, clock[0] = 100, clock[0] + 1.0       # then none
    feed._sample()
    snap = feed.snapshot()
    engine.close()

    assert by_id(snap)["r"]["messages_per_s"] == pytest.approx((1 - a) * 100, abs=0.01)
    assert snap["engine"]["messages_per_s"] == 0
    assert snap["engine"]["messages_per_s_avg"] == pytest.approx((1 - a) * 100, abs=0.01)


def test_messages_total_keeps_the_messages_of_stopped_actors(backend, sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"))
    ctx = engine.spawn_actor(Recorder, id="short-lived").ctx
    for i in range(5):
        engine.send("short-lived", i)
    engine.run()
    engine._inspector._sample()
    before = engine._inspector.snapshot()

    engine.poison_pill("short-lived")
    engine.run()
    engine._inspector._sample()
    after = engine._inspector.snapshot()
    engine.close()

    assert before["engine"]["messages_total"] == 5
    assert after["actors"] == []
    # The pill counts as the actor's last message, as in Context.messages_handled.
    assert after["engine"]["messages_total"] == ctx.messages_handled >= 5


# -- the socket --------------------------------------------------------------

def test_default_socket_is_private_and_named_after_program_and_pid(backend, sockdir,
                                                                    monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", sockdir)
    monkeypatch.setattr(sys, "argv", ["my app.py"])

    with Engine(backend=backend, inspector=True) as engine:
        path = engine.inspector_path
        directory = os.path.dirname(path)

        assert directory == os.path.join(sockdir, "backstage")
        assert os.path.basename(path) == f"my_app-{os.getpid()}.sock"
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_without_xdg_runtime_dir_the_socket_goes_to_a_per_user_temp_folder(
        backend, sockdir, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", sockdir)

    with Engine(backend=backend, inspector=True) as engine:
        directory = os.path.dirname(engine.inspector_path)

        assert directory == os.path.join(sockdir, f"backstage-{os.getuid()}")
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_an_existing_directory_that_is_too_open_is_made_private(backend, sockdir, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", sockdir)
    os.mkdir(os.path.join(sockdir, "backstage"), 0o755)
    os.chmod(os.path.join(sockdir, "backstage"), 0o755)

    with Engine(backend=backend, inspector=True):
        assert stat.S_IMODE(os.stat(os.path.join(sockdir, "backstage")).st_mode) == 0o700


def test_two_engines_of_one_process_get_two_sockets(backend, sockdir, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", sockdir)

    with Engine(backend=backend, inspector=True) as one, \
            Engine(backend=backend, inspector=True) as two:
        assert one.inspector_path != two.inspector_path
        assert two.inspector_path.endswith(f"-{os.getpid()}.2.sock")


def test_the_socket_is_removed_at_close(backend, sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"))
    assert os.path.exists(engine.inspector_path)

    engine.close()

    assert not os.path.exists(engine.inspector_path)


def test_the_socket_is_removed_at_normal_exit_without_close(backend, sockdir):
    path = os.path.join(sockdir, "s.sock")
    script = (f"import backstage\n"
              f"e = backstage.Engine(backend={backend!r}, inspector={path!r})\n"
              f"import os; assert os.path.exists({path!r}); print('up')\n")

    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=DEADLINE)

    assert out.stdout == "up\n", out.stderr
    assert not os.path.exists(path)


def test_a_stale_socket_is_replaced(backend, sockdir):
    path = os.path.join(sockdir, "s.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()                       # the file stays, and nobody listens

    engine = Engine(backend=backend, inspector=path)
    with Running(engine):
        client = Client(path)
        assert client.snapshot()["engine"]["pid"] == os.getpid()
        client.close()


def test_a_live_socket_is_never_stolen(backend, sockdir):
    path = os.path.join(sockdir, "s.sock")
    with Engine(backend=backend, inspector=path):

        with pytest.raises(BackstageError, match=r"^another engine is serving .*s\.sock; "
                                                 r"a live inspector socket is never replaced"):
            Engine(backend=backend, inspector=path)

        assert os.path.exists(path)


def test_a_file_that_is_not_a_socket_is_left_alone(backend, sockdir):
    path = os.path.join(sockdir, "notes.txt")
    with open(path, "w") as f:
        f.write("mine")

    with pytest.raises(FileExistsError, match=r"^.*notes\.txt exists and is not a socket"):
        Engine(backend=backend, inspector=path)

    with open(path) as f:
        assert f.read() == "mine"


def test_bad_inspector_arguments_raise_at_the_call(backend, sockdir):
    with pytest.raises(TypeError, match=r"^inspector must be False, True or a socket path"):
        Engine(backend=backend, inspector=3)
    with pytest.raises(ValueError, match=r"^inspector_interval needs seconds between"):
        Engine(backend=backend, inspector=True, inspector_interval=0)
    with pytest.raises(ValueError, match=r"^inspector socket path is \d+ bytes long"):
        Engine(backend=backend, inspector=os.path.join(sockdir, "x" * 120 + ".sock"))


# -- clients -----------------------------------------------------------------

def test_two_clients_receive_the_same_snapshots(backend, sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"),
                    inspector_interval=0.05)
    engine.spawn_actor(Recorder, id="r")

    with Running(engine):
        one, two = Client(engine.inspector_path), Client(engine.inspector_path)
        wait_for(lambda: engine._inspector.clients == 2, "two clients")
        first = one.snapshot(lambda s: s["engine"]["clients"] == 2)
        second = two.snapshot(lambda s: s["seq"] >= first["seq"])
        one.close()
        two.close()

    assert second["seq"] == first["seq"]
    assert by_id(second) == by_id(first)


def test_a_client_that_never_reads_does_not_stall_the_engine(backend, sockdir):
    # Big snapshots (300 actors with long ids) fill the client's socket buffer
    # at once; a blocking write would hang run() here.  The engine goes on until
    # the feed has built well over INSPECTOR_STALL_LIMIT snapshots, handles every
    # message, and drops the client.
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"),
                    inspector_interval=0.01)
    for i in range(300):
        engine.spawn_actor(Recorder, id=f"idle-actor-{i:04d}-" + "x" * 100)
    feed = engine._inspector
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(engine.inspector_path)
    target = backstage.INSPECTOR_STALL_LIMIT * 3

    class Pinger:
        def __init__(self, ctx):
            self.ctx = ctx
            self.count = 0

        def receive(self, envelope):
            self.count += 1
            if feed.seq < target:
                self.ctx.send("pinger", envelope.message + 1)

    pinger = engine.spawn_actor(Pinger, id="pinger")
    engine.send("pinger", 0)
    runner = threading.Thread(target=engine.run, daemon=True)
    runner.start()
    runner.join(DEADLINE)

    assert not runner.is_alive(), "run() is stuck writing to a client that does not read"
    assert feed.seq >= target
    assert feed.clients == 0
    assert pinger.count > 0 and engine.dead_letter_count == 0
    stuck.close()
    engine.close()


def test_bad_commands_get_an_error_line_and_change_nothing(backend, sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"))
    engine.spawn_actor(Recorder, id="r")
    bad = [b"this is not json\n", b"[1, 2]\n", {"cmd": "reboot"}, {"no": "cmd"},
           {"cmd": "poison_pill", "id": "nobody"}, {"cmd": "poison_pill", "id": 7},
           {"cmd": "interval", "seconds": -1}, {"cmd": "interval", "seconds": True},
           {"cmd": "interval", "seconds": "fast"}]

    with Running(engine):
        client = Client(engine.inspector_path)
        replies = []
        for command in bad:
            client.send(command)
            replies.append(client.reply())
        client.close()

    assert [r["type"] for r in replies] == ["error"] * len(bad)
    assert all(r["v"] == 1 and r["error"] for r in replies)
    assert replies[0]["error"].startswith("commands are one JSON object per line")
    assert replies[2]["error"].startswith("unknown command 'reboot'")
    assert replies[4]["error"] == "no actor has the id 'nobody'; nothing was stopped"
    assert replies[6]["error"].startswith("interval needs seconds between")
    assert engine._inspector.interval == backstage.INSPECTOR_INTERVAL
    assert engine.dead_letter_count == 0


def test_poison_pill_by_command_stops_the_actor(backend, sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"),
                    inspector_interval=0.05)
    engine.spawn_actor(Stoppable, id="victim")
    engine.spawn_actor(Recorder, id="bystander")
    Stoppable.deinits = 0

    with Running(engine):
        client = Client(engine.inspector_path)
        client.send({"cmd": "poison_pill", "id": "victim"})
        reply = client.reply()
        after = client.snapshot(lambda s: "victim" not in by_id(s))
        client.close()

    assert reply == {"v": 1, "type": "reply", "cmd": "poison_pill", "ok": True, "id": "victim"}
    assert Stoppable.deinits == 1
    assert list(by_id(after)) == ["bystander"]


class Slow:
    """Takes its time over each message, so that its inbox fills."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def receive(self, envelope):
        await self.ctx.sleep(30)


@pytest.mark.parametrize("overflow", ["fail", "drop", "block"])
def test_a_poison_pill_command_to_a_full_inbox_gets_an_error_line(backend, sockdir, overflow):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"))
    slow = engine.spawn_actor(Slow, id="slow", capacity=2, overflow=overflow)
    engine.send("slow", 0)
    engine.send("slow", 1)

    with Running(engine):
        wait_for(lambda: slow.ctx.inbox_len == 1, "the first message taken")
        engine.send("slow", 2, timeout=DEADLINE)           # full now: 1 and 2 wait
        client = Client(engine.inspector_path)
        client.send({"cmd": "poison_pill", "id": "slow"})
        reply = client.reply(lines=10)         # (a snapshot each half second)
        client.close()
        alive = engine.actor_ids

    assert reply["type"] == "error"
    assert reply["error"] == (f"the inbox of 'slow' is full (capacity 2, overflow "
                              f"{overflow!r}): a poison pill would not get in; nothing was "
                              f"stopped, try again once it has room")
    assert alive == ["slow"]


def test_interval_command_changes_the_snapshot_interval(backend, sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"))

    with Running(engine):
        client = Client(engine.inspector_path)
        client.send({"cmd": "interval", "seconds": 0.02})
        reply = client.reply()
        snap = client.snapshot(lambda s: s["interval"] == 0.02)
        later = client.snapshot(lambda s: s["seq"] > snap["seq"])
        client.close()

    assert reply == {"v": 1, "type": "reply", "cmd": "interval", "ok": True, "seconds": 0.02}
    assert later["interval"] == 0.02


def test_a_client_of_another_user_is_refused(backend, sockdir, monkeypatch):
    monkeypatch.setattr(backstage, "_peer_uid", lambda conn: os.getuid() + 1)
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"))

    with Running(engine):
        client = Client(engine.inspector_path)
        assert client.file.readline() == b""          # closed without a snapshot
        client.close()


@pytest.mark.skipif(not hasattr(socket, "SO_PEERCRED"), reason="SO_PEERCRED is Linux-only")
def test_peer_credentials_name_this_user():
    left, right = socket.socketpair(socket.AF_UNIX)

    assert backstage._peer_uid(left) == os.getuid()
    left.close()
    right.close()


def test_the_feed_does_not_keep_run_going(backend, sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"),
                    inspector_interval=0.01)
    rec = engine.spawn_actor(Recorder, id="r")
    client = Client(engine.inspector_path)
    engine.send("r", "only message")

    runner = threading.Thread(target=engine.run, daemon=True)
    runner.start()
    runner.join(DEADLINE)

    assert not runner.is_alive(), "run() kept going for the feed's own socket and timer"
    assert rec.messages == ["only message"]
    client.close()
    engine.close()


class _StandIns:
    """A transport whose stand-ins keep what they would send to another engine."""

    def __init__(self, engine):
        self.engine = engine
        self.sent = []

    def resolve(self, target_id):
        return self.engine._install_stand_in(target_id, lambda ctx, items: self.sent.extend(items))


def test_stand_ins_are_not_actor_rows_and_a_cluster_engine_counts_what_they_forward(
        backend, sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "s.sock"))
    transport = _StandIns(engine)
    engine.attach_transport(transport)
    engine.spawn_actor(Recorder, id="here")
    for i in range(3):
        engine.send("elsewhere", i)
    engine.send("here", "x")
    engine.run()
    feed = engine._inspector
    feed._sample()
    alone = feed.snapshot()
    feed.cluster = {"name": "c", "engine": 1, "engines": 2}
    in_cluster = feed.snapshot()
    engine.close()

    assert len(transport.sent) == 3
    assert [r["id"] for r in alone["actors"]] == ["here"]
    assert alone["engine"]["actors"] == 1 and alone["engine"]["messages_total"] == 1
    assert "cluster" not in alone["engine"]
    assert in_cluster["engine"]["cluster"] == {"name": "c", "engine": 1, "engines": 2,
                                               "sent_to_other_engines": 3}
