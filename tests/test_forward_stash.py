"""Forwarding, stash and become: ctx.forward, ctx.stash, ctx.unstash_all, ctx.become."""

import gc
import threading

import pytest
from conftest import Recorder, raised_in_receive

from backstage import ActorNotFound, BackstageError, Envelope, InboxFull, MessageType


class Router:
    """Forwards every message to the actor named "worker"."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        self.ctx.forward("worker", envelope)


class Doubler:
    def __init__(self, ctx):
        self.ctx = ctx
        self.senders = []

    def receive(self, envelope):
        self.senders.append(envelope.sender_id)
        envelope.reply(envelope.message * 2)


class Client:
    """Sends its message to "router" with itself as the sender."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        self.ctx.send("router", envelope.message)


# -- forward -----------------------------------------------------------------

def test_a_forwarded_message_keeps_its_original_sender(engine):
    engine.spawn_actor(Router, id="router")
    worker = engine.spawn_actor(Recorder, id="worker")
    engine.spawn_actor(Client, id="client")

    engine.send("client", "hello")
    engine.run()

    [envelope] = worker.envelopes
    assert envelope.sender_id == "client"
    assert envelope.message == "hello"
    assert envelope.message_type is MessageType.SEND


def test_the_reply_to_a_forwarded_ask_reaches_the_original_asker(engine):
    engine.spawn_actor(Router, id="router")
    worker = engine.spawn_actor(Doubler, id="worker")

    future = engine.ask("router", 21)
    engine.run()

    assert future.result() == 42
    assert worker.senders == [None]


def test_a_forwarded_ask_from_an_actor_answers_that_actor(engine):
    class Asker:
        def __init__(self, ctx):
            self.ctx = ctx
            self.answers = []

        def receive(self, envelope):
            self.ctx.ask("router", envelope.message).add_done_callback(
                lambda f: self.answers.append(f.result()))

    engine.spawn_actor(Router, id="router")
    engine.spawn_actor(Doubler, id="worker")
    asker = engine.spawn_actor(Asker, id="asker")

    engine.send("asker", 5)
    engine.run()

    assert asker.answers == [10]


def test_a_forwarded_publication_arrives_as_that_publication(engine):
    publisher = engine.spawn_actor(Recorder, id="publisher")
    engine.spawn_actor(Router, id="router")
    worker = engine.spawn_actor(Recorder, id="worker")
    engine.get_actor("router").ctx.subscribe_to_actor_topic("publisher", "news")

    publisher.ctx.publish_to_topic("news", "extra!")
    engine.run()

    [envelope] = worker.envelopes
    assert (envelope.message_type, envelope.sender_id, envelope.topic, envelope.message) == \
        (MessageType.PUBLISH, "publisher", "news", "extra!")


def test_forwarding_to_an_unknown_actor_is_a_dead_letter_and_fails_the_ask(engine):
    engine.spawn_actor(Router, id="router")

    future = engine.ask("router", "lost?")
    engine.run()

    [dead] = engine.dead_letters
    assert (dead.target_id, dead.envelope.message, dead.reason) == ("worker", "lost?",
                                                                    "no such actor")
    with pytest.raises(ActorNotFound):
        future.result()


class CatchesFullForward:
    """Forwards to "sink"; when that raises InboxFull, keeps what it caught and
    drops the envelope unanswered."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.caught = []

    def receive(self, envelope):
        try:
            self.ctx.forward("sink", envelope)
        except InboxFull as exc:
            self.caught.append(str(exc))    # not exc: its traceback holds the envelope


def test_an_ask_whose_forward_failed_and_was_dropped_fails_as_unanswered(engine):
    engine.spawn_actor(Recorder, "sink", capacity=1, overflow="fail")
    router = engine.spawn_actor(CatchesFullForward, "router")
    future = engine.ask("router", "question", timeout=None)
    engine.send("sink", "filler")           # the sink is full when the router's turn comes

    runner = threading.Thread(target=engine.run, daemon=True)
    runner.start()
    runner.join(10)                         # run() waits while the ask has not ended
    gc.collect()

    assert not runner.is_alive(), "the ask never ended"
    assert len(router.caught) == 1
    with pytest.raises(BackstageError, match=r"^'router' handled the ask without replying"):
        future.result(0)


def test_forward_needs_an_envelope(engine):
    error = raised_in_receive(engine, lambda ctx: ctx.forward("worker", "a bare message"))

    assert isinstance(error, TypeError)
    assert str(error).startswith("forward() needs the Envelope that receive got, "
                                 "not 'a bare message'")


# -- stash -------------------------------------------------------------------

class Opener:
    """Stashes everything until "open", then handles the stash first, in order."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.open = False
        self.handled = []

    def receive(self, envelope):
        if envelope.message == "open":
            self.open = True
            self.ctx.unstash_all()
        elif not self.open:
            self.ctx.stash(envelope)
        else:
            self.handled.append(envelope.message)
            if envelope.message == "ask":
                envelope.reply("answered after the stash")


def test_unstashed_messages_come_back_in_order_ahead_of_the_inbox(engine):
    opener = engine.spawn_actor(Opener, id="opener")

    for message in ["a", "b", "open", "c", "d"]:
        engine.send("opener", message)
    engine.run()

    assert opener.handled == ["a", "b", "c", "d"]


def test_unstashing_in_a_later_run_puts_the_stash_ahead_of_messages_queued_since(engine):
    opener = engine.spawn_actor(Opener, id="opener")
    engine.send("opener", "a")
    engine.send("opener", "b")
    engine.run()

    engine.send("opener", "open")
    engine.send("opener", "c")
    engine.run()

    assert opener.handled == ["a", "b", "c"]


def test_a_stashed_ask_can_be_answered_after_unstashing(engine):
    opener = engine.spawn_actor(Opener, id="opener")

    future = engine.ask("opener", "ask")
    engine.send("opener", "open")
    engine.run()

    assert future.result() == "answered after the stash"
    assert opener.handled == ["ask"]


def test_stashed_messages_left_when_the_actor_stops_are_dead_letters(engine):
    engine.spawn_actor(Opener, id="opener")

    engine.send("opener", "kept aside")
    future = engine.ask("opener", "ask")
    engine.poison_pill("opener")
    engine.run()

    dead = {d.envelope.message: d.reason for d in engine.dead_letters}
    assert set(dead) == {"kept aside", "ask"}
    assert all(reason.startswith("actor stopped before handling it") for reason in dead.values())
    with pytest.raises(ActorNotFound, match=r"did not answer the ask"):
        future.result()


def test_stash_needs_an_envelope(engine):
    error = raised_in_receive(engine, lambda ctx: ctx.stash(Envelope))

    assert isinstance(error, TypeError)
    assert str(error).startswith("stash() needs the Envelope that receive got")


# -- become ------------------------------------------------------------------

class Switch:
    """Logs "off:m" until "on", then "on:m" until "off"."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.log = []

    def receive(self, envelope):
        if envelope.message == "on":
            self.ctx.become(self.switched_on)
        else:
            self.log.append(f"off:{envelope.message}")

    def switched_on(self, envelope):
        if envelope.message == "off":
            self.ctx.unbecome()
        else:
            self.log.append(f"on:{envelope.message}")


def test_become_changes_the_handler_of_the_following_messages_and_unbecome_restores_it(engine):
    switch = engine.spawn_actor(Switch, id="switch")

    # All in one batch: the change must apply to the rest of the batch too.
    for message in ["1", "on", "2", "3", "off", "4"]:
        engine.send("switch", message)
    engine.run()

    assert switch.log == ["off:1", "on:2", "on:3", "off:4"]


def test_become_takes_effect_between_turns_too(engine):
    switch = engine.spawn_actor(Switch, id="switch")

    for message in ["on", "x", "off", "y"]:
        engine.send("switch", message)
        engine.run()

    assert switch.log == ["on:x", "off:y"]


def test_assigning_self_receive_is_honoured_as_become(engine):
    class Assigner:
        def __init__(self, ctx):
            self.ctx = ctx
            self.log = []
            self.receive = self.first       # as a state machine often starts

        def receive(self, envelope):
            self.log.append(f"class:{envelope.message}")

        def first(self, envelope):
            self.log.append(f"first:{envelope.message}")
            self.receive = self.second

        def second(self, envelope):
            self.log.append(f"second:{envelope.message}")
            del self.receive                 # back to the class's receive

    assigner = engine.spawn_actor(Assigner, id="assigner")

    for message in "abcd":
        engine.send("assigner", message)
    engine.run()

    assert assigner.log == ["first:a", "second:b", "class:c", "class:d"]


def test_become_accepts_a_coroutine_handler(engine):
    class Later:
        def __init__(self, ctx):
            self.ctx = ctx
            self.log = []
            ctx.become(self.waiting)

        def receive(self, envelope):
            self.log.append(envelope.message)

        async def waiting(self, envelope):
            await self.ctx.sleep(0)
            self.log.append(f"awaited:{envelope.message}")
            self.ctx.unbecome()

    later = engine.spawn_actor(Later, id="later")

    for message in "abc":
        engine.send("later", message)
    engine.run()

    assert later.log == ["awaited:a", "b", "c"]


def test_a_restarted_actor_starts_with_its_class_receive_again(engine):
    from conftest import parent_of

    from backstage import OneForOne

    class Moody:
        def __init__(self, ctx):
            self.ctx = ctx
            self.log = []

        def receive(self, envelope):
            if envelope.message == "grumpy":
                self.ctx.become(self.grumpy)
            else:
                self.log.append(envelope.message)

        def grumpy(self, envelope):
            raise ValueError("not today")

    engine.spawn_actor(parent_of(Moody, "moody", OneForOne()), id="parent")

    for message in ["grumpy", "fail", "after"]:
        engine.send("moody", message)
    engine.run()

    assert engine.get_actor("moody").log == ["after"]


def test_become_needs_a_callable(engine):
    error = raised_in_receive(engine, lambda ctx: ctx.become("closed"))

    assert isinstance(error, TypeError)
    assert str(error).startswith("become() needs a function that takes the envelope, "
                                 "such as self.closed, not 'closed'")


def test_a_stashed_publication_comes_back_as_that_publication(engine):
    class Keep(Opener):
        def receive(self, envelope):
            if self.open:
                self.handled.append((envelope.message_type, envelope.topic, envelope.message))
            else:
                super().receive(envelope)

    publisher = engine.spawn_actor(Recorder, id="publisher")
    keeper = engine.spawn_actor(Keep, id="keeper")
    keeper.ctx.subscribe_to_actor_topic("publisher", "news")
    publisher.ctx.publish_to_topic("news", "extra!")
    engine.run()

    engine.send("keeper", "open")
    engine.run()

    assert keeper.handled == [(MessageType.PUBLISH, "news", "extra!")]


def test_a_restarted_actor_gets_its_stash_back_ahead_of_its_inbox(engine):
    from conftest import parent_of

    from backstage import OneForOne

    class Stasher:
        def __init__(self, ctx):
            self.ctx = ctx
            self.handled = []
            self.restarted = ctx.actor_id in log_of_inits
            log_of_inits.append(ctx.actor_id)

        def receive(self, envelope):
            if envelope.message == "boom":
                raise ValueError("boom")
            if not self.restarted:
                self.ctx.stash(envelope)
            else:
                self.handled.append(envelope.message)

    log_of_inits = []
    engine.spawn_actor(parent_of(Stasher, "stasher", OneForOne()), id="parent")

    for message in ["a", "b", "boom", "c"]:
        engine.send("stasher", message)
    engine.run()

    assert engine.get_actor("stasher").handled == ["a", "b", "c"]


def test_forwarding_into_a_full_block_inbox_makes_the_forwarder_wait_and_loses_nothing(engine):
    # The messages come from outside any actor: the forwarder, not their
    # sender, must be the one that waits for room.
    engine.spawn_actor(Router, id="router")
    worker = engine.spawn_actor(Recorder, id="worker", capacity=1, overflow="block")

    for i in range(6):
        engine.send("router", i)
    engine.run()

    assert worker.messages == list(range(6))
    assert [e.sender_id for e in worker.envelopes] == [None] * 6
    assert engine.dead_letter_count == 0


def test_forward_needs_a_str_actor_id(engine):
    recorder = engine.spawn_actor(Recorder, id="r")
    envelope = Envelope("someone", MessageType.SEND, "hello")

    with pytest.raises(TypeError, match=r"^forward\(\) needs a str actor id, not \['a'\]$"):
        recorder.ctx.forward(["a"], envelope)
