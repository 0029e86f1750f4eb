"""Word count over a cluster of two engines (two processes), on Ray.

    pip install 'ray==2.60.0'
    python examples/wordcount_cluster.py [--engines 2] [--copies 200]

The driver sends lines to four mappers; each mapper counts the words of a line
and sends each word's count to the reducer that owns the word (one reducer per
engine, chosen by a stable hash of the word, so most counts cross engines).
When the cluster is idle the driver asks every reducer for its table and
prints the top words.  Actors are placed on engines by a stable hash of their
id, so mappers and reducers sit on both engines.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Ray started here listens on loopback only, writes no token file, sends no usage stats.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import backstage  # noqa: E402

WORD = re.compile(r"[a-z']+")


class Mapper:
    """Counts the words of each line it gets; sends the counts to their reducers."""

    def __init__(self, ctx: backstage.Context, reducers: list[str]) -> None:
        self.ctx = ctx
        self.reducers = reducers

    def receive(self, envelope: backstage.Envelope) -> None:
        counts = collections.Counter(WORD.findall(envelope.message.lower()))
        for word, count in counts.items():
            self.ctx.send(reducer_of(word, self.reducers), (word, count))


class Reducer:
    """Adds up the counts of the words it owns; an ask for "table" gets them."""

    def __init__(self, ctx: backstage.Context) -> None:
        self.table: collections.Counter[str] = collections.Counter()

    def receive(self, envelope: backstage.Envelope) -> None:
        if envelope.message == "table":
            envelope.reply(dict(self.table))
        else:
            word, count = envelope.message
            self.table[word] += count


def reducer_of(word: str, reducers: list[str]) -> str:
    digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
    return reducers[int.from_bytes(digest, "little") % len(reducers)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--copies", type=int, default=200, help="times the text is fed")
    args = parser.parse_args()
    lines = [line for path in sorted((ROOT / "docs").glob("*.md"))
             for line in path.read_text().splitlines() if line.strip()]

    started = time.monotonic()
    with backstage.Cluster(transport="ray", engines=args.engines) as cluster:
        ready = time.monotonic()
        reducers = [f"reduce-{i}" for i in range(args.engines)]
        for reducer in reducers:
            cluster.spawn_actor(Reducer, reducer)
        mappers = [f"map-{i}" for i in range(4)]
        for mapper in mappers:
            cluster.spawn_actor(Mapper, mapper, reducers)
        print("mappers on engines", [cluster.get_engine_of(m) for m in mappers],
              "reducers on engines", [cluster.get_engine_of(r) for r in reducers])

        t0 = time.monotonic()
        sent = 0
        for _ in range(args.copies):
            for line in lines:
                cluster.send(mappers[sent % len(mappers)], line)
                sent += 1
        cluster.wait_idle()
        elapsed = time.monotonic() - t0
        total: collections.Counter[str] = collections.Counter()
        for reducer in reducers:
            total.update(cluster.ask(reducer, "table").result(timeout=60))
        links = sum(link["messages"] for s in cluster.stats() for link in s["links"].values())
    expected: collections.Counter[str] = collections.Counter()
    for line in lines:
        expected.update(WORD.findall(line.lower()))
    assert total == {w: c * args.copies for w, c in expected.items()}, "counts differ"

    print(f"{sent:,} lines, {sum(total.values()):,} words, {len(total):,} distinct")
    engines = f"{args.engines} engine{'s' if args.engines != 1 else ''}"
    print(f"counted in {elapsed:.2f} s over {engines} "
          f"({sent / elapsed:,.0f} lines/s; {links:,} messages crossed engines); "
          f"cluster start {ready - started:.1f} s")
    print("top words:", ", ".join(f"{w} {c:,}" for w, c in total.most_common(5)))
    print("counts match a count made in one process")


if __name__ == "__main__":
    main()
