"""ctx.send_many: each message as a send of its own would be, in order."""

import threading

import pytest
from conftest import Recorder
from test_transport_seam import Full


class Sends:
    """On ("many", target, messages): send_many; on ("one", target, m): send."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        how, target, messages = envelope.message
        if how == "many":
            self.ctx.send_many(target, messages)
        else:
            self.ctx.send(target, messages)


def _senders_and_messages(recorder):
    return [(e.sender_id, e.message) for e in recorder.envelopes]


def test_send_many_delivers_each_message_in_order_with_its_sender(engine):
    target = engine.spawn_actor(Recorder, id="t")
    engine.spawn_actor(Sends, id="s")

    engine.send("s", ("many", "t", [1, "two", None, 3.0]))
    engine.run()

    assert _senders_and_messages(target) == [("s", 1), ("s", "two"), ("s", None), ("s", 3.0)]


def test_send_many_keeps_tuples_whole_and_interleaves_in_order_with_other_senders(engine):
    target = engine.spawn_actor(Recorder, id="t")
    engine.spawn_actor(Sends, id="a")
    engine.spawn_actor(Sends, id="b")

    for sender, how, messages in [("a", "many", [1, (2, 3)]), ("b", "one", (4, 5)),
                                  ("a", "many", [6, 7]), ("b", "many", [8]),
                                  ("a", "many", [9])]:
        engine.send(sender, (how, "t", messages))
        engine.run()        # one turn each, in this order

    assert _senders_and_messages(target) == [
        ("a", 1), ("a", (2, 3)), ("b", (4, 5)), ("a", 6), ("a", 7), ("b", 8), ("a", 9)]


def test_send_many_to_a_bounded_inbox_applies_its_policy_to_each_message(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=2, overflow="drop")
    engine.spawn_actor(Sends, id="s")

    engine.send("s", ("many", "t", [1, 2, 3, 4]))
    engine.run()

    assert target.messages == [1, 2]
    assert [d.envelope.message for d in engine.dead_letters] == [3, 4]


def test_send_many_to_an_unknown_id_makes_each_message_a_dead_letter(engine):
    engine.spawn_actor(Sends, id="s")

    engine.send("s", ("many", "nobody", [1, 2, 3]))
    engine.run()

    assert [(d.target_id, d.envelope.sender_id, d.envelope.message)
            for d in engine.dead_letters] == [("nobody", "s", 1), ("nobody", "s", 2),
                                              ("nobody", "s", 3)]


def test_send_many_to_a_remote_id_hands_the_stand_in_every_message(engine):
    transport = Full(engine)
    transport.full = False
    engine.attach_transport(transport)
    engine.spawn_actor(Sends, id="s")

    engine.send("s", ("many", "far", list(range(5))))
    engine.send("s", ("many", "far", [5, (6,), 7]))
    engine.run()

    assert transport.sent == [0, 1, 2, 3, 4, 5, (6,), 7]


def test_send_many_of_one_message_to_a_remote_id_not_yet_known_hands_it_over(engine):
    # The first message makes the stand-in; nothing is left for the list's extend.
    transport = Full(engine)
    transport.full = False
    engine.attach_transport(transport)
    engine.spawn_actor(Sends, id="s")

    engine.send("s", ("many", "far", [1]))
    engine.run()

    assert transport.sent == [1]
    assert engine.dead_letter_count == 0


def test_send_many_from_another_thread_delivers_in_order(engine):
    target = engine.spawn_actor(Recorder, id="t")
    context = engine.get_context("t")
    thread = threading.Thread(target=context.send_many, args=("t", [1, 2, 3]))
    thread.start()
    thread.join()
    engine.run()

    assert _senders_and_messages(target) == [("t", 1), ("t", 2), ("t", 3)]


def test_send_many_of_nothing_sends_nothing(engine):
    target = engine.spawn_actor(Recorder, id="t")
    engine.spawn_actor(Sends, id="s")

    engine.send("s", ("many", "t", []))
    engine.run()

    assert target.messages == [] and engine.dead_letter_count == 0


def test_send_many_refuses_what_is_not_a_list_and_says_what_to_pass(engine):
    engine.spawn_actor(Recorder, id="t")
    context = engine.get_context("t")

    with pytest.raises(TypeError, match=r"list of messages.*list\(messages\)"):
        context.send_many("t", (1, 2))
