"""The suite on every supported CPython, and lint: `make test-all` runs `nox`.

    nox                   # tests on 3.11, 3.12 and 3.13, then lint
    nox -s tests-3.13     # one version; arguments after -- go to pytest
    nox -s lint           # ruff, and mypy --strict on the files in pyproject.toml

Each version's interpreter is `python3.X` on PATH; where that is missing or is a
pyenv shim that cannot run it, pyenv's own copy ($PYENV_ROOT/versions/3.X.*) is
put first on PATH.  A version found nowhere fails the run: it is never skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import nox

PYTHONS = ["3.11", "3.12", "3.13"]

nox.options.sessions = ["tests", "lint"]
nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True


def _runs(executable: str) -> bool:
    try:
        return subprocess.run([executable, "-c", ""], capture_output=True,
                              timeout=30).returncode == 0
    except OSError:
        return False


def _version_key(bindir: str) -> tuple[int, ...]:
    version = os.path.basename(os.path.dirname(bindir))
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def _put_interpreters_on_path() -> None:
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for version in PYTHONS:
        found = shutil.which(f"python{version}")
        if found and _runs(found):
            continue
        candidates = glob.glob(os.path.join(root, "versions", f"{version}.*", "bin"))
        for bindir in sorted(candidates, key=_version_key, reverse=True):
            if _runs(os.path.join(bindir, f"python{version}")):
                os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
                break


_put_interpreters_on_path()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite, every backend, on one version."""
    session.install("-r", "requirements-dev.txt")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff, and mypy --strict (files and settings in pyproject.toml's [tool.mypy])."""
    session.install("-r", "requirements-dev.txt")
    session.run("ruff", "check", ".")
    session.run("mypy")
