"""Every way into an inbox, against one reference.

The engine handles a message on one of several paths, some of them copies
kept for speed (see the essay at the top of backstage.py): the posting body
written out in Context.send and Engine.send, the one-message turn, and the
two batch loops (with and without Engine.send's bare messages), each with an
envelope-reuse check.  This test drives every entry point (Engine.send with
bare and tuple messages, Context.send, publish, ask from the engine and from
an actor, and a poison pill at the end), from the engine's thread and from
another thread, as one message per turn, a batch, a mixed batch and a turn
cut short by a blocking send, and checks that what ``receive`` sees equals
what the reference says it must.
"""

import threading

import pytest

from backstage import MessageType

ENTRIES = ["engine_send", "engine_send_tuple", "ctx_send", "publish", "engine_ask", "ctx_ask"]
SHAPES = ["one", "batch", "paused"]
PAUSE = ("PAUSE", ("PAUSE",))       # as sent bare, and as a tuple

# Messages that look like queued items, or like nothing special.
PAYLOADS = ["a", 1, None, ("s", "m", None), ("x",), (None, "m", None), [1, 2]]


class Driver:
    """The sender for the entry points that need an actor: ctx.send, publish, ctx.ask."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        pass


class Probe:
    """Records what receive sees; replies to asks; blocks on a full inbox at "PAUSE"."""

    def __init__(self, ctx, keep):
        self.ctx = ctx
        self.keep = keep
        self.seen = []
        self.kept = []
        self.sink_len_at = []
        self.sink = None
        ctx.subscribe_to_actor("driver")

    def receive(self, envelope):
        try:
            envelope.reply(("re", envelope.message))
            asked = True
        except RuntimeError:
            asked = False
        self.seen.append((envelope.sender_id, envelope.message_type, envelope.message,
                          envelope.topic, asked))
        self.sink_len_at.append(len(self.sink.messages))
        if self.keep:
            self.kept.append(envelope)
        if envelope.message in PAUSE:
            # The sink holds one: the second send waits, and the turn is cut short.
            self.ctx.send("sink", "x1")
            self.ctx.send("sink", "x2")


class Sink:
    def __init__(self, ctx):
        self.ctx = ctx
        self.messages = []

    def receive(self, envelope):
        self.messages.append(envelope.message)


def _reference(entry, message):
    """What receive must see for ``message`` sent through ``entry``."""
    return {
        "engine_send": (None, MessageType.SEND, message, None, False),
        "engine_send_tuple": (None, MessageType.SEND, message, None, False),
        "ctx_send": ("driver", MessageType.SEND, message, None, False),
        "publish": ("driver", MessageType.PUBLISH, message, "default", False),
        "engine_ask": (None, MessageType.SEND, message, None, True),
        "ctx_ask": ("driver", MessageType.SEND, message, None, True),
    }[entry]


def _post(engine, driver, entry, message, asks):
    if entry == "engine_send":
        engine.send("probe", message)
    elif entry == "engine_send_tuple":
        engine.send("probe", message if isinstance(message, tuple) else (message,))
    elif entry == "ctx_send":
        driver.ctx.send("probe", message)
    elif entry == "publish":
        driver.ctx.publish(message)
    elif entry == "engine_ask":
        asks.append((engine.ask("probe", message), message))
    elif entry == "ctx_ask":
        asks.append((driver.ctx.ask("probe", message), message))


def _ops(entry, shape):
    """(entry, message) pairs for one case: one entry point, or all of them mixed."""
    entries = ENTRIES if entry == "mixed" else [entry]
    ops = [(entries[i % len(entries)], m) for i, m in enumerate(PAYLOADS * 2)]
    if shape == "paused":
        ops.insert(len(ops) // 2, (entries[0], "PAUSE"))
    return [(e, m if e != "engine_send_tuple" or isinstance(m, tuple) else (m,))
            for e, m in ops]


def _in_thread(where, fn):
    if where == "engine":
        fn()
        return
    errors = []

    def run():
        try:
            fn()
        except BaseException as exc:     # pragma: no cover - shown by the assert
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive() and not errors, errors


@pytest.mark.parametrize("keep", [False, True], ids=["envelopes-dropped", "envelopes-kept"])
@pytest.mark.parametrize("where", ["engine", "other"], ids=["engine-thread", "other-thread"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("entry", ENTRIES + ["mixed"])
def test_receive_sees_what_the_reference_says_on_every_path(engine, entry, shape, where, keep):
    driver = engine.spawn_actor(Driver, id="driver")
    sink = engine.spawn_actor(Sink, id="sink", capacity=1, overflow="block")
    probe = engine.spawn_actor(_probe_class(keep), id="probe")
    probe.sink = sink
    ops = _ops(entry, shape)
    asks = []

    if shape == "one":
        for op_entry, message in ops:
            _in_thread(where, lambda e=op_entry, m=message: _post(engine, driver, e, m, asks))
            engine.run()
    else:
        _in_thread(where, lambda: [_post(engine, driver, e, m, asks) for e, m in ops])
    _in_thread(where, lambda: (engine.poison_pill("probe"), engine.send("probe", "after")))
    engine.run()

    assert probe.seen == [_reference(e, m) for e, m in ops]
    # Envelopes an actor kept are never refilled for a later message.
    assert [(k.sender_id, k.message_type, k.message, k.topic) for k in probe.kept] == \
        [_reference(e, m)[:4] for e, m in ops if keep]
    assert [f.result(0) for f, _ in asks] == [("re", m) for _, m in asks]
    assert engine.get_actor("probe") is None
    assert [d.envelope.message for d in engine.dead_letters] == ["after"]
    if shape == "paused":
        pause = next(i for i, (_, m) in enumerate(ops) if m in PAUSE)
        assert sink.messages == ["x1", "x2"]
        # The turn was cut at PAUSE: the sink had its turn before the next message.
        assert probe.sink_len_at[pause] == 0 and probe.sink_len_at[pause + 1] >= 1


def _probe_class(keep):
    class KeepingProbe(Probe):
        def __init__(self, ctx):
            super().__init__(ctx, keep)
    return KeepingProbe
