"""Death watch: monitor and demonitor."""

from conftest import Recorder, parent_of

from backstage import Directive, MessageType, OneForOne, Terminated


def test_a_monitor_is_told_when_the_watched_actor_stops(engine):
    watcher = engine.spawn_actor(Recorder, id="w")
    engine.spawn_actor(Recorder, id="x")
    watcher.ctx.monitor("x")

    engine.poison_pill("x")
    engine.run()

    [env] = watcher.envelopes
    assert env.message_type is MessageType.TERMINATED
    assert env.message == Terminated("x", "stopped by poison pill")
    assert env.sender_id == "x"


def test_monitoring_an_unknown_actor_tells_at_once(engine):
    watcher = engine.spawn_actor(Recorder, id="w")

    watcher.ctx.monitor("ghost")
    engine.run()

    assert watcher.messages == [Terminated("ghost", "no such actor")]


def test_demonitor_stops_the_notice(engine):
    watcher = engine.spawn_actor(Recorder, id="w")
    engine.spawn_actor(Recorder, id="x")
    watcher.ctx.monitor("x")

    watcher.ctx.demonitor("x")
    engine.poison_pill("x")
    engine.run()

    assert watcher.messages == []


def test_a_monitor_hears_of_a_stop_by_failure_with_the_reason(engine):
    class Fails:
        def __init__(self, ctx):
            pass

        def receive(self, envelope):
            raise ValueError("bad input")

    engine.spawn_actor(parent_of(Fails, "f", OneForOne(decider=lambda exc: Directive.STOP)),
                       id="p")
    watcher = engine.spawn_actor(Recorder, id="w")
    watcher.ctx.monitor("f")

    engine.send("f", "x")
    engine.run()

    [notice] = watcher.messages
    assert notice.actor_id == "f"
    assert "ValueError('bad input')" in notice.reason


def test_a_monitor_hears_when_the_watched_child_stops_with_its_parent(engine):
    engine.spawn_actor(parent_of(Recorder, "kid"), id="p")
    watcher = engine.spawn_actor(Recorder, id="w")
    watcher.ctx.monitor("kid")

    engine.poison_pill("p")
    engine.run()

    assert watcher.messages == [Terminated("kid", "parent 'p' stopped")]


def test_a_restart_is_not_a_termination(engine):
    class Fails(Recorder):
        def receive(self, envelope):
            raise ValueError("x")

    engine.spawn_actor(parent_of(Fails, "f"), id="p")
    watcher = engine.spawn_actor(Recorder, id="w")
    watcher.ctx.monitor("f")

    engine.send("f", "x")
    engine.run()
    assert watcher.messages == []

    engine.poison_pill("f")
    engine.run()
    assert watcher.messages == [Terminated("f", "stopped by poison pill")]
