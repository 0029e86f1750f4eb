"""The test kit for users' own tests: Probe, and Engine(raise_failures=True)."""

import threading

import pytest

from backstage import Engine, Envelope, Probe, Terminated


class Echo:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        if envelope.message == "crash":
            raise ValueError("echo crashed")
        self.ctx.send(envelope.sender_id, ("echo", envelope.message))


def test_a_probe_records_what_it_receives(engine):
    probe = engine.spawn_actor(Probe, "probe")

    engine.send("probe", 1)
    engine.send("probe", "two")
    engine.run()

    assert probe.messages == [1, "two"]
    assert all(isinstance(e, Envelope) for e in probe.envelopes)


def test_expect_runs_the_idle_engine_until_the_message_arrives(engine):
    probe = engine.spawn_actor(Probe, "probe")
    engine.spawn_actor(Echo, "echo")

    probe.ctx.send("echo", "hi")
    envelope = probe.expect(("echo", "hi"))

    assert envelope.sender_id == "echo"


def test_expect_takes_messages_in_order_one_each(engine):
    probe = engine.spawn_actor(Probe, "probe")
    for i in range(3):
        engine.send("probe", i)

    got = [probe.expect(i).message for i in range(3)]

    assert got == [0, 1, 2]


def test_expect_matches_a_class_or_a_predicate_and_the_sender(engine):
    probe = engine.spawn_actor(Probe, "probe")
    engine.spawn_actor(Echo, "echo")

    probe.ctx.send("echo", 5)
    probe.ctx.send("echo", 6)

    assert probe.expect(tuple, sender="echo").message == ("echo", 5)
    assert probe.expect(where=lambda m: m[1] > 5).message == ("echo", 6)


def test_expect_fails_with_what_arrived_instead(engine):
    probe = engine.spawn_actor(Probe, "probe")
    engine.send("probe", "surprise")

    with pytest.raises(AssertionError, match=r"^expected 'hello' at 'probe', got 'surprise'"):
        probe.expect("hello")


def test_expect_fails_when_nothing_arrives_within_the_timeout(engine):
    probe = engine.spawn_actor(Probe, "probe")

    with pytest.raises(AssertionError,
                       match=r"^expected 'hello' at 'probe' within 0.05 s, got nothing"):
        probe.expect("hello", timeout=0.05)


def test_expect_no_message_passes_on_silence_and_fails_on_a_message(engine):
    probe = engine.spawn_actor(Probe, "probe")

    probe.expect_no_message(within=0.02)
    engine.send("probe", "noise")
    with pytest.raises(AssertionError, match=r"^expected no message at 'probe', got 'noise'"):
        probe.expect_no_message(within=0.02)


def test_wait_for_skips_messages_until_one_matches(engine):
    probe = engine.spawn_actor(Probe, "probe")
    for message in ("a", "b", "target", "c"):
        engine.send("probe", message)

    assert probe.wait_for("target").message == "target"
    assert probe.expect("c").message == "c"


def test_expect_from_another_thread_waits_for_an_engine_running_elsewhere(engine):
    probe = engine.spawn_actor(Probe, "probe")
    engine.spawn_actor(Echo, "echo")
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    try:
        probe.ctx.send("echo", "across")
        assert probe.expect(("echo", "across"), timeout=10).sender_id == "echo"
    finally:
        engine.stop()
        runner.join(10)


def test_a_probe_answers_asks_with_its_reply_function(engine):
    engine.spawn_actor(Probe, "probe", reply=lambda message: message * 2)

    future = engine.ask("probe", 21)
    engine.run()

    assert future.result() == 42


def test_a_probe_can_watch_another_actor_stop(engine):
    probe = engine.spawn_actor(Probe, "probe")
    engine.spawn_actor(Echo, "echo")
    probe.ctx.monitor("echo")

    engine.poison_pill("echo")

    notice = probe.expect(Terminated).message
    assert notice.actor_id == "echo"


def test_expect_inside_an_actor_raises_instead_of_blocking_the_engine(engine):
    class Tester:
        def __init__(self, ctx):
            self.ctx = ctx
            self.error = None

        def receive(self, envelope):
            try:
                self.ctx.get_actor("probe").expect("x")
            except RuntimeError as exc:
                self.error = exc

    engine.spawn_actor(Probe, "probe")
    tester = engine.spawn_actor(Tester, "tester")
    engine.send("tester", "go")
    engine.run()

    assert str(tester.error).startswith("expect() would block the engine")


def test_with_raise_failures_an_actor_failure_raises_out_of_run(backend):
    with Engine(backend=backend, raise_failures=True) as engine:
        engine.spawn_actor(Echo, "echo")
        engine.spawn_actor(Probe, "probe")

        engine.send("echo", "crash")
        with pytest.raises(ValueError, match=r"^echo crashed\n") as caught:
            engine.run()

        assert any("'echo'" in note for note in caught.value.__notes__)


def test_with_raise_failures_the_engine_runs_on_after_the_failure_was_raised(backend):
    with Engine(backend=backend, raise_failures=True) as engine:
        probe = engine.spawn_actor(Probe, "probe")
        engine.spawn_actor(Echo, "echo")
        engine.send("echo", "crash")
        with pytest.raises(ValueError):
            engine.run()

        probe.ctx.send("echo", "still here")
        engine.run()

        assert probe.messages == [("echo", "still here")]


def test_without_raise_failures_a_failure_is_only_logged(engine, caplog):
    engine.spawn_actor(Echo, "echo")

    engine.send("echo", "crash")
    engine.run()

    assert "echo crashed" in caplog.text


def test_with_raise_failures_a_failing_timer_callback_raises_out_of_run(backend):
    class Ticker:
        def __init__(self, ctx):
            self.ctx = ctx
            ctx.run_recurring(0.001, self.tick)

        def receive(self, envelope):
            pass

        def tick(self):
            raise OSError("tick failed")

    with Engine(backend=backend, raise_failures=True) as engine:
        engine.spawn_actor(Ticker, "ticker")
        with pytest.raises(OSError, match=r"^tick failed\n"):
            engine.run()


def test_with_raise_failures_a_failure_raises_out_of_probe_expect(backend):
    with Engine(backend=backend, raise_failures=True) as engine:
        probe = engine.spawn_actor(Probe, "probe")
        engine.spawn_actor(Echo, "echo")

        probe.ctx.send("echo", "crash")
        with pytest.raises(ValueError, match=r"^echo crashed\n"):
            probe.expect(("echo", "crash"), timeout=5)


def test_raise_failures_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^raise_failures must be True or False"):
        Engine(raise_failures="yes")


def test_probe_helpers_reject_a_negative_wait(engine):
    probe = engine.spawn_actor(Probe, "probe")

    with pytest.raises(ValueError, match=r"^expect\(\) needs timeout zero or more seconds"):
        probe.expect("x", timeout=-1)
    with pytest.raises(ValueError, match=r"^expect_no_message\(\) needs within zero or more"):
        probe.expect_no_message(within=-1)
