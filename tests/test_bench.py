"""The benchmark suite runs every scenario at a tiny size and gets the right answer.

No timing is asserted: this only keeps bench/ from rotting.  Pykka and
Thespian rows are skipped where those peers are not installed (they live in
the bench environments only), and issue 13's figures where their API is not
there yet.
"""

import importlib
import importlib.util
import json
import subprocess
import sys

import pytest

from bench.common import OURS_ONLY, SCENARIOS, SIZES, TINY, expected, function_for
from bench.run import IMPLS, METRICS, ROOT, TARGETS, figures, output_path, report, summary, wanted


def _impl_params():
    params = []
    for name, (module, kwargs, _group) in IMPLS.items():
        needs = {"bench.impl_pykka": "pykka", "bench.impl_thespian": "thespian"}.get(module)
        if kwargs.get("backend") == "uvloop" or kwargs.get("loop") == "uvloop":
            needs = "uvloop"
        marks = []
        if needs and importlib.util.find_spec(needs) is None:
            marks.append(pytest.mark.skip(reason=f"{needs} is not installed here"))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("impl", _impl_params())
def test_each_scenario_gives_the_expected_result_at_a_tiny_size(impl, scenario):
    if not wanted(impl, scenario):
        pytest.skip(f"{scenario} is a figure of ours only")
    module_name, kwargs, _group = IMPLS[impl]
    name, fixed = function_for(scenario)
    fn = getattr(importlib.import_module(module_name), name, None)
    if fn is None:
        pytest.skip(f"{impl} cannot do {scenario}")
    sizes = TINY[scenario]

    result = fn(**kwargs, **fixed, **sizes)

    if result.get("skipped"):
        # Only issue 13's figures may be missing, and only while their API is.
        assert scenario in OURS_ONLY and result["skipped"].startswith("n/a (API missing")
        pytest.skip(result["skipped"])
    assert result["value"] == expected(scenario, sizes)
    assert result["ops"] > 0


def test_every_scenario_has_tiny_sizes_and_metrics():
    assert set(TINY) == set(SIZES) == set(SCENARIOS)
    assert set(SCENARIOS) <= set(METRICS)


def test_every_target_names_a_scenario_and_metric_the_suite_measures():
    for target in TARGETS:
        names = [m[0] for m in METRICS[target.scenario]] + ["peak RSS"]
        assert target.metric in names, target
        if target.kind == "scale":
            assert target.ref in SCENARIOS, target


def test_skynet_sum_is_the_classic_one_for_a_million_leaves():
    assert expected("skynet", {"leaves": 1_000_000}) == 499999500000


def _cell(impl, scenario, seconds, n=10, **extra):
    return {"impl": impl, "scenario": scenario, "sizes": {"n": n},
            "runs": [{"seconds": seconds, "ops": n, "value": n, **extra}], "peak_rss_kb": 2048}


def test_the_report_shows_targets_figures_and_ratios_from_cells():
    # Two made-up cells: ours twice as fast as the floor on a burst.
    cells = [_cell("backstage/selectors", "burst", 1.0), _cell("floor", "burst", 2.0)]

    text, rows = report(cells, "quick", 1, 1.0)

    assert figures(cells[0])["messages/s"] == (10.0, 10.0, 10.0)
    assert "| 3, kept | burst | ≥ 0.4× the floor | 2.00× (10 /s against 5 /s) | yes |" in text
    assert "| backstage/selectors: messages/s | 2.00× |" in text
    assert {"scenario": "burst", "target": "≥ 0.4× the floor", "met": "yes"}.items() \
        <= next(r for r in rows if r["target"] == "≥ 0.4× the floor").items()


def test_a_rate_that_falls_at_scale_is_not_met():
    cells = [_cell("backstage/selectors", "create_stop_25k", 1.0, n=100),
             _cell("backstage/selectors", "create_stop_200k", 16.0, n=800)]

    text, _rows = report(cells, "quick", 1, 1.0)

    assert "| create_stop_200k | rate at 200k ≥ 0.9× the rate at 25k | 0.50× " in text
    assert text.split("rate at 200k ≥ 0.9× the rate at 25k | 0.50×")[1].split("\n")[0] \
        .endswith("| no |")


def test_a_timed_out_cell_is_judged_by_its_ceiling():
    # 200 actors not done in 20 s: below 10/s, against 100/s at the smaller size.
    cells = [_cell("backstage/selectors", "create_child_25k", 1.0, n=100),
             {"impl": "backstage/selectors", "scenario": "create_child_200k",
              "sizes": {"n": 200}, "runs": [], "error": "timed out after 20 s",
              "timed_out": 20}]

    _text, rows = report(cells, "quick", 1, 1.0)

    row = next(r for r in rows if r["scenario"] == "create_child_200k"
               and "200k" in r["target"])
    assert row["met"] == "no"
    assert row["measured"].startswith("< 0.10× (timed out after 20 s")


def test_an_absolute_floor_on_a_rate_is_judged():
    cells = [_cell("backstage/selectors", "cross_thread_send", 1.0, n=2_000_000)]

    _text, rows = report(cells, "quick", 1, 1.0)

    row = next(r for r in rows if r["target"] == "≥ 1.5 M msgs/s")
    assert (row["measured"], row["met"]) == ("2.00 M/s", "yes")


def test_issue_13_figures_show_both_rates_and_their_ratio():
    cells = [_cell("backstage/selectors", "proxy_call", 2.0, base_seconds=1.0),
             {"impl": "backstage/asyncio", "scenario": "proxy_call", "runs": [],
              "skipped": "n/a (API missing: engine.proxy)"}]

    text, _rows = report(cells, "quick", 1, 1.0)

    assert "proxy calls/s: 5 /s | asks/s: 10 /s | proxy ÷ ask: 0.50× |" in text
    assert "| backstage/asyncio | n/a (API missing: engine.proxy) | | |" in text


def test_the_summary_puts_each_recorded_python_side_by_side(tmp_path):
    for version, met in (("3.11", "yes"), ("3.12", "no")):
        rows = [{"scenario": "burst", "target": "≥ 0.4× the floor", "met": met,
                 "measured": "0.41×"}]
        (tmp_path / f"results-py{version}.json").write_text(json.dumps(
            {"python": f"CPython {version}.0", "date": "today", "targets": rows}))

    text = summary("quick", tmp_path)

    assert "| 3, kept | burst | ≥ 0.4× the floor | yes: 0.41× | no: 0.41× |" in text
    assert "[CPython 3.11.0](results-py3.11.md)" in text


def test_make_bench_writes_outside_the_tracked_files_unless_recording():
    assert output_path("quick", False, None).parent == ROOT / "bench" / "out"
    assert output_path("quick", True, None).parent == ROOT / "bench"
    assert output_path("full", True, None).name.startswith("results-full-py3.")


def test_run_py_runs_a_cell_in_a_subprocess_and_writes_its_report(tmp_path):
    out = tmp_path / "r.md"

    subprocess.run([sys.executable, "bench/run.py", "--only", "actor_burst", "--impls",
                    "floor", "--repeats", "1", "--no-extras", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)

    data = json.loads(out.with_suffix(".json").read_text())
    assert [c["scenario"] for c in data["cells"]] == ["actor_burst"]
    assert "## actor_burst" in out.read_text()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None or sys.platform != "linux",
                    reason="the cluster bench needs Ray, and /proc")
def test_the_cluster_bench_counts_each_threads_cpu_under_its_role():
    import os
    import threading
    import time

    from bench.bench_cluster import _thread_cpu

    spun, read = threading.Event(), threading.Event()

    def spin() -> None:
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass
        spun.set()
        read.wait(10)                   # alive, so that /proc still lists it

    names = {}
    link = threading.Thread(target=spin, name="backstage-link-0-1")
    before = _thread_cpu(os.getpid(), {})
    link.start()
    while link.native_id is None:
        time.sleep(0.001)
    names[link.native_id] = link.name
    spun.wait(10)
    after = _thread_cpu(os.getpid(), names)
    read.set()
    link.join()
    role = "backstage-link (waiter: .remote, ray.wait, ray.get)"
    assert after[role] - before.get(role, 0.0) >= 0.04
    assert not any(name.startswith("backstage-link-0") for name in after)
