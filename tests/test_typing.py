"""What the library hands back is typed: a user's mypy --strict sees the actor classes."""

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

USER_PROGRAM = ROOT / "tests" / "typing" / "user_program.py"


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mypy-cache")


def run_mypy(cache, *paths):
    env = dict(os.environ, MYPYPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(cache), *map(str, paths)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_typed_user_program_runs():
    out = subprocess.run([sys.executable, str(USER_PROGRAM)], capture_output=True, text=True,
                         timeout=120)

    assert out.returncode == 0, out.stderr
    assert out.stdout == "45 42\n"


def test_mypy_strict_finds_nothing_wrong_in_the_typed_user_program(mypy_cache):
    out = run_mypy(mypy_cache, USER_PROGRAM)

    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_catches_a_misspelt_attribute_of_a_spawned_actor(mypy_cache, tmp_path):
    # If spawn_actor handed back Any, mypy would let the typo through.
    program = tmp_path / "typo.py"
    program.write_text(textwrap.dedent("""
        import backstage

        class Counter:
            def __init__(self, ctx: backstage.Context) -> None:
                self.ctx = ctx
                self.count = 0

            def receive(self, envelope: backstage.Envelope) -> None:
                self.count += 1

        def main() -> None:
            engine = backstage.Engine()
            print(engine.spawn_actor(Counter, "c").cuont)
            found = engine.get_actor("c", Counter)
            if found is not None:
                print(found.conut)

        class Parent:
            def __init__(self, ctx: backstage.Context) -> None:
                self.ctx = ctx
                self.child = ctx.spawn_child_actor(Counter, "child")

            def receive(self, envelope: backstage.Envelope) -> None:
                self.child.ctx.sned("x", 1)
    """))

    out = run_mypy(mypy_cache, program)

    assert '"Counter" has no attribute "cuont"' in out.stdout, out.stdout + out.stderr
    assert '"Context" has no attribute "sned"' in out.stdout, out.stdout + out.stderr
    assert '"Counter" has no attribute "conut"' in out.stdout, out.stdout + out.stderr


class Counter:
    def __init__(self, ctx):
        self.ctx = ctx
        self.count = 0

    def receive(self, envelope):
        self.count += 1


class Other(Counter):
    pass


def test_get_actor_with_its_class_returns_the_actor(engine):
    counter = engine.spawn_actor(Counter, "counter")

    assert engine.get_actor("counter", Counter) is counter
    assert counter.ctx.get_actor("counter", Counter) is counter


def test_get_actor_with_a_class_returns_none_for_an_unknown_id(engine):
    assert engine.get_actor("nobody", Counter) is None


def test_get_actor_with_another_class_raises_a_type_error_that_says_what_to_pass(engine):
    engine.spawn_actor(Counter, "counter")

    with pytest.raises(TypeError, match=r"^actor 'counter' is of class Counter, not Other: "
                                        r"pass the class it was spawned with, or call "
                                        r"get_actor\('counter'\) without one$"):
        engine.get_actor("counter", Other)
