"""The speed tricks that lean on an interpreter's internals, checked on the version under test.

Envelope refill (see _exact_refcounts in backstage.py) reads sys.getrefcount;
it is on for CPython 3.11 to 3.13 with the GIL, and off anywhere else.
"""

import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

import backstage

REFILL_EXPECTED = (sys.implementation.name == "cpython" and (3, 11) <= sys.version_info < (3, 14)
                   and getattr(sys, "_is_gil_enabled", lambda: True)())


class IdRecorder:
    """Notes the id of each envelope it gets, and keeps none of them."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.ids = []

    def receive(self, envelope):
        self.ids.append(id(envelope))


def envelope_ids_of_one_batch(engine):
    recorder = engine.spawn_actor(IdRecorder, id="recorder")
    for n in range(5):
        engine.send("recorder", n)           # queued: the turn takes them as one batch
    engine.run()
    return recorder.ids


def test_the_refcount_probe_is_on_exactly_where_counts_are_exact():
    assert backstage._exact_refcounts() is REFILL_EXPECTED
    assert (backstage._refcount is sys.getrefcount) is REFILL_EXPECTED


@pytest.mark.skipif(not REFILL_EXPECTED, reason="refill is off on this interpreter")
def test_a_batch_refills_one_envelope_that_nobody_keeps(engine):
    # Without refill, each new envelope is made while the last one is still
    # held, so there would be at least two ids.
    ids = envelope_ids_of_one_batch(engine)

    assert len(ids) == 5
    assert len(set(ids)) == 1


def test_with_refill_off_every_delivery_gets_an_envelope_of_its_own(engine, monkeypatch):
    monkeypatch.setattr(backstage, "_refcount", lambda obj: 0)

    ids = envelope_ids_of_one_batch(engine)

    assert len(ids) == 5
    assert len(set(ids)) >= 2


def test_the_backstage_logger_says_when_refill_is_off():
    # sys.getrefcount made to lie, as on an interpreter whose counts are not exact.
    program = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        sys.getrefcount = lambda obj: 0
        sys.path.insert(0, {str(ROOT)!r})
        import backstage
        assert backstage._refcount is not sys.getrefcount
    """)

    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=60)

    assert out.returncode == 0, out.stderr
    assert "backstage: envelope refill is off on cpython" in out.stderr
