"""Actors for tests/test_cluster_ray.py, in a module of their own: the engine
processes import it (a light import, without pytest or the test module)."""

import os
import sys
import threading
import time


def engine_index(ctx):
    """The number of the engine that runs ``ctx``'s actor."""
    from backends.ray_transport import this_engine
    return this_engine()


class Echo:
    """Answers an ask with (message, engine number, constructor args)."""

    def __init__(self, ctx, *args, **kwargs):
        self.ctx = ctx
        self.args = args
        self.kwargs = kwargs
        self.count = 0

    def receive(self, envelope):
        self.count += 1
        if envelope.message == "count":
            envelope.reply(self.count - 1)
            return
        try:
            envelope.reply((envelope.message, engine_index(self.ctx), self.args, self.kwargs))
        except RuntimeError:
            pass        # a plain send


class Account:
    """A balance with methods, for proxies; its receive answers what it got."""

    def __init__(self, ctx, balance=0):
        self.ctx = ctx
        self.balance = balance

    def receive(self, envelope):
        envelope.reply(("receive", envelope.message))

    def deposit(self, amount):
        self.balance += amount
        return self.balance

    def withdraw(self, amount):
        if amount > self.balance:
            raise ValueError(f"only {self.balance} left")
        self.balance -= amount
        return self.balance


class Spins:
    """Never idle: each message it takes, it sends itself another."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        self.ctx.send(self.ctx.actor_id, "spin")


class SlowInit:
    """Takes ``seconds`` to be made."""

    def __init__(self, ctx, seconds):
        time.sleep(seconds)

    def receive(self, envelope):
        pass


class SlowPickle:
    """A message that takes ``delay`` seconds to pickle, as a large one would."""

    def __init__(self, delay):
        self.delay = delay

    def __reduce__(self):
        time.sleep(self.delay)
        return (SlowPickle, (0,))


class Collector:
    """Keeps (sender_id, message type, message, topic) of everything; ask "get" for it."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.got = []

    def receive(self, envelope):
        if envelope.message == "get":
            envelope.reply(list(self.got))
            return
        self.got.append((envelope.sender_id, envelope.message_type.name, envelope.message,
                         envelope.topic))


class SlowCollector(Collector):
    """A Collector that takes a millisecond a message, and notes its inbox's
    longest length (ask "longest")."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.longest = 0

    def receive(self, envelope):
        if envelope.message == "longest":
            envelope.reply(self.longest)
            return
        self.longest = max(self.longest, len(self.ctx._inbox) - self.ctx._head)
        time.sleep(0.001)
        super().receive(envelope)


class Remote:
    """Does, on its engine, what an ask tells it to; answers with the outcome."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.got = []

    OPS = ("send", "ask", "asks", "spawn", "spawn_pool", "subscribe", "unsubscribe", "publish",
           "monitor", "pill", "where", "dead_letters", "unpicklable", "unloadable", "exits", "got",
           "boom",
           "subscriptions", "block", "send_becoming_tuple", "proxy")

    def receive(self, envelope):
        message = envelope.message
        if type(message) is not tuple or not message or message[0] not in self.OPS:
            self.got.append((envelope.sender_id, envelope.message_type.name, message,
                             envelope.topic))
            return
        op, *args = message
        ctx = self.ctx
        if op == "got":
            envelope.reply(list(self.got))
        elif op == "boom":
            raise ValueError("boom")
        elif op == "send":
            target, messages = args
            for message in messages:
                ctx.send(target, message)
            envelope.reply(len(messages))
        elif op == "ask":
            target, message = args
            future = ctx.ask(target, message, timeout=10)
            future.add_done_callback(lambda f: envelope.reply(
                ("ok", f.result()) if f.exception() is None
                else ("err", type(f.exception()).__name__, str(f.exception()))))
        elif op == "asks":      # asks left to time out, their outcomes ignored
            target, count, timeout = args
            for i in range(count):
                ctx.ask(target, i, timeout=timeout)
            envelope.reply(count)
        elif op == "spawn":
            cls, actor_id = args
            ctx.spawn_actor(cls, actor_id)
            envelope.reply(engine_index(ctx))
        elif op == "proxy":     # a proxied method call: ("ok", result) or ("err", ...)
            target, cls, method, call_args = args
            future = getattr(ctx.proxy(target, cls), method)(*call_args)
            future.add_done_callback(lambda f: envelope.reply(
                ("ok", f.result()) if f.exception() is None
                else ("err", type(f.exception()).__name__, str(f.exception()))))
        elif op == "spawn_pool":
            cls, pool_id, size, routing = args
            ctx.spawn_pool(cls, pool_id, size, routing=routing)
            envelope.reply(engine_index(ctx))
        elif op == "subscribe":
            ctx.subscribe_to_actor(args[0])
            envelope.reply(True)
        elif op == "unsubscribe":
            ctx.unsubscribe_from_actor(args[0])
            envelope.reply(True)
        elif op == "publish":
            for message in args[0]:
                ctx.publish(message)
            envelope.reply(True)
        elif op == "block":     # a long turn: its engine does nothing else meanwhile
            started, release, then_publish = args
            _block(started, release)
            for message in then_publish:
                ctx.publish(message)
        elif op == "monitor":
            ctx.monitor(args[0])
            envelope.reply(True)
        elif op == "pill":
            ctx.engine.poison_pill(args[0])
            envelope.reply(True)
        elif op == "where":
            envelope.reply(engine_index(ctx))
        elif op == "subscriptions":     # what the inspector shows as this actor's
            envelope.reply(sorted(ctx._subscriptions or ()))
        elif op == "dead_letters":
            envelope.reply([(d.target_id, d.envelope.message if isinstance(
                d.envelope.message, (int, str, tuple)) else repr(d.envelope.message), d.reason)
                for d in ctx.engine.dead_letters])
        elif op == "unpicklable":
            ctx.send(args[0], threading.Lock())
            envelope.reply(True)
        elif op == "unloadable":
            ctx.send(args[0], Unloadable())
            envelope.reply(True)
        elif op == "exits":
            ctx.send(args[0], ExitsWhenUnpickled())
            envelope.reply(True)
        elif op == "send_becoming_tuple":       # one turn: one sender's run
            for message in ("before", BecomesTuple(), "after"):
                ctx.send(args[0], message)
            envelope.reply(True)


def _block(started, release, limit=120):
    """Create the file ``started``, then wait until the file ``release`` exists
    (the test's signal), ``limit`` seconds at most."""
    open(started, "w").close()
    deadline = time.monotonic() + limit
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.005)


class Deinit:
    """Appends its id to a file when deinit runs."""

    def __init__(self, ctx, path):
        self.ctx = ctx
        self.path = path

    def receive(self, envelope):
        envelope.reply("alive")

    def deinit(self):
        with open(self.path, "a") as f:
            f.write(self.ctx.actor_id + "\n")


class Writer:
    """Writes each message (an int) to a file at once, then works a little."""

    def __init__(self, ctx, path, pause=0.0):
        self.ctx = ctx
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.pause = pause

    def receive(self, envelope):
        if not isinstance(envelope.message, int):
            if envelope.message == "ping":
                envelope.reply("pong")
            return              # other asks stay unanswered
        os.write(self.fd, b"%d\n" % envelope.message)
        if self.pause:
            time.sleep(self.pause)


class Burst:
    """On ("go", target, n) sends 0 .. n-1 to target, chunk by chunk, each chunk a tick."""

    def __init__(self, ctx):
        self.ctx = ctx

    def receive(self, envelope):
        message = envelope.message
        if message[0] == "go":
            _, target, n, chunk = message
            self.ctx.send(self.ctx.actor_id, ("more", target, 0, n, chunk))
            envelope.reply(True)
        elif message[0] == "more":
            _, target, start, n, chunk = message
            for i in range(start, min(n, start + chunk)):
                self.ctx.send(target, i)
            if start + chunk < n:
                self.ctx.send(self.ctx.actor_id, ("more", target, start + chunk, n, chunk))


class Flood:
    """Burst's sends on ("go", target, n, chunk), and a count of the ints it
    receives (from another Flood); ask "received" for the count."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.turns = 0
        self.received = 0

    def receive(self, envelope):
        self.turns += 1
        message = envelope.message
        if message == "received":
            envelope.reply(self.received)
        elif type(message) is int:
            self.received += 1
        else:
            Burst.receive(self, envelope)


class Forwarder:
    """Sends each item of each list it gets to ``target``."""

    def __init__(self, ctx, target):
        self.ctx = ctx
        self.target = target

    def receive(self, envelope):
        for item in envelope.message:
            self.ctx.send(self.target, item)


class PoolKeeper:
    """Spawns, as its child, a pool ``pool_id`` of ``size`` ``routee_class``
    routees whose inboxes hold ``capacity`` with ``overflow``."""

    def __init__(self, ctx, pool_id, routee_class, size, capacity, overflow):
        ctx.spawn_pool(routee_class, pool_id, size, capacity=capacity, overflow=overflow)

    def receive(self, envelope):
        pass


class Relay:
    """Subscribes to ``publisher`` and passes each publication on to each of
    ``targets`` with ctx.forward."""

    def __init__(self, ctx, publisher, targets):
        self.ctx = ctx
        self.targets = targets
        ctx.subscribe_to_actor(publisher)

    def receive(self, envelope):
        for target in self.targets:
            self.ctx.forward(target, envelope)


class FanOut:
    """Forwards each message it gets to ``target`` ``copies`` times (ctx.forward:
    the target sees the original sender)."""

    def __init__(self, ctx, target, copies):
        self.ctx = ctx
        self.target = target
        self.copies = copies

    def receive(self, envelope):
        for _ in range(self.copies):
            self.ctx.forward(self.target, envelope)


def turns_of(engine, actor_id):
    """For cluster.call: the turns a Flood on ``engine`` has taken, read on its
    engine's thread without a message (a held actor takes none)."""
    return engine.get_actor(actor_id).turns


def waits_of(engine, actor_id):
    """For cluster.call: what the actor ``actor_id`` waits on, as the inspector's
    feed gives it (its row's ``waiting_on``)."""
    import backstage
    extra = engine._registry[actor_id]._extra
    return backstage._waits_of(extra.waiting_on if extra is not None else None)


def link_stats(engine, new_peaks=False):
    """For cluster.call: this engine's links as stats() gives them, by peer;
    ``new_peaks``: and their unsent peaks start again from nothing."""
    from backends import ray_transport
    host = ray_transport._current
    stats = ray_transport._stats(host)["links"]
    if new_peaks:
        for link in host.links.values():
            link.unsent_peak = 0
    return stats


def known_of(engine, ids):
    """For cluster.call: of ``ids``, those this engine keeps a pin for, and those
    it keeps a record for (an actor or a stand-in)."""
    from backends import ray_transport
    pins = ray_transport._current.pins
    return ([i for i in ids if i in pins], [i for i in ids if i in engine._registry])


def sweep_stand_ins(engine):
    """For cluster.call: sweep this engine's stand-ins now; how many went."""
    from backends import ray_transport
    return ray_transport._current.sweep_stand_ins()


def asks_kept(engine, peer):
    """For cluster.call: the asks this engine's link to ``peer`` keeps, to fail
    them if ``peer`` is lost; with ``peer`` None, the asks of this engine's
    actors that another engine may still answer."""
    from backends import ray_transport
    if peer is None:
        return len(engine._transport.replies)
    return len(ray_transport._current.links[peer].asked)


class Rally:
    """Ping-pong: ask ("go", peer, n) to play n rounds with another Rally, which
    returns every ball to its sender; answers "done" after the n-th return."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.left = 0
        self.asker = None

    def receive(self, envelope):
        message = envelope.message
        if type(message) is tuple:
            _, peer, self.left = message
            self.asker = envelope
            self.ctx.send(peer, "ball")
        elif self.asker is None:
            self.ctx.send(envelope.sender_id, "ball")
        else:
            self.left -= 1
            if self.left:
                self.ctx.send(envelope.sender_id, "ball")
            else:
                self.asker.reply("done")


class Holder:
    """Keeps every ask it gets and answers none, until "release": then answers
    each with its message, in one turn."""

    def __init__(self, ctx):
        self.held = []

    def receive(self, envelope):
        if envelope.message == "release":
            for held in self.held:
                held.reply(held.message)
            self.held = []
        else:
            self.held.append(envelope)


class Dozer:
    """An async actor: each message is a number of seconds its receive awaits,
    taking no other message meanwhile."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def receive(self, envelope):
        await self.ctx.sleep(envelope.message)

    def ping(self):
        return "pong"


class SendsBack:
    """On ("hit", n): sends its sender n messages, one that does not unpickle,
    n more, then asks it "q" without a timeout; "outcome" answers what became
    of that ask: "pending", or (exception class name, text), or ("ok", value)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.outcome = "pending"

    def receive(self, envelope):
        if envelope.message == "outcome":
            envelope.reply(self.outcome)
            return
        _, n = envelope.message
        sender = envelope.sender_id
        for i in range(n):
            self.ctx.send(sender, f"before-{i}")
        self.ctx.send(sender, Unloadable())
        for i in range(n):
            self.ctx.send(sender, f"after-{i}")
        self.ctx.ask(sender, "q", timeout=None).add_done_callback(self._answered)

    def _answered(self, future):
        exc = future.exception()
        self.outcome = (type(exc).__name__, str(exc)) if exc else ("ok", future.result())


class AnswersUnloadable:
    """Answers every ask with a value that pickles and does not unpickle."""

    def __init__(self, ctx):
        pass

    def receive(self, envelope):
        envelope.reply(Unloadable())


def _refuse_to_load():
    raise ValueError("this message refuses to be unpickled")


class BecomesTuple:
    """Pickles as the tuple (1, 2, 3): a class's __reduce__ may make it anything."""

    def __reduce__(self):
        return (tuple, ((1, 2, 3),))


class Unloadable:
    """Pickles, but fails to unpickle (as a class missing where it lands would)."""

    def __reduce__(self):
        return (_refuse_to_load, ())


class ExitsWhenUnpickled:
    """Pickles; unpickling it raises SystemExit (a hostile or careless __reduce__)."""

    def __reduce__(self):
        return (sys.exit, ("unpickled where it arrived",))


class TwoArgumentError(Exception):
    """Pickles, but does not unpickle: __init__ takes two arguments, args holds one."""

    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


class RaisesTwoArgumentError:
    def __init__(self, ctx):
        pass

    def receive(self, envelope):
        raise TwoArgumentError("one", "two")


class Ledger(Account):
    """An Account that keeps what it received, for a driver's proxy."""

    def __init__(self, ctx, balance=0):
        super().__init__(ctx, balance)
        self.seen = []

    def receive(self, envelope):
        self.seen.append(envelope.message)

    def received(self):
        return list(self.seen)

    def where(self):
        return engine_index(self.ctx), self.ctx.actor_id
