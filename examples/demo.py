"""A small actor system to watch in the inspector: `make demo`.

    python3 examples/demo.py [--seconds N] [--socket PATH] [--no-split] [--backend NAME]

What runs (about 10,000 messages a second, on one thread):

- ``clock`` publishes a tick on its topic "tick" ten times a second;
- ``dispatcher`` follows the ticks and hands out jobs for ten customers to the
  pool, at a rate that rises and falls over a minute; a few customers send
  most of the jobs;
- ``pool`` is a pool (``spawn_pool``) of four workers ``pool/0`` .. ``pool/3``
  that routes each job by its customer (``consistent_hash``), so one worker
  keeps each customer's running total, and the workers that hold the busiest
  customers are the busiest; each publishes what it did on its "done" topic;
- ``stats`` subscribes to the clock's ticks and to every worker's "done";
- ``audit`` gets a burst of messages now and then, so its inbox fills and drains;
- ``session-1`` .. ``session-8`` are mostly idle, and hear from the dispatcher
  once in a while.

The demo prints the one command that opens the inspector on it; inside tmux it
opens the inspector in a split pane itself.  Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import backstage  # noqa: E402

SESSIONS = 8
WORKERS = 4
CUSTOMERS = 10


class Clock:
    """Publishes a tick on topic "tick" every 0.1 s."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx
        self.ticks = 0
        ctx.run_recurring(0.1, self.tick)

    def tick(self) -> None:
        self.ticks += 1
        self.ctx.publish_to_topic("tick", self.ticks)

    def receive(self, envelope: backstage.Envelope) -> None:
        pass


class Dispatcher:
    """On each tick, sends a wave-shaped number of jobs to the pool."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx
        ctx.subscribe_to_actor_topic("clock", "tick")

    def receive(self, envelope: backstage.Envelope) -> None:
        tick = envelope.message
        jobs = int(600 + 500 * math.sin(tick / 100))          # a one-minute wave
        for job in range(jobs):
            # Uneven on purpose: customer 0 sends the most jobs, customer 9 the least.
            customer = int(CUSTOMERS * (job % 100 / 100) ** 2)
            self.ctx.send("pool", (customer, job))
        if tick % 7 == 0:
            self.ctx.send(f"session-{1 + tick // 7 % SESSIONS}", "ping")
        if tick % 30 == 0:
            for n in range(3000):
                self.ctx.send("audit", n)


def customer_of(job: tuple[int, int]) -> int:
    """The pool's hash_key: a customer's jobs all go to the same worker."""
    return job[0]


class Worker:
    """Keeps a running checksum per customer; publishes a summary every 100 jobs."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx
        self.done = 0
        self.checksums: dict[int, int] = {}

    def receive(self, envelope: backstage.Envelope) -> None:
        customer, job = envelope.message
        self.checksums[customer] = (self.checksums.get(customer, 0) * 31 + job) % 1_000_003
        self.done += 1
        if self.done % 100 == 0:
            self.ctx.publish_to_topic("done", (self.ctx.actor_id, self.done))


class Stats:
    """Follows the clock and the workers."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx
        self.done: dict[str, int] = {}
        ctx.subscribe_to_actor_topic("clock", "tick")
        for worker in range(WORKERS):
            ctx.subscribe_to_actor_topic(f"pool/{worker}", "done")

    def receive(self, envelope: backstage.Envelope) -> None:
        if envelope.topic == "done":
            worker, done = envelope.message
            self.done[worker] = done


class Audit:
    """Gets bursts; keeps a count."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx
        self.seen = 0

    def receive(self, envelope: backstage.Envelope) -> None:
        self.seen += 1


class Session:
    """Mostly idle."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.ctx = ctx

    def receive(self, envelope: backstage.Envelope) -> None:
        pass


def build(engine: backstage.Engine) -> None:
    engine.spawn_actor(Clock, id="clock")
    engine.spawn_pool(Worker, "pool", WORKERS, routing="consistent_hash", hash_key=customer_of)
    engine.spawn_actor(Stats, id="stats")
    engine.spawn_actor(Audit, id="audit", capacity=4096)
    for n in range(1, SESSIONS + 1):
        engine.spawn_actor(Session, id=f"session-{n}", capacity=64)
    engine.spawn_actor(Dispatcher, id="dispatcher")


def inspector_command(path: str) -> str:
    script = os.path.relpath(os.path.join(ROOT, "inspector_curses.py"))
    python = "python3" if shutil.which("python3") == sys.executable else sys.executable
    return f"{shlex.quote(python)} {shlex.quote(script)} {shlex.quote(path)}"


def open_in_tmux_pane(path: str) -> bool:
    """Split the tmux window and run the inspector in the new pane."""
    command = f"{shlex.quote(sys.executable)} " \
              f"{shlex.quote(os.path.join(ROOT, 'inspector_curses.py'))} {shlex.quote(path)}"
    try:
        subprocess.run(["tmux", "split-window", "-h", "-l", "65%", command], check=True,
                       capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--socket", default=None,
                        help="the inspector socket path (default: the per-user directory)")
    parser.add_argument("--no-split", action="store_true",
                        help="inside tmux, do not open the inspector in a split pane")
    parser.add_argument("--backend", default="selectors", choices=list(backstage.BACKENDS))
    args = parser.parse_args(argv)

    try:
        engine = backstage.Engine(backend=args.backend, inspector=args.socket or True)
    except ImportError as exc:              # --backend uvloop without uvloop installed
        sys.exit(str(exc))
    try:
        build(engine)
        path = engine.inspector_path
        assert path is not None                 # inspector=... above made the feed
        print(f"backstage demo: {len(engine.actor_ids)} actors on one thread, pid {os.getpid()}")
        print(f"inspector feed: {path}")
        if os.environ.get("TMUX") and not args.no_split and open_in_tmux_pane(path):
            print("the inspector is open in the pane beside this one")
        else:
            print("open the inspector in another terminal with:")
            print(f"    {inspector_command(path)}")
        print("Ctrl-C stops the demo." if args.seconds is None
              else f"stopping after {args.seconds:g} s.", flush=True)
        if args.seconds is not None:
            deadline = time.monotonic() + args.seconds

            def stop_when_due() -> None:
                if time.monotonic() >= deadline:
                    engine.stop()

            clock = engine.get_context("clock")
            assert clock is not None                # build() spawned it
            clock.run_recurring(0.1, stop_when_due)
        # run_forever, not run(): Ctrl-C and SIGTERM (what `timeout` and a
        # service manager send) close the engine cleanly, socket included.
        engine.run_forever()
        if engine.closed:
            print("\nstopped.")
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
