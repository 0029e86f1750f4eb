"""Direct sends: spawning, envelopes, order, the registry."""

import collections
import copy
import pickle

from conftest import Recorder

from backstage import Context, Envelope, MessageType


def test_spawn_returns_the_instance_with_its_context(engine):
    actor = engine.spawn_actor(Recorder, id="rec")

    assert isinstance(actor, Recorder)
    assert isinstance(actor.ctx, Context)
    assert actor.ctx.actor_id == "rec"
    assert actor.ctx.engine is engine


def test_spawn_with_a_taken_id_returns_the_existing_actor(engine):
    first = engine.spawn_actor(Recorder, id="rec")

    second = engine.spawn_actor(Recorder, id="rec")

    assert second is first


def test_ctx_is_set_even_when_init_does_not_keep_it(engine):
    class Forgetful:
        def __init__(self, ctx):
            pass

        def receive(self, envelope):
            pass

    actor = engine.spawn_actor(Forgetful, id="f")

    assert actor.ctx.actor_id == "f"


def test_send_delivers_an_envelope_with_no_sender(engine):
    rec = engine.spawn_actor(Recorder, id="rec")

    engine.send("rec", "hello")
    engine.run()

    [env] = rec.envelopes
    assert isinstance(env, Envelope)
    assert env.sender_id is None
    assert env.message_type is MessageType.SEND
    assert env.message == "hello"
    assert env.topic is None


def test_the_message_object_is_passed_by_reference_not_copied(engine):
    rec = engine.spawn_actor(Recorder, id="rec")
    payload = {"big": list(range(10))}

    engine.send("rec", payload)
    engine.run()

    assert rec.envelopes[0].message is payload


def test_ctx_send_names_the_sending_actor(engine):
    class Forwarder:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            self.ctx.send("rec", envelope.message * 2)

    rec = engine.spawn_actor(Recorder, id="rec")
    engine.spawn_actor(Forwarder, id="fwd")

    engine.send("fwd", 21)
    engine.run()

    [env] = rec.envelopes
    assert env.sender_id == "fwd"
    assert env.message == 42


def test_messages_from_one_sender_arrive_in_order(engine):
    rec = engine.spawn_actor(Recorder, id="rec", capacity=4)

    for i in range(10_000):
        engine.send("rec", i)
    engine.run()

    assert rec.messages == list(range(10_000))


def test_a_message_sent_during_init_is_delivered(engine):
    class SelfStarter:
        def __init__(self, ctx):
            self.ctx = ctx
            self.got = []
            ctx.send(ctx.actor_id, "boot")

        def receive(self, envelope):
            self.got.append(envelope.message)

    actor = engine.spawn_actor(SelfStarter, id="s")
    engine.run()

    assert actor.got == ["boot"]


def test_get_actor_finds_live_actors_and_returns_none_otherwise(engine):
    rec = engine.spawn_actor(Recorder, id="rec")

    assert engine.get_actor("rec") is rec
    assert rec.ctx.get_actor("rec") is rec
    assert engine.get_actor("nobody") is None


def test_an_actor_can_spawn_another_top_level_actor(engine):
    class Spawner:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            self.ctx.spawn_actor(Recorder, id="made")
            self.ctx.send("made", "welcome")

    engine.spawn_actor(Spawner, id="spawner")

    engine.send("spawner", "go")
    engine.run()

    made = engine.get_actor("made")
    assert made.messages == ["welcome"]
    assert made.ctx.parent is None


def test_capacity_is_rounded_up_to_a_power_of_two_and_grows_when_exceeded(engine):
    rec = engine.spawn_actor(Recorder, id="rec", capacity=100)
    assert rec.ctx.capacity == 128

    for i in range(300):
        engine.send("rec", i)

    assert rec.ctx.inbox_len == 300
    assert rec.ctx.capacity == 512
    engine.run()
    assert len(rec.messages) == 300


def test_an_idle_actor_allocates_no_inbox_of_capacity_size(engine):
    import sys

    rec = engine.spawn_actor(Recorder, id="rec", capacity=1 << 20)

    assert sys.getsizeof(rec.ctx._inbox) < 100


def test_an_envelope_the_actor_keeps_is_never_reused_for_a_later_message(engine):
    class KeepsEvenOnes:
        def __init__(self, ctx):
            self.kept = []
            self.seen = []

        def receive(self, envelope):
            self.seen.append(envelope.message)
            if envelope.message % 2 == 0:
                self.kept.append(envelope)

    actor = engine.spawn_actor(KeepsEvenOnes, id="keeper")
    for i in range(1000):
        engine.send("keeper", i)
    engine.run()

    assert actor.seen == list(range(1000))
    assert [env.message for env in actor.kept] == list(range(0, 1000, 2))
    assert len({id(env) for env in actor.kept}) == 500
    assert all(env.sender_id is None and env.message_type is MessageType.SEND
               for env in actor.kept)


def test_an_envelope_passed_on_as_a_message_keeps_its_contents(engine):
    class Forwarder:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            self.ctx.send("rec", envelope)

    engine.spawn_actor(Forwarder, id="fwd")
    rec = engine.spawn_actor(Recorder, id="rec")
    for i in range(300):
        engine.send("fwd", i)
    engine.run()

    assert [env.message.message for env in rec.envelopes] == list(range(300))


def test_a_delivered_envelope_can_be_copied_and_pickled(engine):
    rec = engine.spawn_actor(Recorder, id="rec")
    engine.send("rec", {"n": 1})
    engine.run()
    [env] = rec.envelopes

    for copied in (copy.copy(env), copy.deepcopy(env), pickle.loads(pickle.dumps(env))):
        assert type(copied) is Envelope
        assert (copied.sender_id, copied.message_type, copied.message, copied.topic) \
            == (None, MessageType.SEND, {"n": 1}, None)


Point = collections.namedtuple("Point", "x y z")
TUPLES = [(1, 2, None), ("a", "b", "c"), ("x",), (), Point(1, 2, 3), ((None, 1, None),)]


def test_tuples_sent_from_outside_arrive_whole_one_at_a_time(engine):
    rec = engine.spawn_actor(Recorder, id="rec")

    for message in TUPLES:
        engine.send("rec", message)
        engine.run()

    assert rec.messages == TUPLES
    assert type(rec.messages[4]) is Point
    assert all(env.sender_id is None for env in rec.envelopes)


def test_tuples_sent_from_outside_arrive_whole_in_a_batch(engine):
    rec = engine.spawn_actor(Recorder, id="rec")

    for message in TUPLES + ["plain"] + TUPLES:
        engine.send("rec", message)
    engine.run()

    assert rec.messages == TUPLES + ["plain"] + TUPLES
    assert all(env.sender_id is None for env in rec.envelopes)


def test_outside_and_actor_messages_in_one_batch_all_arrive_whole(engine):
    class Chatty:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            for message in ("m1", ("m2", 2, None), ("m3",)):
                self.ctx.send("rec", message)

    rec = engine.spawn_actor(Recorder, id="rec")
    engine.spawn_actor(Chatty, id="chatty")

    engine.send("chatty", "go")
    engine.send("rec", "a")
    engine.send("rec", ("b", 1, None))
    engine.run()

    assert [(env.sender_id, env.message) for env in rec.envelopes] == [
        (None, "a"), (None, ("b", 1, None)),
        ("chatty", "m1"), ("chatty", ("m2", 2, None)), ("chatty", ("m3",))]
