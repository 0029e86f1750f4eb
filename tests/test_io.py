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
