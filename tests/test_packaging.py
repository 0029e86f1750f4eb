"""The distribution: the wheel, and `pip install .`, each in a fresh venv, outside the checkout.

Built and installed once per module (a venv and a build take seconds); every
program then runs from a temporary directory with `-I`, so the checkout's
backstage.py cannot stand in for the installed package.
"""

import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT

import backstage

DIST = "backstage_actors"
DIST_INFO = f"{DIST}-{backstage.__version__}.dist-info"
TIMEOUT = 300       # seconds; a venv and a pip install on a loaded machine


def run(*args, cwd=None, timeout=TIMEOUT):
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}"
    return out


def copy_sources(target):
    """What a clone has that the build reads: the engine, backends, inspectors, metadata."""
    target.mkdir()
    for name in ["backstage.py", "setup.py", "pyproject.toml", "MANIFEST.in", "README.md",
                 *map(os.path.basename, glob.glob(str(ROOT / "inspector_*.py")))]:
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "backends", target / "backends",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return target


def fresh_venv(path):
    run(sys.executable, "-m", "venv", path)
    return path / "bin" / "python"


def installed_files(python):
    """Paths the installed distribution put into site-packages, from its RECORD."""
    code = ("import importlib.metadata as m; "
            f"print('\\n'.join(str(f) for f in m.distribution({DIST!r}).files))")
    lines = run(python, "-I", "-c", code).stdout.split()
    return {line for line in lines if not line.startswith("../") and "__pycache__" not in line}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    source = copy_sources(tmp / "src")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--quiet", "-w", tmp / "dist", source)
    (built,) = (tmp / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The python of a fresh venv with the wheel installed (no dependencies, no index)."""
    python = fresh_venv(tmp_path_factory.mktemp("venv") / "venv")
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
    return python


@pytest.fixture
def elsewhere(tmp_path):
    """A directory far from the checkout, with copies of the examples under examples/."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_wheel_installs_one_package_named_backstage_and_its_metadata(wheel):
    names = zipfile.ZipFile(wheel).namelist()

    assert {name.split("/")[0] for name in names} == {"backstage", DIST_INFO}
    assert {"backstage/__init__.py", "backstage/py.typed", "backstage/inspector_curses.py",
            "backstage/backends/__init__.py", "backstage/backends/asyncio_backend.py",
            "backstage/backends/uvloop_backend.py"} <= set(names)


def test_the_wheel_carries_backstage_py_unchanged_as_the_package(wheel):
    inside = zipfile.ZipFile(wheel).read("backstage/__init__.py")

    assert inside == (ROOT / "backstage.py").read_bytes()


def test_the_wheel_declares_the_console_commands_and_the_extras(wheel):
    archive = zipfile.ZipFile(wheel)
    entry_points = archive.read(f"{DIST_INFO}/entry_points.txt").decode()
    metadata = archive.read(f"{DIST_INFO}/METADATA").decode()

    assert "backstage-inspector = backstage.inspector_curses:main" in entry_points
    assert "backstage-prometheus = backstage.inspector_prometheus:main" in entry_points
    extras = {line.split(": ")[1] for line in metadata.splitlines()
              if line.startswith("Provides-Extra: ")}
    assert extras == {"uvloop", "menu", "prometheus", "ray"}


def test_the_installed_package_is_imported_from_the_venv_and_marked_typed(installed, elsewhere):
    code = ("import backstage, os, sys; "
            "print(os.path.dirname(backstage.__file__)); print(sys.prefix)")

    package, prefix = run(installed, "-I", "-c", code, cwd=elsewhere).stdout.split()

    assert package.startswith(prefix) and package.endswith(os.sep + "backstage")
    assert os.path.exists(os.path.join(package, "py.typed"))


def test_the_installed_package_runs_the_quick_start(installed, elsewhere):
    expected = run(sys.executable, ROOT / "examples" / "quickstart.py").stdout

    out = run(installed, "-I", elsewhere / "examples" / "quickstart.py", cwd=elsewhere)

    assert out.stdout == expected
    assert "subscriber got 'Direct message' directly" in out.stdout


def test_the_installed_package_runs_the_asyncio_example_on_its_asyncio_backend(installed,
                                                                               elsewhere):
    out = run(installed, "-I", elsewhere / "examples" / "asyncio_app.py", cwd=elsewhere)

    assert out.stdout.splitlines()[-1] == "words counted by the actor: 15"


def test_the_backstage_inspector_command_prints_its_help(installed, elsewhere):
    out = run(installed.parent / "backstage-inspector", "--help", cwd=elsewhere)

    assert out.stdout.startswith("usage: ")
    assert "Live view of a running backstage engine" in out.stdout


@pytest.mark.skipif(not (ROOT / "inspector_prometheus.py").exists(),
                    reason="inspector_prometheus.py is not in this tree yet")
def test_the_backstage_prometheus_command_prints_its_help(installed, elsewhere):
    out = run(installed.parent / "backstage-prometheus", "--help", cwd=elsewhere)

    assert out.stdout.startswith("usage: ")


def test_mypy_strict_reads_the_installed_package_as_typed(installed, elsewhere):
    # Without py.typed inside a package, mypy says import-untyped; with Any
    # returns, the program's assert_type lines fail.
    shutil.copy(ROOT / "tests" / "typing" / "user_program.py", elsewhere / "user_program.py")
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}

    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(elsewhere / ".mypy_cache"), "--python-executable", str(installed),
         "user_program.py"], cwd=elsewhere, env=env, capture_output=True, text=True,
        timeout=TIMEOUT)

    assert out.returncode == 0, out.stdout + out.stderr


def test_pip_install_of_the_checkout_installs_what_the_wheel_installs(installed,
                                                                       tmp_path):
    # The ordinary way, with build isolation: pip fetches setuptools itself.
    python = fresh_venv(tmp_path / "venv")
    source = copy_sources(tmp_path / "src")

    run(python, "-m", "pip", "install", "--quiet", source)

    assert installed_files(python) == installed_files(installed)
    assert not [name for name in installed_files(python)
                if "/" not in name and name.endswith(".py")]
