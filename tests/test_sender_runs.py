"""Who sent each message, when plain sends are queued without their tuple.

A plain send (``ctx.send``, ``Engine.send``) whose message is not a tuple
goes into a plain inbox bare when the item before it is the same sender's
plain send: its sender is that of the nearest plain send before it.  These
tests interleave senders in runs of every length around the batch size
(ACTOR_BATCH) and the compaction point (_COMPACT_AFTER), with tuple
messages, publications and asks in between, and check the sender of every
message that receive sees, that becomes a dead letter, or that a routee or
a bounded inbox gets.  Each fails if one message is attributed to the
wrong sender.
"""

import random
import threading

import pytest

import backstage
from backstage import ACTOR_BATCH, Directive, MessageType, OneForOne

PRODUCERS = ["p0", "p1", "p2"]
RUNS = [1, 2, 3, ACTOR_BATCH - 1, ACTOR_BATCH, ACTOR_BATCH + 1, 2 * ACTOR_BATCH + 5]
LONG = backstage._COMPACT_AFTER + 300
ENTRIES = ["send", "send", "send", "engine_send", "publish", "ask", "engine_ask"]


class Producer:
    """A sender: the tests call its ctx.send, publish and ask."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        pass


class Probe:
    """Logs (sender_id, type, message, asked) of each message to a list that
    outlives a restart; fails on ``fail_on``, posts ``kicks[m]`` on m."""

    def __init__(self, ctx, log, fail_on=None, kicks=None, engine=None):
        self.ctx = ctx
        self.log = log
        self.fail_on = fail_on or {}
        self.kicks = kicks or {}
        self.engine = engine
        for producer in PRODUCERS:
            ctx.subscribe_to_actor(producer)

    def receive(self, envelope):
        try:
            envelope.reply(("re", envelope.message))
            asked = True
        except RuntimeError:
            asked = False
        message = envelope.message
        self.log.append((envelope.sender_id, envelope.message_type, message, asked))
        key = message if isinstance(message, int) else None
        if key in self.kicks:
            _post_all(self.engine, self.kicks.pop(key), [])
        if key in self.fail_on:
            raise self.fail_on.pop(key)


def _message(rng, n):
    """A message unique by ``n``: an int, or a tuple or list that looks like a
    queued item or like nothing special."""
    shape = rng.randrange(8)
    if shape == 0:
        return (None, n, None)
    if shape == 1:
        return ("p0", n, None)
    if shape == 2:
        return ("t", n)
    return n


def _ops(seed, runs=12, long_runs=1):
    """(entry, sender, message) in runs of one entry and sender."""
    rng = random.Random(seed)
    ops = []
    lengths = [rng.choice(RUNS) for _ in range(runs)] + [LONG] * long_runs
    rng.shuffle(lengths)
    for length in lengths:
        entry = rng.choice(ENTRIES)
        sender = None if entry.startswith("engine") else rng.choice(PRODUCERS)
        for _ in range(length):
            ops.append((entry, sender, _message(rng, len(ops))))
    return ops


def _expected(op):
    entry, sender, message = op
    kind = MessageType.PUBLISH if entry == "publish" else MessageType.SEND
    return (sender, kind, message, entry.endswith("ask"))


def _post_all(engine, ops, asks):
    for entry, sender, message in ops:
        ctx = engine.get_actor(sender).ctx if sender is not None else None
        if entry == "send":
            ctx.send("probe", message)
        elif entry == "engine_send":
            engine.send("probe", message)
        elif entry == "publish":
            ctx.publish(message)
        elif entry == "ask":
            asks.append(ctx.ask("probe", message))
        else:
            asks.append(engine.ask("probe", message))


def _spawn(engine, log, **kwargs):
    for producer in PRODUCERS:
        engine.spawn_actor(Producer, id=producer)
    return engine.spawn_actor(Probe, "probe", log, engine=engine, **kwargs)


def _number(message):
    return message if isinstance(message, int) else message[1]


@pytest.mark.parametrize("where", ["engine", "other"], ids=["engine-thread", "other-thread"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_interleaved_senders_keep_their_ids_across_batches_and_compaction(engine, seed, where):
    log = []
    _spawn(engine, log)
    ops = _ops(seed)
    asks = []

    if where == "engine":
        _post_all(engine, ops, asks)
    else:
        thread = threading.Thread(target=_post_all, args=(engine, ops, asks))
        thread.start()
        thread.join(60)
    engine.run()

    assert log == [_expected(op) for op in ops]
    assert all(ask.result(0)[0] == "re" for ask in asks)


def test_runs_sent_while_the_receiver_drains_its_batch_keep_their_senders(engine):
    # A message of the first runs makes the receiver post more runs into its
    # own inbox, in the middle of a batch, and after its inbox list was swapped.
    log = []
    first = _ops(4, runs=6, long_runs=0)
    later = [[(e, s, m + 100_000 * (k + 1) if isinstance(m, int) else m) for e, s, m in
              _ops(10 + k, runs=3, long_runs=0)] for k in range(3)]
    kicks = {first[i][2]: later[k] for k, i in enumerate((0, ACTOR_BATCH + 3, len(first) - 1))
             if isinstance(first[i][2], int)}
    _spawn(engine, log, kicks=dict(kicks))

    _post_all(engine, first, [])
    engine.run()

    expected = [_expected(op) for op in first]
    for key in sorted(kicks, key=lambda m: [op[2] for op in first].index(m)):
        expected += [_expected(op) for op in kicks[key]]
    assert log == expected


def test_a_failure_mid_batch_with_a_restart_keeps_every_later_sender(backend):
    log = []
    ops = _ops(5)
    failing = [op for op in ops[ACTOR_BATCH // 2::ACTOR_BATCH // 3] if isinstance(op[2], int)]
    fail_on = {op[2]: ValueError(f"fails on {op[2]}") for op in failing}
    engine = backstage.Engine(backend=backend, supervisor=OneForOne(max_restarts=10_000,
                                                                    within_s=60))
    try:
        _spawn(engine, log, fail_on=fail_on)

        _post_all(engine, ops, [])
        engine.run()

        assert log == [_expected(op) for op in ops]
        assert [(d.envelope.sender_id, d.envelope.message) for d in engine.dead_letters] == \
            [(op[1], op[2]) for op in failing]
    finally:
        engine.close()


@pytest.mark.parametrize("how", ["failure", "poison_pill"])
def test_what_is_queued_when_the_actor_stops_is_dead_letters_with_their_senders(backend, how):
    log = []
    ops = [op for op in _ops(6) if not op[0].endswith("ask")]
    at = next(i for i in range(ACTOR_BATCH + 7, len(ops)) if isinstance(ops[i][2], int)
              and ops[i - 1][0] == ops[i][0] and ops[i][0] == "send")
    engine = backstage.Engine(backend=backend, dead_letters_kept=100_000,
                              supervisor=OneForOne(decider=lambda exc: Directive.STOP))
    try:
        if how == "failure":
            _spawn(engine, log, fail_on={ops[at][2]: ValueError("stop here")})
            _post_all(engine, ops, [])
            handled, dead = ops[:at + 1], ops[at:]
        else:
            _spawn(engine, log)
            _post_all(engine, ops[:at], [])
            engine.poison_pill("probe")
            _post_all(engine, ops[at:], [])
            handled, dead = ops[:at], ops[at:]
        engine.run()

        assert log == [_expected(op) for op in handled]
        assert [(d.envelope.sender_id, d.envelope.message) for d in engine.dead_letters] == \
            [(op[1], op[2]) for op in dead]
    finally:
        engine.close()


def test_an_interrupt_mid_batch_puts_the_rest_back_with_its_senders(engine):
    log = []
    ops = [op for op in _ops(7) if not op[0].endswith("ask")]
    at = next(i for i in range(ACTOR_BATCH // 2, len(ops)) if isinstance(ops[i][2], int)
              and ops[i][0] == "send" and ops[i + 1][0] == "send")
    _spawn(engine, log, fail_on={ops[at][2]: KeyboardInterrupt()})
    _post_all(engine, ops, [])

    with pytest.raises(KeyboardInterrupt):
        engine.run()
    engine.run()

    assert log == [_expected(op) for op in ops]


class Stasher:
    """Stashes each "s"-tagged message the first time, unstashes all on "u"."""

    def __init__(self, ctx, log):
        self.ctx = ctx
        self.log = log
        self.stashed = set()

    def receive(self, envelope):
        message = envelope.message
        self.log.append((envelope.sender_id, message))
        if isinstance(message, tuple) and message[0] == "s" and message not in self.stashed:
            self.stashed.add(message)
            self.ctx.stash(envelope)
        elif message == ("u",):
            self.ctx.unstash_all()


def test_unstashed_messages_and_the_bare_runs_after_them_keep_their_senders(engine):
    rng = random.Random(8)
    ops = []
    for _ in range(40):
        sender = rng.choice(PRODUCERS + [None])
        for _k in range(rng.choice(RUNS[:4] + [40])):
            kind = rng.randrange(12)
            ops.append((sender, ("s", len(ops)) if kind == 0 else ("u",) if kind == 1
                        else len(ops)))
    for producer in PRODUCERS:
        engine.spawn_actor(Producer, id=producer)
    log = []
    engine.spawn_actor(Stasher, "probe", log)

    for sender, message in ops:
        if sender is None:
            engine.send("probe", message)
        else:
            engine.get_actor(sender).ctx.send("probe", message)
    engine.run()

    # The reference: an unstash puts the stash back right after the message.
    queue, stash, stashed, expected = list(ops), [], set(), []
    while queue:
        sender, message = queue.pop(0)
        expected.append((sender, message))
        if isinstance(message, tuple) and message[0] == "s" and message not in stashed:
            stashed.add(message)
            stash.append((sender, message))
        elif message == ("u",):
            queue[:0], stash = stash, []
    assert log == expected


class Routee:
    seen = None

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        Routee.seen.append((envelope.sender_id, envelope.message))


@pytest.mark.parametrize("routing", ["round_robin", "least_loaded", "broadcast"])
def test_a_pools_routees_get_the_sender_of_each_message(engine, routing):
    Routee.seen = []
    for producer in PRODUCERS:
        engine.spawn_actor(Producer, id=producer)
    engine.spawn_pool(Routee, "probe", 3, routing=routing)
    ops = [op for op in _ops(9, runs=10, long_runs=0) if op[0] in ("send", "engine_send")]

    _post_all(engine, ops, [])
    engine.run()

    copies = 3 if routing == "broadcast" else 1
    assert sorted(Routee.seen, key=lambda s: _number(s[1])) == \
        [(s, m) for _, s, m in ops for _ in range(copies)]


@pytest.mark.parametrize("overflow", ["drop", "drop_oldest"])
def test_a_bounded_inbox_keeps_the_sender_of_each_message_it_takes_or_drops(backend, overflow):
    engine = backstage.Engine(backend=backend, dead_letters_kept=100_000)
    log = []
    for producer in PRODUCERS:
        engine.spawn_actor(Producer, id=producer)
    engine.spawn_actor(Probe, "bounded", log, capacity=8, overflow=overflow)
    ops = [op for op in _ops(11, runs=10, long_runs=0) if op[0] in ("send", "engine_send")]

    for _, sender, message in ops:
        if sender is None:
            engine.send("bounded", message)
        else:
            engine.get_actor(sender).ctx.send("bounded", message)
    engine.run()

    got = [(s, m) for s, _, m, _ in log] + \
        [(d.envelope.sender_id, d.envelope.message) for d in engine.dead_letters]
    engine.close()
    assert sorted(got, key=lambda s: _number(s[1])) == [(s, m) for _, s, m in ops]


def test_an_unstash_at_the_end_of_a_batch_leaves_the_next_bare_message_its_sender(engine):
    # "u" is the batch's last message; the next, queued bare after p0's
    # plain send, now follows p1's stashed message.
    for producer in PRODUCERS:
        engine.spawn_actor(Producer, id=producer)
    log = []
    engine.spawn_actor(Stasher, "probe", log)
    p0, p1 = engine.get_actor("p0").ctx, engine.get_actor("p1").ctx
    ops = [(p1, ("s", 0))] + [(p0, i) for i in range(1, ACTOR_BATCH - 1)] + \
        [(p0, ("u",))] + [(p0, i) for i in range(ACTOR_BATCH, ACTOR_BATCH + 5)]

    for ctx, message in ops:
        ctx.send("probe", message)
    engine.run()

    expected = [(ctx.actor_id, m) for ctx, m in ops]
    expected.insert(ACTOR_BATCH, ("p1", ("s", 0)))
    assert log == expected


class Relay:
    """On a message from p1: p0 sends two, the relay forwards p1's message, p0
    sends one more, and the transport seam hands over one of p2's."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        p0 = self.ctx.engine.get_actor("p0").ctx
        p0.send("probe", 1)
        p0.send("probe", 2)
        self.ctx.forward("probe", envelope)
        p0.send("probe", 3)
        self.ctx.engine._deliver_remote("probe", [("p2", 4, None)])
        p0.send("probe", 5)


def test_a_forwarded_or_remote_message_between_two_of_a_senders_keeps_both_senders(engine):
    log = []
    _spawn(engine, log)
    engine.spawn_actor(Relay, id="relay")

    engine.get_actor("p1").ctx.send("relay", "m")
    engine.run()

    assert [(s, m) for s, _, m, _ in log] == \
        [("p0", 1), ("p0", 2), ("p1", "m"), ("p0", 3), ("p2", 4), ("p0", 5)]


class Escalating:
    """A parent whose children's failures go up to the top level, which stops it."""
    supervisor = OneForOne(decider=lambda exc: Directive.ESCALATE)

    def __init__(self, ctx, log, fail_on):
        self.ctx = ctx
        ctx.spawn_child_actor(Probe, "probe", log, fail_on=fail_on)

    def receive(self, envelope):
        pass


def test_a_batch_cut_short_by_a_parent_stopping_leaves_dead_letters_with_their_senders(backend):
    # The failure escalates: the parent stops, and with it the child, in the
    # middle of the child's batch.
    ops = [op for op in _ops(12) if not op[0].endswith("ask") and op[0] != "publish"]
    at = next(i for i in range(ACTOR_BATCH // 2, len(ops)) if isinstance(ops[i][2], int)
              and ops[i][0] == ops[i + 1][0] == "send" and ops[i][1] == ops[i + 1][1])
    engine = backstage.Engine(backend=backend, dead_letters_kept=100_000,
                              supervisor=OneForOne(decider=lambda exc: Directive.STOP))
    try:
        for producer in PRODUCERS:
            engine.spawn_actor(Producer, id=producer)
        log = []
        engine.spawn_actor(Escalating, "parent", log, {ops[at][2]: ValueError("up")})

        _post_all(engine, ops, [])
        engine.run()

        assert log == [_expected(op) for op in ops[:at + 1]]
        dead = [(d.envelope.sender_id, d.envelope.message) for d in engine.dead_letters]
        assert dead[0] == (ops[at][1], ops[at][2])
        assert sorted(dead[1:], key=lambda s: _number(s[1])) == \
            [(op[1], op[2]) for op in ops[at + 1:]]
    finally:
        engine.close()


def test_a_message_alone_in_an_inbox_after_a_drained_batch_keeps_its_sender(engine):
    # p0's third send finds the inbox of the first two drained: it must not
    # be queued as a continuation of them.
    log = []
    _spawn(engine, log)
    p0 = engine.get_actor("p0").ctx

    p0.send("probe", 1)
    p0.send("probe", 2)
    engine.run()
    p0.send("probe", 3)
    engine.run()
    engine.send("probe", 4)
    engine.send("probe", 5)
    engine.run()
    engine.send("probe", 6)
    engine.run()

    assert [(s, m) for s, _, m, _ in log] == \
        [("p0", 1), ("p0", 2), ("p0", 3), (None, 4), (None, 5), (None, 6)]


def test_the_last_message_of_a_long_run_left_alone_by_compaction_keeps_its_sender(engine):
    # The first batch end past _COMPACT_AFTER, plus one: compacting there
    # would leave one message of the run alone at the front of the inbox.
    end = (backstage._COMPACT_AFTER // ACTOR_BATCH + 1) * ACTOR_BATCH
    log = []
    _spawn(engine, log)
    p1 = engine.get_actor("p1").ctx

    for i in range(end + 1):
        p1.send("probe", i)
    engine.run()

    assert [(s, m) for s, _, m, _ in log] == [("p1", i) for i in range(end + 1)]


class RemoteRuns:
    """On a message from p1: p0 sends, a run of p2's arrives from another engine
    (one with a tuple message in it), p0 sends again, another run of p2's."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        p0 = self.ctx.engine.get_actor("p0").ctx
        p0.send("probe", 1)
        self.ctx.engine._deliver_remote_run("probe", "p2", [2, 3, 4])
        p0.send("probe", 5)
        p0.send("probe", 6)
        self.ctx.engine._deliver_remote_run("probe", "p2", [7, (8, "t"), 9])
        p0.send("probe", 10)


def test_a_run_from_another_engine_keeps_its_sender_between_local_sends(engine):
    log = []
    _spawn(engine, log)
    engine.spawn_actor(RemoteRuns, id="remote")

    engine.get_actor("p1").ctx.send("remote", "go")
    engine.run()

    assert [(s, m) for s, _, m, _ in log] == \
        [("p0", 1), ("p2", 2), ("p2", 3), ("p2", 4), ("p0", 5), ("p0", 6),
         ("p2", 7), ("p2", (8, "t")), ("p2", 9), ("p0", 10)]


def test_a_run_vouched_tuple_free_is_queued_as_it_came_without_a_look_at_its_messages(engine):
    # The transport's word is taken: a tuple in a vouched run is read as an
    # inbox item (here: from "p2", message "m"), which is why only runs of
    # classes that cannot arrive as tuples are vouched (ray_transport's
    # _KEEP_THEIR_CLASS).  Unvouched, it stays a message of "far".
    log = []
    _spawn(engine, log)
    engine._deliver_remote_run("probe", "far", [1, ("p2", "m", None)], no_tuples=True)
    engine._deliver_remote_run("probe", "far", [3, ("p2", "m", None)])
    engine.run()

    assert [(s, m) for s, _, m, _ in log] == [("far", 1), ("p2", "m"),
                                              ("far", 3), ("far", ("p2", "m", None))]


def test_a_run_from_another_engine_to_a_bounded_inbox_keeps_its_sender(engine):
    log = []
    _spawn(engine, log, capacity=8, overflow="drop")
    engine._deliver_remote_run("probe", "far", [1, 2, 3])
    engine.run()

    assert [(s, m) for s, _, m, _ in log] == [("far", 1), ("far", 2), ("far", 3)]


def test_a_run_from_another_engine_to_an_unknown_id_is_dead_letters_with_its_sender(engine):
    engine._deliver_remote_run("nobody", "far", [1, 2])
    engine.run()

    assert [(d.envelope.sender_id, d.envelope.message) for d in engine.dead_letters] == \
        [("far", 1), ("far", 2)]


def test_a_stand_ins_items_are_a_run_with_their_classes_only_with_no_tuple_after_the_first():
    # _run_classes, each case against the plain definition.
    def plain(items):
        first = items[0]
        if len(items) < 2 or type(first) is not tuple or first[2] is not None:
            return None
        rest = {type(m) for m in items[1:]}
        return None if tuple in rest else rest | {type(first[1])}

    cases = {
        "one class": [("p", 0, None), 1, 2, 3],
        "the first message another class": [("p", "zero", None), 1, 2],
        "the last another class": [("p", 0, None), 1, 2, "three"],
        "one in the middle another class": [("p", 0, None), 1, "two", 3],
        "alternating classes": [("p", 0, None)] + [i if i % 2 else str(i) for i in range(1, 9)],
        "a tuple in the middle": [("p", 0, None), 1, ("p", (2,), None), 3],
        "a tuple last": [("p", 0, None), 1, 2, ("q", 3, None)],
        "a tuple message first": [("p", (0,), None), 1, 2],
        "two items": [("p", 0, None), 1],
        "one item": [("p", 0, None)],
        "a tagged item first": [("p", 0, MessageType.SEND), 1],
        "bare only": [1, 2],
    }
    for name, items in cases.items():
        assert backstage._run_classes(items) == plain(items), name
    assert backstage._run_classes(cases["one class"]) == {int}
    assert backstage._run_classes(cases["a tuple in the middle"]) is None
