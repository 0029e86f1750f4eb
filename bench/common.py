"""What every implementation shares: the scenarios, their sizes and their expected results."""

from __future__ import annotations

import os
import time

clock = time.perf_counter

# Scenario name -> sizes per mode.  "peers" are the sizes for Pykka and
# Thespian, whose per-message cost (a thread hand-off, a synchronous dispatch
# through several layers) would make the full sizes take minutes; their
# figures are rates (per message, per actor), so the ratios stay comparable.
SIZES: dict[str, dict[str, dict[str, int]]] = {
    "burst": {
        "full": {"n": 1_000_000}, "quick": {"n": 200_000},
        "full-peers": {"n": 100_000}, "quick-peers": {"n": 20_000},
    },
    "ping_pong": {
        "full": {"n": 200_000}, "quick": {"n": 50_000},
        "full-peers": {"n": 20_000}, "quick-peers": {"n": 5_000},
    },
    "fan_out": {
        "full": {"messages": 10_000, "subscribers": 100},
        "quick": {"messages": 2_000, "subscribers": 100},
        "full-peers": {"messages": 1_000, "subscribers": 100},
        "quick-peers": {"messages": 200, "subscribers": 100},
    },
    "ring": {
        "full": {"actors": 1_000, "rounds": 1_000},
        "quick": {"actors": 1_000, "rounds": 50},
        "full-peers": {"actors": 100, "rounds": 100},
        "quick-peers": {"actors": 100, "rounds": 20},
    },
    "skynet": {
        "full": {"leaves": 1_000_000}, "quick": {"leaves": 100_000},
        "full-peers": {"leaves": 10_000}, "quick-peers": {"leaves": 10_000},
    },
    "spawn_stop": {
        "full": {"n": 100_000}, "quick": {"n": 20_000},
        "full-peers": {"n": 2_000}, "quick-peers": {"n": 500},
    },
    "idle_memory": {
        "full": {"n": 100_000}, "quick": {"n": 100_000},
        "full-peers": {"n": 2_000}, "quick-peers": {"n": 500},
    },
    "cross_thread": {
        "full": {"threads": 4, "per_thread": 250_000},
        "quick": {"threads": 4, "per_thread": 50_000},
        "full-peers": {"threads": 4, "per_thread": 25_000},
        "quick-peers": {"threads": 4, "per_thread": 5_000},
    },
}

# Tiny sizes for tests/test_bench.py: every scenario, every implementation, in seconds.
TINY: dict[str, dict[str, int]] = {
    "burst": {"n": 300},
    "ping_pong": {"n": 200},
    "fan_out": {"messages": 20, "subscribers": 5},
    "ring": {"actors": 10, "rounds": 5},
    "skynet": {"leaves": 100},
    "spawn_stop": {"n": 50},
    "idle_memory": {"n": 50},
    "cross_thread": {"threads": 4, "per_thread": 100},
}

SCENARIOS = list(SIZES)


def expected(scenario: str, sizes: dict[str, int]) -> int:
    """The ``value`` a correct run of ``scenario`` returns."""
    if scenario in ("burst", "ping_pong", "spawn_stop", "idle_memory"):
        return sizes["n"]
    if scenario == "fan_out":
        return sizes["messages"] * sizes["subscribers"]
    if scenario == "ring":
        return sizes["actors"] * sizes["rounds"]
    if scenario == "skynet":
        leaves = sizes["leaves"]
        return leaves * (leaves - 1) // 2
    if scenario == "cross_thread":
        return sizes["threads"] * sizes["per_thread"]
    raise KeyError(scenario)


def skynet_check(leaves: int) -> None:
    """Skynet's tree is 10-ary: the leaf count must be a power of ten."""
    n = leaves
    while n > 1 and n % 10 == 0:
        n //= 10
    if n != 1:
        raise ValueError(f"skynet needs a power of ten of leaves, not {leaves}")


def rss_bytes() -> int:
    """The current resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class InOrder:
    """Counts cross-thread messages (thread, seq) and checks each thread's order."""

    def __init__(self, threads: int) -> None:
        self.last = [-1] * threads
        self.count = 0
        self.ordered = True

    def add(self, message: tuple[int, int]) -> None:
        tid, seq = message
        if seq != self.last[tid] + 1:
            self.ordered = False
        self.last[tid] = seq
        self.count += 1
