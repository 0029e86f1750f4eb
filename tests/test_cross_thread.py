"""Sends and asks from other threads: the short path Engine.send takes for a
live actor with a plain inbox, and every case that must still take the long one."""

import collections
import threading

import pytest
from conftest import Recorder

from backstage import Engine, EngineClosed, SelectorLoop


def _in_thread(fn):
    """Run ``fn`` in a new thread; return what it returned or raised."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:        # noqa: BLE001 - handed back to the test
            outcome["raised"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return outcome


def _run_in_thread(engine):
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    return runner


class Mixed:
    """Keeps every message in arrival order; answers asks with their message."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.seen = []
        self.done = threading.Event()

    def receive(self, envelope):
        self.seen.append(envelope.message)
        if envelope.message == "last":
            self.done.set()
        envelope.reply(envelope.message)


def test_a_send_from_another_thread_to_a_non_str_id_raises_type_error_there(engine):
    engine.spawn_actor(Recorder, id="rec")

    outcome = _in_thread(lambda: engine.send(42, "hello"))

    assert isinstance(outcome.get("raised"), TypeError)
    assert str(outcome["raised"]) == "send() needs a str actor id, not 42"


def test_a_send_from_another_thread_to_an_unhashable_id_raises_type_error_there(engine):
    outcome = _in_thread(lambda: engine.send(["rec"], "hello"))

    assert isinstance(outcome.get("raised"), TypeError)
    assert str(outcome["raised"]) == "send() needs a str actor id, not ['rec']"


def test_a_send_from_another_thread_to_an_empty_id_raises_value_error_there(engine):
    outcome = _in_thread(lambda: engine.send("", "hello"))

    assert isinstance(outcome.get("raised"), ValueError)
    assert str(outcome["raised"]).startswith("send() got an empty actor id")


def test_a_send_from_another_thread_after_close_raises_engine_closed(backend):
    engine = Engine(backend=backend)
    engine.spawn_actor(Recorder, id="rec")
    engine.close()

    outcome = _in_thread(lambda: engine.send("rec", "hello"))

    assert isinstance(outcome.get("raised"), EngineClosed)


def test_a_send_from_another_thread_with_a_negative_timeout_is_refused_there(engine):
    engine.spawn_actor(Recorder, id="rec")

    outcome = _in_thread(lambda: engine.send("rec", "hello", timeout=-1))

    assert isinstance(outcome.get("raised"), ValueError)


def test_a_send_from_another_thread_to_a_full_drop_inbox_is_a_dead_letter(engine):
    # A bounded inbox is not a plain list: its policy is applied on the engine
    # thread, so the short path must not take it.
    rec = engine.spawn_actor(Recorder, id="rec", capacity=2, overflow="drop")

    outcome = _in_thread(lambda: [engine.send("rec", i) for i in range(5)])
    engine.run()

    assert "raised" not in outcome
    assert rec.messages == [0, 1]
    assert [d.envelope.message for d in engine.dead_letters] == [2, 3, 4]


def test_plain_sends_asks_and_timed_sends_from_one_thread_arrive_in_that_threads_order(engine):
    # Plain sends take the short path; asks, sends with a timeout and pills
    # the long one: one queue keeps them in the thread's order.
    mixed = engine.spawn_actor(Mixed, id="mixed")
    runner = _run_in_thread(engine)
    expected = []

    def feed():
        futures = []
        for i in range(300):
            engine.send("mixed", ("plain", i))
            expected.append(("plain", i))
            if i % 3 == 0:
                futures.append(engine.ask("mixed", ("ask", i)))
                expected.append(("ask", i))
            if i % 5 == 0:
                engine.send("mixed", ("timed", i), timeout=5.0)
                expected.append(("timed", i))
        engine.send("mixed", "last")
        expected.append("last")
        return [f.result(10) for f in futures]

    outcome = _in_thread(feed)
    mixed.done.wait(10)
    engine.stop()
    runner.join(10)

    assert outcome["value"] == [("ask", i) for i in range(0, 300, 3)]
    assert mixed.seen == expected


def test_a_send_from_another_thread_to_an_actor_that_stopped_is_a_dead_letter(engine):
    engine.spawn_actor(Recorder, id="rec")
    engine.poison_pill("rec")
    engine.run()

    outcome = _in_thread(lambda: engine.send("rec", "late"))
    engine.run()

    assert "raised" not in outcome
    assert [(d.target_id, d.envelope.message) for d in engine.dead_letters] == [("rec", "late")]


def test_the_selector_loop_empties_its_wake_up_pipe_past_one_reads_worth():
    loop = SelectorLoop()
    try:
        for _ in range(6000):           # more than one recv of 4,096 bytes
            loop._wakeup()

        loop._drain_wakeups()

        with pytest.raises(BlockingIOError):
            loop._wake_r.recv(1)
    finally:
        loop.close()


def test_each_ask_from_another_thread_wakes_a_loop_that_sleeps(engine):
    # The selectors loop's drain stops after a short read; a wake-up written
    # after it must still wake the next select, one ask after another.
    engine.spawn_actor(Mixed, id="mixed")
    runner = _run_in_thread(engine)

    answers = [engine.ask("mixed", i).result(10) for i in range(200)]
    engine.stop()
    runner.join(10)

    assert answers == list(range(200))


class Holder:
    """Keeps an ask's envelope; replies with it when told to."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.held = None
        self.got = threading.Event()

    def receive(self, envelope):
        if envelope.message == "reply now":
            self.held.reply("late answer")
        else:
            self.held = envelope
            self.got.set()


def test_a_reply_to_an_ask_cancelled_by_another_thread_is_a_dead_letter(engine):
    holder = engine.spawn_actor(Holder, id="holder")
    runner = _run_in_thread(engine)
    future = engine.ask("holder", "question", timeout=None)
    assert holder.got.wait(10)

    assert future.cancel()
    engine.send("holder", "reply now")
    for _ in range(1000):
        if engine.dead_letter_count:
            break
        threading.Event().wait(0.01)
    engine.stop()
    runner.join(10)

    (letter,) = engine.dead_letters
    assert (letter.target_id, letter.envelope.message, letter.reason) == \
        ("(ask)", "late answer", "reply came after the ask was answered or timed out")


class ResultReader(Recorder):
    """Calls result() of the future it is sent, inside its receive."""

    def receive(self, envelope):
        self.envelopes.append(envelope.message.result())


def test_result_of_an_answered_ask_returns_on_the_engine_thread_too(engine):
    engine.spawn_actor(Mixed, id="mixed")
    reader = engine.spawn_actor(ResultReader, id="reader")
    future = engine.ask("mixed", "question")
    engine.run()

    engine.send("reader", future)
    engine.run()

    assert reader.envelopes == ["question"]


class CloseBeforeAppend(collections.deque):
    """A cross-thread queue whose next append first closes the engine: the
    sender has found the engine open, and close() ends before its entry lands."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine
        self.armed = False

    def append(self, entry):
        if self.armed:
            self.armed = False
            self.engine.close()
        super().append(entry)


def _arm_close_before_append(engine):
    inbound = CloseBeforeAppend(engine)
    engine._inbound = inbound
    inbound.armed = True
    return inbound


def test_a_send_from_another_thread_that_lands_after_close_raises_engine_closed(backend):
    engine = Engine(backend=backend)
    engine.spawn_actor(Recorder, id="rec")
    inbound = _arm_close_before_append(engine)

    outcome = _in_thread(lambda: engine.send("rec", "hello"))

    assert isinstance(outcome.get("raised"), EngineClosed)
    assert str(outcome["raised"]).startswith("cannot send to 'rec': the engine is closed")
    assert not inbound


def test_a_timed_send_from_another_thread_that_lands_after_close_raises_engine_closed(backend):
    engine = Engine(backend=backend)
    engine.spawn_actor(Recorder, id="rec")
    inbound = _arm_close_before_append(engine)

    outcome = _in_thread(lambda: engine.send("rec", "hello", timeout=1.0))

    assert isinstance(outcome.get("raised"), EngineClosed)
    assert not inbound


def test_an_ask_from_another_thread_that_lands_after_close_raises_engine_closed(backend):
    engine = Engine(backend=backend)
    engine.spawn_actor(Mixed, id="mixed")
    inbound = _arm_close_before_append(engine)

    outcome = _in_thread(lambda: engine.ask("mixed", "question", timeout=None))

    assert isinstance(outcome.get("raised"), EngineClosed)
    assert not inbound
