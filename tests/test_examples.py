"""Every example runs as a user would run it, and says what it should."""

import os
import re
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
    "crawler.py": ([], "crawled 40 pages and 118 links, 0 failed"),
}


# Servers that run until stopped are run as programs by their own tests.
RUN_ELSEWHERE = {"chat_server.py": "tests/test_chat_server.py",
                 "wordcount_cluster.py": "tests/test_cluster_ray.py"}


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


def readme_programs():
    """The README's Python blocks that are whole programs (they import backstage)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return [block for block in blocks if re.search(r"^import backstage$", block, re.M)]


# In README order: the quick start, request/reply, constructor arguments,
# proxies, pools, blocking work, a coroutine handler, stash and become,
# testing your actors, the asyncio program.
README_SAYS = ["subscriber got 'Direct message' directly", "42", "hello, says ann",
               "refused: only 120 left", "ann has seen 3 pages", "2cf24dba5fb0", "12",
               "sending c", "passed", "42"]


@pytest.mark.parametrize("index", range(len(README_SAYS)))
def test_each_whole_program_in_the_readme_runs_as_printed(index, tmp_path):
    program = tmp_path / "snippet.py"
    program.write_text(readme_programs()[index])

    out = subprocess.run([sys.executable, str(program)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})

    assert out.returncode == 0, out.stderr
    assert README_SAYS[index] in out.stdout.splitlines()
    assert "Traceback" not in out.stderr


def test_every_whole_program_in_the_readme_has_an_expectation():
    assert len(readme_programs()) == len(README_SAYS)


def test_the_quick_start_and_examples_quickstart_print_exactly_what_the_readme_shows(tmp_path):
    text = (ROOT / "README.md").read_text()
    shown = re.search(r"^## Quick start\n.*?^prints\n\n```\n(.*?)```", text, re.S | re.M)
    assert shown, "the README's quick start shows what it prints"
    program = tmp_path / "quick_start.py"
    program.write_text(readme_programs()[0])

    outputs = [subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
               for path in (program, ROOT / "examples" / "quickstart.py")]

    assert [out.stdout for out in outputs] == [shown.group(1)] * 2


def test_every_python_block_in_the_readme_is_valid_python():
    # The fragments too (a supervisor declaration, a typed proxy, a logging setup):
    # they are not run, but a newcomer copies them.
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)

    for block in blocks:
        compile(block, "README.md", "exec")
    assert len(blocks) > len(README_SAYS)
