"""backstage.Cluster on Ray against Ray's own actors, in one run, as ratios.

    .venv/bin/python bench/bench_cluster.py [--quick] [--out bench/results-cluster.md]
    .venv/bin/python bench/bench_cluster.py --threads    # CPU per call by thread

- throughput between two engines, one way and both ways, at link batch limits
  of 100, 1,000 and 10,000, with the engines linked by socket (the default on
  one node) and by Ray calls (``local_links=False``, as across nodes), against
  Ray's own batched actor -> actor calls
  (a sender actor calling ``receiver.recv.remote(batch)`` fire-and-forget,
  at most ``window`` calls in flight, batches of the same size; both ways,
  two threaded actors that each send and receive, one process per side as
  with two engines); CPU seconds of the processes per message beside it;
  one way again with each turn's sends as one ``ctx.send_many``;
- cross-engine ping-pong against two async Ray actors awaiting each other's
  calls: round trips per second and p99 (by socket and by Ray calls);
- scaling: CPU-bound work with no cross-engine traffic on 2 engines against 1;
- a Ray call alone (batches of 100, window 4, nothing else done), CPU per call:
  the engines' way (answers watched by a waiter thread; each call handed to
  another thread and answered once handled) against threaded actors with
  ray.wait, as Ray's own comparison does: the part of the gap per batch that
  is the call itself;
- the messages' own cost in one process (no call): an actor's sends handled by
  another actor on one engine, against Ray's sender and receiver loops run
  back to back: the part of the CPU per message that no transport pays;
- failure detection: SIGKILL an engine's process, time until the other engine
  has turned its traffic into dead letters and told its monitors (by socket,
  where the socket's end tells it, and by Ray calls, where Ray's watch call does).

Medians of ``--repeat`` runs.  Times are taken with time.monotonic(), which is
one clock for every process of a Linux machine.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402

import backstage  # noqa: E402
from bench.cluster_actors import (  # noqa: E402
    Burner,
    Pinger,
    Ponger,
    RayPeer,
    RayPinger,
    RayPonger,
    RayReceiver,
    RaySender,
    Sink,
    Source,
    Spinner,
    SpinSink,
    _Counter,
)

RAY_INIT = {"num_cpus": 2, "object_store_memory": 100 * 1024 * 1024}


_libc = ctypes.CDLL(ctypes.util.find_library("c"))


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, read from its CPU-time
    clock (nanoseconds), not /proc/PID/stat: that counts 10 ms ticks, and a
    throughput run at batch 10,000 takes 0.1-0.2 s of each process's CPU."""
    clock = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clock)) == 0:
        try:
            return time.clock_gettime(clock.value)
        except OSError:
            pass                        # gone meanwhile, or not ours to read
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _id_on(cluster: backstage.Cluster, engine: int, prefix: str) -> str:
    for i in range(10_000):
        actor_id = f"{prefix}-{i}"
        if cluster.get_engine_of(actor_id) == engine:
            return actor_id
    raise AssertionError


def _ask(cluster: backstage.Cluster, actor_id: str, message: object, timeout: float = 300):
    return cluster.ask(actor_id, message, timeout=timeout).result(timeout + 5)


# -- throughput ----------------------------------------------------------------

def ours_throughput(limit: int, n: int, both: bool, many: bool = False,
                    local_links: bool = True) -> tuple[float, float]:
    """Messages per second between two engines, and CPU seconds per million
    messages; ``many``: the sources send each turn's messages with send_many."""
    with backstage.Cluster("ray", engines=2, batch_limit=limit, window=4,
                           local_links=local_links) as cluster:
        pairs = [(0, 1), (1, 0)] if both else [(0, 1)]
        names = []
        for a, b in pairs:
            src, sink = _id_on(cluster, a, f"src{a}"), _id_on(cluster, b, f"sink{b}")
            cluster.spawn_actor(Sink, sink, n)
            cluster.spawn_actor(Source, src, many)
            names.append((src, sink))
        pids = cluster._impl.pids
        cpu0 = sum(_cpu(p) for p in pids)
        for src, sink in names:
            _ask(cluster, src, ("go", sink, n, 10_000))
        # Each sink answers once its n-th message is handled: nothing polls
        # the engines while the CPU is measured (wait_idle looks at each
        # engine every 2 ms), as nothing polls Ray's actors.
        ends = [_ask(cluster, sink, "ended") for _, sink in names]
        cpu = sum(_cpu(p) for p in pids) - cpu0
        spans = [(_ask(cluster, src, "started"), end)
                 for (src, _), end in zip(names, ends, strict=True)]
        wall = max(e for _, e in spans) - min(s for s, _ in spans)
        total = n * len(names)
        return total / wall, cpu / total * 1e6


def ray_throughput(limit: int, n: int, both: bool) -> tuple[float, float]:
    if both:
        # Two processes, each sending to the other and receiving, as two engines.
        peers = [RayPeer.remote(n), RayPeer.remote(n)]
        receivers, senders = peers, peers[::-1]
    else:
        receivers, senders = [RayReceiver.remote(n)], [RaySender.remote()]
    pids = sorted(set(ray.get([a.pid.remote() for a in receivers + senders])))
    cpu0 = sum(_cpu(p) for p in pids)
    starts = ray.get([s.go.remote(r, n, limit, 4) for s, r in zip(senders, receivers,
                                                                    strict=True)])
    ends = ray.get([r.ended.remote() for r in receivers])
    cpu = sum(_cpu(p) for p in pids) - cpu0
    for actor in set(receivers + senders):
        ray.kill(actor)
    total = n * len(receivers)
    return total / (max(ends) - min(starts)), cpu / total * 1e6


# -- ping-pong -----------------------------------------------------------------------

def ours_ping_pong(rounds: int, local_links: bool = True) -> tuple[float, float]:
    with backstage.Cluster("ray", engines=2, local_links=local_links) as cluster:
        ping, pong = _id_on(cluster, 0, "ping"), _id_on(cluster, 1, "pong")
        cluster.spawn_actor(Ponger, pong)
        cluster.spawn_actor(Pinger, ping)
        times = _ask(cluster, ping, ("go", pong, rounds))
    return _rate_and_p99(times)


def ray_ping_pong(rounds: int) -> tuple[float, float]:
    pong = RayPonger.remote()
    ping = RayPinger.remote()
    times = ray.get(ping.go.remote(pong, rounds))
    ray.kill(ping)
    ray.kill(pong)
    return _rate_and_p99(times)


def _rate_and_p99(times: list[float]) -> tuple[float, float]:
    laps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    return len(laps) / (times[-1] - times[0]), laps[int(len(laps) * 0.99)] * 1e6


# -- scaling -------------------------------------------------------------------------

def pool_scaling(spread: bool, jobs: int, work: int) -> float:
    """Jobs per second of CPU-bound asks from the driver to a pool of 2 on a
    cluster of 2 engines: spread over both (spread=True) or on one."""
    with backstage.Cluster("ray", engines=2) as cluster:
        cluster.spawn_pool(Burner, "burners", 2, spread=spread)
        start = time.monotonic()
        answers = [cluster.ask("burners", work, timeout=600) for _ in range(jobs)]
        for answer in answers:
            answer.result(605)
        return jobs / (time.monotonic() - start)


def scaling(engines: int, jobs: int, work: int) -> float:
    """Jobs per second of CPU-bound spinning, spread over ``engines`` engines."""
    with backstage.Cluster("ray", engines=engines) as cluster:
        spinners = []
        for e in range(engines):
            for k in range(2):
                sink = _id_on(cluster, e, f"spinsink{e}{k}")
                spinner = _id_on(cluster, e, f"spinner{e}{k}")
                cluster.spawn_actor(SpinSink, sink)
                cluster.spawn_actor(Spinner, spinner, sink)
                spinners.append((spinner, sink))
        start = time.monotonic()
        per = jobs // len(spinners)
        # Every spinner told before any answer is awaited: an engine busy with
        # its spinners' jobs answers an ask only when its turn of up to
        # ACTOR_BATCH jobs ends, so asking one spinner at a time ran the
        # engines one after the other (2 engines measured 1.00x of 1).
        started = [cluster.ask(spinner, ("go", per, work), timeout=300)
                   for spinner, _ in spinners]
        for answer in started:
            answer.result(305)
        cluster.wait_idle(600)
        end = max(_ask(cluster, sink, "ended") for _, sink in spinners)
        return per * len(spinners) / (end - start)


def machine_scaling(iterations: int = 20_000_000) -> float:
    """What this machine gives two CPU-bound processes at once, against one:
    the ceiling any 2-engine scaling can show here."""
    code = f"t = 0\nfor i in range({iterations}): t += i"
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True)
    one = time.monotonic() - start
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    for proc in procs:
        proc.wait()
    two = time.monotonic() - start
    return 2 * one / two


# -- the messages' own cost, in one process -------------------------------------------
# What neither side's transport pays: the same sends and handler calls as the
# throughput runs, with no second process.  Its gap is the floor of the CPU
# per message ratio at large batches, where a call's cost is spread thin.

def one_process(n: int = 2_000_000) -> tuple[float, float]:
    """CPU-us a message: Source -> Sink on one engine, against Ray's sender
    loop (an append per message) and receiver loop (a handler call per message)."""
    engine = backstage.Engine(backend="selectors")
    engine.spawn_actor(Sink, "sink", n)
    engine.spawn_actor(Source, "source")
    engine.send("source", ("go", "sink", n, 10_000))
    start = time.process_time()
    engine.run()
    ours = time.process_time() - start
    engine.close()
    counter = _Counter(n)
    start = time.process_time()
    pending: list[int] = []
    for i in range(n):              # RaySender's loop, the call left out
        pending.append(i)
        if len(pending) == 10_000 or i == n - 1:     # as the Source's turns
            counter.recv(pending)
            pending = []
    theirs = time.process_time() - start
    return ours / n * 1e6, theirs / n * 1e6


# -- failure detection -----------------------------------------------------------------

def _lost_at(engine: backstage.Engine) -> dict:
    from backends.ray_transport import current_host
    host = current_host()
    return dict(host.lost_at) if host is not None else {}


def detection(local_links: bool = True) -> float:
    """Milliseconds from SIGKILL of engine 1 to engine 0 having handled the loss."""
    with backstage.Cluster("ray", engines=2, local_links=local_links) as cluster:
        pid = cluster._impl.pids[1]
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while True:
            stats = cluster._impl.call(0, _lost_at)
            if 1 in stats:
                return (stats[1] - t0) * 1e3
            time.sleep(0.005)


# -- the cost of one Ray call, the engines' way and Ray's ----------------------------------
# How much of the gap per batch is the call itself: the engines' way (a
# threaded actor whose calls are made by one thread and watched by a waiter
# thread with ray.wait; a receiver that hands each call to another thread and
# waits until it is handled) against Ray's comparison's own (threaded actors,
# ray.wait on the calling thread).  Same batches, same window, nothing else done.

@ray.remote(num_cpus=0)
class _SyncReceiver:
    def pid(self) -> int:
        return os.getpid()

    @ray.method(enable_task_events=False)
    def recv(self, batch: list) -> None:
        return None


@ray.remote(num_cpus=0, max_concurrency=8)
class _HandingReceiver:
    """As an EngineHost: each call handed to a thread of its own, answered once handled."""

    def __init__(self) -> None:
        import queue
        import threading
        self.calls: Any = queue.SimpleQueue()
        threading.Thread(target=self._handle, daemon=True).start()

    def _handle(self) -> None:
        while True:
            self.calls.get().release()

    def pid(self) -> int:
        return os.getpid()

    @ray.method(enable_task_events=False)
    def recv(self, batch: list) -> None:
        import threading
        handled = threading.Lock()
        handled.acquire()
        self.calls.put(handled)
        handled.acquire()


@ray.remote(num_cpus=0)
class _WaitingSender:
    """Ray's comparison's way: a threaded actor, at most ``window`` in flight by ray.wait."""

    def pid(self) -> int:
        return os.getpid()

    def go(self, receiver: Any, calls: int, batch: int, window: int) -> None:
        inflight: list = []
        for _ in range(calls):
            if len(inflight) >= window:
                _, inflight = ray.wait(inflight, num_returns=1)
            inflight.append(receiver.recv.remote(list(range(batch))))
        ray.wait(inflight, num_returns=len(inflight))


@ray.remote(num_cpus=0)
class _WatchedSender:
    """As a link: calls made by one thread, their answers taken by a waiter thread."""

    def pid(self) -> int:
        return os.getpid()

    def go(self, receiver: Any, calls: int, batch: int, window: int) -> None:
        import queue
        import threading
        answered: Any = queue.SimpleQueue()
        cond = threading.Condition()
        watched: list = []

        def waiter() -> None:
            while True:
                with cond:
                    while not watched:
                        cond.wait()
                    refs = list(watched)
                ready, _ = ray.wait(refs, num_returns=1)
                if len(refs) > 1:
                    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                ray.get(ready)
                with cond:
                    for ref in ready:
                        watched.remove(ref)
                answered.put(len(ready))
        threading.Thread(target=waiter, daemon=True).start()
        sent = done = 0
        while done < calls:
            while sent - done < window and sent < calls:
                ref = receiver.recv.remote(list(range(batch)))
                with cond:
                    watched.append(ref)
                    cond.notify()
                sent += 1
            done += answered.get()


def ray_call_cost(sender_class: Any, receiver_class: Any, calls: int = 2000,
                  batch: int = 100) -> float:
    """CPU-us per call of both processes, ``calls`` calls of ``batch`` ints, window 4."""
    sender, receiver = sender_class.remote(), receiver_class.remote()
    pids = ray.get([sender.pid.remote(), receiver.pid.remote()])
    cpu0 = sum(_cpu(p) for p in pids)
    ray.get(sender.go.remote(receiver, calls, batch, 4))
    cpu = sum(_cpu(p) for p in pids) - cpu0
    ray.kill(sender)
    ray.kill(receiver)
    return cpu / calls * 1e6


# -- where the CPU goes, per thread ---------------------------------------------------
# The figures docs/cluster.md gives per thread: CPU-ns of each thread of the
# sending and the receiving process, from /proc's schedstat (nanoseconds; the
# stat file's ticks are 10 ms), over one one-way run, per call of ``limit``.

def _thread_cpu(pid: int, names: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far of each thread of ``pid``, by name (``names``: the
    Python names of native thread ids, else the kernel's)."""
    seconds: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue                    # ended meanwhile
        name = names.get(int(tid), comm)
        if name.startswith("backstage-link-"):
            name = "backstage-link (waiter: .remote, ray.wait, ray.get)"
        elif name.startswith("backstage-engine-"):
            name = "backstage-engine (sends or receives, packing)"
        elif name.startswith("ray::"):
            name = "ray:: (the actor's calls run here)"
        elif name.startswith("Dummy-"):
            name = "ray:: (the actor's calls run here)"     # Ray's pool threads in Python
        seconds[name] = seconds.get(name, 0.0) + ns / 1e9
    return seconds


def _python_threads(engine: backstage.Engine) -> dict[int, str]:
    import threading
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


def _split(before: dict[str, float], after: dict[str, float], calls: float) -> dict[str, float]:
    return {name: (after[name] - before.get(name, 0.0)) / calls * 1e6 for name in after}


def thread_split(limit: int, n: int) -> list[str]:
    """Lines of CPU-us per call by thread, one way: ours, then Ray's own."""
    calls = n / limit
    lines = []

    def report(who: str, side: str, split: dict[str, float]) -> None:
        lines.append(f"{who} {side}, batch {limit:,}: {sum(split.values()):.0f} CPU-us a call")
        for name, us in sorted(split.items(), key=lambda kv: -kv[1]):
            if us >= 5:
                lines.append(f"    {us:6.0f}  {name}")

    with backstage.Cluster("ray", engines=2, batch_limit=limit, window=4) as cluster:
        src, sink = _id_on(cluster, 0, "src"), _id_on(cluster, 1, "sink")
        cluster.spawn_actor(Sink, sink, n)
        cluster.spawn_actor(Source, src)
        impl = cluster._impl
        names = [impl.call(e, _python_threads) for e in (0, 1)]
        before = [_thread_cpu(pid, names[e]) for e, pid in enumerate(impl.pids)]
        _ask(cluster, src, ("go", sink, n, 10_000))
        _ask(cluster, sink, "ended")
        after = [_thread_cpu(pid, names[e]) for e, pid in enumerate(impl.pids)]
    report("Backstage", "sender", _split(before[0], after[0], calls))
    report("Backstage", "receiver", _split(before[1], after[1], calls))
    receiver, sender = RayReceiver.remote(n), RaySender.remote()
    pids = ray.get([sender.pid.remote(), receiver.pid.remote()])
    before = [_thread_cpu(pid, {}) for pid in pids]
    ray.get(sender.go.remote(receiver, n, limit, 4))
    ray.get(receiver.ended.remote())
    after = [_thread_cpu(pid, {}) for pid in pids]
    for actor in (sender, receiver):
        ray.kill(actor)
    report("Ray's own", "sender", _split(before[0], after[0], calls))
    report("Ray's own", "receiver", _split(before[1], after[1], calls))
    return lines


# -- main ----------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-cluster.md"))
    parser.add_argument("--threads", action="store_true",
                        help="only CPU per call by thread, one way at batches of 100 and "
                             "1,000 (printed, not written)")
    args = parser.parse_args()
    n = 100_000 if args.quick else 400_000
    rounds = 2_000 if args.quick else 10_000
    ray.init(include_dashboard=False, configure_logging=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, **RAY_INIT)
    if args.threads:
        try:
            for limit in (100, 1_000):
                print("\n".join(thread_split(limit, n)), flush=True)
        finally:
            ray.shutdown()
        return
    rows = []
    med = statistics.median

    def line(name: str, ours: float, theirs: float, unit: str, fmt: str = ",.0f") -> None:
        ratio = ours / theirs if theirs else float("nan")
        rows.append(f"| {name} | {ours:{fmt}} {unit} | {theirs:{fmt}} {unit} | {ratio:.2f} |")
        print(rows[-1], flush=True)

    try:
        links = ((True, ""), (False, ", by Ray calls"))
        for both in (False, True):
            for limit in (100, 1_000, 10_000):
                r = [ray_throughput(limit, n, both) for _ in range(args.repeat)]
                way = "both ways" if both else "one way"
                for local, how in links:
                    o = [ours_throughput(limit, n, both, local_links=local)
                         for _ in range(args.repeat)]
                    line(f"throughput {way}, batch {limit:,}{how}", med(x[0] for x in o),
                         med(x[0] for x in r), "msg/s")
                    line(f"CPU per message {way}, batch {limit:,}{how} (lower is better; "
                         f"ratio ours/Ray)", med(x[1] for x in o), med(x[1] for x in r),
                         "CPU-us", ",.2f")
        # The same one way with each turn's sends as one ctx.send_many: Ray's
        # sender hands a list per call; ours then hands one per turn too.
        for limit in (100, 1_000):
            o = [ours_throughput(limit, n, False, many=True) for _ in range(args.repeat)]
            r = [ray_throughput(limit, n, False) for _ in range(args.repeat)]
            line(f"throughput one way, batch {limit:,}, ctx.send_many", med(x[0] for x in o),
                 med(x[0] for x in r), "msg/s")
            line(f"CPU per message one way, batch {limit:,}, ctx.send_many (lower is better; "
                 f"ratio ours/Ray)", med(x[1] for x in o), med(x[1] for x in r),
                 "CPU-us", ",.2f")
        r = [ray_ping_pong(rounds) for _ in range(args.repeat)]
        for local, how in links:
            o = [ours_ping_pong(rounds, local) for _ in range(args.repeat)]
            line(f"ping-pong round trips{how}", med(x[0] for x in o), med(x[0] for x in r),
                 "/s")
            line(f"ping-pong p99{how} (lower is better)", med(x[1] for x in o),
                 med(x[1] for x in r), "us")
        jobs, work = (200, 200_000) if args.quick else (400, 300_000)
        one = med(scaling(1, jobs, work) for _ in range(args.repeat))
        two = med(scaling(2, jobs, work) for _ in range(args.repeat))
        line("CPU-bound work, 2 engines against 1", two, one, "jobs/s", ",.1f")
        # Interleaved: a noisy machine moves both alike.
        pools = [(pool_scaling(True, jobs, work), pool_scaling(False, jobs, work))
                 for _ in range(args.repeat)]
        line("CPU-bound asks to a pool of 2, spread over 2 engines against on 1",
             med(x[0] for x in pools), med(x[1] for x in pools), "jobs/s", ",.1f")
        ceiling = med(machine_scaling() for _ in range(args.repeat))
        rows.append(f"| the machine's own ceiling: 2 CPU-bound processes against 1 | "
                    f"{ceiling:.2f}x | | |")
        print(rows[-1], flush=True)
        calls = 1_000 if args.quick else 2_000
        theirs = med(ray_call_cost(_WaitingSender, _SyncReceiver, calls)
                     for _ in range(args.repeat))
        ours = med(ray_call_cost(_WatchedSender, _HandingReceiver, calls)
                   for _ in range(args.repeat))
        line("a Ray call alone, batch 100: calls watched by a waiter thread, handed to "
             "another thread on arrival (as the engines) against Ray's own way above "
             "(lower is better)", ours, theirs, "CPU-us", ",.0f")
        alone = [one_process() for _ in range(args.repeat)]
        line("CPU per message in one process, no call (sends and handler calls; "
             "lower is better)", med(x[0] for x in alone), med(x[1] for x in alone),
             "CPU-us", ",.3f")
        for local, how in links:
            detect = sorted(detection(local) for _ in range(max(3, args.repeat)))
            rows.append(f"| failure detection (SIGKILL to dead letters + TERMINATED){how} | "
                        f"median {med(detect):.1f} ms, max {detect[-1]:.1f} ms | | |")
            print(rows[-1], flush=True)
    finally:
        ray.shutdown()
    load = os.getloadavg()
    header = [
        "# Cluster benchmark (bench/bench_cluster.py)", "",
        f"Machine: {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, Ray {ray.__version__}; load average {load[0]:.1f} / "
        f"{load[1]:.1f} / {load[2]:.1f} at the end.  Figures move by tens of percent between "
        f"runs (more at --quick sizes); ratios are within one run.  "
        f"Medians of {args.repeat} runs; {n:,} messages per throughput run.", "",
        "| what | backstage.Cluster | Ray's own | ratio |", "| --- | --- | --- | --- |",
    ]
    Path(args.out).write_text("\n".join(header + rows) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
