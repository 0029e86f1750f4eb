"""What the inspector feed costs the engine.

    python bench/bench_inspector.py [--messages 1000000] [--runs 5] [--backend selectors]

1. Burst throughput (``engine.send`` N messages to one actor, then ``run()``)
   and ping-pong (two actors bouncing N messages): messages/s with the
   inspector off, on with no client, and on with a client (another process)
   reading every snapshot; and "no watchdog", off with
   ``slow_callback_s=None`` (no watchdog thread at all), to show what the
   watchdog costs.  The modes are measured in one process run, in rotating
   order, and the median of the runs is reported as a ratio to "off" (the
   target: at most 5% loss, a ratio of 0.95 or more).
2. Snapshot cost with 1,000 actors: sampling the counters, and building the
   JSON line, in milliseconds (each happens once per interval, 0.5 s by default).

Standalone: it needs only backstage.py (and backends/ for other backends).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import backstage  # noqa: E402

READER = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
while s.recv(1 << 16):
    pass
"""


class Player:
    def __init__(self, ctx):
        self.ctx = ctx
        self.other = "pong" if ctx.actor_id == "ping" else "ping"
        self.limit = 0
        self.count = 0

    def receive(self, envelope):
        self.count += 1
        if envelope.message < self.limit:
            self.ctx.send(self.other, envelope.message + 1)


class Sink:
    def __init__(self, ctx):
        self.ctx = ctx
        self.count = 0

    def receive(self, envelope):
        self.count += 1


def burst(mode: str, messages: int, backend: str, directory: str, interval: float,
          idle: int, pattern: str = "burst") -> tuple[float, int]:
    """Messages/s of one burst, and the snapshots taken during it.

    mode is "no watchdog", "off", "no client" or "client"; pattern "burst" or
    "ping-pong".  ``idle`` idle actors sit beside
    the sink in every mode, so each snapshot has that many rows to build.
    """
    path = os.path.join(directory, "bench.sock")
    feed_off = mode in ("off", "no watchdog")
    engine = backstage.Engine(backend=backend, inspector=False if feed_off else path,
                              inspector_interval=interval,
                              slow_callback_s=None if mode == "no watchdog" else 1.0)
    reader = None
    try:
        for n in range(idle):
            engine.spawn_actor(Sink, id=f"idle-{n:05d}", capacity=64)
        sink = engine.spawn_actor(Sink, id="sink", capacity=messages)
        ping = engine.spawn_actor(Player, id="ping")
        pong = engine.spawn_actor(Player, id="pong")
        if mode == "client":
            reader = subprocess.Popen([sys.executable, "-c", READER, path])
            deadline = time.monotonic() + 30
            while engine._inspector.clients == 0:     # let run() accept it
                engine.send("sink", -1)
                engine.run()
                time.sleep(0.005)
                if time.monotonic() > deadline:
                    raise RuntimeError("the reading client did not connect")
        engine.run()            # starts the watchdog, as a long-running program has it
        before = sink.count
        seq_before = engine._inspector.seq if engine._inspector else 0
        send = engine.send
        gc.collect()
        start = time.perf_counter()
        if pattern == "burst":
            for i in range(messages):
                send("sink", i)
            engine.run()
        else:
            ping.limit = pong.limit = messages
            send("ping", 1)
            engine.run()
        elapsed = time.perf_counter() - start
        if pattern == "burst":
            assert sink.count - before == messages
        else:
            assert ping.count + pong.count == messages
        snapshots = (engine._inspector.seq if engine._inspector else 0) - seq_before
        return messages / elapsed, snapshots
    finally:
        engine.close()
        if reader is not None:
            reader.wait(30)


def snapshot_cost(actors: int, backend: str, directory: str, reps: int = 40) -> dict:
    engine = backstage.Engine(backend=backend, inspector=os.path.join(directory, "snap.sock"))
    try:
        for n in range(actors):
            engine.spawn_actor(Sink, id=f"actor-{n:05d}", capacity=64)
        for n in range(actors):
            for _ in range(3):
                engine.send(f"actor-{n:05d}", n)
        engine.run()
        feed = engine._inspector
        sample, build = [], []
        line = b""
        for _ in range(reps):
            t0 = time.perf_counter()
            feed._sample()
            t1 = time.perf_counter()
            line = feed.snapshot_line()
            t2 = time.perf_counter()
            sample.append((t1 - t0) * 1e3)
            build.append((t2 - t1) * 1e3)
        return {"sample_ms": statistics.median(sample), "build_ms": statistics.median(build),
                "max_ms": max(s + b for s, b in zip(sample, build, strict=True)),
                "bytes": len(line)}
    finally:
        engine.close()


def report(pattern: str, args: argparse.Namespace, modes: list[str],
           results: dict[str, list[float]], snapshots: dict[str, list[int]]) -> None:
    off = statistics.median(results["off"])
    what = "bursts of" if pattern == "burst" else "ping-pong of"
    print(f"inspector cost: backend {args.backend}, {what} {args.messages:,} messages beside "
          f"{args.actors:,} idle actors, snapshots every {args.interval} s, "
          f"median of {args.runs} runs, Python {sys.version.split()[0]}")
    labels = {"no watchdog": "off, slow_callback_s=None", "off": "inspector off",
              "no client": "on, no client", "client": "on, a client reading"}
    for mode in modes:
        median = statistics.median(results[mode])
        spread = f"{min(results[mode]) / 1e6:.2f}-{max(results[mode]) / 1e6:.2f}"
        print(f"  {labels[mode]:<26} {median / 1e6:6.2f} M msgs/s  (runs {spread})  "
              f"ratio {median / off:.3f}  snapshots in the run {min(snapshots[mode])}"
              f"-{max(snapshots[mode])}")


def write_cell(args: argparse.Namespace, pattern: str, results: dict[str, list[float]]) -> None:
    """Append the runs as a bench/run.py cell, so the targets table can judge them."""
    scenario = "inspector" if pattern == "burst" else "inspector_ping_pong"
    cell = {"impl": f"backstage/{args.backend}", "scenario": scenario,
            "sizes": {"messages": args.messages, "idle_actors": args.actors},
            "interval_s": args.interval,
            "runs": [{"no_watchdog": results["no watchdog"][i], "off": results["off"][i],
                      "no_client": results["no client"][i], "client": results["client"][i]}
                     for i in range(args.runs)]}
    with open(args.cells, "a") as f:
        f.write(json.dumps(cell) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--actors", type=int, default=1000)
    parser.add_argument("--backend", default="selectors", choices=list(backstage.BACKENDS))
    parser.add_argument("--interval", type=float, default=0.05,
                        help="seconds between snapshots during the bursts (the default is "
                             "10 times as often as the engine's, to be pessimistic)")
    parser.add_argument("--pattern", choices=["burst", "ping-pong", "both"], default="both")
    parser.add_argument("--cells", default=None,
                        help="also write each pattern's runs as a bench/run.py cell (a JSON "
                             "line) here: scenario inspector (burst), inspector_ping_pong")
    args = parser.parse_args(argv)

    modes = ["no watchdog", "off", "no client", "client"]
    patterns = ["burst", "ping-pong"] if args.pattern == "both" else [args.pattern]
    with tempfile.TemporaryDirectory(prefix="bsb-", dir="/tmp") as directory:
        for pattern in patterns:
            results: dict[str, list[float]] = {m: [] for m in modes}
            snapshots: dict[str, list[int]] = {m: [] for m in modes}
            for run in range(args.runs):
                k = run % len(modes)
                for mode in modes[k:] + modes[:k]:   # rotate, so drift hits every mode
                    rate, taken = burst(mode, args.messages, args.backend, directory,
                                        args.interval, args.actors, pattern)
                    results[mode].append(rate)
                    snapshots[mode].append(taken)
            report(pattern, args, modes, results, snapshots)
            if args.cells:
                write_cell(args, pattern, results)
        snap = snapshot_cost(args.actors, args.backend, directory)

    interval_ms = backstage.INSPECTOR_INTERVAL * 1e3
    print(f"snapshot with {args.actors:,} actors: sampling {snap['sample_ms']:.2f} ms, "
          f"JSON line {snap['build_ms']:.2f} ms ({snap['bytes'] / 1024:.0f} KiB), "
          f"worst {snap['max_ms']:.2f} ms; "
          f"{(snap['sample_ms'] + snap['build_ms']) / interval_ms:.1%} of a "
          f"{interval_ms:.0f} ms interval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
