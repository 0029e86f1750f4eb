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
    # Issue 16 (round two): work the actors do themselves, creation at scale,
    # one other thread.
    "actor_burst": {
        "full": {"n": 1_000_000}, "quick": {"n": 200_000},
        "full-peers": {"n": 100_000}, "quick-peers": {"n": 20_000},
    },
    "many_to_one": {
        "full": {"producers": 60, "per_producer": 10_000},
        "quick": {"producers": 60, "per_producer": 2_000},
        "full-peers": {"producers": 60, "per_producer": 1_000},
        "quick-peers": {"producers": 60, "per_producer": 200},
    },
    "many_to_many": {
        "full": {"producers": 60, "per_producer": 10_000},
        "quick": {"producers": 60, "per_producer": 2_000},
        "full-peers": {"producers": 60, "per_producer": 1_000},
        "quick-peers": {"producers": 60, "per_producer": 200},
    },
    "create_stop_25k": {
        "full": {"n": 25_000}, "quick": {"n": 25_000},
        "full-peers": {"n": 2_000}, "quick-peers": {"n": 500},
    },
    "create_stop_200k": {
        "full": {"n": 200_000}, "quick": {"n": 200_000},
        "full-peers": {"n": 2_000}, "quick-peers": {"n": 500},
    },
    "create_child_25k": {
        "full": {"n": 25_000}, "quick": {"n": 25_000},
        "full-peers": {"n": 2_000}, "quick-peers": {"n": 500},
    },
    "create_child_200k": {
        "full": {"n": 200_000}, "quick": {"n": 200_000},
        "full-peers": {"n": 2_000}, "quick-peers": {"n": 500},
    },
    "cross_thread_send": {
        "full": {"n": 1_000_000}, "quick": {"n": 200_000},
        "full-peers": {"n": 100_000}, "quick-peers": {"n": 20_000},
    },
    "cross_thread_ask": {
        "full": {"n": 20_000}, "quick": {"n": 3_000},
        "full-peers": {"n": 5_000}, "quick-peers": {"n": 1_000},
    },
    # Issue 13's figures: ours against ours (or a bare executor), in one run.
    "proxy_call": {"full": {"n": 100_000}, "quick": {"n": 10_000}},
    "pool_8": {"full": {"n": 1_000_000}, "quick": {"n": 200_000}},
    "async_receive": {"full": {"n": 1_000_000}, "quick": {"n": 200_000}},
    "run_in_thread": {"full": {"n": 20_000}, "quick": {"n": 3_000}},
}

# Scenarios run by a function of another name, with fixed arguments that are
# not sizes: the four create-and-stop cells share one function.
FUNCTIONS: dict[str, tuple[str, dict[str, bool]]] = {
    "create_stop_25k": ("create_stop", {"children": False}),
    "create_stop_200k": ("create_stop", {"children": False}),
    "create_child_25k": ("create_stop", {"children": True}),
    "create_child_200k": ("create_stop", {"children": True}),
}

# Scenarios that compare two ways of doing one thing with backstage itself
# (issue 13's figures): only ours runs them.  Each run returns the figures of
# both ways, "seconds" for the new API and "base_seconds" for the baseline.
OURS_ONLY = {"proxy_call", "pool_8", "async_receive", "run_in_thread"}


def function_for(scenario: str) -> tuple[str, dict[str, bool]]:
    """The impl_* function name that runs ``scenario``, and its fixed arguments."""
    return FUNCTIONS.get(scenario, (scenario, {}))


def work(message: int) -> int:
    """The small computation per message of the drain scenarios (written out inline
    in every implementation's consumer; this is the reference for the checks)."""
    return message * message % 7

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
    "actor_burst": {"n": 300},
    "many_to_one": {"producers": 6, "per_producer": 20},
    "many_to_many": {"producers": 6, "per_producer": 20},
    "create_stop_25k": {"n": 30},
    "create_stop_200k": {"n": 60},
    "create_child_25k": {"n": 30},
    "create_child_200k": {"n": 60},
    "cross_thread_send": {"n": 300},
    "cross_thread_ask": {"n": 20},
    "proxy_call": {"n": 50},
    "pool_8": {"n": 80},
    "async_receive": {"n": 50},
    "run_in_thread": {"n": 20},
}

SCENARIOS = list(SIZES)


def expected(scenario: str, sizes: dict[str, int]) -> int:
    """The ``value`` a correct run of ``scenario`` returns."""
    if scenario in ("burst", "ping_pong", "spawn_stop", "idle_memory", "actor_burst",
                    "cross_thread_send", "cross_thread_ask") or scenario in FUNCTIONS \
            or scenario in OURS_ONLY:
        return sizes["n"]
    if scenario in ("many_to_one", "many_to_many"):
        # Every producer sends 0 .. per_producer-1; consumers sum work(message).
        return sizes["producers"] * sum(work(i) for i in range(sizes["per_producer"]))
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
