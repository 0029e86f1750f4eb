"""Run the benchmark suite and write bench/results.md.

    python bench/run.py            # quick: reduced sizes, 3 runs per figure (`make bench`)
    python bench/run.py --full --out bench/results-full.md
                                   # the issue's sizes, 5 runs (`make bench-full`)
    python bench/run.py --only burst,ring --impls backstage/selectors,floor

Each (implementation, scenario) cell runs in its own subprocess, so one
cell's memory never inflates another's peak RSS; skynet and idle memory get a
fresh process per run.  A figure is the median of the runs, with min and max.
Ratios compare figures of the same run: ours against each peer and the floor,
always as "how many times better ours is" (more than 1: ours is faster, or
smaller).

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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import SCENARIOS, SIZES, expected  # noqa: E402

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


def _rate(key: str = "seconds"):
    return lambda r: r["ops"] / r[key] if r[key] > 0 else float("inf")


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
}

# The targets, for backstage on the selectors backend: (scenario,
# metric, against, least ratio, how the issue words it).  "against" None
# means an absolute bound on the figure itself (at most "least").
TARGETS = [
    ("burst", "messages/s", "asyncio", 1.5, "≥ 1.5× hand-written asyncio"),
    ("burst", "messages/s", "thespian", 15, "≥ 15× Thespian"),
    ("burst", "messages/s", "pykka", 20, "≥ 20× Pykka"),
    ("burst", "messages/s", "floor", 0.4, "≥ 0.4× the floor"),
    ("ping_pong", "messages/s", "asyncio", 6, "≥ 6× hand-written asyncio"),
    ("ping_pong", "messages/s", "asyncio/uvloop", 3, "≥ 3× asyncio on uvloop"),
    ("ping_pong", "messages/s", "thespian", 6, "≥ 6× Thespian"),
    ("ping_pong", "messages/s", "pykka", 20, "≥ 20× Pykka"),
    ("ping_pong", "messages/s", "floor", 0.5, "≥ 0.5× the floor"),
    ("fan_out", "deliveries/s", "asyncio", 3, "≥ 3× hand-written asyncio batch delivery"),
    ("fan_out", "deliveries/s", "floor", 0.8, "≥ 0.8× the floor"),
    ("skynet", "seconds", "asyncio", 1 / 0.7, "≤ 0.7× the time of asyncio tasks + futures"),
    ("skynet", "peak RSS", None, 600, "peak RSS ≤ 600 MiB (1M leaves)"),
    ("idle_memory", "bytes/actor (tracemalloc)", None, 512, "≤ 512 bytes per idle actor"),
    ("idle_memory", "bytes/actor (RSS)", None, 512, "≤ 512 bytes per idle actor (RSS)"),
]


###############################################################################
# One cell, in a subprocess
###############################################################################

def sizes_for(impl: str, scenario: str, mode: str) -> dict[str, int]:
    group = IMPLS[impl][2]
    return SIZES[scenario][mode if group == "ours" else f"{mode}-peers"]


def run_cell(impl: str, scenario: str, mode: str, repeats: int) -> dict:
    """Run one cell here, ``repeats`` times; each run's result is checked."""
    import gc
    module_name, kwargs, _ = IMPLS[impl]
    module = importlib.import_module(module_name)
    fn = getattr(module, scenario, None)
    sizes = sizes_for(impl, scenario, mode)
    cell = {"impl": impl, "scenario": scenario, "sizes": sizes, "runs": []}
    if fn is None:
        cell["skipped"] = "cannot do this scenario"
        return cell
    want = expected(scenario, sizes)
    for _ in range(repeats):
        gc.collect()
        result = fn(**kwargs, **sizes)
        if result["value"] != want:
            raise AssertionError(f"{impl} {scenario}: got {result['value']!r}, want {want!r}")
        cell["runs"].append(result)
    cell["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return cell


def spawn_cell(impl: str, scenario: str, mode: str, repeats: int, timeout: float) -> dict:
    """Run a cell in subprocesses: one, or one per run for FRESH scenarios."""
    procs = [repeats] if scenario not in FRESH else [1] * repeats
    cell: dict | None = None
    for count in procs:
        cmd = [sys.executable, "-m", "bench.run", "--cell", impl, scenario,
               "--mode", mode, "--repeats", str(count)]
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"impl": impl, "scenario": scenario, "runs": [],
                    "error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            last = lines[-1] if lines else f"exit {proc.returncode}"
            if "ModuleNotFoundError" in last:
                return {"impl": impl, "scenario": scenario, "runs": [],
                        "skipped": "not installed"}
            return {"impl": impl, "scenario": scenario, "runs": [], "error": last}
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
    return f"{value:.3g}"


def fmt_sizes(sizes: dict[str, int] | None) -> str:
    if not sizes:
        return ""
    return ", ".join(f"{k}={v:,}" for k, v in sizes.items())


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
        f"- Python: {platform.python_implementation()} {platform.python_version()}; "
        + "; ".join(versions),
        f"- load average at the end of the run: {load} (the machine may be shared: "
        f"compare ratios measured in the same run, not absolute figures)",
    ]


def report(cells: list[dict], mode: str, repeats: int, seconds: float) -> str:
    by = {(c["impl"], c["scenario"]): c for c in cells}
    figs = {key: figures(c) for key, c in by.items()}
    impls = list(dict.fromkeys(c["impl"] for c in cells))
    ours = [i for i in impls if i in OURS]
    others = [i for i in impls if i not in OURS]
    lines = [
        "# Benchmark results",
        "",
        f"`{'make bench-full' if mode == 'full' else 'make bench'}` ({mode} mode), "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{seconds:.0f} s wall time. Each figure: median of {repeats} runs (min–max).",
        "",
        *machine(),
        "",
        "Ratios are how many times better ours is than the other, in the same run "
        "(more than 1: faster, or less memory). Pykka and Thespian run smaller sizes "
        "(their per-message cost would take minutes at ours); rates stay comparable.",
        "",
        "## Targets (backstage on the selectors backend)",
        "",
        "| scenario | target | measured | met |",
        "| --- | --- | --- | --- |",
    ]
    main = "backstage/selectors"
    for scenario, metric, against, least, words in TARGETS:
        mine = figs.get((main, scenario), {}).get(metric)
        if against is None:
            if mine is None:
                lines.append(f"| {scenario} | {words} | not measured | – |")
                continue
            unit = "MiB" if metric == "peak RSS" else "B"
            note = ""
            if scenario == "skynet" and mode != "full":
                note = f" ({fmt_sizes(by[(main, scenario)].get('sizes'))}; the target is for 1M)"
            met = "yes" if mine[0] <= least else "no"
            if note:
                met = "n/a"
            lines.append(f"| {scenario} | {words} | {fmt(mine[0], unit)}{note} | {met} |")
            continue
        theirs = figs.get((against, scenario), {}).get(metric)
        if mine is None or theirs is None:
            lines.append(f"| {scenario} | {words} | not measured | – |")
            continue
        higher = _higher(scenario, metric)
        r = ratio(mine[0], theirs[0], higher)
        shown = f"{r:.2f}×" if scenario != "skynet" else f"{1 / r:.2f}× the time"
        met = "yes" if r >= least else "no"
        if scenario == "skynet" and mode != "full":
            # A million live actors is where the GC cost shows: judge it at full size only.
            shown += f" ({fmt_sizes(by[(main, scenario)].get('sizes'))}; the target is for 1M)"
            met = "n/a"
        lines.append(f"| {scenario} | {words} | {shown} | {met} |")

    for scenario in SCENARIOS + sorted({c["scenario"] for c in cells} - set(SCENARIOS)):
        metrics = METRICS.get(scenario, [])
        row_impls = [i for i in impls if (i, scenario) in by]
        if not row_impls:
            continue
        lines += ["", f"## {scenario}", ""]
        head = ["implementation", "sizes"] + [m[0] for m in metrics] + ["peak RSS"]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for impl in row_impls:
            cell = by[(impl, scenario)]
            if cell.get("skipped") or cell.get("error"):
                why = cell.get("skipped") or f"error: {cell['error']}"
                lines.append(f"| {impl} | | {why} |" + " |" * len(metrics))
                continue
            f = figs[(impl, scenario)]
            row = [impl, fmt_sizes(cell.get("sizes"))]
            for name, unit, _fn, _h in metrics:
                med, lo, hi = f[name]
                row.append(f"**{fmt(med, unit)}** ({fmt(lo, unit)} – {fmt(hi, unit)})")
            row.append(fmt(f["peak RSS"][0], "MiB") if "peak RSS" in f else "")
            lines.append("| " + " | ".join(row) + " |")
        # Ratios of ours to every other implementation, per metric.
        cols = [o for o in others if figs.get((o, scenario))]
        if cols:
            lines += ["", "| ours, " + scenario + " | " + " | ".join(cols) + " |",
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
                        cells_.append(f"{ratio(mine[0], theirs[0], higher):.2f}×"
                                      if theirs else "–")
                    lines.append(f"| {impl}: {name} | " + " | ".join(cells_) + " |")
    lines.append("")
    return "\n".join(lines)


def _higher(scenario: str, metric: str) -> bool:
    for name, _unit, _fn, higher in METRICS.get(scenario, []):
        if name == metric:
            return higher
    return False


###############################################################################
# Command line
###############################################################################

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the issue's sizes, 5 runs")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", default="", help="comma-separated scenarios")
    parser.add_argument("--impls", default="", help="comma-separated implementations")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.md"))
    parser.add_argument("--cell", nargs=2, metavar=("IMPL", "SCENARIO"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="quick", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.cell:
        print(json.dumps(run_cell(*args.cell, args.mode, args.repeats or 1)))
        return 0

    mode = "full" if args.full else "quick"
    repeats = args.repeats or (5 if args.full else 3)
    scenarios = [s for s in args.only.split(",") if s] or SCENARIOS
    impls = [i for i in args.impls.split(",") if i] or list(IMPLS)
    timeout = 900 if args.full else 120
    started = time.monotonic()
    cells = []
    for scenario in scenarios:
        for impl in impls:
            t0 = time.monotonic()
            cell = spawn_cell(impl, scenario, mode, repeats, timeout)
            cells.append(cell)
            status = cell.get("skipped") or cell.get("error") or ", ".join(
                f"{k} {fmt(v[0], 'MiB' if k == 'peak RSS' else _unit(scenario, k))}"
                for k, v in figures(cell).items())
            print(f"{scenario:12} {impl:20} {time.monotonic() - t0:5.1f} s  {status}",
                  file=sys.stderr, flush=True)
    for script in EXTRA_SCRIPTS:
        cells += run_script(script, args.full, timeout)
    text = report(cells, mode, repeats, time.monotonic() - started)
    Path(args.out).write_text(text)
    print(f"wrote {args.out} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


def _unit(scenario: str, metric: str) -> str:
    for name, unit, _fn, _higher in METRICS.get(scenario, []):
        if name == metric:
            return unit
    return ""


if __name__ == "__main__":
    sys.exit(main())
