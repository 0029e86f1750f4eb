"""Lines per second through the example chat server, with 200 clients.

    python bench/bench_chat.py [--clients 200] [--lines 500] [--runs 5] [--batch]

The server runs as its own process (python examples/chat_server.py) on each
backend in turn, so it does not share a GIL with the clients; the clients
are threads of this process with blocking sockets on 127.0.0.1.  Once all
have joined, each sends --lines lines and reads until it has every line of
every client.  Each line goes out in its own sendall() (as people chat),
or, with --batch, all of a client's lines in one.  Reported, median of
--runs runs:

- lines in/s: lines the server read from clients, per second;
- lines out/s: lines it delivered to clients (clients x lines in), per second.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def start_server(backend: str) -> tuple[subprocess.Popen, tuple[str, int]]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "chat_server.py"), "--port", "0",
         "--backend", backend, "--max-buffer", str(64 << 20)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()     # "chat server on HOST:PORT (backend); ..."
    host, port = line.split()[3].split(":")
    return process, (host, int(port))


def one_run(address: tuple[str, int], clients: int, lines: int, batch: bool) -> float:
    """Seconds from the moment every client has joined to the last line delivered."""
    expected = clients * lines
    barrier = threading.Barrier(clients + 1, timeout=TIMEOUT)
    done = [0.0] * clients
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            with socket.create_connection(address, timeout=TIMEOUT) as sock:
                pending = b""
                while b"\n" not in pending:          # the welcome line: joined
                    pending += sock.recv(4096)
                pending = pending.partition(b"\n")[2]
                payload = [b"%05d:%05d chat line\n" % (index, seq) for seq in range(lines)]
                if batch:
                    payload = [b"".join(payload)]
                barrier.wait()
                for data in payload:
                    sock.sendall(data)
                seen = pending.count(b"\n")
                while seen < expected:
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        raise EOFError(f"client {index}: closed after {seen} lines")
                    seen += chunk.count(b"\n")
                done[index] = time.perf_counter()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join(TIMEOUT)
    if errors:
        raise errors[0]
    return max(done) - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", action="store_true",
                        help="each client sends all its lines in one sendall()")
    args = parser.parse_args(argv)

    backends = ["selectors", "asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        backends.append("uvloop")
    how = "all in one sendall()" if args.batch else "one sendall() per line"
    print(f"{args.clients} clients x {args.lines} lines each ({how}), "
          f"median of {args.runs} runs")
    print(f"{'backend':<10} {'lines in/s':>12} {'lines out/s':>13}")
    for backend in backends:
        process, address = start_server(backend)
        try:
            seconds = statistics.median(one_run(address, args.clients, args.lines, args.batch)
                                        for _ in range(args.runs))
        finally:
            # SIGTERM, not SIGINT: a shell without job control starts background
            # commands with SIGINT ignored, so `make bench-full &` never stopped it.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(TIMEOUT)
            finally:
                if process.poll() is None:
                    process.kill()
        lines_in = args.clients * args.lines / seconds
        print(f"{backend:<10} {lines_in:>12,.0f} {lines_in * args.clients:>13,.0f}", flush=True)


if __name__ == "__main__":
    main()
