#!/usr/bin/env python3
"""inspector_prometheus: a backstage engine's figures for Prometheus.

    python inspector_prometheus.py [SOCKET] [--port 9753] [--top 50]
    backstage-prometheus [SOCKET] [--port 9753]      # the same, once installed

It reads the engine's inspector feed (``Engine(inspector=True)``, see
docs/inspector.md) and serves the figures in the Prometheus text format at
``http://127.0.0.1:PORT/metrics``, on loopback only.  Point Prometheus at it:

    scrape_configs:
      - job_name: backstage
        static_configs:
          - targets: ["127.0.0.1:9753"]

It needs ``prometheus_client`` (``pip install prometheus_client``, or the
``backstage-actors[prometheus]`` extra); backstage.py itself never imports it.

What it exports, built from the last snapshot at scrape time (a custom
collector, nothing updated per message):
- per engine: ``backstage_messages_total``, ``backstage_dead_letters_total``
  (and ``..._by_reason_total``), ``backstage_restarts_total``,
  ``backstage_failures_total``, ``backstage_receive_seconds_total`` (counters),
  ``backstage_actors``, ``backstage_busy_ratio``, ``backstage_uptime_seconds``,
  ``backstage_stuck_seconds``, ``backstage_feed_up`` (gauges);
- per actor type, for every actor: ``backstage_type_*`` with the label
  ``type`` (counters keep counting when actors stop: the exporter adds the
  last figures of actors that left);
- per actor, for the ``--top`` N actors only (labels ``actor`` and ``type``):
  ``backstage_actor_messages_total``, ``backstage_actor_receive_seconds_total``,
  ``backstage_actor_restarts_total``, ``..._failures_total``,
  ``..._dead_letters_total`` (counters), ``backstage_actor_inbox_length``,
  ``..._inbox_high_water``, ``..._inbox_capacity`` (gauges).

Cardinality stays bounded with 100k actors: per-actor series exist only for
the top N by activity (time in receive over the last interval, then
messages/s, then inbox length), at most ``--max-types`` types get their own
series (the rest are summed under ``type="other"``), and
``backstage_actors_not_exported`` says how many actors are left to the
per-type series.  Every label value is made safe (no control characters) and
cut to 120 characters.
"""

from __future__ import annotations

import argparse
import importlib
import select
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    import inspector_curses as feed
else:
    # Beside inspector_curses.py in the checkout; backstage.inspector_curses installed.
    feed = importlib.import_module(
        f"{__package__}.inspector_curses" if __package__ else "inspector_curses")

DEFAULT_PORT = 9753
DEFAULT_TOP = 50                # actors with series of their own
DEFAULT_MAX_TYPES = 200         # actor types with series of their own
LABEL_MAX = 120                 # characters of a label value
HOST = "127.0.0.1"              # loopback only: the figures name the program's actors
INSTALL = ("inspector_prometheus.py needs prometheus_client: pip install prometheus_client "
           "(or pip install 'backstage-actors[prometheus]')")

# Per-actor counters: feed field -> (metric name without backstage_actor_, help).
ACTOR_COUNTERS = {
    "messages_total": ("messages", "messages the actor handled"),
    "receive_s": ("receive_seconds", "seconds the actor spent in receive"),
    "restarts": ("restarts", "times its supervisor restarted it"),
    "failures": ("failures", "exceptions its receive or callbacks raised"),
    "dead_letters": ("dead_letters", "dead letters addressed to it"),
}
ACTOR_GAUGES = {
    "inbox": ("inbox_length", "messages waiting in its inbox"),
    "inbox_hwm": ("inbox_high_water", "highest inbox length since the last snapshot"),
    "capacity": ("inbox_capacity", "its inbox bound"),
}


def label(value: Any) -> str:
    """A label value: safe text, at most LABEL_MAX characters."""
    return feed.safe(str(value))[:LABEL_MAX]


def activity(row: feed.Row) -> tuple[float, float, int]:
    """How busy an actor is, for the top-N choice: receive time, then rate, then inbox."""
    return (row["receive_ms_per_s"] or 0.0, row["messages_per_s"], row["inbox"])


###############################################################################
# State: the last snapshot, and the figures of actors gone since
###############################################################################

class State:
    """What the feed said last; written by the reader thread, read at scrape time."""

    def __init__(self, top: int = DEFAULT_TOP, max_types: int = DEFAULT_MAX_TYPES) -> None:
        self.top = top
        self.max_types = max_types
        self.lock = threading.Lock()
        self.snapshot: feed.Snapshot | None = None
        self.connected = False
        self.received_at: float | None = None       # monotonic time of the last snapshot
        self.stuck: dict[str, Any] | None = None
        self.stuck_at = 0.0
        self.pid: int | None = None
        # Per type, the counters of its actors that have left (so sums never go down).
        self.retired: dict[str, dict[str, float]] = {}
        self._last: dict[str, tuple[str, dict[str, float]]] = {}  # id -> (type, counters)

    def receive(self, line: dict[str, Any], now: float) -> None:
        kind = line.get("type")
        if kind == "stuck":
            with self.lock:
                self.stuck, self.stuck_at = line, now
        elif kind == "unstuck":
            with self.lock:
                self.stuck = None
        elif kind == "snapshot" and line.get("v") == feed.FORMAT:
            self._snapshot(feed.clean_snapshot(line), now)

    def _snapshot(self, snap: feed.Snapshot, now: float) -> None:
        pid = snap["engine"]["pid"]
        last: dict[str, tuple[str, dict[str, float]]] = {}
        for row in snap["actors"]:
            last[row["id"]] = (row["type"], {f: row[f] or 0 for f in ACTOR_COUNTERS})
        with self.lock:
            if pid != self.pid:
                self.retired.clear()         # another engine: its counters start again
                self._last = {}
                self.pid = pid
            for actor_id, (type_, counters) in self._last.items():
                now_there = last.get(actor_id)
                if now_there is None or now_there[0] != type_ or any(
                        now_there[1][f] < counters[f] for f in ("messages_total",)):
                    gone = self.retired.setdefault(type_, dict.fromkeys(ACTOR_COUNTERS, 0.0))
                    for f, v in counters.items():
                        gone[f] += v
            self._last = last
            self.snapshot, self.received_at = snap, now

    def read(self) -> tuple[feed.Snapshot | None, dict[str, dict[str, float]],
                            dict[str, Any] | None, float, float | None, bool]:
        with self.lock:
            return (self.snapshot, {k: dict(v) for k, v in self.retired.items()}, self.stuck,
                    self.stuck_at, self.received_at, self.connected)


###############################################################################
# The collector: metric families from the last snapshot, at scrape time
###############################################################################

class FeedCollector:
    """A prometheus_client collector over a State."""

    def __init__(self, state: State) -> None:
        self.state = state

    def describe(self) -> list[Metric]:
        return []            # unchecked: the series depend on the feed

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily
        snap, retired, stuck, stuck_at, received_at, connected = self.state.read()
        now = time.monotonic()
        up = GaugeMetricFamily("backstage_feed_up", "1 while the exporter reads a feed")
        up.add_metric([], 1.0 if connected and snap is not None else 0.0)
        yield up
        if snap is None:
            return
        yield from self._engine(snap, stuck, stuck_at, received_at, now)
        yield from self._types(snap, retired)
        yield from self._actors(snap)

    def _engine(self, snap: feed.Snapshot, stuck: dict[str, Any] | None, stuck_at: float,
                received_at: float | None, now: float) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        eng = snap["engine"]
        info = GaugeMetricFamily("backstage_engine_info", "the engine this exporter reads",
                                 labels=["program", "pid", "backend"])
        info.add_metric([label(eng["program"]), label(eng["pid"]), label(eng["backend"])], 1.0)
        yield info
        counters = [("messages", "messages handled by all actors", eng["messages_total"]),
                    ("dead_letters", "dead letters", eng["dead_letters"]),
                    ("restarts", "actor restarts by supervisors", eng["restarts"]),
                    ("failures", "exceptions raised by receive or callbacks", eng["failures"]),
                    ("receive_seconds", "seconds spent in receive", eng["receive_s"])]
        for name, text, value in counters:
            if value is not None:
                yield CounterMetricFamily(f"backstage_{name}", text, value=value)
        by_reason = eng["dead_letters_by_reason"]
        if by_reason is not None:
            family = CounterMetricFamily("backstage_dead_letters_by_reason",
                                         "dead letters by reason", labels=["reason"])
            for reason, count in by_reason[:self.state.max_types]:
                family.add_metric([label(reason)], count)
            yield family
        gauges = [("actors", "live actors", eng["actors"]),
                  ("actors_waiting", "actors that take no turns while they wait: for room "
                                     "in a full inbox, a full link, or an await",
                   eng["waiting"]),
                  ("uptime_seconds", "seconds since the engine was made", eng["uptime"]),
                  ("busy_ratio", "share of the engine thread spent in receive over the last "
                                 "interval", eng["busy_share"]),
                  ("snapshot_age_seconds", "seconds since the last snapshot arrived",
                   now - received_at if received_at is not None else None),
                  ("stuck_seconds", "seconds one callback has held the engine thread (0 when "
                                    "it moves)",
                   (feed._float(stuck.get("for_s")) or 0.0) + now - stuck_at
                   if stuck is not None else 0.0)]
        for name, text, value in gauges:
            if value is not None:
                yield GaugeMetricFamily(f"backstage_{name}", text, value=value)

    def _types(self, snap: feed.Snapshot,
               retired: dict[str, dict[str, float]]) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        sums: dict[str, dict[str, float]] = {}
        for row in snap["actors"]:
            entry = sums.get(row["type"])
            if entry is None:
                entry = sums[row["type"]] = dict.fromkeys(
                    ["actors", "inbox", *ACTOR_COUNTERS], 0.0)
            entry["actors"] += 1
            entry["inbox"] += row["inbox"]
            for f in ACTOR_COUNTERS:
                entry[f] += row[f] or 0
        for type_, gone in retired.items():
            entry = sums.setdefault(type_, dict.fromkeys(["actors", "inbox", *ACTOR_COUNTERS],
                                                         0.0))
            for f, v in gone.items():
                entry[f] += v
        sums = self._cap_types(sums)
        reported = set(feed.reported(["ms/s", "restarts", "failures", "dead", "receive"],
                                     snap["actors"]))
        fields = {"messages_total": True, "receive_s": "receive" in reported,
                  "restarts": "restarts" in reported, "failures": "failures" in reported,
                  "dead_letters": "dead" in reported}
        actors = GaugeMetricFamily("backstage_type_actors", "live actors of this type",
                                   labels=["type"])
        inbox = GaugeMetricFamily("backstage_type_inbox_length",
                                  "messages waiting in the inboxes of this type",
                                  labels=["type"])
        counters = {f: CounterMetricFamily(f"backstage_type_{name}", f"{text}, all actors of "
                                           f"this type", labels=["type"])
                    for f, (name, text) in ACTOR_COUNTERS.items() if fields[f]}
        for type_, entry in sums.items():
            actors.add_metric([label(type_)], entry["actors"])
            inbox.add_metric([label(type_)], entry["inbox"])
            for f, family in counters.items():
                family.add_metric([label(type_)], entry[f])
        yield actors
        yield inbox
        yield from counters.values()

    def _cap_types(self, sums: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """At most max_types types, the busiest; the others summed as "other"."""
        if len(sums) <= self.state.max_types:
            return sums
        ranked = sorted(sums, key=lambda t: (-sums[t]["messages_total"], t))
        kept = {t: sums[t] for t in ranked[:self.state.max_types - 1]}
        other = dict.fromkeys(next(iter(sums.values())), 0.0)
        for t in ranked[self.state.max_types - 1:]:
            for f, v in sums[t].items():
                other[f] += v
        kept["other"] = other
        return kept

    def _actors(self, snap: feed.Snapshot) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        rows = snap["actors"]
        top = sorted(rows, key=activity, reverse=True)[:self.state.top]
        top.sort(key=lambda r: feed.natural_key(r["id"]))
        skipped = GaugeMetricFamily("backstage_actors_not_exported",
                                    "live actors without series of their own (see --top)")
        skipped.add_metric([], len(rows) - len(top))
        yield skipped
        labels = ["actor", "type"]
        for field, (name, text) in ACTOR_COUNTERS.items():
            values = [(r, r[field]) for r in top if r[field] is not None]
            if values or field == "messages_total":
                family = CounterMetricFamily(f"backstage_actor_{name}", text, labels=labels)
                for r, value in values:
                    family.add_metric([label(r["id"]), label(r["type"])], value)
                yield family
        for field, (name, text) in ACTOR_GAUGES.items():
            values = [(r, r[field]) for r in top if r[field] is not None]
            if values or field == "inbox":
                gauge = GaugeMetricFamily(f"backstage_actor_{name}", text, labels=labels)
                for r, value in values:
                    gauge.add_metric([label(r["id"]), label(r["type"])], value)
                yield gauge


###############################################################################
# The reader: the feed into State, reconnecting
###############################################################################

class Reader(threading.Thread):
    """Reads the feed on its own thread; reconnects once a second when it ends."""

    def __init__(self, connection: feed.Connection, state: State) -> None:
        super().__init__(name="backstage-prometheus-feed", daemon=True)
        self.connection = connection
        self.state = state
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = self.connection
        while not self.stopping.is_set():
            if not conn.connected and not conn.connect():
                self.state.connected = False
                self.stopping.wait(feed.RECONNECT_EVERY)
                continue
            self.state.connected = True
            assert conn.sock is not None
            try:
                select.select([conn.sock], [], [], 0.5)
            except (OSError, ValueError):
                conn.close()
                continue
            now = time.monotonic()
            for line in conn.poll():
                self.state.receive(line, now)
            self.state.connected = conn.connected

    def stop(self) -> None:
        self.stopping.set()
        self.join(5.0)
        self.connection.close()


class Exporter:
    """The reader thread and the HTTP server; ``port`` 0 picks a free one."""

    def __init__(self, path: str, port: int, top: int = DEFAULT_TOP,
                 max_types: int = DEFAULT_MAX_TYPES, program: str | None = None,
                 max_line: int = feed.MAX_LINE) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise ImportError(INSTALL) from None
        self.state = State(top, max_types)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FeedCollector(self.state))
        self.reader = Reader(feed.Connection(path, program, max_line), self.state)
        self.server, self._thread = start_http_server(port, addr=HOST, registry=self.registry)
        self.port = int(self.server.server_address[1])
        self.reader.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/metrics"

    def close(self) -> None:
        self.reader.stop()
        self.server.shutdown()
        self.server.server_close()


###############################################################################
# main
###############################################################################

def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve a running backstage engine's figures to Prometheus, on loopback.")
    parser.add_argument("socket", nargs="?", help="the engine's socket; found when left out")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"HTTP port on {HOST} (default {DEFAULT_PORT}; 0 picks one)")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP,
                        help=f"actors with series of their own, the busiest (default "
                             f"{DEFAULT_TOP})")
    parser.add_argument("--max-types", type=int, default=DEFAULT_MAX_TYPES,
                        help=f"actor types with series of their own (default "
                             f"{DEFAULT_MAX_TYPES})")
    parser.add_argument("--max-line-mb", type=int, default=feed.MAX_LINE >> 20,
                        help="drop (and reconnect on) a feed line longer than this many MiB")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port needs a port number from 0 to 65535, not {args.port}")
    if args.top < 0 or args.max_types < 1:
        parser.error("--top needs 0 or more actors and --max-types 1 or more types")
    try:
        path, program, several = feed.choose_socket(args)
        if several:
            raise feed.UserError("several engines are running; pass one socket:\n  " +
                                 "\n  ".join(map(feed.safe, feed.socket_paths(several))))
        exporter = Exporter(path, args.port, args.top, args.max_types, program,
                            max(args.max_line_mb, 1) << 20)
    except feed.UserError as exc:
        print(f"backstage-prometheus: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"backstage-prometheus: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"backstage-prometheus: cannot serve on {HOST}:{args.port}: {exc}; pick another "
              f"--port", file=sys.stderr)
        return 1
    print(f"backstage-prometheus: reading {feed.safe(path)}, serving {exporter.url}",
          file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        exporter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
