"""Stopping actors: poison pill, shutdown, children, deinit, close."""

import pytest
from conftest import Recorder

from backstage import EngineClosed

events = []


class Tracked:
    """Records its deinit in the module-level `events` list."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.got = []

    def receive(self, envelope):
        self.got.append(envelope.message)
        if envelope.message == "spawn-children":
            self.ctx.spawn_child_actor(Tracked, id=self.ctx.actor_id + ".a")
            self.ctx.spawn_child_actor(Tracked, id=self.ctx.actor_id + ".b")
        if envelope.message == "stop-yourself":
            self.ctx.shutdown()

    def deinit(self):
        events.append(self.ctx.actor_id)


@pytest.fixture(autouse=True)
def clear_events():
    events.clear()


def test_messages_queued_before_the_pill_are_handled_first(engine):
    actor = engine.spawn_actor(Tracked, id="t")

    engine.send("t", 1)
    engine.send("t", 2)
    engine.poison_pill("t")
    engine.send("t", 3)
    engine.run()

    assert actor.got == [1, 2]
    assert events == ["t"]
    assert [d.envelope.message for d in engine.dead_letters] == [3]


def test_shutdown_from_receive_stops_after_the_queued_messages(engine):
    actor = engine.spawn_actor(Tracked, id="t")

    engine.send("t", "stop-yourself")
    engine.send("t", "still handled")
    engine.run()

    assert actor.got == ["stop-yourself", "still handled"]
    assert engine.get_actor("t") is None


def test_children_know_their_parent_and_the_parent_its_children(engine):
    parent = engine.spawn_actor(Tracked, id="p")

    engine.send("p", "spawn-children")
    engine.run()

    assert parent.ctx.children == ["p.a", "p.b"]
    assert engine.get_actor("p.a").ctx.parent == "p"


def test_stopping_a_parent_stops_its_children_deepest_first(engine):
    engine.spawn_actor(Tracked, id="p")
    engine.send("p", "spawn-children")
    engine.run()
    engine.send("p.a", "spawn-children")
    engine.run()

    engine.poison_pill("p")
    engine.run()

    assert events == ["p.b", "p.a.b", "p.a.a", "p.a", "p"]
    assert engine.actor_ids == []


def test_a_stopped_child_leaves_its_parent(engine):
    parent = engine.spawn_actor(Tracked, id="p")
    engine.send("p", "spawn-children")
    engine.run()

    engine.poison_pill("p.a")
    engine.run()

    assert parent.ctx.children == ["p.b"]
    assert engine.get_actor("p.a") is None


def test_deinit_runs_exactly_once_even_with_two_pills_and_a_close(engine):
    engine.spawn_actor(Tracked, id="t")

    engine.poison_pill("t")
    engine.poison_pill("t")
    engine.run()
    engine.close()

    assert events == ["t"]


def test_stopping_removes_subscriptions_both_ways(engine):
    pub = engine.spawn_actor(Recorder, id="pub")
    mid = engine.spawn_actor(Recorder, id="mid")
    sub = engine.spawn_actor(Recorder, id="sub")
    mid.ctx.subscribe_to_actor("pub")
    sub.ctx.subscribe_to_actor("mid")

    engine.poison_pill("mid")
    engine.run()
    pub.ctx.publish("to nobody now")
    engine.run()

    assert pub.ctx._subscribers == {}
    assert sub.ctx._subscriptions == set()
    assert engine.dead_letter_count == 0


def test_a_stopped_actor_can_be_spawned_again_under_the_same_id(engine):
    first = engine.spawn_actor(Recorder, id="r")
    engine.poison_pill("r")
    engine.run()

    second = engine.spawn_actor(Recorder, id="r")
    engine.send("r", "fresh")
    engine.run()

    assert second is not first
    assert second.messages == ["fresh"]


def test_close_runs_every_deinit_once_children_first(backend):
    from backstage import Engine

    engine = Engine(backend=backend)
    engine.spawn_actor(Tracked, id="p")
    engine.spawn_actor(Tracked, id="q")
    engine.send("p", "spawn-children")
    engine.run()

    engine.close()
    engine.close()

    assert events == ["q", "p.b", "p.a", "p"]


def test_an_engine_is_a_context_manager_that_closes(backend):
    from backstage import Engine

    with Engine(backend=backend) as engine:
        engine.spawn_actor(Tracked, id="t")

    assert events == ["t"]
    assert engine.closed


def test_messages_still_queued_at_close_become_dead_letters(backend):
    from backstage import Engine

    engine = Engine(backend=backend)
    engine.spawn_actor(Recorder, id="r")
    engine.send("r", "never handled")

    engine.close()

    [dead] = engine.dead_letters
    assert dead.target_id == "r"
    assert dead.envelope.message == "never handled"
    assert "engine closed" in dead.reason


def test_a_closed_engine_refuses_spawns_sends_and_runs(backend):
    from backstage import Engine

    engine = Engine(backend=backend)
    actor = engine.spawn_actor(Recorder, id="r")
    engine.close()

    with pytest.raises(EngineClosed, match=r"^cannot spawn 'x': the engine is closed"):
        engine.spawn_actor(Recorder, id="x")
    with pytest.raises(EngineClosed, match=r"^cannot send to 'r': the engine is closed"):
        engine.send("r", 1)
    with pytest.raises(EngineClosed, match=r"^cannot send to 'r': the engine is closed"):
        actor.ctx.send("r", 1)
    with pytest.raises(EngineClosed, match=r"^cannot send to 'r': the engine is closed"):
        engine.poison_pill("r")
    with pytest.raises(EngineClosed, match=r"^cannot run: the engine is closed"):
        engine.run()


def test_stop_after_close_does_nothing(backend):
    # uvloop raised "Event loop is closed" here; the other backends said nothing.
    from backstage import Engine

    engine = Engine(backend=backend)
    engine.close()

    engine.stop()
    assert engine.closed


def test_an_exception_in_init_propagates_and_leaves_no_actor(engine):
    class Broken:
        def __init__(self, ctx):
            raise ValueError("no config")

        def receive(self, envelope):
            pass

    with pytest.raises(ValueError, match="no config"):
        engine.spawn_actor(Broken, id="b")

    assert engine.get_actor("b") is None


def test_an_exception_in_deinit_is_logged_and_the_stop_completes(engine, caplog):
    class BadDeinit(Recorder):
        def deinit(self):
            raise RuntimeError("cleanup failed")

    engine.spawn_actor(BadDeinit, id="b")

    engine.poison_pill("b")
    engine.run()

    assert engine.get_actor("b") is None
    assert "deinit of actor 'b' failed" in caplog.text


def test_a_pill_to_an_unknown_actor_is_a_dead_letter(engine):
    engine.poison_pill("ghost")

    assert engine.dead_letters[0].target_id == "ghost"
