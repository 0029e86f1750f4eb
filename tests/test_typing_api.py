"""What a type checker sees of spawn_actor, proxies and pools (mypy, when installed)."""

import importlib.util
import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest

import backstage

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is not installed here")

PROGRAM = '''
import backstage
from backstage import AskFuture, Context, Envelope, Pool, Proxy, proxy_method


class Counter:
    def __init__(self, ctx: Context, start: int, *, step: int = 1) -> None:
        self.count = start
        self.step = step

    def receive(self, envelope: Envelope) -> None: ...

    def add(self, n: int) -> int:
        self.count += n * self.step
        return self.count


class CounterProxy(Proxy[Counter]):
    add = proxy_method(Counter.add)


engine = backstage.Engine()
counter = engine.spawn_actor(Counter, "c", 1, step=2, capacity=8)
reveal_type(counter)
reveal_type(counter.count)
pool = engine.spawn_pool(Counter, "p", 4, 0)
reveal_type(pool)
plain = engine.proxy("c", Counter)
reveal_type(plain)
reveal_type(plain.call(Counter.add, 5))
plain.call(Counter.add, "five")
reveal_type(plain.add(5))
typed = engine.proxy("c", CounterProxy)
reveal_type(typed)
reveal_type(typed.add(5))
typed.add("five")
reveal_type(typed.add(5).result())


async def awaits() -> None:
    reveal_type(await typed.add(5))

reveal_type(engine.proxy("c"))
engine.spawn_actor(Counter, "d", 1, overflow="drop-oldest")
engine.spawn_pool(Counter, "q", 2, 0, routing="round-robin")
backstage.Engine(inbound_overflow="drop")


def driver(cluster: backstage.Cluster) -> None:
    reveal_type(cluster.proxy("c", Counter))
    reveal_type(cluster.proxy("c", CounterProxy).add(5))
    reveal_type(cluster.ask("c", "hi"))
    cluster.spawn_pool(Counter, "q", 2, 0, routing="round-robin")
'''

EXPECTED = [
    'Revealed type is "program.Counter"',
    'Revealed type is "int"',
    'Revealed type is "backstage.Pool[program.Counter]"',
    'Revealed type is "backstage.Proxy[program.Counter]"',
    'Revealed type is "backstage.AskFuture[int]"',
    'Argument 2 to "call" of "Proxy" has incompatible type "str"; expected "int"',
    'Revealed type is "backstage.AskFuture[Any]"',
    'Revealed type is "program.CounterProxy"',
    'Revealed type is "backstage.AskFuture[int]"',
    'Argument 1 has incompatible type "str"; expected "int"',
    'Revealed type is "int"',
    'Revealed type is "int"',
    'Revealed type is "backstage.Proxy[Any]"',
    'Argument "overflow" to "spawn_actor" of "_Lifecycle" has incompatible type '
    '"Literal[\'drop-oldest\']"; expected "Literal[\'grow\', \'block\', \'drop\', '
    '\'drop_oldest\', \'fail\']"',
    'Argument "routing" to "spawn_pool" of "_Lifecycle" has incompatible type '
    '"Literal[\'round-robin\']"; expected "Literal[\'round_robin\', \'least_loaded\', '
    '\'broadcast\', \'consistent_hash\']"',
    'Argument "inbound_overflow" to "Engine" has incompatible type "Literal[\'drop\']"; '
    'expected "Literal[\'block\', \'fail\']"',
    'Revealed type is "backstage.Proxy[program.Counter]"',
    'Revealed type is "backstage.AskFuture[int]"',
    'Revealed type is "backstage.AskFuture[Any]"',
    'Argument "routing" to "spawn_pool" of "Cluster" has incompatible type '
    '"Literal[\'round-robin\']"; expected "Literal[\'round_robin\', \'least_loaded\', '
    '\'broadcast\', \'consistent_hash\']"',
]


def test_the_option_types_name_every_policy_and_routing_the_engine_knows():
    # Overflow and Routing are what a type checker holds spawn_actor(overflow=)
    # and spawn_pool(routing=) to: the engine's own tables must agree.
    assert typing.get_args(backstage.Overflow) == tuple(backstage.OVERFLOW_POLICIES)
    assert typing.get_args(backstage.Routing) == backstage.ROUTINGS


def test_spawn_actor_pools_and_proxies_are_typed_as_far_as_python_allows(tmp_path):
    program = tmp_path / "program.py"
    program.write_text(textwrap.dedent(PROGRAM))

    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(program)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MYPYPATH": str(ROOT)})

    said = [line.split(": ", 2)[2].split("  [")[0].replace("builtins.", "")
            for line in out.stdout.splitlines() if line.startswith("program.py:")]
    assert said == EXPECTED, out.stdout + out.stderr
