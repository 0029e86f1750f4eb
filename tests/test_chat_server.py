"""The example chat server, with real sockets on 127.0.0.1, on every backend."""

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest
from conftest import ROOT, default_sigint

from backstage import Engine

sys.path.insert(0, str(ROOT / "examples"))
import chat_server  # noqa: E402

TIMEOUT = 60     # seconds; generous, only ever reached when something hangs
CLIENTS = 200
LINES = 100


class _Started:
    """Sets ``event`` on its first message: the engine thread is running."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.event = None
        ctx.send_after(0, ctx.actor_id, "started")

    def receive(self, envelope):
        self.event.set()


@contextlib.contextmanager
def serving(backend, **limits):
    """A chat server on an engine that runs in a thread; yields (engine, address)."""
    engine = Engine(backend=backend)
    address = chat_server.start_server(engine, "127.0.0.1", 0, **limits)
    started = threading.Event()
    engine.spawn_actor(_Started, id="started").event = started
    runner = threading.Thread(target=engine.run_forever, name="engine")
    runner.start()
    try:
        assert started.wait(TIMEOUT)
        yield engine, address
    finally:
        engine.stop()
        runner.join(TIMEOUT)
        engine.close()
    assert not runner.is_alive()


def connections(engine):
    return [actor_id for actor_id in engine.actor_ids if actor_id.startswith("chat/")]


def wait_until(condition, what):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.01)


class Client:
    """A blocking client socket that reads whole lines."""

    def __init__(self, address, recv_buffer=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if recv_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(address)
        self.pending = b""
        self.welcome = self.read_line()
        assert self.welcome.startswith(b"* welcome chat/")

    def send(self, data):
        self.sock.sendall(data)

    def read_line(self):
        while b"\n" not in self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"the server closed the connection; unread: {self.pending!r}")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line

    def read_lines(self, count):
        """Exactly ``count`` lines, read in big chunks."""
        return self.read_block(count).split(b"\n")

    def read_block(self, count):
        """The next ``count`` lines as one bytes object, without the last newline."""
        chunks = [self.pending]
        have = self.pending.count(b"\n")
        while have < count:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError(f"the server closed the connection after {have} lines")
            chunks.append(chunk)
            have += chunk.count(b"\n")
        data = b"".join(chunks)
        end = -1
        for _ in range(count):
            end = data.index(b"\n", end + 1)
        self.pending = data[end + 1:]
        return data[:end]

    def read_to_end(self):
        """Everything until the server closes (or resets) the connection."""
        chunks = [self.pending]
        self.pending = b""
        try:
            while chunk := self.sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)

    def close(self):
        self.sock.close()


def test_two_hundred_clients_each_get_every_line_once_and_in_each_senders_order(backend):
    received = [None] * CLIENTS
    failures = []
    barrier = threading.Barrier(CLIENTS, timeout=TIMEOUT)

    def chat(index, address):
        try:
            client = Client(address)
            barrier.wait()                     # everybody has joined: nothing is missed
            for seq in range(LINES):
                client.send(b"%03d:%03d\n" % (index, seq))
            # One bytes object per client, split only when checked: 200 lists
            # of 20,000 lines each would take some 200 MB.
            received[index] = client.read_block(CLIENTS * LINES)
            client.close()
        except BaseException as exc:
            failures.append((index, exc))
            barrier.abort()

    with serving(backend) as (engine, address):
        threads = [threading.Thread(target=chat, args=(i, address)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 2)

    assert not failures, failures[:3]
    expected = {b"%03d" % i: [b"%03d:%03d" % (i, seq) for seq in range(LINES)]
                for i in range(CLIENTS)}
    for block in received:
        by_sender = defaultdict(list)
        for line in block.split(b"\n"):
            by_sender[line[:3]].append(line)
        assert by_sender == expected


def test_a_client_that_disconnects_leaves_and_the_others_go_on(backend):
    with serving(backend) as (engine, address):
        alice, bob = Client(address), Client(address)
        leaver, resetter = Client(address), Client(address)

        leaver.close()
        resetter.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        resetter.close()                         # linger 0: a reset, not a clean close
        wait_until(lambda: len(connections(engine)) == 2, "the two leavers are gone")
        alice.send(b"still here?\n")

        assert alice.read_line() == b"still here?"
        assert bob.read_line() == b"still here?"
        alice.close()
        bob.close()


def test_a_half_closed_client_gets_its_lines_back_then_the_server_closes(backend):
    with serving(backend) as (engine, address):
        quitter, stayer = Client(address), Client(address)

        quitter.send(b"one\ntwo without a newline")
        quitter.sock.shutdown(socket.SHUT_WR)

        assert quitter.read_to_end() == b"one\ntwo without a newline\n"
        assert stayer.read_lines(2) == [b"one", b"two without a newline"]
        wait_until(lambda: len(connections(engine)) == 1, "the quitter is gone")
        stayer.send(b"alone now\n")
        assert stayer.read_line() == b"alone now"
        quitter.close()
        stayer.close()


def test_a_megabyte_without_a_newline_is_dropped_with_one_error_line(backend):
    # The flooder sends 1 MB in two halves; between them the other client
    # chats and is served.
    half = b"x" * (1 << 19)
    with serving(backend, max_line=1000) as (engine, address):
        flooder, other = Client(address), Client(address)

        flooder.send(half)
        other.send(b"meanwhile\n")
        assert other.read_line() == b"meanwhile"
        flooder.send(half + b"\nafter the flood\n")

        assert sorted(flooder.read_lines(2)) == [
            b"* error: line longer than 1000 bytes; it was dropped", b"meanwhile"]
        assert flooder.read_line() == b"after the flood"
        assert other.read_line() == b"after the flood"
        flooder.close()
        other.close()


def test_an_overlong_line_that_arrives_whole_is_dropped_and_its_neighbours_kept(backend):
    with serving(backend, max_line=1000) as (engine, address):
        client = Client(address)

        client.send(b"before\n" + b"y" * 1001 + b"\nafter\n")

        lines = [client.read_line() for _ in range(3)]
        assert sorted(lines) == [b"* error: line longer than 1000 bytes; it was dropped",
                                 b"after", b"before"]
        assert lines.index(b"before") < lines.index(b"after")
        client.close()


def test_a_slow_reader_is_disconnected_and_the_others_get_every_line(backend):
    # The slow client never reads; once 64 KiB wait for it past what the
    # kernel buffers, the server drops it.  The fast client reads the echo of
    # each batch before it sends the next, so it never falls behind.
    line = b"%06d " + b"z" * 93 + b"\n"          # 101 bytes
    batch = 200
    with serving(backend, max_buffer=1 << 16) as (engine, address):
        slow = Client(address, recv_buffer=4096)
        fast = Client(address)
        got = []

        seq = 0
        deadline = time.monotonic() + TIMEOUT
        while len(connections(engine)) == 2:
            assert time.monotonic() < deadline and seq < 1_000_000, "the slow one stays"
            fast.send(b"".join(line % n for n in range(seq, seq + batch)))
            got.extend(fast.read_lines(batch))
            seq += batch
        fast.send(b"after\n")
        assert fast.read_line() == b"after"
        slow_got = slow.read_to_end()

    assert [int(g[:6]) for g in got] == list(range(seq))
    assert len(slow_got) < seq * len(line % 0)
    slow.close()
    fast.close()


def test_start_server_rejects_a_bad_limit():
    engine = Engine()

    with pytest.raises(ValueError, match=r"^max_line must be a positive int of bytes, got 0$"):
        chat_server.start_server(engine, max_line=0)

    engine.close()


def test_the_chat_server_runs_as_a_program_and_stops_cleanly_on_sigint(backend):
    server = subprocess.Popen([sys.executable, str(ROOT / "examples" / "chat_server.py"),
                               "--port", "0", "--backend", backend],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=default_sigint)
    try:
        banner = server.stdout.readline()          # "chat server on HOST:PORT (backend); ..."
        host, port = banner.split()[3].split(":")
        client = Client((host, int(port)))
        client.send(b"hi\n")
        assert client.read_line() == b"hi"

        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=TIMEOUT)
    finally:
        server.kill()

    assert server.returncode == 0, err
    assert "Traceback" not in err
    assert out == "chat server stopped\n"
    assert client.read_to_end() == b""              # its connection was closed
    client.close()


# The server in a process of its own, limited to a few file descriptors; it
# logs to stderr and prints its port.
_LIMITED_SERVER = """
import logging, resource, sys
sys.path.insert(0, {examples!r}); sys.path.insert(0, {root!r})
import chat_server
from backstage import Engine
logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
engine = Engine(backend={backend!r})
host, port = chat_server.start_server(engine, "127.0.0.1", 0)
print(port, flush=True)
engine.run_forever()
"""


def test_a_server_out_of_file_descriptors_pauses_accepting_and_resumes(backend):
    script = _LIMITED_SERVER.format(examples=str(ROOT / "examples"), root=str(ROOT),
                                    backend=backend)
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    clients = []
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True)
    reader.start()
    try:
        port = int(server.stdout.readline())
        for _ in range(60):             # more than the server has descriptors for
            sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            clients.append(sock)
        wait_until(lambda: any("accept failed" in line for line in lines),
                   "the server runs out of file descriptors")
        time.sleep(1.0)                 # the window in which the old loop spun
        for sock in clients:
            sock.close()
        clients.clear()

        late = Client(("127.0.0.1", port))   # accepted once descriptors are free again
        late.sock.close()
    finally:
        for sock in clients:
            sock.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=TIMEOUT)
        reader.join(TIMEOUT)
    err = "".join(lines)

    failures = [line for line in err.splitlines() if "accept failed" in line]
    assert failures, "the server never ran out of file descriptors; nothing was tested"
    assert len(failures) <= 8, f"{len(failures)} 'accept failed' lines:\n" + \
        "\n".join(failures[:5])
    assert "accepting again after" in err
