"""The engine's side of issue 14 on real sockets and threads: per-actor restarts, failures,
dead letters, time in receive, inbox high-water; the stuck lines; slow callbacks; and the
socket directory fallback and shared first snapshot of issue 11 (items 11 and 12)."""

import dataclasses
import logging
import os
import shutil
import socket
import stat
import tempfile
import time

import pytest
from conftest import Recorder, Running, wait_for
from inspector_scenario import Dozing, Producer
from test_inspector_feed import Client, by_id
from test_transport_seam import Countdown, Full

import inspector_curses
from backstage import Engine, OneForOne

DEADLINE = 30.0


@pytest.fixture
def sockdir():
    path = tempfile.mkdtemp(prefix="bse-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def feed_engine(backend, sockdir, **kw):
    return Engine(backend=backend, inspector=os.path.join(sockdir, "e.sock"),
                  inspector_interval=0.05, **kw)


@dataclasses.dataclass
class Job:
    n: int


class Flaky:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        raise ValueError(f"flaky fails on {envelope.message}")


class Supervisor:
    supervisor = OneForOne(max_restarts=1000, within_s=60.0)

    def __init__(self, ctx):
        self.ctx = ctx
        ctx.spawn_child_actor(Flaky, id="sup/flaky")

    def receive(self, envelope):
        pass


class Sleeper:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        time.sleep(envelope.message)


@pytest.fixture
def quiet_failures(caplog):
    caplog.set_level(logging.CRITICAL, logger="backstage")


# -- per-actor figures ---------------------------------------------------------

def test_the_feed_counts_restarts_and_failures_per_actor_and_shows_the_strategy(
        backend, sockdir, quiet_failures):
    engine = feed_engine(backend, sockdir)
    engine.spawn_actor(Supervisor, id="sup")
    for n in range(3):
        engine.send("sup/flaky", n)

    with Running(engine):
        client = Client(engine.inspector_path)
        snap = client.snapshot(lambda s: by_id(s)["sup/flaky"]["restarts"] == 3)
        client.close()

    flaky, sup = by_id(snap)["sup/flaky"], by_id(snap)["sup"]
    assert flaky["failures"] == 3 and flaky["restarts"] == 3
    assert sup["failures"] == 0 and sup["restarts"] == 0
    assert sup["strategy"] == "OneForOne(max_restarts=1000, within_s=60.0, decider=None)"
    assert flaky["strategy"] is None
    assert snap["engine"]["failures"] == 3 and snap["engine"]["restarts"] == 3


class FailingCallbacks:
    """A timer that fails twice and a watch callback that fails once."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.ticks = 0
        self.r, self.w = socket.socketpair()
        self.w.send(b"x")
        ctx.watch_readable(self.r, self.readable)
        ctx.run_recurring(0.01, self.tick)

    def tick(self):
        self.ticks += 1
        if self.ticks <= 2:
            raise RuntimeError("a failing timer")

    def readable(self):
        self.r.recv(1)
        raise RuntimeError("a failing watch")

    def receive(self, envelope):
        pass

    def deinit(self):
        self.ctx.unwatch(self.r)
        self.r.close()
        self.w.close()


def test_the_feed_counts_failures_of_an_actors_timer_and_watch_callbacks(
        backend, sockdir, quiet_failures):
    engine = feed_engine(backend, sockdir)
    engine.spawn_actor(FailingCallbacks, id="cb")

    with Running(engine):
        client = Client(engine.inspector_path)
        snap = client.snapshot(lambda s: by_id(s)["cb"]["failures"] >= 3)
        client.close()

    assert by_id(snap)["cb"]["failures"] == 3 and by_id(snap)["cb"]["restarts"] == 0
    assert snap["engine"]["failures"] == 3


def test_dead_letters_after_a_poison_pill_are_listed_most_recent_first_and_counted(
        backend, sockdir):
    engine = feed_engine(backend, sockdir)
    engine.spawn_actor(Recorder, id="victim")
    engine.poison_pill("victim")
    for n in range(5):
        engine.send("victim", Job(n))
    engine.send("nobody", "typo")          # a dead letter at once, before the five

    with Running(engine):
        client = Client(engine.inspector_path)
        snap = client.snapshot(lambda s: len(s["engine"]["dead_letters_recent"]) == 6)
        client.close()

    eng = snap["engine"]
    recent = eng["dead_letters_recent"]
    assert [d["repr"] for d in recent] == [f"Job(n={n})" for n in (4, 3, 2, 1, 0)] + ["'typo'"]
    assert [d["type"] for d in recent] == ["Job"] * 5 + ["str"]
    assert [d["target"] for d in recent] == ["victim"] * 5 + ["nobody"]
    assert all(d["sender"] is None for d in recent)
    assert recent[0]["time"] >= recent[-1]["time"]
    assert eng["dead_letters_by_target"] == {"victim": 5, "nobody": 1}
    assert sum(eng["dead_letters_by_reason"].values()) == 6
    assert set(eng["dead_letters_by_reason"]) == {recent[0]["reason"], recent[-1]["reason"]}


def test_dead_letters_to_a_live_actor_count_on_its_row(backend, sockdir):
    engine = feed_engine(backend, sockdir)
    engine.spawn_actor(Recorder, id="small", capacity=2, overflow="drop")
    for n in range(10):
        engine.send("small", n)

    with Running(engine):
        client = Client(engine.inspector_path)
        snap = client.snapshot(lambda s: by_id(s)["small"]["dead_letters"] == 8)
        client.close()

    assert snap["engine"]["dead_letters"] == 8


class Unprintable:
    def __repr__(self):
        raise RuntimeError("no repr")


def test_a_dead_letters_repr_is_short_and_never_fails(backend, sockdir):
    engine = feed_engine(backend, sockdir)
    engine.send("nobody", "x" * 10_000)
    engine.send("nobody", Unprintable())

    with Running(engine):
        client = Client(engine.inspector_path)
        snap = client.snapshot(lambda s: len(s["engine"]["dead_letters_recent"]) == 2)
        client.close()

    bad, long = snap["engine"]["dead_letters_recent"]
    assert bad["repr"].startswith("<Unprintable") and bad["type"] == "Unprintable"
    assert len(long["repr"]) <= 120


def test_the_high_water_mark_shows_a_flood_the_drained_inbox_hides(backend, sockdir):
    engine = feed_engine(backend, sockdir)
    engine.spawn_actor(Sleeper, id="slow", capacity=100, overflow="drop")

    with Running(engine):
        client = Client(engine.inspector_path)
        client.snapshot()
        for _ in range(500):
            engine.send("slow", 0.0)
        snap = client.snapshot(lambda s: by_id(s)["slow"]["inbox_hwm"] == 100)
        later = client.snapshot(lambda s: by_id(s)["slow"]["inbox_hwm"] == 0)
        client.close()

    assert by_id(snap)["slow"]["overflow"] == "drop"
    assert by_id(later)["slow"]["inbox"] == 0
    assert snap["engine"]["dead_letters"] > 0


def test_the_feed_says_what_a_parked_actor_waits_on(backend, sockdir):
    engine = feed_engine(backend, sockdir)
    engine.spawn_actor(Dozing, id="dozing", capacity=1, overflow="block")
    engine.spawn_actor(Producer, id="producer")
    engine.spawn_actor(Recorder, id="idle")

    with Running(engine):
        client = Client(engine.inspector_path)
        engine.send("dozing", "sleep")
        client.snapshot(lambda s: by_id(s)["dozing"]["waiting_on"] == [{"on": "await"}])
        engine.send("producer", 3)          # one fits the inbox; two wait for room
        snap = client.snapshot(lambda s: by_id(s)["producer"]["waiting_on"] != [])
        client.close()

    rows = by_id(snap)
    assert rows["producer"]["waiting_on"] == [{"on": "room", "id": "dozing", "messages": 2}]
    assert rows["dozing"]["waiting_on"] == [{"on": "await"}]
    assert rows["idle"]["waiting_on"] == []
    assert snap["engine"]["waiting"] == 2


def test_the_feed_says_a_sender_held_by_a_full_link_waits_on_the_link(backend, sockdir):
    engine = feed_engine(backend, sockdir)
    engine.attach_transport(Full(engine))       # a link that stays full: its senders are held
    engine.spawn_actor(Countdown, id="countdown")

    with Running(engine):
        client = Client(engine.inspector_path)
        engine.send("countdown", 5)
        snap = client.snapshot(lambda s: by_id(s)["countdown"]["waiting_on"] != [])
        client.close()

    assert by_id(snap)["countdown"]["waiting_on"] == [{"on": "link", "id": "far"}]
    assert "far" not in by_id(snap)         # a stand-in is no actor row
    assert snap["engine"]["waiting"] == 1


def test_time_in_receive_tells_a_slow_actor_from_a_chatty_one(backend, sockdir):
    engine = feed_engine(backend, sockdir)
    engine.spawn_actor(Sleeper, id="slow")
    engine.spawn_actor(Recorder, id="chatty")

    with Running(engine):
        client = Client(engine.inspector_path)
        client.snapshot()
        for _ in range(10):
            engine.send("slow", 0.05)
        for n in range(2000):
            engine.send("chatty", n)
        snap = client.snapshot(lambda s: by_id(s)["slow"]["messages_total"] == 10
                               and by_id(s)["chatty"]["messages_total"] == 2000
                               and by_id(s)["slow"]["receive_s"] > 0)
        client.close()

    slow, chatty = by_id(snap)["slow"], by_id(snap)["chatty"]
    assert slow["receive_s"] > chatty["receive_s"]
    assert snap["engine"]["receive_s"] >= slow["receive_s"]
    for row in (slow, chatty):
        assert 0 <= row["busy_share"] <= 1 and row["receive_ms_per_s"] >= 0


# -- a stuck engine -------------------------------------------------------------

def test_a_blocking_receive_sends_stuck_then_unstuck_naming_the_actor(backend, sockdir):
    engine = feed_engine(backend, sockdir)
    engine.spawn_actor(Sleeper, id="blocker")

    with Running(engine):
        client = Client(engine.inspector_path)
        client.snapshot()
        engine.send("blocker", 3.0)
        stuck = client.until(lambda o: o["type"] == "stuck")
        unstuck = client.until(lambda o: o["type"] == "unstuck")
        client.close()

    assert stuck["v"] == 1
    assert stuck["actor"] == "blocker"
    assert stuck["callback"] == "receive of blocker"
    assert stuck["for_s"] >= 1.0 and stuck["since"] <= stuck["time"] - 1.0
    assert unstuck["for_s"] >= stuck["for_s"]


def _warnings_of_a_slow(actor_class, backend, caplog):
    """The WARNING records of a run in which ``actor_class`` ("slow") holds the
    engine thread for 1 s with slow_callback_s=0.2."""
    engine = Engine(backend=backend, slow_callback_s=0.2)
    engine.spawn_actor(actor_class, id="slow")
    engine.send("slow", 1.0)

    with caplog.at_level(logging.WARNING, logger="backstage"):
        engine.run()
        engine.close()

    return [r for r in caplog.records if r.levelno == logging.WARNING]


def test_a_slow_receive_is_logged_naming_the_actor(backend, caplog):
    warnings = _warnings_of_a_slow(Sleeper, backend, caplog)

    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("receive of slow has held the engine thread for ")
    assert "slow_callback_s=0.2" in warnings[0].getMessage()
    assert warnings[0].actor_id == "slow"


class AsyncSleeper:
    """Blocks the engine thread after its first await."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def receive(self, envelope):
        await self.ctx.sleep(0)
        time.sleep(envelope.message)


def test_an_async_receive_that_blocks_after_an_await_is_logged_naming_the_actor(backend,
                                                                                 caplog):
    warnings = _warnings_of_a_slow(AsyncSleeper, backend, caplog)

    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("receive of slow has held the engine thread")
    assert warnings[0].actor_id == "slow"


class Ticking:
    def __init__(self, ctx):
        self.ctx = ctx
        ctx.send_after(0.0, ctx.actor_id, "go")

    def receive(self, envelope):
        self.timer = self.ctx.run_recurring(0.01, self.block)

    def block(self):
        self.timer.cancel()
        time.sleep(1.0)


def test_a_slow_timer_callback_is_logged_naming_its_actor(backend, caplog):
    engine = Engine(backend=backend, slow_callback_s=0.2)
    engine.spawn_actor(Ticking, id="ticker")

    with caplog.at_level(logging.WARNING, logger="backstage"):
        engine.run()
        engine.close()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith(
        "Ticking.block of actor ticker has held the engine thread")
    assert warnings[0].actor_id == "ticker"


def test_slow_callback_s_none_starts_no_watchdog(backend):
    engine = Engine(backend=backend, slow_callback_s=None)
    engine.spawn_actor(Recorder, id="a")
    engine.send("a", 1)

    engine.run()

    assert engine._watchdog is None
    engine.close()


def test_the_watchdog_thread_ends_with_the_engine(backend):
    engine = Engine(backend=backend)
    engine.spawn_actor(Recorder, id="a")
    engine.send("a", 1)
    engine.run()
    thread = engine._watchdog._thread

    engine.close()

    assert not thread.is_alive()


@pytest.mark.parametrize("value, error, message", [
    ("1", TypeError, r"^slow_callback_s needs a number of seconds or None, not '1': "
                     r"write Engine\(slow_callback_s=1.0\)"),
    (True, TypeError, r"^slow_callback_s needs a number of seconds or None, not True"),
    (0, ValueError, r"^slow_callback_s needs seconds above 0 and finite, got 0; pass None"),
    (float("inf"), ValueError, r"^slow_callback_s needs seconds above 0 and finite, got inf"),
    (float("nan"), ValueError, r"^slow_callback_s needs seconds above 0 and finite, got nan"),
])
def test_a_bad_slow_callback_s_is_refused_at_the_call(value, error, message):
    with pytest.raises(error, match=message):
        Engine(slow_callback_s=value)


# -- the socket directory (issue 11, item 11) --------------------------------------

def test_a_socket_directory_made_by_someone_else_gives_a_fresh_private_one(
        backend, sockdir, monkeypatch, caplog):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", sockdir)
    planted = os.path.join(sockdir, f"backstage-{os.getuid()}")
    os.mkdir(planted, 0o777)
    if os.getuid() == 0:
        os.chown(planted, 65534, 65534)
    else:
        os.rmdir(planted)
        open(planted, "w").close()         # not a directory: as good as someone else's

    with caplog.at_level(logging.WARNING, logger="backstage"):
        engine = Engine(backend=backend, inspector=True)
    directory = os.path.dirname(engine.inspector_path)
    found = inspector_curses.find_engines()
    engine.close()

    assert directory.startswith(planted + "-")
    assert [e.path for e in found] == [engine.inspector_path]
    assert any(f"using the fresh private directory {directory} instead" in r.getMessage()
               for r in caplog.records)
    assert not os.path.exists(directory)


def test_the_fresh_directory_is_private(backend, sockdir, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", sockdir)
    open(os.path.join(sockdir, f"backstage-{os.getuid()}"), "w").close()

    engine = Engine(backend=backend, inspector=True)
    info = os.stat(os.path.dirname(engine.inspector_path))
    engine.close()

    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()


# -- new clients share one snapshot (issue 11, item 12) ---------------------------

def test_clients_accepted_in_one_tick_share_one_snapshot(backend, sockdir):
    engine = feed_engine(backend, sockdir)
    feed = engine._inspector
    built = []
    original = feed.snapshot_line
    feed.snapshot_line = lambda: built.append(1) or original()

    engine.spawn_actor(Recorder, id="a")
    first = feed._line_for_new_clients()
    second = feed._line_for_new_clients()
    engine.send("a", 1)
    engine.run()                       # the loop turns: the next tick builds anew
    third = feed._line_for_new_clients()
    engine.close()

    assert first is second and len(built) == 2 and third is not first


def test_many_clients_at_once_each_get_a_snapshot_for_less_than_one_build_each(backend,
                                                                              sockdir):
    engine = Engine(backend=backend, inspector=os.path.join(sockdir, "e.sock"),
                    inspector_interval=3600)
    engine.spawn_actor(Recorder, id="a")
    feed = engine._inspector
    built = []
    original = feed.snapshot_line
    feed.snapshot_line = lambda: built.append(1) or original()

    with Running(engine):
        socks = []
        for _ in range(48):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(engine.inspector_path)    # blocking: waits while the backlog is full
            sock.settimeout(DEADLINE)
            socks.append(sock)
        lines = [sock.makefile("rb").readline() for sock in socks]
        wait_for(lambda: feed.clients == 48, "48 clients")
        for sock in socks:
            sock.close()

    assert all(line.startswith(b'{"v":1,"type":"snapshot"') for line in lines)
    assert len(built) < 48
