"""Constructor arguments: spawn_actor(cls, id, *args, capacity=..., overflow=..., **kwargs)."""

import logging
import threading

import pytest
from conftest import Recorder

from backstage import Directive, Engine, OneForOne, Pool


class Greeter:
    def __init__(self, ctx, greeting, *, punctuation="!"):
        self.ctx = ctx
        self.greeting = greeting
        self.punctuation = punctuation
        self.said = []

    def receive(self, envelope):
        self.said.append(f"{self.greeting}, {envelope.message}{self.punctuation}")


class Announcer:
    """Sends its first message from __init__, with its parameters in hand."""

    def __init__(self, ctx, listener_id, first):
        self.ctx = ctx
        ctx.send(listener_id, first)

    def receive(self, envelope):
        pass


def test_positional_and_keyword_arguments_reach_the_constructor(engine):
    greeter = engine.spawn_actor(Greeter, "g", "hello", punctuation="?")

    engine.send("g", "world")
    engine.run()

    assert greeter.said == ["hello, world?"]


def test_the_id_may_be_passed_by_keyword_after_the_class(engine):
    greeter = engine.spawn_actor(Greeter, id="g", greeting="hi")

    assert greeter.greeting == "hi"
    assert greeter.ctx.actor_id == "g"


def test_capacity_and_overflow_are_keywords_for_the_engine_not_the_constructor(engine):
    greeter = engine.spawn_actor(Greeter, "g", "hey", capacity=2, overflow="drop")

    assert greeter.ctx.capacity == 2
    assert greeter.ctx.overflow == "drop"
    assert greeter.greeting == "hey"


def test_an_actor_can_send_its_first_message_from_init_with_its_arguments(engine):
    listener = engine.spawn_actor(Recorder, "listener")

    engine.spawn_actor(Announcer, "a", "listener", first="ready")
    engine.run()

    assert listener.messages == ["ready"]
    assert [e.sender_id for e in listener.envelopes] == ["a"]


def test_a_class_without_arguments_still_spawns_as_before(engine):
    recorder = engine.spawn_actor(Recorder, id="r", capacity=8)

    assert recorder.ctx.capacity == 8


def test_missing_constructor_arguments_raise_at_the_spawn_and_leave_no_actor(engine):
    with pytest.raises(TypeError, match=r"greeting"):
        engine.spawn_actor(Greeter, "g")

    assert engine.get_actor("g") is None


def test_spawn_child_actor_passes_arguments_to_the_child(engine):
    class Parent:
        def __init__(self, ctx):
            self.ctx = ctx
            self.child = ctx.spawn_child_actor(Greeter, "child", "ahoy", punctuation=".")

        def receive(self, envelope):
            pass

    parent = engine.spawn_actor(Parent, "p")
    engine.send("child", "sailor")
    engine.run()

    assert parent.child.said == ["ahoy, sailor."]
    assert parent.child.ctx.parent == "p"


def test_context_spawn_actor_passes_arguments_to_a_top_level_actor(engine):
    class Spawner:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            self.ctx.spawn_actor(Greeter, "top", envelope.message, capacity=4)

    engine.spawn_actor(Spawner, "s")
    engine.send("s", "howdy")
    engine.run()

    top = engine.get_actor("top")
    assert top.greeting == "howdy"
    assert top.ctx.parent is None
    assert top.ctx.capacity == 4


def test_a_restarted_actor_is_made_again_with_the_same_arguments(engine):
    class Fragile:
        def __init__(self, ctx, name, *, limit):
            self.ctx = ctx
            self.name = name
            self.limit = limit

        def receive(self, envelope):
            if envelope.message == "boom":
                raise RuntimeError("boom")

    class Parent:
        supervisor = OneForOne(decider=lambda exc: Directive.RESTART)

        def __init__(self, ctx):
            self.ctx = ctx
            ctx.spawn_child_actor(Fragile, "f", "fragile", limit=3)

        def receive(self, envelope):
            pass

    engine.spawn_actor(Parent, "p")
    before = engine.get_actor("f")

    engine.send("f", "boom")
    engine.run()

    after = engine.get_actor("f")
    assert engine.restart_count == 1
    assert after is not before
    assert (after.name, after.limit) == ("fragile", 3)


def test_a_spawn_from_another_thread_passes_the_arguments(backend):
    with Engine(backend=backend) as engine:
        engine.spawn_actor(Recorder, "keep-running")
        runner = threading.Thread(target=engine.run_forever)
        runner.start()
        try:
            made = []
            spawner = threading.Thread(target=lambda: made.append(
                engine.spawn_actor(Greeter, "g", "hola", punctuation="~")))
            spawner.start()
            spawner.join(10)
            engine.send("g", "mundo")
            assert made[0].greeting == "hola"
        finally:
            engine.stop()
            runner.join(10)
        engine.run()
        assert made[0].said == ["hola, mundo~"]


def _unused_spawn_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "which is returned as it is" in r.getMessage()]


def test_spawning_a_taken_id_again_with_the_same_arguments_returns_the_actor_quietly(engine,
                                                                                     caplog):
    caplog.set_level(logging.WARNING, logger="backstage")
    first = engine.spawn_actor(Greeter, "g", "hello", capacity=8, overflow="fail")
    engine.spawn_pool(Greeter, "p", 2, "hi")

    again = engine.spawn_actor(Greeter, "g", "hello", capacity=8, overflow="fail")
    engine.spawn_pool(Greeter, "p", 2, "hi")

    assert again is first
    assert _unused_spawn_warnings(caplog) == []


def test_a_get_or_spawn_that_makes_its_lambdas_and_strategies_anew_returns_quietly(engine,
                                                                                  caplog):
    caplog.set_level(logging.WARNING, logger="backstage")

    def get_pool():
        return engine.spawn_pool(Greeter, "p", 2, "hi", routing="consistent_hash",
                                 hash_key=lambda m: m, supervisor=OneForOne(max_restarts=3))

    first = get_pool()
    again = get_pool()
    plain = engine.spawn_actor(Pool, "p")          # a bare get of the pool, by its class

    assert again is first and plain is first
    assert _unused_spawn_warnings(caplog) == []


def test_spawning_a_taken_id_with_other_arguments_warns_what_is_not_used(engine, caplog):
    caplog.set_level(logging.WARNING, logger="backstage")
    first = engine.spawn_actor(Greeter, "g", "hello", capacity=8, overflow="fail")
    engine.spawn_pool(Greeter, "p", 2, "hi")

    again = engine.spawn_actor(Greeter, "g", "bye", punctuation="?", capacity=8,
                               overflow="grow")
    engine.spawn_actor(Greeter, "g", "hello", capacity=9, overflow="fail")
    engine.spawn_pool(Greeter, "p", 4, "hi")

    assert again is first and first.greeting == "hello"
    assert _unused_spawn_warnings(caplog) == [
        "spawn 'g': the id is taken by a running Greeter, which is returned as it is; not "
        "used: args=('bye',) (it has ('hello',)); kwargs={'punctuation': '?'} (it has {}); "
        "overflow='grow' (it has 'fail') (get_actor(id) takes an actor without spawning; "
        "poison_pill it first to spawn it anew)",
        "spawn 'g': the id is taken by a running Greeter, which is returned as it is; not "
        "used: capacity=9 (it has 8) (get_actor(id) takes an actor without spawning; "
        "poison_pill it first to spawn it anew)",
        "spawn 'p': the id is taken by a running Pool, which is returned as it is; not "
        "used: size=4 (it has 2) (get_actor(id) takes an actor without spawning; "
        "poison_pill it first to spawn it anew)",
    ]


def test_spawning_a_taken_pool_with_another_routee_class_warns_of_the_class(engine, caplog):
    caplog.set_level(logging.WARNING, logger="backstage")
    first = engine.spawn_pool(Greeter, "p", 2, "hi")

    again = engine.spawn_pool(Recorder, "p", 2, "hi")

    assert again is first
    [warning] = _unused_spawn_warnings(caplog)
    assert "not used: routee_class=<class 'conftest.Recorder'> (it has <class " in warning
