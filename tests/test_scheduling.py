"""Fair turns, and failures in receive."""

from conftest import Recorder


class Flooder:
    """Keeps messaging itself until told to stop or a bound is reached."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.count = 0
        self.stopped_by = None

    def receive(self, envelope):
        if envelope.message == "enough":
            self.stopped_by = "message"
            return
        self.count += 1
        if self.count < 200_000 and self.stopped_by is None:
            self.ctx.send(self.ctx.actor_id, "again")
        elif self.stopped_by is None:
            self.stopped_by = "bound"


def test_an_actor_that_floods_itself_does_not_starve_the_others(engine):
    flooder = engine.spawn_actor(Flooder, id="flood")
    rec = engine.spawn_actor(Recorder, id="rec")

    class Watcher(Recorder):
        def receive(self, envelope):
            super().receive(envelope)
            self.flood_count_then = flooder.count

    watcher = engine.spawn_actor(Watcher, id="watch")
    engine.send("flood", "start")
    for i in range(10):
        engine.send("watch", i)
    engine.run()

    assert watcher.messages == list(range(10))
    assert watcher.flood_count_then < 1000
    assert rec.messages == []


def test_a_timer_fires_while_an_actor_floods_itself(engine):
    flooder = engine.spawn_actor(Flooder, id="flood")
    flooder.ctx.send_after(0.01, "flood", "enough")

    engine.send("flood", "start")
    engine.run()

    assert flooder.stopped_by == "message"
    assert flooder.count < 200_000


def test_an_exception_in_receive_is_logged_and_the_actor_goes_on(engine, caplog):
    class Fragile(Recorder):
        def receive(self, envelope):
            if envelope.message == "bad":
                raise ValueError("cannot handle bad")
            super().receive(envelope)

    fragile = engine.spawn_actor(Fragile, id="f")

    for message in ["a", "bad", "b", "bad", "c"]:
        engine.send("f", message)
    engine.run()

    assert fragile.messages == ["a", "b", "c"]
    # The first failure with its traceback; the second is counted (see test_noise.py).
    failures = [r for r in caplog.records if "actor 'f' failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info[0] is ValueError


def test_receive_never_runs_reentrantly(engine):
    class Reentrant:
        def __init__(self, ctx):
            self.ctx = ctx
            self.depth = 0
            self.max_depth = 0
            self.count = 0

        def receive(self, envelope):
            self.depth += 1
            self.max_depth = max(self.max_depth, self.depth)
            self.count += 1
            if self.count < 100:
                self.ctx.send(self.ctx.actor_id, "more")
                self.ctx.engine.send(self.ctx.actor_id, "and more")
            self.depth -= 1

    actor = engine.spawn_actor(Reentrant, id="r")
    engine.send("r", "go")
    engine.run()

    assert actor.max_depth == 1


def test_run_returns_at_once_when_there_is_nothing_to_do(engine):
    engine.spawn_actor(Recorder, id="idle")

    engine.run()

    assert engine.get_actor("idle") is not None
