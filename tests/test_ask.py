"""Request/reply: engine.ask, ctx.ask and envelope.reply."""

import threading

import pytest
from conftest import Recorder

from backstage import ActorNotFound, AskFuture, Engine, EngineClosed


class Doubler:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        if envelope.message == "fail":
            raise ValueError("cannot double that")
        if envelope.message == "silent":
            self.kept = envelope    # to answer later (never): the ask stays open
            return
        envelope.reply(envelope.message * 2)


def _serve(engine):
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    return runner


def test_engine_ask_from_another_thread_gets_the_reply(engine):
    engine.spawn_actor(Doubler, id="d")
    runner = _serve(engine)
    try:
        future = engine.ask("d", 21)
        assert isinstance(future, AskFuture)
        assert future.result(timeout=10) == 42
    finally:
        engine.stop()
        runner.join(10)


def test_run_waits_for_an_outstanding_ask_and_the_future_is_done_after(engine):
    engine.spawn_actor(Doubler, id="d")

    future = engine.ask("d", 5)
    engine.run()

    assert future.done()
    assert future.result() == 10


def test_asking_an_unknown_actor_fails_at_once(engine):
    future = engine.ask("ghost", 1)

    assert future.done()
    with pytest.raises(ActorNotFound, match=r"^cannot ask 'ghost': no actor has that id"):
        future.result()


def test_an_ask_with_no_reply_times_out_and_a_late_reply_is_a_dead_letter(engine):
    class Late:
        def __init__(self, ctx):
            self.ctx = ctx
            self.held = None

        def receive(self, envelope):
            if envelope.message == "ask":
                self.held = envelope
            else:
                self.held.reply("too late")

    engine.spawn_actor(Late, id="late")

    future = engine.ask("late", "ask", timeout=0.02)
    engine.run()
    with pytest.raises(TimeoutError, match=r"^no reply from 'late' within 0.02 s"):
        future.result()
    engine.send("late", "now reply")
    engine.run()

    [dead] = engine.dead_letters
    assert dead.envelope.message == "too late"
    assert "after the ask was answered or timed out" in dead.reason


def test_an_exception_in_receive_fails_the_ask_with_it(engine):
    engine.spawn_actor(Doubler, id="d")

    future = engine.ask("d", "fail")
    engine.run()

    with pytest.raises(ValueError, match=r"^cannot double that$"):
        future.result()


def test_an_ask_to_an_actor_that_stops_first_fails_instead_of_waiting(engine):
    engine.spawn_actor(Doubler, id="d")
    engine.poison_pill("d")

    future = engine.ask("d", 1)
    engine.run()

    with pytest.raises(ActorNotFound, match=r"^'d' did not answer the ask"):
        future.result()


def test_ctx_ask_callbacks_run_on_the_engine_thread_outside_any_receive(engine):
    in_receive = []
    seen = []

    class Asker:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            in_receive.append(True)
            future = self.ctx.ask("d", envelope.message)
            future.add_done_callback(self.on_reply)
            in_receive.pop()

        def on_reply(self, future):
            seen.append((future.result(), threading.get_ident(), bool(in_receive)))

    engine.spawn_actor(Doubler, id="d")
    engine.spawn_actor(Asker, id="a")

    engine.send("a", 4)
    engine.run()

    assert seen == [(8, threading.get_ident(), False)]


def test_an_asked_message_names_the_asking_actor_as_sender(engine):
    senders = []

    class Who:
        def __init__(self, ctx):
            pass

        def receive(self, envelope):
            senders.append(envelope.sender_id)
            envelope.reply(None)

    class Asker:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            self.ctx.ask("who", "?")

    engine.spawn_actor(Who, id="who")
    engine.spawn_actor(Asker, id="asker")
    engine.send("asker", "go")
    engine.ask("who", "?")
    engine.run()

    assert senders == [None, "asker"]


def test_waiting_for_a_reply_on_the_engine_thread_raises_instead_of_hanging(engine):
    errors = []

    class Blocker:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            try:
                self.ctx.ask("d", 1).result()
            except RuntimeError as exc:
                errors.append(str(exc))

    engine.spawn_actor(Doubler, id="d")
    engine.spawn_actor(Blocker, id="b")

    engine.send("b", "go")
    engine.run()

    assert errors and errors[0].startswith("waiting for an ask on the engine's own thread")


def test_waiting_on_the_owner_thread_before_run_raises_too(engine):
    engine.spawn_actor(Doubler, id="d")

    future = engine.ask("d", 1)

    with pytest.raises(RuntimeError, match=r"^waiting for an ask on the engine's own thread"):
        future.result()
    engine.run()
    assert future.result() == 2


def test_replying_to_a_plain_send_is_refused(engine):
    errors = []

    class Replier(Recorder):
        def receive(self, envelope):
            try:
                envelope.reply("x")
            except RuntimeError as exc:
                errors.append(str(exc))

    engine.spawn_actor(Replier, id="r")
    engine.send("r", "plain")
    engine.run()

    assert errors[0].startswith("this message was sent, not asked")


def test_a_bad_ask_timeout_is_refused(engine):
    with pytest.raises(ValueError, match=r"^ask\(\) needs timeout more than zero seconds"):
        engine.ask("d", 1, timeout=0)


def test_close_fails_asks_still_waiting(backend):
    from backstage import EngineClosed

    engine = Engine(backend=backend)
    engine.spawn_actor(Doubler, id="d")
    future = engine.ask("d", "silent", timeout=None)
    runner = _serve(engine)

    engine.close()
    runner.join(10)

    with pytest.raises(EngineClosed, match=r"^no reply from 'd'"):
        future.result(timeout=1)


class _KeepsAndRepliesLate:
    """Keeps each ask's envelope; on "flush", replies to them all."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.kept = []

    def receive(self, envelope):
        if envelope.message == "flush":
            for kept in self.kept:
                kept.reply("late")
        else:
            self.kept.append(envelope)
            self.ctx.send_after(0.1, self.ctx.actor_id, "flush")


class _AsksWithATimeout:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        self.ctx.ask("slow", "question", timeout=0.02)


def test_a_late_reply_to_an_actors_timed_out_ask_is_a_dead_letter_when_it_is_the_last_work(
        engine):
    # The reply is the last thing the engine does: it was settled in a callback
    # of its own, which a run() that returned once idle left behind for good.
    engine.spawn_actor(_KeepsAndRepliesLate, "slow")
    engine.spawn_actor(_AsksWithATimeout, "asker")

    engine.send("asker", "go")
    engine.run()

    assert [(d.envelope.message, d.reason) for d in engine.dead_letters] == [
        ("late", "reply came after the ask was answered or timed out")]


class _Keeps:
    def __init__(self, ctx):
        self.kept = []
        self.has_one = threading.Event()

    def receive(self, envelope):
        self.kept.append(envelope)
        self.has_one.set()


def test_a_reply_after_close_is_a_dead_letter_on_every_backend(engine):
    keeper = engine.spawn_actor(_Keeps, "keeper")
    future = engine.ask("keeper", "question", timeout=30)
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    assert keeper.has_one.wait(10)
    engine.close()
    runner.join(10)
    with pytest.raises(EngineClosed):
        future.result()

    keeper.kept[0].reply("after close")     # raised EngineClosed on asyncio; lost on selectors

    assert [(d.envelope.message, d.reason) for d in engine.dead_letters][-1] == (
        "after close", "reply came after the ask was answered or timed out")


class _RepliesInDeinit:
    def __init__(self, ctx):
        self.kept = None

    def receive(self, envelope):
        self.kept = envelope

    def deinit(self):
        if self.kept is not None:
            self.kept.reply("from deinit")


class _AsksAndNotes:
    def __init__(self, ctx):
        self.ctx = ctx
        self.outcome = None
        self.asked = threading.Event()

    def receive(self, envelope):
        def note(future):
            self.outcome = future.exception()
        self.ctx.ask("keeper", "question", timeout=30).add_done_callback(note)
        self.asked.set()


def test_a_reply_made_in_a_deinit_during_close_is_a_dead_letter_not_a_callback_inside_it(
        engine):
    engine.spawn_actor(_RepliesInDeinit, "keeper")
    asker = engine.spawn_actor(_AsksAndNotes, "asker")
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    engine.send("asker", "go")
    assert asker.asked.wait(10)
    threading.Event().wait(0.05)            # the ask reaches the keeper

    engine.close()
    runner.join(10)

    assert isinstance(asker.outcome, EngineClosed)  # the ask failed with the close, as it was
    assert [(d.envelope.message, d.reason) for d in engine.dead_letters] == [
        ("from deinit", "the engine closed before the reply reached the asker")]
