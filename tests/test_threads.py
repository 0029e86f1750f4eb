"""Other threads: sends, spawns, pills and stop while the engine runs."""

import threading

from conftest import Recorder, wait_for

from backstage import Engine


class PerSender:
    """Keeps, per sender tag, the sequence numbers it received."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.seen = {}
        self.thread = None
        self.count = 0
        self.expect = None
        self.all_in = threading.Event()

    def receive(self, envelope):
        self.thread = threading.get_ident()
        tag, seq = envelope.message
        self.seen.setdefault(tag, []).append(seq)
        self.count += 1
        if self.count == self.expect:
            self.all_in.set()


def _run_in_thread(engine):
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    return runner


def _produce_until_rec_stops(engine, runner, produce):
    """Runs ``produce`` (which ends with a poison pill for "rec") on a thread of its
    own, waits for the pill to stop rec, then stops the engine ``runner`` runs."""
    producer = threading.Thread(target=produce)
    producer.start()
    producer.join()
    wait_for(lambda: engine.get_actor("rec") is None, "the pill to stop rec")
    engine.stop()
    runner.join(10)


def test_concurrent_senders_lose_nothing_and_keep_each_senders_order(engine):
    sink = engine.spawn_actor(PerSender, id="sink")
    per_thread = 30_000
    sink.expect = 4 * per_thread
    runner = _run_in_thread(engine)
    go = threading.Barrier(4)

    def produce(tag):
        go.wait()
        for seq in range(per_thread):
            engine.send("sink", (tag, seq))

    producers = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    assert sink.all_in.wait(30), f"only {sink.count} of {sink.expect} arrived"
    engine.stop()
    runner.join(10)

    assert not runner.is_alive()
    assert sorted(sink.seen) == [0, 1, 2, 3]
    for tag in range(4):
        assert sink.seen[tag] == list(range(per_thread))


class _Flag:
    def __init__(self, ctx):
        self.event = None

    def receive(self, envelope):
        self.event.set()


def test_a_spawn_from_another_thread_runs_init_on_the_engine_thread(engine):
    class WhereAmI:
        def __init__(self, ctx):
            self.init_thread = threading.get_ident()

        def receive(self, envelope):
            pass

    main_thread = threading.get_ident()
    engine.spawn_actor(Recorder, id="keepalive")
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    try:
        result = {}
        spawner = threading.Thread(
            target=lambda: result.update(actor=engine.spawn_actor(WhereAmI, id="w")))
        spawner.start()
        spawner.join(10)
    finally:
        engine.stop()
        runner.join(10)

    assert result["actor"].init_thread == runner.ident
    assert result["actor"].init_thread != main_thread
    assert engine.get_actor("w") is result["actor"]


def test_stop_from_another_thread_ends_run_forever(engine):
    runner = _run_in_thread(engine)

    engine.stop()
    runner.join(10)

    assert not runner.is_alive()


def test_run_forever_waits_for_work_from_other_threads(engine):
    rec = engine.spawn_actor(PerSender, id="rec")
    got = threading.Event()
    engine.spawn_actor(_Flag, id="flag").event = got
    runner = _run_in_thread(engine)

    threading.Timer(0.05, lambda: (engine.send("rec", ("late", 1)),
                                   engine.send("flag", "x"))).start()

    assert got.wait(10)
    engine.stop()
    runner.join(10)
    assert rec.seen == {"late": [1]}
    assert rec.thread == runner.ident


def test_a_poison_pill_from_another_thread_comes_after_that_threads_sends(engine):
    rec = engine.spawn_actor(Recorder, id="rec")
    runner = _run_in_thread(engine)

    def produce():
        for i in range(1000):
            engine.send("rec", i)
        engine.poison_pill("rec")

    _produce_until_rec_stops(engine, runner, produce)

    assert rec.messages == list(range(1000))
    assert engine.get_actor("rec") is None


def test_sends_from_another_thread_before_run_are_delivered_by_run(engine):
    rec = engine.spawn_actor(Recorder, id="rec")

    t = threading.Thread(target=lambda: [engine.send("rec", i) for i in range(100)])
    t.start()
    t.join()
    engine.run()

    assert rec.messages == list(range(100))


def test_close_from_another_thread_stops_the_run_and_runs_deinit(backend):
    deinits = []

    class D(Recorder):
        def deinit(self):
            deinits.append(threading.get_ident())

    engine = Engine(backend=backend)
    engine.spawn_actor(D, id="d")
    runner = _run_in_thread(engine)

    engine.close()
    runner.join(10)

    assert not runner.is_alive()
    assert engine.closed
    assert deinits == [runner.ident]


def test_a_stop_that_lands_before_the_run_begins_still_ends_it(engine):
    engine.spawn_actor(Recorder, id="rec")
    engine.stop()

    runner = _run_in_thread(engine)
    runner.join(10)

    assert not runner.is_alive()


class Publisher:
    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        pass


def test_a_publish_from_another_thread_keeps_its_place_among_that_threads_sends(engine):
    # Sends and other calls from one thread share one queue to the engine thread
    # (sends as posts, a publish as a call): their order is kept.
    rec = engine.spawn_actor(Recorder, id="rec")
    engine.spawn_actor(Publisher, id="pub")
    pub_ctx = engine.get_actor("pub").ctx
    rec.ctx.subscribe_to_actor("pub")
    runner = _run_in_thread(engine)

    def produce():
        for i in range(300):
            engine.send("rec", i)
            if i % 3 == 0:
                pub_ctx.publish(("published", i))
            rec.ctx.send("rec", ("from rec", i))
        engine.poison_pill("rec")

    _produce_until_rec_stops(engine, runner, produce)

    expected = []
    for i in range(300):
        expected.append((None, i))
        if i % 3 == 0:
            expected.append(("pub", ("published", i)))
        expected.append(("rec", ("from rec", i)))
    assert [(e.sender_id, e.message) for e in rec.envelopes] == expected


def test_a_send_from_another_thread_to_an_id_with_no_actor_is_a_dead_letter(engine):
    runner = _run_in_thread(engine)
    sender = threading.Thread(target=lambda: engine.send("nobody", ("a", "tuple")))
    sender.start()
    sender.join()
    for _ in range(1000):
        if engine.dead_letter_count:
            break
        threading.Event().wait(0.01)
    engine.stop()
    runner.join(10)

    (letter,) = engine.dead_letters
    assert (letter.target_id, letter.envelope.sender_id, letter.envelope.message) == \
        ("nobody", None, ("a", "tuple"))


def test_the_engine_thread_is_its_makers_then_the_running_ones_and_nobodys_once_closed(backend):
    # Every call checks it with a mark the engine's thread holds (Engine._owner,
    # an RLock, for speed), not by comparing thread ids: the mark must move
    # with the thread that runs the engine, and go when it closes.
    def from_another_thread():
        seen = []
        t = threading.Thread(target=lambda: seen.append(engine._on_engine_thread()))
        t.start()
        t.join(10)
        return seen

    seen_in_run = []

    class Looks:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            seen_in_run.append((threading.get_ident(), self.ctx.engine._on_engine_thread()))

    engine = Engine(backend=backend)
    try:
        assert engine._on_engine_thread()
        assert from_another_thread() == [False]
        engine.spawn_actor(Looks, id="looks")
        runner = _run_in_thread(engine)
        engine.send("looks", "now")
        wait_for(lambda: seen_in_run, "the actor's turn")
        assert seen_in_run == [(runner.ident, True)]
        assert not engine._on_engine_thread()       # the maker's is not, while it runs
        engine.stop()
        runner.join(10)
        assert not engine._on_engine_thread()       # the last run's thread stays it
    finally:
        engine.close()
    assert not engine._on_engine_thread()
    assert from_another_thread() == [False]
