"""Pools: engine.spawn_pool(cls, id, size, *args, routing=..., **kwargs) and ctx.spawn_pool."""

import threading

import pytest
from conftest import Recorder, flooding, send_until_in

from backstage import (
    ActorNotFound,
    AllForOne,
    Directive,
    Engine,
    InboxFull,
    MethodCall,
    OneForOne,
    Pool,
    Terminated,
)


class Worker:
    def __init__(self, ctx, tag="w"):
        self.ctx = ctx
        self.tag = tag
        self.seen = []

    def receive(self, envelope):
        message = envelope.message
        if message == "boom":
            raise RuntimeError("boom")
        self.seen.append(message)
        if asked(envelope):
            envelope.reply((self.ctx.actor_id, message))

    def whoami(self):
        return self.ctx.actor_id

    def echo_id(self, key):
        return self.ctx.actor_id

    def explode(self):
        raise KeyError("from a method")


def asked(envelope):
    """True for an asked message (one that takes a reply)."""
    return getattr(envelope, "_reply", None) is not None


def seen_by(engine, pool):
    return {rid: engine.get_actor(rid).seen for rid in pool.routees}


def test_spawn_pool_makes_a_router_and_size_routees_with_the_constructor_arguments(engine):
    pool = engine.spawn_pool(Worker, "workers", 3, "job", capacity=16)

    assert isinstance(pool, Pool)
    assert engine.get_actor("workers") is pool
    assert pool.id == "workers"
    assert pool.size == 3
    assert pool.routees == ["workers/0", "workers/1", "workers/2"]
    for rid in pool.routees:
        routee = engine.get_actor(rid)
        assert isinstance(routee, Worker)
        assert routee.tag == "job"
        assert routee.ctx.parent == "workers"
        assert routee.ctx.capacity == 16
    assert engine.get_context("workers").children == pool.routees


def test_round_robin_spreads_messages_evenly_in_turn(engine):
    pool = engine.spawn_pool(Worker, "p", 3)

    for i in range(7):
        engine.send("p", i)
    engine.run()

    assert seen_by(engine, pool) == {"p/0": [0, 3, 6], "p/1": [1, 4], "p/2": [2, 5]}


def test_round_robin_is_the_default_routing(engine):
    pool = engine.spawn_pool(Worker, "p", 2)

    assert pool.routing == "round_robin"


def test_a_routee_sees_the_original_sender_not_the_router(engine):
    class Sender:
        def __init__(self, ctx):
            self.ctx = ctx
            ctx.send("p", "hello")

        def receive(self, envelope):
            pass

    class Keeper(Worker):
        def receive(self, envelope):
            self.seen.append(envelope.sender_id)

    pool = engine.spawn_pool(Keeper, "p", 2)
    engine.spawn_actor(Sender, "sender")
    engine.run()

    assert engine.get_actor(pool.routees[0]).seen == ["sender"]


def test_least_loaded_sends_to_the_routee_with_the_shortest_inbox(engine):
    pool = engine.spawn_pool(Worker, "p", 3, routing="least_loaded")
    for i in range(4):
        engine.send("p/0", f"direct {i}")
    engine.send("p/1", "direct")

    for i in range(3):
        engine.send("p", i)
    engine.run()

    seen = seen_by(engine, pool)
    assert seen["p/0"] == ["direct 0", "direct 1", "direct 2", "direct 3"]
    assert sorted(seen["p/1"] + seen["p/2"], key=str) == [0, 1, 2, "direct"]
    assert seen["p/2"][0] == 0          # the only empty inbox when it was sent


def test_broadcast_gives_every_routee_every_message(engine):
    pool = engine.spawn_pool(Worker, "p", 3, routing="broadcast")

    engine.send("p", "a")
    engine.send("p", "b")
    engine.run()

    assert seen_by(engine, pool) == {"p/0": ["a", "b"], "p/1": ["a", "b"], "p/2": ["a", "b"]}


def test_a_broadcast_ask_answers_with_every_routees_reply_in_routee_order(engine):
    engine.spawn_pool(Worker, "p", 3, routing="broadcast")

    future = engine.ask("p", "ping")
    engine.run()

    assert future.result() == [("p/0", "ping"), ("p/1", "ping"), ("p/2", "ping")]


def test_a_broadcast_ask_fails_when_a_routee_fails(engine):
    class Picky(Worker):
        def receive(self, envelope):
            if self.ctx.actor_id == "p/1":
                raise ValueError("p/1 refuses")
            envelope.reply("ok")

    engine.spawn_pool(Picky, "p", 3, routing="broadcast")

    future = engine.ask("p", "ping")
    engine.run()

    with pytest.raises(ValueError, match=r"^p/1 refuses$"):
        future.result()


def test_consistent_hash_sends_equal_keys_to_the_same_routee(engine):
    pool = engine.spawn_pool(Worker, "p", 4, routing="consistent_hash",
                             hash_key=lambda message: message[0])

    for user in ("ann", "bob", "cyd", "dee", "eve", "fay") * 3:
        engine.send("p", (user, "event"))
    engine.run()

    owners = {}
    for rid, seen in seen_by(engine, pool).items():
        for user, _ in seen:
            owners.setdefault(user, set()).add(rid)
    assert all(len(routees) == 1 for routees in owners.values())
    assert len(owners) == 6


def test_consistent_hash_spreads_many_keys_over_every_routee(engine):
    pool = engine.spawn_pool(Worker, "p", 4, routing="consistent_hash", hash_key=lambda m: m)

    for key in range(400):
        engine.send("p", key)
    engine.run()

    assert all(len(seen) > 20 for seen in seen_by(engine, pool).values())


def test_growing_a_consistent_hash_pool_moves_keys_only_to_the_new_routee(engine):
    pool = engine.spawn_pool(Worker, "p", 4, routing="consistent_hash", hash_key=lambda m: m)
    for key in range(200):
        engine.send("p", key)
    engine.run()
    before = {key: rid for rid, seen in seen_by(engine, pool).items() for key in seen}

    pool.resize(5)
    for rid in pool.routees:
        engine.get_actor(rid).seen.clear()
    for key in range(200):
        engine.send("p", key)
    engine.run()
    after = {key: rid for rid, seen in seen_by(engine, pool).items() for key in seen}

    new = (set(pool.routees) - set(before.values())).pop()
    moved = {key for key in after if after[key] != before[key]}
    assert moved and all(after[key] == new for key in moved)


def test_asks_to_a_pool_are_answered_by_one_routee_each(engine):
    engine.spawn_pool(Worker, "p", 2)

    futures = [engine.ask("p", i) for i in range(4)]
    engine.run()

    assert [f.result() for f in futures] == [("p/0", 0), ("p/1", 1), ("p/0", 2), ("p/1", 3)]


def test_proxy_calls_to_a_pool_go_to_its_routees(engine):
    engine.spawn_pool(Worker, "p", 3)
    proxy = engine.proxy("p")

    futures = [proxy.whoami() for _ in range(4)]
    engine.run()

    assert [f.result() for f in futures] == ["p/0", "p/1", "p/2", "p/0"]


def test_a_proxy_of_a_pool_checks_method_names_against_the_routee_class(engine):
    engine.spawn_pool(Worker, "p", 2)

    with pytest.raises(AttributeError, match=r"^Worker has no method 'whoarewe'"):
        engine.proxy("p").whoarewe()


def test_a_failing_proxied_call_on_a_routee_fails_its_future_only(engine):
    engine.spawn_pool(Worker, "p", 2)

    future = engine.proxy("p").explode()
    engine.run()

    with pytest.raises(KeyError, match=r"from a method"):
        future.result()
    assert engine.restart_count == 0


def test_a_failed_routee_is_restarted_in_place_by_default(engine):
    pool = engine.spawn_pool(Worker, "p", 2, "tagged")
    first = engine.get_actor("p/0")

    engine.send("p", "boom")            # to p/0
    engine.send("p", "x")               # to p/1
    engine.send("p", "y")               # to p/0, restarted
    engine.run()

    assert engine.restart_count == 1
    assert pool.routees == ["p/0", "p/1"]
    restarted = engine.get_actor("p/0")
    assert restarted is not first and restarted.tag == "tagged"
    assert restarted.seen == ["y"]
    [dead] = engine.dead_letters
    assert dead.envelope.message == "boom"


def test_an_ask_to_a_routee_that_fails_fails_with_its_exception(engine):
    engine.spawn_pool(Worker, "p", 2)

    future = engine.ask("p", "boom")
    engine.run()

    with pytest.raises(RuntimeError, match=r"^boom$"):
        future.result()


def test_a_stopped_routee_is_replaced_and_its_queued_messages_are_dead_letters(engine):
    # The supervisor stops the failed routee instead of restarting it; the
    # pool then puts a fresh routee under the same id, so it keeps its size.
    pool = engine.spawn_pool(Worker, "p", 2,
                             supervisor=OneForOne(decider=lambda exc: Directive.STOP))
    first = engine.get_actor("p/0")

    engine.send("p/0", "boom")
    engine.send("p/0", "queued behind the failure")
    engine.run()

    assert pool.routees == ["p/0", "p/1"]
    replacement = engine.get_actor("p/0")
    assert replacement is not first and replacement.seen == []
    assert engine.restart_count == 0
    assert sorted(d.envelope.message for d in engine.dead_letters) == \
        ["boom", "queued behind the failure"]
    engine.send("p", "a")
    engine.send("p", "b")
    engine.run()
    assert sorted(m for seen in seen_by(engine, pool).values() for m in seen) == ["a", "b"]


def test_a_routee_that_keeps_failing_is_replaced_only_as_often_as_the_supervisor_allows(engine):
    # Every instance fails in its first receive, and the supervisor stops it:
    # the pool replaces it max_restarts times within within_s, then gives up.
    class Doomed(Worker):
        def receive(self, envelope):
            raise RuntimeError("doomed")

    pool = engine.spawn_pool(Doomed, "p", 1, supervisor=OneForOne(
        max_restarts=2, within_s=60, decider=lambda exc: Directive.STOP))

    for i in range(5):
        engine.send("p", i)
        engine.run()

    assert pool.routees == []
    assert engine.dead_letter_count == 5


def test_every_message_to_a_pool_is_handled_or_a_dead_letter(engine):
    class Flaky(Worker):
        def receive(self, envelope):
            if envelope.message % 7 == 0:
                raise RuntimeError("unlucky")
            self.tag.append(envelope.message)     # survives restarts: the list is shared

    handled = []
    engine.spawn_pool(Flaky, "p", 4, handled,
                      supervisor=OneForOne(max_restarts=1000, within_s=60))

    for i in range(1, 701):
        engine.send("p", i)
    engine.run()

    assert len(handled) + engine.dead_letter_count == 700
    assert len(set(handled)) == 600
    assert engine.dead_letter_count == 100


def test_resize_grows_the_pool_and_new_routees_get_messages(engine):
    pool = engine.spawn_pool(Worker, "p", 2, "grown")

    pool.resize(4)
    for i in range(4):
        engine.send("p", i)
    engine.run()

    assert pool.size == 4
    assert len(pool.routees) == 4
    assert all(len(seen) == 1 for seen in seen_by(engine, pool).values())
    assert all(engine.get_actor(rid).tag == "grown" for rid in pool.routees)


def test_resize_shrinks_after_the_removed_routees_handle_what_they_had(engine):
    pool = engine.spawn_pool(Worker, "p", 4)
    removed = [engine.get_actor(rid) for rid in pool.routees[2:]]
    for i in range(8):
        engine.send("p", i)

    pool.resize(2)
    for i in range(8, 12):
        engine.send("p", i)
    engine.run()

    assert pool.size == 2
    assert pool.routees == ["p/0", "p/1"]
    assert [r.seen for r in removed] == [[2, 6], [3, 7]]
    assert engine.get_actor("p/2") is None
    assert engine.dead_letter_count == 0
    kept = seen_by(engine, pool)
    assert kept == {"p/0": [0, 4, 8, 10], "p/1": [1, 5, 9, 11]}


def test_resize_from_another_thread_while_the_engine_runs(engine):
    pool = engine.spawn_pool(Worker, "p", 1)
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    try:
        pool.resize(3)
        answers = {engine.ask("p", i).result(timeout=10)[0] for i in range(3)}
    finally:
        engine.stop()
        runner.join(10)

    assert answers == {"p/0", "p/1", "p/2"}


def test_resize_rejects_a_size_below_one(engine):
    pool = engine.spawn_pool(Worker, "p", 2)

    with pytest.raises(ValueError, match=r"^resize\(\) needs a size of at least 1, got 0"):
        pool.resize(0)


def test_a_poison_pill_stops_the_pool_after_the_routees_handle_what_was_sent_before(engine):
    pool = engine.spawn_pool(Worker, "p", 2)
    routees = [engine.get_actor(rid) for rid in pool.routees]
    watcher = engine.spawn_actor(Recorder, "watcher")
    watcher.ctx.monitor("p")

    for i in range(4):
        engine.send("p", i)
    engine.poison_pill("p")
    engine.send("p", "too late")
    engine.run()

    assert [r.seen for r in routees] == [[0, 2], [1, 3]]
    assert engine.get_actor("p") is None
    assert engine.get_actor("p/0") is None and engine.get_actor("p/1") is None
    [dead] = engine.dead_letters
    assert dead.envelope.message == "too late"
    [notice] = watcher.messages
    assert isinstance(notice, Terminated) and notice.actor_id == "p"


def test_an_ask_to_a_stopped_pool_fails(engine):
    engine.spawn_pool(Worker, "p", 2)
    engine.poison_pill("p")
    engine.run()

    future = engine.ask("p", 1)

    with pytest.raises(ActorNotFound):
        future.result()


def test_ctx_spawn_pool_makes_a_pool_that_stops_with_its_parent(engine):
    class Boss:
        def __init__(self, ctx):
            self.ctx = ctx
            self.pool = ctx.spawn_pool(Worker, "crew", 2, "crewman")

        def receive(self, envelope):
            self.ctx.send("crew", envelope.message)

    boss = engine.spawn_actor(Boss, "boss")
    engine.send("boss", "dig")
    engine.run()

    assert engine.get_context("crew").parent == "boss"
    assert engine.get_actor("crew/0").seen == ["dig"]
    engine.poison_pill("boss")
    engine.run()
    assert engine.get_actor("crew") is None and engine.get_actor("crew/0") is None
    assert boss.pool.routees == []


def test_spawn_pool_with_a_taken_id_returns_the_existing_pool(engine):
    pool = engine.spawn_pool(Worker, "p", 2)

    assert engine.spawn_pool(Worker, "p", 5) is pool
    assert pool.size == 2


def test_sends_from_other_threads_to_a_pool_are_routed_and_none_is_lost(engine):
    class Tally(Worker):
        def receive(self, envelope):
            self.seen.append(envelope.message)
            if asked(envelope):
                envelope.reply(None)

    pool = engine.spawn_pool(Tally, "p", 4)
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    try:
        def client(base):
            for i in range(500):
                engine.send("p", (base, i))

        threads = [threading.Thread(target=client, args=(t,)) for t in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        engine.ask("p/0", "sync").result(timeout=10)
    finally:
        engine.stop()
        runner.join(10)
    engine.run()

    got = [m for seen in seen_by(engine, pool).values() for m in seen if m != "sync"]
    assert sorted(got) == sorted((t, i) for t in range(3) for i in range(500))
    for t in range(3):          # each sender's order, per routee
        for seen in seen_by(engine, pool).values():
            mine = [i for (base, i) in (m for m in seen if m != "sync") if base == t]
            assert mine == sorted(mine)


@pytest.mark.parametrize("bad, error, pattern", [
    ({"size": 0}, ValueError, r"^spawn_pool\(\) needs a size of at least 1, got 0"),
    ({"size": "8"}, TypeError, r"^spawn_pool\(\) needs an int size, not '8'"),
    ({"routing": "random"}, ValueError,
     r"^unknown routing 'random': use one of 'round_robin', 'least_loaded', 'broadcast', "
     r"'consistent_hash'"),
    ({"routing": "consistent_hash"}, TypeError,
     r"^routing='consistent_hash' needs hash_key=, a function from a message to its key"),
    ({"hash_key": len}, ValueError,
     r"^hash_key= is only for routing='consistent_hash', not 'round_robin'"),
    ({"supervisor": "restart"}, TypeError, r"^supervisor must be a backstage.SupervisorStrategy"),
])
def test_spawn_pool_rejects_bad_arguments_at_the_call(engine, bad, error, pattern):
    args = {"size": 2, **bad}
    size = args.pop("size")

    with pytest.raises(error, match=pattern):
        engine.spawn_pool(Worker, "p", size, **args)
    assert engine.get_actor("p") is None


def test_a_pool_whose_routee_init_fails_raises_at_spawn_and_leaves_nothing(backend):
    class Broken(Worker):
        def __init__(self, ctx):
            raise OSError("no database")

    with Engine(backend=backend) as engine:
        with pytest.raises(OSError, match=r"^no database$"):
            engine.spawn_pool(Broken, "p", 3)

        assert engine.actor_ids == []


def test_a_routee_failure_that_escalates_restarts_the_router_with_fresh_routees(backend):
    # A routee that fails more than its supervisor allows stops and escalates;
    # with Engine(supervisor=OneForOne()) the top-level router then restarts,
    # and its new instance makes the pool again with the same arguments.
    with Engine(backend=backend, supervisor=OneForOne(max_restarts=5, within_s=60)) as engine:
        first = engine.spawn_pool(Worker, "p", 2, "again",
                                  supervisor=OneForOne(max_restarts=1, within_s=60))

        engine.send("p/0", "boom")
        engine.send("p/0", "boom")
        engine.run()

        pool = engine.get_actor("p")
        assert pool is not first and isinstance(pool, Pool)
        assert pool.routees == ["p/0", "p/1"]
        assert engine.get_actor("p/0").tag == "again"
        engine.send("p", "a")
        engine.send("p", "b")
        engine.run()
        assert sorted(m for seen in seen_by(engine, pool).values() for m in seen) == ["a", "b"]


def test_a_proxy_call_to_a_broadcast_pool_answers_with_every_routees_return_value(engine):
    engine.spawn_pool(Worker, "p", 3, routing="broadcast")

    future = engine.proxy("p").whoami()
    engine.run()

    assert future.result() == ["p/0", "p/1", "p/2"]


def test_a_consistent_hash_key_function_sees_a_proxied_call_as_a_method_call(engine):
    keys = []

    def key(message):
        keys.append(message)
        return message.args[0] if isinstance(message, MethodCall) else message

    engine.spawn_pool(Worker, "p", 4, routing="consistent_hash", hash_key=key)
    proxy = engine.proxy("p")

    first = [proxy.echo_id("same key") for _ in range(3)]
    engine.run()

    assert keys[0] == MethodCall("echo_id", ("same key",), {})
    assert len({f.result() for f in first}) == 1


def test_spawn_pool_from_another_thread_while_the_engine_runs(engine):
    engine.spawn_actor(Recorder, "keep-running")
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    try:
        made = []
        spawner = threading.Thread(target=lambda: made.append(engine.spawn_pool(Worker, "p", 3)))
        spawner.start()
        spawner.join(10)
        answer = engine.ask("p", "hi").result(timeout=10)
    finally:
        engine.stop()
        runner.join(10)

    assert made[0].routees == ["p/0", "p/1", "p/2"]
    assert answer == ("p/0", "hi")


@pytest.mark.parametrize("overflow", ["drop", "fail", "block"])
def test_a_send_to_a_pool_whose_routee_is_full_is_a_dead_letter_not_lost(engine, overflow):
    # engine.send outside any actor can neither wait nor be refused through a
    # pool: what the chosen routee's policy would refuse becomes a dead letter.
    pool = engine.spawn_pool(Worker, "p", 2, capacity=1, overflow=overflow)

    for i in range(4):
        engine.send("p", i)
    engine.run()

    handled = sorted(m for seen in seen_by(engine, pool).values() for m in seen)
    assert handled == [0, 1]
    assert sorted(d.envelope.message for d in engine.dead_letters) == [2, 3]
    assert all(d.reason == "inbox full" for d in engine.dead_letters)


def test_an_actor_sending_to_a_full_pool_routee_gets_its_policy_as_if_sent_direct(engine):
    class Sender:
        def __init__(self, ctx):
            self.ctx = ctx
            self.refused = 0

        def receive(self, envelope):
            for i in range(4):
                try:
                    self.ctx.send("p", i)
                except InboxFull:
                    self.refused += 1

    engine.spawn_pool(Worker, "p", 2, capacity=1, overflow="fail")
    sender = engine.spawn_actor(Sender, "sender")

    engine.send("sender", "go")
    engine.run()

    assert sender.refused == 2


def test_a_pool_handle_made_before_the_pool_restarted_still_resizes_it(backend):
    engine = Engine(backend=backend, supervisor=AllForOne())
    try:
        handle = engine.spawn_pool(Worker, "pool", 2)
        engine.spawn_actor(Worker, id="sibling")
        engine.send("sibling", "boom")          # AllForOne restarts the pool too
        engine.run()
        assert engine.get_actor("pool") is not handle

        handle.resize(3)
        engine.run()

        assert engine.get_actor("pool").routees == ["pool/0", "pool/1", "pool/2"]
    finally:
        engine.close()


# -- the engine's own follow-ups while other threads fill its cross-thread queue ----

class _SlowQuitter:
    """Takes long enough for other threads to fill the cross-thread queue, then stops."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        threading.Event().wait(0.05)
        self.ctx.shutdown()


def _flooded(engine, pool_sends):
    """Run ``engine`` while 4 threads keep its cross-thread queue full and the
    pool's routees stop; whether run_forever returned when asked (not stuck)."""
    runner = threading.Thread(target=engine.run_forever, daemon=True)
    runner.start()
    with flooding(engine):
        for i in range(pool_sends):
            send_until_in(engine, "pool", i)
            threading.Event().wait(0.06)
    engine.stop()
    runner.join(10)
    return not runner.is_alive()


def test_a_routee_stopping_while_other_threads_fill_the_queue_does_not_stall_the_engine(
        backend):
    engine = Engine(backend=backend, inbound_capacity=8)
    engine.spawn_pool(_SlowQuitter, "pool", 2)
    # (not closed if stuck: close() would wait for the stuck thread)
    assert _flooded(engine, 4), "the engine thread waited on its own queue"
    engine.close()


def test_a_routee_stopping_while_the_queue_is_full_is_replaced_under_inbound_overflow_fail(
        backend):
    engine = Engine(backend=backend, inbound_capacity=8, inbound_overflow="fail")
    engine.spawn_pool(_SlowQuitter, "pool", 1)
    assert _flooded(engine, 2)          # two replacements: within the restart intensity
    try:
        assert engine.get_actor("pool").routees == ["pool/0"]
        assert not [d for d in engine.dead_letters if d.envelope.message_type.name ==
                    "TERMINATED"]
    finally:
        engine.close()


def test_least_loaded_counts_the_messages_waiting_for_room_in_a_full_block_routee(engine):
    # Both routees are full; p/0 also has a sender waiting in line for room.
    # Counting inboxes alone, they tie and the turn order picks p/0.
    class Filler:
        def __init__(self, ctx, target, count):
            self.ctx = ctx
            self.target = target
            self.count = count

        def receive(self, envelope):
            for i in range(self.count):
                self.ctx.send(self.target, f"{self.ctx.actor_id} {i}")

    pool = engine.spawn_pool(Worker, "p", 2, routing="least_loaded", capacity=2,
                             overflow="block")
    engine.spawn_actor(Filler, "a", "p/0", 3)      # fills p/0, then waits for room
    engine.spawn_actor(Filler, "b", "p/1", 2)      # fills p/1
    engine.spawn_actor(Filler, "c", "p", 1)
    for sender in ("a", "b", "c"):
        engine.send(sender, "go")
    engine.run()

    seen = seen_by(engine, pool)
    assert seen["p/1"] == ["b 0", "b 1", "c 0"]
    assert seen["p/0"] == ["a 0", "a 1", "a 2"]
