"""Backstage: an actor framework for Python in one file.

Many actors, one thread, one event loop.  Each actor is an ordinary object with
``__init__(self, ctx)`` and ``receive(self, envelope)`` (and optionally
``deinit(self)``); it owns its state and talks to other actors only by
messages.  The engine keeps a registry of actors by string id, gives each a
bounded inbox, delivers direct sends and topic publications, keeps parent and
child actors together, runs timers and watches file descriptors.

    import backstage

    class Greeter:
        def __init__(self, ctx):
            self.ctx = ctx
        def receive(self, envelope):
            print("hello,", envelope.message)

    engine = backstage.Engine()
    engine.spawn_actor(Greeter, id="greeter")
    engine.send("greeter", "world")
    engine.run()            # returns when nothing is left to do

Standard library only; copy this file into a project and it works.  Other loop
backends (asyncio, uvloop) live in the ``backends`` package beside it.

Design rules, in the order they win over each other:

1. Nothing is lost silently.  A message is either handed to ``receive`` or
   recorded as a dead letter (``Engine.dead_letters``).
2. One engine, one thread.  Every ``receive``, ``deinit``, timer and fd callback
   runs on the engine's thread, never two at once.  Other threads only append
   to ``Engine._inbound`` and wake the loop; they touch no other state.
3. Order per sender and receiver is kept, whichever thread sends.
4. Bad input raises at the call that made it and says what to do.
5. The hot path (send -> inbox -> receive) is as short as CPython allows.
   Every trick on it carries the figure that justifies it.  Anything
   occasional (overflow policies, stopping, system messages) branches off it.

MIT licence.
"""

from __future__ import annotations

import abc
import collections
import enum
import heapq
import importlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, NamedTuple

__all__ = [
    "Engine", "Context", "Envelope", "MessageType", "DeadLetter", "Timer",
    "Loop", "Handle", "SelectorLoop", "BackstageError", "EngineClosed",
    "ActorNotFound",
]

__version__ = "0.1.0"

log = logging.getLogger("backstage")


###############################################################################
# Public types: messages, dead letters, errors
# What an actor sees of a message, and what the engine tells a user.
###############################################################################

class MessageType(enum.Enum):
    """What an envelope carries.  Only SEND and PUBLISH reach ``receive``."""
    SEND = "send"
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    POISON_PILL = "poison_pill"


class Envelope:
    """One delivered message.

    ``message`` is the very object the sender passed, never a copy: treat it as
    read-only, or hand over ownership with it.  Treat the envelope as read-only
    too: every subscriber of one publication receives the same envelope.
    """
    # Slots, and the engine's envelopes skip the Python __init__ (see
    # _Envelope): 3.5 M/s against 2.6 M/s for a call to an __init__ (and
    # 1.5 M/s when a whole envelope is built at send time and queued), measured
    # on CPython 3.11 for 1,000,000 deliveries.
    __slots__ = ("sender_id", "message_type", "message", "topic")

    sender_id: str | None
    message_type: MessageType
    message: Any
    topic: str | None

    def __init__(self, sender_id: str | None, message_type: MessageType,
                 message: Any, topic: str | None = None) -> None:
        self.sender_id = sender_id
        self.message_type = message_type
        self.message = message
        self.topic = topic

    def __repr__(self) -> str:
        topic = f", topic={self.topic!r}" if self.topic is not None else ""
        return (f"Envelope(sender_id={self.sender_id!r}, "
                f"message_type={self.message_type.name}, message={self.message!r}{topic})")


class _Envelope(Envelope):
    """An Envelope the engine makes and fills in itself: no Python __init__.

    Not part of the public API; ``isinstance(e, Envelope)`` holds.
    """
    # _Envelope() runs object's C __new__ and __init__ only: 35 ns against
    # 60 ns for object.__new__(Envelope), which goes through a wrapper that
    # packs its arguments into a tuple; burst 3.18 against 2.86 M/s.
    __slots__ = ()
    __init__ = object.__init__


class DeadLetter(NamedTuple):
    """A message that could not be delivered, and why."""
    target_id: str
    envelope: Envelope
    reason: str
    time: float


class BackstageError(Exception):
    """Base class of the errors this module raises."""


class EngineClosed(BackstageError, RuntimeError):
    """The engine was closed; make a new Engine to go on."""


class ActorNotFound(BackstageError, LookupError):
    """No actor is registered under that id."""


# Where the user's sends are counted before they reach an inbox.  A queued
# message is the tuple (sender_id, message, kind): kind None is a direct send,
# an _Envelope is a publication (that one envelope goes to every subscriber),
# _SYSTEM marks an engine command.  A small tuple costs far less than a queued
# object with a __dict__ (see Envelope).
_SYSTEM = object()
_POISON_PILL = MessageType.POISON_PILL

_SEND = MessageType.SEND
_PUBLISH = MessageType.PUBLISH
_get_ident = threading.get_ident

# The advice every EngineClosed error ends with.
_CLOSED = "the engine is closed; make a new Engine to go on"

DEFAULT_CAPACITY = 1024
DEFAULT_TOPIC = "default"
DEAD_LETTERS_KEPT = 1000

# At most this many messages of one actor per turn, then the next ready actor
# gets its turn: one actor that floods itself cannot starve the others.
ACTOR_BATCH = 128
# At most this many messages per engine tick, then timers and I/O get theirs.
# A tick then costs one select() call per >= 2048 messages (about 1 us against
# about 600 us of message handling), so the poll is lost in the noise.
TICK_BUDGET = 2048


###############################################################################
# Loops
# The event loop the engine runs on: the abstract Loop, and the built-in one
# made on `selectors`.  Backends for asyncio and uvloop live in backends/.
###############################################################################

class Handle:
    """A callback scheduled on a loop; ``cancel()`` keeps it from running."""
    __slots__ = ("_callback", "_args", "_cancelled", "when")

    def __init__(self, callback: Callable[..., Any], args: tuple, when: float = 0.0) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False
        self.when = when

    def cancel(self) -> None:
        self._cancelled = True
        self._callback = self._args = None  # drop references early

    def cancelled(self) -> bool:
        return self._cancelled

    def __lt__(self, other: Handle) -> bool:
        return self.when < other.when

    def _run(self) -> None:
        try:
            self._callback(*self._args)
        except Exception:
            log.exception("exception in loop callback %r", self._callback)


class Loop(abc.ABC):
    """What the engine needs of an event loop.

    All methods but ``call_soon_threadsafe`` and ``stop`` are called on the
    loop's own thread only.  ``run`` runs callbacks until ``stop`` is called;
    it may be called again afterwards.
    """

    @abc.abstractmethod
    def time(self) -> float:
        """Monotonic time in seconds, the clock of ``call_later``."""

    @abc.abstractmethod
    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Any:
        """Run ``callback(*args)`` at the next iteration; returns a handle."""

    @abc.abstractmethod
    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Any:
        """``call_soon`` from any thread, waking the loop if it sleeps."""

    @abc.abstractmethod
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        """Run ``callback(*args)`` after ``delay`` seconds; the handle has ``cancel()``."""

    @abc.abstractmethod
    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable."""

    @abc.abstractmethod
    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; False if it was not watched."""

    @abc.abstractmethod
    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable."""

    @abc.abstractmethod
    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; False if it was not watched."""

    @abc.abstractmethod
    def run(self) -> None:
        """Run until ``stop()``."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Make ``run`` return after the current iteration (thread-safe)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the loop's resources."""


class SelectorLoop(Loop):
    """The built-in loop: a ready queue, a timer heap and a selector."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._ready: collections.deque[Handle] = collections.deque()
        self._timers: list[Handle] = []
        self._cancelled_timers = 0
        self._stopping = False
        self._thread: int | None = None       # the thread inside run()
        # Self-pipe: another thread appends to _ready and writes one byte.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r.fileno(), selectors.EVENT_READ,
                                (Handle(self._drain_wakeups, ()), None))

    def time(self) -> float:
        return time.monotonic()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Handle:
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Handle:
        handle = Handle(callback, args)
        self._ready.append(handle)          # deque.append is atomic
        self._wakeup()
        return handle

    def _wakeup(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass                            # the pipe is full: the loop is awake anyway
        except OSError:
            pass                            # closed while another thread woke it

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Handle:
        handle = _TimerHandle(callback, args, self.time() + delay, self)
        heapq.heappush(self._timers, handle)
        return handle

    def _timer_cancelled(self) -> None:
        # Cancelled timers stay in the heap until due; sweep them out when they
        # are the majority, so a program that re-arms timers does not leak.
        self._cancelled_timers += 1
        if self._cancelled_timers > 64 and self._cancelled_timers * 2 > len(self._timers):
            self._timers = [t for t in self._timers if not t._cancelled]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

    def _watch(self, fd: Any, event: int, handle: Handle | None) -> None:
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            if handle is not None:
                data = (handle, None) if event == selectors.EVENT_READ else (None, handle)
                self._selector.register(fd, event, data)
            return
        reader, writer = key.data
        if event == selectors.EVENT_READ:
            reader = handle
        else:
            writer = handle
        mask = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        if mask:
            self._selector.modify(fd, mask, (reader, writer))
        else:
            self._selector.unregister(fd)

    def _watched(self, fd: Any, event: int) -> bool:
        try:
            reader, writer = self._selector.get_key(fd).data
        except KeyError:
            return False
        return (reader if event == selectors.EVENT_READ else writer) is not None

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        self._watch(fd, selectors.EVENT_READ, Handle(callback, args))

    def remove_reader(self, fd: Any) -> bool:
        watched = self._watched(fd, selectors.EVENT_READ)
        if watched:
            self._watch(fd, selectors.EVENT_READ, None)
        return watched

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        self._watch(fd, selectors.EVENT_WRITE, Handle(callback, args))

    def remove_writer(self, fd: Any) -> bool:
        watched = self._watched(fd, selectors.EVENT_WRITE)
        if watched:
            self._watch(fd, selectors.EVENT_WRITE, None)
        return watched

    def run(self) -> None:
        self._thread = _get_ident()
        try:
            while not self._stopping:
                self._run_once()
        finally:
            self._stopping = False
            self._thread = None

    def stop(self) -> None:
        self._stopping = True
        if _get_ident() != self._thread:
            self._wakeup()

    def _run_once(self) -> None:
        """One iteration, and the only place where callbacks are called:

        1. the poll timeout: 0 if callbacks are ready, else until the next
           timer, else no limit;
        2. poll, and queue the callbacks of ready file descriptors;
        3. queue the timers that are due;
        4. run the callbacks that were ready when this step began (those they
           queue wait for the next iteration, after the next poll).
        """
        ready = self._ready
        timers = self._timers
        if ready or self._stopping:
            timeout: float | None = 0
        elif timers:
            timeout = max(0.0, timers[0].when - self.time())
        else:
            timeout = None

        for key, mask in self._selector.select(timeout):
            reader, writer = key.data
            if mask & selectors.EVENT_READ and reader is not None:
                ready.append(reader)
            if mask & selectors.EVENT_WRITE and writer is not None:
                ready.append(writer)

        now = self.time()
        while timers and timers[0].when <= now:
            handle = heapq.heappop(timers)
            if handle._cancelled:
                self._cancelled_timers -= 1
            else:
                handle._popped = True
                ready.append(handle)

        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle._cancelled:
                handle._run()

    def close(self) -> None:
        self._ready.clear()
        self._timers.clear()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


class _TimerHandle(Handle):
    """A SelectorLoop timer; cancelling it tells the loop, for the heap sweep."""
    __slots__ = ("_loop", "_popped")

    def __init__(self, callback: Callable[..., Any], args: tuple, when: float,
                 loop: SelectorLoop) -> None:
        super().__init__(callback, args, when)
        self._loop = loop
        self._popped = False

    def cancel(self) -> None:
        if not self._cancelled:
            super().cancel()
            if not self._popped:
                self._loop._timer_cancelled()


# Backend name -> where its Loop class lives.  Optional backends are imported
# only when asked for, so a vendored backstage.py needs nothing else.
BACKENDS: dict[str, str] = {
    "selectors": "backstage:SelectorLoop",
    "asyncio": "backends.asyncio_backend:AsyncioLoop",
    "uvloop": "backends.uvloop_backend:UvloopLoop",
}


def make_loop(backend: str | Loop) -> Loop:
    """Return a Loop for a backend name, or the Loop object itself."""
    if isinstance(backend, Loop):
        return backend
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r}: use one of {', '.join(map(repr, BACKENDS))} "
            f"or pass a backstage.Loop instance")
    if backend == "selectors":
        return SelectorLoop()
    module_name, _, class_name = BACKENDS[backend].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] == "backends":
            raise ImportError(
                f"backend {backend!r} lives in the 'backends' package beside backstage.py, "
                f"and it is not importable here: copy the backends/ folder next to "
                f"backstage.py, or use Engine(backend='selectors')") from exc
        raise
    return getattr(module, class_name)()


###############################################################################
# Context
# An actor's handle on the engine, and the engine's record of the actor.
###############################################################################

_RUNNING, _STOPPING, _STOPPED = "running", "stopping", "stopped"


class Context:
    """Everything an actor may do, and the engine's record of that actor.

    One per actor, made by the engine and passed to the actor's ``__init__``.
    Attributes whose names start with ``_`` are the engine's, not part of the
    public API.
    """
    # One object per actor holds both the public Context and the engine's
    # bookkeeping: 100,000 idle actors cost ~400 bytes each (see bench/).
    __slots__ = (
        "actor_id",     # the actor's id in the registry
        "engine",       # the Engine it runs on
        "parent",       # the parent's id, or None for a top-level actor
        "_actor",       # the actor instance
        "_receive",     # type(actor).receive, called as _receive(actor, envelope)
        "_inbox",       # list of queued (sender_id, message, kind) tuples
        "_head",        # index of the next message in _inbox
        "_scheduled",   # True while the context is in the engine's ready queue
        "_state",       # _RUNNING, _STOPPING or _STOPPED
        "_capacity",    # inbox capacity, a power of two; grows when exceeded
        "_children",    # list of child contexts in spawn order, or None
        "_subscribers",  # {topic: {subscriber id: Context}}, or None
        "_subscriptions",  # set of (publisher id, topic) this actor follows, or None
        "_timers",      # set of live Timers, or None
        "_watches",     # {fd: (fileobj, reader?, writer?)}, or None
        "_count",       # messages handled so far
        "_last",        # loop time of the last turn with messages
        "__weakref__",
    )

    def __init__(self, engine: Engine, actor_id: str, parent: str | None, capacity: int) -> None:
        self.actor_id = actor_id
        self.engine = engine
        self.parent = parent
        self._actor = None
        self._receive = None
        self._inbox = []
        self._head = 0
        self._scheduled = False
        self._state = _RUNNING
        self._capacity = capacity
        self._children = None
        self._subscribers = None
        self._subscriptions = None
        self._timers = None
        self._watches = None
        self._count = 0
        self._last = 0.0

    def __repr__(self) -> str:
        return f"<Context {self.actor_id!r} {self._state}>"

    # -- information ---------------------------------------------------------

    @property
    def children(self) -> list[str]:
        """Ids of this actor's live children, in spawn order."""
        return [c.actor_id for c in self._children] if self._children else []

    @property
    def actor(self) -> Any:
        """The actor instance."""
        return self._actor

    @property
    def inbox_len(self) -> int:
        """Messages waiting in the inbox."""
        return len(self._inbox) - self._head

    @property
    def capacity(self) -> int:
        """Inbox capacity; under the default policy it doubles when exceeded."""
        while self._capacity < self.inbox_len:
            self._capacity *= 2
        return self._capacity

    @property
    def messages_handled(self) -> int:
        return self._count

    def get_actor(self, actor_id: str) -> Any:
        """The actor instance registered under ``actor_id``, or None."""
        return self.engine.get_actor(actor_id)

    # -- messages ------------------------------------------------------------

    def send(self, target_id: str, message: Any) -> None:
        """Send ``message`` to ``target_id``, with this actor as the sender."""
        self.engine._post(target_id, self.actor_id, message)

    def publish(self, message: Any) -> None:
        """Publish ``message`` on this actor's "default" topic."""
        self.engine._publish(self, DEFAULT_TOPIC, message)

    def publish_to_topic(self, topic: str, message: Any) -> None:
        """Publish ``message`` to every subscriber of this actor's ``topic``."""
        if type(topic) is not str:
            raise TypeError(f"publish_to_topic() needs a str topic, not {type(topic).__name__}")
        self.engine._publish(self, topic, message)

    def subscribe_to_actor(self, target_id: str) -> None:
        """Receive what ``target_id`` publishes on its "default" topic."""
        self.engine._subscribe(self, target_id, DEFAULT_TOPIC)

    def subscribe_to_actor_topic(self, target_id: str, topic: str) -> None:
        """Receive what ``target_id`` publishes on ``topic``."""
        self.engine._subscribe(self, target_id, topic)

    def unsubscribe_from_actor(self, target_id: str) -> None:
        self.engine._unsubscribe(self, target_id, DEFAULT_TOPIC)

    def unsubscribe_from_actor_topic(self, target_id: str, topic: str) -> None:
        self.engine._unsubscribe(self, target_id, topic)

    # -- actors --------------------------------------------------------------

    def spawn_actor(self, actor_class: type, id: str, capacity: int = DEFAULT_CAPACITY) -> Any:
        """Spawn a top-level actor (no parent); see ``Engine.spawn_actor``."""
        return self.engine.spawn_actor(actor_class, id=id, capacity=capacity)

    def spawn_child_actor(self, actor_class: type, id: str,
                          capacity: int = DEFAULT_CAPACITY) -> Any:
        """Spawn an actor that stops when this one stops."""
        return self.engine._spawn(actor_class, id, capacity, self)

    def shutdown(self) -> None:
        """Stop this actor once the messages already in its inbox are handled."""
        self.engine.poison_pill(self.actor_id)

    # -- timers and I/O ------------------------------------------------------

    def run_recurring(self, interval_s: float, callback: Callable[[], Any]) -> Timer:
        """Call ``callback()`` every ``interval_s`` seconds until cancelled or the actor stops."""
        _check_delay("run_recurring", "interval_s", interval_s, allow_zero=False)
        return self.engine._call_on_loop(Timer, self, interval_s, callback, True)

    def send_after(self, delay_s: float, target_id: str, message: Any) -> Timer:
        """Send ``message`` to ``target_id`` after ``delay_s`` seconds."""
        _check_delay("send_after", "delay_s", delay_s, allow_zero=True)
        return self.engine._call_on_loop(
            Timer, self, delay_s, lambda: self.send(target_id, message), False)

    def watch_readable(self, fileobj: Any, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` on the engine thread whenever ``fileobj`` is readable."""
        self.engine._call_on_loop(self.engine._watch, self, fileobj, callback, True)

    def watch_writable(self, fileobj: Any, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` on the engine thread whenever ``fileobj`` is writable."""
        self.engine._call_on_loop(self.engine._watch, self, fileobj, callback, False)

    def unwatch(self, fileobj: Any) -> None:
        """Stop watching ``fileobj`` (both directions); nothing if it was not watched."""
        self.engine._call_on_loop(self.engine._unwatch_here, self, fileobj)


def _check_delay(call: str, name: str, value: Any, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{call}() needs a number of seconds for {name}, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        need = "zero or more" if allow_zero else "more than zero"
        raise ValueError(f"{call}() needs {name} {need} seconds, got {value!r}")


class Timer:
    """A timer owned by an actor: ``cancel()`` ends it; it also ends with the actor."""
    __slots__ = ("_ctx", "_interval", "_callback", "_recurring", "_handle")

    def __init__(self, ctx: Context, interval: float, callback: Callable[[], Any],
                 recurring: bool) -> None:
        if ctx._state is _STOPPED:
            raise RuntimeError(f"actor {ctx.actor_id!r} has stopped; it can start no timers")
        self._ctx = ctx
        self._interval = interval
        self._callback = callback
        self._recurring = recurring
        engine = ctx.engine
        if ctx._timers is None:
            ctx._timers = set()
        ctx._timers.add(self)
        engine._user_timers += 1
        self._handle = engine._loop.call_later(interval, self._fire)

    @property
    def active(self) -> bool:
        return self._handle is not None

    def cancel(self) -> None:
        """Stop the timer; safe to call twice, and from any thread."""
        if self._handle is not None:
            self._ctx.engine._call_on_loop(self._end)

    def _end(self) -> None:
        if self._handle is None:
            return
        self._handle.cancel()
        self._handle = None
        ctx = self._ctx
        ctx._timers.discard(self)
        engine = ctx.engine
        engine._user_timers -= 1
        engine._check_idle()

    def _fire(self) -> None:
        if self._recurring:
            # Schedule the next run first, so a slow callback does not drift
            # the period and a callback that cancels the timer wins.
            self._handle = self._ctx.engine._loop.call_later(self._interval, self._fire)
        try:
            self._callback()
        except Exception:
            log.exception("timer callback of actor %r failed", self._ctx.actor_id)
        if not self._recurring:
            self._end()


###############################################################################
# Engine
# The registry, the scheduler and the public entry points.
###############################################################################

class Engine:
    """Runs actors on one thread, on an event loop.

    ``Engine(backend="selectors")``: "selectors" (built in), "asyncio",
    "uvloop", or a ``Loop`` instance.  Use it as a context manager, or call
    ``close()`` when done, so every actor's ``deinit`` runs.
    """

    def __init__(self, backend: str | Loop = "selectors", *,
                 dead_letters_kept: int = DEAD_LETTERS_KEPT) -> None:
        if isinstance(dead_letters_kept, bool) or not isinstance(dead_letters_kept, int) \
                or dead_letters_kept < 1:
            raise ValueError(f"dead_letters_kept must be an int of at least 1, "
                             f"got {dead_letters_kept!r}")
        self._loop = make_loop(backend)
        self.backend = backend if isinstance(backend, str) else type(backend).__name__
        self._registry: dict[str, Context] = {}      # every live actor by id
        self._ready: collections.deque[Context] = collections.deque()  # actors with work
        self._tick_scheduled = False                 # a _tick is queued on the loop
        self._inbound: collections.deque = collections.deque()  # (fn, args) from other threads
        self._inbound_scheduled = False              # a _process_inbound is queued
        self._thread_id: int | None = _get_ident()   # the engine's thread; None once closed
        self._running = False                        # inside run() or run_forever()
        self._until_idle = False                     # run() (True) or run_forever()
        self._stop_requested = False                 # stop() was called during this run
        self._close_requested = False                # close() waits for the run to end
        self._closed = False
        self._closed_event = threading.Event()
        self._lock = threading.RLock()               # taken by other threads' calls only
        self._user_timers = 0                        # live Timers of actors
        self._user_watches = 0                       # fds watched by actors
        self.dead_letters: collections.deque[DeadLetter] = collections.deque(
            maxlen=dead_letters_kept)                # the most recent dead letters
        self.dead_letter_count = 0                   # every dead letter ever
        self._dead_letter_logged: dict[str, float] = {}  # target id -> last log line
        self.started_at = time.time()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running else "idle"
        return f"<Engine {self.backend} {state} actors={len(self._registry)}>"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- public API ----------------------------------------------------------

    def spawn_actor(self, actor_class: type, id: str, capacity: int = DEFAULT_CAPACITY) -> Any:
        """Create an actor of ``actor_class`` under ``id`` and return the instance.

        ``actor_class.__init__(ctx)`` runs at once, on the engine's thread (a
        call from another thread waits for it).  If ``id`` is taken, the actor
        already there is returned and nothing is created.  ``capacity`` is the
        inbox bound, rounded up to a power of two.  An exception from
        ``__init__`` propagates, and no actor is left registered.
        """
        return self._spawn(actor_class, id, capacity, None)

    def send(self, target_id: str, message: Any) -> None:
        """Send ``message`` to the actor ``target_id`` (sender_id None); any thread.

        A message to an id with no actor becomes a dead letter, not an error.
        """
        self._post(target_id, None, message)

    def poison_pill(self, target_id: str) -> None:
        """Stop ``target_id`` after the messages already in its inbox; any thread."""
        self._post(target_id, None, _POISON_PILL, _SYSTEM)

    def get_actor(self, actor_id: str) -> Any:
        """The actor instance registered under ``actor_id``, or None; any thread."""
        ctx = self._registry.get(actor_id)
        return ctx._actor if ctx is not None else None

    def get_context(self, actor_id: str) -> Context | None:
        """The Context of ``actor_id``, or None; any thread."""
        return self._registry.get(actor_id)

    @property
    def actor_ids(self) -> list[str]:
        """Ids of the live actors, in spawn order."""
        return list(self._registry)

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self) -> None:
        """Handle messages, timers and I/O until nothing is left to do, or ``stop()``.

        Work is a queued message, a live timer or a watched file of an actor;
        the engine's own housekeeping never counts.
        """
        self._run(until_idle=True)

    def run_forever(self) -> None:
        """Handle messages, timers and I/O until ``stop()`` is called (from anywhere)."""
        self._run(until_idle=False)

    def stop(self) -> None:
        """Make ``run()``/``run_forever()`` return soon; any thread, or an actor."""
        self._stop_requested = True
        self._loop.stop()

    def close(self) -> None:
        """Stop every actor (children first, ``deinit`` once each) and free the loop.

        Messages still queued become dead letters; every later spawn or send
        raises ``EngineClosed``.  Idempotent.  Called while the engine runs, it
        stops the run and closes when the run returns (waiting for it, from
        another thread).
        """
        with self._lock:
            if self._closed:
                return
            if self._running:
                self._close_requested = True
                self.stop()
                if self._on_engine_thread():
                    return
            else:
                self._close()
                return
        self._closed_event.wait()

    # -- running -------------------------------------------------------------

    def _run(self, until_idle: bool) -> None:
        if self._closed:
            raise EngineClosed(f"cannot run: {_CLOSED}")
        with self._lock:
            if self._running:
                raise RuntimeError("the engine is already running; run() and run_forever() "
                                   "may not be nested or called from two threads")
            self._running = True
        self._thread_id = _get_ident()
        self._until_idle = until_idle
        self._stop_requested = False
        try:
            self._process_inbound()
            while not self._stop_requested and not (until_idle and self._idle()):
                self._loop.run()
        finally:
            with self._lock:
                self._running = False
                close = self._close_requested
            # Calls that other threads queued while we stopped must not wait forever.
            self._process_inbound()
            self._stop_requested = False
            if close:
                self._close()

    def _idle(self) -> bool:
        """True when no user work is left: no message, timer, watch or inbound call."""
        return not (self._ready or self._inbound or self._user_timers or self._user_watches)

    def _check_idle(self) -> None:
        if self._until_idle and self._running and self._idle():
            self._loop.stop()

    def _on_engine_thread(self) -> bool:
        return _get_ident() == self._thread_id

    # -- the scheduler -------------------------------------------------------

    def _schedule(self, ctx: Context) -> None:
        ctx._scheduled = True
        self._ready.append(ctx)
        if not self._tick_scheduled:
            self._tick_scheduled = True
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        """Give ready actors their turns, until none is ready or the budget is spent.

        Each actor handles at most ACTOR_BATCH messages, then goes to the back
        of the queue if it has more; after TICK_BUDGET messages the loop polls
        I/O and runs due timers before the next tick.
        """
        ready = self._ready
        turn = self._turn
        now = self._loop.time()
        budget = TICK_BUDGET
        try:
            while ready and budget > 0:
                budget -= turn(ready.popleft(), now)
        finally:
            if ready:
                self._loop.call_soon(self._tick)
            else:
                self._tick_scheduled = False
                self._check_idle()

    def _turn(self, ctx: Context, now: float) -> int:
        """One actor's turn: up to ACTOR_BATCH of its messages.  Returns how many."""
        if ctx._state is _STOPPED:
            return 0        # stopped with its parent while it waited in the queue
        inbox = ctx._inbox
        head = ctx._head
        end = head + ACTOR_BATCH
        if len(inbox) <= end:
            # Swap in a fresh list and run through the old one: iterating a list
            # beats deque.popleft per message (ping-pong 5.0 against 2.8 M/s,
            # bursts equal), and an empty list is 56 bytes against a deque's 760.
            ctx._inbox = []
            ctx._head = 0
            batch = inbox if head == 0 else inbox[head:]
        else:
            batch = inbox[head:end]
            if end > 4096 and end * 2 > len(inbox):
                del inbox[:end]         # let handled messages go; amortised O(1)
                ctx._head = 0
            else:
                ctx._head = end
        count = len(batch)
        ctx._count += count
        ctx._last = now

        actor = ctx._actor
        receive = ctx._receive
        items = iter(batch)
        envelope = None
        while True:
            # One try around the whole batch; after a failure the same iterator
            # goes on with the next message.
            try:
                for sender_id, message, kind in items:
                    if kind is None:
                        envelope = _Envelope()
                        envelope.sender_id = sender_id
                        envelope.message_type = _SEND
                        envelope.message = message
                        envelope.topic = None
                    elif kind.__class__ is _Envelope:
                        envelope = kind
                    else:
                        self._system_message(ctx, sender_id, message, items)
                        return count
                    receive(actor, envelope)
                break
            except Exception as exc:
                self._receive_failed(ctx, envelope, exc)
                if ctx._state is _STOPPED:
                    return count
            except BaseException:
                # KeyboardInterrupt or SystemExit: put back what this turn has
                # not handled, so nothing is lost, and let it propagate.
                ctx._inbox[ctx._head:ctx._head] = list(items)
                self._after_turn(ctx)
                raise
        # _after_turn inlined: one Python call less per turn; ping-pong
        # 1.92 against 1.86 M/s.
        if len(ctx._inbox) > ctx._head:
            self._ready.append(ctx)         # still scheduled: back of the queue
        else:
            ctx._scheduled = False
        return count

    def _after_turn(self, ctx: Context) -> None:
        if len(ctx._inbox) > ctx._head:
            self._ready.append(ctx)         # still scheduled: back of the queue
        else:
            ctx._scheduled = False

    def _receive_failed(self, ctx: Context, envelope: Envelope | None, exc: Exception) -> None:
        log.error("actor %r failed on %r; it goes on with its next message",
                  ctx.actor_id, envelope, exc_info=exc)

    def _system_message(self, ctx: Context, sender_id: str | None, message: Any,
                        rest: Iterator[tuple]) -> None:
        """An engine command met in an inbox, in order with the user's messages."""
        if message is _POISON_PILL:
            self._stop_actor(ctx, "stopped by poison pill", list(rest))
        else:  # pragma: no cover - only the engine queues system messages
            raise AssertionError(f"unknown system message {message!r}")

    # -- sending -------------------------------------------------------------

    def _post(self, target_id: str, sender_id: str | None, message: Any,
              kind: Any = None) -> None:
        """Queue a message for ``target_id``; any thread."""
        if _get_ident() != self._thread_id:
            return self._post_from_other_thread(target_id, sender_id, message, kind)
        ctx = self._registry.get(target_id)
        if ctx is None:
            return self._undeliverable(target_id, sender_id, message, kind)
        ctx._inbox.append((sender_id, message, kind))
        if not ctx._scheduled:
            # _schedule inlined: one Python call less whenever an actor wakes;
            # ping-pong (a wake-up per message) 1.92 against 1.85 M/s.
            ctx._scheduled = True
            self._ready.append(ctx)
            if not self._tick_scheduled:
                self._tick_scheduled = True
                self._loop.call_soon(self._tick)

    def _post_from_other_thread(self, target_id: str, sender_id: str | None,
                                message: Any, kind: Any) -> None:
        # Another thread only appends to _inbound and wakes the loop; the
        # engine thread queues the message, so each thread's order is kept.
        if self._closed:
            raise EngineClosed(f"cannot send to {target_id!r}: {_CLOSED}")
        if type(target_id) is not str:
            raise TypeError(f"send() needs a str actor id, not {target_id!r}")
        self._inbound.append((self._post, (target_id, sender_id, message, kind)))
        if not self._inbound_scheduled:
            self._inbound_scheduled = True
            self._loop.call_soon_threadsafe(self._process_inbound)

    def _process_inbound(self) -> None:
        # Clear the flag before draining: a send that lands after the drain then
        # schedules a new one, and none is left behind.
        self._inbound_scheduled = False
        inbound = self._inbound
        while inbound:
            fn, args = inbound.popleft()
            fn(*args)

    def _call_on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn(*args)`` on the engine thread and return its result; any thread.

        When no thread runs the engine, the caller runs it, under the lock.
        """
        if _get_ident() == self._thread_id:
            return fn(*args)
        if self._closed:
            raise EngineClosed(_CLOSED)
        with self._lock:
            if not self._running:
                return fn(*args)
            future: Future = Future()
            self._inbound.append((_run_into_future, (future, fn, args)))
            self._inbound_scheduled = True
            self._loop.call_soon_threadsafe(self._process_inbound)
        return future.result()

    def _undeliverable(self, target_id: str, sender_id: str | None, message: Any,
                       kind: Any) -> None:
        if type(target_id) is not str:
            raise TypeError(f"send() needs a str actor id, not {target_id!r}")
        self._dead_letter(target_id, _envelope_of(sender_id, message, kind), "no such actor")

    def _dead_letter(self, target_id: str, envelope: Envelope, reason: str) -> None:
        self.dead_letter_count += 1
        self.dead_letters.append(DeadLetter(target_id, envelope, reason, time.time()))
        now = time.monotonic()
        logged = self._dead_letter_logged
        if now - logged.get(target_id, -2.0) >= 1.0:
            if len(logged) > 1000:
                logged.clear()
            logged[target_id] = now
            log.info("dead letter for %r (%s): %r; at most one such line per actor per second",
                     target_id, reason, envelope)

    def _publish(self, ctx: Context, topic: str, message: Any) -> None:
        if _get_ident() != self._thread_id:
            return self._call_on_loop(self._publish_here, ctx, topic, message)
        self._publish_here(ctx, topic, message)

    def _publish_here(self, ctx: Context, topic: str, message: Any) -> None:
        subscribers = ctx._subscribers
        if not subscribers:
            return  # no subscriber: delivered to nobody, as in every pub/sub system
        subscribed = subscribers.get(topic)
        if not subscribed:
            return
        # One envelope for every subscriber, made here: a delivery then
        # allocates nothing; fan-out 11.8 against 5.9 M deliveries/s.
        envelope = _Envelope()
        envelope.sender_id = ctx.actor_id
        envelope.message_type = _PUBLISH
        envelope.message = message
        envelope.topic = topic
        item = (ctx.actor_id, message, envelope)
        for sub in subscribed.values():
            sub._inbox.append(item)
            if not sub._scheduled:
                self._schedule(sub)

    def _subscribe(self, ctx: Context, target_id: str, topic: str) -> None:
        if type(target_id) is not str or type(topic) is not str:
            raise TypeError("subscribing needs a str actor id and a str topic, "
                            f"got {target_id!r} and {topic!r}")
        self._call_on_loop(self._subscribe_here, ctx, target_id, topic)

    def _subscribe_here(self, ctx: Context, target_id: str, topic: str) -> None:
        publisher = self._registry.get(target_id)
        if publisher is None:
            raise ActorNotFound(f"cannot subscribe to {target_id!r}: no actor has that id; "
                                f"spawn it first")
        if ctx._state is not _RUNNING:
            raise RuntimeError(f"actor {ctx.actor_id!r} is stopping; it cannot subscribe")
        if publisher._subscribers is None:
            publisher._subscribers = {}
        publisher._subscribers.setdefault(topic, {})[ctx.actor_id] = ctx
        if ctx._subscriptions is None:
            ctx._subscriptions = set()
        ctx._subscriptions.add((target_id, topic))

    def _unsubscribe(self, ctx: Context, target_id: str, topic: str) -> None:
        self._call_on_loop(self._unsubscribe_here, ctx, target_id, topic)

    def _unsubscribe_here(self, ctx: Context, target_id: str, topic: str) -> None:
        if ctx._subscriptions:
            ctx._subscriptions.discard((target_id, topic))
        publisher = self._registry.get(target_id)
        if publisher is not None and publisher._subscribers:
            subscribed = publisher._subscribers.get(topic)
            if subscribed and subscribed.get(ctx.actor_id) is ctx:
                del subscribed[ctx.actor_id]
                if not subscribed:
                    del publisher._subscribers[topic]

    # -- spawning and stopping -----------------------------------------------

    def _spawn(self, actor_class: type, actor_id: str, capacity: int,
               parent: Context | None) -> Any:
        _check_spawn_args(actor_class, actor_id, capacity)
        if self._closed:
            raise EngineClosed(f"cannot spawn {actor_id!r}: {_CLOSED}")
        return self._call_on_loop(self._spawn_here, actor_class, actor_id, capacity, parent)

    def _spawn_here(self, actor_class: type, actor_id: str, capacity: int,
                    parent: Context | None) -> Any:
        existing = self._registry.get(actor_id)
        if existing is not None:
            return existing._actor
        if parent is not None and parent._state is not _RUNNING:
            raise RuntimeError(f"actor {parent.actor_id!r} is stopping; it cannot spawn children")
        ctx = Context(self, actor_id, parent.actor_id if parent else None,
                      _power_of_two(capacity))
        actor = actor_class.__new__(actor_class)
        try:
            actor.ctx = ctx
        except AttributeError:
            pass  # a class with __slots__ and no "ctx" slot keeps its own reference
        ctx._actor = actor
        # The plain function, called as receive(actor, envelope): no bound
        # method object per actor, one less indirection per message.
        ctx._receive = type(actor).receive
        self._registry[actor_id] = ctx
        if parent is not None:
            if parent._children is None:
                parent._children = []
            parent._children.append(ctx)
        try:
            actor.__init__(ctx)
        except BaseException:
            self._stop_actor(ctx, f"{actor_class.__name__}.__init__ failed", [], deinit=False)
            raise
        return actor

    def _stop_actor(self, ctx: Context, reason: str, leftover: list,
                    deinit: bool = True) -> None:
        """Stop ``ctx`` now, in the order DESIGN.md gives.

        Children first (deepest first), then subscriptions both ways, then it
        leaves its parent and the registry, ``deinit`` runs, timers and watches
        end; what is still queued for it becomes dead letters.
        """
        if ctx._state is not _RUNNING:
            return
        ctx._state = _STOPPING
        if ctx._children:
            for child in reversed(ctx._children):
                self._stop_actor(child, f"parent {ctx.actor_id!r} stopped", [])
        for target_id, topic in list(ctx._subscriptions or ()):
            self._unsubscribe_here(ctx, target_id, topic)
        for topic, subscribed in (ctx._subscribers or {}).items():
            for sub in subscribed.values():
                sub._subscriptions.discard((ctx.actor_id, topic))
        ctx._subscribers = None
        if ctx.parent is not None:
            parent = self._registry.get(ctx.parent)
            if parent is not None and parent._children and ctx in parent._children:
                parent._children.remove(ctx)
        if self._registry.get(ctx.actor_id) is ctx:
            del self._registry[ctx.actor_id]
        if deinit:
            deinit_fn = getattr(ctx._actor, "deinit", None)
            if deinit_fn is not None:
                try:
                    deinit_fn()
                except Exception:
                    log.exception("deinit of actor %r failed", ctx.actor_id)
        for timer in list(ctx._timers or ()):
            timer._end()
        for fileobj in list(ctx._watches or ()):
            self._unwatch_here(ctx, fileobj)
        ctx._state = _STOPPED
        # Break the actor <-> context cycle, so a stopped actor is freed at
        # once by reference counting instead of by the cyclic GC: skynet with
        # 1M leaves peaks at 719 against 794 MiB.
        ctx._actor = None
        # What was queued after the pill, or is still queued, is not delivered.
        pending = leftover + ctx._inbox[ctx._head:]
        ctx._inbox = _StoppedInbox(self, ctx.actor_id)
        ctx._head = 0
        for sender_id, message, kind in pending:
            if kind is not _SYSTEM:
                self._dead_letter(ctx.actor_id, _envelope_of(sender_id, message, kind),
                                  f"actor stopped before handling it ({reason})")
        self._check_idle()

    def _close(self) -> None:
        self._closed = True
        try:
            self._process_inbound()
            top_level = [c for c in self._registry.values() if c.parent is None]
            for ctx in reversed(top_level):
                self._stop_actor(ctx, "engine closed", [])
            for ctx in list(self._registry.values()):
                self._stop_actor(ctx, "engine closed", [])
            self._ready.clear()
            self._thread_id = None    # every later call takes the slow path, which raises
            self._loop.close()
        finally:
            self._closed_event.set()

    # -- file descriptors ----------------------------------------------------

    def _watch(self, ctx: Context, fileobj: Any, callback: Callable[[], Any],
               readable: bool) -> None:
        if ctx._state is not _RUNNING:
            raise RuntimeError(f"actor {ctx.actor_id!r} is stopping; it cannot watch files")
        if not callable(callback):
            raise TypeError(f"watch needs a callable callback, not {callback!r}")
        if ctx._watches is None:
            ctx._watches = {}
        if fileobj not in ctx._watches:
            ctx._watches[fileobj] = [False, False]
            self._user_watches += 1
        wrapped = _guarded(ctx, callback)
        if readable:
            self._loop.add_reader(fileobj, wrapped)
        else:
            self._loop.add_writer(fileobj, wrapped)
        ctx._watches[fileobj][0 if readable else 1] = True

    def _unwatch_here(self, ctx: Context, fileobj: Any) -> None:
        if not ctx._watches or fileobj not in ctx._watches:
            return
        reading, writing = ctx._watches.pop(fileobj)
        if reading:
            self._loop.remove_reader(fileobj)
        if writing:
            self._loop.remove_writer(fileobj)
        self._user_watches -= 1
        self._check_idle()


class _StoppedInbox(list):
    """The inbox of a stopped actor: whatever still reaches it is a dead letter."""
    __slots__ = ("_engine", "_actor_id")

    def __init__(self, engine: Engine, actor_id: str) -> None:
        super().__init__()
        self._engine = engine
        self._actor_id = actor_id

    def append(self, item: tuple) -> None:
        sender_id, message, kind = item
        if kind is not _SYSTEM:
            self._engine._dead_letter(self._actor_id, _envelope_of(sender_id, message, kind),
                                      "actor stopped")


###############################################################################
# Helpers
###############################################################################

def _envelope_of(sender_id: str | None, message: Any, kind: Any) -> Envelope:
    if kind is None:
        return Envelope(sender_id, _SEND, message)
    if kind.__class__ is _Envelope:
        return kind
    return Envelope(sender_id, _POISON_PILL, message)


def _run_into_future(future: Future, fn: Callable[..., Any], args: tuple) -> None:
    try:
        result = fn(*args)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _guarded(ctx: Context, callback: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            callback()
        except Exception:
            log.exception("fd callback of actor %r failed", ctx.actor_id)
    return run


def _power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _check_spawn_args(actor_class: Any, actor_id: Any, capacity: Any) -> None:
    if not isinstance(actor_class, type):
        raise TypeError(f"spawn_actor() needs a class, not {actor_class!r}: "
                        f"write spawn_actor(Greeter, id=...), not spawn_actor(Greeter(), ...)")
    if not callable(getattr(actor_class, "receive", None)):
        raise TypeError(f"spawn_actor() needs a class with a receive(self, envelope) method; "
                        f"{actor_class.__name__} has none")
    if type(actor_id) is not str:
        raise TypeError(f"actor ids are strings, not {type(actor_id).__name__}: got {actor_id!r}")
    if not actor_id:
        raise ValueError("actor ids may not be empty: pass id='some-name'")
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"capacity must be an int, not {capacity!r}")
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1, got {capacity}")

