"""Dead letters: nothing is lost silently."""

import logging

from conftest import Recorder

from backstage import DeadLetter, Engine, MessageType


def test_a_send_to_an_unknown_actor_is_a_dead_letter_not_an_exception(engine):
    engine.send("nobody", "hello?")

    [dead] = engine.dead_letters
    assert isinstance(dead, DeadLetter)
    assert dead.target_id == "nobody"
    assert dead.envelope.message == "hello?"
    assert dead.envelope.message_type is MessageType.SEND
    assert dead.reason == "no such actor"
    assert engine.dead_letter_count == 1


def test_a_send_to_a_stopped_actor_is_a_dead_letter(engine):
    rec = engine.spawn_actor(Recorder, id="rec")
    engine.poison_pill("rec")
    engine.run()

    rec.ctx.send("rec", "after the end")

    assert engine.dead_letters[-1].envelope.message == "after the end"
    assert engine.dead_letters[-1].envelope.sender_id == "rec"


def test_messages_left_in_an_inbox_when_the_actor_stops_are_dead_letters(engine):
    class Parent:
        def __init__(self, ctx):
            self.ctx = ctx
            ctx.spawn_child_actor(Recorder, id="child")

        def receive(self, envelope):
            self.ctx.send("child", "one")
            self.ctx.send("child", "two")
            self.ctx.shutdown()

    engine.spawn_actor(Parent, id="parent")
    engine.send("parent", "go")
    engine.poison_pill("parent")
    engine.run()

    reasons = {d.envelope.message: d.reason for d in engine.dead_letters}
    assert set(reasons) == {"one", "two"}
    assert "parent 'parent' stopped" in reasons["one"]


def test_dead_letters_keep_the_most_recent_and_count_them_all(backend):
    engine = Engine(backend=backend, dead_letters_kept=10)

    for i in range(25):
        engine.send("nobody", i)

    assert [d.envelope.message for d in engine.dead_letters] == list(range(15, 25))
    assert engine.dead_letter_count == 25
    engine.close()


def test_dead_letters_are_logged_at_most_once_per_target_per_second(engine, caplog):
    caplog.set_level(logging.INFO, logger="backstage")

    for i in range(100):
        engine.send("a", i)
        engine.send("b", i)

    lines = [r for r in caplog.records if "dead letter" in r.getMessage()]
    assert len(lines) == 2


def test_a_dead_letter_subscriber_receives_each_dead_letter_as_a_publication(engine):
    watcher = engine.spawn_actor(Recorder, id="watcher")
    watcher.ctx.subscribe_to_dead_letters()

    engine.send("nobody", "lost")
    engine.run()

    [env] = watcher.envelopes
    assert env.message_type is MessageType.PUBLISH
    assert env.topic == "dead_letters"
    assert isinstance(env.message, DeadLetter)
    assert env.message.envelope.message == "lost"


def test_unsubscribing_from_dead_letters_stops_them(engine):
    watcher = engine.spawn_actor(Recorder, id="watcher")
    watcher.ctx.subscribe_to_dead_letters()

    watcher.ctx.unsubscribe_from_dead_letters()
    engine.send("nobody", "lost")
    engine.run()

    assert watcher.envelopes == []


def test_a_full_dead_letter_subscriber_makes_no_dead_letter_about_it(engine):
    watcher = engine.spawn_actor(Recorder, id="watcher", capacity=2, overflow="drop")
    watcher.ctx.subscribe_to_dead_letters()

    for i in range(5):
        engine.send("nobody", i)
    engine.run()

    assert engine.dead_letter_count == 5
    assert [e.message.envelope.message for e in watcher.envelopes] == [0, 1]


def test_a_stopped_dead_letter_subscriber_is_forgotten(engine):
    watcher = engine.spawn_actor(Recorder, id="watcher")
    watcher.ctx.subscribe_to_dead_letters()
    engine.poison_pill("watcher")
    engine.run()

    engine.send("nobody", "lost")

    assert engine.dead_letter_count == 1


def _never_ran_warnings(caplog):
    return [r for r in caplog.records
            if r.levelno == logging.WARNING and "never ran" in r.getMessage()]


def test_closing_an_engine_that_never_ran_with_messages_queued_warns_once(engine, caplog):
    caplog.set_level(logging.WARNING, logger="backstage")
    engine.spawn_actor(Recorder, id="rec")
    engine.send("rec", "one")
    engine.send("rec", "two")
    engine.ask("rec", "three?")

    engine.close()

    [warning] = _never_ran_warnings(caplog)
    assert warning.getMessage().startswith(
        "closing an engine that never ran: 3 queued messages become dead letters and "
        "1 asks fail; call engine.run()")
    assert [d.envelope.message for d in engine.dead_letters] == ["one", "two", "three?"]


def test_closing_an_engine_that_ran_or_has_nothing_queued_does_not_warn(engine, caplog):
    caplog.set_level(logging.WARNING, logger="backstage")
    other = Engine(backend=engine.backend)
    other.spawn_actor(Recorder, id="rec")
    other.close()                           # nothing queued
    engine.spawn_actor(Recorder, id="rec")
    engine.send("rec", "one")
    engine.run()
    engine.send("rec", "two")

    engine.close()                          # it ran: "two" is a dead letter, told at INFO

    assert _never_ran_warnings(caplog) == []
