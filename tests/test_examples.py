"""Every example runs as a user would run it, and says what it should."""

import subprocess
import sys

import pytest
from conftest import ROOT

# example file -> (extra arguments, a line its output must contain)
EXPECTED = {
    "asyncio_app.py": ([], "words counted by the actor: 15"),
    "demo.py": (["--seconds", "1", "--no-split"], "stopping after 1 s."),
    "quickstart.py": ([], "subscriber got 'Direct message' directly"),
    "workers.py": ([], "10000 results, sum of squares so far 333283335000"),
}


# Servers that run until stopped are run as programs by their own tests.
RUN_ELSEWHERE = {"chat_server.py": "tests/test_chat_server.py"}


def test_every_example_has_an_expectation():
    examples = sorted(p.name for p in (ROOT / "examples").glob("*.py"))

    assert examples == sorted([*EXPECTED, *RUN_ELSEWHERE])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_example_runs_and_prints_what_it_promises(name):
    args, expected = EXPECTED[name]

    out = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert out.returncode == 0, out.stderr
    assert expected in out.stdout.splitlines()
    assert "Traceback" not in out.stderr
