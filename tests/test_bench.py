"""The benchmark suite runs every scenario at a tiny size and gets the right answer.

No timing is asserted: this only keeps bench/ from rotting.  Pykka and
Thespian rows are skipped where those peers are not installed (they live in
the bench environment only).
"""

import importlib
import importlib.util

import pytest

from bench.common import SCENARIOS, TINY, expected
from bench.run import IMPLS, figures, report


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
    module_name, kwargs, _group = IMPLS[impl]
    fn = getattr(importlib.import_module(module_name), scenario, None)
    if fn is None:
        pytest.skip(f"{impl} cannot do {scenario}")
    sizes = TINY[scenario]

    result = fn(**kwargs, **sizes)

    assert result["value"] == expected(scenario, sizes)
    assert result["ops"] > 0


def test_skynet_sum_is_the_classic_one_for_a_million_leaves():
    assert expected("skynet", {"leaves": 1_000_000}) == 499999500000


def test_the_report_shows_targets_figures_and_ratios_from_cells():
    # Two made-up cells: ours twice as fast as the floor on a burst.
    cells = [
        {"impl": "backstage/selectors", "scenario": "burst", "sizes": {"n": 10},
         "runs": [{"seconds": 1.0, "ops": 10, "value": 10}], "peak_rss_kb": 2048},
        {"impl": "floor", "scenario": "burst", "sizes": {"n": 10},
         "runs": [{"seconds": 2.0, "ops": 10, "value": 10}], "peak_rss_kb": 1024},
    ]

    text = report(cells, "quick", 1, 1.0)

    assert figures(cells[0])["messages/s"] == (10.0, 10.0, 10.0)
    assert "| burst | ≥ 0.4× the floor | 2.00× | yes |" in text
    assert "| backstage/selectors: messages/s | 2.00× |" in text
