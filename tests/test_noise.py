"""Logging that shows problems instead of hiding them (issues 11 and 12).

A failing actor logs its first failure with the traceback, then a count; the
first dead letter to an unknown id is a WARNING, repeats are counted; records
about an actor carry its id as ``record.actor_id``.
"""

import logging

import pytest
from conftest import Recorder


class Buggy:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        raise ValueError(f"bug on {envelope.message}")


def backstage_records(caplog, level=logging.DEBUG):
    return [r for r in caplog.records if r.name == "backstage" and r.levelno >= level]


def test_a_failing_actor_logs_its_first_failure_with_a_traceback_and_then_a_count(
        engine, caplog):
    engine.spawn_actor(Buggy, "buggy")
    for n in range(100):
        engine.send("buggy", n)

    with caplog.at_level(logging.INFO, logger="backstage"):
        engine.run()
        engine.close()

    failures = [r for r in backstage_records(caplog, logging.WARNING)
                if "'buggy'" in r.getMessage()]
    with_traceback = [r for r in failures if r.exc_info]
    assert len(with_traceback) == 1
    assert "bug on 0" in str(with_traceback[0].exc_info[1])
    assert any("99 more failures" in r.getMessage() for r in failures), \
        [r.getMessage() for r in failures]
    assert len(failures) <= 3


def test_the_first_dead_letter_to_an_unknown_id_is_a_warning_and_repeats_are_counted(
        engine, caplog):
    with caplog.at_level(logging.INFO, logger="backstage"):
        for n in range(50):
            engine.send("tpyo", n)
        engine.send("other", "x")
        engine.run()

    warnings = [r.getMessage() for r in backstage_records(caplog, logging.WARNING)]
    assert len([m for m in warnings if "'tpyo'" in m]) == 1
    assert len([m for m in warnings if "'other'" in m]) == 1
    assert len(backstage_records(caplog)) == 2
    assert engine.dead_letter_count == 51


def test_records_about_an_actor_carry_its_id_as_a_record_attribute(engine, caplog):
    engine.spawn_actor(Buggy, "buggy")
    engine.send("buggy", 1)
    engine.send("nobody", 1)

    with caplog.at_level(logging.INFO, logger="backstage"):
        engine.run()

    ids = {getattr(r, "actor_id", None) for r in backstage_records(caplog)}
    assert ids == {"buggy", "nobody"}


def test_the_library_logger_has_a_null_handler_and_no_other():
    handlers = logging.getLogger("backstage").handlers

    assert [type(h) for h in handlers] == [logging.NullHandler]


def test_spawning_an_id_again_with_the_same_class_returns_the_existing_actor(engine):
    first = engine.spawn_actor(Recorder, "a")

    assert engine.spawn_actor(Recorder, "a") is first


def test_spawning_an_id_again_with_another_class_raises(engine):
    class Other(Recorder):
        pass

    engine.spawn_actor(Recorder, "a")

    with pytest.raises(TypeError, match=r"^spawn_actor\(\) found 'a' taken by an actor of "
                                        r"class Recorder, not Other"):
        engine.spawn_actor(Other, "a")
