"""The standalone bench scripts, run after the scenario cells.

    python bench/extras.py bench/out/quick-py3.11.md [--full]   # append to a file

bench/run.py calls run_all() and puts the output into its report.  Each script
measures what the scenario table does not: the inspector's cost, burst under
each overflow policy and ask round trips, the backends side by side, and (with
--full) the chat server.  Their output goes in as it is; bench_inspector.py
also writes its runs as a cell (``--cells FILE``), so the inspector's target
joins the targets table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

QUICK = [
    ("Inspector cost", ["bench_inspector.py", "--runs", "3"]),
    ("Overflow policies and ask", ["bench_overflow_ask.py", "--quick"]),
    ("Backends side by side", ["bench_backends.py", "--runs", "3", "--burst", "300000",
                               "--bounces", "100000"]),
]
FULL = [
    ("Inspector cost, snapshots at the default interval (0.5 s)",
     ["bench_inspector.py", "--interval", "0.5", "--messages", "5000000"]),
    ("Inspector cost, snapshots ten times as often (0.05 s)", ["bench_inspector.py"]),
    ("Overflow policies and ask", ["bench_overflow_ask.py"]),
    ("Backends side by side", ["bench_backends.py"]),
    ("Chat server, 200 clients", ["bench_chat.py"]),
]


def run_all(full: bool) -> tuple[str, list[dict]]:
    """Run the scripts; their Markdown section, and the cells they wrote.

    In full mode the inspector's cell is the one at the default interval (the
    first), which is what its target is about.
    """
    scripts = FULL if full else QUICK
    parts = ["", "## More figures (standalone scripts, same machine, same run)", ""]
    cells: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-extras-") as directory:
        for index, (title, command) in enumerate(scripts):
            extra: list[str] = []
            cells_file = Path(directory) / f"cells-{index}.jsonl"
            if command[0] == "bench_inspector.py":
                extra = ["--cells", str(cells_file)]
            started = time.monotonic()
            done = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:], *extra],
                                  capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"{command[0]} failed:\n{done.stderr}")
            parts += [f"### {title}", "", f"`python bench/{' '.join(command)}` "
                      f"({time.monotonic() - started:.0f} s)", "", "```",
                      done.stdout.strip(), "```", ""]
            if cells_file.exists() and not any(c["scenario"] == "inspector" for c in cells):
                cells += [json.loads(line) for line in cells_file.read_text().splitlines()]
            print(f"{title}: done", file=sys.stderr, flush=True)
    return "\n".join(parts), cells


def main() -> int:
    out = Path(sys.argv[1])
    text, _cells = run_all("--full" in sys.argv)
    with out.open("a") as results:
        results.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
