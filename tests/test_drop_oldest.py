"""overflow="drop_oldest": a full inbox drops its oldest queued message as a dead letter."""

import threading

import pytest
from conftest import Recorder

import backstage
from backstage import ActorNotFound

DROPPED = "inbox full: dropped for a newer message"


class Producer:
    """On a number n, sends 0..n-1 to "t" from inside its turn."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        for i in range(envelope.message):
            self.ctx.send("t", i)


def test_drop_oldest_keeps_the_newest_messages_and_dead_letters_the_oldest(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=3, overflow="drop_oldest")

    for i in range(10):
        engine.send("t", i)
    engine.run()

    assert target.messages == [7, 8, 9]
    assert [(d.envelope.message, d.reason) for d in engine.dead_letters] == [
        (i, DROPPED) for i in range(7)]


def test_drop_oldest_applies_to_sends_from_an_actor(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=2, overflow="drop_oldest")
    engine.spawn_actor(Producer, id="p")

    engine.send("p", 10)
    engine.run()

    assert target.messages == [8, 9]
    assert [d.envelope.message for d in engine.dead_letters] == list(range(8))
    assert all(d.envelope.sender_id == "p" for d in engine.dead_letters)


def test_drop_oldest_applies_to_sends_from_another_thread_without_blocking_it(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=4, overflow="drop_oldest")

    sender = threading.Thread(target=lambda: [engine.send("t", i) for i in range(20)])
    sender.start()
    sender.join(10)
    engine.run()

    assert not sender.is_alive()
    assert target.messages == [16, 17, 18, 19]
    assert [d.envelope.message for d in engine.dead_letters] == list(range(16))


def test_drop_oldest_never_drops_a_queued_poison_pill(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=1, overflow="drop_oldest")

    engine.poison_pill("t")
    engine.send("t", "late")
    engine.run()

    assert target.messages == []
    assert engine.get_actor("t") is None
    assert [(d.envelope.message, d.reason) for d in engine.dead_letters] == [
        ("late", "inbox full")]


def test_an_ask_dropped_for_a_newer_message_fails_instead_of_waiting(engine):
    engine.spawn_actor(Recorder, id="t", capacity=1, overflow="drop_oldest")

    future = engine.ask("t", "question")
    engine.send("t", "newer")
    engine.run()

    with pytest.raises(ActorNotFound, match=r"^'t' did not answer the ask: inbox full: dropped"):
        future.result(0)


def test_a_drop_oldest_inbox_stays_within_capacity_over_a_long_flood(engine):
    # More drops than the inbox compacts after, so the front is let go on the way.
    target = engine.spawn_actor(Recorder, id="t", capacity=2, overflow="drop_oldest")
    n = 3 * backstage._COMPACT_AFTER

    for i in range(n):
        engine.send("t", i)
    inbox_len, inbox_size = target.ctx.inbox_len, len(target.ctx._inbox)
    engine.run()

    assert inbox_len == 2
    assert inbox_size <= backstage._COMPACT_AFTER * 2 + 2
    assert target.messages == [n - 2, n - 1]
    assert engine.dead_letter_count == n - 2


def test_the_overflow_property_names_drop_oldest(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=2, overflow="drop_oldest")

    assert target.ctx.overflow == "drop_oldest"
    assert "drop_oldest" in backstage.OVERFLOW_POLICIES
