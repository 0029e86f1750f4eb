"""Bad input, as a table: every public call of Engine and Context × its bad inputs.

Each row is one bad call, the exception it must raise at the call, and the
start of its message (what was wrong, and what to pass instead).  The table is
data, so its size is the count of bad calls covered (``test_the_table_...``
prints it), and ``test_every_public_call_has_rows`` fails when a public call is
added without rows of its own.
"""

import asyncio
import inspect
import math
import tempfile
import threading

import pytest
from conftest import Recorder

import backstage
from backstage import ActorNotFound, Engine, EngineClosed, OneForOne

INF, NAN = math.inf, math.nan


def noop():
    pass


async def async_noop():
    pass


class NoReceive:
    def __init__(self, ctx):
        pass


class OtherRecorder(Recorder):
    pass


class NoCtx:
    def __init__(self):
        pass

    def receive(self, envelope):
        pass


class NeedsStart(Recorder):
    def __init__(self, ctx, start, *, step=1):
        super().__init__(ctx)


class FailsInside(Recorder):
    def __init__(self, ctx):
        raise TypeError("a bug of the actor's own")


class BadSupervisor(Recorder):
    supervisor = "one for one"


class Row:
    """One bad call: ``call(engine, ctx)`` must raise ``error`` matching ``match``."""

    def __init__(self, name, call, error, match, new=False):
        self.name = name            # the public call, as "Engine.send" / "Context.send"
        self.call = call
        self.error = error
        self.match = match
        self.new = new              # refused since issue 11 (silent or unclear before)


def engine_call(name, call, error, match, new=False):
    return Row(f"Engine.{name}", call, error, match, new)


def ctx_call(name, call, error, match, new=False):
    return Row(f"Context.{name}", call, error, match, new)


def closed(engine):
    engine.close()
    return engine


def pooled(engine):
    engine.spawn_pool(Recorder, "p", 2)
    return engine


def run_async_on(engine):
    asyncio.run(engine.run_async())


def send_from_another_thread(engine, target_id):
    """engine.send(target_id, 1) on a thread of its own; what it raised, raised here."""
    raised = []

    def send():
        try:
            engine.send(target_id, 1)
        except BaseException as exc:      # handed back to the test's thread
            raised.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    sender.join(10)
    if raised:
        raise raised[0]


def regular_file():
    handle = tempfile.TemporaryFile()
    _open_files.append(handle)
    return handle


_open_files = []

E, C = engine_call, ctx_call
ID = r"actor ids are strings"

TABLE = [
    # -- Engine() ------------------------------------------------------------------
    E("__init__", lambda e, c: Engine(backend="nope"), ValueError,
      r"^unknown backend 'nope': use one of 'selectors', 'asyncio', 'uvloop'"),
    E("__init__", lambda e, c: Engine(backend=3), ValueError, r"^unknown backend 3: use one of"),
    E("__init__", lambda e, c: Engine(supervisor="x"), TypeError,
      r"^supervisor must be a backstage\.SupervisorStrategy such as OneForOne\(\), not 'x'"),
    E("__init__", lambda e, c: Engine(dead_letters_kept=0), ValueError,
      r"^dead_letters_kept must be an int from 1 to 10000000, got 0", new=True),
    E("__init__", lambda e, c: Engine(dead_letters_kept="9"), TypeError,
      r"^dead_letters_kept must be an int from 1 to 10000000, got '9'", new=True),
    E("__init__", lambda e, c: Engine(dead_letters_kept=10**30), ValueError,
      r"^dead_letters_kept must be an int from 1 to 10000000, got 10{30}", new=True),
    E("__init__", lambda e, c: Engine(inspector=3), TypeError,
      r"^inspector must be False, True or a socket path, not 3"),
    E("__init__", lambda e, c: Engine(inspector=""), ValueError,
      r"^inspector path may not be empty"),
    E("__init__", lambda e, c: Engine(inspector="/nonexistent-dir/x.sock"), FileNotFoundError,
      r"^\[Errno 2\] cannot make the inspector socket /nonexistent-dir/x\.sock: its directory "
      r"'/nonexistent-dir' does not exist: create it first", new=True),
    E("__init__", lambda e, c: Engine(inspector_interval="1"), TypeError,
      r"^inspector_interval needs a number of seconds, not '1'"),
    E("__init__", lambda e, c: Engine(inspector_interval=0), ValueError,
      r"^inspector_interval needs seconds between"),
    E("__init__", lambda e, c: Engine(inspector_interval=NAN), ValueError,
      r"^inspector_interval needs seconds between"),
    E("__init__", lambda e, c: Engine(inbound_capacity=0), ValueError,
      r"^inbound_capacity must be an int of at least 1, got 0", new=True),
    E("__init__", lambda e, c: Engine(inbound_capacity=2.5), TypeError,
      r"^inbound_capacity must be an int of at least 1, got 2\.5", new=True),
    E("__init__", lambda e, c: Engine(inbound_overflow="drop"), ValueError,
      r"^inbound_overflow must be 'block' or 'fail', got 'drop'", new=True),

    # -- Engine.spawn_actor and the Context spawns ---------------------------------------
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder(None), "x"), TypeError,
      r"^spawn_actor\(\) needs a class, not <conftest\.Recorder object"),
    E("spawn_actor", lambda e, c: e.spawn_actor(NoReceive, "x"), TypeError,
      r"^spawn_actor\(\) needs a class with a receive\(self, envelope\) method; NoReceive"),
    E("spawn_actor", lambda e, c: e.spawn_actor("Recorder", "x"), TypeError,
      r"^spawn_actor\(\) needs the class itself, not its name 'Recorder': import it", new=True),
    E("spawn_actor", lambda e, c: e.spawn_actor(NoCtx, "x"), TypeError,
      r"^NoCtx\(ctx\) does not match its __init__: too many positional arguments\. An "
      r"actor's __init__ takes the engine's Context first", new=True),
    E("spawn_actor", lambda e, c: e.spawn_actor(NeedsStart, "x"), TypeError,
      r"^NeedsStart\(ctx\) does not match its __init__: missing a required argument: "
      r"'start'", new=True),
    E("spawn_actor", lambda e, c: e.spawn_actor(NeedsStart, "x", 1, stp=2), TypeError,
      r"^NeedsStart\(ctx, 1, stp=2\) does not match its __init__: got an unexpected "
      r"keyword argument 'stp'", new=True),
    E("spawn_actor", lambda e, c: e.spawn_actor(FailsInside, "x"), TypeError,
      r"^a bug of the actor's own$", new=True),
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder, 3), TypeError, rf"^{ID}, not int"),
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder, None), TypeError,
      rf"^{ID}, not NoneType"),
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder, ""), ValueError,
      r"^actor ids may not be empty: pass id='some-name'"),
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder, "bad\ud800"), ValueError,
      r"^actor ids must be valid Unicode text \(encodable as UTF-8\), got 'bad\\ud800'",
      new=True),
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder, "x", capacity=0), ValueError,
      r"^capacity must be at least 1, got 0"),
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder, "x", capacity="8"), TypeError,
      r"^capacity must be an int, not '8'"),
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder, "x", capacity=True), TypeError,
      r"^capacity must be an int, not True"),
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder, "x", overflow="nope"), ValueError,
      r"^unknown overflow policy 'nope': use one of 'grow', 'block'"),
    E("spawn_actor", lambda e, c: e.spawn_actor(BadSupervisor, "x"), TypeError,
      r"^BadSupervisor\.supervisor must be a backstage\.SupervisorStrategy"),
    E("spawn_actor", lambda e, c: e.spawn_actor(OtherRecorder, "a"), TypeError,
      r"^spawn_actor\(\) found 'a' taken by an actor of class Recorder, not OtherRecorder",
      new=True),
    E("spawn_actor", lambda e, c: closed(e).spawn_actor(Recorder, "x"), EngineClosed,
      r"^cannot spawn 'x': the engine is closed; make a new Engine to go on"),
    C("spawn_actor", lambda e, c: c.spawn_actor(Recorder, 3), TypeError, rf"^{ID}, not int"),
    C("spawn_actor", lambda e, c: c.spawn_actor(NoReceive, "x"), TypeError,
      r"^spawn_actor\(\) needs a class with a receive"),
    C("spawn_child_actor", lambda e, c: c.spawn_child_actor(NoCtx, "x"), TypeError,
      r"^NoCtx\(ctx\) does not match its __init__", new=True),
    C("spawn_child_actor", lambda e, c: c.spawn_child_actor(Recorder, ""), ValueError,
      r"^actor ids may not be empty"),
    C("spawn_child_actor", lambda e, c: c.spawn_child_actor(Recorder, "x", capacity=-1),
      ValueError, r"^capacity must be at least 1, got -1"),
    C("spawn_child_actor", lambda e, c: c.spawn_child_actor(Recorder, "x", overflow=None),
      ValueError, r"^unknown overflow policy None"),

    # -- Engine.send -----------------------------------------------------------------
    E("send", lambda e, c: e.send([], 1), TypeError, r"^send\(\) needs a str actor id, not \[\]"),
    E("send", lambda e, c: e.send(3, 1), TypeError, r"^send\(\) needs a str actor id, not 3"),
    E("send", lambda e, c: e.send(None, 1), TypeError,
      r"^send\(\) needs a str actor id, not None"),
    E("send", lambda e, c: e.send("a", 1, timeout=1), ValueError,
      r"^send\(timeout=\.\.\.\) applies only to a send from another thread", new=True),
    E("send", lambda e, c: e.send("a", 1, timeout=-1), ValueError,
      r"^send\(\) needs timeout zero or more seconds, got -1", new=True),
    E("send", lambda e, c: e.send("a", 1, timeout="1"), TypeError,
      r"^send\(\) needs a number of seconds for timeout, not '1'", new=True),
    E("send", lambda e, c: e.send("a", 1, timeout=INF), ValueError,
      r"^send\(\) needs a finite timeout in seconds, got inf", new=True),
    E("send", lambda e, c: closed(e).send("a", 1), EngineClosed,
      r"^cannot send to 'a': the engine is closed"),
    E("send", lambda e, c: e.send("", 1), ValueError,
      r"^send\(\) got an empty actor id: pass the id the actor was spawned with", new=True),
    E("send", lambda e, c: send_from_another_thread(e, ""), ValueError,
      r"^send\(\) got an empty actor id", new=True),

    # -- Engine.ask ------------------------------------------------------------------
    E("ask", lambda e, c: e.ask([], 1), TypeError, r"^ask\(\) needs a str actor id, not \[\]"),
    E("ask", lambda e, c: e.ask("a", 1, timeout=0), ValueError,
      r"^ask\(\) needs timeout more than zero seconds, got 0"),
    E("ask", lambda e, c: e.ask("a", 1, timeout=-5), ValueError,
      r"^ask\(\) needs timeout more than zero seconds, got -5"),
    E("ask", lambda e, c: e.ask("a", 1, timeout="5"), TypeError,
      r"^ask\(\) needs a number of seconds for timeout, not '5'"),
    E("ask", lambda e, c: e.ask("a", 1, timeout=INF), ValueError,
      r"^ask\(\) needs a finite timeout in seconds, got inf: pass timeout=None", new=True),
    E("ask", lambda e, c: e.ask("a", 1, timeout=NAN), ValueError,
      r"^ask\(\) needs a finite timeout in seconds, got nan", new=True),
    E("ask", lambda e, c: closed(e).ask("a", 1), EngineClosed,
      r"^cannot ask 'a': the engine is closed"),

    # -- Engine.poison_pill, get_actor, get_context, run ----------------------------------
    E("poison_pill", lambda e, c: e.poison_pill([]), TypeError,
      r"^poison_pill\(\) needs a str actor id, not \[\]", new=True),
    E("poison_pill", lambda e, c: e.poison_pill(3), TypeError,
      r"^poison_pill\(\) needs a str actor id, not 3", new=True),
    E("poison_pill", lambda e, c: e.poison_pill(""), ValueError,
      r"^poison_pill\(\) got an empty actor id", new=True),
    E("get_actor", lambda e, c: e.get_actor([]), TypeError,
      r"^get_actor\(\) needs a str actor id, not \[\]", new=True),
    E("get_actor", lambda e, c: e.get_actor(3), TypeError,
      r"^get_actor\(\) needs a str actor id, not 3", new=True),
    E("get_actor", lambda e, c: e.get_actor(""), ValueError,
      r"^get_actor\(\) got an empty actor id", new=True),
    E("get_actor", lambda e, c: e.get_actor("a", "Recorder"), TypeError,
      r"^get_actor\(\) needs the actor's class as actor_class, such as "
      r"get_actor\('a', Counter\), not 'Recorder'", new=True),
    E("get_context", lambda e, c: e.get_context({}), TypeError,
      r"^get_context\(\) needs a str actor id, not \{\}", new=True),
    E("run", lambda e, c: closed(e).run(), EngineClosed, r"^cannot run: the engine is closed"),
    E("run_forever", lambda e, c: closed(e).run_forever(), EngineClosed,
      r"^cannot run: the engine is closed"),
    E("run_async", lambda e, c: run_async_on(Engine()), TypeError,
      r"^run_async\(\) needs an engine on an asyncio loop, and this one runs on 'selectors'"),

    # -- Context: messages ------------------------------------------------------------
    C("send", lambda e, c: c.send([], 1), TypeError, r"^send\(\) needs a str actor id, not \[\]"),
    C("send", lambda e, c: c.send(b"a", 1), TypeError,
      r"^send\(\) needs a str actor id, not b'a'"),
    C("send", lambda e, c: c.send("", 1), ValueError,
      r"^send\(\) got an empty actor id", new=True),
    C("send_many", lambda e, c: c.send_many(3, [1]), TypeError,
      r"^send_many\(\) needs a str actor id, not 3", new=True),
    C("send_many", lambda e, c: c.send_many("", [1]), ValueError,
      r"^send_many\(\) got an empty actor id", new=True),
    C("send_many", lambda e, c: c.send_many("a", (1, 2)), TypeError,
      r"^send_many\(\) needs a list of messages, not tuple: pass list\(messages\)", new=True),
    C("publish_to_topic", lambda e, c: c.publish_to_topic("", "x"), ValueError,
      r'^publish_to_topic\(\) got an empty topic: pass a name such as "news", or use '
      r'publish\(message\)', new=True),
    C("publish_to_topic", lambda e, c: c.publish_to_topic(3, "x"), TypeError,
      r"^publish_to_topic\(\) needs a str topic, not int"),
    C("subscribe_to_actor", lambda e, c: c.subscribe_to_actor(3), TypeError,
      r"^subscribing needs a str actor id and a str topic, got 3 and 'default'"),
    C("subscribe_to_actor", lambda e, c: c.subscribe_to_actor("nobody"), ActorNotFound,
      r"^cannot subscribe to 'nobody': no actor has that id; spawn it first"),
    C("subscribe_to_actor_topic", lambda e, c: c.subscribe_to_actor_topic("a", 3), TypeError,
      r"^subscribing needs a str actor id and a str topic, got 'a' and 3"),
    C("unsubscribe_from_actor", lambda e, c: c.unsubscribe_from_actor(3), TypeError,
      r"^unsubscribing needs a str actor id and a str topic, got 3 and 'default'", new=True),
    C("unsubscribe_from_actor", lambda e, c: c.unsubscribe_from_actor([]), TypeError,
      r"^unsubscribing needs a str actor id and a str topic, got \[\]", new=True),
    C("unsubscribe_from_actor_topic", lambda e, c: c.unsubscribe_from_actor_topic("a", None),
      TypeError, r"^unsubscribing needs a str actor id and a str topic, got 'a' and None",
      new=True),
    C("monitor", lambda e, c: c.monitor(3), TypeError, r"^monitor\(\) needs a str actor id, not 3"),
    C("demonitor", lambda e, c: c.demonitor([]), TypeError,
      r"^demonitor\(\) needs a str actor id, not \[\]", new=True),
    C("ask", lambda e, c: c.ask(3, 1), TypeError, r"^ask\(\) needs a str actor id, not 3"),
    C("ask", lambda e, c: c.ask("a", 1, timeout=INF), ValueError,
      r"^ask\(\) needs a finite timeout in seconds, got inf", new=True),
    C("get_actor", lambda e, c: c.get_actor([]), TypeError,
      r"^get_actor\(\) needs a str actor id, not \[\]", new=True),

    # -- Context: timers ---------------------------------------------------------------
    C("run_recurring", lambda e, c: c.run_recurring(0, noop), ValueError,
      r"^run_recurring\(\) needs interval_s more than zero seconds, got 0"),
    C("run_recurring", lambda e, c: c.run_recurring(-1, noop), ValueError,
      r"^run_recurring\(\) needs interval_s more than zero seconds, got -1"),
    C("run_recurring", lambda e, c: c.run_recurring("1", noop), TypeError,
      r"^run_recurring\(\) needs a number of seconds for interval_s, not '1'"),
    C("run_recurring", lambda e, c: c.run_recurring(INF, noop), ValueError,
      r"^run_recurring\(\) needs a finite interval_s in seconds, got inf", new=True),
    C("run_recurring", lambda e, c: c.run_recurring(1, "noop"), TypeError,
      r"^run_recurring\(\) needs a callable callback, not 'noop'", new=True),
    C("run_recurring", lambda e, c: c.run_recurring(1, noop()), TypeError,
      r"^run_recurring\(\) needs a callable callback, not None", new=True),
    C("run_recurring", lambda e, c: c.run_recurring(1, async_noop), TypeError,
      r"^run_recurring\(\) calls its callback and does not await it, and async_noop is an "
      r"async def, whose body would never run: pass a plain def", new=True),
    C("send_after", lambda e, c: c.send_after(-1, "a", 1), ValueError,
      r"^send_after\(\) needs delay_s zero or more seconds, got -1"),
    C("send_after", lambda e, c: c.send_after(None, "a", 1), TypeError,
      r"^send_after\(\) needs a number of seconds for delay_s, not None"),
    C("send_after", lambda e, c: c.send_after(INF, "a", 1), ValueError,
      r"^send_after\(\) needs a finite delay_s in seconds, got inf", new=True),
    C("send_after", lambda e, c: c.send_after(NAN, "a", 1), ValueError,
      r"^send_after\(\) needs a finite delay_s in seconds, got nan", new=True),
    C("send_after", lambda e, c: c.send_after(1, 3, "x"), TypeError,
      r"^send_after\(\) needs a str actor id, not 3", new=True),
    C("send_after", lambda e, c: c.send_after(1, [], "x"), TypeError,
      r"^send_after\(\) needs a str actor id, not \[\]", new=True),

    # -- Context: file descriptors ------------------------------------------------------
    C("watch_readable", lambda e, c: c.watch_readable(99999, noop), ValueError,
      r"^watch_readable\(\) cannot watch fd 99999: it is not open", new=True),
    C("watch_readable", lambda e, c: c.watch_readable(-1, noop), ValueError,
      r"^watch_readable\(\) needs an open file: -1 is not an fd", new=True),
    C("watch_readable", lambda e, c: c.watch_readable("sock", noop), TypeError,
      r"^watch_readable\(\) needs a socket, a file object with fileno\(\) or an int fd, "
      r"not 'sock'", new=True),
    C("watch_readable", lambda e, c: c.watch_readable(regular_file(), noop), ValueError,
      r"^watch_readable\(\) cannot watch .*: regular files are always ready", new=True),
    C("watch_readable", lambda e, c: c.watch_readable(0, "noop"), TypeError,
      r"^watch_readable\(\) needs a callable callback, not 'noop'", new=True),
    C("watch_writable", lambda e, c: c.watch_writable(99999, noop), ValueError,
      r"^watch_writable\(\) cannot watch fd 99999: it is not open", new=True),
    C("watch_writable", lambda e, c: c.watch_writable(1.5, noop), TypeError,
      r"^watch_writable\(\) needs a socket, a file object with fileno\(\) or an int fd, "
      r"not 1\.5", new=True),
    C("watch_writable", lambda e, c: c.watch_writable(1, None), TypeError,
      r"^watch_writable\(\) needs a callable callback, not None", new=True),
    C("watch_readable", lambda e, c: c.watch_readable(0, async_noop), TypeError,
      r"^watch_readable\(\) calls its callback and does not await it, and async_noop is an "
      r"async def", new=True),
    C("unwatch", lambda e, c: c.unwatch([]), TypeError,
      r"^unwatch\(\) needs the socket, file object or int fd that was watched, not \[\]",
      new=True),
    C("unwatch_readable", lambda e, c: c.unwatch_readable({}), TypeError,
      r"^unwatch_readable\(\) needs the socket, file object or int fd that was watched, "
      r"not \{\}", new=True),
    C("unwatch_writable", lambda e, c: c.unwatch_writable([]), TypeError,
      r"^unwatch_writable\(\) needs the socket, file object or int fd that was watched, "
      r"not \[\]", new=True),

    # -- proxies, pools and transports --------------------------------------------------
    E("proxy", lambda e, c: e.proxy(3), TypeError, r"^proxy\(\) needs a str actor id, not 3"),
    E("proxy", lambda e, c: e.proxy(""), ValueError, r"^proxy\(\) got an empty actor id",
      new=True),
    E("proxy", lambda e, c: e.proxy("a", OtherRecorder), TypeError,
      r"^proxy\(\) for 'a' was given OtherRecorder, but that actor's class is Recorder: "
      r"pass its own class, or leave the class out", new=True),
    E("proxy", lambda e, c: e.proxy("a", timeout=-1), ValueError,
      r"^proxy\(\) needs timeout more than zero seconds, got -1"),
    E("proxy", lambda e, c: e.proxy("a", timeout=INF), ValueError,
      r"^proxy\(\) needs a finite timeout in seconds, got inf", new=True),
    C("proxy", lambda e, c: c.proxy([]), TypeError, r"^proxy\(\) needs a str actor id, not \[\]"),
    E("spawn_pool", lambda e, c: e.spawn_pool(Recorder, "p", 0), ValueError,
      r"^spawn_pool\(\) needs a size of at least 1, got 0"),
    E("spawn_pool", lambda e, c: e.spawn_pool(Recorder, "a", 2), TypeError,
      r"^spawn_pool\(\) found 'a' taken by an actor of class Recorder, not a pool: pick "
      r"another id", new=True),
    E("spawn_actor", lambda e, c: pooled(e).spawn_actor(Recorder, "p"), TypeError,
      r"^spawn_actor\(\) found 'p' taken by a pool of Recorder, not Recorder", new=True),
    E("spawn_pool", lambda e, c: e.spawn_pool("Recorder", "p", 2), TypeError,
      r"^spawn_pool\(\) needs the class itself, not its name 'Recorder': import it and pass "
      r"it, spawn_pool\(Greeter, id=\.\.\.\)$", new=True),
    E("spawn_pool", lambda e, c: e.spawn_pool(object, "p", 2), TypeError,
      r"^spawn_pool\(\) needs a class with a receive\(self, envelope\) method; object has "
      r"none$", new=True),
    E("spawn_pool", lambda e, c: e.spawn_pool(Recorder, "p", 2, routing="nope"), ValueError,
      r"^unknown routing 'nope': use one of 'round_robin', 'least_loaded'"),
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder), TypeError,
      r'^spawn_actor\(\) missing the actor id: pass spawn_actor\(Recorder, "some-id", \.\.\.\)$',
      new=True),
    E("spawn_actor", lambda e, c: e.spawn_actor(Recorder, capacity=8), TypeError,
      r'^spawn_actor\(\) missing the actor id: pass spawn_actor\(Recorder, "some-id"', new=True),
    C("spawn_actor", lambda e, c: c.spawn_actor(Recorder), TypeError,
      r'^spawn_actor\(\) missing the actor id: pass spawn_actor\(Recorder, "some-id", \.\.\.\)$',
      new=True),
    C("spawn_child_actor", lambda e, c: c.spawn_child_actor(Recorder), TypeError,
      r'^spawn_child_actor\(\) missing the actor id: pass spawn_child_actor\(Recorder, '
      r'"some-id", \.\.\.\)$', new=True),
    E("spawn_pool", lambda e, c: e.spawn_pool(Recorder, "p"), TypeError,
      r'^spawn_pool\(\) missing the pool\'s id or size: pass spawn_pool\(Worker, "some-id", 4, '
      r'\.\.\.\)$', new=True),
    C("spawn_pool", lambda e, c: c.spawn_pool(Recorder, size=2), TypeError,
      r'^spawn_pool\(\) missing the pool\'s id or size: pass spawn_pool\(Recorder, "some-id", 4, '
      r'\.\.\.\)$', new=True),
    E("spawn_pool", lambda e, c: e.spawn_pool(Recorder, "p", 2, routing="consistent_hash"),
      TypeError, r"^routing='consistent_hash' needs hash_key=, a function from a message"),
    C("spawn_pool", lambda e, c: c.spawn_pool(Recorder, "p", "2"), TypeError,
      r"^spawn_pool\(\) needs an int size, not '2'"),
    E("attach_transport", lambda e, c: e.attach_transport(3), TypeError,
      r"^attach_transport\(\) needs an object with a resolve\(target_id\) method, not 3"),

    # -- stash, become, forward, blocking work, sleep ---------------------------------------
    C("become", lambda e, c: c.become(3), TypeError,
      r"^become\(\) needs a function that takes the envelope, such as self\.closed, not 3"),
    C("forward", lambda e, c: c.forward(3, None), TypeError,
      r"^forward\(\) needs a str actor id, not 3"),
    C("run_in_thread", lambda e, c: c.run_in_thread(3), TypeError,
      r"^run_in_thread\(\) needs a function to call, not 3"),
    C("run_in_thread", lambda e, c: c.run_in_thread(async_noop), TypeError,
      r"^run_in_thread\(\) runs a plain function on another thread, and async_noop is an "
      r"async def .*: await it in an async def receive, or make it a def", new=True),
    C("sleep", lambda e, c: c.sleep(-1), ValueError,
      r"^sleep\(\) needs a finite number of seconds, zero or more, not -1"),
    C("stash", lambda e, c: c.stash(3), TypeError,
      r"^stash\(\) needs the Envelope that receive got, not 3"),

    # -- supervision strategies -----------------------------------------------------------
    Row("OneForOne", lambda e, c: OneForOne(max_restarts=-1), ValueError,
        r"^OneForOne\(\) needs max_restarts, an int of 0 or more, got -1"),
    Row("OneForOne", lambda e, c: OneForOne(within_s=0), ValueError,
        r"^OneForOne\(\) needs within_s more than zero seconds, got 0"),
    Row("OneForOne", lambda e, c: OneForOne(within_s=INF), ValueError,
        r"^OneForOne\(\) needs a finite within_s in seconds, got inf", new=True),
    Row("OneForOne", lambda e, c: OneForOne(decider=3), TypeError,
        r"^OneForOne\(\) needs a callable decider\(exc\) -> Directive, not 3"),
]

# Public calls that take no argument a caller could get wrong (and one no user makes).
NO_ARGUMENTS = {
    "Context.__init__",         # made by the engine, never by a user
    "Engine.stop", "Engine.close", "Context.publish", "Context.shutdown",
    "Context.subscribe_to_dead_letters", "Context.unsubscribe_from_dead_letters",
    "Context.unbecome", "Context.unstash_all",
}


def _param(row):
    return pytest.param(row, id=row.name)


@pytest.mark.parametrize("row", [_param(row) for row in TABLE])
def test_a_bad_call_raises_a_clear_error_at_the_call(engine, row):
    ctx = engine.spawn_actor(Recorder, "a").ctx

    try:
        with pytest.raises(row.error, match=row.match):
            row.call(engine, ctx)
    finally:
        while _open_files:
            _open_files.pop().close()


def _public_calls():
    calls = set()
    for cls in (Engine, backstage.Context):
        for name in dir(cls):       # the Engine's calls live in its rooms (base classes)
            member = inspect.getattr_static(cls, name)
            if (name.startswith("_") and name != "__init__") or not callable(member) \
                    or name in vars(object):
                continue
            calls.add(f"{cls.__name__}.{name}")
    return calls


def _required_and_most_positional(call):
    """How many positional arguments ``call`` needs, and how many it takes at most
    (None: any number, it has ``*args``)."""
    parameters = list(inspect.signature(call).parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    needed = [p for p in positional if p.default is p.empty]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return len(needed), None
    return len(needed), len(positional)


@pytest.mark.parametrize("name", sorted(_public_calls() - {"Context.__init__"}))
def test_a_call_missing_an_argument_or_given_one_too_many_names_the_public_call(engine, name):
    # Python's own TypeError names the method by its __qualname__: it must be the
    # public Engine.send, not _Sending.send, the engine room it is written in.
    ctx = engine.spawn_actor(Recorder, "a").ctx
    cls_name, call_name = name.split(".")
    call = getattr(engine if cls_name == "Engine" else ctx, call_name)
    needed, most = _required_and_most_positional(call)
    calls = ([()] if needed else []) + ([(None,) * (most + 1)] if most is not None else [])
    if call_name == "__init__":
        calls = [(None,) * 30]          # Engine(...) with far too many arguments

    for args in calls:
        with pytest.raises(TypeError) as raised:
            (Engine if call_name == "__init__" else call)(*args)
        message = str(raised.value)
        assert message.startswith((f"{name}()", f"{call_name}()")), message
        assert "_" not in message.split("(")[0].replace(call_name, ""), message


def test_every_public_call_has_rows_in_the_table():
    covered = {row.name for row in TABLE} | NO_ARGUMENTS

    assert sorted(_public_calls() - covered) == []


def test_the_table_counts_its_bad_calls():
    new = sum(row.new for row in TABLE)
    print(f"\nbad-input table: {len(TABLE)} bad calls over "
          f"{len({row.name for row in TABLE})} public calls ({new} refused since issue 11)")

    assert len(TABLE) >= 90
