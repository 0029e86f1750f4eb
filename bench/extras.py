"""Append the figures of the standalone bench scripts to a results file.

    python bench/extras.py bench/results.md [--full]

Each script measures what the scenario table does not: the inspector's cost,
burst under each overflow policy and ask round trips, the backends side by
side, and (with --full) the chat server.  Their output goes in as it is.
"""

import subprocess
import sys
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


def main() -> int:
    out = Path(sys.argv[1])
    scripts = FULL if "--full" in sys.argv else QUICK
    parts = ["", "## More figures (standalone scripts, same machine, same run)", ""]
    for title, command in scripts:
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]],
                              capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        parts += [f"### {title}", "", f"`python bench/{' '.join(command)}` "
                  f"({time.monotonic() - started:.0f} s)", "", "```",
                  done.stdout.strip(), "```", ""]
        print(f"{title}: done", file=sys.stderr)
    with out.open("a") as results:
        results.write("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
