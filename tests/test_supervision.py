"""Supervision: strategies, directives, restart intensity, escalation."""

import pytest
from conftest import Recorder, parent_of

from backstage import (
    AllForOne,
    Directive,
    Engine,
    OneForOne,
    RestForOne,
)

log = []


class Child:
    """Fails on "boom"; records its life in the module-level `log`."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.got = []
        log.append(("init", ctx.actor_id))

    def receive(self, envelope):
        if envelope.message == "boom":
            raise ValueError(f"{self.ctx.actor_id} exploded")
        self.got.append(envelope.message)

    def deinit(self):
        log.append(("deinit", self.ctx.actor_id))


def make_parent(strategy, children=("a", "b", "c")):
    class Parent:
        supervisor = strategy

        def __init__(self, ctx):
            self.ctx = ctx
            for name in children:
                ctx.spawn_child_actor(Child, id=name)

        def receive(self, envelope):
            if envelope.message == "boom":
                raise RuntimeError("parent exploded")

    return Parent


@pytest.fixture(autouse=True)
def clear_log():
    log.clear()


def test_a_failing_child_is_restarted_by_default_with_its_inbox_kept(engine):
    engine.spawn_actor(make_parent(None, ["a"]), id="p")
    first = engine.get_actor("a")
    log.clear()

    engine.send("a", "before")
    engine.send("a", "boom")
    engine.send("a", "after")
    engine.run()

    second = engine.get_actor("a")
    assert second is not first
    assert first.got == ["before"]
    assert second.got == ["after"]
    assert log == [("deinit", "a"), ("init", "a")]
    assert engine.restart_count == 1


def test_the_message_that_failed_becomes_a_dead_letter_with_the_exception(engine):
    engine.spawn_actor(make_parent(None, ["a"]), id="p")

    engine.send("a", "boom")
    engine.run()

    [dead] = engine.dead_letters
    assert dead.envelope.message == "boom"
    assert "ValueError('a exploded')" in dead.reason


def test_a_restarted_actor_keeps_its_subscriptions_both_ways(engine):
    engine.spawn_actor(make_parent(None, ["a"]), id="p")
    pub = engine.spawn_actor(Recorder, id="pub")
    fan = engine.spawn_actor(Recorder, id="fan")
    engine.get_actor("a").ctx.subscribe_to_actor("pub")
    fan.ctx.subscribe_to_actor("a")

    engine.send("a", "boom")
    engine.run()
    pub.ctx.publish("still subscribed")
    engine.get_actor("a").ctx.publish("still publishing")
    engine.run()

    assert engine.get_actor("a").got == ["still subscribed"]
    assert fan.messages == ["still publishing"]


def test_a_restart_stops_the_failed_actors_children(engine):
    class Middle(Child):
        def __init__(self, ctx):
            super().__init__(ctx)
            ctx.spawn_child_actor(Child, id=ctx.actor_id + ".leaf")

    engine.spawn_actor(parent_of(Middle, "m"), id="top")
    log.clear()

    engine.send("m", "boom")
    engine.run()

    assert log == [("deinit", "m"), ("deinit", "m.leaf"), ("init", "m"), ("init", "m.leaf")]


def test_all_for_one_restarts_every_sibling(engine):
    engine.spawn_actor(make_parent(AllForOne()), id="p")
    log.clear()

    engine.send("b", "boom")
    engine.run()

    assert [entry for entry in log if entry[0] == "init"] == [
        ("init", "a"), ("init", "b"), ("init", "c")]


def test_rest_for_one_restarts_the_failed_child_and_those_spawned_after_it(engine):
    engine.spawn_actor(make_parent(RestForOne()), id="p")
    log.clear()

    engine.send("b", "boom")
    engine.run()

    assert [entry for entry in log if entry[0] == "init"] == [("init", "b"), ("init", "c")]


def test_resume_keeps_the_same_instance_and_its_state(engine):
    strategy = OneForOne(decider=lambda exc: Directive.RESUME)
    engine.spawn_actor(make_parent(strategy, ["a"]), id="p")
    first = engine.get_actor("a")

    for message in ["x", "boom", "y"]:
        engine.send("a", message)
    engine.run()

    assert engine.get_actor("a") is first
    assert first.got == ["x", "y"]
    assert engine.dead_letter_count == 0


def test_stop_directive_stops_the_child_and_dead_letters_its_queue(engine):
    strategy = OneForOne(decider=lambda exc: Directive.STOP)
    parent = engine.spawn_actor(make_parent(strategy, ["a"]), id="p")

    for message in ["x", "boom", "y"]:
        engine.send("a", message)
    engine.run()

    assert engine.get_actor("a") is None
    assert parent.ctx.children == []
    assert [d.envelope.message for d in engine.dead_letters] == ["boom", "y"]


def test_the_decider_chooses_by_exception_type(engine):
    def decider(exc):
        return Directive.RESUME if isinstance(exc, KeyError) else Directive.STOP

    class Picky(Child):
        def receive(self, envelope):
            if envelope.message == "key":
                raise KeyError("k")
            super().receive(envelope)

    engine.spawn_actor(parent_of(Picky, "a", OneForOne(decider=decider)), id="p")
    engine.send("a", "key")
    engine.send("a", "ok")
    engine.run()
    assert engine.get_actor("a").got == ["ok"]

    engine.send("a", "boom")
    engine.run()
    assert engine.get_actor("a") is None


def test_too_many_restarts_stop_the_child_and_escalate_to_the_parent(engine):
    class Grand:
        supervisor = OneForOne(decider=lambda exc: Directive.RESTART)

        def __init__(self, ctx):
            ctx.spawn_child_actor(make_parent(OneForOne(max_restarts=2, within_s=60), ["a"]),
                                  id="p")

        def receive(self, envelope):
            pass

    engine.spawn_actor(Grand, id="g")
    first_parent = engine.get_actor("p")

    for _ in range(3):
        engine.send("a", "boom")
        engine.run()

    # Two restarts of "a", then it stops and "p" fails: "g" restarts "p",
    # whose new instance spawns a fresh "a".
    assert engine.get_actor("p") is not first_parent
    assert engine.restart_count == 3
    assert [e for e in log if e == ("init", "a")] == [("init", "a")] * 4


def test_escalate_makes_the_parent_fail_and_its_own_parent_decide(engine):
    class Grand:
        supervisor = OneForOne(decider=lambda exc: Directive.STOP)

        def __init__(self, ctx):
            ctx.spawn_child_actor(
                make_parent(OneForOne(decider=lambda exc: Directive.ESCALATE), ["a"]), id="p")

        def receive(self, envelope):
            pass

    grand = engine.spawn_actor(Grand, id="g")

    engine.send("a", "boom")
    engine.run()

    assert engine.get_actor("p") is None
    assert engine.get_actor("a") is None
    assert grand.ctx.children == []


def test_top_level_actors_resume_by_default(engine):
    actor = engine.spawn_actor(Child, id="top")

    for message in ["x", "boom", "y"]:
        engine.send("top", message)
    engine.run()

    assert engine.get_actor("top") is actor
    assert actor.got == ["x", "y"]


def test_the_engine_supervisor_decides_for_top_level_actors(backend):
    engine = Engine(backend=backend, supervisor=OneForOne())
    first = engine.spawn_actor(Child, id="top")

    engine.send("top", "boom")
    engine.send("top", "after")
    engine.run()

    assert engine.get_actor("top") is not first
    assert engine.get_actor("top").got == ["after"]
    engine.close()


def test_an_escalation_past_the_top_level_stops_the_actor(backend):
    engine = Engine(backend=backend, supervisor=OneForOne(decider=lambda e: Directive.ESCALATE))
    engine.spawn_actor(Child, id="top")

    engine.send("top", "boom")
    engine.run()

    assert engine.get_actor("top") is None
    engine.close()


def test_a_restart_whose_init_fails_stops_the_actor(engine):
    class FailsSecondTime(Child):
        made = 0

        def __init__(self, ctx):
            FailsSecondTime.made += 1
            if FailsSecondTime.made > 1:
                raise OSError("no resource")
            super().__init__(ctx)

    engine.spawn_actor(parent_of(FailsSecondTime, "a"), id="p")
    engine.send("a", "boom")
    engine.run()

    assert engine.get_actor("a") is None


def test_a_bad_supervisor_attribute_is_refused_at_spawn(engine):
    class P(Child):
        supervisor = "one for one"

    with pytest.raises(TypeError, match=r"^P.supervisor must be a backstage.SupervisorStrategy"):
        engine.spawn_actor(P, id="p")


def test_bad_strategy_arguments_are_refused():
    with pytest.raises(ValueError, match=r"^OneForOne\(\) needs max_restarts"):
        OneForOne(max_restarts=-1)
    with pytest.raises(ValueError, match=r"^AllForOne\(\) needs within_s more than zero"):
        AllForOne(within_s=0)
    with pytest.raises(TypeError, match=r"^RestForOne\(\) needs a callable decider"):
        RestForOne(decider="restart")
    with pytest.raises(TypeError, match=r"^supervisor must be a backstage.SupervisorStrategy"):
        Engine(supervisor="restart")
