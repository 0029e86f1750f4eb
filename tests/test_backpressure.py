"""Overflow policies: grow, block, drop, fail."""

import logging
import threading
import time

import pytest
from conftest import Recorder

from backstage import InboxFull


class Sampler(Recorder):
    """Records its own inbox length at every message."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.lengths = []

    def receive(self, envelope):
        self.lengths.append(self.ctx.inbox_len)
        super().receive(envelope)


class Producer:
    """On "go", sends 0..n-1 to "t"; records when it handles anything else."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.n = 10
        self.later = []
        self.target = None

    def receive(self, envelope):
        if envelope.message == "go":
            for i in range(self.n):
                self.ctx.send("t", i)
        else:
            self.later.append((envelope.message, len(self.target.messages)))


def test_block_keeps_every_message_in_order_and_the_inbox_within_capacity(engine):
    target = engine.spawn_actor(Sampler, id="t", capacity=2, overflow="block")
    engine.spawn_actor(Producer, id="p")

    engine.send("p", "go")
    engine.run()

    assert target.messages == list(range(10))
    assert max(target.lengths) <= 2
    assert engine.dead_letter_count == 0


class AsyncSampler(Recorder):
    """An async receive that awaits, then records its own inbox length."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.lengths = []

    async def receive(self, envelope):
        await self.ctx.sleep(0.001)
        self.lengths.append(self.ctx.inbox_len)
        self.envelopes.append(envelope)


def test_block_keeps_an_async_receivers_inbox_under_twice_its_capacity_while_it_awaits(
        engine):
    target = engine.spawn_actor(AsyncSampler, id="t", capacity=4, overflow="block")
    producer = engine.spawn_actor(Producer, id="p")
    producer.n = 60

    engine.send("p", "go")
    engine.run()

    assert target.messages == list(range(60))
    # The rest of a paused batch comes back on top of the senders let in; the room
    # they get is what the batch left under the capacity (without: 10 at 12 sent,
    # growing with every paused turn).
    assert max(target.lengths) <= 2 * 4 - 1
    assert engine.dead_letter_count == 0


class SelfNoting(Recorder):
    """On its first message: sends itself a note, or shuts itself down."""

    def __init__(self, ctx, how):
        super().__init__(ctx)
        self.how = how

    def receive(self, envelope):
        super().receive(envelope)
        if envelope.message == 0:
            if self.how == "note":
                self.ctx.send(self.ctx.actor_id, "note")
            else:
                self.ctx.shutdown()


@pytest.mark.parametrize("how", ["note", "shutdown"])
def test_an_actor_sends_to_its_own_block_inbox_while_a_sender_waits_for_room(engine, how):
    target = engine.spawn_actor(SelfNoting, "t", how, capacity=4, overflow="block")
    producer = engine.spawn_actor(Producer, id="p")
    producer.n = 5                          # the fifth waits for room

    engine.send("p", "go")
    engine.run()

    if how == "note":
        assert target.messages == [0, 1, 2, 3, 4, "note"]
    else:
        assert target.messages == [0, 1, 2, 3, 4] and engine.get_actor("t") is None
    assert engine.dead_letter_count == 0


def test_a_blocked_sender_gets_no_turn_until_the_target_has_room(engine):
    target = engine.spawn_actor(Sampler, id="t", capacity=2, overflow="block")
    producer = engine.spawn_actor(Producer, id="p")
    producer.target = target

    engine.send("p", "go")
    engine.send("p", "next")
    engine.run()

    # "next" was handled only after the target took the messages that waited.
    [(message, handled_by_target)] = producer.later
    assert message == "next"
    assert handled_by_target >= 8
    assert target.messages == list(range(10))


class Dozing(Recorder):
    """An async receive that dozes ``seconds`` per message, taking no other meanwhile."""

    seconds = 0.005

    async def receive(self, envelope):
        super().receive(envelope)
        await self.ctx.sleep(self.seconds)


class AsyncProducer:
    """On n: sends 0 .. n-1 to "t", a bare await between sends; keeps, per send,
    how many messages the target had handled then.  On ("spawn first", n): spawns
    "t" itself first, a Dozing with a "block" inbox of 2.  On ("failing", n):
    awaits, between sends, an ask that fails."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.target = None
        self.handled_at = []

    async def receive(self, envelope):
        how, n = envelope.message if type(envelope.message) is tuple else ("", envelope.message)
        if how == "spawn first":
            self.target = self.ctx.spawn_actor(Dozing, id="t", capacity=2, overflow="block")
        for i in range(n):
            self.ctx.send("t", i)
            self.handled_at.append(len(self.target.messages))
            if how == "failing":
                try:
                    await self.ctx.ask("failing", "boom")
                except ValueError:
                    pass
            else:
                await self.ctx.sleep(0)


class Failing:
    """Raises on every message: an ask to it fails with ValueError."""

    def __init__(self, ctx):
        pass

    def receive(self, envelope):
        raise ValueError(envelope.message)


def _at_most_ahead(producer, room):
    """Whether each send found at most ``room`` of the earlier ones not yet handled."""
    return all(i - handled <= room for i, handled in enumerate(producer.handled_at))


def test_an_async_sender_waiting_for_room_goes_on_from_its_await_only_once_there_is_room(engine):
    target = engine.spawn_actor(Dozing, id="t", capacity=2, overflow="block")
    producer = engine.spawn_actor(AsyncProducer, id="p")
    producer.target = target

    engine.send("p", 20)
    engine.run()

    assert target.messages == list(range(20))
    # Send i found at least i - 3 handled: 2 in the inbox, one taken, its own waiting.
    assert _at_most_ahead(producer, 4), producer.handled_at


def test_an_async_sender_is_held_though_the_block_inbox_came_after_its_coroutine_began(engine):
    producer = engine.spawn_actor(AsyncProducer, id="p")

    engine.send("p", ("spawn first", 20))
    engine.run()

    assert producer.target.messages == list(range(20))
    assert _at_most_ahead(producer, 4), producer.handled_at


def test_an_async_sender_is_held_after_an_await_that_raised(engine):
    target = engine.spawn_actor(Dozing, id="t", capacity=2, overflow="block")
    engine.spawn_actor(Failing, id="failing")
    producer = engine.spawn_actor(AsyncProducer, id="p")
    producer.target = target

    engine.send("p", ("failing", 20))
    engine.run()

    assert target.messages == list(range(20))
    assert _at_most_ahead(producer, 4), producer.handled_at


class SlowDozing(Dozing):
    seconds = 0.2


class TimedSender:
    """On n: sends 0 .. n-1 to "t", a bare asyncio await between, all within
    asyncio.timeout(0.1); keeps how many it sent."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.sent = 0

    async def receive(self, envelope):
        import asyncio
        try:
            async with asyncio.timeout(0.1):
                for i in range(envelope.message):
                    self.ctx.send("t", i)
                    self.sent += 1
                    await asyncio.sleep(0)
        except TimeoutError:
            pass


def test_a_held_back_coroutine_cancelled_by_its_timeout_leaves_run_to_finish_the_rest(
        engine, backend):
    if backend == "selectors":
        pytest.skip("asyncio.timeout needs an asyncio loop (asyncio, uvloop backends)")
    target = engine.spawn_actor(SlowDozing, id="t", capacity=1, overflow="block")
    sender = engine.spawn_actor(TimedSender, id="s")

    engine.send("s", 5)
    engine.run()

    # Held back once a send waited for room, then cancelled there: run() returns
    # once the target has taken all that was sent, not when the cancel comes.
    assert sender.sent < 5
    assert target.messages == list(range(sender.sent))


def test_a_send_from_the_engine_thread_outside_an_actor_cannot_block(engine):
    engine.spawn_actor(Recorder, id="t", capacity=1, overflow="block")
    engine.send("t", 1)

    with pytest.raises(InboxFull, match=r"^the inbox of 't' is full \(1 messages\) and a send "
                                        r"from the engine's own thread outside any actor cannot "
                                        r"wait"):
        engine.send("t", 2)


def test_a_send_from_another_thread_waits_for_room(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=1, overflow="block")
    engine.send("t", "first")
    sender = threading.Thread(target=engine.send, args=("t", "second"))

    sender.start()
    sender.join(0.2)
    still_waiting = sender.is_alive()
    engine.run()
    sender.join(10)
    engine.run()

    assert still_waiting
    assert target.messages == ["first", "second"]


def test_a_send_from_another_thread_gives_up_after_its_timeout(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=1, overflow="block")
    engine.send("t", "first")
    errors = []

    def send():
        try:
            engine.send("t", "second", timeout=0.05)
        except InboxFull as exc:
            errors.append(str(exc))

    sender = threading.Thread(target=send)
    sender.start()
    sender.join(10)
    engine.run()

    assert errors == ["the inbox of 't' stayed full for 0.05 s; the message was not sent"]
    assert target.messages == ["first"]


class Answers(Recorder):
    def receive(self, envelope):
        super().receive(envelope)
        if envelope.message == "question":
            envelope.reply("answer")


def test_an_ask_from_another_thread_waits_in_line_for_room_without_blocking_the_thread(engine):
    target = engine.spawn_actor(Answers, id="t", capacity=1, overflow="block")
    engine.send("t", "first")
    asked = []
    asker = threading.Thread(target=lambda: asked.append(engine.ask("t", "question", 10)))

    asker.start()
    asker.join(10)              # returns at once: the ask's future waits, not the thread
    engine.run()

    assert asked[0].result(0) == "answer"
    assert target.messages == ["first", "question"]


def test_threads_blocked_on_a_running_engine_lose_nothing_and_keep_order(engine):
    class Slow(Recorder):
        def receive(self, envelope):
            time.sleep(0.0001)
            super().receive(envelope)

    target = engine.spawn_actor(Slow, id="t", capacity=4, overflow="block")
    runner = threading.Thread(target=engine.run_forever)
    runner.start()

    def produce(tag):
        for i in range(300):
            engine.send("t", (tag, i))

    producers = [threading.Thread(target=produce, args=(tag,)) for tag in range(3)]
    for p in producers:
        p.start()
    for p in producers:
        p.join(30)
    deadline = time.monotonic() + 30
    while len(target.messages) < 900 and time.monotonic() < deadline:
        time.sleep(0.01)
    engine.stop()
    runner.join(10)

    for tag in range(3):
        assert [i for t, i in target.messages if t == tag] == list(range(300))


def test_an_actor_waiting_for_itself_is_told_instead_of_hanging(engine, caplog):
    class SelfFlooder:
        def __init__(self, ctx):
            self.ctx = ctx
            self.sent = 0

        def receive(self, envelope):
            if envelope.message == "go":
                for _ in range(3):
                    self.ctx.send(self.ctx.actor_id, "more")
                    self.sent += 1

    actor = engine.spawn_actor(SelfFlooder, id="s", capacity=2, overflow="block")

    engine.send("s", "go")
    engine.run()

    assert actor.sent == 2
    assert "'s' cannot wait for room in the full inbox of 's'" in caplog.text


def test_a_cycle_of_actors_waiting_on_each_other_is_detected(engine, caplog):
    caplog.set_level(logging.ERROR, logger="backstage")

    class A:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            if envelope.message == "go":
                self.ctx.send("a", "self")         # A's inbox is now full
                for i in range(3):
                    self.ctx.send("b", i)          # B takes one; A waits for the rest

    class B(Recorder):
        def receive(self, envelope):
            super().receive(envelope)
            if envelope.message == 0:
                self.ctx.send("a", "from b")       # A is full and waits for B

    engine.spawn_actor(A, id="a", capacity=1, overflow="block")
    b = engine.spawn_actor(B, id="b", capacity=1, overflow="block")

    engine.send("a", "go")
    engine.run()

    assert "'b' cannot wait for room in the full inbox of 'a'" in caplog.text
    assert b.messages == [0, 1, 2]


def test_drop_turns_the_overflow_into_dead_letters(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=3, overflow="drop")

    for i in range(5):
        engine.send("t", i)
    engine.run()

    assert target.messages == [0, 1, 2]
    assert [(d.envelope.message, d.reason) for d in engine.dead_letters] == [
        (3, "inbox full"), (4, "inbox full")]


def test_fail_raises_at_the_send_and_enqueues_nothing(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=2, overflow="fail")
    engine.send("t", 0)
    engine.send("t", 1)

    with pytest.raises(InboxFull, match=r"^the inbox of 't' is full \(2 messages\) and its "
                                        r"overflow policy is 'fail'"):
        engine.send("t", 2)
    engine.run()

    assert target.messages == [0, 1]


def test_fail_raises_in_another_thread_too(engine):
    engine.spawn_actor(Recorder, id="t", capacity=1, overflow="fail")
    engine.send("t", 0)
    errors = []

    def send():
        try:
            engine.send("t", 1)
        except InboxFull as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    sender.join(10)

    assert len(errors) == 1


def test_grow_is_the_default_and_never_refuses(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=1)

    for i in range(100):
        engine.send("t", i)
    engine.run()

    assert target.ctx.overflow == "grow"
    assert target.messages == list(range(100))


def test_an_unknown_overflow_policy_is_refused(engine):
    with pytest.raises(ValueError, match=r"^unknown overflow policy 'wait': use one of 'grow'"):
        engine.spawn_actor(Recorder, id="t", overflow="wait")


def test_senders_waiting_on_an_actor_that_stops_are_released(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=1, overflow="block")
    producer = engine.spawn_actor(Producer, id="p")
    producer.target = target
    producer.n = 3

    engine.send("p", "go")
    engine.poison_pill("t")            # queued behind nothing: t stops at its first turn
    engine.send("p", "next")
    engine.run()

    assert producer.later and producer.later[0][0] == "next"
    assert engine.dead_letter_count + len(target.messages) == 3


def test_tuples_dropped_at_a_full_inbox_are_dead_letters_whole(engine):
    target = engine.spawn_actor(Recorder, id="t", capacity=1, overflow="drop")

    for message in [(0, 1, None), ("a", "b", "c"), ("x",)]:
        engine.send("t", message)
    engine.run()

    assert target.messages == [(0, 1, None)]
    assert [d.envelope.message for d in engine.dead_letters] == [("a", "b", "c"), ("x",)]
    assert all(d.envelope.sender_id is None for d in engine.dead_letters)


def test_outside_messages_left_by_a_blocked_sender_are_delivered_later_whole(engine):
    class Relay:
        """Passes every message on to "t", whose inbox holds one."""

        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            self.ctx.send("t", envelope.message)

    target = engine.spawn_actor(Sampler, id="t", capacity=1, overflow="block")
    engine.spawn_actor(Relay, id="relay")
    sent = ["a", ("b", 1, None), 3, ("x",), "e", ("f", "g", "h")]

    for message in sent:
        engine.send("relay", message)
    engine.run()

    assert target.messages == sent
    assert max(target.lengths) <= 1
    assert engine.dead_letter_count == 0


class Replier(Recorder):
    """Answers "m1" with a send to "b"."""

    def receive(self, envelope):
        super().receive(envelope)
        if envelope.message == "m1":
            self.ctx.send("b", "reply")


class Requester(Recorder):
    """On "go", sends "m1" and "m2" to "a", whose inbox holds one."""

    def receive(self, envelope):
        super().receive(envelope)
        if envelope.message == "go":
            self.ctx.send("a", "m1")
            self.ctx.send("a", "m2")        # waits for room in "a"


class Filler:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        self.ctx.send("b", "fill")


def test_two_block_actors_answer_each_other_while_one_waits_for_room_in_the_other(engine):
    a = engine.spawn_actor(Replier, id="a", capacity=1, overflow="block")
    b = engine.spawn_actor(Requester, id="b", capacity=1, overflow="block")
    engine.spawn_actor(Filler, id="d")

    engine.send("b", "go")
    engine.send("d", "go")
    engine.run()

    assert a.messages == ["m1", "m2"]
    assert b.messages == ["go", "fill", "reply"]
    assert engine.dead_letter_count == 0


class _FillsThenStops(Recorder):
    """On "go": fills its own inbox (capacity 4) with a, b, c, d, then stops itself."""

    def receive(self, envelope):
        super().receive(envelope)
        if envelope.message == "go":
            for message in "abcd":
                self.ctx.send(self.ctx.actor_id, message)
            self.ctx.shutdown()             # on a full inbox: InboxFull, dropped, ...


@pytest.mark.parametrize("overflow", ["block", "drop", "drop_oldest", "fail"])
def test_an_actor_stops_itself_even_when_its_bounded_inbox_is_full(engine, overflow):
    # The stop goes in past the policy: it neither waits for room only this
    # actor makes, nor is dropped, nor fails, nor drops a message for itself.
    target = engine.spawn_actor(_FillsThenStops, "t", capacity=4, overflow=overflow)

    engine.send("t", "go")
    engine.run()

    assert target.messages == ["go", "a", "b", "c", "d"]
    assert engine.get_actor("t") is None
    assert engine.dead_letter_count == 0 and engine.restart_count == 0
