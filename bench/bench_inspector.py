"""What the inspector feed costs the engine.

    python bench/bench_inspector.py [--messages 1000000] [--runs 5] [--backend selectors]

1. Burst throughput: ``engine.send`` N messages to one actor, then ``run()``;
   messages/s with the inspector off, on with no client, and on with a client
   (another process) reading every snapshot.  The three are measured in one
   process run, in rotating order, and the median of the runs is reported as a
   ratio to "off" (the target: at most 5% loss, a ratio of 0.95 or more).
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


class Sink:
    def __init__(self, ctx):
        self.ctx = ctx
        self.count = 0

    def receive(self, envelope):
        self.count += 1


def burst(mode: str, messages: int, backend: str, directory: str, interval: float,
          idle: int) -> tuple[float, int]:
    """Messages/s of one burst, and the snapshots taken during it.

    mode is "off", "no client" or "client".  ``idle`` idle actors sit beside
    the sink in every mode, so each snapshot has that many rows to build.
    """
    path = os.path.join(directory, "bench.sock")
    engine = backstage.Engine(backend=backend, inspector=False if mode == "off" else path,
                              inspector_interval=interval)
    reader = None
    try:
        for n in range(idle):
            engine.spawn_actor(Sink, id=f"idle-{n:05d}", capacity=64)
        sink = engine.spawn_actor(Sink, id="sink", capacity=messages)
        if mode == "client":
            reader = subprocess.Popen([sys.executable, "-c", READER, path])
            deadline = time.monotonic() + 30
            while engine._inspector.clients == 0:     # let run() accept it
                engine.send("sink", -1)
                engine.run()
                time.sleep(0.005)
                if time.monotonic() > deadline:
                    raise RuntimeError("the reading client did not connect")
        before = sink.count
        seq_before = engine._inspector.seq if engine._inspector else 0
        send = engine.send
        gc.collect()
        start = time.perf_counter()
        for i in range(messages):
            send("sink", i)
        engine.run()
        elapsed = time.perf_counter() - start
        assert sink.count - before == messages
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--actors", type=int, default=1000)
    parser.add_argument("--backend", default="selectors", choices=list(backstage.BACKENDS))
    parser.add_argument("--interval", type=float, default=0.05,
                        help="seconds between snapshots during the bursts (the default is "
                             "10 times as often as the engine's, to be pessimistic)")
    parser.add_argument("--cells", default=None,
                        help="also write the runs as a bench/run.py cell (a JSON line) here")
    args = parser.parse_args(argv)

    modes = ["off", "no client", "client"]
    results: dict[str, list[float]] = {m: [] for m in modes}
    snapshots: dict[str, list[int]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="bsb-", dir="/tmp") as directory:
        for run in range(args.runs):
            order = modes[run % 3:] + modes[:run % 3]      # rotate, so drift hits all three
            for mode in order:
                rate, taken = burst(mode, args.messages, args.backend, directory,
                                    args.interval, args.actors)
                results[mode].append(rate)
                snapshots[mode].append(taken)
        snap = snapshot_cost(args.actors, args.backend, directory)

    if args.cells:
        cell = {"impl": f"backstage/{args.backend}", "scenario": "inspector",
                "sizes": {"messages": args.messages, "idle_actors": args.actors},
                "interval_s": args.interval,
                "runs": [{"off": results["off"][i], "no_client": results["no client"][i],
                          "client": results["client"][i]} for i in range(args.runs)]}
        with open(args.cells, "a") as f:
            f.write(json.dumps(cell) + "\n")
    off = statistics.median(results["off"])
    print(f"inspector cost: backend {args.backend}, bursts of {args.messages:,} messages to one "
          f"actor beside {args.actors:,} idle ones, snapshots every {args.interval} s, "
          f"median of {args.runs} runs, Python {sys.version.split()[0]}")
    labels = {"off": "inspector off", "no client": "on, no client",
              "client": "on, a client reading"}
    for mode in modes:
        median = statistics.median(results[mode])
        spread = f"{min(results[mode]) / 1e6:.2f}-{max(results[mode]) / 1e6:.2f}"
        print(f"  {labels[mode]:<22} {median / 1e6:6.2f} M msgs/s  (runs {spread})  "
              f"ratio {median / off:.3f}  snapshots in the run {min(snapshots[mode])}"
              f"-{max(snapshots[mode])}")
    interval_ms = backstage.INSPECTOR_INTERVAL * 1e3
    print(f"snapshot with {args.actors:,} actors: sampling {snap['sample_ms']:.2f} ms, "
          f"JSON line {snap['build_ms']:.2f} ms ({snap['bytes'] / 1024:.0f} KiB), "
          f"worst {snap['max_ms']:.2f} ms; "
          f"{(snap['sample_ms'] + snap['build_ms']) / interval_ms:.1%} of a "
          f"{interval_ms:.0f} ms interval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
