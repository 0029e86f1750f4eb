"""A TCP chat server written as actors.

    python examples/chat_server.py --port 7000        # then: nc 127.0.0.1 7000

Every line a client sends goes to every connected client, itself included,
in the order that client sent them.

- The listener actor ("chat") owns the listening socket.  When it is readable
  it accepts every waiting connection and spawns one child actor per
  connection ("chat/1", "chat/2", ...).
- A connection actor reads lines from its socket and hands them to the
  listener, which publishes them on its "lines" topic; every connection actor
  subscribes to that topic and writes what it gets to its client.  (A topic
  belongs to the actor that publishes it, so one hub topic means n
  subscriptions, where every connection publishing on its own would need n*n.)
- Everything runs on the engine's thread, so no state here has a lock.

Bad clients:

- a client that disconnects, or resets, leaves; the others go on;
- a client that half-closes (``shutdown(SHUT_WR)``) still gets every line
  published before its end of input was read, its own included, and then the
  server closes the connection; a last line without a newline is kept;
- a line longer than ``max_line`` bytes (say 1 MB without a newline) is
  dropped, and the client gets one error line back; it may go on chatting;
- a client that reads slower than the others write is disconnected once
  ``max_buffer`` bytes wait for it (on top of what the kernel buffers).

Import it to embed the server: ``start_server(engine, port=0)`` returns the
bound address; run the engine as usual.
"""

from __future__ import annotations

import argparse
import errno
import logging
import re
import socket
import sys
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # backstage.py beside examples/

import backstage  # noqa: E402
from backstage import Engine, Envelope, MessageType  # noqa: E402

__all__ = ["start_server", "Listener", "Connection", "MAX_LINE", "MAX_BUFFER"]

log = logging.getLogger("chat_server")

TOPIC = "lines"             # the listener's topic every connection subscribes to
MAX_LINE = 4096             # bytes in a line, newline not counted
MAX_BUFFER = 1 << 20        # bytes waiting for a client before it counts as too slow
RECV_SIZE = 65536
ACCEPT_BATCH = 64           # connections accepted per wake-up, so other actors get turns
# Out of file descriptors (or kernel memory), accept() fails at once again and
# again: the listener stops watching its socket for a pause that doubles from
# the first to the last, then resumes, as servers do.  Unpaused, it logged tens
# of thousands of "accept failed" lines per second and starved every client.
ACCEPT_PAUSE_FIRST = 0.05   # seconds
ACCEPT_PAUSE_LAST = 2.0     # seconds
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Listen(NamedTuple):
    """start_server -> listener: the bound socket and the limits for its connections."""
    sock: socket.socket
    max_line: int
    max_buffer: int


class Attach(NamedTuple):
    """listener -> new connection: your socket."""
    sock: socket.socket
    max_line: int
    max_buffer: int


# connection -> listener: my client sends no more; listener -> connection: every
# line published before your LEAVING is in your inbox, ahead of this CLOSE.
LEAVING = "leaving"
CLOSE = "close"
# listener -> itself: the pause after running out of file descriptors is over.
RESUME_ACCEPTING = "resume accepting"


class Listener:
    """Accepts connections, spawns a Connection child for each, publishes their lines."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx
        self.sock: socket.socket | None = None
        self.limits: tuple[int, int] = (MAX_LINE, MAX_BUFFER)
        self.accepted = 0
        self.pause = 0.0            # seconds of the current accept pause; 0: accepting
        self.failed = 0             # accepts that failed since the last one that worked

    def receive(self, envelope: Envelope) -> None:
        message = envelope.message
        if message.__class__ is bytes:          # complete lines from a connection
            self.ctx.publish_to_topic(TOPIC, message)
        elif message == LEAVING:
            assert envelope.sender_id is not None   # a Connection sent it
            self.ctx.send(envelope.sender_id, CLOSE)
        elif message == RESUME_ACCEPTING:
            if self.sock is not None and self.sock.fileno() != -1:
                self.ctx.watch_readable(self.sock, self.on_acceptable)
        elif isinstance(message, Listen):
            self.sock = message.sock
            self.limits = (message.max_line, message.max_buffer)
            self.ctx.watch_readable(self.sock, self.on_acceptable)

    def on_acceptable(self) -> None:
        assert self.sock is not None             # watched once Listen set it
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.accept_failed(exc)
                return
            if self.pause:
                log.warning("accepting again after %d failed accepts", self.failed)
                self.pause, self.failed = 0.0, 0
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted += 1
            conn_id = f"{self.ctx.actor_id}/{self.accepted}"
            self.ctx.spawn_child_actor(Connection, id=conn_id)
            self.ctx.send(conn_id, Attach(sock, *self.limits))

    def accept_failed(self, exc: OSError) -> None:
        """Out of file descriptors or memory: pause accepting, log once per pause."""
        self.failed += 1
        if exc.errno not in OUT_OF_RESOURCES:
            log.warning("accept failed: %s", exc)
            return
        first = self.pause == 0.0
        self.pause = min(ACCEPT_PAUSE_LAST, self.pause * 2 or ACCEPT_PAUSE_FIRST)
        if first or self.pause < ACCEPT_PAUSE_LAST:
            log.warning("accept failed: %s; pausing accepts for %.2f s (%d failed so far)",
                        exc, self.pause, self.failed)
        self.ctx.unwatch(self.sock)
        self.ctx.send_after(self.pause, self.ctx.actor_id, RESUME_ACCEPTING)

    def deinit(self) -> None:
        if self.sock is not None:
            self.ctx.unwatch(self.sock)          # before close: a closed socket has no fd
            self.sock.close()


class Connection:
    """One client: reads its lines for the listener, writes the published lines to it."""

    def __init__(self, ctx: backstage.Context) -> None:
        assert ctx.parent is not None, "a Connection is spawned by the Listener"
        self.ctx = ctx
        self.listener: str = ctx.parent
        self.sock: socket.socket | None = None
        self.max_line = MAX_LINE
        self.max_buffer = MAX_BUFFER
        self.too_long = re.compile(rb"[^\n]{%d}" % (MAX_LINE + 1))
        self.partial = b""          # the start of a line whose newline has not come yet
        self.dropping = False       # inside an overlong line: drop up to its newline
        self.out = bytearray()      # bytes the client has not taken yet
        self.writing = False        # watching the socket for writability
        self.leaving = False        # the client sends no more: flush, then close
        self.closed = False

    def receive(self, envelope: Envelope) -> None:
        message = envelope.message
        if envelope.message_type is MessageType.PUBLISH:
            if not self.closed:
                self.write(message)
        elif message == CLOSE:
            if not self.closed:
                self.leaving = True
                self.ctx.unsubscribe_from_actor_topic(self.listener, TOPIC)
                if not self.out:
                    self.close()
        elif isinstance(message, Attach):
            self.sock = message.sock
            self.max_line, self.max_buffer = message.max_line, message.max_buffer
            self.too_long = re.compile(rb"[^\n]{%d}" % (self.max_line + 1))
            self.ctx.subscribe_to_actor_topic(self.listener, TOPIC)
            self.ctx.watch_readable(self.sock, self.on_readable)
            self.write(b"* welcome %s\n" % self.ctx.actor_id.encode())

    # -- reading -------------------------------------------------------------

    def on_readable(self) -> None:
        assert self.sock is not None             # watched once Attach set it
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:                          # reset by the client
            self.close()
            return
        if data:
            self.take(data)
            return
        # End of input: the client may still read (a half-close).  A last line
        # without its newline still counts.
        self.ctx.unwatch_readable(self.sock)
        if self.partial and not self.dropping:
            self.ctx.send(self.listener, self.partial + b"\n")
        self.partial = b""
        self.ctx.send(self.listener, LEAVING)

    def take(self, data: bytes) -> None:
        """Hand the complete lines in ``data`` to the listener; keep the rest."""
        if self.dropping:
            newline = data.find(b"\n")
            if newline < 0:
                return
            data = data[newline + 1:]
            self.dropping = False
        if self.partial:
            data = self.partial + data
        end = data.rfind(b"\n") + 1
        lines, self.partial = data[:end], data[end:]
        if len(lines) > self.max_line and self.too_long.search(lines):
            lines = self.drop_long_lines(lines)
        if len(self.partial) > self.max_line:
            self.partial = b""
            self.dropping = True
            self.refuse_line()
        if lines:
            self.ctx.send(self.listener, lines)

    def drop_long_lines(self, lines: bytes) -> bytes:
        kept = []
        for line in lines.split(b"\n")[:-1]:
            if len(line) > self.max_line:
                self.refuse_line()
            else:
                kept.append(line + b"\n")
        return b"".join(kept)

    def refuse_line(self) -> None:
        self.write(b"* error: line longer than %d bytes; it was dropped\n" % self.max_line)

    # -- writing -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the client; it is sent when the socket is writable."""
        out = self.out
        out += data
        if len(out) > self.max_buffer:
            log.info("%s reads too slowly (%d bytes wait for it): disconnected",
                     self.ctx.actor_id, len(out))
            self.close()
        elif not self.writing:
            # Written on the next poll, not now: the lines published in this
            # tick go out in one send() call.
            self.writing = True
            self.ctx.watch_writable(self.sock, self.on_writable)

    def on_writable(self) -> None:
        assert self.sock is not None             # watched once Attach set it
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:                          # the client is gone
            self.close()
            return
        del self.out[:sent]
        if not self.out:
            self.writing = False
            self.ctx.unwatch_writable(self.sock)
            if self.leaving:
                self.close()

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.out.clear()
        assert self.sock is not None             # closed only once attached
        self.ctx.unwatch(self.sock)              # before close: a closed socket has no fd
        self.sock.close()
        self.ctx.shutdown()

    def deinit(self) -> None:
        if self.sock is not None and not self.closed:
            self.closed = True
            self.ctx.unwatch(self.sock)
            self.sock.close()


def start_server(engine: Engine, host: str = "127.0.0.1", port: int = 0, *,
                 id: str = "chat", max_line: int = MAX_LINE, max_buffer: int = MAX_BUFFER,
                 backlog: int = 1024) -> tuple[str, int]:
    """Listen on ``host:port`` (0: any free port) and return the bound address.

    Binding happens here, so a port in use raises here.  The listener actor
    ``id`` then serves on ``engine``, from whichever thread runs it.
    """
    for name, value in (("max_line", max_line), ("max_buffer", max_buffer)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int of bytes, got {value!r}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
        engine.spawn_actor(Listener, id=id)
        engine.send(id, Listen(sock, max_line, max_buffer))
    except BaseException:
        sock.close()
        raise
    host, port = sock.getsockname()[:2]
    return host, port


def main(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description="A TCP chat server written as actors.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--backend", default="selectors", choices=list(backstage.BACKENDS))
    parser.add_argument("--max-line", type=int, default=MAX_LINE)
    parser.add_argument("--max-buffer", type=int, default=MAX_BUFFER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    with Engine(backend=args.backend) as engine:
        host, port = start_server(engine, args.host, args.port,
                                  max_line=args.max_line, max_buffer=args.max_buffer)
        print(f"chat server on {host}:{port} ({args.backend}); Ctrl-C stops it", flush=True)
        engine.run_forever()                     # Ctrl-C or SIGTERM: closes every connection
    print("chat server stopped", flush=True)


if __name__ == "__main__":
    main()
