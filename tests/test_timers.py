"""Timers: run_recurring and send_after, and how they end."""

import time

from conftest import Recorder


class Ticker:
    def __init__(self, ctx):
        self.ctx = ctx
        self.ticks = 0
        self.timer = ctx.run_recurring(0.005, self.tick)

    def tick(self):
        self.ticks += 1
        if self.ticks == 5:
            self.timer.cancel()

    def receive(self, envelope):
        pass


def test_run_recurring_fires_until_cancelled_and_run_then_returns(engine):
    ticker = engine.spawn_actor(Ticker, id="t")

    engine.run()

    assert ticker.ticks == 5
    assert not ticker.timer.active


def test_send_after_delivers_later_with_the_actor_as_sender(engine):
    rec = engine.spawn_actor(Recorder, id="rec")
    started = time.monotonic()

    rec.ctx.send_after(0.05, "rec", "later")
    engine.run()

    assert rec.messages == ["later"]
    assert rec.envelopes[0].sender_id == "rec"
    assert time.monotonic() - started >= 0.045


def test_a_cancelled_send_after_never_delivers(engine):
    rec = engine.spawn_actor(Recorder, id="rec")

    timer = rec.ctx.send_after(0.01, "rec", "never")
    timer.cancel()
    timer.cancel()
    engine.run()

    assert rec.messages == []


def test_timers_end_with_their_actor(engine):
    class Stopper:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            self.ctx.send_after(0.02, "rec", "too late")

    ticker = engine.spawn_actor(Ticker, id="t")
    rec = engine.spawn_actor(Recorder, id="rec")
    engine.spawn_actor(Stopper, id="s")
    engine.send("s", "arm")
    engine.poison_pill("s")
    engine.poison_pill("t")

    engine.run()

    assert ticker.ticks == 0
    assert rec.messages == []
    assert not ticker.timer.active


def test_a_failing_timer_callback_is_logged_and_keeps_recurring(engine, caplog):
    class Flaky:
        def __init__(self, ctx):
            self.calls = 0
            self.timer = ctx.run_recurring(0.002, self.tick)

        def tick(self):
            self.calls += 1
            if self.calls == 3:
                self.timer.cancel()
            raise RuntimeError("tick failed")

        def receive(self, envelope):
            pass

    flaky = engine.spawn_actor(Flaky, id="f")

    engine.run()

    assert flaky.calls == 3
    assert "timer callback of actor 'f' failed" in caplog.text


def test_timers_and_messages_interleave_in_time_order(engine):
    rec = engine.spawn_actor(Recorder, id="rec")

    rec.ctx.send_after(0.03, "rec", "third")
    rec.ctx.send_after(0.01, "rec", "second")
    engine.send("rec", "first")
    engine.run()

    assert rec.messages == ["first", "second", "third"]
