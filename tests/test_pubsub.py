"""Topics: publish, subscribe, unsubscribe."""

import pytest
from conftest import Recorder

from backstage import ActorNotFound, MessageType


class Publisher:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        topic, message = envelope.message
        self.ctx.publish_to_topic(topic, message)


def test_the_seed_quick_start_delivers_every_message_before_the_loop_ran(engine):
    # Subscriptions and publications made before run() must all count.
    publisher = engine.spawn_actor(Recorder, id="publisher", capacity=1024)
    subscriber = engine.spawn_actor(Recorder, id="subscriber", capacity=1024)
    subscriber.ctx.subscribe_to_actor("publisher")
    subscriber.ctx.subscribe_to_actor_topic("publisher", "news")

    publisher.ctx.publish("Hello, subscribers!")
    publisher.ctx.publish_to_topic("news", "Breaking news!")
    engine.send("subscriber", "Direct message")
    engine.run()

    assert [(e.message_type, e.topic, e.message) for e in subscriber.envelopes] == [
        (MessageType.PUBLISH, "default", "Hello, subscribers!"),
        (MessageType.PUBLISH, "news", "Breaking news!"),
        (MessageType.SEND, None, "Direct message"),
    ]
    assert all(e.sender_id == "publisher" for e in subscriber.envelopes[:2])


def test_a_publication_reaches_every_subscriber_of_that_topic_only(engine):
    engine.spawn_actor(Publisher, id="pub")
    news = [engine.spawn_actor(Recorder, id=f"news{i}") for i in range(3)]
    sport = engine.spawn_actor(Recorder, id="sport")
    for sub in news:
        sub.ctx.subscribe_to_actor_topic("pub", "news")
    sport.ctx.subscribe_to_actor_topic("pub", "sport")

    engine.send("pub", ("news", "election"))
    engine.run()

    assert [sub.messages for sub in news] == [["election"]] * 3
    assert sport.messages == []


def test_a_publication_with_no_subscriber_reaches_nobody_and_is_no_dead_letter(engine):
    pub = engine.spawn_actor(Recorder, id="pub")

    pub.ctx.publish("anyone?")
    pub.ctx.publish_to_topic("void", "anyone?")
    engine.run()

    assert engine.dead_letter_count == 0


def test_subscribing_twice_delivers_once(engine):
    pub = engine.spawn_actor(Recorder, id="pub")
    sub = engine.spawn_actor(Recorder, id="sub")
    sub.ctx.subscribe_to_actor("pub")
    sub.ctx.subscribe_to_actor("pub")

    pub.ctx.publish("once")
    engine.run()

    assert sub.messages == ["once"]


def test_unsubscribe_stops_deliveries_of_that_topic(engine):
    pub = engine.spawn_actor(Recorder, id="pub")
    sub = engine.spawn_actor(Recorder, id="sub")
    sub.ctx.subscribe_to_actor("pub")
    sub.ctx.subscribe_to_actor_topic("pub", "news")

    sub.ctx.unsubscribe_from_actor("pub")
    pub.ctx.publish("default topic")
    pub.ctx.publish_to_topic("news", "news topic")
    sub.ctx.unsubscribe_from_actor_topic("pub", "news")
    pub.ctx.publish_to_topic("news", "after")
    engine.run()

    assert sub.messages == ["news topic"]


def test_unsubscribing_from_something_never_subscribed_is_harmless(engine):
    engine.spawn_actor(Recorder, id="pub")
    sub = engine.spawn_actor(Recorder, id="sub")

    sub.ctx.unsubscribe_from_actor("pub")
    sub.ctx.unsubscribe_from_actor_topic("nobody", "x")

    assert sub.ctx._subscriptions is None


def test_subscribing_to_an_unknown_actor_raises(engine):
    sub = engine.spawn_actor(Recorder, id="sub")

    with pytest.raises(ActorNotFound, match=r"^cannot subscribe to 'ghost': no actor has that id"):
        sub.ctx.subscribe_to_actor("ghost")


def test_a_publication_is_one_message_object_shared_by_all_subscribers(engine):
    pub = engine.spawn_actor(Recorder, id="pub")
    subs = [engine.spawn_actor(Recorder, id=f"s{i}") for i in range(5)]
    for sub in subs:
        sub.ctx.subscribe_to_actor("pub")
    payload = object()

    pub.ctx.publish(payload)
    engine.run()

    assert all(sub.envelopes[0].message is payload for sub in subs)


def test_publish_to_topic_rejects_a_topic_that_is_not_a_string(engine):
    pub = engine.spawn_actor(Recorder, id="pub")

    with pytest.raises(TypeError, match=r"^publish_to_topic\(\) needs a str topic, not int"):
        pub.ctx.publish_to_topic(5, "x")
