"""Actors made and stopped at scale (issue 16): an actor that shuts down on its
last message stops in that turn; the spawn checks' fast paths keep their errors."""

import pytest

from backstage import MessageType


class OneShot:
    """Handles one message, notes what it saw of the others, and shuts down."""

    seen = []

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        others = [i for i in ("a", "b") if i != self.ctx.actor_id]
        OneShot.seen.append((self.ctx.actor_id, [self.ctx.engine.get_actor(i) is not None
                                                 for i in others]))
        self.ctx.shutdown()

    def deinit(self):
        OneShot.seen.append((self.ctx.actor_id, "deinit"))


@pytest.fixture(autouse=True)
def clear_seen():
    OneShot.seen = []


def test_an_actor_shutting_down_on_its_only_message_is_gone_before_the_next_actor_turns(engine):
    # Both are ready; "a" goes first.  Its pill, queued by its own shutdown()
    # and alone in its inbox, is handled in the same turn: "b" finds it gone.
    engine.spawn_actor(OneShot, id="a")
    engine.spawn_actor(OneShot, id="b")

    engine.send("a", 1)
    engine.send("b", 1)
    engine.run()

    assert OneShot.seen == [("a", [True]), ("a", "deinit"), ("b", [False]), ("b", "deinit")]
    assert engine.actor_ids == []


def test_an_actor_shutting_down_on_its_only_message_counts_the_pill_as_handled(engine):
    actor = engine.spawn_actor(OneShot, id="a")
    ctx = actor.ctx

    engine.send("a", 1)
    engine.run()

    assert ctx.messages_handled == 2
    assert ctx.inbox_len == 0
    assert list(engine.dead_letters) == []


class ShutThenSend:
    """Shuts down, then sends itself a message: it lands after the pill."""

    deinits = 0

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        self.ctx.shutdown()
        self.ctx.send(self.ctx.actor_id, "too late")

    def deinit(self):
        ShutThenSend.deinits += 1


def test_a_message_queued_after_the_pill_in_the_same_turn_is_a_dead_letter(engine):
    ShutThenSend.deinits = 0
    engine.spawn_actor(ShutThenSend, id="s")

    engine.send("s", "go")
    engine.run()

    assert ShutThenSend.deinits == 1
    assert [d.envelope.message for d in engine.dead_letters] == ["too late"]
    assert engine.get_actor("s") is None


class Parent:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        for child_id in envelope.message:
            self.ctx.spawn_child_actor(OneShot, id=child_id)
            self.ctx.send(child_id, 0)


def test_children_shutting_down_on_their_only_message_leave_their_parent(engine):
    parent = engine.spawn_actor(Parent, id="p")

    engine.send("p", ["a", "b", "c"])
    engine.run()

    assert parent.ctx.children == []
    assert engine.actor_ids == ["p"]
    assert [s for s in OneShot.seen if s[1] == "deinit"] == [
        ("a", "deinit"), ("b", "deinit"), ("c", "deinit")]


class Watcher:
    def __init__(self, ctx):
        self.ctx = ctx
        self.notices = []

    def receive(self, envelope):
        if envelope.message_type is MessageType.TERMINATED:
            self.notices.append(envelope.message.actor_id)


def test_a_monitor_hears_of_an_actor_that_shut_down_on_its_only_message(engine):
    watcher = engine.spawn_actor(Watcher, id="w")
    engine.spawn_actor(OneShot, id="a")
    watcher.ctx.monitor("a")

    engine.send("a", 1)
    engine.run()

    assert watcher.notices == ["a"]


def test_an_actor_id_beyond_ascii_still_spawns_and_gets_its_messages(engine):
    actor = engine.spawn_actor(OneShot, id="acteur-é-演员")

    engine.send("acteur-é-演员", 1)
    engine.run()

    assert OneShot.seen[0][0] == "acteur-é-演员"
    assert actor.ctx.messages_handled == 2
