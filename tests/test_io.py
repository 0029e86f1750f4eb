"""Actors that watch file descriptors."""

import socket
import threading

from conftest import Recorder


class LineReader:
    """Reads from one end of a socketpair and sends what it reads to 'rec'."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.sock = None

    def receive(self, envelope):
        self.sock = envelope.message
        self.ctx.watch_readable(self.sock, self.on_readable)

    def on_readable(self):
        data = self.sock.recv(4096)
        if not data:
            self.ctx.unwatch(self.sock)
            return
        self.ctx.send("rec", data)


def test_a_watched_socket_calls_back_and_run_waits_until_it_is_unwatched(engine):
    rec = engine.spawn_actor(Recorder, id="rec")
    engine.spawn_actor(LineReader, id="reader")
    a, b = socket.socketpair()

    engine.send("reader", b)
    a.sendall(b"hello")
    rec.ctx.send_after(0.02, "rec", "timer")
    threading.Timer(0.05, a.close).start()
    engine.run()

    assert rec.messages[0] == b"hello"
    assert "timer" in rec.messages
    b.close()


def test_watches_end_with_their_actor(engine):
    engine.spawn_actor(Recorder, id="rec")
    reader = engine.spawn_actor(LineReader, id="reader")
    a, b = socket.socketpair()
    engine.send("reader", b)

    engine.poison_pill("reader")
    engine.run()                       # returns: the stopped actor's watch is gone

    assert reader.ctx._watches == {}
    a.close()
    b.close()


def test_writable_watch_calls_back_on_the_engine_thread(engine):
    class Writer:
        def __init__(self, ctx):
            self.ctx = ctx
            self.sock, self.peer = socket.socketpair()
            self.thread = None
            ctx.watch_writable(self.sock, self.on_writable)

        def on_writable(self):
            self.thread = threading.get_ident()
            self.sock.send(b"x")
            self.ctx.unwatch(self.sock)

        def receive(self, envelope):
            pass

    writer = engine.spawn_actor(Writer, id="w")
    engine.run()

    assert writer.thread == threading.get_ident()
    assert writer.peer.recv(10) == b"x"


class ClosesInDeinit(LineReader):
    """Closes its socket in deinit, while the engine still watches it."""

    def deinit(self):
        self.sock.close()


def test_a_socket_closed_in_deinit_does_not_shadow_the_next_socket_with_its_number(engine):
    # The fd number of the closed socket is reused by the next socket; a
    # registration left behind for the old one would keep the new one unpolled.
    engine.spawn_actor(Recorder, id="rec")
    engine.spawn_actor(ClosesInDeinit, id="first")
    a, b = socket.socketpair()
    number = b.fileno()
    engine.send("first", b)
    engine.poison_pill("first")
    engine.run()
    a.close()
    # New sockets take the lowest free numbers: make pairs until one has it.
    spare = []
    c, d = socket.socketpair()
    while number not in (c.fileno(), d.fileno()):
        spare.append((c, d))
        assert len(spare) < 1000, f"fd {number} was never reused"
        c, d = socket.socketpair()
    reused = c if c.fileno() == number else d
    other = d if reused is c else c
    for pair in spare:
        for sock in pair:
            sock.close()

    engine.spawn_actor(LineReader, id="second")
    engine.send("second", reused)
    other.sendall(b"still heard")
    threading.Timer(0.05, other.close).start()
    engine.run()

    assert engine.get_actor("rec").messages == [b"still heard"]
    reused.close()


def test_unwatch_writable_keeps_the_readable_watch(engine):
    class Both:
        def __init__(self, ctx):
            self.ctx = ctx
            self.sock, self.peer = socket.socketpair()
            self.writes = 0
            self.read = b""
            ctx.watch_readable(self.sock, self.on_readable)
            ctx.watch_writable(self.sock, self.on_writable)

        def on_writable(self):
            self.writes += 1
            self.ctx.unwatch_writable(self.sock)
            self.peer.sendall(b"ping")

        def on_readable(self):
            self.read += self.sock.recv(100)
            self.ctx.unwatch_readable(self.sock)

        def receive(self, envelope):
            pass

    both = engine.spawn_actor(Both, id="both")
    engine.run()                       # returns once both directions are unwatched

    assert both.writes == 1
    assert both.read == b"ping"
    assert both.ctx._watches == {}


def test_deinit_may_unwatch_when_close_comes_from_another_thread_than_the_run(engine):
    class Owner:
        def __init__(self, ctx):
            self.ctx = ctx
            self.sock, self.peer = socket.socketpair()
            self.unwatched = False
            ctx.watch_readable(self.sock, lambda: None)

        def receive(self, envelope):
            pass

        def deinit(self):
            self.ctx.unwatch(self.sock)
            self.unwatched = True
            self.sock.close()

    owner = engine.spawn_actor(Owner, id="owner")
    owner.ctx.run_recurring(0.001, engine.stop)     # stops the run once it is going
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    runner.join(10)

    engine.close()

    assert owner.unwatched
    owner.peer.close()
