"""Instruction counts of the core scenarios, for comparing two backstage.py files.

Wall-clock figures swing on a loaded machine; instruction counts do not.  Run
one scenario of one backstage.py under callgrind and read the total Ir::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python bench/instructions.py SCENARIO [PATH/TO/backstage.py]

SCENARIO is one of: none, burst, ping_pong, fan_out, ring, skynet, actor_burst,
many_to_one, many_to_many, create_stop, create_child (25k actors), and
remote_run (batches of plain sends of one sender arriving from another
engine, as the Ray transport hands them over, queued and handled).  "none"
imports and does nothing: subtract its count from the others, and divide by
the operations the scenario prints, for instructions per operation.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = {
    # name: (function in bench.impl_backstage, arguments)
    "none": None,
    "burst": ("burst", (200_000,)),
    "ping_pong": ("ping_pong", (100_000,)),
    "fan_out": ("fan_out", (2_000, 50)),
    "ring": ("ring", (100, 1_000)),
    "skynet": ("skynet", (10_000,)),
    # Round two (issue 16).
    "actor_burst": ("actor_burst", (200_000,)),
    "many_to_one": ("many_to_one", (60, 2_000)),
    "many_to_many": ("many_to_many", (60, 2_000)),
    "create_stop": ("create_stop", (25_000, False)),
    "create_child": ("create_stop", (25_000, True)),
    # Issue 15: the receiving engine's part of a cluster's batch.
    "remote_run": ("remote_run", (20, 10_000)),
}


def remote_run(backstage: object, batches: int, size: int) -> dict:
    """``batches`` lists of ``size`` plain sends from one remote sender, each
    queued as the Ray transport's receiver queues it, then handled."""
    from bench.impl_backstage import Counter

    engine = backstage.Engine()  # type: ignore[attr-defined]
    counter = engine.spawn_actor(Counter, "counter")
    run = getattr(engine, "_deliver_remote_run", None)
    for _ in range(batches):
        messages = list(range(size))
        if run is not None:
            run("counter", "far/producer", messages)
        else:       # the receiving side before runs: a tuple per message
            engine._deliver_remote(
                "counter", [("far/producer", message, None) for message in messages])
        engine.run()
    engine.close()
    return {"ops": batches * size, "value": counter.count}


def main() -> None:
    scenario = sys.argv[1]
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "backstage.py"
    spec = importlib.util.spec_from_file_location("backstage", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["backstage"] = module
    spec.loader.exec_module(module)
    sys.path.insert(0, str(ROOT))
    from bench import impl_backstage

    if SCENARIOS[scenario] is None:
        print(scenario, "ops=0")
        return
    name, args = SCENARIOS[scenario]
    if name == "remote_run":
        result = remote_run(module, *args)
    else:
        result = getattr(impl_backstage, name)("selectors", *args)
    print(scenario, f"ops={result['ops']}", f"value={result['value']}")


if __name__ == "__main__":
    main()
