"""Run the benchmark suite and write its report, with every target marked met or not.

    python bench/run.py            # quick: reduced sizes, 3 runs per figure (`make bench`)
    python bench/run.py --full     # the issues' sizes, 5 runs (`make bench-full`)
    python bench/run.py --record   # also update the tracked results (`make bench-record`)
    python bench/run.py --only burst,ring --impls backstage/selectors,floor

Where results go: by default to the untracked ``bench/out/`` (``quick-py3.11.md``
and a ``.json`` of the raw cells), one file per mode and Python version, so a run
on 3.11, 3.12 and 3.13 (``make bench PYTHON=...``) keeps three.  ``--record``
writes ``bench/results[-full]-py3.X.md`` and ``.json`` instead, then rebuilds
``bench/results[-full].md``: the targets side by side for every recorded version.

Each (implementation, scenario) cell runs in its own subprocess, so one
cell's memory never inflates another's peak RSS; skynet and idle memory get a
fresh process per run.  A figure is the median of the runs, with min and max.
Ratios compare figures of the same run: ours against each peer and the floor,
always as "how many times better ours is" (more than 1: ours is faster, or
smaller).  After the cells, the standalone scripts of bench/extras.py run and
their output joins the report (the inspector's figures also join the targets).

Rows from other scripts: a script listed in EXTRA_SCRIPTS is run as
``python SCRIPT --json [--full]`` and must print one JSON object per line,
each a cell: {"impl": str, "scenario": str, "sizes": {...}, "runs": [{raw
figures as the impl_* functions return them}], "peak_rss_kb": int}.  A new
scenario name also needs an entry in METRICS to be shown.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import OURS_ONLY, SCENARIOS, SIZES, expected, function_for  # noqa: E402

# Implementation name -> (module, keyword arguments, size group).
IMPLS: dict[str, tuple[str, dict, str]] = {
    "backstage/selectors": ("bench.impl_backstage", {"backend": "selectors"}, "ours"),
    "backstage/asyncio": ("bench.impl_backstage", {"backend": "asyncio"}, "ours"),
    "backstage/uvloop": ("bench.impl_backstage", {"backend": "uvloop"}, "ours"),
    "floor": ("bench.impl_floor", {}, "ours"),
    "asyncio": ("bench.impl_asyncio", {"loop": "asyncio"}, "ours"),
    "asyncio/uvloop": ("bench.impl_asyncio", {"loop": "uvloop"}, "ours"),
    "pykka": ("bench.impl_pykka", {}, "peers"),
    "thespian": ("bench.impl_thespian", {}, "peers"),
}
OURS = [name for name in IMPLS if name.startswith("backstage/")]
OTHERS = [name for name in IMPLS if name not in OURS]

# Scripts whose cells join the table (see the module docstring).
EXTRA_SCRIPTS: list[str] = []

# Scenarios that get a fresh process per run: their memory figures need one.
FRESH = {"skynet", "idle_memory"}

# Quick mode keeps `make bench` short: the 200k cells run once and without
# asyncio on uvloop (in no target); the 200k children of one parent (quadratic
# in the engine at the time of writing: about 10 s a run on this machine) get
# a time limit, and of ours only the target backend.  The report says so
# under the targets.  Full mode runs everything.
_ALL_BUT_AIO_UVLOOP = {"backstage/selectors", "backstage/asyncio", "backstage/uvloop", "floor",
                       "asyncio", "pykka", "thespian"}
QUICK_LIMITS: dict[str, dict] = {
    "create_stop_200k": {"repeats": 1, "impls": _ALL_BUT_AIO_UVLOOP},
    "create_child_200k": {"repeats": 1, "timeout": 20,
                          "impls": _ALL_BUT_AIO_UVLOOP - {"backstage/asyncio",
                                                          "backstage/uvloop"}},
}


def _rate(key: str = "seconds"):
    return lambda r: r["ops"] / r[key] if r[key] > 0 else float("inf")


def _over(a: str, b: str):
    return lambda r: r[a] / r[b] if r[b] > 0 else float("inf")


def _api(new: str, base: str, words: str) -> list:
    """Metrics of an issue 13 cell: the new API's rate, the baseline's, their ratio."""
    return [(new, "rate", _rate(), True), (base, "rate", _rate("base_seconds"), True),
            (words, "x", _over("base_seconds", "seconds"), True)]


# Scenario -> [(metric, unit, function of a run's raw figures, higher is better)].
METRICS: dict[str, list[tuple[str, str, object, bool]]] = {
    "burst": [("messages/s", "rate", _rate(), True)],
    "ping_pong": [("messages/s", "rate", _rate(), True)],
    "fan_out": [("deliveries/s", "rate", _rate(), True)],
    "ring": [("hops/s", "rate", _rate(), True)],
    "skynet": [("leaves/s", "rate", _rate(), True),
               ("seconds", "s", lambda r: r["seconds"], False)],
    "spawn_stop": [("spawns/s", "rate", _rate("spawn_s"), True),
                   ("stops/s", "rate", _rate("stop_s"), True)],
    "idle_memory": [("bytes/actor (tracemalloc)", "B", lambda r: r["tm_bytes"] / r["ops"], False),
                    ("bytes/actor (RSS)", "B", lambda r: r["rss_bytes"] / r["ops"], False)],
    "cross_thread": [("messages/s", "rate", _rate(), True)],
    "actor_burst": [("messages/s", "rate", _rate(), True)],
    "many_to_one": [("messages/s", "rate", _rate(), True)],
    "many_to_many": [("messages/s", "rate", _rate(), True)],
    "create_stop_25k": [("actors/s", "rate", _rate(), True)],
    "create_stop_200k": [("actors/s", "rate", _rate(), True)],
    "create_child_25k": [("actors/s", "rate", _rate(), True)],
    "create_child_200k": [("actors/s", "rate", _rate(), True)],
    "cross_thread_send": [("messages/s", "rate", _rate(), True)],
    "cross_thread_ask": [("round trips/s", "rate", _rate(), True)],
    "proxy_call": _api("proxy calls/s", "asks/s", "proxy ÷ ask"),
    "pool_8": _api("to a pool of 8/s", "to one actor/s", "pool ÷ one actor"),
    "async_receive": _api("async receive msgs/s", "plain receive msgs/s", "async ÷ plain"),
    "run_in_thread": _api("run_in_thread round trips/s", "executor round trips/s",
                          "ours ÷ executor"),
    # From bench_inspector.py --cells (run by bench/extras.py): burst, ping-pong.
    "inspector": [("inspector off msgs/s", "rate", lambda r: r["off"], True),
                  ("on, client reading msgs/s", "rate", lambda r: r["client"], True),
                  ("client reading ÷ off", "x", _over("client", "off"), True)],
}
METRICS["inspector_ping_pong"] = METRICS["inspector"]

# What each scenario is, for the report.
ABOUT = {
    "actor_burst": "one actor ctx.sends n messages to another, which counts them",
    "many_to_one": "60 producer actors send to one consumer; a small computation per message",
    "many_to_many": "60 producer actors send round robin to 60 consumers; a small "
                    "computation per message",
    "create_stop_25k": "n top-level actors spawned, each sent one message, each stops on it",
    "create_stop_200k": "as create_stop_25k, at 200k",
    "create_child_25k": "as create_stop_25k, as children of one parent actor",
    "create_child_200k": "as create_child_25k, at 200k",
    "cross_thread_send": "one other thread sends n messages to an actor (floor: a bare "
                         "deque hand-off with a socketpair wake-up)",
    "cross_thread_ask": "round trips from another thread, one at a time (floor: two "
                        "threads, two queue.Queue)",
    "proxy_call": "n engine.proxy(id).add(i) against n engine.ask(id, i, timeout=None) "
                  "(no timeout either side), 1,000 in flight at a time",
    "pool_8": "n engine.send to engine.spawn_pool(cls, id, 8) against n to one actor",
    "async_receive": "a burst to an async def receive that awaits nothing against a "
                     "plain receive",
    "run_in_thread": "ctx.run_in_thread round trips, one at a time, against a bare "
                     "ThreadPoolExecutor.submit().result() loop",
}


@dataclass(frozen=True)
class Target:
    """One target for backstage on the selectors backend.

    kind "vs": ours against implementation ``ref`` in the same scenario, at
    least ``bound`` times better; "scale": ours in this scenario against ours
    in scenario ``ref``, at least ``bound`` times; "max" / "min": the figure
    itself at most / at least ``bound``.
    """
    round: str          # "new" (issue 16), "kept" (met before, must stay), "stretch", "peers"
    scenario: str
    metric: str
    kind: str
    ref: str | None
    bound: float
    words: str


_CREATE = ("create_stop_25k", "create_stop_200k", "create_child_25k", "create_child_200k")
TARGETS: list[Target] = [
    Target("new", "actor_burst", "messages/s", "vs", "asyncio", 2.5,
           "≥ 2.5× hand-written asyncio"),
    Target("new", "many_to_one", "messages/s", "vs", "asyncio", 2, "≥ 2× asyncio"),
    Target("new", "many_to_many", "messages/s", "vs", "asyncio", 2, "≥ 2× asyncio"),
    Target("new", "create_stop_200k", "actors/s", "scale", "create_stop_25k", 0.9,
           "rate at 200k ≥ 0.9× the rate at 25k"),
    Target("new", "create_child_200k", "actors/s", "scale", "create_child_25k", 0.9,
           "rate at 200k ≥ 0.9× the rate at 25k"),
    *[Target("new", s, "actors/s", "vs", "asyncio", 3, "≥ 3× asyncio tasks") for s in _CREATE],
    Target("new", "skynet", "seconds", "vs", "asyncio", 1 / 0.7,
           "≤ 0.7× the time of asyncio tasks + futures"),
    Target("new", "skynet", "peak RSS", "max", None, 600, "peak RSS ≤ 600 MiB (1M leaves)"),
    Target("new", "cross_thread_send", "messages/s", "min", None, 1.5e6, "≥ 1.5 M msgs/s"),
    Target("new", "cross_thread_send", "messages/s", "vs", "floor", 0.8,
           "≥ 0.8× a bare two-thread deque hand-off with a wake-up"),
    Target("new", "cross_thread_ask", "round trips/s", "vs", "floor", 1.0,
           "≥ 1.0× a bare two-thread queue.Queue round trip"),
    Target("kept", "burst", "messages/s", "vs", "asyncio", 1.5, "≥ 1.5× hand-written asyncio"),
    Target("kept", "burst", "messages/s", "vs", "floor", 0.4, "≥ 0.4× the floor"),
    Target("kept", "ping_pong", "messages/s", "vs", "asyncio", 6, "≥ 6× hand-written asyncio"),
    Target("kept", "fan_out", "deliveries/s", "vs", "asyncio", 3,
           "≥ 3× hand-written asyncio batch delivery"),
    Target("kept", "idle_memory", "bytes/actor (tracemalloc)", "max", None, 512,
           "≤ 512 bytes per idle actor"),
    Target("kept", "idle_memory", "bytes/actor (RSS)", "max", None, 512,
           "≤ 512 bytes per idle actor (RSS)"),
    Target("kept", "inspector", "client reading ÷ off", "min", None, 0.95,
           "inspector on, a client reading: ≥ 0.95× off"),
    Target("stretch", "ping_pong", "messages/s", "vs", "floor", 0.5, "≥ 0.5× the floor"),
    Target("stretch", "fan_out", "deliveries/s", "vs", "floor", 0.8, "≥ 0.8× the floor"),
    Target("peers", "burst", "messages/s", "vs", "thespian", 15, "≥ 15× Thespian"),
    Target("peers", "burst", "messages/s", "vs", "pykka", 20, "≥ 20× Pykka"),
    Target("peers", "ping_pong", "messages/s", "vs", "asyncio/uvloop", 3,
           "≥ 3× asyncio on uvloop"),
    Target("peers", "ping_pong", "messages/s", "vs", "thespian", 6, "≥ 6× Thespian"),
    Target("peers", "ping_pong", "messages/s", "vs", "pykka", 20, "≥ 20× Pykka"),
]
ROUNDS = {"new": "16", "kept": "3, kept", "stretch": "3, stretch", "peers": "3"}
MAIN = "backstage/selectors"


###############################################################################
# One cell, in a subprocess
###############################################################################

def sizes_for(impl: str, scenario: str, mode: str) -> dict[str, int]:
    group = IMPLS[impl][2]
    sizes = SIZES[scenario]
    return sizes[mode if group == "ours" else f"{mode}-peers"]


def wanted(impl: str, scenario: str) -> bool:
    """Whether the cell exists at all: issue 13's figures are ours only."""
    return scenario not in OURS_ONLY or impl in OURS


def run_cell(impl: str, scenario: str, mode: str, repeats: int) -> dict:
    """Run one cell here, ``repeats`` times; each run's result is checked."""
    import gc
    module_name, kwargs, _ = IMPLS[impl]
    module = importlib.import_module(module_name)
    name, fixed = function_for(scenario)
    fn = getattr(module, name, None)
    sizes = sizes_for(impl, scenario, mode)
    cell = {"impl": impl, "scenario": scenario, "sizes": sizes, "runs": []}
    if fn is None:
        cell["skipped"] = "cannot do this scenario"
        return cell
    want = expected(scenario, sizes)
    for _ in range(repeats):
        gc.collect()
        before = [g["collections"] for g in gc.get_stats()]
        result = fn(**kwargs, **fixed, **sizes)
        # Cyclic GC passes per generation during the run (issue 16 asks for
        # GC counts: creation at scale is where the collector shows).
        result["gc"] = [g["collections"] - b for g, b in zip(gc.get_stats(), before,
                                                              strict=True)]
        if result.get("skipped"):           # an API not there yet (issue 13's figures)
            cell["skipped"] = result["skipped"]
            return cell
        if result["value"] != want:
            raise AssertionError(f"{impl} {scenario}: got {result['value']!r}, want {want!r}")
        cell["runs"].append(result)
    cell["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return cell


def spawn_cell(impl: str, scenario: str, mode: str, repeats: int, timeout: float) -> dict:
    """Run a cell in subprocesses: one, or one per run for FRESH scenarios."""
    procs = [repeats] if scenario not in FRESH else [1] * repeats
    cell: dict | None = None
    sizes = sizes_for(impl, scenario, mode)
    for count in procs:
        cmd = [sys.executable, "-m", "bench.run", "--cell", impl, scenario,
               "--mode", mode, "--repeats", str(count)]
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"impl": impl, "scenario": scenario, "sizes": sizes, "runs": [],
                    "error": f"timed out after {timeout:.0f} s", "timed_out": timeout}
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            last = lines[-1] if lines else f"exit {proc.returncode}"
            if "ModuleNotFoundError" in last:
                return {"impl": impl, "scenario": scenario, "runs": [],
                        "skipped": "not installed"}
            return {"impl": impl, "scenario": scenario, "sizes": sizes, "runs": [],
                    "error": last}
        part = json.loads(proc.stdout.strip().splitlines()[-1])
        if cell is None:
            cell = part
            cell["peak_rss_runs"] = [part.get("peak_rss_kb", 0)]
        else:
            cell["runs"] += part["runs"]
            cell["peak_rss_runs"].append(part.get("peak_rss_kb", 0))
        if part.get("skipped"):
            break
    return cell


def run_script(script: str, full: bool, timeout: float) -> list[dict]:
    cmd = [sys.executable, script, "--json"] + (["--full"] if full else [])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed: {proc.stderr.strip()[-500:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


###############################################################################
# Figures and the report
###############################################################################

def figures(cell: dict) -> dict[str, tuple[float, float, float]]:
    """Metric -> (median, min, max) over the cell's runs."""
    out = {}
    runs = cell.get("runs") or []
    if not runs:
        return out
    for name, _unit, fn, _higher in METRICS.get(cell["scenario"], []):
        values = [fn(r) for r in runs]
        out[name] = (statistics.median(values), min(values), max(values))
    rss = cell.get("peak_rss_runs") or ([cell["peak_rss_kb"]] if "peak_rss_kb" in cell else [])
    if rss:
        mib = [kb / 1024 for kb in rss]
        out["peak RSS"] = (statistics.median(mib), min(mib), max(mib))
    return out


def ceiling(cell: dict | None) -> float | None:
    """For a cell that timed out: its rate was below n / the time limit."""
    if not cell or not cell.get("timed_out") or "n" not in (cell.get("sizes") or {}):
        return None
    return cell["sizes"]["n"] / cell["timed_out"]


def ratio(ours: float, theirs: float, higher: bool) -> float:
    """How many times better ours is (more than 1: faster, or smaller)."""
    if higher:
        return ours / theirs if theirs else float("inf")
    return theirs / ours if ours else float("inf")


def fmt(value: float, unit: str) -> str:
    if unit == "rate":
        if value >= 1e6:
            return f"{value / 1e6:.2f} M/s"
        if value >= 1e3:
            return f"{value / 1e3:.1f} k/s"
        return f"{value:.0f} /s"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    if unit == "x":
        return f"{value:.2f}×"
    return f"{value:.3g}"


def fmt_sizes(sizes: dict[str, int] | None) -> str:
    if not sizes:
        return ""
    return ", ".join(f"{k}={v:,}" for k, v in sizes.items())


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def machine() -> list[str]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = []
    for pkg in ("uvloop", "pykka", "thespian"):
        try:
            from importlib.metadata import version
            versions.append(f"{pkg} {version(pkg)}")
        except Exception:
            versions.append(f"{pkg} not installed")
    return [
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {cpu}; "
        f"{platform.system()} {platform.release()}",
        f"- Python: {python_version()}; " + "; ".join(versions),
        f"- load average at the end of the run: {load} (the machine may be shared: "
        f"compare ratios measured in the same run, not absolute figures)",
    ]


def judge(target: Target, by: dict, figs: dict, mode: str) -> dict:
    """One target's row: what was measured and whether it is met ("yes", "no", "n/a", "–")."""
    t = target
    row = {"round": t.round, "scenario": t.scenario, "target": t.words}
    mine_cell = by.get((MAIN, t.scenario))
    mine = figs.get((MAIN, t.scenario), {}).get(t.metric)
    unit = "MiB" if t.metric == "peak RSS" else _unit(t.scenario, t.metric)
    higher = t.metric != "peak RSS" and _higher(t.scenario, t.metric)
    if mine is None and ceiling(mine_cell) is not None and higher and t.kind != "max":
        # Timed out: the rate is known to be below a bound, which may settle the target.
        top = ceiling(mine_cell)
        if t.kind == "min":
            value = top
        else:
            ref = figs.get((t.ref, t.scenario) if t.kind == "vs" else (MAIN, t.ref), {})
            if t.metric not in ref:
                return {**row, "measured": f"{mine_cell['error']}", "met": "–"}
            value = top / ref[t.metric][0]
        ok = value >= t.bound
        return {**row, "measured": f"< {fmt(value, unit if t.kind == 'min' else 'x')} "
                f"({mine_cell['error']}, n={mine_cell['sizes']['n']:,})",
                "met": "–" if ok else "no"}
    if mine is None:
        why = "not measured"
        if mine_cell and (mine_cell.get("error") or mine_cell.get("skipped")):
            why += f" ({mine_cell.get('error') or mine_cell.get('skipped')})"
        return {**row, "measured": why, "met": "–"}
    if t.kind in ("max", "min"):
        value = mine[0]
        ok = value <= t.bound if t.kind == "max" else value >= t.bound
        shown = fmt(value, unit)
    else:
        key = (t.ref, t.scenario) if t.kind == "vs" else (MAIN, t.ref)
        theirs = figs.get(key, {}).get(t.metric)
        if theirs is None:
            why = "not measured"
            other = by.get(key)
            if other and (other.get("error") or other.get("skipped")):
                why += f" ({key[0]} {key[1]}: {other.get('error') or other.get('skipped')})"
            return {**row, "measured": why, "met": "–"}
        value = ratio(mine[0], theirs[0], higher)
        ok = value >= t.bound
        if t.scenario == "skynet":
            shown = f"{1 / value:.2f}× the time ({fmt(mine[0], unit)} against " \
                    f"{fmt(theirs[0], unit)})"
        else:
            shown = f"{value:.2f}× ({fmt(mine[0], unit)} against {fmt(theirs[0], unit)})"
    met = "yes" if ok else "no"
    if t.scenario == "skynet" and mode != "full":
        # A million live actors is where the GC cost shows: judge it at full size only.
        shown += f" at {fmt_sizes(mine_cell.get('sizes'))}; judged at 1M by make bench-full"
        met = "n/a"
    return {**row, "measured": shown, "met": met, "value": value}


def report(cells: list[dict], mode: str, repeats: int, seconds: float,
           extras_text: str = "") -> tuple[str, list[dict]]:
    """The report's Markdown, and the targets' rows (also kept in the JSON)."""
    by = {(c["impl"], c["scenario"]): c for c in cells}
    figs = {key: figures(c) for key, c in by.items()}
    impls = list(dict.fromkeys(c["impl"] for c in cells))
    ours = [i for i in impls if i in OURS]
    others = [i for i in impls if i not in OURS]
    rows = [judge(t, by, figs, mode) for t in TARGETS]
    command = "make bench-full" if mode == "full" else "make bench"
    lines = [
        f"# Benchmark results, {python_version()}",
        "",
        f"`{command}` ({mode} mode), "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{seconds:.0f} s wall time. Each figure: median of {repeats} runs (min–max), "
        "unless a table says otherwise.",
        "",
        *machine(),
        "",
        "Ratios are how many times better ours is than the other, in the same run "
        "(more than 1: faster, or less memory). Pykka and Thespian run smaller sizes "
        "(their per-message cost would take minutes at ours); rates stay comparable.",
        "",
        f"## Targets ({MAIN}, {python_version()})",
        "",
        "Issue 16 is round two; \"3, kept\" were met in round one and must stay met.",
        "",
        "| issue | scenario | target | measured | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(f"| {ROUNDS[row['round']]} | {row['scenario']} | {row['target']} | "
                     f"{row['measured']} | {row['met']} |")
    if mode != "full":
        lines += ["", "Quick mode limits (make bench-full has none): " + "; ".join(
            _limit_note(s, lim) for s, lim in QUICK_LIMITS.items())
            + ". A timed-out cell's rate is below n ÷ the limit, as shown."]
    lines += _api_section(by, figs, ours)
    lines += _scenario_sections(cells, by, figs, impls, ours, others)
    lines.append("")
    if extras_text:
        lines.append(extras_text)
    return "\n".join(lines), rows


def _limit_note(scenario: str, limits: dict) -> str:
    words = []
    if "repeats" in limits:
        words.append(f"{limits['repeats']} run" + ("s" if limits["repeats"] != 1 else ""))
    if "timeout" in limits:
        words.append(f"a {limits['timeout']} s time limit")
    if "impls" in limits:
        words.append("not on " + ", ".join(i for i in IMPLS if i not in limits["impls"]))
    return f"{scenario}: " + ", ".join(words)


def _api_section(by: dict, figs: dict, ours: list[str]) -> list[str]:
    present = [s for s in SCENARIOS if s in OURS_ONLY and any((i, s) in by for i in ours)]
    if not present:
        return []
    lines = ["", "## Issue 13's figures (a new API against its baseline, in each run)", "",
             *[f"- {s}: {ABOUT[s]}." for s in present], "",
             "| figure | backend | new API | baseline | ratio (more than 1: the new API "
             "is faster) |", "| --- | --- | --- | --- | --- |"]
    for scenario in present:
        new, base, words = (m[0] for m in METRICS[scenario])
        for impl in ours:
            cell = by.get((impl, scenario))
            if cell is None:
                continue
            f = figs[(impl, scenario)]
            if not f:
                why = cell.get("skipped") or cell.get("error") or "no runs"
                lines.append(f"| {scenario} | {impl} | {why} | | |")
                continue
            lines.append(f"| {scenario} | {impl} | {new}: {fmt(f[new][0], 'rate')} | "
                         f"{base}: {fmt(f[base][0], 'rate')} | {words}: "
                         f"{fmt(f[words][0], 'x')} |")
    return lines


def _scenario_sections(cells, by, figs, impls, ours, others) -> list[str]:
    lines: list[str] = []
    for scenario in SCENARIOS + sorted({c["scenario"] for c in cells} - set(SCENARIOS)):
        metrics = METRICS.get(scenario, [])
        row_impls = [i for i in impls if (i, scenario) in by]
        if not row_impls:
            continue
        lines += ["", f"## {scenario}", ""]
        if scenario in ABOUT:
            lines += [ABOUT[scenario] + ".", ""]
        head = ["implementation", "sizes"] + [m[0] for m in metrics] + ["peak RSS",
                                                                        "GC passes 0/1/2"]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for impl in row_impls:
            cell = by[(impl, scenario)]
            if cell.get("skipped") or cell.get("error"):
                why = cell.get("skipped") or f"error: {cell['error']}"
                lines.append(f"| {impl} | {fmt_sizes(cell.get('sizes'))} | {why} |"
                             + " |" * (len(metrics) + 1))
                continue
            f = figs[(impl, scenario)]
            row = [impl, fmt_sizes(cell.get("sizes"))
                   + (f" ({len(cell['runs'])} run)" if len(cell["runs"]) == 1 else "")]
            for name, unit, _fn, _h in metrics:
                med, lo, hi = f[name]
                row.append(f"**{fmt(med, unit)}** ({fmt(lo, unit)} – {fmt(hi, unit)})")
            row.append(fmt(f["peak RSS"][0], "MiB") if "peak RSS" in f else "")
            row.append(_gc_passes(cell))
            lines.append("| " + " | ".join(row) + " |")
        lines += _ratio_table(scenario, metrics, by, figs, ours, others)
    return lines


def _gc_passes(cell: dict) -> str:
    """The cyclic collector's passes per generation in a cell's median run."""
    counts = [r["gc"] for r in cell.get("runs", []) if "gc" in r]
    if not counts:
        return ""
    return "/".join(f"{statistics.median(c[g] for c in counts):g}" for g in range(3))


def _ratio_table(scenario, metrics, by, figs, ours, others) -> list[str]:
    """Ratios of ours to every other implementation, per metric."""
    cols = [o for o in others if figs.get((o, scenario))]
    if not cols:
        return []
    lines = ["", "| ours, " + scenario + " | " + " | ".join(cols) + " |",
             "|" + " --- |" * (len(cols) + 1)]
    for name, unit, _fn, higher in metrics:
        for impl in ours:
            mine = figs.get((impl, scenario), {}).get(name)
            if mine is None:
                continue
            cells_ = []
            for o in cols:
                theirs = figs[(o, scenario)].get(name)
                # Times compare only at equal sizes; rates and bytes per actor always.
                if unit == "s" and by[(o, scenario)].get("sizes") != \
                        by[(impl, scenario)].get("sizes"):
                    theirs = None
                cells_.append(f"{ratio(mine[0], theirs[0], higher):.2f}×" if theirs else "–")
            lines.append(f"| {impl}: {name} | " + " | ".join(cells_) + " |")
    return lines


def _higher(scenario: str, metric: str) -> bool:
    for name, _unit, _fn, higher in METRICS.get(scenario, []):
        if name == metric:
            return higher
    return False


def _unit(scenario: str, metric: str) -> str:
    for name, unit, _fn, _higher in METRICS.get(scenario, []):
        if name == metric:
            return unit
    return ""


###############################################################################
# Results across Python versions
###############################################################################

def version_tag() -> str:
    return "py{}.{}".format(*sys.version_info[:2])


def summary(mode: str, directory: Path = ROOT / "bench") -> str:
    """The targets of every recorded Python version side by side (bench/results[-full].md)."""
    stem = "results-full" if mode == "full" else "results"
    runs = []
    for path in sorted(directory.glob(f"{stem}-py3.*.json"),
                       key=lambda p: tuple(int(x) for x in p.stem.split("py")[-1].split("."))):
        data = json.loads(path.read_text())
        runs.append((path.with_suffix(".md").name, data))
    command = "make bench-full-record" if mode == "full" else "make bench-record"
    lines = [f"# Benchmark results per Python version ({mode} mode)", "",
             f"Written by `{command}` (run it once per version: `{command} "
             "PYTHON=/root/.pyenv/versions/3.12.1/bin/python3`). Each version's "
             "whole report is in its own file; its date and load are in that file.", ""]
    if not runs:
        return "\n".join(lines + ["No version recorded yet.", ""])
    lines += [", ".join(f"[{data['python']}]({name}) ({data['date']})" for name, data in runs),
              "", f"## Targets ({MAIN})", "",
              "| issue | scenario | target | " + " | ".join(d["python"] for _n, d in runs) + " |",
              "|" + " --- |" * (3 + len(runs))]
    for t in TARGETS:
        cells_ = []
        for _name, data in runs:
            row = next((r for r in data["targets"] if r["scenario"] == t.scenario
                        and r["target"] == t.words), None)
            cells_.append("not run" if row is None else f"{row['met']}: {row['measured']}")
        lines.append(f"| {ROUNDS[t.round]} | {t.scenario} | {t.words} | "
                     + " | ".join(cells_) + " |")
    lines.append("")
    return "\n".join(lines)


###############################################################################
# Command line
###############################################################################

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the issues' sizes, 5 runs")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", default="", help="comma-separated scenarios")
    parser.add_argument("--impls", default="", help="comma-separated implementations")
    parser.add_argument("--out", default=None,
                        help="the report's path (default: bench/out/MODE-pyX.Y.md)")
    parser.add_argument("--record", action="store_true",
                        help="write the tracked bench/results[-full]-pyX.Y.md and the summary")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the standalone scripts of bench/extras.py")
    parser.add_argument("--summary", action="store_true",
                        help="only rebuild bench/results[-full].md from the recorded versions")
    parser.add_argument("--cell", nargs=2, metavar=("IMPL", "SCENARIO"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="quick", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.cell:
        print(json.dumps(run_cell(*args.cell, args.mode, args.repeats or 1)))
        return 0

    mode = "full" if args.full else "quick"
    stem = "results-full" if args.full else "results"
    if args.summary:
        (ROOT / "bench" / f"{stem}.md").write_text(summary(mode))
        return 0
    repeats = args.repeats or (5 if args.full else 3)
    scenarios = [s for s in args.only.split(",") if s] or SCENARIOS
    impls = [i for i in args.impls.split(",") if i] or list(IMPLS)
    started = time.monotonic()
    cells = [run_one(impl, scenario, mode, repeats)
             for scenario in scenarios for impl in impls if wanted(impl, scenario)]
    for script in EXTRA_SCRIPTS:
        cells += run_script(script, args.full, 900 if args.full else 120)
    extras_text = ""
    if not args.no_extras and not args.only:
        from bench import extras
        extras_text, extra_cells = extras.run_all(args.full)
        cells += extra_cells
    elapsed = time.monotonic() - started
    text, rows = report(cells, mode, repeats, elapsed, extras_text)
    out = output_path(mode, args.record, args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({
        "python": python_version(), "mode": mode,
        "date": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "load": os.getloadavg(), "targets": rows, "cells": cells}, indent=1, default=str))
    if args.record:
        (ROOT / "bench" / f"{stem}.md").write_text(summary(mode))
    print_targets(rows)
    print(f"wrote {out} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


def output_path(mode: str, record: bool, out: str | None) -> Path:
    """Where the report goes: the untracked bench/out/ unless recording."""
    if record:
        stem = "results-full" if mode == "full" else "results"
        return ROOT / "bench" / f"{stem}-{version_tag()}.md"
    return Path(out) if out else ROOT / "bench" / "out" / f"{mode}-{version_tag()}.md"


def run_one(impl: str, scenario: str, mode: str, repeats: int) -> dict:
    """One cell with its mode's limits, and a progress line on stderr."""
    limits = QUICK_LIMITS.get(scenario, {}) if mode == "quick" else {}
    if "impls" in limits and impl not in limits["impls"]:
        return {"impl": impl, "scenario": scenario, "runs": [],
                "skipped": "quick mode: left out (make bench-full runs it)"}
    t0 = time.monotonic()
    cell = spawn_cell(impl, scenario, mode, limits.get("repeats", repeats),
                      limits.get("timeout", 900 if mode == "full" else 120))
    status = cell.get("skipped") or cell.get("error") or ", ".join(
        f"{k} {fmt(v[0], 'MiB' if k == 'peak RSS' else _unit(scenario, k))}"
        for k, v in figures(cell).items())
    print(f"{scenario:18} {impl:20} {time.monotonic() - t0:5.1f} s  {status}",
          file=sys.stderr, flush=True)
    return cell


def print_targets(rows: list[dict]) -> None:
    print(f"Targets, {MAIN}, {python_version()}:")
    for row in rows:
        print(f"  {row['met']:>4}  [{ROUNDS[row['round']]}] {row['scenario']}: "
              f"{row['target']}: {row['measured']}")


if __name__ == "__main__":
    sys.exit(main())
