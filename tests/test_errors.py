"""Bad input raises at the call that made it, saying what was wrong."""

import pytest
from conftest import Recorder, raised_in_receive

from backstage import Engine


def test_spawning_a_class_without_receive_is_refused(engine):
    class NoReceive:
        def __init__(self, ctx):
            pass

    with pytest.raises(TypeError, match=r"^spawn_actor\(\) needs a class with a receive\(self, "
                                        r"envelope\) method; NoReceive has none$"):
        engine.spawn_actor(NoReceive, id="x")


def test_spawning_an_instance_instead_of_a_class_is_refused(engine):
    with pytest.raises(TypeError, match=r"^spawn_actor\(\) needs a class, not"):
        engine.spawn_actor(Recorder(None), id="x")


@pytest.mark.parametrize("bad_id", [None, 5, b"bytes"])
def test_an_actor_id_that_is_not_a_string_is_refused(engine, bad_id):
    with pytest.raises(TypeError, match=r"^actor ids are strings"):
        engine.spawn_actor(Recorder, id=bad_id)


def test_an_empty_actor_id_is_refused(engine):
    with pytest.raises(ValueError, match=r"^actor ids may not be empty"):
        engine.spawn_actor(Recorder, id="")


@pytest.mark.parametrize("capacity", [0, -1])
def test_a_capacity_below_one_is_refused(engine, capacity):
    with pytest.raises(ValueError, match=r"^capacity must be at least 1"):
        engine.spawn_actor(Recorder, id="x", capacity=capacity)


def test_a_capacity_that_is_not_an_int_is_refused(engine):
    with pytest.raises(TypeError, match=r"^capacity must be an int"):
        engine.spawn_actor(Recorder, id="x", capacity=1.5)


def test_a_negative_delay_is_refused(engine):
    rec = engine.spawn_actor(Recorder, id="rec")

    with pytest.raises(ValueError, match=r"^send_after\(\) needs delay_s zero or more seconds"):
        rec.ctx.send_after(-1, "rec", "x")
    with pytest.raises(ValueError, match=r"^run_recurring\(\) needs interval_s more than zero"):
        rec.ctx.run_recurring(0, lambda: None)
    with pytest.raises(TypeError, match=r"^run_recurring\(\) needs a number of seconds"):
        rec.ctx.run_recurring("1", lambda: None)


def test_an_unknown_backend_name_is_refused():
    with pytest.raises(ValueError, match=r"^unknown backend 'tokio': use one of 'selectors'"):
        Engine(backend="tokio")


def test_sending_to_an_id_that_is_not_a_string_is_refused(engine):
    with pytest.raises(TypeError, match=r"^send\(\) needs a str actor id"):
        engine.send(42, "x")


def test_sending_to_an_unhashable_id_is_refused_with_the_same_advice(engine):
    with pytest.raises(TypeError, match=r"^send\(\) needs a str actor id, not \['x'\]"):
        engine.send(["x"], "x")


def test_an_actor_sending_to_an_unhashable_id_gets_the_same_advice(engine):
    error = raised_in_receive(engine, lambda ctx: ctx.send({"x": 1}, "x"))

    assert isinstance(error, TypeError)
    assert str(error) == "send() needs a str actor id, not {'x': 1}"


def test_running_an_engine_inside_its_own_run_is_refused(engine):
    errors = []

    class Nested:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            try:
                self.ctx.engine.run()
            except RuntimeError as exc:
                errors.append(str(exc))

    engine.spawn_actor(Nested, id="n")
    engine.send("n", "go")
    engine.run()

    assert errors and errors[0].startswith("the engine is already running")
