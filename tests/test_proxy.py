"""Method-call proxies: engine.proxy(id) and ctx.proxy(id)."""

import threading

import pytest
from conftest import Recorder

from backstage import ActorNotFound, AskFuture, Engine, Proxy, proxy_method


class Counter:
    def __init__(self, ctx, start=0):
        self.ctx = ctx
        self.count = start
        self.log = []

    def receive(self, envelope):
        self.log.append(("message", envelope.message))

    def add(self, n=1, *, times=1):
        self.count += n * times
        self.log.append(("add", n))
        return self.count

    def get(self):
        return self.count

    def fail(self, why):
        raise ValueError(why)

    def _secret(self):
        return "hidden"


class CounterProxy(Proxy[Counter]):
    add = proxy_method(Counter.add)
    get = proxy_method(Counter.get)


def _serve(engine):
    runner = threading.Thread(target=engine.run_forever)
    runner.start()
    return runner


def test_a_proxied_call_runs_the_method_and_its_future_holds_the_return_value(engine):
    engine.spawn_actor(Counter, "c", 10)
    counter = engine.proxy("c")

    future = counter.add(5, times=2)
    engine.run()

    assert isinstance(future, AskFuture)
    assert future.result() == 20
    assert engine.get_actor("c").count == 20


def test_a_proxied_call_from_another_thread_blocks_in_result_until_it_ran(engine):
    engine.spawn_actor(Counter, "c")
    counter = engine.proxy("c", Counter)
    runner = _serve(engine)
    try:
        results = [counter.add(1).result(timeout=10) for _ in range(3)]
        assert results == [1, 2, 3]
        assert counter.get().result(timeout=10) == 3
    finally:
        engine.stop()
        runner.join(10)


def test_the_method_runs_on_the_engine_thread(engine):
    class WhereAmI:
        def __init__(self, ctx):
            self.ctx = ctx

        def receive(self, envelope):
            pass

        def thread(self):
            return threading.get_ident()

    engine.spawn_actor(WhereAmI, "w")
    runner = _serve(engine)
    try:
        answer = engine.proxy("w").thread().result(timeout=10)
    finally:
        engine.stop()
        runner.join(10)

    assert answer == runner.ident


def test_proxied_calls_are_ordered_with_the_actors_other_messages(engine):
    counter = engine.spawn_actor(Counter, "c")
    proxy = engine.proxy("c")

    engine.send("c", "first")
    proxy.add(1)
    engine.send("c", "second")
    proxy.add(2)
    engine.run()

    assert counter.log == [("message", "first"), ("add", 1), ("message", "second"), ("add", 2)]


def test_an_exception_in_the_method_fails_the_future_and_the_actor_keeps_its_state(engine):
    counter = engine.spawn_actor(Counter, "c", 7)
    proxy = engine.proxy("c")

    failed = proxy.fail("no good")
    after = proxy.get()
    engine.run()

    with pytest.raises(ValueError, match=r"^no good$"):
        failed.result()
    assert after.result() == 7
    assert engine.get_actor("c") is counter
    assert engine.restart_count == 0


def test_a_call_to_an_unknown_method_raises_at_the_call_site(engine):
    engine.spawn_actor(Counter, "c")
    proxy = engine.proxy("c")

    with pytest.raises(AttributeError, match=r"^Counter has no method 'ad'"):
        proxy.ad(1)


def test_private_methods_and_hooks_are_not_reachable_through_a_proxy(engine):
    engine.spawn_actor(Counter, "c")
    proxy = engine.proxy("c")

    with pytest.raises(AttributeError, match=r"_secret"):
        proxy._secret()
    with pytest.raises(AttributeError, match=r"receive"):
        proxy.receive(None)


def test_proxy_of_an_unknown_id_without_a_class_raises_and_says_to_pass_the_class(engine):
    with pytest.raises(ActorNotFound, match=r"^cannot make a proxy for 'ghost': no actor has "
                                            r"that id; pass its class"):
        engine.proxy("ghost")


def test_a_call_to_an_actor_that_does_not_exist_fails_its_future(engine):
    proxy = engine.proxy("later", Counter)

    future = proxy.add(1)
    engine.run()

    with pytest.raises(ActorNotFound, match=r"'later'"):
        future.result()


def test_a_call_queued_when_the_actor_stops_fails_its_future_and_is_a_dead_letter(engine):
    engine.spawn_actor(Counter, "c")
    proxy = engine.proxy("c")

    engine.poison_pill("c")
    future = proxy.add(1)
    engine.run()

    with pytest.raises(ActorNotFound, match=r"'c'"):
        future.result()
    assert engine.dead_letter_count == 1


def test_calls_still_queued_when_the_engine_closes_fail_their_futures(backend):
    engine = Engine(backend=backend)
    engine.spawn_actor(Counter, "c")
    future = engine.proxy("c").add(1)

    engine.close()

    assert future.done()
    assert future.exception() is not None


def test_calls_and_sends_from_another_thread_keep_that_threads_order(engine):
    counter = engine.spawn_actor(Counter, "c")
    proxy = engine.proxy("c")
    runner = _serve(engine)
    try:
        def client():
            for i in range(50):
                engine.send("c", i)
                proxy.add(i)
            proxy.get().result(timeout=10)

        thread = threading.Thread(target=client)
        thread.start()
        thread.join(20)
    finally:
        engine.stop()
        runner.join(10)

    expected = [entry for i in range(50) for entry in (("message", i), ("add", i))]
    assert counter.log == expected


def test_a_restarted_actor_answers_proxied_calls_with_its_new_state(engine):
    class Fragile(Counter):
        def receive(self, envelope):
            raise RuntimeError("crash")

    class Parent:
        def __init__(self, ctx):
            self.ctx = ctx
            ctx.spawn_child_actor(Fragile, "c", 100)

        def receive(self, envelope):
            pass

    engine.spawn_actor(Parent, "p")
    proxy = engine.proxy("c")
    before = proxy.add(1)
    engine.send("c", "crash it")
    after = proxy.add(1)
    engine.run()

    assert before.result() == 101
    assert after.result() == 101       # a new instance, made with start=100 again
    assert engine.restart_count == 1


def test_ctx_proxy_calls_have_the_actor_as_sender_and_callbacks_on_the_engine_thread(engine):
    class Client:
        def __init__(self, ctx):
            self.ctx = ctx
            self.answers = []
            self.threads = set()

        def receive(self, envelope):
            future = self.ctx.proxy("c").add(envelope.message)
            future.add_done_callback(self.done)

        def done(self, future):
            self.threads.add(threading.get_ident())
            self.answers.append(future.result())

    engine.spawn_actor(Counter, "c")
    client = engine.spawn_actor(Client, "client")
    engine.send("client", 2)
    engine.send("client", 3)
    engine.run()

    assert client.answers == [2, 5]
    assert client.threads == {threading.get_ident()}


def test_a_callback_registered_during_receive_never_runs_inside_that_receive(engine):
    class Client:
        def __init__(self, ctx):
            self.ctx = ctx
            self.inside = False
            self.ran_inside = None

        def receive(self, envelope):
            self.inside = True
            self.ctx.proxy("c").get().add_done_callback(self.done)
            self.ctx.send("c", "some message")
            self.inside = False

        def done(self, future):
            self.ran_inside = self.inside

    engine.spawn_actor(Counter, "c")
    client = engine.spawn_actor(Client, "client")
    engine.send("client", "go")
    engine.run()

    assert client.ran_inside is False


def test_waiting_on_a_proxied_call_inside_an_actor_raises_instead_of_deadlocking(engine):
    class Impatient:
        def __init__(self, ctx):
            self.ctx = ctx
            self.error = None

        def receive(self, envelope):
            try:
                self.ctx.proxy("c").get().result()
            except RuntimeError as exc:
                self.error = exc

    engine.spawn_actor(Counter, "c")
    impatient = engine.spawn_actor(Impatient, "i")
    engine.send("i", "go")
    engine.run()

    assert "add_done_callback" in str(impatient.error)


def test_run_counts_an_unfinished_proxied_call_as_work(engine):
    engine.spawn_actor(Counter, "c")

    future = engine.proxy("c").add(4)
    engine.run()

    assert future.done()


def test_a_typed_proxy_class_declares_its_methods_with_proxy_method(engine):
    engine.spawn_actor(Counter, "c", 1)
    proxy = engine.proxy("c", CounterProxy)

    added = proxy.add(2)
    got = proxy.get()
    engine.run()

    assert isinstance(proxy, CounterProxy)
    assert (added.result(), got.result()) == (3, 3)


def test_proxy_call_takes_the_method_itself(engine):
    engine.spawn_actor(Counter, "c", 1)
    proxy = engine.proxy("c", Counter)

    future = proxy.call(Counter.add, 4, times=2)
    state = proxy.call(lambda counter: counter.count)
    engine.run()

    assert future.result() == 9
    assert state.result() == 9


def test_a_proxy_made_with_a_class_that_is_not_the_live_actors_is_refused_at_the_call(engine):
    engine.spawn_actor(Recorder, "r")

    with pytest.raises(TypeError, match=r"^proxy\(\) for 'r' was given Counter, but that "
                                        r"actor's class is Recorder"):
        engine.proxy("r", Counter)


def test_a_proxy_made_before_an_actor_of_another_class_exists_fails_the_call_clearly(engine):
    proxy = engine.proxy("r", Counter)
    engine.spawn_actor(Recorder, "r")

    future = proxy.add(1)
    engine.run()

    with pytest.raises(AttributeError, match=r"'r' is a Recorder, which has no method 'add'"):
        future.result()


def test_proxy_rejects_a_non_string_id_and_a_non_class(engine):
    with pytest.raises(TypeError, match=r"^proxy\(\) needs a str actor id"):
        engine.proxy(42)
    with pytest.raises(TypeError, match=r"^proxy\(\) needs the actor's class"):
        engine.proxy("c", Counter(None))


def test_a_proxy_has_a_readable_repr(engine):
    engine.spawn_actor(Counter, "c")

    assert repr(engine.proxy("c")) == "<Proxy 'c' Counter>"


def test_proxying_a_coroutine_method_fails_the_future_and_runs_nothing(engine):
    class Async:
        def __init__(self, ctx):
            self.ctx = ctx
            self.ran = False

        def receive(self, envelope):
            pass

        async def fetch(self):
            self.ran = True
            return 1

    actor = engine.spawn_actor(Async, "a")

    future = engine.proxy("a").fetch()
    engine.run()

    with pytest.raises(TypeError, match=r"^Async.fetch is a coroutine function"):
        future.result()
    assert actor.ran is False
