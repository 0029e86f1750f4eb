"""backstage.Cluster on a real Ray: engines in Ray actors, one id space.

One Ray for the whole run (``ray.init`` costs 2-12 s here): the session
cluster below starts it, most tests share that cluster's three engines, and
the tests that must own a Ray (start and close, a multi-node cluster, no Ray
process left) run last, in file order.  Each engine runs the selectors
loop on a thread of its own inside a Ray actor by design, so these tests are
not parametrised over loop backends.
"""

import fractions
import functools
import importlib
import json
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import pytest

# Before Ray is imported: loopback only, no token file in ~/.ray, no usage stats.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -r "
                                        "requirements-dev.txt runs the cluster tests")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_actors import (  # noqa: E402
    Account,
    AnswersUnloadable,
    Burst,
    Collector,
    Deinit,
    Dozer,
    Echo,
    ExitsWhenUnpickled,
    FanOut,
    Flood,
    Forwarder,
    Holder,
    Ledger,
    PoolKeeper,
    RaisesTwoArgumentError,
    Rally,
    Relay,
    Remote,
    SendsBack,
    SlowCollector,
    SlowInit,
    SlowPickle,
    Spins,
    Unloadable,
    Writer,
    asks_kept,
    known_of,
    link_stats,
    sweep_stand_ins,
    turns_of,
    waits_of,
)
from conftest import wait_for  # noqa: E402

import backstage  # noqa: E402

ROOT = Path(backstage.__file__).resolve().parent
RAY_INIT = {"num_cpus": 2, "object_store_memory": 80 * 1024 * 1024}
pytestmark = pytest.mark.timeout(180)


def _make_cluster(engines=3, **options):
    return backstage.Cluster("ray", engines=engines, ray_init=RAY_INIT, **options)


@pytest.fixture(scope="session", params=["by socket", "by Ray calls"])
def cluster(request):
    """Three engines for the whole run; small batches and window, to exercise both.
    Each test that uses it runs twice: engines on one node linked by socket
    (the default), and by Ray calls, as engines on different nodes are."""
    c = _make_cluster(3, batch_limit=50, window=2,
                      local_links=request.param == "by socket")
    yield c
    c.close()


def _like(cluster, **options):
    """A cluster of its own for a test, its engines linked as ``cluster``'s are."""
    return backstage.Cluster("ray", local_links=cluster._impl.local_links, **options)


def _id_on(cluster, engine, prefix):
    """An id that the stable hash places on ``engine``."""
    for i in range(1000):
        actor_id = f"{prefix}-{i}"
        if cluster.get_engine_of(actor_id) == engine:
            return actor_id
    raise AssertionError("no id found")


def _spawn_on(cluster, engine, actor_class, prefix, *args):
    """An actor of ``actor_class`` under an id the stable hash places on ``engine``."""
    actor_id = _id_on(cluster, engine, prefix)
    cluster.spawn_actor(actor_class, actor_id, *args)
    return actor_id


def _ask(cluster, actor_id, message, timeout=30):
    return cluster.ask(actor_id, message, timeout=timeout).result(timeout + 5)


# -- placement and the driver's calls -----------------------------------------

def test_spawn_actor_passes_constructor_arguments_and_an_ask_right_after_reaches_it(cluster):
    cluster.spawn_actor(Echo, "echo-args", 1, "two", three=3)

    assert _ask(cluster, "echo-args", "hi") == ("hi", cluster.get_engine_of("echo-args"),
                                               (1, "two"), {"three": 3})


def test_placement_is_a_stable_hash_of_the_id_across_processes(cluster):
    ids = [f"placed-{i}" for i in range(12)]
    for actor_id in ids:
        cluster.spawn_actor(Echo, actor_id)

    where = {actor_id: _ask(cluster, actor_id, "x")[1] for actor_id in ids}

    assert where == {actor_id: cluster.get_engine_of(actor_id) for actor_id in ids}
    assert len(set(where.values())) > 1
    # Recomputed in a fresh interpreter (another hash seed): the same engines.
    root = str(Path(backstage.__file__).parent)
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            f"from backends.ray_transport import home_of; print([home_of(i, 3) for i in {ids!r}])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"}, check=True).stdout
    assert eval(out) == [where[i] for i in ids]


def test_pin_places_an_actor_on_the_engine_given(cluster):
    actor_id = _id_on(cluster, 0, "pinned")

    cluster.spawn_actor(Echo, actor_id, pin=2)

    assert cluster.get_engine_of(actor_id) == 2
    assert _ask(cluster, actor_id, "x")[1] == 2


def test_a_pinned_actor_is_reached_by_actors_on_every_engine(cluster):
    target = _id_on(cluster, 1, "pinned-target")
    cluster.spawn_actor(Echo, target, pin=0)
    askers = [_id_on(cluster, e, f"pin-asker{e}") for e in range(3)]
    for asker in askers:
        cluster.spawn_actor(Remote, asker)

    answers = [_ask(cluster, asker, ("ask", target, "hello")) for asker in askers]

    assert answers == [("ok", ("hello", 0, (), {}))] * 3


def test_driver_sends_from_several_threads_arrive_in_each_threads_order(cluster):
    cluster.spawn_actor(Collector, "driver-order")

    def sender(tag):
        for i in range(200):
            cluster.send("driver-order", (tag, i))
    threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert cluster.wait_idle(60)
    got = [m for _, _, m, _ in _ask(cluster, "driver-order", "get")]
    assert len(got) == 800
    for tag in range(4):
        assert [i for t, i in got if t == tag] == list(range(200))


def test_poison_pill_from_the_driver_stops_the_actor_after_its_queued_messages(
        cluster, tmp_path):
    path = tmp_path / "deinit.txt"
    cluster.spawn_actor(Deinit, "pill-me", str(path))
    for _ in range(10):
        cluster.send("pill-me", "x")

    cluster.poison_pill("pill-me")

    assert cluster.wait_idle(60)
    assert path.read_text() == "pill-me\n"
    with pytest.raises(backstage.ActorNotFound):
        _ask(cluster, "pill-me", "x")


def test_ask_to_an_unknown_id_fails_with_actor_not_found(cluster):
    with pytest.raises(backstage.ActorNotFound):
        _ask(cluster, "nobody-here", "x")


def test_a_send_to_an_unknown_id_is_a_dead_letter_on_its_engine(cluster):
    cluster.send("nobody-at-all", "lost")

    assert cluster.wait_idle(60)
    assert any(d.target_id == "nobody-at-all" and d.envelope.message == "lost"
               for d in cluster.dead_letters())


def test_an_unpicklable_message_from_the_driver_is_a_clear_error_at_the_send(cluster):
    cluster.spawn_actor(Echo, "pickle-target")

    with pytest.raises(TypeError, match=r"cannot be pickled to travel to another engine"):
        cluster.send("pickle-target", threading.Lock())
    with pytest.raises(TypeError, match=r"cannot be pickled"):
        cluster.ask("pickle-target", threading.Lock())


def test_a_message_that_names_the_standard_streams_still_travels(tmp_path, monkeypatch):
    # Ray's serializer sends sys.stdout and sys.stderr as references to the
    # receiver's own; refusing open files refused them too, for a while.
    from backends import ray_transport

    monkeypatch.setattr(sys, "stdout", sys.__stdout__)     # not pytest's capture
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    say, out = pickle.loads(ray_transport._dumps([functools.partial(print, file=sys.stderr),
                                                  sys.stdout]))
    assert (say.func, say.keywords, out) == (print, {"file": sys.stderr}, sys.stdout)
    (tmp_path / "notes.txt").write_text("private")
    with open(tmp_path / "notes.txt") as file:
        assert "an open file does not travel" in ray_transport._picklable(["notes", file])


def test_an_open_file_from_the_driver_is_a_clear_error_at_the_send(cluster, tmp_path):
    # Ray's serializer (cloudpickle) would send what a file open for reading
    # holds, read on the sender's thread: it travelled as a StringIO.
    cluster.spawn_actor(Echo, "file-target")
    (tmp_path / "notes.txt").write_text("private")

    with open(tmp_path / "notes.txt") as file, \
            pytest.raises(TypeError, match=r"an open file does not travel"):
        cluster.send("file-target", ["notes", file])


def _bad_then_good(cluster, prefix, op):
    """A Remote on engine 0 sends a Collector on engine 1 a bad message (``op``),
    then "after"; returns (sender, receiver)."""
    sender = _id_on(cluster, 0, f"{prefix}-sender")
    receiver = _id_on(cluster, 1, f"{prefix}-receiver")
    cluster.spawn_actor(Remote, sender)
    cluster.spawn_actor(Collector, receiver)
    _ask(cluster, sender, (op, receiver))
    _ask(cluster, sender, ("send", receiver, ["after"]))
    return sender, receiver


def test_an_unpicklable_message_from_an_actor_is_a_dead_letter_that_says_why(cluster):
    sender, target = _bad_then_good(cluster, "pickle", "unpicklable")

    assert cluster.wait_idle(60)
    letters = _ask(cluster, sender, ("dead_letters",))
    assert any(t == target and "cannot be pickled" in reason for t, _, reason in letters)
    assert [m for _, _, m, _ in _ask(cluster, target, "get")] == ["after"]


def test_spawn_actor_with_bad_arguments_raises_at_the_call(cluster):
    with pytest.raises(TypeError, match="receive"):
        cluster.spawn_actor(object, "bad")
    with pytest.raises(ValueError, match="pin must be an engine number"):
        cluster.spawn_actor(Echo, "bad", pin=7)
    with pytest.raises(TypeError, match="str actor id"):
        cluster.send(3, "x")


@pytest.mark.parametrize("call, error, message", [
    (lambda c: c.kill_engine(-1), ValueError,
     r"^kill_engine\(\) needs an engine number from 0 to 2, got -1$"),
    (lambda c: c.kill_engine(3), ValueError, r"^kill_engine\(\) needs an engine number from 0"),
    (lambda c: c.kill_engine("1"), TypeError,
     r"^kill_engine\(\) needs an engine number from 0 to 2, got '1'$"),
    (lambda c: c.kill_engine(True), TypeError, r"^kill_engine\(\) needs an engine number"),
    (lambda c: c.wait_idle(-1), ValueError,
     r"^wait_idle\(\) needs timeout zero or more seconds, got -1"),
    (lambda c: c.wait_idle(float("nan")), ValueError,
     r"^wait_idle\(\) needs a finite timeout in seconds, got nan"),
    (lambda c: c.wait_idle("5"), TypeError,
     r"^wait_idle\(\) needs a number of seconds for timeout, not '5'"),
    (lambda c: c.spawn_actor(Echo, "bad-pin", pin="0"), TypeError,
     r"^pin must be an engine number from 0 to 2, got '0'$"),
    (lambda c: c.get_engine_of(""), ValueError, r"^get_engine_of\(\) got an empty actor id"),
    (lambda c: c.spawn_pool(Echo, "bad-pool", 0), ValueError,
     r"^spawn_pool\(\) needs a size of at least 1, got 0$"),
    (lambda c: c.spawn_pool(Echo, "bad-pool", 2, routing="nope"), ValueError,
     r"^unknown routing 'nope': use one of 'round_robin'"),
    (lambda c: c.spawn_pool(Echo, "bad-pool", 2, pin=3), ValueError,
     r"^pin must be an engine number from 0 to 2, got 3$"),
    (lambda c: c.proxy("bad-proxy", Echo, timeout=-1), ValueError,
     r"^proxy\(\) needs timeout more than zero seconds, got -1$"),
    (lambda c: c.proxy("bad-proxy", "Echo"), TypeError,
     r"^proxy\(\) needs the actor's class \(or a Proxy subclass\), such as "
     r"cluster.proxy\('bad-proxy', Counter\)"),
])
def test_bad_arguments_to_the_drivers_calls_are_refused_and_change_nothing(cluster, call, error,
                                                                           message):
    with pytest.raises(error, match=message):
        call(cluster)

    assert cluster.lost == {}


@pytest.mark.parametrize("options, error, message", [
    ({"bogus": 1}, TypeError, r"^Cluster\(transport='ray'\) got an unexpected keyword "
                              r"argument 'bogus': its options are batch_limit, window"),
    ({"ray_init": 5}, TypeError, r"^ray_init must be a dict of ray.init\(\) arguments"),
    ({"start_timeout": -1}, ValueError,
     r"^Cluster\(\) needs start_timeout more than zero seconds, got -1"),
    ({"address": 123}, TypeError, r"^address must be a Ray address \(a str such as 'auto'"),
    ({"name": 5}, TypeError, r"^name must be the cluster's name in the inspector \(a "
                             r"non-empty str\), or None"),
])
def test_a_cluster_with_a_bad_option_is_refused_before_it_starts(cluster, options, error,
                                                                 message):
    with pytest.raises(error, match=message):
        backstage.Cluster("ray", engines=2, **options)


def test_an_engine_ray_cannot_place_is_named_with_its_options(cluster):
    # A resource no node has: Ray waits for a node that never comes.  It was
    # Ray's bare GetTimeoutError after the start timeout.
    with pytest.raises(TimeoutError, match=r"^engine\(s\) \[0\] did not start within "
                                           r"start_timeout=2 s: Ray could not place them "
                                           r"\(their engine_options: \[\{'resources': "
                                           r"\{'no-such-node': 0.01\}\}\]"):
        backstage.Cluster("ray", engines=2, start_timeout=2,
                          engine_options=[{"resources": {"no-such-node": 0.01}}, {}])
    assert _ask(cluster, _spawn_on(cluster, 0, Echo, "after-unplaced"), "hi")[0] == "hi"


def test_an_exception_in_the_constructor_propagates_to_spawn_actor(cluster):
    with pytest.raises(TypeError):
        cluster.spawn_actor(Deinit, "no-path")      # Deinit needs a path

    with pytest.raises(backstage.ActorNotFound):
        _ask(cluster, "no-path", "x")


def _driver_only_module(name, tmp_path, monkeypatch):
    """A module of the driver's alone, made after the engines started: an
    instance of its class does not unpickle on them."""
    (tmp_path / f"{name}.py").write_text("class Config:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def test_a_spawn_whose_arguments_do_not_unpickle_on_the_engine_fails_and_the_driver_goes_on(
        cluster, tmp_path, monkeypatch):
    late_module = _driver_only_module("late_module", tmp_path, monkeypatch)
    target = _id_on(cluster, 1, "late-config")
    counter = _id_on(cluster, 1, "late-counter")
    cluster.spawn_actor(Echo, counter)

    with pytest.raises(TypeError, match=r"^engine 1 could not unpickle the spawn's class or "
                                        r"arguments \(ModuleNotFoundError.*late_module.*; pass "
                                        r"ones the engine processes can import"):
        cluster.spawn_actor(Echo, target, late_module.Config())

    assert _ask(cluster, counter, "still there")[0] == "still there"  # in the driver's order
    cluster.spawn_actor(Echo, _id_on(cluster, 1, "late-after"))
    with pytest.raises(backstage.ActorNotFound):
        _ask(cluster, target, "x")


def test_a_pin_onto_the_engine_where_an_actor_spawned_the_id_keeps_that_actor_placed(cluster):
    spawner = _spawn_on(cluster, 0, Remote, "keeps-spawner")
    taken = _id_on(cluster, 2, "keeps-taken")
    assert _ask(cluster, spawner, ("spawn", Echo, taken)) == 0
    assert cluster.wait_idle(60)

    with pytest.raises(Exception, match=taken):       # taken there, by another class
        cluster.spawn_actor(Collector, taken, pin=0)

    assert [cluster._impl.call(e, known_of, [taken])[0] for e in range(3)] == [[taken]] * 3
    assert _ask(cluster, taken, "still here")[1] == 0


def test_a_pin_whose_spawn_fails_on_the_engine_leaves_the_id_placed_nowhere(
        cluster, tmp_path, monkeypatch):
    late_pinned = _driver_only_module("late_pinned", tmp_path, monkeypatch)
    target = _id_on(cluster, 1, "late-pinned")

    with pytest.raises(TypeError, match=r"^engine 2 could not unpickle"):
        cluster.spawn_actor(Echo, target, late_pinned.Config(), pin=2)

    assert [cluster._impl.call(e, known_of, [target])[0] for e in range(3)] == [[], [], []]
    assert target not in cluster._impl._pins
    spawner = _spawn_on(cluster, 0, Remote, "after-failed-pin")
    assert _ask(cluster, spawner, ("spawn", Echo, target)) == 0     # not refused


# -- the driver's proxies and pools ------------------------------------------------

def test_a_driver_proxy_runs_the_method_on_the_actors_engine_and_its_future_holds_the_result(
        cluster):
    ledger = _spawn_on(cluster, 2, Ledger, "driver-proxy", 100)
    proxy = cluster.proxy(ledger)

    assert proxy.deposit(5).result(30) == 105
    with pytest.raises(ValueError, match="^only 105 left$"):
        proxy.withdraw(1000).result(30)
    assert proxy.call(Ledger.where).result(30) == (2, ledger)
    assert proxy.call(lambda actor: actor.balance * 2).result(30) == 210


def test_a_driver_proxy_call_comes_after_the_drivers_earlier_sends(cluster):
    ledger = _spawn_on(cluster, 1, Ledger, "driver-proxy-order")
    proxy = cluster.proxy(ledger, Ledger)

    for i in range(300):
        cluster.send(ledger, i)
    received = proxy.received().result(30)

    assert received == list(range(300))


def test_a_driver_proxy_refuses_an_id_with_no_actor_a_wrong_class_and_an_unknown_method(
        cluster):
    ledger = _spawn_on(cluster, 0, Ledger, "driver-proxy-refuses")

    with pytest.raises(backstage.ActorNotFound, match=r"cluster.proxy\('nobody-here', "
                                                      r"TheClass\)"):
        cluster.proxy("nobody-here")
    with pytest.raises(TypeError, match="that actor's class is Ledger"):
        cluster.proxy(ledger, Echo)
    with pytest.raises(AttributeError, match="Ledger has no method 'nope'"):
        cluster.proxy(ledger).nope()
    with pytest.raises(TypeError, match="str actor id"):
        cluster.proxy(5)


def test_a_driver_proxy_made_with_the_class_before_the_actor_exists_reaches_it_once_spawned(
        cluster):
    ledger = _id_on(cluster, 1, "driver-proxy-early")
    proxy = cluster.proxy(ledger, Ledger)
    cluster.spawn_actor(Ledger, ledger, 7)

    assert proxy.deposit(1).result(30) == 8


def test_a_driver_proxy_call_and_a_driver_ask_are_awaited_in_asyncio_code(cluster):
    import asyncio
    ledger = _spawn_on(cluster, 0, Ledger, "driver-proxy-await", 10)
    echo = _spawn_on(cluster, 1, Echo, "driver-ask-await")
    proxy = cluster.proxy(ledger)

    async def main():
        return await proxy.deposit(2), await cluster.ask(echo, "hi")

    assert asyncio.run(asyncio.wait_for(main(), 30)) == (12, ("hi", 1, (), {}))


def test_a_driver_proxy_call_that_times_out_fails_with_timeout_error(cluster):
    dozer = _spawn_on(cluster, 2, Dozer, "driver-proxy-timeout")
    proxy = cluster.proxy(dozer, timeout=0.2)
    cluster.send(dozer, 1.0)            # busy for a second: the call waits behind it

    with pytest.raises(TimeoutError):
        proxy.ping().result(30)
    assert cluster.proxy(dozer).ping().result(30) == "pong"


def test_a_cancelled_await_of_a_driver_future_ends_quietly(cluster, caplog):
    import asyncio
    dozer = _spawn_on(cluster, 1, Dozer, "driver-await-cancel")
    cluster.send(dozer, 1.0)                # busy: the calls below wait behind it
    proxy = cluster.proxy(dozer)

    async def main():
        for future in (proxy.ping(), cluster.ask(dozer, "hi", timeout=None)):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(future, 0.05)
            assert future.cancelled()

    with caplog.at_level("ERROR"):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records] == []     # no callback failed
    assert proxy.ping().result(30) == "pong"


def test_making_a_driver_proxy_waits_for_no_turn_of_the_actors_engine(cluster, tmp_path):
    busy = _spawn_on(cluster, 1, Remote, "proxy-beside-busy")
    ledger = _spawn_on(cluster, 1, Ledger, "proxy-while-busy")
    release = _blocked(cluster, busy, tmp_path)           # engine 1: one long turn
    made = []
    try:
        maker = threading.Thread(target=lambda: made.extend(
            [cluster.proxy(ledger), cluster.proxy(ledger, Ledger)]), daemon=True)
        maker.start()
        maker.join(30)
        assert len(made) == 2               # made while the engine is still in its turn
    finally:
        release.touch()
    assert made[0].deposit(3).result(60) == 3


def test_every_routee_of_a_pool_the_driver_spawned_is_placed_when_the_call_returns(cluster):
    asker = _spawn_on(cluster, 1, Remote, "routee-asker")
    for i in range(12):
        pool = f"placed-pool-{i}"
        cluster.spawn_pool(Echo, pool, 4, pin=0)
        routees = [f"{pool}/{k}" for k in range(4)]

        assert [cluster.get_engine_of(r) for r in routees] == [0] * 4
        assert [_ask(cluster, r, "hi")[1] for r in routees] == [0] * 4
        assert [_ask(cluster, asker, ("ask", r, "hi")) for r in routees] == \
            [("ok", ("hi", 0, (), {}))] * 4


def test_spawn_pool_from_the_driver_puts_the_router_and_its_routees_on_the_ids_engine(cluster):
    pool = _id_on(cluster, 1, "driver-pool")
    cluster.spawn_pool(Echo, pool, 3, "arg", routing="broadcast", key="k")

    answers = _ask(cluster, pool, "hi")

    assert answers == [("hi", 1, ("arg",), {"key": "k"})] * 3
    assert [cluster.get_engine_of(f"{pool}/{i}") for i in range(3)] == [1, 1, 1]


def test_spawn_pool_with_pin_puts_the_pool_on_that_engine_and_every_engine_reaches_it(cluster):
    pool = _id_on(cluster, 0, "driver-pool-pinned")
    cluster.spawn_pool(Ledger, pool, 2, pin=2)
    asker = _spawn_on(cluster, 1, Remote, "driver-pool-asker")

    first, second = (cluster.proxy(pool).where().result(30) for _ in range(2))
    from_engine_1 = _ask(cluster, asker, ("proxy", pool, None, "where", ()))

    assert {first, second} == {(2, f"{pool}/0"), (2, f"{pool}/1")}     # round robin
    assert from_engine_1[0] == "ok" and from_engine_1[1][0] == 2


def test_a_spread_pool_puts_a_routee_on_each_engine_and_routes_to_all_of_them(cluster):
    pool = _id_on(cluster, 1, "spread-pool")
    cluster.spawn_pool(Echo, pool, 3, "arg", spread=True, key="k")

    engines = [_ask(cluster, pool, "hi")[1] for _ in range(6)]          # round robin

    assert engines == [1, 2, 0, 1, 2, 0]
    assert [cluster.get_engine_of(f"{pool}/{k}") for k in range(3)] == [1, 2, 0]
    assert _ask(cluster, f"{pool}/1", "direct") == ("direct", 2, ("arg",), {"key": "k"})


def test_a_spread_pool_takes_asks_broadcasts_and_proxy_calls_from_every_engine(cluster):
    pool = _id_on(cluster, 0, "spread-bcast")
    cluster.spawn_pool(Ledger, pool, 3, spread=True, routing="broadcast")
    asker = _spawn_on(cluster, 2, Remote, "spread-asker")

    from_driver = cluster.proxy(pool).where().result(30)
    from_engine_2 = _ask(cluster, asker, ("proxy", pool, None, "where", ()))

    assert sorted(from_driver) == [(0, f"{pool}/0"), (1, f"{pool}/1"), (2, f"{pool}/2")]
    assert from_engine_2[0] == "ok" and sorted(from_engine_2[1]) == sorted(from_driver)


def test_a_poison_pill_to_a_spread_pool_stops_its_routees_on_every_engine(cluster):
    pool = _id_on(cluster, 2, "spread-pill")
    cluster.spawn_pool(Echo, pool, 3, spread=True)
    assert _ask(cluster, pool, "hi")[1] == 2

    cluster.poison_pill(pool)
    assert cluster.wait_idle(60)

    for actor_id in [pool] + [f"{pool}/{k}" for k in range(3)]:
        with pytest.raises(backstage.ActorNotFound):
            _ask(cluster, actor_id, "still there?")


def test_a_routee_of_a_spread_pool_that_stops_leaves_it_and_the_others_take_its_share(
        cluster):
    pool = _id_on(cluster, 0, "spread-leaver")
    cluster.spawn_pool(Echo, pool, 3, spread=True)
    cluster.poison_pill(f"{pool}/1")                # the routee on engine 1
    assert cluster.wait_idle(60)

    engines = [_ask(cluster, pool, "hi")[1] for _ in range(4)]

    assert sorted(engines) == [0, 0, 2, 2]


def test_a_spread_pool_refuses_least_loaded_and_a_spread_that_is_not_a_bool(cluster):
    with pytest.raises(ValueError, match='a spread pool cannot route "least_loaded"'):
        cluster.spawn_pool(Echo, "spread-bad", 2, spread=True, routing="least_loaded")
    with pytest.raises(TypeError, match="^spread must be True or False, not 'yes'$"):
        cluster.spawn_pool(Echo, "spread-bad", 2, spread="yes")
    with pytest.raises(backstage.ActorNotFound):        # refused before any routee was made
        _ask(cluster, "spread-bad/0", "made?")


def test_a_spread_pools_routee_elsewhere_gets_its_messages_while_the_local_one_is_in_a_turn(
        cluster, tmp_path):
    # The router's engine also runs routee 0: behind its long turn, routee 1's
    # stand-in waited to hand on its messages, and engine 1 sat idle.
    pool = _id_on(cluster, 0, "spread-busy")
    cluster.spawn_pool(Remote, pool, 2, spread=True)
    sender = _spawn_on(cluster, 0, Remote, "spread-busy-sender")
    files = [(tmp_path / f"{k}.started", tmp_path / f"{k}.release") for k in range(2)]
    blocks = [("block", str(started), str(release), []) for started, release in files]

    _ask(cluster, sender, ("send", pool, blocks))       # routee 0, then routee 1
    try:
        wait_for(files[0][0].exists, "routee 0 (engine 0) to block", timeout=60)
        wait_for(files[1][0].exists, "routee 1 (engine 1) to start while routee 0 blocks",
                 timeout=30)
    finally:
        for _, release in files:
            release.touch()
    assert cluster.wait_idle(60)


def test_spawning_a_spread_pool_over_a_taken_id_makes_no_routee_and_leaves_the_taken_alone(
        cluster):
    actor = _spawn_on(cluster, 1, Ledger, "spread-taken")
    cluster.proxy(actor).deposit(5).result(30)
    with pytest.raises(TypeError, match=f"^spawn_pool\\(\\) found {actor!r} taken by an actor "
                                        f"of class Ledger, not a pool: pick another id$"):
        cluster.spawn_pool(Echo, actor, 3, spread=True)

    plain = _id_on(cluster, 0, "spread-over-plain")
    cluster.spawn_pool(Ledger, f"{plain}-other", 1)
    cluster.spawn_actor(Ledger, f"{plain}/1", 7, pin=0)       # a routee's id, taken
    with pytest.raises(ValueError, match=f"^cannot spread the pool {plain!r}: "
                                         f"'{plain}/1', the id of one of its routees, is "
                                         f"taken on engine 0"):
        cluster.spawn_pool(Echo, plain, 3, spread=True)

    assert cluster.proxy(actor).deposit(0).result(30) == 5      # untouched
    assert cluster.proxy(f"{plain}/1").deposit(0).result(30) == 7
    for routee_id in [f"{actor}/{k}" for k in range(3)] + [f"{plain}/0", f"{plain}/2"]:
        with pytest.raises(backstage.ActorNotFound):
            _ask(cluster, routee_id, "made?")


def test_spawning_a_spread_pool_again_under_its_id_returns_it_and_makes_no_routee(cluster):
    pool = _id_on(cluster, 2, "spread-again")
    cluster.spawn_pool(Echo, pool, 2, spread=True)

    cluster.spawn_pool(Echo, pool, 4, spread=True)

    assert sorted(_ask(cluster, pool, "hi")[1] for _ in range(4)) == [0, 0, 2, 2]
    with pytest.raises(backstage.ActorNotFound):
        _ask(cluster, f"{pool}/2", "made?")


# -- actors across engines --------------------------------------------------------

@pytest.mark.parametrize("cls", [Account, None])
def test_a_proxy_call_to_another_engine_runs_the_method_and_its_future_holds_the_result(
        cluster, cls):
    caller = _spawn_on(cluster, 0, Remote, "proxy-caller")
    account = _spawn_on(cluster, 1, Account, f"proxy-account-{cls is None}", 100)

    deposited = _ask(cluster, caller, ("proxy", account, cls, "deposit", (5,)))
    overdrawn = _ask(cluster, caller, ("proxy", account, cls, "withdraw", (1000,)))

    assert deposited == ("ok", 105)
    assert overdrawn == ("err", "ValueError", "only 105 left")


def test_an_ask_to_another_engine_handled_without_a_reply_fails_at_once(cluster):
    asker = _spawn_on(cluster, 0, Remote, "unanswered-asker")
    silent = _spawn_on(cluster, 1, Collector, "unanswered-silent")

    outcome = _ask(cluster, asker, ("ask", silent, "no answer to this"))

    assert outcome == ("err", "BackstageError",
                       f"{silent!r} handled the ask without replying, and kept no hold of the "
                       f"envelope: answer with envelope.reply(value), or keep the envelope to "
                       f"reply later")       # not TimeoutError, 10 s later


def test_an_actor_asks_a_broadcast_pool_on_another_engine_and_gets_every_answer(cluster):
    owner = _spawn_on(cluster, 0, Remote, "bcast-owner")
    asker = _spawn_on(cluster, 1, Remote, "bcast-asker")
    pool = _id_on(cluster, 0, "bcast-pool")
    _ask(cluster, owner, ("spawn_pool", Echo, pool, 2, "broadcast"))

    status, answers = _ask(cluster, asker, ("ask", pool, "hi"))
    again = _ask(cluster, asker, ("ask", owner, ("got",)))    # the link goes on

    assert status == "ok" and answers == [("hi", 0, (), {}), ("hi", 0, (), {})]
    assert again == ("ok", [])


def test_actors_send_and_ask_across_engines(cluster):
    a = _spawn_on(cluster, 0, Remote, "cross-a")
    b = _spawn_on(cluster, 1, Collector, "cross-b")
    cluster.spawn_actor(Echo, "cross-echo", pin=2)

    _ask(cluster, a, ("send", b, ["one", "two"]))
    answer = _ask(cluster, a, ("ask", "cross-echo", "q"))
    assert cluster.wait_idle(60)        # a's sends to b: a's reply may come first

    assert answer == ("ok", ("q", 2, (), {}))
    assert _ask(cluster, b, "get") == [(a, "SEND", "one", None), (a, "SEND", "two", None)]


def test_a_message_that_arrives_as_a_tuple_in_a_run_of_sends_keeps_its_sender(cluster):
    # A run of one sender's plain sends crosses bare, and the receiving engine
    # queues it bare unless a message is a tuple there; only a run of builtin
    # classes is vouched tuple-free without a look (this one is not).
    a = _spawn_on(cluster, 0, Remote, "becomes-a")
    b = _spawn_on(cluster, 1, Collector, "becomes-b")

    _ask(cluster, a, ("send_becoming_tuple", b))
    assert cluster.wait_idle(60)

    assert _ask(cluster, b, "get") == [(a, "SEND", "before", None),
                                       (a, "SEND", (1, 2, 3), None),
                                       (a, "SEND", "after", None)]


def _link(cluster, src, dst):
    """The stats() counters of engine ``src``'s link to ``dst``, asked of ``src``
    alone (another engine may be blocked in a turn)."""
    return cluster._impl.call(src, link_stats)[dst]


def test_an_answer_to_a_message_from_another_engine_rides_back_on_that_calls_return(cluster):
    a = _spawn_on(cluster, 0, Rally, "rally-a")
    b = _spawn_on(cluster, 1, Rally, "rally-b")
    before = _link(cluster, 1, 0)

    assert _ask(cluster, a, ("go", b, 200)) == "done"

    after = _link(cluster, 1, 0)
    batches = after["batches"] - before["batches"]
    calls = after["calls"] - before["calls"]
    assert after["messages"] - before["messages"] >= 200
    assert calls <= batches // 10, (calls, batches)     # nearly every ball rode back


def _blocked(cluster, actor_id, tmp_path, then_publish=()):
    """Block the Remote ``actor_id`` in a turn; returns the file that releases it."""
    started, release = tmp_path / f"{actor_id}.started", tmp_path / f"{actor_id}.release"
    cluster.send(actor_id, ("block", str(started), str(release), list(then_publish)))
    wait_for(started.exists, f"{actor_id} to block its engine", timeout=60)
    return release


# -- links on one node ------------------------------------------------------------

def test_engines_on_one_node_send_by_socket_unless_local_links_is_false(cluster):
    stats = cluster.stats()
    assert len({s["node"] for s in stats}) == 1
    via = {link["via"] for s in stats for link in s["links"].values()}
    assert via == ({"socket"} if cluster._impl.local_links else {"ray"})


def test_batches_larger_than_a_socket_holds_cross_whole_and_in_order(cluster):
    # 1,000 messages of 3 KB a batch: 3 MB, where a socket holds about 200 KB.
    with _like(cluster, engines=2, batch_limit=1000) as big:
        sender = _id_on(big, 0, "big-sender")
        collector = _id_on(big, 1, "big-collector")
        big.spawn_actor(Remote, sender)
        big.spawn_actor(Collector, collector)
        messages = [f"{i:05d}" + "x" * 3000 for i in range(3000)]

        _ask(big, sender, ("send", collector, messages), timeout=60)

        assert big.wait_idle(60)
        assert [m for _, _, m, _ in _ask(big, collector, "get")] == messages
        assert big.stats()[0]["links"][1]["batches"] <= 5        # of up to 3 MB each


def test_a_link_socket_reads_frames_whole_however_the_bytes_are_cut():
    from backends.ray_transport import _FRAME, _Conn
    frames = [b"a" * 5, os.urandom(300_000), b"xyz", b"", os.urandom(70_000), b"end"]
    stream = b"".join(_FRAME.pack(len(f)) + f for f in frames)
    # Cut into pieces of 1, 2 and 3 bytes (a frame's length across two reads),
    # then larger ones (a frame across many reads, several frames in one).
    pieces, at = [], 0
    for size in [1, 2, 3, 1, 4, 60_000, 7, 250_000, 9] + [100_000] * 3:
        pieces.append(stream[at:at + size])
        at += size
    assert at >= len(stream)
    loop = backstage.SelectorLoop()
    ours, theirs = socket.socketpair()
    got: list[bytes] = []

    def on_frames(batch):
        got.extend(bytes(f) for f in batch)
        if len(got) == len(frames):
            loop.stop()

    conn = _Conn(ours, loop, on_frames, lambda reason: loop.stop())

    def write():
        for piece in pieces:
            theirs.sendall(piece)
            time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    loop.call_later(20, loop.stop)
    loop.run()
    writer.join()
    conn.close()
    theirs.close()
    assert got == frames


def _stranger(cluster, sent: bytes) -> bytes:
    """Connects to engine 1's socket as engine 0 would, from this process, and
    sends ``sent``; what engine 1 answers until it closes the socket (b"": it
    closed it, having answered nothing)."""
    from backends.ray_transport import _socket_address
    stranger = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stranger.settimeout(30)
    stranger.connect(_socket_address(cluster._impl.links_token, 1))
    try:
        stranger.sendall(sent)
        return stranger.recv(16)
    finally:
        stranger.close()


def _frame(body: bytes) -> bytes:
    return struct.pack("<Q", len(body)) + body


@pytest.mark.parametrize("case", [
    "a wrong token",
    # the right token and engine 0's number, from a process that is not engine 0's,
    # then a frame as engine 0's batch 1 would start
    "a peer's token and number from another process",
    # a frame of 1 GiB announced before any hello
    "a huge first frame"])
def test_a_socket_that_is_not_a_peers_is_closed_and_the_links_go_on(cluster, case):
    if not cluster._impl.local_links:
        pytest.skip("engines linked by Ray calls listen on no socket")
    sent = {
        "a wrong token": _frame(b"not-this-clusters-token 0"),
        "a peer's token and number from another process":
            _frame(f"{cluster._impl.links_token} 0".encode())
            + _frame(struct.pack("<qqq", 0, 1, 0) + pickle.dumps([])),
        "a huge first frame": struct.pack("<Q", 1 << 30) + b"x" * 1000,
    }[case]

    assert _stranger(cluster, sent) == b""          # engine 1 closed it, answering nothing

    sender = _spawn_on(cluster, 0, Remote, f"stranger-{len(sent)}-sender")
    collector = _spawn_on(cluster, 1, Collector, f"stranger-{len(sent)}-collector")
    _ask(cluster, sender, ("send", collector, ["after the stranger"]))
    wait_for(lambda: _ask(cluster, collector, "get"), "the message after the stranger")
    assert cluster.lost == {}
    assert [letter for letter in _ask(cluster, sender, ("dead_letters",))
            if letter[0] == collector] == []


def test_an_engine_busy_in_a_long_turn_does_not_hold_up_traffic_between_two_others(
        cluster, tmp_path):
    busy = _id_on(cluster, 1, "busy-blocker")
    behind = _id_on(cluster, 1, "behind-the-blocker")
    a, b = _id_on(cluster, 0, "rally-busy-a"), _id_on(cluster, 2, "rally-busy-b")
    for actor_class, actor_id in ((Collector, behind), (Remote, busy), (Remote, a),
                                  (Rally, a + "-r"), (Rally, b)):
        cluster.spawn_actor(actor_class, actor_id,
                            **({"pin": 0} if actor_id == a + "-r" else {}))
    release = _blocked(cluster, busy, tmp_path)                   # engine 1: one long turn
    _ask(cluster, a, ("send", behind, ["waits for engine 1"]))   # engine 0 -> 1: in flight

    try:                                # engine 0 <-> engine 2, while engine 1 is blocked
        assert _ask(cluster, a + "-r", ("go", b, 30), timeout=60) == "done"
    finally:
        release.touch()

    # Engine 1 free again.  The driver's "get" and engine 0's message have two
    # senders, so either may come first (by socket, engine 0's does not come
    # before the driver's call that was queued when engine 1 woke).
    wait_for(lambda: "waits for engine 1" in [m for _, _, m, _ in _ask(cluster, behind, "get")],
             "the message that waited for engine 1", timeout=120)


def test_answers_send_the_next_batches_while_the_sending_engine_is_in_a_long_turn(
        cluster, tmp_path):
    sender = _id_on(cluster, 0, "long-turn-sender")
    collector = _id_on(cluster, 1, "long-turn-collector")
    receiving = _id_on(cluster, 1, "long-turn-blocker")
    for actor_class, actor_id in ((Remote, sender), (Collector, collector), (Remote, receiving)):
        cluster.spawn_actor(actor_class, actor_id)
    release_receiver = _blocked(cluster, receiving, tmp_path)   # no answer before engine 0 blocks
    releases = [release_receiver]
    try:
        _ask(cluster, sender, ("send", collector, list(range(1000))))   # 20 batches of 50
        releases.append(_blocked(cluster, sender, tmp_path))    # engine 0 busy from now on
        release_receiver.touch()

        # A window of 2 calls went at once and 2 more were packed: the answers to
        # the first send those while engine 0 is blocked.
        wait_for(lambda: len(_ask(cluster, collector, "get")) >= 200,
                 "four batches of 50 while the sender's engine is busy", timeout=60)
        assert len(_ask(cluster, collector, "get")) == 200      # and no more before it wakes
    finally:
        for release in releases:
            release.touch()
    assert cluster.wait_idle(60)
    assert [m for _, _, m, _ in _ask(cluster, collector, "get")] == list(range(1000))


def test_a_producer_faster_than_its_link_is_held_so_the_link_never_holds_much_unsent(
        cluster):
    # The session cluster sends batches of 50 with a window of 2: a send buffer of 100.
    flood = _spawn_on(cluster, 0, Flood, "flood")
    collector = _spawn_on(cluster, 1, Collector, "flood-collector")
    cluster._impl.call(0, link_stats, True)     # the peaks of earlier tests forgotten

    _ask(cluster, flood, ("go", collector, 20_000, 100))       # 100 sends a turn
    assert cluster.wait_idle(120)

    assert [m for _, _, m, _ in _ask(cluster, collector, "get")] == list(range(20_000))
    # Held once over the buffer: at most the buffer and two turns (one the
    # stand-in's turn found, one the producer was already queued for).
    # Unheld, the link held thousands.
    assert _link(cluster, 0, 1)["unsent_peak"] <= 100 + 2 * 100


def test_an_actor_the_driver_feeds_stays_held_while_its_link_is_full(cluster):
    collector = _spawn_on(cluster, 1, Collector, "fed-collector")
    forwarder = _spawn_on(cluster, 0, Forwarder, "fed-forwarder", collector)
    cluster._impl.call(0, link_stats, True)     # the peaks of earlier tests forgotten

    for start in range(0, 20_000, 10):
        cluster.send(forwarder, list(range(start, start + 10)))
    assert cluster.wait_idle(120)

    assert [m for _, _, m, _ in _ask(cluster, collector, "get")] == list(range(20_000))
    # The driver's batches do not let it go: at most the buffer of 100 and two
    # turns of at most 128 messages of 10.
    assert _link(cluster, 0, 1)["unsent_peak"] <= 100 + 2 * 1280


def test_an_actor_that_forwards_over_a_full_link_is_held_though_the_senders_are_elsewhere(
        cluster):
    collector = _spawn_on(cluster, 1, Collector, "fanned-collector")
    fan_out = _spawn_on(cluster, 0, FanOut, "fan-out", collector, 10)
    cluster._impl.call(0, link_stats, True)     # the peaks of earlier tests forgotten

    for n in range(2_000):
        cluster.send(fan_out, n)
    assert cluster.wait_idle(120)

    got = _ask(cluster, collector, "get")
    assert [m for _, _, m, _ in got] == [n for n in range(2_000) for _ in range(10)]
    assert {sender for sender, _, _, _ in got} == {None}    # forwarded: the driver's
    # As a sender is held: at most the buffer and two turns of 128 messages of 10.
    assert _link(cluster, 0, 1)["unsent_peak"] <= 100 + 2 * 1280


def test_held_senders_go_on_when_the_peer_answers_nothing_for_a_second(cluster, tmp_path):
    flood = _spawn_on(cluster, 0, Flood, "valve-flood")
    collector = _spawn_on(cluster, 1, Collector, "valve-collector")
    blocker = _spawn_on(cluster, 1, Remote, "valve-blocker")
    opened = _link(cluster, 0, 1)["valve_opened"]
    release = _blocked(cluster, blocker, tmp_path)      # engine 1 answers nothing now
    try:
        _ask(cluster, flood, ("go", collector, 4000, 200))
        wait_for(lambda: _link(cluster, 0, 1)["over_buffer"] >= 1,
                 "the flood to be held", timeout=30)
        held_at = cluster._impl.call(0, turns_of, flood)

        # No answer comes: the valve lets it go on, turn by turn, a second apart.
        wait_for(lambda: cluster._impl.call(0, turns_of, flood) > held_at + 1,
                 "the valve to let the flood go on", timeout=10)
        assert _link(cluster, 0, 1)["valve_opened"] > opened
        assert not release.exists()
    finally:
        release.touch()
    assert cluster.wait_idle(60)
    assert [m for _, _, m, _ in _ask(cluster, collector, "get")] == list(range(4000))


def test_the_inspector_row_of_a_held_producer_says_it_waits_on_its_link(cluster, tmp_path):
    flood = _spawn_on(cluster, 0, Flood, "seen-flood")
    collector = _spawn_on(cluster, 1, Collector, "seen-collector")
    blocker = _spawn_on(cluster, 1, Remote, "seen-blocker")
    release = _blocked(cluster, blocker, tmp_path)      # engine 1 answers nothing now
    try:
        _ask(cluster, flood, ("go", collector, 4000, 200))
        seen = [[]]
        wait_for(lambda: seen.append(cluster._impl.call(0, waits_of, flood)) or seen[-1],
                 "the flood to be held", timeout=30)
    finally:
        release.touch()
    assert cluster.wait_idle(60)

    assert seen[-1] == [{"on": "link", "id": collector}]
    assert cluster._impl.call(0, waits_of, flood) == []


def test_two_actors_flooding_each_other_across_engines_do_not_hold_each_other_up(cluster):
    a, b = _spawn_on(cluster, 0, Flood, "two-way"), _spawn_on(cluster, 1, Flood, "two-way")
    before = [_link(cluster, i, 1 - i)["valve_opened"] for i in (0, 1)]

    for me, other in ((a, b), (b, a)):
        _ask(cluster, me, ("go", other, 20_000, 100))
    assert cluster.wait_idle(120)

    assert _ask(cluster, a, "received") == _ask(cluster, b, "received") == 20_000
    # Each let go when the other's messages arrived, not by the valve a second later.
    assert [_link(cluster, i, 1 - i)["valve_opened"] for i in (0, 1)] == before


def test_a_message_that_does_not_unpickle_on_arrival_is_a_dead_letter_and_the_link_goes_on(
        cluster):
    _, receiver = _bad_then_good(cluster, "unloadable", "unloadable")
    cluster.send(receiver, Unloadable())                       # from the driver too
    cluster.send(receiver, "after, from the driver")
    assert cluster.wait_idle(60)        # the sender's "after" may follow its reply

    assert sorted(m for _, _, m, _ in _ask(cluster, receiver, "get")) == [
        "after", "after, from the driver"]

    def letters():
        return [d for d in cluster.dead_letters() if d.target_id == receiver]
    # Each sender records its dead letter when the refusal comes back to it,
    # which may be after the receiver has taken the next batch.
    wait_for(lambda: len(letters()) == 2, "the two dead letters", timeout=30)
    assert all("could not unpickle" in d.reason for d in letters())


def test_a_message_that_exits_when_unpickled_is_a_dead_letter_and_its_engine_goes_on(cluster):
    _, receiver = _bad_then_good(cluster, "exits", "exits")
    cluster.send(receiver, ExitsWhenUnpickled())               # from the driver too
    cluster.send(receiver, "after, from the driver")
    assert cluster.wait_idle(60)

    assert sorted(m for _, _, m, _ in _ask(cluster, receiver, "get")) == [
        "after", "after, from the driver"]
    wait_for(lambda: len([d for d in cluster.dead_letters() if d.target_id == receiver
                          and "SystemExit" in d.reason]) == 2, "the two dead letters")
    assert cluster.lost == {}


def test_a_batch_that_rides_back_and_does_not_unpickle_is_dead_letters_where_it_was_sent(
        cluster):
    starter = _spawn_on(cluster, 0, Remote, "ride-starter")
    sends_back = _spawn_on(cluster, 1, SendsBack, "ride-sends-back")
    before = _link(cluster, 1, 0)

    _ask(cluster, starter, ("send", sends_back, [("hit", 3)]))
    wait_for(lambda: _ask(cluster, sends_back, "outcome") != "pending", "the ask to end")

    after = _link(cluster, 1, 0)
    assert after["calls"] == before["calls"]            # it rode back: a batch, no call
    assert after["batches"] == before["batches"] + 1
    assert _ask(cluster, starter, ("got",)) == []      # one pickle: none of it arrived
    name, why = _ask(cluster, sends_back, "outcome")
    assert name == "ActorNotFound" and "engine 0 could not unpickle a batch from engine 1" in why
    letters = [d for d in cluster.dead_letters() if d.target_id == starter]
    assert sorted(d.envelope.message for d in letters if d.envelope.message.startswith(
        ("before", "after"))) == [f"{w}-{i}" for w in ("after", "before") for i in range(3)]
    assert len(letters) == 8                           # the 6, the unloadable, the ask
    assert all("could not unpickle a batch from engine 1" in d.reason for d in letters)


def test_asks_to_another_engine_that_time_out_unanswered_are_not_kept_for_good(cluster):
    asker = _spawn_on(cluster, 0, Remote, "forgetful-asker")
    holder = _spawn_on(cluster, 1, Holder, "never-answers")

    for _ in range(3):
        _ask(cluster, asker, ("asks", holder, 1000, 0.5))      # each sent before it times out
        time.sleep(0.8)                 # each timed out, and none answered
    kept = cluster._impl.call(0, asks_kept, 1)
    cluster.poison_pill(holder)

    assert kept <= 1000 + 1024          # the 3,000 would stay without the pruning


def test_an_ask_that_times_out_before_it_leaves_for_another_engine_leaves_nothing_kept(
        cluster):
    asker = _spawn_on(cluster, 0, Remote, "hasty-asker")
    holder = _spawn_on(cluster, 1, Holder, "holds-hasty-asks")

    # Batches of 50, 2 in flight: most of the 1,000 time out before their batch is packed.
    _ask(cluster, asker, ("asks", holder, 1000, 0.001))
    time.sleep(0.5)
    kept = cluster._impl.call(0, asks_kept, None)
    cluster.poison_pill(holder)

    assert kept == 0


def test_a_reply_that_does_not_unpickle_where_it_is_asked_fails_the_ask_and_says_why(cluster):
    asker = _spawn_on(cluster, 0, Remote, "unloadable-reply-asker")
    answerer = _spawn_on(cluster, 1, AnswersUnloadable, "unloadable-answerer")

    status, name, why = _ask(cluster, asker, ("ask", answerer, "q"))

    assert (status, name) == ("err", "RuntimeError")
    assert "the reply did not reach the asker" in why
    assert "engine 0 could not unpickle a batch from engine 1" in why


def test_an_exception_that_does_not_unpickle_still_fails_the_ask_and_says_what_it_was(
        cluster):
    asker = _spawn_on(cluster, 0, Remote, "two-arg-asker")
    raiser = _spawn_on(cluster, 1, RaisesTwoArgumentError, "two-arg-raiser")

    status, _, why = _ask(cluster, asker, ("ask", raiser, "q"))
    with pytest.raises(RuntimeError, match="TwoArgumentError: one and two"):
        _ask(cluster, raiser, "from the driver")

    assert status == "err" and "TwoArgumentError: one and two" in why
    assert _ask(cluster, asker, ("ask", raiser + "-none", "q"))[0] == "err"   # link still up


def test_a_cancelled_ask_from_the_driver_leaves_the_others_to_be_answered(cluster):
    holder = _id_on(cluster, 1, "cancel-holder")
    cluster.spawn_actor(Holder, holder)
    first = cluster.ask(holder, "first", timeout=30)
    second = cluster.ask(holder, "second", timeout=30)

    assert first.cancel()
    cluster.send(holder, "release")                 # both answered in one turn

    assert second.result(30) == "second"


def _rally_beside_a_backlog(cluster, prefix, chunk, slow_call):
    """Seconds of 30 round trips between engines 0 and 1 while an actor on engine 1
    works through 1,000,000 messages sent ``chunk`` a turn; and of that backlog."""
    backlogged = _id_on(cluster, 1, f"{prefix}-backlogged")
    loader = _id_on(cluster, 1, f"{prefix}-loader")
    sender = _id_on(cluster, 0, f"{prefix}-sender")
    a, b = _id_on(cluster, 0, f"{prefix}-rally-a"), _id_on(cluster, 1, f"{prefix}-rally-b")
    for actor_class, actor_id in ((Echo, backlogged), (Burst, loader), (Remote, sender),
                                  (Rally, a), (Rally, b)):
        cluster.spawn_actor(actor_class, actor_id)
    started = time.monotonic()
    _ask(cluster, loader, ("go", backlogged, 1_000_000, chunk))
    if slow_call:               # a call 0 -> 1 answered only once the backlog is worked off
        _ask(cluster, sender, ("send", backlogged, ["behind the backlog"]))
    rally_started = time.monotonic()
    assert _ask(cluster, a, ("go", b, 30)) == "done"
    rally = time.monotonic() - rally_started
    _ask(cluster, backlogged, "count", timeout=120)
    return rally, time.monotonic() - started


def test_messages_to_an_engine_busy_with_local_traffic_are_handled_between_its_turns(cluster):
    rally, backlog = _rally_beside_a_backlog(cluster, "busy-local", 1000, slow_call=False)

    assert rally < backlog / 2, (rally, backlog)


def test_a_slow_call_on_a_link_does_not_hold_up_the_answers_of_later_calls(cluster):
    rally, backlog = _rally_beside_a_backlog(cluster, "slow-call", 1_000_000, slow_call=True)

    assert rally < backlog / 2, (rally, backlog)


def test_an_ask_across_engines_fails_with_the_targets_exception(cluster):
    a = _id_on(cluster, 0, "fail-asker")
    cluster.spawn_actor(Remote, a)
    target = _id_on(cluster, 1, "fail-target")
    cluster.spawn_actor(Remote, target)

    answer = _ask(cluster, a, ("ask", target, ("boom",)))

    assert answer == ("err", "ValueError", "boom")


def test_per_sender_order_holds_from_several_senders_on_several_engines(cluster):
    collector = _id_on(cluster, 2, "order-collector")
    cluster.spawn_actor(Collector, collector)
    senders = [_id_on(cluster, e, f"order-sender{e}") for e in (0, 1, 0, 1)]
    senders = list(dict.fromkeys(senders))
    senders += [_id_on(cluster, e, f"order-sender-b{e}") for e in (0, 1)]
    for s in senders:
        cluster.spawn_actor(Burst, s)

    for s in senders:
        _ask(cluster, s, ("go", collector, 2000, 300))

    assert cluster.wait_idle(120)
    got = _ask(cluster, collector, "get")
    assert len(got) == 2000 * len(senders)
    for s in senders:
        assert [m for sender, _, m, _ in got if sender == s] == list(range(2000))


def test_a_driver_asks_done_callback_may_call_the_cluster(cluster):
    # It ran on Ray's I/O thread: a spawn_actor or stats there waited on Ray
    # from Ray's own thread, and hung the driver (and close) for good.
    echo = _id_on(cluster, 0, "callback-echo")
    cluster.spawn_actor(Echo, echo)
    done, seen = threading.Event(), {}

    def callback(future):
        seen["thread"] = threading.current_thread().name
        cluster.spawn_actor(Echo, "spawned-in-a-callback")
        seen["engines"] = len(cluster.stats())
        done.set()

    cluster.ask(echo, "hello", timeout=30).add_done_callback(callback)

    assert done.wait(60)
    assert seen == {"thread": "backstage-cluster-settler", "engines": 3}
    assert _ask(cluster, "spawned-in-a-callback", "hi") is not None


def test_waiting_for_an_ask_in_another_asks_done_callback_raises_at_once(cluster):
    echo = _id_on(cluster, 1, "callback-echo-b")
    cluster.spawn_actor(Echo, echo)
    done, seen = threading.Event(), {}

    def callback(future):
        try:
            cluster.ask(echo, "second", timeout=30).result(30)
        except backstage.BackstageError as exc:
            seen["error"] = str(exc)
        done.set()

    cluster.ask(echo, "first", timeout=30).add_done_callback(callback)

    assert done.wait(60)
    assert seen["error"].startswith("a done callback of a cluster ask waited for another ask")


def test_a_block_inbox_keeps_every_message_from_another_engine_and_the_driver_in_order(
        cluster):
    # They were dead letters "inbox full" past its capacity, as a send from the
    # engine's thread outside any actor: they wait in line now, and the link's
    # answer waits for them (back-pressure on the sending engine).
    sink = _id_on(cluster, 1, "block-sink")
    cluster.spawn_actor(SlowCollector, sink, capacity=8, overflow="block")
    producer = _id_on(cluster, 0, "block-producer")
    cluster.spawn_actor(Burst, producer)

    _ask(cluster, producer, ("go", sink, 400, 100))
    for i in range(200):
        cluster.send(sink, ("driver", i))

    assert cluster.wait_idle(120)
    got = _ask(cluster, sink, "get")
    assert [m for sender, _, m, _ in got if sender == producer] == list(range(400))
    assert [m[1] for _, _, m, _ in got if type(m) is tuple] == list(range(200))
    assert _ask(cluster, sink, "longest") <= 8
    assert not [d for d in cluster.dead_letters() if d.target_id == sink]


def test_per_sender_order_holds_both_ways_when_batches_ride_back_on_answers(cluster):
    pairs = [(_id_on(cluster, 0, "both-sender0"), _id_on(cluster, 1, "both-collector1")),
             (_id_on(cluster, 1, "both-sender1"), _id_on(cluster, 0, "both-collector0"))]
    for sender, collector in pairs:
        cluster.spawn_actor(Burst, sender)
        cluster.spawn_actor(Collector, collector)
    before = _link(cluster, 1, 0)

    for sender, collector in pairs:
        _ask(cluster, sender, ("go", collector, 3000, 100))

    assert cluster.wait_idle(120)
    after = _link(cluster, 1, 0)
    for sender, collector in pairs:
        got = _ask(cluster, collector, "get")
        assert [m for s, _, m, _ in got if s == sender] == list(range(3000))
    rode = (after["batches"] - before["batches"]) - (after["calls"] - before["calls"])
    assert rode > 0                      # some of engine 1's batches rode on answers


def test_publish_and_subscribe_across_engines(cluster):
    publisher = _spawn_on(cluster, 0, Remote, "pub")
    subscriber = _spawn_on(cluster, 1, Remote, "sub")

    _ask(cluster, subscriber, ("subscribe", publisher))
    assert cluster.wait_idle(60)        # the subscription has reached the publisher
    _ask(cluster, publisher, ("publish", ["news-1", "news-2"]))
    assert cluster.wait_idle(60)
    _ask(cluster, subscriber, ("unsubscribe", publisher))
    _ask(cluster, publisher, ("publish", ["news-3"]))
    assert cluster.wait_idle(60)

    assert _ask(cluster, subscriber, ("got",)) == [
        (publisher, "PUBLISH", "news-1", "default"), (publisher, "PUBLISH", "news-2", "default")]


def test_messages_from_another_engine_and_the_driver_wait_for_room_in_a_pools_block_routees(
        cluster):
    # As they do for an actor with a "block" inbox: they wait in line at the
    # routee (its sender is not here to pause), and the link's answer waits for
    # them.  They were dead letters, 192 of 200, saying to send from an actor.
    pool = _id_on(cluster, 1, "blocked-pool")
    cluster.spawn_actor(PoolKeeper, _id_on(cluster, 1, "pool-keeper"), pool, SlowCollector,
                        2, 4, "block", pin=1)
    sender = _spawn_on(cluster, 0, Remote, "pool-feeder")
    assert cluster.wait_idle(60)
    dead_before = len(cluster.dead_letters())

    _ask(cluster, sender, ("send", pool, list(range(100))))
    for i in range(100, 200):
        cluster.send(pool, i)
    assert cluster.wait_idle(120)

    got = [m for k in (0, 1) for _, _, m, _ in _ask(cluster, f"{pool}/{k}", "get")]
    assert sorted(got) == list(range(200))
    assert len(cluster.dead_letters()) == dead_before


def test_a_publication_forwarded_to_an_actor_on_another_engine_arrives_as_that_publication(
        cluster):
    # The targets never subscribed: the far engine keeps a publication only
    # for a subscriber, but a forwarded one is the forwarder's to pass on (it
    # was dropped there, with no dead letter).  Engine 1 forwards it again, to 2.
    publisher = _spawn_on(cluster, 0, Remote, "fwd-pub")
    here = _spawn_on(cluster, 0, Collector, "fwd-here")
    there = _spawn_on(cluster, 1, Collector, "fwd-there")
    further = _spawn_on(cluster, 2, Collector, "fwd-further")
    again = _spawn_on(cluster, 1, FanOut, "fwd-again", further, 1)
    _spawn_on(cluster, 0, Relay, "fwd-relay", publisher, [here, there, again])
    assert cluster.wait_idle(60)        # the subscription has reached the publisher
    dead_before = len(cluster.dead_letters())

    _ask(cluster, publisher, ("publish", ["headline"]))
    assert cluster.wait_idle(60)

    news = [(publisher, "PUBLISH", "headline", "default")]
    assert [_ask(cluster, c, "get") for c in (here, there, further)] == [news] * 3
    assert len(cluster.dead_letters()) == dead_before


def _subscribed(cluster, prefix):
    """A publisher on engine 0, and its subscriber on engine 1."""
    publisher = _spawn_on(cluster, 0, Remote, f"{prefix}-pub")
    subscriber = _spawn_on(cluster, 1, Remote, f"{prefix}-sub")
    _ask(cluster, subscriber, ("subscribe", publisher))
    assert cluster.wait_idle(60)
    return publisher, subscriber


def test_no_publication_reaches_a_subscriber_on_another_engine_after_it_unsubscribes(
        cluster, tmp_path):
    publisher, subscriber = _subscribed(cluster, "late")

    # The publisher's engine is blocked when the unsubscribe reaches it; then
    # the publisher publishes to the subscribers it still knows of.
    release = _blocked(cluster, publisher, tmp_path, then_publish=["late"])
    try:
        _ask(cluster, subscriber, ("unsubscribe", publisher))
    finally:
        release.touch()
    assert cluster.wait_idle(60)

    assert _ask(cluster, subscriber, ("got",)) == []


def test_a_publication_that_reaches_a_subscriber_on_another_engine_after_it_stopped_is_dropped(
        cluster, tmp_path):
    publisher, subscriber = _subscribed(cluster, "gone")

    # The publisher publishes before it hears that its subscriber stopped.
    release = _blocked(cluster, publisher, tmp_path, then_publish=["too late"])
    try:
        cluster.poison_pill(subscriber)
        wait_for(lambda: cluster._impl.call(1, known_of, [subscriber])[1] == [],
                 "the subscriber to stop")
    finally:
        release.touch()
    assert cluster.wait_idle(60)

    assert [d for d in cluster.dead_letters() if d.envelope.message == "too late"] == []


def test_subscribers_on_other_engines_lose_the_subscription_when_the_publisher_stops(cluster):
    publisher = _id_on(cluster, 1, "stopping-pub")
    subscribers = [_id_on(cluster, e, f"stopping-sub{e}") for e in (0, 2)]
    cluster.spawn_actor(Remote, publisher)
    for sub in subscribers:
        cluster.spawn_actor(Remote, sub)
        _ask(cluster, sub, ("subscribe", publisher))
    assert cluster.wait_idle(60)        # the subscriptions have reached the publisher
    _ask(cluster, publisher, ("publish", ["last"]))

    cluster.poison_pill(publisher)

    assert cluster.wait_idle(60)
    for sub in subscribers:
        assert _ask(cluster, sub, ("subscriptions",)) == []
        assert _ask(cluster, sub, ("got",)) == [(publisher, "PUBLISH", "last", "default")]


def test_monitor_across_engines_tells_terminated_when_the_remote_actor_stops(cluster, tmp_path):
    watcher = _spawn_on(cluster, 0, Remote, "mon-watcher")
    watched = _spawn_on(cluster, 1, Deinit, "mon-watched", str(tmp_path / "d.txt"))

    _ask(cluster, watcher, ("monitor", watched))
    _ask(cluster, watcher, ("pill", watched))
    assert cluster.wait_idle(60)

    assert _ask(cluster, watcher, ("got",)) == [
        (watched, "TERMINATED", backstage.Terminated(watched, "stopped by poison pill"), None)]


def test_a_message_to_a_pinned_actor_that_stopped_watched_from_its_hash_engine_ends(cluster):
    # The watcher's stand-in on the id's hash engine outlived the stop and sent
    # on to the engine the actor stopped on, whose stand-in (to the hash
    # engine) sent it back: the message went round between them for good.
    from backends.ray_transport import home_of
    target = next(f"watched-pinned-{i}" for i in range(1000)
                  if home_of(f"watched-pinned-{i}", 3) == 2)
    watcher = _spawn_on(cluster, 2, Remote, "pinned-watcher")
    cluster.spawn_actor(Echo, target, pin=1)
    _ask(cluster, watcher, ("monitor", target))
    cluster.poison_pill(target)
    assert cluster.wait_idle(60)
    assert [kind for _, kind, _, _ in _ask(cluster, watcher, ("got",))] == ["TERMINATED"]

    with pytest.raises(backstage.ActorNotFound, match="no such actor"):
        _ask(cluster, target, "after the stop", timeout=10)
    assert cluster.wait_idle(60)


def test_a_subscription_to_an_id_with_no_actor_on_another_engine_is_dropped(cluster):
    subscriber = _spawn_on(cluster, 0, Remote, "ghost-subscriber")
    ghost = _id_on(cluster, 1, "ghost-publisher")

    _ask(cluster, subscriber, ("subscribe", ghost))     # no error: that would take a round trip
    assert cluster.wait_idle(60)
    cluster.spawn_actor(Remote, ghost)                  # a publisher, after the fact
    _ask(cluster, ghost, ("publish", ["not for the subscriber"]))
    assert cluster.wait_idle(60)

    assert _ask(cluster, subscriber, ("subscriptions",)) == []
    assert _ask(cluster, subscriber, ("got",)) == []


def test_a_watcher_that_stops_leaves_the_monitors_of_an_actor_on_another_engine(cluster):
    watcher = _spawn_on(cluster, 0, Remote, "stale-watcher")
    watched = _spawn_on(cluster, 1, Remote, "stale-watched")
    _ask(cluster, watcher, ("monitor", watched))
    cluster.poison_pill(watcher)
    assert cluster.wait_idle(60)

    cluster.spawn_actor(Remote, watcher)       # a new actor under the id: it watches nothing
    held = cluster._impl.call(1, lambda engine: len(engine._registry[watched]._monitors or {}))
    cluster.poison_pill(watched)
    assert cluster.wait_idle(60)

    assert held == 0
    assert _ask(cluster, watcher, ("got",)) == []


def test_an_actor_spawns_an_actor_whose_id_every_engine_then_reaches(cluster):
    spawner = _id_on(cluster, 0, "spawner")
    child = _id_on(cluster, 1, "spawned-elsewhere")     # its hash says engine 1
    cluster.spawn_actor(Remote, spawner)
    asker = _id_on(cluster, 2, "spawn-asker")
    cluster.spawn_actor(Remote, asker)

    assert _ask(cluster, spawner, ("spawn", Echo, child)) == 0
    assert cluster.wait_idle(60)
    answer = _ask(cluster, asker, ("ask", child, "where"))   # engine 2, told by engine 0
    via_home = _ask(cluster, child, "x")                      # the driver: via engine 1

    assert answer == ("ok", ("where", 0, (), {}))
    assert via_home == ("x", 0, (), {})


def test_get_engine_of_an_id_an_actor_spawned_on_its_own_engine_names_that_engine(cluster):
    spawner = _spawn_on(cluster, 0, Remote, "where-spawner")
    child = _id_on(cluster, 1, "where-spawned")          # its hash says engine 1
    assert _ask(cluster, spawner, ("spawn", Echo, child)) == 0
    assert cluster.wait_idle(60)      # engine 1 has been told where the id lives

    assert cluster.get_engine_of(child) == 0


def test_get_engine_of_refuses_an_id_that_is_not_a_str(cluster):
    with pytest.raises(TypeError, match="str actor id"):
        cluster.get_engine_of(17)


# -- placement: one id, one engine -----------------------------------------------

def test_pinning_an_id_that_is_live_on_another_engine_is_refused_at_the_call(cluster):
    actor_id = _id_on(cluster, 1, "live-elsewhere")
    cluster.spawn_actor(Echo, actor_id)

    with pytest.raises(ValueError, match=rf"^cannot pin '{actor_id}' to engine 2: an actor "
                                         r"with that id is live on engine 1; stop it first"):
        cluster.spawn_actor(Echo, actor_id, pin=2)

    assert cluster.get_engine_of(actor_id) == 1
    assert _ask(cluster, actor_id, "x")[1] == 1


def test_a_pin_reroutes_the_stand_ins_that_other_engines_made_for_the_id(cluster):
    sender = _id_on(cluster, 0, "reroute-sender")
    target = _id_on(cluster, 1, "reroute-target")        # its hash says engine 1
    cluster.spawn_actor(Remote, sender)
    _ask(cluster, sender, ("send", target, ["before"]))  # a stand-in on 0, pointing at 1
    assert cluster.wait_idle(60)

    cluster.spawn_actor(Collector, target, pin=2)
    _ask(cluster, sender, ("send", target, ["after"]))

    assert cluster.wait_idle(60)
    assert _ask(cluster, target, "get") == [(sender, "SEND", "after", None)]
    assert cluster.get_engine_of(target) == 2


def test_a_pin_onto_the_engine_that_held_a_stand_in_for_the_id_places_the_actor_there(cluster):
    sender = _id_on(cluster, 0, "home-sender")
    target = _id_on(cluster, 1, "home-target")
    cluster.spawn_actor(Remote, sender)
    _ask(cluster, sender, ("send", target, ["before"]))  # a stand-in on 0
    assert cluster.wait_idle(60)

    cluster.spawn_actor(Collector, target, pin=0)
    _ask(cluster, sender, ("send", target, ["after"]))

    assert _ask(cluster, target, "get") == [(sender, "SEND", "after", None)]
    assert _ask(cluster, sender, ("where",)) == 0


def test_an_actor_cannot_spawn_an_id_the_cluster_places_on_another_engine(cluster):
    pinned = _id_on(cluster, 1, "placed-on-2")
    cluster.spawn_actor(Echo, pinned, pin=2)
    spawner = _id_on(cluster, 0, "would-split")
    cluster.spawn_actor(Remote, spawner)

    with pytest.raises(ValueError, match=rf"^cannot spawn '{pinned}' on engine 0: the cluster "
                                         r"places it on engine 2; spawn it from the driver"):
        _ask(cluster, spawner, ("spawn", Echo, pinned))

    assert _ask(cluster, pinned, "x")[1] == 2


@pytest.mark.parametrize("pin", [None, 1], ids=["by its hash", "pinned to its hash engine"])
def test_an_actor_cannot_spawn_an_id_the_driver_spawned_on_another_engine(cluster, pin):
    spawned = _id_on(cluster, 1, f"driver-spawned-{pin}")
    cluster.spawn_actor(Echo, spawned, pin=pin)
    spawner = _spawn_on(cluster, 0, Remote, "second-spawner")

    with pytest.raises(ValueError, match=rf"^cannot spawn '{spawned}' on engine 0: the "
                                         r"cluster places it on engine 1"):
        _ask(cluster, spawner, ("spawn", Echo, spawned))

    assert _ask(cluster, spawned, "x")[1] == 1


def test_an_actor_cannot_spawn_an_id_an_actor_spawned_on_its_hash_engine(cluster):
    first = _spawn_on(cluster, 1, Remote, "hash-spawner")
    second = _spawn_on(cluster, 0, Remote, "other-spawner")
    child = _id_on(cluster, 1, "hash-child")
    assert _ask(cluster, first, ("spawn", Echo, child)) == 1
    assert cluster.wait_idle(60)                 # the engines have heard where it lives

    with pytest.raises(ValueError, match=rf"^cannot spawn '{child}' on engine 0: the cluster "
                                         r"places it on engine 1"):
        _ask(cluster, second, ("spawn", Echo, child))

    assert cluster.get_engine_of(child) == 1


def test_every_engine_forgets_an_actor_that_stopped_and_drops_its_idle_stand_ins(cluster):
    spawner = _spawn_on(cluster, 0, Remote, "forget-spawner")
    sender = _spawn_on(cluster, 1, Remote, "forget-sender")
    ids = [_id_on(cluster, 2, f"short-lived-{k}") for k in range(20)]    # hash: engine 2
    for actor_id in ids:
        assert _ask(cluster, spawner, ("spawn", Echo, actor_id)) == 0
    for actor_id in ids:
        _ask(cluster, sender, ("send", actor_id, ["hello"]))    # a stand-in on 1 for each
    assert cluster.wait_idle(60)
    assert [cluster._impl.call(e, known_of, ids) for e in range(3)] == [
        (ids, ids), (ids, ids), (ids, [])]          # every engine knows where they live

    for actor_id in ids:
        cluster.poison_pill(actor_id)
    assert cluster.wait_idle(60)

    wait_for(lambda: all(cluster._impl.call(e, known_of, ids) == ([], []) for e in range(3)),
             "every engine to forget the stopped actors")


def test_an_actor_that_followed_and_watched_one_on_another_engine_leaves_no_record_there(
        cluster):
    room = _spawn_on(cluster, 1, Remote, "followed-room")
    guests = [_spawn_on(cluster, 0, Remote, f"follower{k}") for k in range(5)]
    for guest in guests:
        _ask(cluster, guest, ("subscribe", room))
        _ask(cluster, guest, ("monitor", room))
    assert cluster.wait_idle(60)
    assert cluster._impl.call(1, known_of, guests) == (guests, guests)   # stand-ins there

    for guest in guests:
        cluster.poison_pill(guest)    # it unsubscribes and demonitors as it stops
    assert cluster.wait_idle(60)

    wait_for(lambda: cluster._impl.call(1, known_of, guests) == ([], []),
             "the room's engine to forget the guests")


def test_a_sweep_drops_the_stand_ins_that_were_not_used_since_the_last_and_sends_go_on(cluster):
    sender = _spawn_on(cluster, 0, Remote, "sweep-sender")
    live = _spawn_on(cluster, 1, Collector, "sweep-live")
    busy = _spawn_on(cluster, 1, Collector, "sweep-busy")
    never = _id_on(cluster, 1, "sweep-never-lived")
    for target in (live, busy, never):
        _ask(cluster, sender, ("send", target, ["first"]))
    assert cluster.wait_idle(60)
    ids = [live, busy, never]
    assert cluster._impl.call(0, known_of, ids)[1] == ids        # a stand-in for each

    cluster._impl.call(0, sweep_stand_ins)         # notes what each has handed over
    _ask(cluster, sender, ("send", busy, ["between"]))
    assert cluster.wait_idle(60)
    assert cluster._impl.call(0, sweep_stand_ins) >= 2    # those of earlier tests too

    assert cluster._impl.call(0, known_of, ids)[1] == [busy]
    _ask(cluster, sender, ("send", live, ["second"]))          # made anew
    assert cluster.wait_idle(60)
    assert _ask(cluster, live, "get") == [(sender, "SEND", "first", None),
                                          (sender, "SEND", "second", None)]


def test_a_stand_in_for_a_publisher_that_stopped_goes_with_its_last_notice(cluster):
    publisher = _spawn_on(cluster, 1, Remote, "stopping-publisher")
    follower = _spawn_on(cluster, 0, Remote, "its-follower")
    _ask(cluster, follower, ("subscribe", publisher))
    assert cluster.wait_idle(60)
    assert cluster._impl.call(0, known_of, [publisher])[1] == [publisher]

    cluster.poison_pill(publisher)
    assert cluster.wait_idle(60)

    wait_for(lambda: cluster._impl.call(0, known_of, [publisher]) == ([], []),
             "the follower's engine to forget the publisher")


def test_the_driver_forgets_its_pins_of_actors_that_stopped_once_it_has_many(
        cluster, monkeypatch):
    stopped = [_id_on(cluster, 0, f"driver-pinned-{k}") for k in range(5)]   # hash: engine 0
    for actor_id in stopped:
        cluster.spawn_actor(Echo, actor_id, pin=1)          # moved: the driver keeps a pin
    assert [cluster._impl._pins.get(i) for i in stopped] == [1] * 5
    for actor_id in stopped:
        cluster.poison_pill(actor_id)
    assert cluster.wait_idle(60)
    wait_for(lambda: cluster._impl.call(1, known_of, stopped) == ([], []),
             "engine 1 to forget them")

    monkeypatch.setattr(cluster._impl, "_pins_checked_at", 0)     # "many" now
    live = _id_on(cluster, 0, "driver-pinned-live")
    cluster.spawn_actor(Echo, live, pin=2)

    assert [i for i in stopped + [live] if i in cluster._impl._pins] == [live]
    assert _ask(cluster, live, "where are you")[1] == 2


def test_publications_reach_a_new_life_of_a_subscriber_through_a_stand_in_of_its_last(
        cluster):
    publisher = _spawn_on(cluster, 0, Remote, "relives-publisher")
    watcher = _spawn_on(cluster, 0, Remote, "relives-watcher")
    first, second = (_spawn_on(cluster, e, Remote, f"relives-spawner{e}") for e in (1, 2))
    subscriber = _id_on(cluster, 0, "relives-subscriber")
    assert _ask(cluster, first, ("spawn", Remote, subscriber)) == 1
    assert cluster.wait_idle(60)
    _ask(cluster, watcher, ("monitor", subscriber))   # engine 0's stand-in for it, to 1
    _ask(cluster, subscriber, ("subscribe", publisher))
    assert cluster.wait_idle(60)
    _ask(cluster, first, ("pill", subscriber))
    assert cluster.wait_idle(60)

    assert _ask(cluster, second, ("spawn", Remote, subscriber)) == 2   # its next life
    assert cluster.wait_idle(60)
    _ask(cluster, subscriber, ("subscribe", publisher))
    assert cluster.wait_idle(60)
    _ask(cluster, publisher, ("publish", ["news"]))
    assert cluster.wait_idle(60)

    assert _ask(cluster, subscriber, ("got",)) == [(publisher, "PUBLISH", "news", "default")]


def test_an_id_that_stopped_on_one_engine_can_be_spawned_by_an_actor_on_another(cluster):
    first = _spawn_on(cluster, 1, Remote, "respawn-first")
    second = _spawn_on(cluster, 0, Remote, "respawn-second")
    sender = _spawn_on(cluster, 2, Remote, "respawn-sender")
    moving = _id_on(cluster, 2, "respawned")
    assert _ask(cluster, first, ("spawn", Collector, moving)) == 1
    assert cluster.wait_idle(60)                 # the engines have heard where it lives
    _ask(cluster, sender, ("send", moving, ["to the first"]))
    assert cluster.wait_idle(60)
    assert _ask(cluster, moving, "get") == [(sender, "SEND", "to the first", None)]
    _ask(cluster, first, ("pill", moving))
    assert cluster.wait_idle(60)

    assert _ask(cluster, second, ("spawn", Collector, moving)) == 0
    assert cluster.wait_idle(60)
    _ask(cluster, sender, ("send", moving, ["to the second"]))

    assert cluster.wait_idle(60)
    assert _ask(cluster, moving, "get") == [(sender, "SEND", "to the second", None)]
    assert cluster.get_engine_of(moving) == 0


def test_an_actor_cannot_spawn_an_id_its_engine_sends_to_another_engine(cluster):
    spawner = _id_on(cluster, 0, "standin-spawner")
    target = _id_on(cluster, 1, "standin-target")
    cluster.spawn_actor(Remote, spawner)
    _ask(cluster, spawner, ("send", target, ["x"]))      # a stand-in on 0

    with pytest.raises(ValueError, match=rf"^cannot spawn '{target}' here: this engine sends"):
        _ask(cluster, spawner, ("spawn", Echo, target))

    with pytest.raises(backstage.ActorNotFound):
        _ask(cluster, target, "x")


def test_the_driver_cannot_spawn_again_an_id_an_actor_placed_on_another_engine(cluster):
    spawner = _id_on(cluster, 0, "first-spawner")
    child = _id_on(cluster, 1, "first-child")
    cluster.spawn_actor(Remote, spawner)
    assert _ask(cluster, spawner, ("spawn", Echo, child)) == 0
    assert cluster.wait_idle(60)             # every engine has heard where it lives

    with pytest.raises(ValueError, match=rf"^cannot spawn '{child}' on engine 1: the cluster "
                                         r"places it on engine 0"):
        cluster.spawn_actor(Echo, child)

    assert _ask(cluster, spawner, ("ask", child, "x")) == ("ok", ("x", 0, (), {}))


def test_asks_from_the_driver_left_unanswered_do_not_hold_up_its_other_calls(cluster):
    silent = _id_on(cluster, 1, "silent")
    cluster.spawn_actor(Holder, silent)
    asks = [cluster.ask(silent, i, timeout=12) for i in range(40)]
    time.sleep(0.5)                                 # every ask waits on engine 1 by now
    done = threading.Event()

    def other_calls():
        cluster.spawn_actor(Echo, _id_on(cluster, 1, "beside-silent"))
        cluster.stats()
        done.set()
    threading.Thread(target=other_calls, daemon=True).start()

    assert done.wait(8)                             # well before the asks time out
    for ask in asks:
        with pytest.raises(TimeoutError):
            ask.result(30)


def test_a_driver_ask_times_out_from_the_call_while_its_engine_holds_up_the_driver_window(
        cluster):
    dozer = _spawn_on(cluster, 2, Dozer, "dozer")
    echo = _spawn_on(cluster, 2, Echo, "beside-dozer")
    # Each send a call of its own, answered once the dozer has taken its
    # message: the second and third fill the session cluster's window of 2.
    for _ in range(3):
        cluster.send(dozer, 2.0)
        time.sleep(0.2)
    ask = cluster.ask(echo, "hi", timeout=0.3)
    # Without a clock of its own, the ask would reach engine 2 only after the
    # first 2 s doze, and then be answered.
    failure = ask.exception(timeout=1.2)
    assert isinstance(failure, TimeoutError)
    assert str(failure) == f"no reply from {echo!r} within 0.3 s"
    assert cluster.wait_idle(30)


def test_wait_idle_returns_when_every_message_is_handled(cluster):
    collector = _id_on(cluster, 1, "idle-collector")
    cluster.spawn_actor(Collector, collector)
    burst = _id_on(cluster, 0, "idle-burst")
    cluster.spawn_actor(Burst, burst)

    _ask(cluster, burst, ("go", collector, 5000, 500))

    assert cluster.wait_idle(120)
    assert len(_ask(cluster, collector, "get")) == 5000


def test_nothing_ray_started_listens_beyond_loopback(cluster):
    pids = _descendants(os.getpid())

    listening = _listening_sockets_of(pids)
    assert listening, "expected Ray's own listening sockets"
    assert all(_is_loopback(addr) for addr, _ in listening), listening
    if shutil.which("ss"):                  # the same, as ss(8) reports it
        seen = _ss_listening(pids)
        assert seen and all(_is_loopback(addr) for addr, _ in seen), seen


# -- lost engines ---------------------------------------------------------------

def test_an_engine_killed_mid_traffic_leaves_every_message_delivered_or_dead_lettered(
        cluster, tmp_path):
    # A cluster of its own on the same Ray: killing one of its engines spares the others.
    path = tmp_path / "delivered.txt"
    with _like(cluster, engines=2, batch_limit=20, window=2,
                dead_letters_kept=10000) as doomed:
        sender = _id_on(doomed, 0, "kill-sender")
        receiver = _id_on(doomed, 1, "kill-receiver")
        watcher = _id_on(doomed, 0, "kill-watcher")
        doomed.spawn_actor(Burst, sender)
        doomed.spawn_actor(Writer, receiver, str(path), 0.001)
        doomed.spawn_actor(Remote, watcher)
        _ask(doomed, watcher, ("monitor", receiver))
        pending = doomed.ask(watcher, ("ask", receiver, "never answered"), timeout=60)
        total = 3000

        _ask(doomed, sender, ("go", receiver, total, 100))
        while not path.exists() or path.stat().st_size < 200:
            time.sleep(0.01)
        doomed.kill_engine(1)
        assert doomed.wait_idle(60)

        delivered = {int(line) for line in path.read_text().split()}
        letters = [(d.envelope.message, d.reason) for d in doomed.dead_letters()
                   if d.target_id == receiver and isinstance(d.envelope.message, int)]
        dead = {m for m, _ in letters}
        possibly = {m for m, reason in letters if "possibly delivered" in reason}
        assert delivered | dead == set(range(total))
        assert delivered & dead <= possibly
        assert 0 < len(delivered) < total
        told = [m for _, kind, m, _ in _ask(doomed, watcher, ("got",)) if kind == "TERMINATED"]
        assert [t.actor_id for t in told] == [receiver]
        assert "engine 1 lost" in told[0].reason
        assert pending.result(30)[0] == "err"
        doomed.send(receiver, 1)                       # later sends: dead letters
        assert any(d.target_id == receiver for d in doomed.dead_letters())


def test_an_engine_whose_process_is_killed_tells_monitors_and_fails_asks(cluster):
    with _like(cluster, engines=2) as doomed:
        target = _id_on(doomed, 1, "sigkill-target")
        watcher = _id_on(doomed, 0, "sigkill-watcher")
        doomed.spawn_actor(Writer, target, os.devnull)
        doomed.spawn_actor(Remote, watcher)
        _ask(doomed, watcher, ("monitor", target))
        pending = doomed.ask(watcher, ("ask", target, "never answered"), timeout=60)
        holder = _id_on(doomed, 1, "sigkill-holder")
        doomed.spawn_actor(Holder, holder)
        held = doomed.ask(holder, "held until the engine dies", timeout=60)
        pid = next(s["pid"] for s in doomed.stats() if s["engine"] == 1)

        os.kill(pid, signal.SIGKILL)            # as a crash would: no Ray call involved
        while 1 not in doomed.lost:
            time.sleep(0.01)
        assert doomed.wait_idle(60)             # engine 0 has handled the loss too

        told = [m for _, kind, m, _ in _ask(doomed, watcher, ("got",)) if kind == "TERMINATED"]
        assert [t.actor_id for t in told] == [target]
        assert "engine 1 lost" in told[0].reason
        assert pending.result(30)[0] == "err"
        with pytest.raises(backstage.ActorNotFound, match="engine 1 lost"):
            held.result(30)                     # the driver's own ask, pending there
        with pytest.raises(backstage.ActorNotFound, match="engine 1 lost"):
            _ask(doomed, target, "ping")


def test_the_driver_still_reaches_an_actor_spawned_away_from_its_lost_hash_engine(cluster):
    with _like(cluster, engines=3) as doomed:
        spawner = _spawn_on(doomed, 0, Remote, "away-spawner")
        away = _id_on(doomed, 1, "away-child")           # its hash says engine 1
        assert _ask(doomed, spawner, ("spawn", Collector, away)) == 0
        assert doomed.wait_idle(60)

        lived = _spawn_on(doomed, 1, Collector, "lived-on-the-lost-engine")

        doomed.kill_engine(1)
        while 1 not in doomed.lost:
            time.sleep(0.01)
        doomed.send(away, "from the driver")
        assert doomed.wait_idle(60)

        # Where an id that lived on the lost engine is: asked of a live engine
        # once, not at every send (each was a Ray call).
        asked = []
        ask_where = doomed._impl._ask_where
        doomed._impl._ask_where = lambda actor_id: asked.append(actor_id) or ask_where(actor_id)
        for i in range(20):
            doomed.send(lived, i)
        assert asked == [lived]
        assert len([d for d in doomed.dead_letters() if d.target_id == lived]) == 20

        assert doomed.get_engine_of(away) == 0
        assert _ask(doomed, away, "get") == [(None, "SEND", "from the driver", None)]
        assert [d for d in doomed.dead_letters() if d.target_id == away] == []

        late = _id_on(doomed, 1, "late-child")           # sent to before it is spawned
        doomed.send(late, "too early")
        assert _ask(doomed, spawner, ("spawn", Collector, late)) == 0
        assert doomed.wait_idle(60)
        doomed.send(late, "in time")
        assert doomed.wait_idle(60)
        assert _ask(doomed, late, "get") == [(None, "SEND", "in time", None)]
        assert [d.envelope.message for d in doomed.dead_letters()
                if d.target_id == late] == ["too early"]
        with pytest.raises(backstage.BackstageError, match=r"on engine 1: engine 1 lost.*; pass "
                                                           r"pin= one of the live engines "
                                                           r"\[0, 2\] to spawn it there$"):
            doomed.spawn_actor(Echo, _id_on(doomed, 1, "after-the-loss"))


def test_the_driver_keeps_its_newest_dead_letters_up_to_dead_letters_kept_also_after_close(
        cluster):
    with _like(cluster, engines=2, dead_letters_kept=5) as doomed:
        lost = _spawn_on(doomed, 1, Collector, "kept-lost")
        doomed.kill_engine(1)
        while 1 not in doomed.lost:
            time.sleep(0.01)
        for i in range(20):
            doomed.send(lost, i)            # dead letters of the driver's own
        assert [d.envelope.message for d in doomed.dead_letters()
                if d.target_id == lost] == [15, 16, 17, 18, 19]
    assert [d.envelope.message for d in doomed.dead_letters()] == [15, 16, 17, 18, 19]


def test_a_driver_spawn_on_an_engine_lost_during_it_raises_a_backstage_error(cluster):
    # It raised Ray's own ActorDiedError, with Ray's actor ids in it.
    with _like(cluster, engines=2) as doomed:
        slow = _id_on(doomed, 1, "slow-to-make")
        killer = threading.Timer(1.0, doomed.kill_engine, (1,))
        killer.start()
        with pytest.raises(backstage.BackstageError,
                           match=r"^cannot spawn 'slow-to-make-\d+' on engine 1: engine 1 was "
                                 r"lost during the spawn .*; pass pin= one of the live "
                                 r"engines \[0\] to spawn it there$"):
            doomed.spawn_actor(SlowInit, slow, 5.0)
        killer.join()


def test_subscribers_to_a_publisher_on_a_lost_engine_lose_the_subscription(cluster):
    with _like(cluster, engines=2) as doomed:
        publisher = _id_on(doomed, 1, "lost-publisher")
        subscriber = _id_on(doomed, 0, "lost-subscriber")
        doomed.spawn_actor(Remote, publisher)
        doomed.spawn_actor(Remote, subscriber)
        _ask(doomed, subscriber, ("subscribe", publisher))
        _ask(doomed, subscriber, ("monitor", publisher))
        assert _ask(doomed, subscriber, ("subscriptions",)) == [(publisher, "default")]

        doomed.kill_engine(1)
        while 1 not in doomed.lost:
            time.sleep(0.01)
        assert doomed.wait_idle(60)

        assert _ask(doomed, subscriber, ("subscriptions",)) == []
        told = [m for _, kind, m, _ in _ask(doomed, subscriber, ("got",))
                if kind == "TERMINATED"]
        assert [t.actor_id for t in told] == [publisher]


def test_the_actors_of_a_lost_engine_can_be_spawned_again_on_live_ones_with_pin(cluster):
    with _like(cluster, engines=3, ray_init=RAY_INIT) as doomed:
        by_driver = _id_on(doomed, 1, "lost-by-driver")
        doomed.spawn_actor(Echo, by_driver)
        spawner = _spawn_on(doomed, 1, Remote, "lost-spawner")
        by_actor = _id_on(doomed, 0, "lost-by-actor")
        at_home = _id_on(doomed, 0, "lost-at-home")           # pinned to its hash engine
        for actor_id in (by_actor, at_home):
            assert _ask(doomed, spawner, ("spawn", Echo, actor_id)) == 1
        assert doomed.wait_idle(60)

        doomed.kill_engine(1)
        while 1 not in doomed.lost:
            time.sleep(0.01)
        assert doomed.wait_idle(60)

        doomed.spawn_actor(Echo, by_driver, pin=0)
        doomed.spawn_actor(Echo, by_actor, pin=2)
        doomed.spawn_actor(Echo, at_home, pin=0)
        assert _ask(doomed, by_driver, "back")[1] == 0
        assert _ask(doomed, by_actor, "back")[1] == 2
        assert _ask(doomed, at_home, "back")[1] == 0

        doomed.poison_pill(by_actor)            # the lost engine's claim does not come back
        assert doomed.wait_idle(60)
        respawner = _spawn_on(doomed, 0, Remote, "lost-respawner")
        assert _ask(doomed, respawner, ("spawn", Echo, by_actor)) == 0


def test_an_ask_from_the_driver_fails_when_the_engine_is_lost(cluster):
    with _like(cluster, engines=2) as doomed:
        target = _id_on(doomed, 1, "lost-target")
        doomed.spawn_actor(Writer, target, os.devnull)
        _ask(doomed, target, "ping")

        doomed.kill_engine(1)
        while 1 not in doomed.lost:
            time.sleep(0.01)

        with pytest.raises(backstage.ActorNotFound, match="engine 1 lost"):
            _ask(doomed, target, "ping")


def test_a_driver_proxy_made_right_after_its_engine_is_killed_fails_with_actor_not_found(
        cluster):
    with _like(cluster, engines=2) as doomed:
        ledger = _spawn_on(doomed, 1, Ledger, "proxy-lost")
        doomed.kill_engine(1)

        with pytest.raises(backstage.ActorNotFound, match="engine 1 lost"):
            doomed.proxy(ledger)                    # not Ray's ActorDiedError
        with pytest.raises(backstage.ActorNotFound, match="engine 1 lost"):
            doomed.proxy(ledger, Ledger).deposit(1).result(30)


def test_a_spread_pool_routes_to_the_routees_left_when_one_engine_is_lost(cluster):
    with _like(cluster, engines=3, ray_init=RAY_INIT) as doomed:
        pool = _id_on(doomed, 0, "spread-lost")
        doomed.spawn_pool(Echo, pool, 3, spread=True)
        doomed.kill_engine(2)
        while 2 not in doomed.lost:
            time.sleep(0.01)
        assert doomed.wait_idle(60)

        engines = [_ask(doomed, pool, "hi")[1] for _ in range(4)]
        after = _id_on(doomed, 0, "spread-after-loss")
        doomed.spawn_pool(Echo, after, 4, spread=True)          # over the live engines

        assert sorted(engines) == [0, 0, 1, 1]
        assert sorted(_ask(doomed, after, "hi")[1] for _ in range(4)) == [0, 0, 1, 1]


def test_wait_idle_that_times_out_on_a_busy_engine_holds_up_no_other_driver_call(cluster):
    # More timed-out waits than an engine has threads for the driver's other calls.
    spinner = _id_on(cluster, 0, "never-idle")
    cluster.spawn_actor(Spins, spinner)
    cluster.send(spinner, "spin")
    waits = [cluster.wait_idle(0.2) for _ in range(6)]

    done = []
    others = threading.Thread(target=lambda: done.extend(
        [cluster.stats(), cluster.spawn_actor(Echo, "spawned-beside-a-spinner", pin=0)]))
    others.start()
    others.join(30)
    held_up = others.is_alive()
    cluster.poison_pill(spinner)
    others.join(60)

    assert waits == [False] * 6
    assert not held_up and len(done) == 2
    assert cluster.wait_idle(60)


@pytest.mark.parametrize("call", ["send", "ask"])
def test_a_send_or_ask_under_way_in_another_thread_as_close_runs_raises_engine_closed(
        cluster, call):
    racing = _make_cluster(2)
    racing.spawn_actor(Echo, "racer", pin=0)
    outcome = []

    def send_or_ask():
        try:
            outcome.append(getattr(racing, call)("racer", SlowPickle(2.0)))
        except Exception as exc:
            outcome.append(exc)

    caller = threading.Thread(target=send_or_ask)
    caller.start()
    time.sleep(0.3)                     # pickling its message, past the first check
    racing.close()
    caller.join(30)

    assert isinstance(outcome[0], backstage.EngineClosed), outcome
    assert "the cluster is closed" in str(outcome[0])


def test_asks_the_driver_had_not_sent_when_the_cluster_closed_fail_with_engine_closed(cluster):
    closing = _make_cluster(2, batch_limit=10, window=1)
    closing.spawn_actor(Echo, "closing-echo", pin=0)
    asks = [closing.ask("closing-echo", i, timeout=30) for i in range(3000)]

    closing.close()

    failures = [ask.exception(30) for ask in asks if ask.exception(30) is not None]
    assert failures and {type(failure) for failure in failures} == {backstage.EngineClosed}


def test_closing_a_cluster_runs_every_deinit_once(cluster, tmp_path):
    path = tmp_path / "deinit.txt"
    with _make_cluster(2) as two:
        for i in range(6):
            two.spawn_actor(Deinit, f"closing-{i}", str(path))

    assert sorted(path.read_text().split()) == [f"closing-{i}" for i in range(6)]


def test_with_the_inspector_on_every_engine_of_the_cluster_is_found_with_its_actors(cluster):
    import inspector_curses
    with _make_cluster(2, inspector=True) as watched:
        for i in range(3):
            watched.spawn_actor(Echo, f"inspected-{i}", pin=i % 2)

        paths = [s["inspector"] for s in watched.stats()]
        found = {e.path for e in inspector_curses.find_engines()}
        assert set(paths) <= found and len(set(paths)) == 2
        counts = []
        for path in paths:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
                sock.settimeout(30)
                lines = sock.makefile()
                snapshot = json.loads(lines.readline())
                while snapshot.get("type") != "snapshot":
                    snapshot = json.loads(lines.readline())
            counts.append(snapshot["engine"]["actors"])
        assert counts == [2, 1]


def _inspected_cluster(feeds):
    """Two engines serving their feeds in ``feeds``: on engine 0 a sender and an echo,
    on engine 1 a collector and an echo; five messages crossed from 0 to 1."""
    c = _make_cluster(2, inspector=str(feeds), name="inspected")
    c.spawn_actor(Remote, "insp-sender", pin=0)
    c.spawn_actor(Echo, "insp-echo-0", pin=0)
    c.spawn_actor(Collector, "insp-collector", pin=1)
    c.spawn_actor(Echo, "insp-echo-1", pin=1)
    _ask(c, "insp-sender", ("send", "insp-collector", list(range(5))))
    assert c.wait_idle(60)
    return c


def _cells(line):
    """An engine or cluster row of the inspector's cluster table, as its cells."""
    words = line.split()
    head = " ".join(words[:2]) if words[0] == "engine" else words[0]
    return [head] + words[2 if words[0] == "engine" else 1:]


def test_inspector_once_prints_every_engine_of_a_cluster_with_the_clusters_totals(cluster):
    feeds = Path(tempfile.mkdtemp(prefix="bsc-", dir="/tmp"))
    try:
        with _inspected_cluster(feeds) as c:
            pids = sorted(s["pid"] for s in c.stats())

            out = subprocess.run([sys.executable, str(ROOT / "inspector_curses.py"), str(feeds),
                                  "--once"], capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(feeds, ignore_errors=True)

    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "cluster inspected: 2 of 2 engines on this machine"
    assert lines[1].split() == ["ENGINE", "PID", "STATE", "ACTORS", "MSGS/S", "TOTAL", "TO",
                                "OTHERS", "DEAD", "BUSY", "WAITING"]
    e0, e1, total = (_cells(line) for line in lines[2:5])
    assert (e0[0], e0[2], e0[3], e0[6], e0[-1]) == ("engine 0", "live", "2", "5", "0")
    assert (e1[0], e1[2], e1[3], e1[6], e1[-1]) == ("engine 1", "live", "2", "0", "0")
    assert sorted([int(e0[1]), int(e1[1])]) == pids
    assert total[:3] == ["cluster", "2", "live"]
    assert int(total[3]) == 4 and int(total[6]) == 5       # actors, sent to other engines
    assert int(total[5]) == int(e0[5]) + int(e1[5])         # messages handled


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_inspector_lists_every_engine_of_a_cluster_and_opens_each(cluster):
    from test_inspector_tmux import Tmux
    feeds = Path(tempfile.mkdtemp(prefix="bsc-", dir="/tmp"))
    tmux = Tmux()
    try:
        with _inspected_cluster(feeds):
            tmux.start(f"{sys.executable} {ROOT / 'inspector_curses.py'} {feeds}; "
                       f"echo INSPECTOR-EXIT=$?; sleep 600")

            def live_rows(screen):
                return {c[0]: c for c in map(_cells, (
                    line for line in screen.splitlines()
                    if line.split()[:1] in (["engine"], ["cluster"]) and " live " in line))}

            # Both engines' rows drawn live (the second may show up a refresh later).
            screen = tmux.wait(lambda s: "cluster inspected, 2 of 2 engines" in s
                               and {"engine 0", "engine 1", "cluster"} <= live_rows(s).keys(),
                               "the cluster")
            rows = live_rows(screen)
            assert rows["engine 0"][3] == "2" and rows["engine 1"][3] == "2"
            assert rows["cluster"][3] == "4"
            tmux.keys("Enter")                              # engine 0's own view
            tmux.wait(lambda s: "insp-sender" in s and "insp-collector" not in s, "engine 0")
            tmux.keys("q")                                  # back to the cluster
            tmux.wait(lambda s: "cluster inspected" in s, "the cluster again")
            tmux.keys("Down", "Enter")                      # engine 1's own view
            tmux.wait(lambda s: "insp-collector" in s and "insp-sender" not in s, "engine 1")
            tmux.keys("q")
            tmux.wait(lambda s: "cluster inspected" in s, "the cluster again")
            tmux.keys("q")
            tmux.wait(lambda s: "INSPECTOR-EXIT=0" in s, "the inspector to quit")
    finally:
        tmux.kill()
        shutil.rmtree(feeds, ignore_errors=True)


def test_without_ray_installed_cluster_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "backends.ray_transport", raising=False)

    with pytest.raises(ImportError, match=r"needs 'ray', which is not installed: pip install"):
        backstage.Cluster(transport="ray", engines=2)


def test_a_folder_named_ray_found_instead_of_ray_is_named_in_the_install_hint(
        monkeypatch, tmp_path):
    # Ray's temp directory, /tmp/ray, is a namespace package "ray" to a program
    # run from /tmp where Ray is not installed: it failed with an AttributeError.
    folder = types.ModuleType("ray")
    folder.__path__ = [str(tmp_path / "ray")]
    monkeypatch.setitem(sys.modules, "ray", folder)
    monkeypatch.delitem(sys.modules, "backends.ray_transport", raising=False)

    with pytest.raises(ImportError, match=r"needs 'ray', which is not installed") as caught:
        backstage.Cluster(transport="ray", engines=2)
    assert str(caught.value.__cause__) == (
        f"'import ray' found ['{tmp_path / 'ray'}'], not Ray: install Ray, or run from a "
        f"directory without a 'ray' folder in it")


def test_an_unknown_transport_is_refused_with_the_names_to_use():
    with pytest.raises(ValueError, match=r"unknown transport 'zmq': use one of 'ray'"):
        backstage.Cluster(transport="zmq")


def test_a_cluster_of_no_engines_is_refused_at_the_call():
    with pytest.raises(ValueError, match=r"^engines must be an int of at least 1, got 0$"):
        backstage.Cluster(transport="ray", engines=0)


def test_local_links_that_is_not_a_bool_is_refused_at_the_call():
    with pytest.raises(TypeError, match=r"^local_links must be True \(engines on one node "
                                        r"send to each other by socket\) or False \(by Ray "
                                        r"calls\), not 'yes'$"):
        backstage.Cluster(transport="ray", engines=2, local_links="yes")


@pytest.mark.parametrize("setting, value, error", [
    ("batch_limit", 0, ValueError), ("window", 2.5, TypeError), ("send_buffer", -1, ValueError),
    ("send_buffer", True, TypeError)])
def test_link_settings_that_are_not_positive_ints_are_refused_at_the_call(setting, value, error):
    with pytest.raises(error, match=rf"^{setting} must be an int of at least 1, "
                                    rf"got {value!r}"):
        backstage.Cluster(transport="ray", engines=2, **{setting: value})


def test_a_bad_inspector_argument_is_refused_before_any_ray_starts():
    # In a process of its own: this one's Ray is already running.
    code = ("import backstage, ray\n"
            "try:\n"
            "    backstage.Cluster('ray', engines=2, inspector=5)\n"
            "except TypeError as exc:\n"
            "    print('refused:', exc)\n"
            "print('ray started:', ray.is_initialized())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)

    assert "refused: inspector must be True or a directory (str), not 5" in out.stdout, out
    assert "ray started: False" in out.stdout, out


@pytest.mark.parametrize("options", [[{}], {"num_cpus": 0}, [{}, "x"]])
def test_engine_options_that_are_not_one_dict_per_engine_are_refused_at_the_call(options):
    with pytest.raises(TypeError, match=r"^engine_options must be a list of 2 dicts of Ray "
                                        r"actor options, one per engine"):
        backstage.Cluster(transport="ray", engines=2, engine_options=options)


@pytest.mark.parametrize("kept, error", [(0, ValueError), (-1, ValueError), ("many", TypeError)])
def test_a_bad_dead_letters_kept_is_refused_at_the_call(kept, error):
    with pytest.raises(error, match=r"^dead_letters_kept must be an int from 1 to"):
        backstage.Cluster(transport="ray", engines=2, dead_letters_kept=kept)


# -- tests that own a Ray: last, in this order ---------------------------------------

def test_close_shuts_down_the_ray_it_started_and_a_second_cluster_then_works(cluster):
    cluster.close()                       # the session cluster started this Ray
    assert not ray.is_initialized()

    with _make_cluster(2) as second:
        assert second._impl.started_ray
        second.spawn_actor(Echo, "second")
        assert _ask(second, "second", "x")[0] == "x"
    assert not ray.is_initialized()


def test_driver_calls_after_close_raise_engine_closed_and_start_no_ray_of_their_own():
    closed = _make_cluster(2)
    assert closed._impl.started_ray
    closed.close()
    calls = {"send": lambda: closed.send("x", 1), "ask": lambda: closed.ask("x", 1),
             "spawn_actor": lambda: closed.spawn_actor(Echo, "x"),
             "poison_pill": lambda: closed.poison_pill("x"),
             "get_engine_of": lambda: closed.get_engine_of("x"),
             "wait_idle": lambda: closed.wait_idle(1),
             "stats": closed.stats, "kill_engine": lambda: closed.kill_engine(0)}

    refused = {}
    for name, call in calls.items():
        with pytest.raises(backstage.EngineClosed, match="the cluster is closed") as caught:
            call()
        refused[name] = str(caught.value)

    assert closed.dead_letters() == []      # the driver's own, as an engine's after close
    assert not ray.is_initialized()
    assert all("make a new backstage.Cluster" in why for why in refused.values())


def test_a_multi_node_cluster_loses_a_node_mid_traffic_and_accounts_for_every_message(
        tmp_path):
    from ray.cluster_utils import Cluster as RayTestCluster
    nodes = RayTestCluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 80 * 1024 * 1024, "resources": {"n0": 1}})
    try:
        doomed_node = nodes.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024,
                                     resources={"n1": 1})
        listening = _listening_sockets_of(_descendants(os.getpid()))
        assert listening and all(_is_loopback(addr) for addr, _ in listening), listening
        options = [{"resources": {"n0": 0.01}}, {"resources": {"n1": 0.01}}]
        path = tmp_path / "delivered.txt"
        with backstage.Cluster("ray", engines=2, address=nodes.address,
                               engine_options=options, batch_limit=20, window=2,
                               dead_letters_kept=10000) as c:
            stats = c.stats()
            assert stats[0]["node"] != stats[1]["node"]
            assert stats[0]["links"][1]["via"] == stats[1]["links"][0]["via"] == "ray"
            sender = _id_on(c, 0, "node-sender")
            receiver = _id_on(c, 1, "node-receiver")
            watcher = _id_on(c, 0, "node-watcher")
            c.spawn_actor(Burst, sender)
            c.spawn_actor(Writer, receiver, str(path), 0.001)
            c.spawn_actor(Remote, watcher)
            _ask(c, watcher, ("monitor", receiver))
            pending = c.ask(watcher, ("ask", receiver, "never answered"), timeout=60)
            total = 3000

            _ask(c, sender, ("go", receiver, total, 100))
            while not path.exists() or path.stat().st_size < 200:
                time.sleep(0.01)
            nodes.remove_node(doomed_node, allow_graceful=False)
            while 1 not in c.lost:
                time.sleep(0.05)
            assert c.wait_idle(60)

            delivered = {int(line) for line in path.read_text().split()}
            letters = [(d.envelope.message, d.reason) for d in c.dead_letters()
                       if d.target_id == receiver and isinstance(d.envelope.message, int)]
            dead = {m for m, _ in letters}
            possibly = {m for m, reason in letters if "possibly delivered" in reason}
            assert delivered | dead == set(range(total))
            assert delivered & dead <= possibly
            told = [m for _, kind, m, _ in _ask(c, watcher, ("got",)) if kind == "TERMINATED"]
            assert [t.actor_id for t in told] == [receiver]
            assert "engine 1 lost" in told[0].reason
            assert pending.result(30)[0] == "err"
        # Joined, not started: the Ray cluster is still there after close.
        assert nodes.head_node.any_processes_alive()
        ray.init(address=nodes.address)         # and it takes a new driver
        assert ray.cluster_resources().get("n0") == 1
    finally:
        ray.shutdown()
        nodes.shutdown()


def test_the_word_count_example_counts_as_one_process_would():
    root = Path(backstage.__file__).parent

    out = subprocess.run([sys.executable, str(root / "examples" / "wordcount_cluster.py"),
                          "--copies", "20"], cwd=root, capture_output=True, text=True,
                         timeout=170)

    assert out.returncode == 0, out.stderr[-3000:]
    assert "counts match a count made in one process" in out.stdout.splitlines()


def test_classes_of_the_drivers_script_travel_to_the_engines_by_value():
    script = Path(__file__).resolve().parent / "cluster_main_script.py"

    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=170)

    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["got [Job(n=1), [Job(n=2), Job(n=3)]]",
                                       "dead letters 0"]


@pytest.mark.parametrize("many", [False, True], ids=["send", "send_many"])
def test_the_cluster_benchs_sources_deliver_every_message(cluster, many):
    # A guard on the bench's own actors (the session's Ray is joined, not restarted).
    from bench import bench_cluster

    rate, cpu = bench_cluster.ours_throughput(100, 3_000, False, many=many)

    assert rate > 0 and cpu > 0


def test_no_ray_process_is_left_after_the_clusters_close():
    deadline = time.monotonic() + 30
    while _descendants(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.2)

    assert _descendants(os.getpid()) == []


# -- helpers --------------------------------------------------------------------------

def _descendants(root):
    """Pids of the live processes under ``root`` (zombies excluded)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _listening_sockets_of(pids):
    """(local address, pid) of every listening TCP or UDP socket of ``pids``."""
    inodes = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, v6 in (("tcp", False), ("tcp6", True), ("udp", False), ("udp6", True)):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            listening = state == "0A" if table.startswith("tcp") else state == "07"
            if listening and inode in inodes:
                found.append((_address(local, v6), inodes[inode]))
    return found


def _ss_listening(pids):
    """(local address, pid) of the listening TCP and UDP sockets ss(8) shows for ``pids``."""
    import re
    out = subprocess.run(["ss", "-Hltunp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        cols = line.split()
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)} & set(pids)
        if len(cols) >= 5 and owners:
            host = cols[4].rsplit(":", 1)[0].split("%")[0].strip("[]")
            found.append(("0.0.0.0" if host == "*" else host, owners.pop()))
    return found


def _address(hex_addr, v6):
    import ipaddress
    host = hex_addr.split(":")[0]
    raw = bytes.fromhex(host)
    if not v6:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def _is_loopback(addr):
    import ipaddress
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.fixture
def lone_engine():
    """An engine of this process, not run, for a link alone (the conftest's
    ``engine`` runs on every loop backend; a link's host needs only one)."""
    local = backstage.Engine(backend="selectors", dead_letters_kept=100)
    yield local
    local.close()


def _lone_link(engine, sent, remote=None, engines=2):
    """A host on ``engine`` (of this process) whose link to engine 1 records its calls
    in ``sent`` (or makes them with ``remote(packet)``) and never sees them answered."""

    from backends import ray_transport

    def record(packet):
        src, seq, acked = ray_transport._CALL_HEADER.unpack_from(packet)
        wire = pickle.loads(packet[ray_transport._CALL_HEADER.size:])
        sent.append((seq, wire))
        return object()

    call = remote or record

    class Peer:
        class deliver:
            remote = staticmethod(call)

    class Waiter(ray_transport._Waiter):     # the calls are never answered
        def _run(self):
            pass

    host = ray_transport._Host(0, engines, [None] + [Peer()] * (engines - 1),
                               {"batch_limit": 7, "window": 2}, engine)
    for link in host.links.values():
        link.waiter = Waiter(link)
    return host.links[1]


def test_a_word_of_where_an_id_lives_that_a_newer_one_overtook_is_ignored(lone_engine):
    # Engine 0 hears, over one link per engine and the driver's, in any order
    # between links, what the others say of "x": ("pin" or "unpin", engine,
    # stamp), or the driver's "place" (its move, pin=, stamped above every
    # engine's clock).  Actor "x" lived on engine 1, stopped, and lives on
    # engine 2 now.
    from backends import ray_transport

    orders = {
        # Engine 2 heard of the stop before it spawned "x": its stamps are higher.
        "the new pin first": [("pin", 2, 3), ("pin", 1, 1), ("unpin", 1, 2)],
        "the old life last": [("pin", 2, 3), ("unpin", 2, 4), ("pin", 1, 1), ("unpin", 1, 2)],
        # Two lives that knew nothing of each other: engine 2 ran its clock up
        # and ended its life of "x"; engine 1, which had heard of none of it,
        # spawned "x" with a lower stamp.  Engine 1's claim holds.
        "lives unaware of each other": [("pin", 2, 67), ("unpin", 2, 68), ("pin", 1, 6)],
        "their words crossed": [("pin", 2, 67), ("pin", 1, 6), ("unpin", 2, 68)],
        "in order": [("pin", 1, 1), ("unpin", 1, 2), ("pin", 2, 3)],
        # The driver's word of its spawn on engine 1 (the engine's own stamp)
        # after the stop, though engine 0's clock is far ahead.
        "the driver's word last": [("clock", 0, 65), ("pin", 1, 1), ("unpin", 1, 2),
                                   ("pin", 1, 1)],
        "the driver's word first": [("clock", 0, 65), ("pin", 1, 6), ("unpin", 1, 7)],
        # The driver moved "x" to engine 2 (pin=2) after it lived there once:
        # the old life's words come late, then the new life's pin.
        "a move after an earlier life there": [("place", 2, 5), ("pin", 2, 1), ("unpin", 2, 2)],
    }
    found = {}
    for name, words in orders.items():
        host = _lone_link(lone_engine, [], engines=3).host
        for word, where, stamp in words:
            if word == "clock":
                host.clock = stamp
            elif word == "place":
                ray_transport._place(lone_engine, "x", where, stamp)
            else:
                host._control(where, (word, "x", where, stamp))
        found[name] = host.pins.get("x")

    assert found == {"the new pin first": 2, "the old life last": None, "in order": 2,
                     "lives unaware of each other": 1, "their words crossed": 1,
                     "the driver's word last": None, "the driver's word first": None,
                     "a move after an earlier life there": 2}


def test_the_drivers_word_of_a_spawn_that_its_engine_never_confirms_ends_at_the_second_sweep(
        lone_engine):
    # Its engine's own word, and the stop after it, came first and the stop is
    # forgotten (10,000 stops since): nothing would ever end the driver's claim.
    from backends import ray_transport

    host = _lone_link(lone_engine, [], engines=3).host
    host._control(ray_transport.DRIVER, ("pin", "late", 1, 5))
    host._control(ray_transport.DRIVER, ("pin", "confirmed", 2, 7))
    host._control(2, ("pin", "confirmed", 2, 7))        # its engine's own word
    host.sweep_stand_ins()
    assert host.pins == {"late": 1, "confirmed": 2}

    host.sweep_stand_ins()

    assert host.pins == {"confirmed": 2}
    host._control(1, ("pin", "late", 1, 5))       # its engine's own word, very late
    assert host.pins == {"confirmed": 2, "late": 1}


def test_the_driver_keeps_its_pin_of_an_id_an_engine_knows_to_live_anywhere(lone_engine):
    # It sends there, and that engine forwards: sending elsewhere could overtake.
    from backends import ray_transport

    host = _lone_link(lone_engine, [], engines=3).host
    host._control(2, ("pin", "moved-on", 2, 1))

    assert ray_transport._pinned_here(lone_engine, ["moved-on", "gone"]) == ["moved-on"]


def test_a_stand_in_that_sends_where_the_id_no_longer_lives_is_swept_only_once_it_lives_nowhere(
        lone_engine):
    # Its id's hash engine forwards what it sent: a new stand-in, straight to
    # the actor, could overtake it while the actor lives.
    from backends import ray_transport

    host = _lone_link(lone_engine, [], engines=3).host
    actor_id = next(f"y{i}" for i in range(100) if ray_transport.home_of(f"y{i}", 3) == 1)
    host.resolve(actor_id)                              # to its hash engine, 1
    host._control(2, ("pin", actor_id, 2, 3))          # an actor on engine 2 spawned it
    host.sweep_stand_ins()
    host.sweep_stand_ins()
    assert lone_engine._registry.get(actor_id) is not None

    host._control(2, ("unpin", actor_id, 2, 4))        # and stopped
    host.sweep_stand_ins()

    assert lone_engine._registry.get(actor_id) is None


def test_an_engine_remembers_the_newest_stop_it_heard_of_an_id(lone_engine):
    from backends import ray_transport

    host = _lone_link(lone_engine, [], engines=3).host
    host._control(1, ("unpin", "x", 1, 5))
    host.unpin("x", 1, 3)           # an older word come late (the driver's undo of a pin=)
    host._control(ray_transport.DRIVER, ("pin", "x", 1, 4))    # of a life before the stop

    assert "x" not in host.pins


def test_a_publication_for_an_id_that_stopped_here_is_dropped_and_for_one_never_here_is_not(
        lone_engine):
    # Never here: its subscriber may live where this engine has not heard of
    # yet; the publication is a dead letter, as any message to an unknown id.
    from backends import ray_transport

    host = _lone_link(lone_engine, [], engines=3).host
    host.unpin("stopped-here", 0)           # as this engine's stop hook does
    item = ("pub", ("default", "news"), ray_transport._PUBLISH)

    assert host._uncode(1, "stopped-here", item) is ray_transport._UNWANTED
    assert host._uncode(1, "never-here", item) is not ray_transport._UNWANTED


def test_a_stand_in_keeps_its_engine_when_a_pin_names_another(lone_engine):
    # What it sent may be on its way from there to the actor (the id's hash
    # engine forwards): sending straight to the new place would overtake it.
    from backends import ray_transport

    host = _lone_link(lone_engine, [], engines=3).host
    actor_id = next(f"x{i}" for i in range(100) if ray_transport.home_of(f"x{i}", 3) == 1)
    stand_in = host.resolve(actor_id)                   # sends to its hash engine
    assert ray_transport._sends_to(stand_in) == 1

    host._control(2, ("pin", actor_id, 2, 3))          # an actor on engine 2 spawned it

    assert ray_transport._sends_to(stand_in) == 1 and host.pins[actor_id] == 2


def test_a_call_that_fails_on_the_receiving_engine_passes_its_place_in_the_order(lone_engine):
    from backends import ray_transport

    host = _lone_link(lone_engine, []).host
    ran, answer = [], ray_transport._Answer()

    def fails():
        raise RuntimeError("a bug in applying a call")

    host.arrive(1, 2, lambda: ran.append(2))          # early: held for 1
    host.arrive(1, 1, fails, answer)

    assert ran == [2] and host.expect[1] == 3
    assert answer.done()                                # its caller is answered


def test_an_entry_that_fails_to_go_in_is_dead_letters_and_the_rest_of_the_batch_goes_in(
        lone_engine, monkeypatch):
    from backends import ray_transport

    host = _lone_link(lone_engine, []).host
    lone_engine.spawn_actor(Collector, id="good")
    deliver = host._deliver

    def deliver_or_fail(target_id, items):
        if target_id == "bad":
            raise RuntimeError("a bug in delivering")
        deliver(target_id, items)

    monkeypatch.setattr(host, "_deliver", deliver_or_fail)
    plain = ray_transport._PLAIN
    host.apply(1, [("bad", [("far", "lost", None)], plain),
                   ("good", [("far", "kept", None)], plain)])

    [letter] = lone_engine.dead_letters
    assert letter.target_id == "bad" and letter.envelope.message == "lost"
    assert letter.reason.startswith("engine 0 failed to take it in (RuntimeError(")
    assert letter.reason.endswith("possibly delivered")
    assert lone_engine.get_context("good").inbox_len == 1


def test_an_entry_that_fails_to_go_in_fails_the_asks_in_it(lone_engine, monkeypatch):
    from backends import ray_transport

    host = _lone_link(lone_engine, []).host
    link = host.links[1]

    def fails(target_id, items):
        raise RuntimeError("a bug in delivering")

    monkeypatch.setattr(host, "_deliver", fails)
    host.apply(1, [("bad", [("far", "sent", None),
                            ("far", ("asked", "reply-7"), ray_transport._ASK)],
                    ray_transport._CODED)])

    [letter] = lone_engine.dead_letters
    assert letter.envelope.message == "sent"
    [(_, control, _)] = list(link.pending)
    assert control[:3] == ("reply", "reply-7", None)
    assert str(control[3]).startswith("engine 0 failed to take it in (RuntimeError(")


def test_a_batch_packed_and_not_yet_sent_rides_back_first_and_is_not_delivered_if_lost(lone_engine):
    engine = lone_engine
    from backends import ray_transport

    sent = []
    link = _lone_link(engine, sent)        # batches of 7, a window of 2, never answered
    link.add("far", [("near", i, None) for i in range(30)])
    link.flush()                            # 1 and 2 sent, 3 and 4 packed

    ridden = link.ride()
    link.lose("engine 1 lost")

    letters = {d.envelope.message: d.reason for d in engine.dead_letters}
    assert ray_transport._RIDE_HEADER.unpack_from(ridden)[0] == 3
    assert [seq for seq, _ in sent] == [1, 2]
    assert all(letters[m] == "engine 1 lost; possibly delivered" for m in range(21))
    assert all(letters[m] == "engine 1 lost" for m in range(21, 30))


def _held_near(engine, unsent):
    """A lone link (batches of 7, a window of 2: a buffer of 14) with ``unsent``
    messages from the actor "near" to "far", which it holds; (link, near's context)."""
    link = _lone_link(engine, [])
    engine.spawn_actor(Collector, id="near")
    stand_in = engine._install_stand_in("far", link.hand, link.hand_run)
    link.add("far", [("near", i, None) for i in range(unsent)])
    assert link.hold(stand_in)
    engine._hold_senders(stand_in, ["near"])
    return link, engine.get_context("near")


def test_a_lost_peer_lets_the_senders_held_for_its_link_go_on(lone_engine):
    link, near = _held_near(lone_engine, 20)
    assert near._scheduled == "parked"

    link.lose("engine 1 lost")

    assert near._scheduled is False and not near._waiting_on
    assert link.valve is None and not link.holding_for


def test_held_senders_go_when_half_the_send_buffer_or_less_is_left_unsent(lone_engine):
    link, near = _held_near(lone_engine, 30)

    unsent = []
    while near._scheduled == "parked":
        link._take(3)
        unsent.append(link.pending_count)

    assert unsent[-1] <= 7 < unsent[-2]         # let go at half the buffer, not before


def test_a_batch_whose_call_fails_to_go_stays_queued_and_goes_first_next_time(lone_engine):
    engine = lone_engine
    class RefusesOnce(list):                # what the peer's deliver.remote records
        refused = False

        def append(self, call):
            if not self.refused:
                self.refused = True
                raise RuntimeError("Ray refused the call")
            super().append(call)

    sent = RefusesOnce()
    link = _lone_link(engine, sent)
    link.add("far", [("near", i, None) for i in range(7)])
    with pytest.raises(RuntimeError, match="refused"):
        link.flush()

    link.add("far", [("near", i, None) for i in range(7, 14)])
    link.flush()

    assert [seq for seq, _ in sent] == [1, 2]
    assert [wire[0][1][1] for _, wire in sent] == [list(range(7)), list(range(7, 14))]


def _held_first_call(engine):
    """A lone link's waiter whose first call is slow to go (a large batch, say): it
    waits in ``.remote()`` until ``gate`` opens.  (waiter, gate, calls made as (seq,
    thread name), packet(seq), the thread making call 1)."""
    from backends import ray_transport

    entered, gate, calls = threading.Event(), threading.Event(), []

    def remote(packet):
        seq = ray_transport._CALL_HEADER.unpack_from(packet)[1]
        calls.append((seq, threading.current_thread().name))
        if seq == 1:
            entered.set()
            gate.wait(30)
        return object()

    def packet(seq):
        return ray_transport._CALL_HEADER.pack(0, seq, 0) + pickle.dumps([])

    waiter = _lone_link(engine, [], remote).waiter
    making = threading.Thread(target=waiter.queue, args=(1, packet(1)), name="making")
    making.start()
    assert entered.wait(10)
    return waiter, gate, calls, packet, making


def test_a_run_is_vouched_tuple_free_only_when_every_class_keeps_its_class_unpickled(
        lone_engine):
    from backends import ray_transport

    link = _lone_link(lone_engine, [])

    class StandIn:                          # what hand_run reads of a stand-in
        actor_id = "far"

    class Name(str):                        # a subclass: its class, not str's
        pass

    runs = [[1, "two", 3.0, None, True, b"6", [7], {8: 9}, {10}],       # builtins
            [1, fractions.Fraction(1, 3)],          # a class of the standard library
            [1, Name("eleven")],
            [1, 2j]]                                # pickled through copyreg's table
    wires = []
    for messages in runs:
        link.hand_run(StandIn, "near", list(messages), set(map(type, messages)))
        entries, _ = link._take(len(messages))          # as a batch takes them
        wires.append(link._wire(entries))

    assert [wire[0][1][2] for wire in wires] == [True, False, False, False]
    assert [wire[0][2] for wire in wires] == [ray_transport._ONE_SENDER] * 4


def test_a_call_being_made_holds_up_no_other_thread_of_the_link(lone_engine):
    waiter, gate, calls, packet, making = _held_first_call(lone_engine)
    taken, done = [], threading.Event()

    def meanwhile():                    # another batch queued, then taken back to ride
        waiter.queue(2, packet(2))
        taken.append(waiter.take_queued())
        done.set()

    threading.Thread(target=meanwhile, name="other").start()
    held_up = not done.wait(10)         # the call in progress ends only when the gate opens
    gate.set()
    making.join(10)
    done.wait(10)

    assert not held_up
    assert taken[0] is not None and taken[0][0] == 2
    assert [seq for seq, _ in calls] == [1]


def test_a_batch_queued_while_a_call_is_made_goes_from_the_thread_making_calls(lone_engine):
    waiter, gate, calls, packet, making = _held_first_call(lone_engine)
    other = threading.Thread(target=waiter.queue, args=(2, packet(2)), name="other")
    other.start()
    other.join(10)                      # returns at once: one thread makes the calls
    queued_meanwhile = not other.is_alive()
    gate.set()
    making.join(10)

    assert queued_meanwhile
    assert calls == [(1, "making"), (2, "making")]


def test_a_report_of_an_unpickled_batch_holds_acknowledgements_until_the_peer_takes_it(
        lone_engine):
    # Engine 1's batch 5 rode back here and did not unpickle.  The report goes in our
    # call 1, which does not unpickle there either: engine 1 must still have batch 5
    # when the report comes again, so no call of ours may say "applied up to 5" before.
    from backends import ray_transport

    calls = []

    def remote(packet):
        src, seq, acked = ray_transport._CALL_HEADER.unpack_from(packet)
        wire = pickle.loads(packet[ray_transport._CALL_HEADER.size:])
        reports = [c[1] for t, c, _ in wire if t is None and c[0] == "unloaded"]
        calls.append((seq, acked, reports))
        return object()

    link = _lone_link(lone_engine, [], remote)
    link.host.expect[1] = 10                # engine 1's batches up to 9 applied here
    link.report_unloaded(5, "engine 0 could not unpickle a batch from engine 1")
    link.flush()                            # call 1: the report
    link.add("far", [("near", "later", None)])
    link.flush()                            # call 2, before call 1's answer
    link.waiter.refs.clear()
    link.completed([(1, None, RuntimeError("engine 1 could not unpickle a batch"))])
    link.flush()                            # call 3: the report again
    link.waiter.refs.clear()
    link.completed([(2, None, None), (3, None, None)])
    link.add("far", [("near", "last", None)])
    link.flush()                            # call 4: the report is taken

    assert calls == [(1, 4, [5]), (2, 4, []), (3, 4, [5]), (4, 9, [])]


def test_a_call_from_a_lost_peer_held_for_order_is_let_go_and_not_applied(lone_engine):
    engine = lone_engine
    from backends import ray_transport

    host = _lone_link(engine, []).host
    early = ray_transport._Answer()
    host.receive(1, 2, 0, [("nobody", ("near", ["too early"], True), ray_transport._ONE_SENDER)],
                 early)                         # batch 2 of engine 1, before its batch 1

    host.peer_lost(1, "engine 1 lost")

    assert early.done() and early.wait(engine) is None
    assert not host.held and not engine.dead_letters


def test_a_batch_that_rode_back_is_possibly_delivered_until_the_peer_says_it_arrived(lone_engine):
    engine = lone_engine
    from backends import ray_transport

    link = _lone_link(engine, [])
    link.add("far", [("near", i, None) for i in range(10)])
    first = ray_transport._RIDE_HEADER.unpack_from(link.ride())[0]
    second = ray_transport._RIDE_HEADER.unpack_from(link.ride())[0]

    link.release(first)             # the peer's next call: "applied up to first"
    link.lose("engine 1 lost")

    letters = [(d.envelope.message, d.reason) for d in engine.dead_letters]
    assert (first, second) == (1, 2)
    assert letters == [(i, "engine 1 lost; possibly delivered") for i in range(7, 10)]


def test_a_long_burst_is_split_in_order_and_what_was_not_sent_is_dead_lettered_on_loss(lone_engine):
    engine = lone_engine
    # The link alone, on an engine of this process: its calls are recorded, never completed,
    # so what it sent stays in flight when the peer is lost.
    from backends import ray_transport

    sent = []
    link = _lone_link(engine, sent)
    link.add("far", [("near", i, None) for i in range(30)])
    link.flush()
    assert [seq for seq, _ in sent] == [1, 2]           # the window: 2 calls in flight
    assert [wire for _, wire in sent] == [
        [("far", ("near", list(range(0, 7)), False), ray_transport._ONE_SENDER)],
        [("far", ("near", list(range(7, 14)), False), ray_transport._ONE_SENDER)]]

    link.lose("engine 1 lost")

    letters = [(d.envelope.message, d.reason) for d in engine.dead_letters]
    assert [m for m, _ in letters] == list(range(30))
    assert all(r.endswith("possibly delivered") for m, r in letters if m < 14)
    assert all(r == "engine 1 lost" for m, r in letters if m >= 14)


# -- the driver's ask clock, alone ------------------------------------------------

def test_the_ask_clock_times_out_what_is_pending_and_forgets_what_was_answered():
    from backends import ray_transport

    pending, due = {}, []
    clock = ray_transport._AskClock(due.extend, pending)
    try:
        for i in range(5_000):          # quick asks, each answered before its deadline
            pending[str(i)] = True
            clock.start(str(i), 60)
            del pending[str(i)]
        kept = len(clock._heap)
        pending["slow"] = True
        clock.start("slow", 0.05)
        wait_for(lambda: due, "the slow ask's deadline")
    finally:
        clock.stop()

    assert kept < 2_000                 # the answered asks' deadlines were dropped
    assert due == [("slow", 0.05)]
    assert not clock._thread.is_alive()


def test_the_ask_clock_outlives_a_timeout_longer_than_a_thread_can_wait():
    from backends import ray_transport

    pending, due = {"huge": True, "slow": True}, []
    clock = ray_transport._AskClock(due.extend, pending)
    try:
        clock.start("huge", 1e10)       # over threading.TIMEOUT_MAX: its wait is capped
        time.sleep(0.05)
        clock.start("slow", 0.05)
        wait_for(lambda: due, "the slow ask's deadline")
    finally:
        clock.stop()

    assert due == [("slow", 0.05)]


def test_a_batch_counts_as_handled_once_its_actor_has_nothing_left_to_take():
    # A message that waited for room ahead of the batch's may be withdrawn (a
    # send from another thread that timed out): the mark is then one too high,
    # and the call's answer waited for a message that might never come.
    from types import SimpleNamespace

    from backends.ray_transport import _all_handled
    ctx = SimpleNamespace(_count=3, _state=backstage._RUNNING, _inbox=["x"], _head=0,
                          _waiting=None)

    assert not _all_handled([(ctx, 5)])
    ctx._head = 1                           # taken: nothing left, though 3 < 5
    assert _all_handled([(ctx, 5)])
    ctx._waiting = ["one more"]
    assert not _all_handled([(ctx, 5)])
