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
2. One engine, one thread.  Every ``receive`` (each step of an async one),
   ``deinit``, timer and fd callback runs on the engine's thread, never two at
   once.  Other threads (``ctx.run_in_thread``'s workers among them) only
   append to ``Engine._inbound`` and wake the loop; they touch no other state.
3. Order per sender and receiver is kept, whichever thread sends.
4. Bad input raises at the call that made it and says what to do.
5. The hot path (send -> inbox -> receive) is as short as CPython allows.
   Every trick on it carries the figure that justifies it.  Anything
   occasional (overflow policies, stopping, engine commands, transports)
   branches off it, and is chosen once per turn, never per message.

The rooms of this file, in the order a message travels through them (each
starts with a ``####`` banner that says what it holds):

    public types -> loops -> the inbox (queued items, overflow policies, the
    envelope an item becomes) -> context -> scheduling and sending (send,
    the turn, receive; the transport seam) -> back-pressure and ask ->
    coroutine handlers, blocking work, stash and become -> pub/sub ->
    dead letters -> lifecycle and supervision (strategies beside the
    code that applies them; the Engine class itself) -> pools and
    routing -> test kit -> inspector feed -> helpers.

``Engine`` is assembled from one class per room (``_Sending``,
``_BackPressure``, ``_Asking``, ``_Waiting``, ``_PubSub``, ``_DeadLetters``,
``_Lifecycle``), each the base of the next; a method lives in the room of
its concern, not in ``Engine``.  Method lookup goes through CPython's type
cache, so the split costs nothing per call.

Where *not* to add code:

- Not on the hot path: ``Context.send``, ``Engine.send``, ``_Sending._turn``
  and the delivery loops.  A new feature gets a tag (see the inbox room), an
  inbox class or a turn of its own, chosen once per turn; the hot path pays
  nothing for what it does not use.
- Not in ``Engine``: it holds the state, run/stop/close and nothing else.
- Not a new string switch: an overflow policy is one class and one line in
  ``OVERFLOW_POLICIES``; a loop backend is one line in ``BACKENDS``.
- Not a registry lookup of your own: every lookup that misses goes through
  ``_resolve_missing`` (the transport seam), so a transport can take it over.
- Not a new attribute on ``Engine`` (it has 29): CPython 3.11 keeps at most
  30 inline; group new state in an object of its own (as ``_Transport``).

The transport seam (actors on other engines; see the sub-banner in
"Scheduling and sending"): ``Engine.attach_transport(t)``; every miss asks
``t.resolve(id)``, which may register ``_install_stand_in(id, flush,
flush_run)``; a stand-in's turn calls ``flush(ctx, items)`` once with its whole
inbox (or ``flush_run(ctx, sender_id, messages, classes)`` for one sender's plain
sends, with the set of the messages' classes), which return True to hold
the senders until ``_release_senders(ctx)`` or ``_release_sender(actor, ctx)``
(a link's back-pressure);
``_item_fields``/``_remote_item`` convert items to and from picklable fields;
``_deliver_remote``, ``_register_reply``/``_settle_reply``/``_RemoteReply``
and ``_stop_stand_in`` do the rest.

Naming conventions:

- ``_here``: the version of a call that runs on the engine thread (or with
  the idle engine held); the name without it checks the thread and hops
  over when needed (``_post`` / ``_post_here``, ``_ask`` / ``_ask_here``).
- ``_from_other_thread``: runs on a foreign thread; it only queues work for
  the engine thread (``_submit``) or waits for its verdict.
- an *item* is what an inbox holds; an *envelope* is what ``receive`` gets;
  a *tag* is an item's third field and says which envelope it becomes.
- ``ctx``: a Context, the engine's record of one actor; ``_extra`` its
  seldom-used part (``_Extras``).
- states are named constants: ``_RUNNING``/``_STOPPING``/``_STOPPED`` for an
  actor's life, ``_IDLE``/``_QUEUED``/``_PARKED`` for ``Context._scheduled``
  (the hot paths write ``True``/``False`` for the last, a constant load).

Copies kept on purpose, each measured again (instructions per scenario
under callgrind, the copy against the call it replaces; bench/instructions.py)
and pinned against the others by tests/test_differential.py, which drives
every entry point and checks what ``receive`` sees against one reference:

- ``Context.send`` carries the posting body written out (``_post``,
  ``_post_here``, ``_enqueue``, ``_schedule``): ping-pong +27 % without.
- ``Engine.send`` carries it too, and queues a bare message: burst +61 %
  without.  Both queue a plain send bare after the same sender's plain send
  (see ``_explicit``; tests/test_sender_runs.py pins the senders).
- ``_turn`` handles one queued message inline, with the after-turn step
  written out: ping-pong +9 % with a call to ``_after_turn`` instead.
- The batch loop exists twice (``_deliver_tuples`` and ``_deliver_mixed``),
  told apart by whether the inbox may hold bare messages: fan-out +12 % with
  ``_deliver_mixed`` alone.
- ``Engine.send`` from another thread carries ``_post_from_other_thread``'s
  usual case written out (a live actor with a plain inbox, no timeout, a
  short queue): the sending thread's part 4,208 -> 3,098 instructions per
  message without the call; the rest goes the long way.
- ``_process_inbound`` posts another thread's send itself (``_post_here``
  written out, with ``Engine.send``'s bare message): cross-thread send
  1.60-1.74 against 0.95-1.01 M msgs/s with ``_submit``'s call per message.
- The envelope-reuse check (``_SentEnvelope`` refilled when its reference
  count says nobody holds it) is written in each delivery loop, inside the
  copies above, and in ``_turn`` (the process's spare envelope).

The batch-end after-turn step is no longer a copy (it calls ``_after_turn``:
inside the noise).

MIT licence.
"""

from __future__ import annotations

import _thread
import abc
import atexit
import bisect
import collections
import enum
import errno
import functools
import heapq
import importlib
import itertools
import json
import logging
import operator
import os
import reprlib
import selectors
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
import types
import weakref
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    NamedTuple,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    get_args,
    overload,
)

__all__ = [
    "Engine", "Context", "Envelope", "MessageType", "DeadLetter", "Timer",
    "Terminated", "Directive", "SupervisorStrategy", "OneForOne", "AllForOne",
    "RestForOne", "Loop", "Handle", "SelectorLoop", "BackstageError",
    "EngineClosed", "ActorNotFound", "InboxFull", "AskFuture",
    "Proxy", "proxy_method", "MethodCall", "Pool", "ROUTINGS", "Probe", "Cluster",
    "Overflow", "InboundOverflow", "Routing",
]

__version__ = "0.1.0"

_T = TypeVar("_T")
_A = TypeVar("_A")     # an actor class: spawn_actor(Counter, ...) returns a Counter
_R = TypeVar("_R")     # what a proxied method returns
_P = ParamSpec("_P")   # a proxied method's parameters
_PX = TypeVar("_PX", bound="Proxy[Any]")  # a Proxy subclass declared with proxy_method

log = logging.getLogger("backstage")
# A library configures no logging: records about an actor carry its id as
# ``record.actor_id``; the program decides where they go (README, "Logging").
log.addHandler(logging.NullHandler())


###############################################################################
# Public types: messages, dead letters, errors, defaults
# What an actor sees of a message, what the engine tells a user, and the
# numbers a user may tune.
###############################################################################

class MessageType(enum.Enum):
    """What an envelope carries.

    SEND, PUBLISH and TERMINATED reach ``receive``; the others are the
    engine's own commands.
    """
    SEND = "send"
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    POISON_PILL = "poison_pill"
    TERMINATED = "terminated"


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
    # _reply is set only on asked messages; the hot path never touches it.
    __slots__ = ("sender_id", "message_type", "message", "topic", "_reply")

    sender_id: str | None
    message_type: MessageType
    message: Any
    topic: str | None
    _reply: Any

    def __init__(self, sender_id: str | None, message_type: MessageType,
                 message: Any, topic: str | None = None) -> None:
        self.sender_id = sender_id
        self.message_type = message_type
        self.message = message
        self.topic = topic

    def reply(self, value: Any) -> None:
        """Answer an asked message: the asker's future gets ``value``.

        Any thread.  A reply that comes after the ask timed out (or a second
        reply) is a dead letter.
        """
        reply = getattr(self, "_reply", None)
        if reply is None:
            raise RuntimeError(
                "this message was sent, not asked, so there is nobody to reply to: "
                "ask with engine.ask(id, message) or ctx.ask(id, message), or answer "
                "with ctx.send(envelope.sender_id, ...)")
        reply.settle(value, None)

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy or a pickle is a plain Envelope: the engine's subclasses, and
        # an asked message's reply handle, stay with the engine.
        return (Envelope, (self.sender_id, self.message_type, self.message, self.topic))

    def __repr__(self) -> str:
        topic = f", topic={self.topic!r}" if self.topic is not None else ""
        return (f"Envelope(sender_id={self.sender_id!r}, "
                f"message_type={self.message_type.name}, message={self.message!r}{topic})")


class DeadLetter(NamedTuple):
    """A message that could not be delivered, and why."""
    target_id: str
    envelope: Envelope
    reason: str
    time: float


class Terminated(NamedTuple):
    """The message a monitor receives when the actor it watches stops."""
    actor_id: str
    reason: str


class BackstageError(Exception):
    """Base class of the errors this module raises."""


class EngineClosed(BackstageError, RuntimeError):
    """The engine was closed; make a new Engine to go on."""


class ActorNotFound(BackstageError, LookupError):
    """No actor is registered under that id."""


class InboxFull(BackstageError):
    """The target's inbox is full and its overflow policy refuses to wait."""


# The advice every EngineClosed error ends with.
_CLOSED = "the engine is closed; make a new Engine to go on"

DEFAULT_CAPACITY = 1024
DEFAULT_TOPIC = "default"
# What a send to a full inbox does: spawn_actor(overflow=...), see the
# policies in "The inbox" (OVERFLOW_POLICIES, which a test holds to these).
Overflow = Literal["grow", "block", "drop", "drop_oldest", "fail"]
# What a send from another thread does when the cross-thread queue is full:
# Engine(inbound_overflow=...).
InboundOverflow = Literal["block", "fail"]
# How a pool picks its routee: spawn_pool(routing=...), see "Pools".
Routing = Literal["round_robin", "least_loaded", "broadcast", "consistent_hash"]
DEAD_LETTER_TOPIC = "dead_letters"
DEAD_LETTERS_KEPT = 1000

# At most this many messages of one actor per turn, then the next ready actor
# gets its turn: one actor that floods itself cannot starve the others.
ACTOR_BATCH = 128
# At most this many messages per engine tick, then timers and I/O get theirs.
# A tick then costs one select() call per >= 2048 messages (about 1 us against
# about 600 us of message handling), so the poll is lost in the noise.
TICK_BUDGET = 2048
# The longest select() wait, in seconds: a timer further away is reached by
# waking once an hour (select() overflows past about 25 days).
MAX_SELECT_WAIT = 3600.0
# Calls from other threads run per drain of the cross-thread queue, then
# timers, I/O and actors get their turn: a flood of sends from other threads
# cannot starve the loop (it did: 8 sending threads stopped every timer).
# Half of TICK_BUDGET: a loop iteration then moves at most 1,024 messages in
# from other threads and hands up to 2,048 to receive, so a flood cannot grow
# an inbox faster than its actor empties it.
INBOUND_BUDGET = 1024
# The cross-thread queue's bound, by default: past it, a foreign sender waits
# (or gets InboxFull, with inbound_overflow="fail").  An entry costs about
# 150 bytes, so the default bounds the queue to about 10 MB.
INBOUND_CAPACITY = 65536
# Past this many queued calls, a foreign sender yields the GIL at each send.
_INBOUND_YIELD_AT = 4096
# The most dead letters an engine keeps (dead_letters_kept).
DEAD_LETTERS_KEPT_MAX = 10_000_000
# Seconds during which further failures of one actor are counted, not logged.
FAILURE_LOG_EVERY = 10.0
# Characters of a message shown in a log line about it.
LOGGED_MESSAGE_CHARS = 300
# Seconds between two snapshots of the inspector feed, by default.
INSPECTOR_INTERVAL = 0.5
# A receive or callback holding the engine thread longer than this is logged
# (Engine(slow_callback_s=...); None turns it off).
SLOW_CALLBACK_S = 1.0
# Signals that make run_forever() close the engine cleanly (main thread only).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_get_ident = threading.get_ident


class _ThreadMark(Protocol):
    def _is_owned(self) -> bool: ...     # the RLock method, not in its stub


def _thread_mark() -> _ThreadMark:
    """A mark of the calling thread: an RLock it holds.  ``mark._is_owned()``
    says, from any thread, whether the caller is that thread: 143 instructions
    against 446 for ``_get_ident() == thread_id``, which makes an int per call
    (callgrind, 3.11; 172 against 552 on 3.12, 171 against 497 on 3.13).  The
    check is on every send: actor burst 3,477 -> 3,151 instructions a message,
    burst 3,380 -> 3,068, many-to-one 3,925 -> 3,594 (bench/instructions.py)."""
    mark = _thread.RLock()
    mark.acquire()
    return cast(_ThreadMark, mark)


# No thread's: the mark of a closed engine (every call takes the slow path).
_NO_THREAD = cast(_ThreadMark, _thread.RLock())


# Needed at import time (the default strategies check their arguments).
def _check_delay(call: str, name: str, value: Any, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{call}() needs a number of seconds for {name}, not {value!r}")
    if value != value or value in (_INF, -_INF):
        never = ": pass timeout=None to wait without a limit" if name == "timeout" else ""
        raise ValueError(f"{call}() needs a finite {name} in seconds, got {value!r}{never}")
    if value < 0 or (value == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "more than zero"
        raise ValueError(f"{call}() needs {name} {need} seconds, got {value!r}")


_INF = float("inf")


###############################################################################
# Loops
# The event loop the engine runs on: the abstract Loop, and the built-in one
# made on `selectors`.  Backends for asyncio and uvloop live in backends/.
###############################################################################

# Bytes read per recv() when the loop drains its wake-up socket: one call
# empties it, as each wake-up is one byte.
_WAKEUP_DRAIN_BYTES = 4096
# Cancelled timers are swept out of the heap once there are more than this
# many and they are the majority; fewer are not worth a heapify.
_TIMER_SWEEP_MIN = 64


class Handle:
    """A callback scheduled on a loop; ``cancel()`` keeps it from running."""
    __slots__ = ("_callback", "_args", "_cancelled", "when")

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...],
                 when: float = 0.0) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False
        self.when = when

    def cancel(self) -> None:
        self._cancelled = True
        # Drop references early; a cancelled handle never runs.
        self._callback = self._args = None  # type: ignore[assignment]

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
        self._timers: list[_TimerHandle] = []
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
        # A short read emptied the pipe: no second recv to hear EAGAIN (a
        # syscall and a raised exception per wake-up; a byte written since
        # wakes the next select, as it should).  Cross-thread ask round
        # trip: 2 -> 1 recvfrom (strace -c).
        try:
            while len(self._wake_r.recv(_WAKEUP_DRAIN_BYTES)) == _WAKEUP_DRAIN_BYTES:
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
        if self._cancelled_timers > _TIMER_SWEEP_MIN \
                and self._cancelled_timers * 2 > len(self._timers):
            self._timers = [t for t in self._timers if not t._cancelled]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

    def _set_handler(self, fd: Any, event: int, handle: Handle | None) -> None:
        try:
            key = self._selector.get_key(fd)
            if key.fileobj is not fd and handle is not None and _is_closed(key.fileobj):
                # The number of a file closed while watched, given to a new one:
                # epoll forgot the old file, so only a fresh registration makes
                # the new one fire (it never did).
                self._selector.unregister(key.fileobj)
                raise KeyError(fd)
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
        except (KeyError, ValueError):      # ValueError: closed, and forgotten already
            return False
        return (reader if event == selectors.EVENT_READ else writer) is not None

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        self._set_handler(fd, selectors.EVENT_READ, Handle(callback, args))

    def remove_reader(self, fd: Any) -> bool:
        watched = self._watched(fd, selectors.EVENT_READ)
        if watched:
            self._set_handler(fd, selectors.EVENT_READ, None)
        return watched

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        self._set_handler(fd, selectors.EVENT_WRITE, Handle(callback, args))

    def remove_writer(self, fd: Any) -> bool:
        watched = self._watched(fd, selectors.EVENT_WRITE)
        if watched:
            self._set_handler(fd, selectors.EVENT_WRITE, None)
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
            # Clamped: select() raises OverflowError for a wait past about 25
            # days (a month-long timer), and would in every later tick.
            timeout = min(max(0.0, timers[0].when - self.time()), MAX_SELECT_WAIT)
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
            timer = heapq.heappop(timers)
            if timer._cancelled:
                self._cancelled_timers -= 1
            else:
                timer._popped = True
                ready.append(timer)

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

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...], when: float,
                 loop: SelectorLoop) -> None:
        super().__init__(callback, args, when)
        self._loop = loop
        self._popped = False

    def cancel(self) -> None:
        if not self._cancelled:
            super().cancel()
            if not self._popped:
                self._loop._timer_cancelled()


# Backend name -> where its Loop class lives ("backends." means the backends
# package beside this file, see _backends_package).  Optional backends are
# imported only when asked for, so a vendored backstage.py needs nothing else.
BACKENDS: dict[str, str] = {
    "selectors": "backstage:SelectorLoop",
    "asyncio": "backends.asyncio_backend:AsyncioLoop",
    "uvloop": "backends.uvloop_backend:UvloopLoop",
}


def _backends_package() -> str:
    """The import name of the ``backends`` package beside this file.

    backstage.py at the top level (a checkout, or copied alone): "backends";
    vendored as pkg/_vendor/backstage.py: "pkg._vendor.backends"; installed
    (this file is then backstage/__init__.py): "backstage.backends".
    """
    if "__path__" in globals():
        return f"{__name__}.backends"
    return f"{__package__}.backends" if __package__ else "backends"


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
    package = _backends_package()
    if module_name.startswith("backends."):
        module_name = package + module_name[len("backends"):]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and (exc.name == package or exc.name.startswith(package + ".")):
            raise ImportError(
                f"backend {backend!r} lives in the 'backends' package beside backstage.py, "
                f"and it is not importable here: copy the backends/ folder next to "
                f"backstage.py, or use Engine(backend='selectors')") from exc
        raise
    loop: Loop = getattr(module, class_name)()
    return loop


###############################################################################
# The inbox: queued items, overflow policies, the envelope an item becomes
# What a send leaves in an actor's inbox, how a turn takes it apart, and
# what a full inbox does.
###############################################################################

# An item (what an inbox holds) is the tuple (sender_id, message, tag).  The
# tag says which envelope it becomes: None for a direct send; _PUBLISH for a
# publication, whose message is then the one envelope every subscriber gets
# (told apart by identity: fan-out 1,564 -> 1,539 instructions per delivery
# against a class check); _TERMINATED for a death watch notice; a reply
# channel (a _Reply, or a transport's _RemoteReply) for an asked message;
# _COMMAND for an engine command (the poison pill).  A small tuple queued
# costs far less than a queued object the cyclic GC must scan (see Envelope).
# A plain send (tag None) whose message is not itself a tuple may be queued
# bare, without the tuple: in a plain list inbox a bare message's sender is
# that of the nearest plain send before it (see _explicit); in any other
# inbox (bounded ones hold none, a stand-in's, a stopped actor's, a router's)
# it is None, as _unpack says.  The writer state Context._tail_sender says
# which sender a message appended now may be queued bare for, the reader state
# Context._head_sender the sender in effect before the next item to deliver.
_COMMAND = object()
_TERMINATED = MessageType.TERMINATED
_POISON_PILL = MessageType.POISON_PILL
_PILL = (None, _POISON_PILL, _COMMAND)       # the queued poison pill, one for all

_SEND = MessageType.SEND
_PUBLISH = MessageType.PUBLISH
# Tags only a stand-in's inbox holds (the transport seam): a subscription or
# death watch on a remote actor, queued in order with the sender's messages.
_SUBSCRIBE = MessageType.SUBSCRIBE
_UNSUBSCRIBE = MessageType.UNSUBSCRIBE
_MONITOR = "monitor"
# _item_fields' message type of a publication passed on by ctx.forward.
_FORWARDED_PUBLICATION = "forwarded publication"
_DEMONITOR = "demonitor"
# Queued by a publisher that stops, for each remote subscriber: "sender no
# longer publishes to you on this topic" (the far engine drops the subscription).
_DROPPED = "dropped"


def _is_remote_op(tag: Any) -> bool:
    return (tag is _SUBSCRIBE or tag is _UNSUBSCRIBE or tag is _MONITOR or tag is _DEMONITOR
            or tag is _DROPPED)


# A long inbox drops its handled items from the front once more than this
# many are handled and they are the majority: amortised O(1) per message, and
# the memory of a flood goes back as it is handled.
_COMPACT_AFTER = 4096


# Context._tail_sender when no sender may queue its next message bare (it
# matches no sender id, not even None): _NO_TAIL also says that the inbox
# holds no bare message, so its turns need not look for one; _MIXED that it may.
_NO_TAIL = object()
_MIXED = object()


def _unpack(item: Any) -> tuple[Any, Any, Any]:
    """(sender_id, message, tag) of an item of an inbox that is not a plain list
    (there a bare message was sent with no sender; in a plain list see _explicit)."""
    return item if item.__class__ is tuple else (None, item, None)


def _explicit(items: list[Any], sender_id: str | None) -> list[Any]:
    """``items`` taken from a plain inbox whose reader state was ``sender_id``
    (Context._head_sender), with every bare message made a tuple again."""
    out = []
    for item in items:
        if item.__class__ is not tuple:
            item = (sender_id, item, None)
        elif item[2] is None:
            sender_id = item[0]
        out.append(item)
    return out


def _put_back(ctx: Context, rest: list[Any]) -> None:
    """Put the rest of a turn's batch back in front of ``ctx``'s inbox."""
    # ctx._head_sender is the sender in effect before it (the batch loop keeps
    # it), so its bare messages keep their senders; the first is made a tuple,
    # as it may end up alone (see _turn).
    if rest and rest[0].__class__ is not tuple:
        rest[0] = (ctx._head_sender, rest[0], None)
    head = ctx._head
    if head >= len(rest):
        # Into the handled slots in front of the head, not inserted before it:
        # an insertion moves the whole inbox behind it, once per paused turn
        # (an async def receive on asyncio pauses at every message: a burst
        # of 1M to it took minutes, quadratic in the inbox's length).
        ctx._inbox[head - len(rest):head] = rest
        ctx._head = head - len(rest)
    else:
        ctx._inbox[head:head] = rest
    if ctx._tail_sender is _NO_TAIL:
        ctx._tail_sender = _MIXED      # bare messages may be among them


def _append_item(ctx: Context, item: Any) -> None:
    """Queue ``item`` (a tuple, or a bare message sent with no sender, as a
    router's or another inbox held it) in ``ctx``'s inbox, keeping its writer
    state right.  For the paths that are not hot; the sends write it out."""
    if item.__class__ is not tuple:
        if ctx._tail_sender is None:
            ctx._inbox.append(item)
            return
        item = (None, item, None)
    ctx._inbox.append(item)
    if item[2] is None:
        tail = ctx._tail_sender
        if tail is _NO_TAIL:
            # As Context.send leaves it: the sender's next plain send goes bare
            # (the first send to a remote id comes this way, and the stand-in
            # then holds one run of its sends: see _turn_stand_in).
            ctx._tail_sender = item[0]
        elif tail is not item[0]:
            ctx._tail_sender = _MIXED


def _is_block(inbox: Any) -> bool:
    """Whether ``inbox`` is a bounded one with overflow "block": when it is
    full, a message waits in its line, and so does a local sender (a forwarder
    for what it forwards); one from another engine has no sender here to pause
    (Engine._wait_from_afar)."""
    return inbox.__class__ is _BoundedInbox and inbox._policy.name == "block"


def _item_envelope(sender_id: str | None, message: Any, tag: Any) -> Envelope:
    """The envelope a queued (sender_id, message, tag) item stands for."""
    if tag is None:
        return Envelope(sender_id, _SEND, message)
    if tag is _PUBLISH:
        publication: Envelope = message
        return publication
    if tag is _TERMINATED:
        return Envelope(sender_id, _TERMINATED, message)
    if tag is _COMMAND:
        return Envelope(sender_id, _POISON_PILL, message)
    envelope = Envelope(sender_id, _SEND, message)
    envelope._reply = tag
    return envelope


# The one-message turn's envelope for a plain send, refilled while nothing but
# this list holds it (see _SentEnvelope).  One for every engine in the
# process: a turn takes it only when its reference count says that no other
# turn, in this thread or another, holds it, so engines in two threads never
# share it.  It keeps the last such message alive until the next.
_spare: list[Any] = [None]


class _Envelope(Envelope):
    """An Envelope the engine makes and fills in itself: no Python __init__.

    Not part of the public API; ``isinstance(e, Envelope)`` holds.
    """
    # _Envelope() runs object's C __new__ and __init__ only: 35 ns against
    # 60 ns for object.__new__(Envelope), which goes through a wrapper that
    # packs its arguments into a tuple; burst 3.18 against 2.86 M/s.
    __slots__ = ()
    if TYPE_CHECKING:
        def __init__(self) -> None: ...
    else:
        __init__ = object.__init__


class _AskedEnvelope(_Envelope):
    """The envelope of an asked message: when the last reference to it goes and
    the ask has no answer, the ask fails (an ask with timeout=None whose
    target dropped it stayed pending forever, ~1.7 KB each, and kept run()
    from returning).  Only asked messages pay for the finaliser."""
    __slots__ = ()

    def __del__(self) -> None:
        try:
            reply = self._reply
            if not reply.done():
                reply.unanswered()
        except Exception:       # noqa: BLE001 - a finaliser must not raise (a closed loop)
            pass


class _SentEnvelope(_Envelope):
    """The envelope of a direct send; the engine refills one that nobody holds.

    Its type and topic are class attributes, read-only on the instance: a
    delivery stores two fields instead of four (ping-pong 2.27 -> 2.37 M/s,
    burst 3.45 -> 3.52 M/s).

    A turn that handles a batch refills the envelope of its previous direct send
    when the reference count says that nothing but the turn holds it: a delivery
    then allocates nothing (burst, 1,000,000 deliveries: 3.00 -> 3.38 M/s); the
    one-message turn refills ``_spare`` the same way.  An envelope that the
    actor kept, or that anything else holds, is never touched.
    """
    __slots__ = ()
    message_type = MessageType.SEND
    topic = None


def _publication(sender_id: str | None, message: Any, topic: str,
                 forwarded: bool = False) -> _Envelope:
    """The one envelope every subscriber of a publication receives; with
    ``forwarded``, the envelope of one that ``ctx.forward`` passed on."""
    envelope = _ForwardedPublication() if forwarded else _Envelope()
    envelope.sender_id = sender_id
    envelope.message_type = _PUBLISH
    envelope.message = message
    envelope.topic = topic
    return envelope


class _ForwardedPublication(_Envelope):
    """A publication that ``ctx.forward`` passed on: its target need not
    subscribe to it, so a transport must not drop it as unwanted (the far
    engine keeps only publications its actors still subscribe to; see
    ``_wants_publication``).  ``_item_fields`` names it FORWARDED_PUBLICATION."""
    __slots__ = ()


def _exact_refcounts() -> bool:
    """True where sys.getrefcount counts a local exactly, as refilling needs.

    CPython 3.11 to 3.13 with the GIL do (tests/test_versions.py checks it
    on each), and refilling pays on each: burst, instructions per message
    without -> with refill (callgrind, bench/instructions.py): 3.11 4,385 ->
    3,380; 3.12 4,967 -> 3,833; 3.13 4,751 -> 3,734.  3.14's borrowed stack
    references and free-threaded builds may count fewer, and other Pythons
    have no reference counts: there no envelope is refilled, and the
    "backstage" logger says so at import.
    """
    if (sys.implementation.name != "cpython" or sys.version_info >= (3, 14)
            or getattr(sys, "_is_gil_enabled", lambda: True)() is False):
        return False
    sole = object()
    if sys.getrefcount(sole) != _SOLE_REFERENCE:
        return False
    held = [sole]
    return sys.getrefcount(sole) == _SOLE_REFERENCE + 1 and held[0] is sole


# What sys.getrefcount(envelope) says when one local holds the envelope (the
# local, and the call's argument).  Where counts are not exact, _refcount
# never says it, so nothing is refilled.
_SOLE_REFERENCE = 2
_SPARE_SOLE = _SOLE_REFERENCE + 1       # and _spare
_refcount: Callable[[Any], int] = (
    sys.getrefcount if _exact_refcounts() else lambda obj: 0)
if _refcount is not sys.getrefcount:
    log.debug("envelope refill is off on %s %s: its reference counts are not exact "
              "here (on CPython 3.11-3.13 it gives burst 3.00 -> 3.38 M/s)",
              sys.implementation.name, sys.version.split()[0])


class _OverflowPolicy:
    """What a send to a full inbox does.

    One subclass per policy, registered by name in ``OVERFLOW_POLICIES``:
    a new policy is one class and one line.  Not part of the public API.
    """
    name = ""
    # False only for "grow": its inbox is a plain list that is never full,
    # so the policy costs the hot path nothing.
    bounded = True
    # True: a send from another thread waits for the engine thread's verdict
    # (room, a wait, or InboxFull raised in the sender's thread).
    verdict_across_threads = False

    def full(self, engine: Engine, ctx: Context, item: Any, waiter: Future[Any] | None) -> None:
        """``item`` does not fit in ``ctx``'s inbox.  ``waiter`` is the Future a
        sender on another thread waits on, or None for a send on the engine thread."""
        raise NotImplementedError


class _Grow(_OverflowPolicy):
    """Never full: the capacity doubles when exceeded (the default)."""
    name = "grow"
    bounded = False


class _Block(_OverflowPolicy):
    """The sender waits: an actor pauses its turn, another thread blocks."""
    name = "block"
    verdict_across_threads = True

    def full(self, engine: Engine, ctx: Context, item: Any, waiter: Future[Any] | None) -> None:
        engine._wait_for_room(ctx, item, waiter)


class _Drop(_OverflowPolicy):
    """The new message is a dead letter."""
    name = "drop"

    def full(self, engine: Engine, ctx: Context, item: Any, waiter: Future[Any] | None) -> None:
        engine._dead_letter(ctx.actor_id, _item_envelope(*_unpack(item)), "inbox full")


class _DropOldest(_OverflowPolicy):
    """The oldest queued message is a dead letter, and the new one is queued
    (a price ticker wants the newest quote)."""
    name = "drop_oldest"

    def full(self, engine: Engine, ctx: Context, item: Any, waiter: Future[Any] | None) -> None:
        inbox = ctx._inbox
        head = ctx._head
        oldest = inbox[head]
        if oldest.__class__ is tuple and oldest[2] is _COMMAND:
            # A poison pill first in line is never dropped: the actor stops
            # before the new message, which is then a dead letter anyway.
            return _Drop.full(self, engine, ctx, item, waiter)  # type: ignore[arg-type]
        # Dropped by moving the head past it, as a turn does: no list shift.
        head += 1
        if head > _COMPACT_AFTER and head * 2 > len(inbox):
            del inbox[:head]
            head = 0
        ctx._head = head
        list.append(inbox, item)
        engine._dead_letter(ctx.actor_id, _item_envelope(*_unpack(oldest)),
                            "inbox full: dropped for a newer message")


class _Fail(_OverflowPolicy):
    """The send raises InboxFull."""
    name = "fail"
    verdict_across_threads = True

    def full(self, engine: Engine, ctx: Context, item: Any, waiter: Future[Any] | None) -> None:
        raise InboxFull(f"the inbox of {ctx.actor_id!r} is full ({ctx._capacity} messages) "
                        f"and its overflow policy is 'fail'; try again later, or spawn it "
                        f"with overflow='block', 'drop' or 'drop_oldest'")


# Overflow policy name -> the policy; spawn_actor(overflow=name).
OVERFLOW_POLICIES: dict[str, _OverflowPolicy] = {
    policy.name: policy() for policy in (_Grow, _Block, _Drop, _DropOldest, _Fail)
}


class _BoundedInbox(list[Any]):
    """The inbox of an actor whose overflow policy bounds it (all but "grow").

    The default "grow" inbox is a plain list, so the policy costs the hot path
    nothing: only these inboxes run Python code on append.  Messages that
    wait for room under "block" queue in ``Context._waiting``, in order.
    """
    __slots__ = ("_ctx", "_policy")

    def __init__(self, ctx: Context, policy: _OverflowPolicy) -> None:
        super().__init__()
        self._ctx = ctx
        self._policy = policy

    def has_room(self) -> bool:
        """Room for one more, and no sender waiting before it."""
        ctx = self._ctx
        return len(self) - ctx._head < ctx._capacity and \
            (ctx._extra is None or not ctx._extra.waiting)

    def append(self, item: Any) -> None:
        if item.__class__ is not tuple:
            # Only tuples here: a drop_oldest, a waiting sender and a dead
            # letter take each item alone.  A bare message is the writer's
            # (its sender is the writer state, see _explicit).
            item = (self._ctx._tail_sender, item, None)
        if self.has_room():
            list.append(self, item)
        else:
            self._policy.full(self._ctx.engine, self._ctx, item, None)

    def _fresh(self, batch: int) -> _BoundedInbox:
        """The inbox after a turn took this one's ``batch`` messages, refilled
        from the waiters.  A batch over the capacity (the rest of a turn cut
        short came back: an async receive awaiting, or a send waiting for room)
        leaves that much less room, so such turns cannot make the inbox grow
        (10 queued at capacity 4 and climbing, fed by a timer); it holds at most
        twice its capacity less one while the rest waits."""
        inbox = _BoundedInbox(self._ctx, self._policy)
        ctx = self._ctx
        ctx._inbox = inbox
        ctx.engine._admit_waiting(ctx, max(0, batch - ctx._capacity))
        return inbox


class _StandInInbox(list[Any]):
    """The inbox of a stand-in for an actor on another engine (the transport
    seam): appends are a plain list's; its turn hands the whole list to the
    transport's flush, chosen once per turn by this class."""
    __slots__ = ("_flush", "_flush_run", "_forwarders")     # set by _install_stand_in
    _flush: Callable[[Context, list[Any]], Any]
    _flush_run: Callable[[Context, str | None, list[Any], set[type]], Any] | None
    _forwarders: set[str] | None    # actors that forwarded into it (ctx.forward)


_first = operator.itemgetter(0)      # an item's sender id


def _run_items(sender_id: str | None, messages: list[Any]) -> list[Any]:
    """One sender's plain sends as the items they stand for (each a tuple)."""
    return [(sender_id, message, None) for message in messages]


def _run_classes(items: list[Any]) -> set[type] | None:
    """The classes of the messages, if a stand-in's ``items`` are plain sends of
    one sender (a plain send's tuple, then bare messages only); else None.
    One pass over the types, in C, which also tells the transport what it
    sends (see _deliver_remote_run's ``no_tuples``).  A set, not a count of
    the first class: counting compares classes with ==, which a metaclass
    may define (it corrupted runs in a review).  A class that goes in no set
    (its metaclass's __hash__ or __eq__ raises) gives None too: the stand-in's
    turn then hands each item alone (the whole inbox was lost, in a review)."""
    first = items[0]
    if len(items) < 2 or first.__class__ is not tuple or first[2] is not None:
        return None
    try:
        classes = set(map(type, itertools.islice(items, 1, None)))
    except Exception:
        return None
    if tuple in classes:
        return None
    classes.add(type(first[1]))
    return classes


def _item_fields(item: Any) -> tuple[str | None, MessageType | str, Any, str | None, Any]:
    """(sender_id, message_type, message, topic, reply) of a queued item.

    For transports: every field but ``reply`` is as picklable as the message.
    ``reply`` is None, or the ask's reply channel (give it to
    ``Engine._register_reply`` for an id the far side can answer to).  A
    stand-in also holds operations for the remote actor: SUBSCRIBE and
    UNSUBSCRIBE (with the topic), "monitor" and "demonitor" (str tags), and
    "dropped" (with the topic: the sender, a publisher, stopped).  A
    publication that ``ctx.forward`` passed on is "forwarded publication": its
    target need not subscribe, so the far side keeps it.
    """
    sender_id, message, tag = _unpack(item)
    if _is_remote_op(tag):
        return sender_id, tag, None, message, None
    if tag is None:
        return sender_id, _SEND, message, None, None
    if tag is _PUBLISH:
        kind = _FORWARDED_PUBLICATION if message.__class__ is _ForwardedPublication \
            else _PUBLISH
        return message.sender_id, kind, message.message, message.topic, None
    if tag is _TERMINATED:
        return sender_id, _TERMINATED, message, None, None
    if tag is _COMMAND:
        return sender_id, _POISON_PILL, None, None, None
    return sender_id, _SEND, message, None, tag


def _remote_item(sender_id: str | None, message_type: MessageType | str, message: Any,
                 topic: str | None = None, reply: Any = None) -> tuple[Any, Any, Any]:
    """The queued item for fields that came from another engine (``_item_fields``'
    inverse).  ``reply``: an object with ``settle(value, exc)`` and ``done()``,
    such as a ``_RemoteReply``, for an asked message."""
    if message_type is _SEND:
        return (sender_id, message, reply)
    if message_type is _PUBLISH or message_type == _FORWARDED_PUBLICATION:
        return (sender_id, _publication(sender_id, message, topic or DEFAULT_TOPIC,
                                        message_type is not _PUBLISH), _PUBLISH)
    if message_type is _TERMINATED:
        return (sender_id, message, _TERMINATED)
    if message_type is _POISON_PILL:
        return _PILL
    raise ValueError(f"a remote item is a SEND, PUBLISH, {_FORWARDED_PUBLICATION!r}, "
                     f"TERMINATED or POISON_PILL, not {message_type!r}")


class _StoppedInbox(list[Any]):
    """The inbox of a stopped actor: whatever still reaches it is a dead letter."""
    __slots__ = ("_engine", "_actor_id")     # set by _stop_actor
    _engine: Engine
    _actor_id: str

    def append(self, item: Any) -> None:
        sender_id, message, tag = _unpack(item)
        if tag is not _COMMAND:
            self._engine._dead_letter(self._actor_id, _item_envelope(sender_id, message, tag),
                                      "actor stopped")


###############################################################################
# Context
# An actor's handle on the engine, and the engine's record of the actor;
# its timers.
###############################################################################

# Context._state: an actor's life.
_RUNNING, _STOPPING, _STOPPED = "running", "stopping", "stopped"
# Context._scheduled: where an actor stands with the scheduler.  Anything
# truthy keeps it from being scheduled again.  The hot paths (the two sends,
# _schedule, the turn) write the literals True and False, a constant load
# rather than a global lookup; everything else uses these names.
_IDLE = False               # no turn pending: a send schedules it
_QUEUED = True              # in the engine's ready queue, or in its turn
_PARKED = "parked"          # held by a full link (see _hold_senders), waits for room
                            # in a full "block" inbox, or for its
                            # coroutine (async receive) to end: no turns
_ROUTER = "router"          # a pool's router: its inbox routes, it never takes a turn


class _Extras:
    """The parts of an actor's record that most actors never use, made at first use.

    Kept out of Context, where each would cost 8 bytes in every actor: one
    slot for all of them.  Idle actors 382 -> 326 bytes each; skynet (1M
    leaves) 10.6 -> 9.2 s and peak RSS 750 -> 697 MiB, as fewer slots are set
    at spawn and scanned by the cyclic GC.
    """
    __slots__ = (
        "subscribers",      # {topic: {subscriber id: Context}}
        "subscriptions",    # set of (publisher id, topic) this actor follows
        "timers",           # set of live Timers
        "watches",          # {fileobj: [reading?, writing?]}
        "monitors",         # {watcher id: watcher Context} told when this one stops
        "monitoring",       # set of ids this actor monitors, left when it stops
        "waiting",          # deque of (item, sender Context, Future) waiting for room
        "waiting_on",       # {target Context: messages of ours waiting there, or a
                            # stand-in holding us, or our _Suspended coroutine: 1}
        "restarts",         # deque of recent restart times, for the restart intensity
        "suspended",        # the _Suspended coroutine of an async receive, while it waits
        "stash",            # list of items set aside by ctx.stash
        "init_args",        # (args, kwargs) of the constructor, made again at a restart
        "held_senders",     # a stand-in's: {local sender Context: None} held until its link drains
    )

    # Each None until first use (typed Any: the engine narrows them by use).
    subscribers: Any
    subscriptions: Any
    timers: Any
    watches: Any
    monitors: Any
    waiting: Any
    waiting_on: Any
    restarts: Any

    def __init__(self) -> None:
        self.subscribers = self.subscriptions = self.timers = self.watches = None
        self.monitors = self.waiting = self.waiting_on = self.restarts = None
        self.monitoring: set[str] | None = None
        self.suspended = self.stash = None
        self.init_args = None
        self.held_senders: dict[Context, None] | None = None


class _ExtraField:
    """``Context._name``: the ``name`` field of the context's _Extras part.

    Reads None while the context has no _Extras part; the first value set makes
    one.  For the engine's cold paths; hot paths read ``ctx._extra`` themselves.
    """
    __slots__ = ("_field",)

    def __set_name__(self, owner: type, name: str) -> None:
        self._field = getattr(_Extras, name.lstrip("_"))

    def __get__(self, ctx: Context | None, owner: type | None = None) -> Any:
        if ctx is None:
            return self
        extra = ctx._extra
        return None if extra is None else self._field.__get__(extra)

    def __set__(self, ctx: Context, value: Any) -> None:
        extra = ctx._extra
        if extra is None:
            if value is None:
                return
            extra = ctx._extra = _Extras()
        self._field.__set__(extra, value)


class Context:
    """Everything an actor may do, and the engine's record of that actor.

    One per actor, made by the engine and passed to the actor's ``__init__``.
    Attributes whose names start with ``_`` are the engine's, not part of the
    public API.
    """
    # One object per actor holds both the public Context and the engine's
    # bookkeeping: 100,000 idle actors cost ~330 bytes each (see bench/).
    __slots__ = (
        "actor_id",     # the actor's id in the registry
        "engine",       # the Engine it runs on
        "parent",       # the parent's id, or None for a top-level actor
        "_actor",       # the actor instance
        "_receive",     # type(actor).receive, called as _receive(actor, envelope)
        "_inbox",       # list of queued (sender_id, message, tag) tuples, and
                        # of bare messages (plain sends, see _explicit)
        "_tail_sender",  # the sender a message appended now may go bare for
                        # (the plain sender in effect at the inbox's end), or
                        # _NO_TAIL (no bare message queued) or _MIXED
        "_head_sender",  # the plain sender in effect before the next item a
                        # turn delivers (the rest of its batch, then _inbox[_head:])
        "_head",        # index of the next message in _inbox
        "_scheduled",   # True while the context is in the engine's ready queue
        "_state",       # _RUNNING, _STOPPING or _STOPPED
        "_capacity",    # inbox capacity, a power of two; grows when exceeded
        "_children",    # {id: child Context} in spawn order, or None
        "_extra",        # a _Extras once the actor uses pub/sub, timers, watches,
                        # monitors, back-pressure or restarts; else None
        "_items",       # iterator over the batch of its current turn, else None
        "_count",       # messages handled so far
        "_last",        # loop time of the last turn with messages
    )
    # The fields of _extra, by name (see _Extras).
    _subscribers = _ExtraField()
    _subscriptions = _ExtraField()
    _timers = _ExtraField()
    _watches = _ExtraField()
    _monitors = _ExtraField()
    _monitoring = _ExtraField()
    _waiting = _ExtraField()
    _waiting_on = _ExtraField()
    _restarts = _ExtraField()
    _suspended = _ExtraField()
    _stash = _ExtraField()
    _init_args = _ExtraField()
    _held_senders = _ExtraField()

    def __init__(self, engine: Engine, actor_id: str, parent: str | None,
                 capacity: int) -> None:
        self.actor_id = actor_id
        self.engine = engine
        self.parent = parent
        self._actor: Any = None
        self._receive: Any = None
        self._inbox: Any = []       # a list, or a list subclass chosen per policy
        self._tail_sender: Any = _NO_TAIL
        self._head_sender: str | None = None
        self._head = 0
        self._scheduled: bool | str = _IDLE
        self._state = _RUNNING
        self._capacity = capacity
        self._children: dict[str, Context] | None = None
        self._extra: Any = None     # an _Extras once used
        self._items: Any = None
        self._count = 0
        self._last = 0.0

    def __repr__(self) -> str:
        return f"<Context {self.actor_id!r} {self._state}>"

    # -- information ---------------------------------------------------------
    # What an actor may read about itself.

    @property
    def children(self) -> list[str]:
        """Ids of this actor's live children, in spawn order."""
        return list(self._children) if self._children else []

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
        while self._capacity < self.inbox_len and self._inbox.__class__ is list:
            self._capacity *= 2
        return self._capacity

    @property
    def overflow(self) -> str:
        """The inbox's overflow policy: a name in ``OVERFLOW_POLICIES``."""
        inbox = self._inbox
        return inbox._policy.name if isinstance(inbox, _BoundedInbox) else "grow"

    @property
    def messages_handled(self) -> int:
        return self._count

    @overload
    def get_actor(self, actor_id: str, actor_class: None = None) -> Any: ...
    @overload
    def get_actor(self, actor_id: str, actor_class: type[_A]) -> _A | None: ...

    def get_actor(self, actor_id: str, actor_class: type[Any] | None = None) -> Any:
        """The actor instance registered under ``actor_id``, or None; see
        ``Engine.get_actor``."""
        return self.engine.get_actor(actor_id, actor_class)

    # -- messages ------------------------------------------------------------
    # Sending, publishing, subscribing, death watch and asking.

    def send(self, target_id: str, message: Any) -> None:
        """Send ``message`` to ``target_id``, with this actor as the sender."""
        # Engine._post with its callees written out: one Python call for an
        # actor's send instead of three; ping-pong 1.85 -> 2.06 M/s.
        engine = self.engine
        if not engine._owner._is_owned():
            return engine._post_from_other_thread(target_id, self.actor_id, message, None, None)
        try:
            ctx = engine._registry[target_id]     # a subscript, as in Engine.send
        except (KeyError, TypeError):
            return engine._post_missing(target_id, self.actor_id, message, None)
        sender_id = self.actor_id
        if ctx._tail_sender is sender_id and message.__class__ is not tuple:
            # Queued bare: the plain send before it in this inbox is this
            # sender's too (see _explicit).  No tuple to make, GC-track and
            # take apart: instructions per message (callgrind, 3.11) actor
            # burst 3,987 -> 3,564, many-to-one 4,474 -> 4,009; with the
            # refill changes, actor burst 0.94 -> 1.29 M/s (3.11, loaded
            # machine; docs/performance.md).
            ctx._inbox.append(message)
        else:
            # The writer state before the append: a bounded inbox reads it.
            ctx._tail_sender = sender_id
            ctx._inbox.append((sender_id, message, None))
        if not ctx._scheduled:
            ctx._scheduled = True
            engine._ready.append(ctx)
            if not engine._tick_scheduled:
                engine._tick_scheduled = True
                engine._loop.call_soon(engine._tick)

    def send_many(self, target_id: str, messages: list[Any]) -> None:
        """Send each of ``messages`` to ``target_id``, in order, as that many
        ``send`` calls would, at a fraction of their cost per message."""
        if type(target_id) is not str or not target_id:
            _check_id("send_many", target_id)
        if type(messages) is not list:
            raise TypeError(f"send_many() needs a list of messages, not "
                            f"{type(messages).__name__}: pass list(messages)")
        engine = self.engine
        ctx = engine._registry.get(target_id)
        if ctx is None and messages and engine._owner._is_owned():
            # The first as a send: a transport may make a stand-in that takes the rest.
            engine._post_missing(target_id, self.actor_id, messages[0], None)
            ctx = engine._registry.get(target_id)
            messages = messages[1:]
        inbox = ctx._inbox if ctx is not None else None
        if (inbox.__class__ is not list and inbox.__class__ is not _StandInInbox) \
                or not messages or not engine._owner._is_owned() \
                or tuple in set(map(type, messages)):
            send = self.send            # one at a time: each its own checks
            for message in messages:
                send(target_id, message)
            return
        assert ctx is not None
        sender_id = self.actor_id
        if ctx._tail_sender is not sender_id:
            ctx._tail_sender = sender_id
            inbox.append((sender_id, messages[0], None))
            messages = messages[1:]
        inbox.extend(messages)
        if not ctx._scheduled:
            engine._schedule(ctx)

    def publish(self, message: Any) -> None:
        """Publish ``message`` on this actor's "default" topic."""
        self.engine._publish(self, DEFAULT_TOPIC, message)

    def publish_to_topic(self, topic: str, message: Any) -> None:
        """Publish ``message`` to every subscriber of this actor's ``topic``."""
        if type(topic) is not str:
            raise TypeError(f"publish_to_topic() needs a str topic, not {type(topic).__name__}")
        if not topic:
            raise ValueError('publish_to_topic() got an empty topic: pass a name such as '
                             '"news", or use publish(message) for the "default" topic')
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
    # Spawning other actors, and stopping this one.

    def spawn_actor(self, actor_class: type[_A], /, id: str, *args: Any,
                    capacity: int = DEFAULT_CAPACITY, overflow: Overflow = "grow",
                    **kwargs: Any) -> _A:
        """Spawn a top-level actor (no parent), ``actor_class(ctx, *args, **kwargs)``;
        see ``Engine.spawn_actor``."""
        actor: _A = self.engine._spawn(actor_class, id, capacity, overflow, None, args, kwargs)
        return actor

    def spawn_child_actor(self, actor_class: type[_A], /, id: str, *args: Any,
                          capacity: int = DEFAULT_CAPACITY, overflow: Overflow = "grow",
                          **kwargs: Any) -> _A:
        """Spawn ``actor_class(ctx, *args, **kwargs)`` as an actor that this one
        supervises, and that stops when this one stops."""
        actor: _A = self.engine._spawn(actor_class, id, capacity, overflow, self, args, kwargs)
        return actor

    def spawn_pool(self, actor_class: type[_A], /, id: str, size: int, *args: Any,
                   routing: Routing = "round_robin",
                   hash_key: Callable[[Any], Hashable] | None = None,
                   capacity: int = DEFAULT_CAPACITY, overflow: Overflow = "grow",
                   supervisor: SupervisorStrategy | None = None, **kwargs: Any) -> Pool[_A]:
        """``Engine.spawn_pool``, the pool being this actor's child (it stops with it)."""
        pool: Pool[_A] = self.engine._spawn_pool(actor_class, id, size, args, kwargs, routing,
                                                 hash_key, capacity, overflow, supervisor, self)
        return pool

    def shutdown(self) -> None:
        """Stop this actor once the messages already in its inbox are handled."""
        engine = self.engine
        if self._state is _RUNNING and engine._owner._is_owned():
            # Its own inbox: no registry lookup; _enqueue written out, a call
            # less per stop: create-and-stop (25k, callgrind, 3.11) 41,608 ->
            # 40,963 instructions per actor.  Past a bounded inbox's policy
            # (list.append): an actor's own stop neither waits for room it
            # alone makes, nor is dropped, nor fails; one item over capacity.
            list.append(self._inbox, _PILL)
            if not self._scheduled:
                engine._schedule(self)
        else:
            engine.poison_pill(self.actor_id)

    def monitor(self, target_id: str) -> None:
        """Be told when ``target_id`` stops, for any reason.

        This actor then receives an envelope with ``message_type`` TERMINATED
        and a ``Terminated(actor_id, reason)`` message; at once if there is no
        such actor.
        """
        if type(target_id) is not str:
            raise TypeError(f"monitor() needs a str actor id, not {target_id!r}")
        self.engine._call_on_loop(self.engine._monitor_here, self, target_id)

    def demonitor(self, target_id: str) -> None:
        """Stop watching ``target_id``; harmless if not watching."""
        _check_id("demonitor", target_id)
        self.engine._call_on_loop(self.engine._demonitor_here, self, target_id)

    def subscribe_to_dead_letters(self) -> None:
        """Receive every dead letter: a PUBLISH envelope on topic "dead_letters"
        whose message is the ``DeadLetter`` record."""
        self.engine._call_on_loop(self.engine._dead_letter_subscribers.__setitem__,
                                  self.actor_id, self)

    def unsubscribe_from_dead_letters(self) -> None:
        self.engine._call_on_loop(self.engine._dead_letter_subscribers.pop,
                                  self.actor_id, None)

    def ask(self, target_id: str, message: Any, timeout: float | None = 5.0) -> AskFuture[Any]:
        """Send ``message`` to ``target_id`` and return a future for its reply.

        The target answers with ``envelope.reply(value)``.  The future's done
        callbacks run on the engine thread, never during a ``receive``; do not
        block on ``result()`` in an actor (it raises).
        """
        return self.engine._ask(target_id, message, timeout, self.actor_id, deferred=True)

    # -- waiting: blocking work, coroutines, stash and become ----------------
    # The engine's _Waiting room does the work (see there).

    def run_in_thread(self, fn: Callable[..., _R], /, *args: Any,
                      **kwargs: Any) -> AskFuture[_R]:
        """Run blocking ``fn(*args, **kwargs)`` on the engine's thread pool.

        Returns an ``AskFuture`` of its return value (its exception fails it),
        whose callbacks run on the engine thread, never during a ``receive``;
        ``await`` it in an ``async def receive``.  ``run()`` counts the job as
        work until the future settles.  ``fn`` runs on another thread: hand it
        data, not the actor.  The pool's size is ``Engine(thread_pool_size=...)``.
        """
        if not callable(fn):
            raise TypeError(f"run_in_thread() needs a function to call, not {fn!r}: write "
                            f"ctx.run_in_thread(fetch, url), not ctx.run_in_thread(fetch(url))")
        if _is_coroutine_function(fn):
            raise TypeError(f"run_in_thread() runs a plain function on another thread, and "
                            f"{_name_of(fn)} is an async def (its result would be a coroutine "
                            f"never run): await it in an async def receive, or make it a def")
        future: AskFuture[_R] = self.engine._call_on_loop(self.engine._run_in_thread_here,
                                                      fn, args, kwargs)
        return future

    def sleep(self, seconds: float) -> AskFuture[None]:
        """An awaitable for an ``async def receive``: ``await ctx.sleep(0.5)``."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"sleep() needs a number of seconds, such as ctx.sleep(0.5), "
                            f"not {seconds!r}")
        if not 0 <= seconds < _FOREVER:
            raise ValueError(f"sleep() needs a finite number of seconds, zero or more, "
                             f"not {seconds!r}")
        future: AskFuture[None] = self.engine._call_on_loop(self.engine._sleep, seconds)
        return future

    def forward(self, target_id: str, envelope: Envelope) -> None:
        """Pass a received message on to ``target_id`` as if its sender had sent it there.

        The target sees the original ``sender_id``; the reply to an asked
        message reaches the original asker; a publication stays one.
        """
        if type(target_id) is not str:
            raise TypeError(f"forward() needs a str actor id, not {target_id!r}")
        envelope_class = envelope.__class__
        item = _item_of("forward", envelope)
        if item[2] is _PUBLISH:
            # A copy of its own (the envelope is every subscriber's), marked:
            # the target need not subscribe (see _ForwardedPublication).
            item = (item[0], _publication(envelope.sender_id, envelope.message,
                                          envelope.topic or DEFAULT_TOPIC, forwarded=True),
                    _PUBLISH)
        engine = self.engine
        try:
            if engine._owner._is_owned():
                engine._forward_here(self, target_id, item)
            else:
                engine._post(target_id, *item)
        except BaseException:
            # Not forwarded (InboxFull, say): the ask is still this actor's to
            # answer, and fails as unanswered if it drops the envelope.
            envelope.__class__ = envelope_class
            raise

    def stash(self, envelope: Envelope) -> None:
        """Set a received message aside (with its sender and ask) until ``unstash_all()``."""
        item = _item_of("stash", envelope)
        if self._stash is None:
            self._stash = []
        self._stash.append(item)

    def unstash_all(self) -> None:
        """Put every stashed message back ahead of the inbox, in stashing order.

        They come after the message being handled.  Messages still stashed when
        the actor stops are dead letters.
        """
        self.engine._call_on_loop(self.engine._unstash_all_here, self)

    def become(self, handler: Callable[[Envelope], Any]) -> None:
        """``handler(envelope)`` receives the following messages, from the very next one.

        A coroutine function works as an ``async def receive`` does.
        ``self.receive = handler`` in the actor does the same.
        """
        if not callable(handler):
            raise TypeError(f"become() needs a function that takes the envelope, such as "
                            f"self.closed, not {handler!r}")
        self.engine._call_on_loop(self.engine._become_here, self, handler)

    def unbecome(self) -> None:
        """Back to the class's ``receive`` (as after a restart)."""
        self.engine._call_on_loop(self.engine._become_here, self, None)
    @overload
    def proxy(self, id: str, cls: None = None, *,
              timeout: float | None = None) -> Proxy[Any]: ...
    @overload
    def proxy(self, id: str, cls: type[_PX], *, timeout: float | None = None) -> _PX: ...
    @overload
    def proxy(self, id: str, cls: type[_A], *, timeout: float | None = None) -> Proxy[_A]: ...

    def proxy(self, id: str, cls: type | None = None, *,
              timeout: float | None = None) -> Any:
        """``Engine.proxy`` with this actor as sender; the futures' callbacks run
        on the engine thread, never during a ``receive`` (or ``await`` them)."""
        return self.engine._make_proxy(id, cls, timeout, self.actor_id, True)

    # -- timers and I/O ------------------------------------------------------
    # Timers that end with the actor, and watched files.

    def run_recurring(self, interval_s: float, callback: Callable[[], Any]) -> Timer:
        """Call ``callback()`` every ``interval_s`` seconds until cancelled or the actor stops."""
        _check_delay("run_recurring", "interval_s", interval_s, allow_zero=False)
        if not callable(callback):
            raise TypeError(f"run_recurring() needs a callable callback, not {callback!r}: "
                            f"pass the function itself, run_recurring(1.0, self.tick)")
        _refuse_async_callback("run_recurring", callback)
        return self.engine._call_on_loop(Timer, self, interval_s, callback, True)

    def send_after(self, delay_s: float, target_id: str, message: Any) -> Timer:
        """Send ``message`` to ``target_id`` after ``delay_s`` seconds."""
        _check_delay("send_after", "delay_s", delay_s, allow_zero=True)
        _check_id("send_after", target_id)
        return self.engine._call_on_loop(
            Timer, self, delay_s, lambda: self.send(target_id, message), False)

    def watch_readable(self, fileobj: Any, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` on the engine thread whenever ``fileobj`` is readable."""
        _check_watchable("watch_readable", fileobj, callback)
        self.engine._call_on_loop(self.engine._watch_fd, self, fileobj, callback, True)

    def watch_writable(self, fileobj: Any, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` on the engine thread whenever ``fileobj`` is writable."""
        _check_watchable("watch_writable", fileobj, callback)
        self.engine._call_on_loop(self.engine._watch_fd, self, fileobj, callback, False)

    def unwatch(self, fileobj: Any) -> None:
        """Stop watching ``fileobj`` (both directions); nothing if it was not watched.

        Unwatch a socket before closing it: a closed socket has no fd number.
        """
        _check_unwatchable("unwatch", fileobj)
        self.engine._call_on_loop(self.engine._unwatch_here, self, fileobj)

    def unwatch_readable(self, fileobj: Any) -> None:
        """Stop watching ``fileobj`` for reading only; nothing if it was not watched so."""
        _check_unwatchable("unwatch_readable", fileobj)
        self.engine._call_on_loop(self.engine._unwatch_here, self, fileobj, True, False)

    def unwatch_writable(self, fileobj: Any) -> None:
        """Stop watching ``fileobj`` for writing only, say once its output is flushed."""
        _check_unwatchable("unwatch_writable", fileobj)
        self.engine._call_on_loop(self.engine._unwatch_here, self, fileobj, False, True)


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
        except Exception as exc:
            self._ctx.engine._callback_failed(self._ctx, exc, "timer callback")
        if not self._recurring:
            self._end()


###############################################################################
# Scheduling and sending
# From a send to receive: the entry points, the posting body, the ready
# queue, the turn, and the transport seam for actors that live elsewhere.
###############################################################################

class _Transport:
    """An attached transport, and the asks that wait for answers through it."""
    __slots__ = ("resolve", "spawned", "stopped", "placing", "replies", "reply_ids")

    def __init__(self, transport: Any) -> None:
        self.resolve: Callable[[str], Context | None] = transport.resolve
        # Told of every actor spawned here, and of every one that left the
        # registry, if the transport wants to know.
        self.spawned: Callable[[Context], Any] | None = getattr(transport, "spawned", None)
        self.stopped: Callable[[Context], Any] | None = getattr(transport, "stopped", None)
        # Asked before an actor spawns here; raises if the id lives on another engine.
        self.placing: Callable[[str], Any] | None = getattr(transport, "placing", None)
        self.replies: dict[str, _Reply] = {}     # reply id -> ask
        self.reply_ids = itertools.count(1)      # numbers of those reply ids


class _Guards:
    """What keeps the engine's promises at the edges, in one Engine attribute
    (see the attribute limit in the essay): the cross-thread queue's bound, and
    what the failure and dead-letter logs have said already."""
    __slots__ = ("inbound_capacity", "inbound_slow_at", "inbound_fail", "inbound_room",
                 "interrupted", "ran", "thread_id",
                 "failures", "dead_letters_logged")

    def __init__(self, inbound_capacity: int, inbound_overflow: str) -> None:
        self.inbound_capacity = inbound_capacity        # entries, then senders wait
        self.inbound_slow_at = min(inbound_capacity, _INBOUND_YIELD_AT)  # senders yield
        self.inbound_fail = inbound_overflow == "fail"  # ... or get InboxFull
        self.inbound_room = threading.Event()           # set by each drain
        self.interrupted: list[BaseException] = []  # SystemExit etc. from deinits
        self.ran = False                            # a run began once (Engine._close)
        self.thread_id: int | None = None           # the engine's (see Engine._owner)
        self.failures: dict[str, list[Any]] = {}  # id -> [last logged, not logged since]
        self.dead_letters_logged: dict[str, int] = {}  # target id -> dead letters since


class _EngineState:
    """The engine's state, as every room sees it: set in ``Engine.__init__``
    (which says what each field is).  Annotations only: nothing at run time."""
    _loop: Loop
    _registry: dict[str, Context]
    _ready: collections.deque[Context]
    _tick_scheduled: bool
    # (fn, args) calls, and (target_id, sender_id, message, tag) posts
    _inbound: collections.deque[tuple[Any, ...]]
    _inbound_scheduled: bool
    _owner: _ThreadMark             # the engine thread's mark (_thread_mark)
    _running: bool
    _until_idle: bool
    _closed: bool
    _lock: threading.RLock
    _user_timers: int
    _user_watches: int
    _asks: set[_Reply]
    _transport: _Transport | None
    _root_strategy: SupervisorStrategy
    restart_count: int
    _dead_letter_subscribers: dict[str, Context]
    dead_letters: collections.deque[DeadLetter]
    dead_letter_count: int
    _guards: _Guards
    _inspector: _InspectorFeed | None
    _watchdog: _Watchdog | None

    if TYPE_CHECKING:
        # Methods of later rooms that earlier rooms call.  A room's self is
        # always the Engine; where a room hands self on as one, a
        # "type: ignore[arg-type]" says so.
        def _check_idle(self) -> None: ...
        def _go_on(self, suspended: _Suspended) -> None: ...
        def _dead_letter(self, target_id: str, envelope: Envelope, reason: str) -> None: ...
        def _dead_letter_all(self, target_id: str, items: list[Any], reason: str) -> None: ...
        def _stop_actor(self, ctx: Context, reason: str, leftover: list[Any],
                        deinit: bool = True, *, interrupt: bool = True) -> None: ...
        def _stop_after_turn(self, ctx: Context) -> int: ...
        def _handle_failure(self, ctx: Context, exc: BaseException, envelope: Envelope | None,
                            rest: Iterator[Any] | None) -> None: ...
        def _post_and_wait(self, target: Context, item: tuple[Any, ...],
                           timeout: float | None) -> None: ...
        def _admit_waiting(self, ctx: Context, over: int = 0) -> None: ...
        def _hold_senders(self, stand_in: Context, sender_ids: Iterable[str | None]) -> None: ...
        def _run_call(self, ctx: Context, call: MethodCall, reply: Any) -> None: ...
        def get_actor(self, actor_id: str) -> Any: ...
        def stop(self) -> None: ...


class _Sending(_EngineState):
    """Engine room: sending, scheduling, turns.  Not part of the public API."""

    # -- entry points ---------------------------------------------------------
    # The public calls that post a message; the hot ones with the posting body
    # written out.

    def send(self, target_id: str, message: Any, timeout: float | None = None) -> None:
        """Send ``message`` to the actor ``target_id`` (sender_id None); any thread.

        A message to an id with no actor becomes a dead letter, not an error.
        To a full inbox with overflow "block", a send from another thread waits
        for room, at most ``timeout`` seconds (then ``InboxFull``).
        """
        # Engine._post with its callees written out, as in Context.send:
        # burst (a million of these, then run) 3.35 against 3.03 M/s.
        if not self._owner._is_owned():
            # From another thread (the xthread part): _post_from_other_thread's
            # usual case written out, for a live actor with a plain inbox; all
            # else goes the long way.  Cross-thread send, 200k from one thread
            # (callgrind, 3.11): the sender's part 4,208 -> 3,098 instructions
            # per message with the subscript below (3,221 with the re-check
            # of _closed after the append); one thread, 300k, 3.11,
            # alternating runs: 1.61-1.71 -> 1.89-2.25 M msgs/s.
            inbound = self._inbound
            if timeout is None and not self._closed \
                    and len(inbound) < self._guards.inbound_slow_at:
                try:
                    plain = self._registry[target_id]._inbox.__class__ is list
                except (KeyError, TypeError):
                    plain = False
                if plain:
                    entry = (target_id, None, message, None)
                    inbound.append(entry)
                    if self._closed:
                        return self._take_back_if_closed(entry, target_id)
                    if not self._inbound_scheduled:
                        self._inbound_scheduled = True
                        self._loop.call_soon_threadsafe(self._process_inbound)
                    return
            return self._post_from_other_thread(target_id, None, message, None, timeout)
        if timeout is not None:
            _refuse_timeout_here(timeout)
        try:
            # A subscript, not .get(): burst 3,540 -> 3,440 instructions per
            # message (callgrind).
            ctx = self._registry[target_id]
        except (KeyError, TypeError):
            return self._post_missing(target_id, None, message, None)
        # Queued bare, not as (None, message, None), when the item before it is
        # a plain send with no sender too (or there is none): no tuple to
        # allocate, track and free per message; burst 3.46 -> 4.46 M/s.
        if ctx._tail_sender is None and message.__class__ is not tuple:
            ctx._inbox.append(message)
        else:
            ctx._tail_sender = None         # before the append, as in Context.send
            ctx._inbox.append((None, message, None))
        if not ctx._scheduled:
            ctx._scheduled = True
            self._ready.append(ctx)
            if not self._tick_scheduled:
                self._tick_scheduled = True
                self._loop.call_soon(self._tick)

    def poison_pill(self, target_id: str) -> None:
        """Stop ``target_id`` after the messages already in its inbox; any thread."""
        _check_id("poison_pill", target_id)
        self._post(target_id, *_PILL)

    # -- posting --------------------------------------------------------------
    # One message into one inbox: registry lookup, thread hop, dead letter on a
    # miss.

    def _post(self, target_id: str, sender_id: str | None, message: Any,
              tag: Any = None, timeout: float | None = None) -> None:
        """Queue a message for ``target_id``; any thread.

        Context.send and Engine.send carry this body written out, with
        _post_here's, _enqueue's and _schedule's: keep them in step.
        """
        if not self._owner._is_owned():
            return self._post_from_other_thread(target_id, sender_id, message, tag, timeout)
        self._post_here(target_id, sender_id, message, tag)

    def _post_here(self, target_id: str, sender_id: str | None, message: Any,
                   tag: Any) -> None:
        """``_post`` for a caller that is the engine thread, or holds the idle engine."""
        ctx = self._registry.get(target_id)
        if ctx is None:
            return self._post_missing(target_id, sender_id, message, tag)
        self._enqueue(ctx, (sender_id, message, tag))

    def _enqueue(self, ctx: Context, item: tuple[Any, ...]) -> None:
        _append_item(ctx, item)
        if not ctx._scheduled:
            self._schedule(ctx)

    def _post_missing(self, target_id: str, sender_id: str | None, message: Any,
                      tag: Any) -> None:
        """A post to an id that is not in the registry: a transport's stand-in, if
        one takes it (see the transport seam), else a dead letter."""
        if type(target_id) is not str or not target_id:
            _check_id("send", target_id)
        ctx = self._resolve_missing(target_id)
        if ctx is None:
            self._dead_letter(target_id, _item_envelope(sender_id, message, tag),
                              "no such actor")
        else:
            self._enqueue(ctx, (sender_id, message, tag))

    def _post_from_other_thread(self, target_id: str, sender_id: str | None,
                                message: Any, tag: Any, timeout: float | None) -> None:
        # Another thread only appends to _inbound and wakes the loop; the
        # engine thread queues the message, so each thread's order is kept.
        if self._closed:
            raise EngineClosed(f"cannot send to {target_id!r}: {_CLOSED}")
        try:
            # A subscript, the id checked only on a miss: the sender's part
            # 4,208 -> 3,836 instructions per message (callgrind, 3.11).
            inbox = self._registry[target_id]._inbox
        except (KeyError, TypeError):
            if type(target_id) is not str or not target_id:
                _check_id("send", target_id)
        else:
            if inbox.__class__ is _BoundedInbox and inbox._policy.verdict_across_threads:
                return self._post_and_wait(inbox._ctx, (sender_id, message, tag), timeout)
        if timeout is not None:
            _check_delay("send", "timeout", timeout, allow_zero=True)
        # One (target_id, sender_id, message, tag) entry, posted by the drain
        # itself, instead of _submit's bound method, argument tuple and pair:
        # cross-thread send (one thread, 300k) 0.95-1.01 -> 1.60-1.74 M msgs/s,
        # 2,799 -> 2,089 M instructions for 200k (callgrind, 3.11).
        inbound = self._inbound
        if len(inbound) < self._guards.inbound_slow_at:
            # _hand_over's usual case written out: a call less per message.
            entry = (target_id, sender_id, message, tag)
            inbound.append(entry)
            if self._closed:
                return self._take_back_if_closed(entry, target_id)
            if not self._inbound_scheduled:
                self._inbound_scheduled = True
                self._loop.call_soon_threadsafe(self._process_inbound)
            return
        self._hand_over((target_id, sender_id, message, tag), timeout)

    def _submit(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> None:
        """Have the engine thread call ``fn(*args)``, in order; any thread."""
        self._hand_over((fn, args), timeout)

    def _follow_up(self, fn: Callable[..., Any], *args: Any) -> None:
        """Have the engine thread call ``fn(*args)`` later, for work the engine
        owes already (a job's result, a routee to replace): any thread, never
        waits and never refused by the cross-thread queue's bound, which is
        for new work from other threads.  On the engine thread, waiting for
        room would wait on itself; refused, the work would be lost.
        EngineClosed if the engine closed before the call could go in."""
        self._queue_inbound((fn, args))

    def _hand_over(self, entry: tuple[Any, ...], timeout: float | None) -> None:
        """Queue ``entry`` for the engine thread: a (fn, args) call, or a
        (target_id, sender_id, message, tag) post; any thread.

        Waits while the cross-thread queue is full (at most ``timeout``
        seconds, then InboxFull), or raises InboxFull at once under
        ``inbound_overflow="fail"``.
        """
        waiting = len(self._inbound)
        if waiting >= self._guards.inbound_slow_at:
            if waiting >= self._guards.inbound_capacity:
                self._wait_for_inbound_room(timeout)
            else:
                # A long queue: let the engine thread have the GIL now rather
                # than after this thread's switch interval (5 ms, times eight
                # sending threads).  8-thread flood, timer ticks kept:
                # 62 of 300 without, see bench/edges.py for with.
                time.sleep(0)
        self._queue_inbound(entry)

    def _queue_inbound(self, entry: tuple[Any, ...]) -> None:
        """Append ``entry`` to the cross-thread queue, whatever its length, and
        see that the engine thread drains it; EngineClosed if it closed first."""
        self._inbound.append(entry)
        if self._closed:
            return self._take_back_if_closed(entry, None)
        if not self._inbound_scheduled:
            self._inbound_scheduled = True
            self._loop.call_soon_threadsafe(self._process_inbound)

    def _take_back_if_closed(self, entry: tuple[Any, ...], target_id: str | None) -> None:
        """``entry`` went into the cross-thread queue after its sender found the
        engine open, and the engine is closed now.  If close() made its last
        drain before the entry landed, nothing will ever take it: take it back
        and raise EngineClosed (a send would be lost, an ask never end).  If
        the drain took it, close() handled it (a dead letter, a failed ask)."""
        with self._lock:                # held by _close from start to end
            for index, queued in enumerate(list(self._inbound)):
                if queued is entry:
                    # Only appends happen once closed, and takers-back hold the
                    # lock: the index is still this entry's.
                    del self._inbound[index]
                    what = "call" if target_id is None else f"send to {target_id!r}"
                    raise EngineClosed(f"cannot {what}: {_CLOSED}")

    def _wait_for_inbound_room(self, timeout: float | None) -> None:
        guards = self._guards
        full = (f"the engine's cross-thread queue is full ({guards.inbound_capacity} calls "
                f"from other threads wait for the engine thread)")
        if guards.inbound_fail:
            raise InboxFull(f"{full}; try again later, or make the engine with "
                            f"inbound_overflow='block' to wait, or a larger inbound_capacity")
        deadline = None if timeout is None else time.monotonic() + timeout
        room = guards.inbound_room
        while len(self._inbound) >= guards.inbound_capacity:
            if self._closed:
                raise EngineClosed(_CLOSED)
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                raise InboxFull(f"{full}, and stayed full for {timeout} s; the message was "
                                f"not sent")
            room.clear()
            if len(self._inbound) >= guards.inbound_capacity:
                room.wait(left)

    def _process_inbound(self, budget: int = INBOUND_BUDGET) -> None:
        """Run the calls other threads queued, at most ``budget`` of them; the rest
        in a callback of its own, after timers, I/O and actors had theirs."""
        # Clear the flag before draining: a send that lands after the drain then
        # schedules a new one, and none is left behind.
        self._inbound_scheduled = False
        inbound = self._inbound
        popleft = inbound.popleft
        find = self._registry.get
        while inbound and budget:
            budget -= 1
            entry = popleft()
            try:
                if len(entry) == 2:
                    entry[0](*entry[1])
                    continue
                # A post: _post_here written out, with Engine.send's bare
                # message for a plain send.
                target_id, sender_id, message, tag = entry
                ctx = find(target_id)
                if ctx is None:
                    self._post_missing(target_id, sender_id, message, tag)
                    continue
                if tag is None and ctx._tail_sender is sender_id \
                        and message.__class__ is not tuple:
                    ctx._inbox.append(message)      # bare: see Context.send
                else:
                    if tag is None:         # before the append, as in Context.send
                        ctx._tail_sender = sender_id
                    ctx._inbox.append((sender_id, message, tag))
                if not ctx._scheduled:
                    self._schedule(ctx)
            except Exception:
                log.exception("a call from another thread failed on the engine thread")
        guards = self._guards
        room = guards.inbound_room
        if len(inbound) <= guards.inbound_capacity // 2 and not room.is_set():
            # Waiting senders wake once half the queue is free, not at every
            # drain: eight senders woken per drain took the GIL from the loop.
            # Set only when a sender cleared it: Event.set takes its lock and
            # notifies, 6 Python calls per drain (sys.setprofile count; a
            # cross-thread ask round trip makes one drain).
            room.set()
        if inbound and not self._inbound_scheduled:
            self._inbound_scheduled = True
            self._loop.call_soon(self._process_inbound)
        # The last piece of work may have ended during the drain, while more
        # calls still waited (a reply, then a dead letter): idle only now.
        self._check_idle()

    def _call_on_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Call ``fn(*args)`` on the engine thread and return its result; any thread.

        When no thread runs the engine, the caller runs it, under the lock.
        """
        if self._owner._is_owned():
            return fn(*args)
        if self._closed:
            raise EngineClosed(_CLOSED)
        with self._lock:
            if self._closed:
                raise EngineClosed(_CLOSED)
            if not self._running:
                return fn(*args)
            future: Future[_T] = Future()
            self._submit(_run_into_future, future, fn, args)
        return future.result()

    # -- the scheduler --------------------------------------------------------
    # The ready queue and the turn: the only place where receive is called.

    def _schedule(self, ctx: Context) -> None:
        ctx._scheduled = True
        self._ready.append(ctx)
        if not self._tick_scheduled:
            self._tick_scheduled = True
            self._loop.call_soon(self._tick)

    def _schedule_ahead(self, ctx: Context) -> None:
        """``_schedule`` at the front of the ready queue: for a stand-in whose
        turn only hands its messages on (see Pool._deliver)."""
        ctx._scheduled = True
        self._ready.appendleft(ctx)
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
            if self._inspector is None:
                while ready and budget > 0:
                    budget -= turn(ready.popleft(), now)
            else:
                self._inspector.timed_turns(ready, turn, now, budget)   # the same, timed
        finally:
            if ready:
                self._loop.call_soon(self._tick)
            else:
                self._tick_scheduled = False
                self._check_idle()

    def _turn(self, ctx: Context, now: float) -> int:
        """One actor's turn: up to ACTOR_BATCH of its messages.  Returns how many.

        The path is chosen once, here: one queued message in a plain list is
        handled inline (the usual case when actors converse); anything else
        (a batch, a bounded inbox, a stand-in's inbox) goes to ``_turn_batch``.
        """
        if ctx._state is _STOPPED:
            return 0        # stopped with its parent while it waited in the queue
        inbox = ctx._inbox
        if len(inbox) != 1 or inbox.__class__ is not list:
            return self._turn_batch(ctx, now)
        # One queued message (ping-pong, ring, request/reply, a poison pill):
        # handled without the batch's fresh list, iterator and loop; ping-pong
        # 1.59 -> 2.11 M/s, 100,000 poison pills 320k -> 358k stops/s.
        # Unpacked straight from the list: a local holding the item through
        # receive() cost ping-pong 2.46 -> 2.32 M/s.  A plain list of one item
        # holds a tuple: a bare message goes only after another item (an empty
        # inbox has _tail_sender _NO_TAIL) and none is left alone at the front.
        sender_id, message, tag = inbox[0]
        inbox.clear()
        ctx._tail_sender = _NO_TAIL     # empty: the next send is a tuple again
        ctx._count += 1
        ctx._last = now
        envelope: Any = None
        try:
            if tag is None:
                # The spare envelope, refilled when only the spare and this
                # local hold it, as a batch refills its own: ping-pong 7,246
                # -> 6,744 instructions per message (callgrind, 3.11); 0.63 ->
                # 0.71 M/s against the start of the round (loaded machine).
                envelope = _spare[0]
                if _refcount(envelope) != _SPARE_SOLE:
                    envelope = _spare[0] = _SentEnvelope()
                envelope.sender_id = sender_id
                envelope.message = message
            elif tag is _PUBLISH:
                envelope = message
            elif tag is _COMMAND and message is _POISON_PILL:
                # A lone poison pill, the last message of most actors: stopped
                # with no envelope and no _apply_tag; create-and-stop (25k,
                # callgrind) 46,200 -> 44,100 instructions per actor on 3.11.
                self._stop_actor(ctx, "stopped by poison pill", [])
                if ctx._state is not _STOPPED:
                    self._after_turn(ctx)
                return 1
            else:
                envelope = _Envelope()
                envelope.sender_id = sender_id
                envelope.message = message
                if self._apply_tag(ctx, envelope, tag, ()):
                    if ctx._state is not _STOPPED:
                        self._after_turn(ctx)
                    return 1
            ctx._receive(ctx._actor, envelope)
        except Exception as exc:
            self._handle_failure(ctx, exc, envelope, None)
            if ctx._state is _STOPPED:
                return 1
        except BaseException:
            self._after_turn(ctx)
            raise
        # _after_turn written out: ping-pong 2.02 -> 2.20 M/s.
        if ctx._extra is not None and ctx._extra.waiting_on:
            ctx._scheduled = _PARKED
        elif ctx._inbox:
            if ctx._inbox[0] is _PILL and len(ctx._inbox) == 1:
                # [issue 16, "create" helper: this branch only] The turn queued
                # nothing but its own poison pill (ctx.shutdown() at its last
                # message): stopped now, as the next message of a longer turn
                # would be, not after a second trip round the ready queue.
                return self._stop_after_turn(ctx)
            self._ready.append(ctx)
        else:
            ctx._scheduled = False
        return 1

    def _turn_batch(self, ctx: Context, now: float) -> int:
        """A turn over up to ACTOR_BATCH queued items: takes them, delivers them."""
        if ctx._inbox.__class__ is _StandInInbox:
            return self._turn_stand_in(ctx)
        holds_bare = ctx._tail_sender is not _NO_TAIL
        if self._inspector is not None:
            # An inbox is longest when its turn begins: its high-water mark is
            # sampled here, once per batch, never per message.
            self._inspector.saw_inbox(ctx, len(ctx._inbox) - ctx._head)
        batch = self._take_batch(ctx)
        count = len(batch)
        ctx._count += count
        ctx._last = now
        # Kept on the context so a blocking send can cut the turn short (see
        # _pause_turn), and dropped after the turn: an iterator kept per idle
        # actor cost skynet (1M leaves) about 100 MiB of peak RSS.
        items = ctx._items = iter(batch)
        try:
            # Two copies of one loop, told apart only by how they take an item
            # apart: the class check that finds Engine.send's bare messages is
            # paid only in batches that may hold some; fan-out 9.90 -> 10.97 M
            # deliveries/s.
            if holds_bare:
                self._deliver_mixed(ctx, items)
            else:
                self._deliver_tuples(ctx, items)
        except BaseException:
            # KeyboardInterrupt or SystemExit: put back what this turn has not
            # handled, so nothing is lost, and let it propagate.
            _put_back(ctx, list(items))
            self._after_turn(ctx)
            raise
        ctx._items = None
        if ctx._state is not _STOPPED:
            self._after_turn(ctx)
        return count

    def _take_batch(self, ctx: Context) -> list[Any]:
        """Take up to ACTOR_BATCH items from the front of ``ctx``'s inbox."""
        inbox: list[Any] = ctx._inbox
        head = ctx._head
        end = head + ACTOR_BATCH
        if len(inbox) <= end:
            # Swap in a fresh list and run through the old one: iterating a list
            # beats deque.popleft per message (ping-pong 5.0 against 2.8 M/s,
            # bursts equal), and an empty list is 56 bytes against a deque's 760.
            ctx._head = 0
            if inbox.__class__ is list:
                # The fresh list starts with a tuple (the batch keeps
                # _head_sender in step while it is delivered).
                ctx._tail_sender = _NO_TAIL
                ctx._inbox = []
            else:       # a bounded inbox: let waiting senders in
                inbox._fresh(len(inbox) - head)  # type: ignore[attr-defined]
            return inbox if head == 0 else inbox[head:]
        batch = inbox[head:end]
        # Two or more left: a plain list of one item never holds a bare
        # message, so the one-message turn takes it apart without a check.
        if end > _COMPACT_AFTER and end * 2 > len(inbox) > end + 1:
            del inbox[:end]             # let handled messages go; amortised O(1)
            ctx._head = 0
        else:
            ctx._head = end
        if inbox.__class__ is not list:
            self._admit_waiting(ctx, max(0, len(batch) - ctx._capacity))
        return batch

    # The two delivery loops below are copies (see the essay): keep their
    # bodies in step; tests/test_differential.py checks them against each other.

    def _deliver_tuples(self, ctx: Context, items: Iterator[tuple[Any, ...]]) -> None:
        """Deliver a batch of (sender_id, message, tag) items, none bare."""
        actor = ctx._actor
        receive = ctx._receive
        # A plain send's envelope is ``sent``, refilled; any other's is
        # ``envelope`` (None while a plain send is delivered): ``sent`` holds
        # only _SentEnvelopes, so the refill needs no class check (a class
        # check is ~120 instructions): actor burst 3,564 -> 3,478, burst
        # (Engine.send) 3,441 -> 3,355 instructions per message (callgrind, 3.11).
        envelope: Any = None
        sent: Any = None
        while True:
            # One try around the whole batch; after a failure the same iterator
            # goes on with the next message.
            try:
                for sender_id, message, tag in items:
                    if tag is None:
                        # Refill the envelope of the previous send when only this
                        # loop holds it: burst 3.00 -> 3.38 M/s (see _SentEnvelope).
                        if _refcount(sent) != _SOLE_REFERENCE:
                            sent = _SentEnvelope()
                        sent.sender_id = sender_id
                        sent.message = message
                        envelope = None
                        receive(actor, sent)
                        continue
                    if tag is _PUBLISH:
                        envelope = message
                    else:
                        envelope = _Envelope()
                        envelope.sender_id = sender_id
                        envelope.message = message
                        if self._apply_tag(ctx, envelope, tag, items):
                            if ctx._state is _STOPPED:
                                return
                            continue    # an engine command, handled
                    receive(actor, envelope)
                return
            except Exception as exc:
                if self._failed_in_batch(ctx, exc, sent if envelope is None else envelope,
                                         items):
                    return
                actor = ctx._actor      # a new instance if it was restarted

    def _deliver_mixed(self, ctx: Context, items: Iterator[Any]) -> None:
        """``_deliver_tuples`` for a batch that may hold bare messages."""
        actor = ctx._actor
        receive = ctx._receive
        envelope: Any = None
        sent: Any = None
        # The sender of a bare message: that of the plain send before it.
        # Kept in ctx._head_sender too, as each plain send is taken, for what
        # takes the rest of the batch (a stop, a pause, an interrupt).
        sender = ctx._head_sender
        while True:
            try:
                for item in items:
                    if item.__class__ is not tuple:
                        # A bare message: a direct send, delivered at once;
                        # burst 3,450 -> 3,320 instructions per message.
                        if _refcount(sent) != _SOLE_REFERENCE:
                            sent = _SentEnvelope()
                        sent.sender_id = sender
                        sent.message = item
                        envelope = None
                        receive(actor, sent)
                        continue
                    sender_id, message, tag = item
                    if tag is None:
                        sender = ctx._head_sender = sender_id
                        if _refcount(sent) != _SOLE_REFERENCE:
                            sent = _SentEnvelope()
                        sent.sender_id = sender_id
                        sent.message = message
                        envelope = None
                        receive(actor, sent)
                        continue
                    if tag is _PUBLISH:
                        envelope = message
                    else:
                        envelope = _Envelope()
                        envelope.sender_id = sender_id
                        envelope.message = message
                        if self._apply_tag(ctx, envelope, tag, items):
                            if ctx._state is _STOPPED:
                                return
                            continue    # an engine command, handled
                    receive(actor, envelope)
                return
            except Exception as exc:
                if self._failed_in_batch(ctx, exc, sent if envelope is None else envelope,
                                         items):
                    return
                actor = ctx._actor      # a new instance if it was restarted

    def _failed_in_batch(self, ctx: Context, exc: Exception, envelope: Envelope | None,
                         items: Iterator[Any]) -> bool:
        """``receive`` raised in a batch: the supervisor decides.  True if the actor
        stopped (the rest of the batch is then dead letters)."""
        self._handle_failure(ctx, exc, envelope, items)
        if ctx._state is not _STOPPED:
            return False
        self._dead_letter_all(ctx.actor_id, _explicit(list(items), ctx._head_sender),
                              "actor stopped before handling it (it failed)")
        return True

    def _after_turn(self, ctx: Context) -> None:
        """Back of the ready queue if it has more, parked if it waits (for room, a
        link, a coroutine), else idle."""
        if ctx._extra is not None and ctx._extra.waiting_on:
            ctx._scheduled = _PARKED    # waits (for room, a link, a coroutine): no turns
            return
        if len(ctx._inbox) > ctx._head:
            self._ready.append(ctx)         # still scheduled: back of the queue
        else:
            ctx._scheduled = False

    def _apply_tag(self, ctx: Context, envelope: Envelope, tag: Any,
                 rest: Iterable[tuple[Any, ...]]) -> bool:
        """A queued item that is not a plain send or publication.

        An asked message or a Terminated notice: fills in ``envelope`` and
        returns False, to deliver it.  An engine command: carries it out and
        returns True, to deliver nothing.
        """
        if tag is _COMMAND:
            if envelope.message is _POISON_PILL:
                self._stop_actor(ctx, "stopped by poison pill", list(rest))
                return True
            raise AssertionError(f"unknown engine command {envelope.message!r}")
        if tag.__class__ in _CALL_REPLIES:      # a proxied method call
            self._run_call(ctx, envelope.message, tag)
            return True
        envelope.topic = None
        if tag is _TERMINATED:
            envelope.message_type = MessageType.TERMINATED
        else:                                   # a _Reply: an asked message
            envelope.message_type = _SEND
            envelope._reply = tag
            envelope.__class__ = _AskedEnvelope     # fails the ask if dropped unanswered
        return False

    # -- the transport seam ---------------------------------------------------
    # Actors that live elsewhere: every registry miss asks the transport, which
    # may install a stand-in; a stand-in's turn hands its inbox over at once.
    #
    # A transport is an object with resolve(target_id) -> Context | None.  It
    # answers a miss with engine._install_stand_in(target_id, flush), or None
    # (no such actor anywhere: a dead letter or ActorNotFound, as without one).
    # Later sends to that id are ordinary appends to the stand-in's inbox: the
    # hot path pays nothing.  The stand-in's turn calls flush(ctx, items) once
    # with every queued item; _item_fields(item) gives each as picklable
    # fields.  A transport that also gives flush_run gets plain sends of one
    # sender as flush_run(ctx, sender_id, messages, classes), the messages
    # bare, ``classes`` the set of their classes; the far engine queues them
    # with _deliver_remote_run, told no_tuples=True if the transport can
    # vouch from those classes that none arrives as a tuple.  A flush or
    # flush_run that returns True holds the local actors that sent the items
    # (_hold_senders) until the transport calls _release_senders(ctx), or
    # _release_sender(actor, ctx) for one that must take what another engine
    # sent it before that engine answers.
    # Inbound, the transport builds items with _remote_item() and hands them
    # to _deliver_remote (engine thread; _submit it from others).
    # Asks: _register_reply(reply) -> an id the far side answers to, through
    # _settle_reply(id, value, exc); the far side wraps the id in a
    # _RemoteReply.  A lost engine: _stop_stand_in(target_id, reason), and its
    # queued items become dead letters and its monitors are told.
    # A publication arriving from another engine is kept only if
    # _wants_publication says so: unsubscribing takes effect at once here, as
    # it does locally, though the publisher hears of it later.  One that
    # ctx.forward passed on ("forwarded publication") is kept: its target
    # need not subscribe.
    # Subscribing to, unsubscribing from, monitoring or demonitoring a
    # stand-in queues the operation in its inbox (tags _SUBSCRIBE,
    # _UNSUBSCRIBE, _MONITOR, _DEMONITOR; _item_fields names them), so it
    # reaches the real actor in order with the sender's messages; a monitor
    # also stays on the stand-in, for a lost engine.  A transport with a
    # spawned(ctx) method is told of every spawn (the Ray transport announces
    # where actor-spawned ids live), one with stopped(ctx) of every record that
    # leaves the registry (it forgets them); one with a placing(actor_id) method is
    # asked before, and raises for an id that lives on another engine.  An id
    # with a stand-in here cannot be spawned here: one id, one place.

    def attach_transport(self, transport: Any) -> None:
        """For transports only: route every id this engine does not know to
        ``transport.resolve(target_id)`` (see the transport seam)."""
        if not callable(getattr(transport, "resolve", None)):
            raise TypeError(f"attach_transport() needs an object with a "
                            f"resolve(target_id) method, not {transport!r}")
        self._call_on_loop(setattr, self, "_transport", _Transport(transport))

    def _resolve_missing(self, target_id: str) -> Context | None:
        """The one place a registry miss goes: the transport's stand-in, or None."""
        transport = self._transport
        if transport is None or type(target_id) is not str or self._closed:
            return None
        resolved: Context | None = transport.resolve(target_id)
        return resolved

    def _elsewhere(self, target_id: str) -> bool:
        """Whether ``target_id`` lives on another engine: its record is (or,
        asked on the engine thread, becomes) a transport's stand-in."""
        ctx = self._registry.get(target_id)
        if ctx is None and self._owner._is_owned():
            ctx = self._resolve_missing(target_id)
        return ctx is not None and ctx._inbox.__class__ is _StandInInbox

    def _install_stand_in(
            self, target_id: str, flush: Callable[[Context, list[Any]], Any],
            flush_run: Callable[[Context, str | None, list[Any], set[type]], Any] | None = None,
    ) -> Context:
        """Register a stand-in for the remote actor ``target_id``; engine thread.

        Its turn calls ``flush(ctx, items)`` with every queued item, instead of
        a receive per message; or, given ``flush_run``, ``flush_run(ctx,
        sender_id, messages, classes)`` when the items are plain sends of one
        sender (``classes``: the set of the messages' classes).
        Returns the existing record if the id is taken.
        """
        existing = self._registry.get(target_id)
        if existing is not None:
            return existing
        ctx = Context(self, target_id, None, DEFAULT_CAPACITY)  # type: ignore[arg-type]
        inbox = ctx._inbox = _StandInInbox()
        inbox._flush = flush
        inbox._flush_run = flush_run
        inbox._forwarders = None
        self._registry[target_id] = ctx
        return ctx

    def _wants_publication(self, subscriber_id: str, publisher_id: str, topic: str) -> bool:
        """Whether a publication from another engine still goes to ``subscriber_id``
        (engine thread): no longer once it unsubscribed, as locally, though the
        publisher may have sent it before it heard.  An id that is not a local
        actor keeps it: the transport forwards it to where the id lives (whose
        engine asks again) or drops it, as no actor here subscribed."""
        sub = self._registry.get(subscriber_id)
        if sub is None or sub._inbox.__class__ is _StandInInbox:
            return True
        subscriptions = sub._subscriptions
        return subscriptions is not None and (publisher_id, topic) in subscriptions

    def _turn_stand_in(self, ctx: Context) -> int:
        """A stand-in's turn: its whole inbox to the transport, in one call.

        Plain sends of one sender only (a producer's burst) go to the
        transport's flush_run as (sender, messages, classes), when it has one: the
        bare messages stay bare and no tuple is made per message (10,000 sends
        a turn, the Ray link's part: 129 -> 30 ns a message; timeit).
        """
        inbox = ctx._inbox
        fresh = ctx._inbox = _StandInInbox()
        fresh._flush = flush = inbox._flush
        fresh._flush_run = flush_run = inbox._flush_run
        fresh._forwarders = None
        # A slice, even from 0: the transport gets a plain list.  The inbox
        # itself pickles as its class with its flush callbacks: the C pickler
        # refused it and the Ray link pickled each message alone (10,000 a
        # batch: 0.9 -> 2.5 CPU-us a message).
        items = inbox[ctx._head:]
        ctx._head = 0
        sender: str | None = None
        classes = None                      # set: one sender's run, for flush_run
        if ctx._tail_sender is not _NO_TAIL:
            # Each stand-in list starts with a tuple (_NO_TAIL below).
            if flush_run is not None:
                classes = _run_classes(items)
            if classes is not None:
                sender = items[0][0]
                items[0] = items[0][1]      # items is ours: a slice
            else:       # the transport takes each item alone: bare messages as tuples
                items = _explicit(items, None)
        ctx._tail_sender = _NO_TAIL
        ctx._count += len(items)
        try:
            if classes is None:
                full = flush(ctx, items)
            else:
                full = flush_run(ctx, sender, items, classes)
        except Exception as exc:
            log.exception("the transport failed to forward %d messages to %r",
                          len(items), ctx.actor_id)
            if classes is not None:
                items = _run_items(sender, items)
            self._dead_letter_all(ctx.actor_id, items, f"transport failed: {exc!r}")
            full = False
        if full:
            # The transport holds more than it may send soon: its senders wait
            # (see _hold_senders), and so do the actors that forwarded to it
            # (the senders of what they forwarded may be far away).
            self._hold_senders(ctx, (sender,) if classes is not None
                               else dict.fromkeys(map(_first, items)))
            if inbox._forwarders:
                self._hold_senders(ctx, inbox._forwarders)
        if ctx._state is not _STOPPED:
            self._after_turn(ctx)
        return len(items)

    def _deliver_remote(self, target_id: str, items: list[Any]) -> None:
        """Queue items that came from another engine for ``target_id``; engine thread.

        A plain inbox takes them in one step; a bounded one applies its
        policy to each; a miss makes each a dead letter.
        """
        ctx = self._registry.get(target_id)
        if ctx is None:
            return self._dead_letter_all(target_id, items, "no such actor")
        inbox = ctx._inbox
        if inbox.__class__ is list:
            inbox.extend(items)
            if ctx._tail_sender is not _NO_TAIL:
                ctx._tail_sender = _MIXED   # tuples: no bare message may follow them
        else:
            block = _is_block(inbox)
            pool = inbox._pool if isinstance(inbox, _RouterInbox) else None
            if pool is not None:
                pool._afar = True       # a full "block" routee: its line (Pool._deliver)
            try:
                for item in items:
                    if block and not inbox.has_room():
                        self._wait_from_afar(ctx, item)
                        continue
                    try:
                        inbox.append(item)
                    except InboxFull as exc:
                        self._dead_letter(target_id, _item_envelope(*item),
                                          f"inbox full: {exc}")
            finally:
                if pool is not None:
                    pool._afar = False
        if len(ctx._inbox) > ctx._head and not ctx._scheduled:
            self._schedule(ctx)

    def _wait_from_afar(self, ctx: Context, item: Any) -> None:
        """A message from another engine for a full "block" inbox waits in line,
        with no sender here to pause: the transport holds its sender back by
        answering the batch only once the actor took it (its marks count the
        line), as a link's answer is its back-pressure."""
        if ctx._waiting is None:
            ctx._waiting = collections.deque()
        ctx._waiting.append((item, None, None))
        if not ctx._scheduled:
            self._schedule(ctx)

    def _deliver_remote_run(self, target_id: str, sender_id: str | None,
                            messages: list[Any], no_tuples: bool = False) -> None:
        """Plain sends of one sender from another engine, queued as Context.send
        queues a run of them: the first as a tuple, the rest bare (``messages``
        becomes the engine's).  ``no_tuples``: the transport vouches that no
        message is a tuple, so none is looked at.  Engine thread."""
        ctx = self._registry.get(target_id)
        # A plain inbox takes the run in one step unless a message is itself a
        # tuple; a set of the types is one pass in C.  Receiving 10,000 plain
        # sends and handling them (bench/instructions.py remote_run, 3.11):
        # 2,518 -> 1,820 instructions a message (the none count subtracted).
        # Vouched runs skip even that pass: one way between two engines at
        # batch 10,000, CPU a message 1.09-1.13x -> 1.02-1.06x Ray's
        # (bench_cluster's runs of 1M messages, 3 interleaved A/B rounds).
        if ctx is None or ctx._inbox.__class__ is not list or not messages \
                or (not no_tuples and tuple in set(map(type, messages))):
            return self._deliver_remote(
                target_id, _run_items(sender_id, messages))
        messages[0] = (sender_id, messages[0], None)
        ctx._inbox.extend(messages)
        ctx._tail_sender = sender_id        # bare messages follow; the sender's may too
        if not ctx._scheduled:
            self._schedule(ctx)

    def _register_reply(self, reply: Any) -> str:
        """An id for an ask's reply channel, that another engine can answer to."""
        transport: _Transport = self._transport  # type: ignore[assignment]  # attached
        if reply.remote_id is None:
            reply.remote_id = f"{id(self):x}:{next(transport.reply_ids)}"
            transport.replies[reply.remote_id] = reply
        remote_id: str = reply.remote_id
        return remote_id

    def _settle_reply(self, reply_id: str, value: Any, exc: BaseException | None) -> None:
        """Answer the ask registered under ``reply_id``; a late answer is a dead letter."""
        reply = self._transport.replies.pop(reply_id, None)  # type: ignore[union-attr]
        if reply is None:
            if exc is None:
                self._dead_letter("(ask)", Envelope(None, _SEND, value),
                                  "reply came after the ask was answered or timed out")
            return
        reply.settle(value, exc)

    def _stop_stand_in(self, target_id: str, reason: str) -> None:
        """The remote actor is gone (its engine was lost): stop its stand-in.

        What is queued becomes dead letters; monitors get TERMINATED.
        """
        ctx = self._registry.get(target_id)
        if ctx is not None and ctx._inbox.__class__ is _StandInInbox:
            self._stop_actor(ctx, reason, [])


###############################################################################
# Back-pressure and ask
# When an inbox is full and its policy makes senders wait; and a send that
# wants an answer.
###############################################################################

class _BackPressure(_Sending):
    """Engine room: waiting for room in a full inbox.  Not part of the public API."""

    # -- waiting for room -----------------------------------------------------
    # Senders parked on a full "block" inbox, and how they get in.

    def _wait_for_room(self, ctx: Context, item: Any, waiter: Future[Any] | None,
                       waits: Context | None = None) -> None:
        """A send to a full "block" inbox (or one with senders already waiting):
        the message waits in line, and so does its sender (or ``waits``, the
        actor that forwarded it)."""
        if waiter is None:
            sender_id = _unpack(item)[0]
            sender = waits or (self._registry.get(sender_id) if sender_id is not None else None)
            if sender is None:
                raise InboxFull(
                    f"the inbox of {ctx.actor_id!r} is full ({ctx._capacity} messages) and "
                    f"a send from the engine's own thread outside any actor cannot wait: "
                    f"nothing would empty the inbox while it waited. Send from an actor "
                    f"(it pauses until there is room) or from another thread (it blocks)")
            waiting_on = sender._waiting_on
            if waiting_on is None:
                waiting_on = sender._waiting_on = {}
            if ctx in waiting_on:
                waiting_on[ctx] += 1    # already waiting here: already checked and paused
            else:
                if self._waits_for(ctx, sender):
                    raise InboxFull(
                        f"{sender.actor_id!r} cannot wait for room in the full inbox of "
                        f"{ctx.actor_id!r}: {ctx.actor_id!r} is itself waiting, directly or "
                        f"through others, for {sender.actor_id!r}, so both would wait forever")
                waiting_on[ctx] = 1
                if not sender._scheduled:
                    sender._scheduled = _PARKED   # not in the ready queue: park it now
                self._pause_turn(sender)
        else:
            sender = None
        if ctx._waiting is None:
            ctx._waiting = collections.deque()
        ctx._waiting.append((item, sender, waiter))
        if not ctx._scheduled:
            self._schedule(ctx)

    @staticmethod
    def _pause_turn(ctx: Context) -> None:
        """End ``ctx``'s running turn after the current message; the rest of the
        batch goes back to the front of its inbox, for when it has room to send."""
        state: tuple[Any, ...] = ctx._items.__reduce__() if ctx._items is not None else ()
        if len(state) != 3:
            return              # not in a turn, or at its end
        batch, position = state[1][0], state[2]
        rest = batch[position:]
        if rest:
            ctx._items.__setstate__(len(batch))
            _put_back(ctx, rest)
            ctx._count -= len(rest)

    @staticmethod
    def _waits_for(target: Context, sender: Context) -> bool:
        """True if ``target`` is ``sender`` or waits, through any chain, for it."""
        seen = set()
        stack = [target]
        while stack:
            ctx = stack.pop()
            if ctx is sender:
                return True
            for other in ctx._waiting_on or ():
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return False

    def _admit_waiting(self, ctx: Context, over: int = 0) -> None:
        """Move waiting messages into ``ctx``'s inbox while it has room, less
        ``over`` (by how much the batch a turn just took exceeds the capacity)."""
        waiting = ctx._waiting
        if not waiting:
            return
        inbox = ctx._inbox
        room = ctx._capacity - (len(inbox) - ctx._head) - over
        while waiting and room > 0:
            item, sender, waiter = waiting.popleft()
            list.append(inbox, item)
            room -= 1
            self._stop_waiting(ctx, sender, waiter)
        if len(inbox) > ctx._head and not ctx._scheduled:
            self._schedule(ctx)

    def _stop_waiting(self, target: Context, sender: Context | None,
                      waiter: Future[Any] | None) -> None:
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        if sender is None:
            return                          # from another engine (_wait_from_afar)
        waiting_on = sender._waiting_on
        left = waiting_on[target] - 1
        if left:
            waiting_on[target] = left
            return
        self._unpark(sender, target)

    def _unpark(self, ctx: Context, key: Any) -> None:
        """``ctx`` no longer waits on ``key``: its turns resume if nothing else holds it."""
        waiting_on = ctx._waiting_on
        if waiting_on:
            waiting_on.pop(key, None)
            suspended = ctx._suspended
            if len(waiting_on) == 1 and suspended is not None and suspended in waiting_on:
                self._go_on(suspended)      # its coroutine's step, if put off (_held_back)
        if not waiting_on and ctx._scheduled is _PARKED and ctx._state is _RUNNING:
            ctx._scheduled = _IDLE
            if len(ctx._inbox) > ctx._head:
                self._schedule(ctx)

    # -- held by a transport --------------------------------------------------
    # A stand-in's flush that answers True says its link holds more than it
    # can send soon: the local actors that sent the items take no more turns
    # until the transport calls _release_senders.  Their messages wait in
    # their own inboxes, not in the link: a producer faster than the network
    # is paced by it, as a "block" inbox paces a local one.  Engine.run()
    # returns while actors are held (they are no work it can do): a transport
    # that holds keeps its engine running, as the Ray transport does.

    def _hold_senders(self, stand_in: Context, sender_ids: Iterable[str | None]) -> None:
        """Park the local actors among ``sender_ids`` until ``_release_senders(stand_in)``
        or ``_release_sender(actor, stand_in)``.

        An actor already held for this stand-in, a stand-in, an id that is not
        an actor here (None: Engine.send) and a stopping actor are left alone.
        An actor in the ready queue has the turn it was given, then parks.
        """
        held = stand_in._held_senders
        if held is None:
            held = stand_in._held_senders = {}      # a dict: released in the order held
        registry = self._registry
        for sender_id in sender_ids:
            sender = registry.get(sender_id) if sender_id is not None else None
            if sender is None or sender in held or sender._state is not _RUNNING \
                    or sender._inbox.__class__ is _StandInInbox:
                continue
            held[sender] = None
            waiting_on = sender._waiting_on
            if waiting_on is None:
                waiting_on = sender._waiting_on = {}
            waiting_on[stand_in] = 1
            if not sender._scheduled:
                sender._scheduled = _PARKED

    def _release_senders(self, stand_in: Context) -> None:
        """The transport's link toward ``stand_in`` has room again: the senders
        held for it take turns again (engine thread; for transports)."""
        held = stand_in._held_senders
        if held:
            stand_in._held_senders = None
            for sender in held:
                self._unpark(sender, stand_in)

    def _release_sender(self, ctx: Context, stand_in: Context) -> None:
        """Let ``ctx`` go from the stand-in that holds it, if it does (engine
        thread; for transports): it has messages from the engine behind that
        stand-in to take, and that engine waits for them before it answers,
        so before the link drains; two actors flooding each other across two
        engines, both held, would otherwise wait on each other."""
        held = stand_in._held_senders
        if held and ctx in held:
            del held[ctx]
            self._unpark(ctx, stand_in)

    def _release_waiting(self, ctx: Context) -> list[Any]:
        """A stopping actor's waiting senders go free; returns their messages."""
        waiting = ctx._extra.waiting
        ctx._extra.waiting = None
        items = []
        for item, sender, waiter in waiting:
            items.append(item)
            self._stop_waiting(ctx, sender, waiter)
        return items

    # -- from other threads ---------------------------------------------------
    # A foreign thread waits for the verdict on its message.

    def _post_and_wait(self, target: Context, item: tuple[Any, ...], timeout: float | None) -> None:
        """A send from another thread to a "block" or "fail" inbox: wait for the verdict."""
        if timeout is not None:
            _check_delay("send", "timeout", timeout, allow_zero=True)
        waiter: Future[None] = Future()
        self._call_on_loop(self._offer_from_other_thread, target, item, waiter)
        try:
            waiter.result(timeout)
        except TimeoutError:
            if self._call_on_loop(self._withdraw, target, waiter):
                raise InboxFull(f"the inbox of {target.actor_id!r} stayed full for {timeout} s; "
                                f"the message was not sent") from None

    def _offer_from_other_thread(self, ctx: Context, item: tuple[Any, ...],
                                 waiter: Future[Any]) -> None:
        if ctx._state is not _RUNNING:
            self._post_here(ctx.actor_id, *_unpack(item))
            waiter.set_result(None)
        elif ctx._inbox.has_room():
            self._enqueue(ctx, item)
            waiter.set_result(None)
        else:
            ctx._inbox._policy.full(self, ctx, item, waiter)

    @staticmethod
    def _withdraw(ctx: Context, waiter: Future[Any]) -> bool:
        """Take a timed-out waiter's message back; False if it already went in."""
        for entry in ctx._waiting or ():
            if entry[2] is waiter:
                ctx._waiting.remove(entry)
                return True
        return False


class _Reply:
    """Where the answer to one ask goes: its future, timeout and asker."""
    __slots__ = ("engine", "future", "target_id", "asker_id", "timer", "deferred", "remote_id")

    def __init__(self, engine: Engine, future: AskFuture[Any], target_id: str,
                 asker_id: str | None, deferred: bool) -> None:
        self.engine = engine
        self.future = future
        self.target_id = target_id
        self.asker_id = asker_id
        self.timer: Any = None
        # ctx.ask: complete the future in a loop callback of its own, so done
        # callbacks never run inside another actor's receive.
        self.deferred = deferred
        self.remote_id: str | None = None   # set by Engine._register_reply

    def done(self) -> bool:
        """True once the ask has its answer (or failed, or timed out)."""
        return self.future.done()

    def settle(self, value: Any, exc: BaseException | None) -> None:
        """Complete the ask with ``value`` or ``exc``; any thread."""
        engine = self.engine
        if not engine._owner._is_owned():
            if engine._closed:          # no loop runs callbacks: settled here
                self._settle_closed(value, exc)
            else:
                engine._loop.call_soon_threadsafe(self._settle_here, value, exc)
        elif self.deferred and not self.future.done():
            if not engine._closed:
                engine._loop.call_soon(self._settle_here, value, exc)
            elif exc is None:
                # Closing on this thread (a deinit replying): no callback may
                # run inside it, and close fails the ask; the reply is a dead letter.
                engine._dead_letter(self.asker_id or "(ask)",
                                    Envelope(self.target_id, _SEND, value),
                                    "the engine closed before the reply reached the asker")
        else:
            # Not deferred, or a late reply: no done callback can run, and a
            # callback for it could be left behind by a run() that returns
            # once idle (the ask no longer counts), and so never recorded.
            self._settle_here(value, exc)

    def _settle_closed(self, value: Any, exc: BaseException | None) -> None:
        """Another thread's reply once the engine is closed (or closing): the
        future is settled, and a late reply recorded as a dead letter, without
        touching what close() may still be changing on its thread."""
        try:
            if exc is None:
                self.future.set_result(value)
            else:
                self.future.set_exception(exc)
        except InvalidStateError:       # failed by close, answered or timed out
            if exc is None:
                self.engine._dead_letter_after_close(
                    self.asker_id or "(ask)", Envelope(self.target_id, _SEND, value),
                    "reply came after the ask was answered or timed out")

    def _settle_here(self, value: Any, exc: BaseException | None) -> None:
        # Set, and told by InvalidStateError that it was done already, rather
        # than asked done() first: one pass through the future's lock, not
        # two (3 Python calls less per ask, sys.setprofile count).
        future = self.future
        try:
            if exc is None:
                future.set_result(value)
            else:
                future.set_exception(exc)
        except InvalidStateError:       # answered, timed out or cancelled already
            if exc is None:
                self.engine._dead_letter(
                    self.asker_id or "(ask)", Envelope(self.target_id, _SEND, value),
                    "reply came after the ask was answered or timed out")
        self._finish()          # (ended another way: whatever still counts it goes)

    def unanswered(self) -> None:
        """The target handled the ask and dropped its envelope without a reply."""
        self.settle(None, _unanswered(self.engine, self.target_id))

    def time_out(self, timeout: float) -> None:
        if not self.future.done():
            self.future.set_exception(TimeoutError(
                f"no reply from {self.target_id!r} within {timeout} s"))
            self._finish()

    def _finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        engine = self.engine
        engine._asks.discard(self)
        if self.remote_id is not None:
            engine._transport.replies.pop(self.remote_id, None)  # type: ignore[union-attr]
        engine._check_idle()


def _unanswered(engine: Engine, target_id: str) -> BackstageError:
    """Why an ask whose target dropped its envelope unanswered fails (the
    reply channels' ``unanswered``, which ``_AskedEnvelope`` calls)."""
    if engine._closed:
        return EngineClosed(f"no reply from {target_id!r}: {_CLOSED}")
    return BackstageError(f"{target_id!r} {_UNANSWERED}")


# Why an ask fails when its target dropped the envelope unanswered.
_UNANSWERED = ("handled the ask without replying, and kept no hold of the envelope: "
               "answer with envelope.reply(value), or keep the envelope to reply later")


class _RemoteReply:
    """The reply channel of an ask that came from another engine: for transports.

    ``send_back(reply_id, value, exc)`` carries the answer home, where
    ``Engine._settle_reply`` completes the ask.  The first answer wins; a
    second is a dead letter on ``engine``, the engine of ``target_id``, the
    actor asked.
    """
    __slots__ = ("send_back", "reply_id", "_done", "engine", "target_id")

    def __init__(self, send_back: Callable[[str, Any, BaseException | None], Any],
                 reply_id: str, engine: Engine, target_id: str) -> None:
        self.send_back = send_back
        self.reply_id = reply_id
        self._done = False
        self.engine = engine
        self.target_id = target_id

    def done(self) -> bool:
        return self._done

    def settle(self, value: Any, exc: BaseException | None) -> None:
        if self._done:
            if exc is None:
                self.engine._late_reply(self.target_id, value)
            return
        self._done = True
        self.send_back(self.reply_id, value, exc)

    def unanswered(self) -> None:
        """The target handled the ask and dropped its envelope without a reply."""
        self.settle(None, BackstageError(f"the target {_UNANSWERED}"))


class AskFuture(Future[_R]):
    """The answer to ``ask`` or to a proxied call: a ``concurrent.futures.Future``
    that refuses to deadlock the engine.

    ``result()`` and ``exception()`` wait, from any thread but the engine's
    own (the one running it, or that will run it): there, waiting would block
    the very loop that must deliver the reply, so they raise at once.  In an
    actor, use ``add_done_callback``: the callback runs on the engine thread,
    never during a ``receive``.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine

    def _refuse_to_deadlock(self) -> None:
        # The thread first: from another thread (every result() that may
        # wait) done() and its lock are not needed; 3 Python calls less per
        # cross-thread ask round trip (sys.setprofile count).
        if self._engine._owner._is_owned() and not self.done():
            raise RuntimeError(
                "waiting for an ask on the engine's own thread would block the loop that "
                "delivers the reply: in an actor use future.add_done_callback(fn); "
                "from outside, wait in another thread")

    def result(self, timeout: float | None = None) -> _R:
        self._refuse_to_deadlock()
        return super().result(timeout)

    def cancel(self) -> bool:
        """Give up the ask (``asyncio.wait_for`` does, on its timeout): it then
        no longer counts as work, and a late reply is a dead letter."""
        if not super().cancel():
            return False
        reply = getattr(self, "_ask", None)
        if reply is not None:
            engine = self._engine
            try:
                if engine._owner._is_owned():
                    reply._finish()
                else:
                    engine._loop.call_soon_threadsafe(reply._finish)
            except Exception:   # noqa: BLE001 - the loop is closed: nothing to release
                pass
        return True

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._refuse_to_deadlock()
        return super().exception(timeout)

    def __await__(self) -> Generator[Any, None, _R]:
        """``await future``, in an ``async def receive`` or a coroutine on an asyncio loop."""
        if not self.done():
            self.add_done_callback(_forget_cancelled)
            asyncio = sys.modules.get("asyncio")
            if asyncio is not None and asyncio._get_running_loop() is not None:
                # In an asyncio task: wait through an asyncio future (done
                # once this one is: its outcome is this one's, raised there).
                yield from asyncio.wrap_future(self).__await__()
            else:
                yield self          # the engine's driver resumes the coroutine once done
        return self.result()


# -- method-call proxies ------------------------------------------------------
# A proxied call is an ask whose message is a MethodCall and whose tag is a
# _CallReply: it queues, orders, times out and dead-letters as an ask does
# (a call that cannot be delivered fails its future), and the turn runs the
# method instead of receive (see _Sending._apply_tag).

class MethodCall(NamedTuple):
    """A proxied method call, as it waits in an inbox.

    What a pool's ``hash_key`` sees for a proxied call.  ``method`` is the
    method's name, or the callable given to ``Proxy.call`` when it is not one
    of the class's own methods (called as ``method(actor, *args, **kwargs)``).
    """
    method: str | Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class _CallReply(_Reply):
    """The reply channel of a proxied call; as an item's tag it says "run the method"."""
    __slots__ = ()


# The reply channels whose ask is a proxied method call (``_apply_tag`` runs
# the method, not receive): ours, and a transport's for a call from another
# engine, which it adds (the transport seam).
_CALL_REPLIES: set[type] = {_CallReply}


# Methods a proxy never reaches: the engine's hooks.
_NOT_PROXIED = frozenset({"receive", "deinit"})


class Proxy(Generic[_A]):
    """Calls an actor's methods as messages: ``proxy.method(*args, **kwargs)``.

    Made by ``engine.proxy(id)`` or ``ctx.proxy(id)``.  Each call is queued to
    the actor like a message (in order with the other messages from the same
    sender), runs on the engine thread, and returns an ``AskFuture`` of the
    method's return value; an exception from the method fails that future and
    nothing else.  A call that cannot be delivered fails it with
    ``ActorNotFound``.

    Typing: ``proxy.call(Counter.add, 5)`` is an ``AskFuture[int]`` with its
    arguments checked; ``proxy.add(5)`` is an ``AskFuture[Any]``.  Subclass
    with ``proxy_method`` to have attribute calls typed too.
    """

    def __init__(self, engine: _ProxyCaller, target_id: str, actor_class: type | None,
                 sender_id: str | None, deferred: bool, timeout: float | None) -> None:
        self._engine = engine           # an Engine, or a Cluster for the driver's proxies
        self._target_id = target_id
        self._class = actor_class       # for checking method names, when known
        self._sender_id = sender_id
        self._deferred = deferred
        self._timeout = timeout

    def __repr__(self) -> str:
        kind = self._class.__name__ if self._class is not None else "?"
        return f"<{type(self).__name__} {self._target_id!r} {kind}>"

    def __getattr__(self, name: str) -> Callable[..., AskFuture[Any]]:
        caller = self._caller(name)
        # Kept on the instance: the next proxy.name finds it without
        # __getattr__ (and without checking the name again).
        self.__dict__[name] = caller
        return caller

    def call(self, method: Callable[Concatenate[_A, _P], _R], /,
             *args: _P.args, **kwargs: _P.kwargs) -> AskFuture[_R]:
        """Call ``method(actor, *args, **kwargs)`` on the engine thread; typed.

        ``method`` is one of the class's methods (``Counter.add``: the actor's
        own ``add`` runs, as with ``proxy.add``) or any function of the actor
        (``lambda counter: counter.count``).
        """
        if not callable(method):
            raise TypeError(f"call() needs a method or a function of the actor, not {method!r}")
        name = getattr(method, "__name__", None)
        cls = self._class
        if cls is not None and name and getattr(cls, name, None) is method:
            return self._engine._call(self, MethodCall(name, args, kwargs))
        return self._engine._call(self, MethodCall(method, args, kwargs))

    def _caller(self, name: str) -> Callable[..., AskFuture[Any]]:
        if name.startswith("_") or name in _NOT_PROXIED:
            raise AttributeError(
                f"{name!r} is not reachable through a proxy: only public methods are "
                f"(names that do not start with '_', and not receive or deinit)")
        cls = self._class
        if cls is not None and not callable(getattr(cls, name, None)):
            methods = sorted(n for n in dir(cls) if not n.startswith("_")
                             and n not in _NOT_PROXIED and callable(getattr(cls, n, None)))
            raise AttributeError(f"{cls.__name__} has no method {name!r}; it has: "
                                 f"{', '.join(methods) or 'none'}")
        engine = self._engine

        def caller(*args: Any, **kwargs: Any) -> AskFuture[Any]:
            return engine._call(self, MethodCall(name, args, kwargs))
        caller.__name__ = caller.__qualname__ = name
        return caller


class _ProxyCaller(Protocol):
    """What a Proxy queues its calls through: an Engine, or a Cluster."""

    def _call(self, proxy: Proxy[Any], call: MethodCall, /) -> AskFuture[Any]: ...


class _ProxyMethod(Generic[_P, _R]):
    """A method declared on a Proxy subclass with ``proxy_method``."""

    def __init__(self, method: Callable[Concatenate[Any, _P], _R]) -> None:
        self.name: str = method.__name__

    @overload
    def __get__(self, proxy: None, owner: type) -> _ProxyMethod[_P, _R]: ...
    @overload
    def __get__(self, proxy: Proxy[Any], owner: type) -> Callable[_P, AskFuture[_R]]: ...

    def __get__(self, proxy: Proxy[Any] | None, owner: type) -> Any:
        if proxy is None:
            return self
        return proxy._caller(self.name)


def proxy_method(method: Callable[Concatenate[Any, _P], _R]) -> _ProxyMethod[_P, _R]:
    """Declare a typed proxy method (Pykka's pattern): on a ``Proxy`` subclass,
    ``add = proxy_method(Counter.add)`` makes ``proxy.add(5)`` an ``AskFuture[int]``
    to a type checker, with its arguments checked."""
    if not callable(method) or not hasattr(method, "__name__"):
        raise TypeError(f"proxy_method() needs a method of the actor's class, such as "
                        f"Counter.add, not {method!r}")
    return _ProxyMethod(method)


def _proxied_class(proxy_class: type) -> type | None:
    """The actor class ``C`` of ``class MyProxy(Proxy[C])``, if it says."""
    import typing
    for klass in proxy_class.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is Proxy:
                args = typing.get_args(base)
                if args and isinstance(args[0], type):
                    return args[0]
    return None


class _Asking(_BackPressure):
    """Engine room: request/reply.  Not part of the public API."""

    def ask(self, target_id: str, message: Any, timeout: float | None = 5.0) -> AskFuture[Any]:
        """Send ``message`` and return a future for the reply; any thread.

        The target answers with ``envelope.reply(value)``.  The future fails
        with ``ActorNotFound`` at once if there is no such actor, with
        ``TimeoutError`` after ``timeout`` seconds, and with the exception
        ``receive`` raised if it failed on this message.
        """
        return self._ask(target_id, message, timeout, None, deferred=False)

    def _ask(self, target_id: str, message: Any, timeout: float | None,
             asker_id: str | None, deferred: bool, across: bool = False) -> AskFuture[Any]:
        """``across``: made on the engine thread for an asker elsewhere (a
        cluster's driver), whom nothing here can pause: it waits in line for
        room in a full "block" inbox within its timeout, as another thread's."""
        if type(target_id) is not str:
            raise TypeError(f"ask() needs a str actor id, not {target_id!r}")
        if timeout is not None:
            _check_delay("ask", "timeout", timeout, allow_zero=False)
        if self._closed:
            raise EngineClosed(f"cannot ask {target_id!r}: {_CLOSED}")
        future: AskFuture[Any] = AskFuture(self)  # type: ignore[arg-type]
        reply = _Reply(self, future, target_id, asker_id, deferred)  # type: ignore[arg-type]
        future._ask = reply  # type: ignore[attr-defined]
        if target_id not in self._registry and self._transport is None:
            future.set_exception(ActorNotFound(f"cannot ask {target_id!r}: no actor has that id"))
        elif not self._owner._is_owned():
            self._hand_over((self._ask_here, (reply, message, timeout, True)), None)
        else:
            self._ask_here(reply, message, timeout, across)
        return future

    def _ask_here(self, reply: _Reply, message: Any, timeout: float | None,
                  across: bool = False) -> None:
        """Queue an ask (``across``: made on another thread, which does not wait)."""
        ctx = self._registry.get(reply.target_id) or self._resolve_missing(reply.target_id)
        if ctx is None:
            reply.future.set_exception(
                ActorNotFound(f"cannot ask {reply.target_id!r}: no actor has that id"))
            return
        # From another thread, it may have been cancelled on its way here: then
        # nothing counts it (its message still goes, and a reply is a dead letter).
        if not (across and reply.future.done()):
            self._asks.add(reply)
            if timeout is not None:
                reply.timer = self._loop.call_later(timeout, reply.time_out, timeout)
        item = (reply.asker_id, message, reply)
        try:
            if across and ctx._inbox.__class__ is _BoundedInbox:
                # As another thread's send, but no thread waits: the ask waits
                # in line for room in a full "block" inbox, within its timeout.
                self._offer_from_other_thread(ctx, item, Future())
            else:
                self._enqueue(ctx, item)
        except InboxFull as exc:
            reply._settle_here(None, exc)

    # -- method-call proxies --------------------------------------------------

    @overload
    def proxy(self, id: str, cls: None = None, *,
              timeout: float | None = None) -> Proxy[Any]: ...
    @overload
    def proxy(self, id: str, cls: type[_PX], *, timeout: float | None = None) -> _PX: ...
    @overload
    def proxy(self, id: str, cls: type[_A], *, timeout: float | None = None) -> Proxy[_A]: ...

    def proxy(self, id: str, cls: type | None = None, *,
              timeout: float | None = None) -> Any:
        """A proxy for the actor ``id``: ``proxy.method(...)`` runs that method as
        a message and returns an ``AskFuture`` of its result; any thread.

        ``cls``: the actor's class, to make a proxy before the actor exists and
        to type it (``Proxy[cls]``), or a ``Proxy`` subclass declared with
        ``proxy_method``.  ``timeout``: seconds after which a call's future
        fails with ``TimeoutError`` (default: none; the call ends when the
        method has run, or fails if it cannot be delivered).
        """
        return self._make_proxy(id, cls, timeout, None, False)

    def _make_proxy(self, target_id: str, cls: type | None, timeout: float | None,
                    sender_id: str | None, deferred: bool) -> Any:
        proxy_class, actor_class = _proxy_classes("engine", target_id, cls, timeout)
        actor = self.get_actor(target_id)
        live_class = None if actor is None else _class_behind(actor)
        if actor_class is not None:
            _check_proxied_class(target_id, actor_class, live_class)
        else:
            if actor is None and cls is None and not self._elsewhere(target_id):
                raise ActorNotFound(_no_actor_to_proxy("engine", target_id))
            actor_class = live_class
        return proxy_class(self, target_id, actor_class, sender_id, deferred, timeout)

    def _call(self, proxy: Proxy[Any], call: MethodCall, across: bool = False) -> AskFuture[Any]:
        """Queue ``call`` to the proxy's actor, as an ask; any thread
        (``across``: for a caller elsewhere, a cluster's driver; see _ask)."""
        if self._closed:
            raise EngineClosed(f"cannot call {proxy._target_id!r}: {_CLOSED}")
        future: AskFuture[Any] = AskFuture(self)  # type: ignore[arg-type]
        reply = _CallReply(self, future, proxy._target_id,  # type: ignore[arg-type]
                           proxy._sender_id, proxy._deferred)
        future._ask = reply  # type: ignore[attr-defined]  # what cancel() releases
        if not self._owner._is_owned():
            self._submit(self._ask_here, reply, call, proxy._timeout, True)
        else:
            self._ask_here(reply, call, proxy._timeout, across)
        return future

    def _run_call(self, ctx: Context, call: MethodCall, reply: Any) -> None:
        """Run a proxied call on the actor and settle its future (see Proxy);
        ``reply``: one of the _CALL_REPLIES."""
        actor = ctx._actor
        method = call.method
        try:
            if isinstance(method, str):
                bound = getattr(actor, method, None)
                if not callable(bound):
                    raise AttributeError(f"{ctx.actor_id!r} is a {type(actor).__name__}, "
                                         f"which has no method {method!r}")
                result = bound(*call.args, **call.kwargs)
            else:
                result = method(actor, *call.args, **call.kwargs)
        except Exception as exc:
            log.debug("proxied call %r on %r failed: %r", call, ctx.actor_id, exc)
            reply.settle(None, exc)
            return
        if isinstance(result, types.CoroutineType):
            result.close()          # not run: say so rather than hand back a coroutine
            reply.settle(None, TypeError(
                f"{type(actor).__name__}.{getattr(method, '__name__', method)} is a coroutine "
                f"function: proxies call plain methods only; send the actor a message and "
                f"handle it in an async def receive"))
            return
        reply.settle(result, None)


###############################################################################
# Coroutine handlers, blocking work, stash and become
# An actor whose receive is a coroutine function, work handed to threads,
# messages set aside, and handlers swapped: the ways an actor waits.
###############################################################################

# co_flags bit of a coroutine function (inspect.CO_COROUTINE).  A class is
# studied once, at its first spawn (_study), so later spawns of a plain class
# pay one attribute read: skynet (10k leaves) +0.9 % instructions against
# main without this room, where a call per spawn and a receive descriptor on
# every class cost +3.9 %.  Burst, ping-pong and fan-out: within 0.8 %.
_CO_COROUTINE = 0x80
# Where a studied class keeps what its first spawn learnt: (class, receive,
# is a coroutine function).  Checked against the class, as a subclass inherits it.
_STUDIED = "_backstage_receive_"
# No sleep is this long (nor infinite, nor NaN: see Context.sleep).
_FOREVER = float("inf")
# Said when an async receive on a loop without asyncio awaits an asyncio object.
_NO_ASYNCIO = ("an async receive on the {backend} backend can await ctx.ask(), "
               "ctx.run_in_thread() and ctx.sleep(); to await asyncio objects, make the "
               "engine with Engine(backend='asyncio') or 'uvloop'; it awaited {awaited!r}")


def _asyncio_misuse(exc: BaseException, backend: str) -> TypeError | None:
    """The TypeError to raise for ``exc`` if asyncio raised it because no
    asyncio loop runs (``asyncio.sleep``: RuntimeError "no running event
    loop"; ``asyncio.Event().wait()``: AttributeError on None), in an async
    receive on a loop without asyncio; None for any other exception."""
    asyncio = sys.modules.get("asyncio")
    where = getattr(asyncio, "__file__", None)
    if where is None or asyncio._get_running_loop() is not None:    # type: ignore[union-attr]
        return None
    if not (isinstance(exc, RuntimeError) and str(exc) == "no running event loop"
            or isinstance(exc, AttributeError) and str(exc).startswith("'NoneType' object")):
        return None     # asyncio's own complaint of something else (a Lock not acquired)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None or not tb.tb_frame.f_code.co_filename.startswith(
            os.path.dirname(where) + os.sep):
        return None
    return TypeError(f"an async receive on the {backend} backend has no asyncio loop, and "
                     f"asyncio failed for want of one ({exc!r}); it can await ctx.ask(), "
                     f"ctx.run_in_thread() and ctx.sleep(); to use asyncio, make the engine "
                     f"with Engine(backend='asyncio') or 'uvloop'")


def _is_coroutine_function(fn: Any) -> bool:
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    return code is not None and bool(code.co_flags & _CO_COROUTINE)


_FUNCTION = type(_is_coroutine_function)


def _name_of(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _refuse_async_callback(call: str, callback: Any) -> None:
    """A timer's or watch's callback is called, not awaited: an async def's
    body would never run."""
    if _is_coroutine_function(callback):
        raise TypeError(f"{call}() calls its callback and does not await it, and "
                        f"{_name_of(callback)} is an async def, whose body would never run: "
                        f"pass a plain def, which can send the actor a message for its async "
                        f"receive to await in")


def _study(actor_class: type) -> tuple[type, Any, bool]:
    """What the engine needs to know of an actor class, learnt at its first spawn:
    (the class, its receive function, whether that is a coroutine function).

    A class whose methods mention ``receive`` (``self.receive = handler``)
    gets a ``_ReceiveSlot`` on the class that defines ``receive``, so that the
    assignment is honoured as ``ctx.become`` instead of silently ignored (the
    engine calls the class's function).  Other classes are left alone: a
    Python-level descriptor would cost every spawn a call.
    """
    for klass in actor_class.__mro__:
        if "receive" in vars(klass):
            defined = vars(klass)["receive"]
            if type(defined) is _FUNCTION and _mentions_receive(actor_class):
                try:
                    setattr(klass, "receive", _ReceiveSlot(defined))
                except (AttributeError, TypeError):
                    pass            # a class that refuses new attributes keeps its own
            break
    receive = getattr(actor_class, "receive", None)
    studied = (actor_class, receive, _is_coroutine_function(receive))
    try:
        setattr(actor_class, _STUDIED, studied)
    except (AttributeError, TypeError):
        pass                        # studied again at each spawn
    return studied


def _mentions_receive(actor_class: type) -> bool:
    """Whether code of the class (methods, and functions inside them) names ``receive``."""
    codes = []
    for klass in actor_class.__mro__[:-1]:
        for value in vars(klass).values():
            code = getattr(getattr(value, "__func__", value), "__code__", None)
            if code is not None:
                codes.append(code)
    while codes:
        code = codes.pop()
        if "receive" in code.co_names:
            return True
        codes.extend(c for c in code.co_consts if isinstance(c, type(code)))
    return False


class _ReceiveSlot:
    """An actor class's ``receive``, so that assigning ``self.receive`` means become.

    Reading gives the handler in force (the assigned one, or the method);
    ``self.receive = handler`` calls ``ctx.become(handler)`` and
    ``del self.receive`` calls ``ctx.unbecome()``.  On objects that are not
    actors of an engine it behaves as a plain attribute would.
    """
    __slots__ = ("function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self.function
        assigned = getattr(obj, "__dict__", {}).get("receive")
        return assigned if assigned is not None else self.function.__get__(obj, owner)

    def __set__(self, obj: Any, handler: Any) -> None:
        ctx = _context_of(obj)
        if ctx is not None:
            ctx.become(handler)
        namespace = getattr(obj, "__dict__", None)
        if namespace is not None:
            namespace["receive"] = handler
        elif ctx is None:
            raise AttributeError(f"{type(obj).__name__} has no __dict__ to keep receive in; "
                                 f"in an actor, use ctx.become(handler)")

    def __delete__(self, obj: Any) -> None:
        ctx = _context_of(obj)
        if ctx is not None:
            ctx.unbecome()
        else:
            vars(obj).pop("receive", None)


def _context_of(actor: Any) -> Context | None:
    ctx = getattr(actor, "ctx", None)
    return ctx if isinstance(ctx, Context) and ctx._actor is actor else None


def _item_of(call: str, envelope: Any) -> tuple[Any, Any, Any]:
    """The queued item that delivers ``envelope`` again: same sender, type and ask."""
    if not isinstance(envelope, Envelope):
        raise TypeError(f"{call}() needs the Envelope that receive got, not {envelope!r}; "
                        f"to send a new message use ctx.send(target_id, message)")
    message_type = envelope.message_type
    if message_type is _PUBLISH:
        return (envelope.sender_id, envelope, _PUBLISH)
    reply = getattr(envelope, "_reply", None)
    if reply is not None:
        if isinstance(envelope, _Envelope):
            # The reply channel travels with the item now: the envelope left
            # behind becomes a plain one, so that no finaliser of its class
            # takes it for an ask dropped unanswered when it goes.
            envelope.__class__ = _Envelope
        return (envelope.sender_id, envelope.message, reply)
    if message_type is _TERMINATED:
        return (envelope.sender_id, envelope.message, _TERMINATED)
    return (envelope.sender_id, envelope.message, None)


class _WaitState:
    """The engine's state for coroutine handlers and blocking work, made at first
    use: an engine that never waits keeps 29 attributes, CPython 3.11's inline
    limit (a 30th costs skynet +5.3 % and ping-pong +1 % instructions)."""
    __slots__ = ("suspended", "held_back", "cancelled_tasks", "jobs", "pool", "pool_size")

    def __init__(self, pool_size: int | None) -> None:
        self.suspended = 0                      # coroutines of actors, waiting
        self.held_back = 0                      # of them, put off (no work: see _held_back)
        self.cancelled_tasks: list[Any] = []    # their asyncio tasks, once cancelled
        self.jobs: set[AskFuture[Any]] = set()       # run_in_thread futures not settled yet
        self.pool: Any = None                   # a ThreadPoolExecutor, at the first job
        # ThreadPoolExecutor's own default, said out loud.
        self.pool_size = pool_size or min(32, (os.cpu_count() or 1) + 4)


class _Suspended:
    """One message's coroutine while it waits; it parks its actor until it ends.

    As a key of the actor's ``waiting_on`` it parks the actor the way a send
    waiting for room does, so the turn's after-turn step needs no check of its
    own; it waits on nobody itself (``_waiting_on`` None, for ``_waits_for``).
    """
    __slots__ = ("ctx", "coro", "envelope", "awaiting", "task", "ended", "parked", "failure",
                 "resume")
    _waiting_on = None

    def __init__(self, ctx: Context, coro: Any, envelope: Envelope) -> None:
        self.ctx = ctx
        self.coro = coro
        self.envelope = envelope
        self.awaiting: Future[Any] | None = None     # the engine future it awaits
        self.task: Any = None                   # its asyncio task, on asyncio loops
        self.ended = False                      # returned, raised or cancelled
        self.parked = True                      # its actor waits for it (see _start_task)
        self.failure: BaseException | None = None   # what an eager task's first step raised
        # Its next step, put off while its actor waits on more than it (see _held_back).
        self.resume: Callable[[], None] | None = None


def _new_task(coro: Any, aio: Any) -> Any:
    """An asyncio task for ``coro`` on the loop ``aio``: started at once where
    asyncio can (3.12+: ``eager_start``), else at the loop's next iteration.

    Eager start: an async receive that awaits nothing, asyncio backend, 3.12:
    20k -> 224k messages/s (no loop iteration, no parking per message).
    """
    import asyncio
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=aio, eager_start=True)
    return aio.create_task(coro)


def _opener(gate: Any) -> Callable[[], None]:
    """What opens ``gate``, an asyncio future a held-back coroutine awaits."""
    def open_gate() -> None:
        if not gate.done():
            gate.set_result(None)
    return open_gate


def _cancelled_error() -> BaseException:
    """``asyncio.CancelledError``, what a cancelled coroutine expects (asyncio is
    imported here, at the first cancel, not at import)."""
    import asyncio
    return asyncio.CancelledError()


class _Waiting(_Asking):
    """Engine room: coroutine handlers, blocking work, stash and become.  Not part
    of the public API."""

    _waits: _WaitState | None = None    # an instance attribute from the first use
    backend: str                        # set by Engine.__init__

    def _wait_state(self) -> _WaitState:
        if self._waits is None:
            self._waits = _WaitState(None)
        return self._waits

    # -- coroutine handlers ---------------------------------------------------
    # Each message's coroutine runs until it first awaits, inside the turn; if
    # it awaits, the actor parks until it ends.  The engine steps it (one step
    # per wake-up, as asyncio's Task does); on asyncio loops an asyncio task
    # does, so that asyncio.timeout, current_task and the rest work.

    def _receiver(self, ctx: Context, actor_class: type) -> Any:
        """``ctx._receive`` for ``actor_class``: its function, or a coroutine driver.

        ``_new_instance`` reads a studied plain class's function itself (a call
        less per spawn); this is the rest: a first spawn, or an async receive.
        """
        studied = getattr(actor_class, _STUDIED, None)
        if studied is None or studied[0] is not actor_class:
            studied = _study(actor_class)
        if studied[2]:
            return self._coroutine_receiver(ctx, studied[1])
        return studied[1]

    def _coroutine_receiver(self, ctx: Context, make: Callable[[Any, Envelope], Any]
                            ) -> Callable[[Any, Envelope], None]:
        aio = getattr(self._loop, "aio", None)       # an asyncio or uvloop loop
        if aio is not None:
            def receive(actor: Any, envelope: Envelope) -> None:
                self._start_task(ctx, make(actor, envelope), envelope, aio)
            return receive

        def drive(actor: Any, envelope: Envelope) -> None:
            # Runs until the first await, inside the turn: an exception before
            # it propagates into the turn, so the supervisor hears of it
            # exactly as from a plain receive.
            coro = make(actor, envelope)
            try:
                awaited = coro.send(None)
            except StopIteration:
                return                  # awaited nothing: no more cost than this
            except (RuntimeError, AttributeError) as exc:
                misuse = _asyncio_misuse(exc, self.backend)
                if misuse is None:
                    raise
                raise misuse from exc
            suspended = _Suspended(ctx, coro, envelope)
            self._park_for(ctx, suspended)
            self._wait_for(suspended, awaited)
        return drive

    def _start_task(self, ctx: Context, coro: Any, envelope: Envelope, aio: Any) -> None:
        """An async receive on an asyncio loop: the coroutine runs in an asyncio task.

        From Python 3.12 the task starts eagerly, so its first step runs here,
        inside the turn, and a coroutine that awaits nothing costs no loop
        iteration and no parking.
        """
        suspended = _Suspended(ctx, coro, envelope)
        suspended.parked = False
        suspended.task = _new_task(self._in_task(suspended), aio)
        if suspended.task.done():
            if suspended.failure is not None:
                raise suspended.failure     # to the turn: the supervisor decides
            return
        suspended.parked = True
        self._park_for(ctx, suspended)

    async def _in_task(self, suspended: _Suspended) -> None:
        """The asyncio task of one message: awaits its coroutine, then ends it here.

        Ending it here rather than in a done callback saves one of three loop
        iterations per message (3.11, a handler that awaits nothing: 4.4k ->
        5.7k messages/s).
        """
        failure: BaseException | None = None
        try:
            try:
                awaited = suspended.coro.send(None)     # as `await` begins
            except StopIteration:
                pass            # awaited nothing: no step-by-step driver made
            else:
                await self._gated(suspended, awaited)
        except Exception as exc:
            failure = exc
        except BaseException as exc:    # CancelledError, KeyboardInterrupt, SystemExit
            if suspended.ended:
                raise                   # cancelled by its actor's stop: already ended
            if not isinstance(exc, _cancelled_error().__class__):
                self._coroutine_ended(suspended, None)
                raise
            failure = exc               # cancelled by someone else: a failure
        if not suspended.parked:
            suspended.failure = failure     # it ended in its first, eager step
        elif not suspended.ended:
            self._coroutine_ended(suspended, failure)

    @types.coroutine
    def _gated(self, suspended: _Suspended, awaited: Any) -> Generator[Any, Any, Any]:
        """The rest of ``await suspended.coro`` from its first await (``awaited``),
        step by step as ``await`` does it, except that a step is put off while
        the actor waits on more than its coroutine (see ``_held_back``): an
        asyncio task's steps cannot be held otherwise.  A cancel (or any
        BaseException) is never put off.  (Made only for a coroutine that
        awaits: made for every message, a burst to an async receive that
        awaits nothing lost 17 % on 3.11.  Interleaved A/B against the code
        before holds: that burst 0.98x on 3.11 and 0.82-0.90x on 3.12, where
        tasks start eagerly and the first step taken by hand is what costs;
        a receive awaiting asyncio.sleep(0), 0.93x and 0.94x.  The price of
        holding a coroutine whatever the engine spawns later.)"""
        coro = suspended.coro
        try:
            while True:
                value: Any = None
                exc: BaseException | None = None
                try:
                    value = yield awaited
                except GeneratorExit:
                    raise
                except BaseException as thrown:     # a cancel, or what the awaited raised
                    exc = thrown
                if (exc is None or isinstance(exc, Exception)) and self._held_back(suspended):
                    gate = self._loop.aio.create_future()     # type: ignore[attr-defined]
                    self._hold_back(suspended, _opener(gate))
                    try:
                        yield from gate
                    except GeneratorExit:
                        raise
                    except BaseException as thrown:     # cancelled while held back
                        self._drop_hold(suspended)
                        exc = thrown
                try:
                    awaited = coro.send(value) if exc is None else coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
        except GeneratorExit:           # the task is closed: so is the coroutine
            self._drop_hold(suspended)
            coro.close()
            raise

    def _held_back(self, suspended: _Suspended) -> bool:
        """Whether ``suspended``'s next step waits: its actor waits on more than
        its coroutine (sends of its wait for room in a full "block" inbox, or a
        full link holds it), so the coroutine, which keeps its actor's turns,
        would go on sending past that back-pressure.  ``_unpark`` resumes it."""
        waiting_on = suspended.ctx._waiting_on
        return waiting_on is not None and len(waiting_on) > 1

    def _hold_back(self, suspended: _Suspended, resume: Callable[[], None]) -> None:
        """Put off ``suspended``'s next step until ``_unpark`` calls ``resume``.
        Meanwhile it is no work the engine can do: a run may return."""
        suspended.resume = resume
        self._wait_state().held_back += 1
        self._check_idle()

    def _drop_hold(self, suspended: _Suspended) -> None:
        """``suspended`` is cancelled or ends while held back: no step to resume."""
        if suspended.resume is not None:
            suspended.resume = None
            self._wait_state().held_back -= 1

    def _go_on(self, suspended: _Suspended) -> None:
        """``suspended``'s actor waits on nothing else now: its next step runs."""
        resume = suspended.resume
        if resume is not None:
            self._drop_hold(suspended)
            resume()

    def _park_for(self, ctx: Context, suspended: _Suspended) -> None:
        """Park ``ctx`` until ``suspended`` ends; the rest of its batch waits in its inbox."""
        self._pause_turn(ctx)
        if ctx._waiting_on is None:
            ctx._waiting_on = {}
        ctx._waiting_on[suspended] = 1
        if not ctx._scheduled:
            ctx._scheduled = _PARKED
        ctx._suspended = suspended
        self._wait_state().suspended += 1

    def _wait_for(self, suspended: _Suspended, awaited: Any) -> None:
        """Resume ``suspended`` when what it awaits is done (never inside this call)."""
        if isinstance(awaited, Future):
            suspended.awaiting = awaited
            awaited.add_done_callback(lambda _: self._wake(suspended, None))
        elif awaited is None:           # a bare yield (asyncio.sleep(0)): just go on
            self._loop.call_soon(self._step, suspended, None)
        else:
            self._loop.call_soon(self._step, suspended, TypeError(
                _NO_ASYNCIO.format(backend=self.backend, awaited=awaited)))

    def _wake(self, suspended: _Suspended, exc: BaseException | None) -> None:
        if self._owner._is_owned():
            self._loop.call_soon(self._step, suspended, exc)
        elif not self._closed:
            try:
                self._loop.call_soon_threadsafe(self._step, suspended, exc)
            except Exception:
                pass                    # the loop closed meanwhile: it was cancelled

    def _step(self, suspended: _Suspended, exc: BaseException | None) -> None:
        """One step of a suspended coroutine: send its await's outcome in."""
        if suspended.ended:
            return
        if self._held_back(suspended):
            self._hold_back(suspended, lambda: self._loop.call_soon(self._step, suspended, exc))
            return
        suspended.awaiting = None
        coro = suspended.coro
        try:
            awaited = coro.send(None) if exc is None else coro.throw(exc)
        except StopIteration:
            return self._coroutine_ended(suspended, None)
        except Exception as failure:
            misuse = _asyncio_misuse(failure, self.backend)
            if misuse is not None:
                misuse.__cause__ = failure
                failure = misuse
            return self._coroutine_ended(suspended, failure)
        except BaseException:
            self._coroutine_ended(suspended, None)
            raise
        if suspended.ended:             # its actor stopped during this very step
            coro.close()
            return
        self._wait_for(suspended, awaited)

    def _coroutine_ended(self, suspended: _Suspended, failure: BaseException | None) -> None:
        """The coroutine returned or raised: tell the supervisor, unpark the actor."""
        suspended.ended = True
        ctx = suspended.ctx
        ctx._suspended = None
        self._wait_state().suspended -= 1
        if failure is not None:
            self._handle_failure(ctx, failure, suspended.envelope, None)
        self._unpark(ctx, suspended)
        self._check_idle()

    def _cancel_coroutine(self, ctx: Context, reason: str) -> None:
        """Cancel ``ctx``'s suspended coroutine now, as it stops or restarts:
        ``asyncio.CancelledError`` at its await (its ``finally`` blocks run
        here), and its message is a dead letter."""
        suspended = ctx._suspended
        if suspended is None or suspended.ended:
            return
        suspended.ended = True
        ctx._suspended = None
        self._wait_state().suspended -= 1
        self._drop_hold(suspended)
        if ctx._waiting_on:
            ctx._waiting_on.pop(suspended, None)
        coro = suspended.coro
        cancelled = _cancelled_error()
        try:
            if getattr(coro, "cr_running", False):
                raise StopIteration     # stopped from its own step: _step closes it
            coro.throw(cancelled)
        except (StopIteration, type(cancelled)):
            pass
        except Exception:
            log.exception("the coroutine of actor %r failed while it was cancelled",
                          ctx.actor_id)
        else:
            coro.close()                # it awaited again, while cancelled: end it
        if suspended.awaiting is not None:
            suspended.awaiting.cancel()     # an ask awaited: see _forget_cancelled
        if suspended.task is not None:
            suspended.task.cancel()
            self._wait_state().cancelled_tasks.append(suspended.task)
        self._dead_letter(ctx.actor_id, suspended.envelope,
                          f"actor stopped while handling it ({reason})")
        self._unpark(ctx, suspended)    # a restart: the new instance takes the inbox on

    def _end_cancelled_tasks(self) -> None:
        """Let the asyncio tasks of cancelled coroutines finish before an owned loop closes."""
        waits = self._waits
        if waits is None:
            return
        tasks = [task for task in waits.cancelled_tasks if not task.done()]
        waits.cancelled_tasks.clear()
        aio = getattr(self._loop, "aio", None)
        if tasks and aio is not None and not aio.is_running() and not aio.is_closed():
            import asyncio
            aio.run_until_complete(asyncio.wait(tasks))

    def _forget_ask(self, future: Future[Any]) -> None:
        """An ask whose future was cancelled: nobody waits for it, so it is no
        longer work for ``run()`` (a late reply is a dead letter)."""
        for reply in [reply for reply in self._asks if reply.future is future]:
            reply._finish()

    def _sleep(self, seconds: float) -> AskFuture[None]:
        future: AskFuture[None] = AskFuture(self)  # type: ignore[arg-type]
        handle = self._loop.call_later(seconds, _settle, future, None, None)
        future.add_done_callback(lambda done: done.cancelled() and handle.cancel())
        return future

    # -- blocking work --------------------------------------------------------
    # ctx.run_in_thread: the engine's bounded ThreadPoolExecutor runs the
    # function; its outcome comes back through _submit, so the future is
    # settled (and its callbacks run) on the engine thread.

    def _run_in_thread_here(self, fn: Callable[..., Any], args: tuple[Any, ...],
                            kwargs: dict[str, Any]) -> AskFuture[Any]:
        if self._closed:
            raise EngineClosed(f"cannot run {fn!r} in a thread: {_CLOSED}")
        waits = self._wait_state()
        if waits.pool is None:
            from concurrent.futures import ThreadPoolExecutor
            waits.pool = ThreadPoolExecutor(waits.pool_size,
                                            thread_name_prefix="backstage-worker")
        future: AskFuture[Any] = AskFuture(self)  # type: ignore[arg-type]
        job = waits.pool.submit(fn, *args, **kwargs)
        waits.jobs.add(future)
        job.add_done_callback(lambda job: self._job_done(future, job))
        future.add_done_callback(lambda done: done.cancelled() and job.cancel())
        return future

    def _job_done(self, future: AskFuture[Any], job: Future[Any]) -> None:
        # On the worker thread (or the one that cancelled the job).
        if not self._closed:
            try:
                self._follow_up(self._settle_job, future, job)
            except EngineClosed:
                pass                    # closed meanwhile: _close failed the future

    def _settle_job(self, future: AskFuture[Any], job: Future[Any]) -> None:
        self._wait_state().jobs.discard(future)
        if not future.done():
            if job.cancelled():
                future.cancel()
            else:
                exc = job.exception()
                _settle(future, job.result() if exc is None else None, exc)
        self._check_idle()

    def _end_jobs(self) -> None:
        """At close: fail the futures of unfinished jobs, let the pool's threads go."""
        waits = self._waits
        if waits is None:
            return
        for future in list(waits.jobs):
            _settle(future, None, EngineClosed(
                f"the job did not finish before the engine closed; {_CLOSED}"))
        waits.jobs.clear()
        if waits.pool is not None:
            waits.pool.shutdown(wait=False, cancel_futures=True)

    # -- stash and become -----------------------------------------------------
    # Stashed items go back in front of the inbox; a new handler replaces
    # ctx._receive.  Both cut the running turn short (_pause_turn), so the
    # rest of its batch meets them.

    def _unstash_all_here(self, ctx: Context) -> None:
        stash = ctx._stash
        if not stash or ctx._state is not _RUNNING:
            return
        ctx._stash = None
        self._pause_turn(ctx)           # the rest of this turn's batch goes back first
        inbox, head = ctx._inbox, ctx._head
        if len(inbox) > head and inbox[head].__class__ is not tuple and inbox.__class__ is list:
            # A bare message now first in line would take the sender of the
            # last stashed plain send: it gets its own back, as a tuple.
            inbox[head] = (ctx._head_sender, inbox[head], None)
        if ctx._tail_sender is not _NO_TAIL:
            ctx._tail_sender = _MIXED       # the stash may end the inbox now
        inbox[head:head] = stash
        if not ctx._scheduled:
            self._schedule(ctx)

    def _forward_here(self, forwarder: Context, target_id: str, item: tuple[Any, ...]) -> None:
        """``ctx.forward`` on the engine thread: the item as its sender queued it,
        but when the target's full "block" inbox makes a sender wait, the one
        that waits is the forwarder (the original sender may be far away)."""
        target = self._registry.get(target_id)
        inbox = target._inbox if target is not None else None
        if target is not None and _is_block(inbox) and not target._inbox.has_room():
            self._wait_for_room(target, item, None, forwarder)
            return
        self._post_here(target_id, *item)
        if inbox is None:                   # the transport may have made a stand-in
            target = self._registry.get(target_id)
            inbox = target._inbox if target is not None else None
        if inbox.__class__ is _StandInInbox and item[0] != forwarder.actor_id:
            # A full link holds the forwarder too (see _turn_stand_in).
            if inbox._forwarders is None:
                inbox._forwarders = set()
            inbox._forwarders.add(forwarder.actor_id)

    def _become_here(self, ctx: Context, handler: Callable[[Envelope], Any] | None) -> None:
        receive: Any
        if handler is None:
            receive = self._receiver(ctx, type(ctx._actor))
            getattr(ctx._actor, "__dict__", {}).pop("receive", None)
        else:
            def call(actor: Any, envelope: Envelope) -> Any:
                return handler(envelope)
            receive = (self._coroutine_receiver(ctx, call) if _is_coroutine_function(handler)
                       else call)
        ctx._receive = receive
        self._pause_turn(ctx)           # the rest of this turn's batch meets the new handler


def _forget_cancelled(future: Future[Any]) -> None:
    """Done callback of an awaited AskFuture: once cancelled (its coroutine was,
    or asyncio cancelled the await), its ask stops counting as work."""
    if future.cancelled() and isinstance(future, AskFuture):
        engine = future._engine
        if engine is None:
            return                      # a cluster driver's: no engine counts it
        if engine._owner._is_owned():
            engine._forget_ask(future)
        elif not engine._closed:
            try:
                engine._follow_up(engine._forget_ask, future)
            except EngineClosed:
                pass                    # closed meanwhile: nothing counts it


def _settle(future: Future[Any], value: Any, exc: BaseException | None) -> None:
    if not future.done():
        if exc is None:
            future.set_result(value)
        else:
            future.set_exception(exc)


###############################################################################
# Publish/subscribe
# Topics per publisher: one envelope per publication, shared by every
# subscriber.
###############################################################################

class _PubSub(_Waiting):
    """Engine room: topics.  Not part of the public API."""

    def _publish(self, ctx: Context, topic: str, message: Any) -> None:
        if not self._owner._is_owned():
            # Queued behind this thread's sends, as they are: a publication
            # never overtakes a send the same thread made before it.
            if self._closed:
                raise EngineClosed(f"cannot publish: {_CLOSED}")
            return self._submit(self._publish_here, ctx, topic, message)
        self._publish_here(ctx, topic, message)

    def _publish_here(self, ctx: Context, topic: str, message: Any) -> None:
        extra = ctx._extra
        if extra is None or not extra.subscribers:
            return  # no subscriber: delivered to nobody, as in every pub/sub system
        subscribed = extra.subscribers.get(topic)
        if not subscribed:
            return
        # One envelope for every subscriber, made here: a delivery then
        # allocates nothing; fan-out 11.8 against 5.9 M deliveries/s.
        item = (ctx.actor_id, _publication(ctx.actor_id, message, topic), _PUBLISH)
        for sub in subscribed.values():
            try:
                sub._inbox.append(item)
            except InboxFull as exc:
                # Its copy is a dead letter; the other subscribers get theirs.
                self._dead_letter(sub.actor_id, item[1], f"inbox full: {exc}")
                continue
            if not sub._scheduled:
                self._schedule(sub)

    def _subscribe(self, ctx: Context, target_id: str, topic: str) -> None:
        if type(target_id) is not str or type(topic) is not str:
            raise TypeError("subscribing needs a str actor id and a str topic, "
                            f"got {target_id!r} and {topic!r}")
        self._call_on_loop(self._subscribe_here, ctx, target_id, topic)

    def _subscribe_here(self, ctx: Context, target_id: str, topic: str) -> None:
        publisher = self._registry.get(target_id) or self._resolve_missing(target_id)
        if publisher is not None and publisher._inbox.__class__ is _StandInInbox:
            # A remote publisher: the subscription travels to it (transport seam),
            # and the stand-in keeps its subscribers, so that a lost engine's
            # publisher drops them as a local one does when it stops.
            if ctx._subscriptions is None:
                ctx._subscriptions = set()
            ctx._subscriptions.add((target_id, topic))
            if publisher._subscribers is None:
                publisher._subscribers = {}
            publisher._subscribers.setdefault(topic, {})[ctx.actor_id] = ctx
            return self._enqueue(publisher, (ctx.actor_id, topic, _SUBSCRIBE))
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
        if type(target_id) is not str or type(topic) is not str:
            raise TypeError("unsubscribing needs a str actor id and a str topic, "
                            f"got {target_id!r} and {topic!r}")
        self._call_on_loop(self._unsubscribe_here, ctx, target_id, topic)

    def _unsubscribe_here(self, ctx: Context, target_id: str, topic: str) -> None:
        if ctx._subscriptions:
            ctx._subscriptions.discard((target_id, topic))
        publisher = self._registry.get(target_id)
        if publisher is not None and publisher._inbox.__class__ is _StandInInbox:
            if publisher._state is _RUNNING:
                self._enqueue(publisher, (ctx.actor_id, topic, _UNSUBSCRIBE))
        if publisher is not None and publisher._subscribers:
            subscribed = publisher._subscribers.get(topic)
            if subscribed and subscribed.get(ctx.actor_id) is ctx:
                del subscribed[ctx.actor_id]
                if not subscribed:
                    del publisher._subscribers[topic]

    def _drop_subscriptions(self, ctx: Context) -> None:
        """A stopping actor's subscriptions, both ways: it follows no one, and no
        one follows it."""
        extra = ctx._extra
        if not (extra.subscriptions or extra.subscribers):
            return
        for target_id, topic in list(extra.subscriptions or ()):
            self._unsubscribe_here(ctx, target_id, topic)
        for topic, subscribed in (extra.subscribers or {}).items():
            for sub in subscribed.values():
                sub._extra.subscriptions.discard((ctx.actor_id, topic))
                if sub._inbox.__class__ is _StandInInbox and sub._state is _RUNNING:
                    # A subscriber on another engine: told there (transport seam).
                    self._enqueue(sub, (ctx.actor_id, topic, _DROPPED))
        extra.subscribers = None


###############################################################################
# Dead letters
# Every message that cannot be delivered: recorded, published, logged, and
# its ask failed.
###############################################################################

# Ids whose first dead letter was logged (the later ones are counted); past
# this many the counts are logged and forgotten, so a program that sends to
# ever new ids does not grow the memory without bound.
_DEAD_LETTER_LOG_IDS = 1000


class _DeadLetters(_PubSub):
    """Engine room: dead letters.  Not part of the public API."""

    def _dead_letter_all(self, target_id: str, items: list[Any], reason: str) -> None:
        """Each queued item a dead letter (engine commands are dropped)."""
        for item in items:
            sender_id, message, tag = _unpack(item)
            if tag is not _COMMAND and not _is_remote_op(tag):
                self._dead_letter(target_id, _item_envelope(sender_id, message, tag), reason)

    def _dead_letter_after_close(self, target_id: str, envelope: Envelope,
                                 reason: str) -> None:
        """A dead letter another thread makes once the engine is closed: kept and
        logged only (its subscribers stopped with the engine, and close() may
        still be at work on its own thread)."""
        record = DeadLetter(target_id, envelope, reason, time.time())
        with self._lock:                # after close() is done, if it is not yet
            self.dead_letter_count += 1
            self.dead_letters.append(record)
        log.info("dead letter for %r (%s): %s", target_id, reason, _Described(envelope),
                 extra={"actor_id": target_id})

    def _late_reply(self, replier_id: str, value: Any) -> None:
        """A second reply to an ask from another engine, from any thread: a dead
        letter (a transport's _RemoteReply)."""
        envelope = Envelope(replier_id, _SEND, value)
        reason = "reply came after the ask was answered"
        if self._owner._is_owned():
            self._dead_letter("(ask)", envelope, reason)
            return
        with self._lock:                # close() holds it to its end
            if self._closed:
                self._dead_letter_after_close("(ask)", envelope, reason)
            else:
                self._loop.call_soon_threadsafe(self._dead_letter, "(ask)", envelope, reason)

    def _dead_letter(self, target_id: str, envelope: Envelope, reason: str) -> None:
        """Record an undeliverable message, tell its subscribers, fail its ask."""
        self.dead_letter_count += 1
        record = DeadLetter(target_id, envelope, reason, time.time())
        self.dead_letters.append(record)
        if self._inspector is not None:
            self._inspector.dead_letter(record)
        reply = getattr(envelope, "_reply", None)
        if reply is not None and not reply.done():
            reply.settle(None, ActorNotFound(
                f"{target_id!r} did not answer the ask: {reason}"))
        notice = None
        for sub in self._dead_letter_subscribers.values():
            # Straight into the inbox: a dead letter about delivering a dead
            # letter is never made (a full subscriber simply misses it).
            inbox = sub._inbox
            if sub._state is _RUNNING and (inbox.__class__ is list or inbox.has_room()):
                if notice is None:
                    notice = (None, _publication(None, record, DEAD_LETTER_TOPIC), _PUBLISH)
                list.append(inbox, notice)
                if not sub._scheduled:
                    self._schedule(sub)
        logged = self._guards.dead_letters_logged
        count = logged.get(target_id)
        if count is not None:
            logged[target_id] = count + 1
            return
        if len(logged) >= _DEAD_LETTER_LOG_IDS:
            self._log_dead_letter_counts()
        logged[target_id] = 0
        # A send to an id nobody has (a typo?) is a WARNING, shown by default;
        # the others (a stopped actor, a full inbox) are INFO.
        log.log(logging.WARNING if reason == "no such actor" else logging.INFO,
                "dead letter for %r (%s): %s; further dead letters to it are counted, "
                "not logged", target_id, reason, _Described(envelope),
                extra={"actor_id": target_id})

    def _log_dead_letter_counts(self) -> None:
        """The dead letters counted rather than logged, as one line; then forget them."""
        logged = self._guards.dead_letters_logged
        counted = sorted(((n, i) for i, n in logged.items() if n), reverse=True)
        if counted:
            top = ", ".join(f"{i!r}: {n}" for n, i in counted[:10])
            log.info("%d dead letters counted rather than logged, to %d ids (%s%s)",
                     sum(n for n, _ in counted), len(counted), top,
                     ", ..." if len(counted) > 10 else "")
        logged.clear()


###############################################################################
# Lifecycle and supervision
# Spawning, stopping, failing and restarting actors, death watch and watched
# files; then the Engine class, which holds the state and runs the loop.
###############################################################################

class Directive(enum.Enum):
    """What a supervisor does with a child whose ``receive`` raised."""
    RESUME = "resume"        # keep the instance and its state; next message
    RESTART = "restart"      # a new instance under the same id and inbox
    STOP = "stop"            # stop the child; its queued messages are dead letters
    ESCALATE = "escalate"    # the supervisor fails with the child's exception


class SupervisorStrategy:
    """How a parent treats its failing children.

    Declare it on the parent class: ``supervisor = OneForOne(max_restarts=3,
    within_s=5)``; for top-level actors pass ``Engine(supervisor=...)``.
    ``decider(exc)`` returns a ``Directive`` (default: RESTART).  A child
    restarted more than ``max_restarts`` times within ``within_s`` seconds
    stops instead, and the failure escalates to the parent.
    """

    def __init__(self, max_restarts: int = 3, within_s: float = 5.0,
                 decider: Callable[[BaseException], Directive] | None = None) -> None:
        name = type(self).__name__
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) \
                or max_restarts < 0:
            raise ValueError(f"{name}() needs max_restarts, an int of 0 or more, "
                             f"got {max_restarts!r}")
        _check_delay(name, "within_s", within_s, allow_zero=False)
        if decider is not None and not callable(decider):
            raise TypeError(f"{name}() needs a callable decider(exc) -> Directive, "
                            f"not {decider!r}")
        self.max_restarts = max_restarts
        self.within_s = within_s
        self.decider = decider

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(max_restarts={self.max_restarts}, "
                f"within_s={self.within_s}, decider={self.decider!r})")

    def decide(self, exc: BaseException) -> Directive:
        """The directive for ``exc``; a decider that fails or answers nonsense escalates."""
        if self.decider is None:
            return Directive.RESTART
        try:
            directive = self.decider(exc)
        except Exception:
            log.exception("the decider of %r failed; escalating", self)
            return Directive.ESCALATE
        if not isinstance(directive, Directive):
            log.error("the decider of %r returned %r, not a Directive; escalating",
                      self, directive)
            return Directive.ESCALATE
        return directive

    def to_restart(self, failed: Context, siblings: list[Context]) -> list[Context]:
        """Which actors restart when ``failed`` does (``siblings`` in spawn order)."""
        return [failed]


class OneForOne(SupervisorStrategy):
    """Restart only the child that failed."""


class AllForOne(SupervisorStrategy):
    """Restart every child of the supervisor when one fails."""

    def to_restart(self, failed: Context, siblings: list[Context]) -> list[Context]:
        return list(siblings)


class RestForOne(SupervisorStrategy):
    """Restart the failed child and those spawned after it, in spawn order."""

    def to_restart(self, failed: Context, siblings: list[Context]) -> list[Context]:
        return siblings[siblings.index(failed):] if failed in siblings else [failed]


# Children restart (three times in five seconds, then escalate); top-level
# actors log and go on (what a program without supervision expects).
DEFAULT_CHILD_STRATEGY = OneForOne()
DEFAULT_ROOT_STRATEGY = OneForOne(decider=lambda exc: Directive.RESUME)


class _Lifecycle(_DeadLetters):
    """Engine room: actors' lives.  Not part of the public API."""

    # Engine(raise_failures=True) only: the run's first failure, which run()
    # raises.  A class attribute otherwise, so a default engine keeps one
    # attribute less (see Engine.__init__ on the inline limit).
    _failures: list[BaseException] | None = None

    # -- spawning -------------------------------------------------------------
    # A new actor: its Context, its place in the registry and its parent.

    def spawn_actor(self, actor_class: type[_A], /, id: str, *args: Any,
                    capacity: int = DEFAULT_CAPACITY, overflow: Overflow = "grow",
                    **kwargs: Any) -> _A:
        """Create an actor of ``actor_class`` under ``id`` and return the instance.

        ``actor_class(ctx, *args, **kwargs)`` runs at once, on the engine's
        thread (a call from another thread waits for it); a supervisor that
        restarts the actor makes the new instance with the same arguments.
        ``capacity`` and ``overflow`` are the engine's, never the
        constructor's.  If ``id`` is taken, the actor already there is
        returned and nothing is created.  An exception from ``__init__``
        propagates, and no actor is left registered.

        ``capacity`` bounds the inbox; ``overflow`` says what a send to a full
        inbox does: "grow" (the default: capacity doubles, rounded to a power
        of two), "block" (the sender waits), "drop" (the new message is a dead
        letter), "drop_oldest" (the oldest queued message is a dead letter and
        the new one is queued) or "fail" (``InboxFull`` at the send).
        """
        actor: _A = self._spawn(actor_class, id, capacity, overflow, None, args, kwargs)
        return actor

    def spawn_pool(self, actor_class: type[_A], /, id: str, size: int, *args: Any,
                   routing: Routing = "round_robin",
                   hash_key: Callable[[Any], Hashable] | None = None,
                   capacity: int = DEFAULT_CAPACITY, overflow: Overflow = "grow",
                   supervisor: SupervisorStrategy | None = None, **kwargs: Any) -> Pool[_A]:
        """A pool: a router under ``id`` and ``size`` routees
        ``actor_class(ctx, *args, **kwargs)`` under ``id/0``, ``id/1``, ...; any thread.

        A send, ask or proxy call to ``id`` goes to one routee, by ``routing``:
        "round_robin", "least_loaded" (shortest inbox, counting the messages
        that wait for room in a full "block" one), "broadcast" (every routee;
        an ask answers with the list of their answers) or "consistent_hash"
        (by ``hash_key(message)``).  ``capacity`` and
        ``overflow`` are each routee's; ``supervisor`` treats failing routees
        (default ``OneForOne()``).  Returns the ``Pool``; an id already taken
        returns the actor there.
        """
        pool: Pool[_A] = self._spawn_pool(actor_class, id, size, args, kwargs, routing,
                                          hash_key, capacity, overflow, supervisor, None)
        return pool

    def _spawn_pool(self, actor_class: type, pool_id: str, size: int, args: tuple[Any, ...],
                    kwargs: dict[str, Any], routing: str, hash_key: Any, capacity: int,
                    overflow: str, supervisor: Any, parent: Context | None,
                    routee_ids: list[str] | None = None) -> Any:
        """``routee_ids``: route to these actors, made elsewhere (a cluster's
        spread pool), instead of making children (see Pool)."""
        _check_pool_args(size, routing, hash_key, supervisor)
        _check_spawn_args(actor_class, pool_id, capacity, overflow, "spawn_pool")
        # By name: _warn_unused_spawn compares a later spawn's with these.
        return self._spawn(Pool, pool_id, DEFAULT_CAPACITY, "grow", parent, (), dict(
            routee_class=actor_class, size=size, args=args, kwargs=kwargs, routing=routing,
            hash_key=hash_key, capacity=capacity, overflow=overflow, supervisor=supervisor,
            routee_ids=routee_ids))

    def _spawn(self, actor_class: type, actor_id: str, capacity: int, overflow: str,
               parent: Context | None, args: tuple[Any, ...] = (),
               kwargs: dict[str, Any] | None = None) -> Any:
        _check_spawn_args(actor_class, actor_id, capacity, overflow)
        if self._closed:
            raise EngineClosed(f"cannot spawn {actor_id!r}: {_CLOSED}")
        if self._owner._is_owned():
            # _call_on_loop's first case written out, and the capacity
            # rounded in place: 376k -> 397k spawns/s.
            return self._spawn_here(actor_class, actor_id, capacity, overflow, parent,
                                    args, kwargs)
        return self._call_on_loop(self._spawn_here, actor_class, actor_id, capacity,
                                  overflow, parent, args, kwargs)

    def _spawn_here(self, actor_class: type, actor_id: str, capacity: int, overflow: str,
                    parent: Context | None, args: tuple[Any, ...] = (),
                    kwargs: dict[str, Any] | None = None) -> Any:
        existing = self._registry.get(actor_id)
        if existing is not None:
            if existing._inbox.__class__ is _StandInInbox:
                raise ValueError(
                    f"cannot spawn {actor_id!r} here: this engine sends {actor_id!r} to "
                    f"another engine of the cluster, where it is placed; spawn it from the "
                    f"driver with cluster.spawn_actor(cls, {actor_id!r}, pin=N) to move it, "
                    f"or pick another id")
            actor = existing._actor
            if actor is not None and type(actor) is not actor_class:
                raise TypeError(_taken(actor_id, actor, actor_class))
            if actor is not None:
                _warn_unused_spawn(existing, capacity, overflow, args, kwargs)
            return actor
        if parent is not None and parent._state is not _RUNNING:
            raise RuntimeError(f"actor {parent.actor_id!r} is stopping; it cannot spawn children")
        if self._transport is not None and self._transport.placing is not None:
            self._transport.placing(actor_id)
        if overflow == "grow" or not OVERFLOW_POLICIES[overflow].bounded:
            # Rounded up to a power of two; the default's int object is shared
            # rather than one made per actor: 414 -> 382 bytes per idle actor.
            size = 1 << (capacity - 1).bit_length()
            ctx = Context(self, actor_id, parent.actor_id if parent else None,  # type: ignore[arg-type]
                          DEFAULT_CAPACITY if size == DEFAULT_CAPACITY else size)
        else:       # a bound kept exactly: "capacity=3" means three
            ctx = Context(self, actor_id, parent.actor_id if parent else None,  # type: ignore[arg-type]
                          capacity)
            ctx._inbox = _BoundedInbox(ctx, OVERFLOW_POLICIES[overflow])
        self._registry[actor_id] = ctx
        if parent is not None:
            if parent._children is None:
                parent._children = {}
            parent._children[actor_id] = ctx
        if args or kwargs:
            ctx._init_args = (args, kwargs)     # for a restart; most actors have none
        try:
            self._new_instance(ctx, actor_class)
        except BaseException:
            self._stop_actor(ctx, f"{actor_class.__name__}.__init__ failed", [], deinit=False)
            raise
        if self._transport is not None and self._transport.spawned is not None:
            self._transport.spawned(ctx)    # it tells the other engines where ctx lives
        return ctx._actor

    @staticmethod
    def _new_instance(ctx: Context, actor_class: Any) -> None:
        """Make the actor, ``actor_class(ctx, *args, **kwargs)``, with the
        constructor arguments of its spawn (``ctx._init_args``)."""
        actor = actor_class.__new__(actor_class)
        try:
            actor.ctx = ctx
        except AttributeError:
            pass  # a class with __slots__ and no "ctx" slot keeps its own reference
        ctx._actor = actor
        # The plain function, called as receive(actor, envelope): no bound
        # method object per actor, one less indirection per message.  What
        # the class's first spawn learnt (see _study) says it is one; an async
        # receive gets its driver from _receiver.
        studied = getattr(actor_class, _STUDIED, None)
        if studied is not None and studied[0] is actor_class and not studied[2]:
            ctx._receive = studied[1]
        else:
            ctx._receive = ctx.engine._receiver(ctx, actor_class)
        extra = ctx._extra
        args, kwargs = (), None
        try:
            if extra is None or extra.init_args is None:
                actor.__init__(ctx)
            else:
                args, kwargs = extra.init_args
                actor.__init__(ctx, *args, **(kwargs or {}))
        except TypeError as exc:
            mismatch = _init_mismatch(actor_class, ctx, args, kwargs or {})
            if mismatch is None:
                raise                       # raised inside __init__, not by its call
            raise TypeError(mismatch) from exc

    # -- stopping -------------------------------------------------------------
    # The order of a stop: children, subscriptions, parent, registry, deinit,
    # timers; then what is left becomes dead letters and watchers are told.

    def _stop_actor(self, ctx: Context, reason: str, leftover: list[Any],
                    deinit: bool = True, *, interrupt: bool = True) -> None:
        """Stop ``ctx`` now, in the order the README promises.

        Children first (deepest first), then subscriptions both ways, then it
        leaves its parent and the registry, ``deinit`` runs, timers and watches
        end; what is still queued for it becomes dead letters, and its
        monitors are told.  A KeyboardInterrupt or SystemExit from a deinit
        is raised once the whole stop is done (during close(), once closed),
        unless ``interrupt`` is False (a descendant's stop: the whole tree's
        stop finishes first).
        """
        # One function, not a wrapper around the stop of one actor: a Python
        # call less per stop.  With the three guards below (deinit, dead-letter
        # subscribers, _check_idle): create-and-stop (25k, callgrind, 3.11)
        # 44,236 -> 41,608 instructions per actor.
        if ctx._state is not _RUNNING:
            return
        ctx._state = _STOPPING
        extra = ctx._extra
        if extra is not None and extra.suspended is not None:
            self._cancel_coroutine(ctx, reason)
        # Each step is guarded here, so stopping an actor that has no children,
        # subscriptions, timers, watches, waiters or monitors (most of them)
        # calls and allocates nothing but its stopped inbox: 327k -> 437k stops/s.
        if ctx._children:
            self._stop_children(ctx, "stopped")
            extra = ctx._extra
        if extra is not None:
            self._drop_subscriptions(ctx)
            if extra.monitoring:
                self._drop_monitoring(ctx)
        if self._guards.failures:
            self._log_failures_left(ctx.actor_id)
        if self._dead_letter_subscribers and \
                self._dead_letter_subscribers.get(ctx.actor_id) is ctx:
            del self._dead_letter_subscribers[ctx.actor_id]
        registry = self._registry
        if ctx.parent is not None:
            # Written out, not a call: skynet -0.8 % instructions.
            parent = registry.get(ctx.parent)
            # A dict: removal O(1); a list's remove() made stopping 100k
            # children of one parent take 109 s.
            if parent is not None and parent._children \
                    and parent._children.get(ctx.actor_id) is ctx:
                del parent._children[ctx.actor_id]
        if registry.get(ctx.actor_id) is ctx:
            del registry[ctx.actor_id]
            if self._transport is not None and self._transport.stopped is not None:
                self._transport.stopped(ctx)    # stand-ins too: it tells them apart
        if deinit:
            # The lookup written out, and _deinit called only for an actor
            # that has one (see the figure at the top of this function).
            actor_deinit = getattr(ctx._actor, "deinit", None)
            if actor_deinit is not None:
                self._deinit(ctx, actor_deinit)
        extra = ctx._extra        # deinit may have started a timer or a watch
        if extra is not None:
            self._end_timers_and_watches(ctx)
        ctx._state = _STOPPED
        # Break the actor <-> context cycle, so a stopped actor is freed at
        # once by reference counting instead of by the cyclic GC: skynet with
        # 1M leaves peaks at 719 against 794 MiB.
        ctx._actor = None
        # What was queued after the pill, or is still queued or waiting for
        # room, is not delivered.
        inbox = ctx._inbox
        head = ctx._head
        ctx._inbox = stopped = _StoppedInbox()      # list's own C __init__
        stopped._engine = self  # type: ignore[assignment]
        stopped._actor_id = ctx.actor_id
        ctx._tail_sender = None     # a bare message to it now was sent with no sender
        ctx._head = 0
        if leftover or len(inbox) > head or extra is not None:
            self._dead_letter_queued(ctx, leftover + inbox[head:], reason)
        if extra is not None:
            self._tell_monitors(ctx, reason)
        if self._until_idle and not self._ready:    # else _check_idle finds work left
            self._check_idle()
        if interrupt and self._guards.interrupted and not self._closed:
            raise self._guards.interrupted.pop(0)

    def _stop_after_turn(self, ctx: Context) -> int:
        """``ctx``'s one-message turn left only its own poison pill queued: the
        pill is handled now, in the same turn.  Returns the turn's count (2).

        As a batch of [message, pill] would be: the actor stops while its
        record is still in the cache, and skips a second trip round the ready
        queue.  Create-and-stop (25k, callgrind, 3.11) 46,418 -> 45,297
        instructions per actor.
        """
        ctx._inbox.clear()
        ctx._count += 1
        self._stop_actor(ctx, "stopped by poison pill", [])
        if ctx._state is not _STOPPED:
            self._after_turn(ctx)
        return 2

    def _stop_children(self, ctx: Context, why: str) -> None:
        """Stop every descendant of ``ctx``, the youngest child first, each child's
        own descendants before it.  Iterative: a chain of 3,000 parents hit
        RecursionError at stop and at close, with no deinit run."""
        stack = [(ctx, iter(list(reversed((ctx._children or {}).values()))))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                if node is not ctx:
                    self._stop_actor(node, f"parent {node.parent!r} {why}", [],
                                     interrupt=False)
            elif child._state is _RUNNING:
                stack.append((child, iter(list(reversed((child._children or {}).values())))))

    def _dead_letter_queued(self, ctx: Context, items: list[Any], reason: str) -> None:
        """What the stopped ``ctx`` never handled, waiting senders' messages last."""
        items = _explicit(items, ctx._head_sender)      # what the inbox held, bare or not
        if ctx._extra is not None and ctx._extra.stash:
            items = ctx._extra.stash + items    # set aside earlier, so first
            ctx._extra.stash = None
        if ctx._extra is not None and ctx._extra.waiting:
            items += self._release_waiting(ctx)
        if items:
            self._dead_letter_all(ctx.actor_id, items,
                                  f"actor stopped before handling it ({reason})")

    def _deinit(self, ctx: Context, deinit: Any = None) -> None:
        """Call the actor's ``deinit`` (looked up here unless given), if it has one."""
        if deinit is None:
            deinit = getattr(ctx._actor, "deinit", None)
            if deinit is None:
                return
        try:
            deinit()
        except Exception:
            log.exception("deinit of actor %r failed", ctx.actor_id,
                          extra={"actor_id": ctx.actor_id})
        except (KeyboardInterrupt, SystemExit) as exc:
            # Raised once the stop (or the close) is done, not half-way.
            self._guards.interrupted.append(exc)

    def _end_timers_and_watches(self, ctx: Context) -> None:
        for timer in list(ctx._timers or ()):
            timer._end()
        for fileobj in list(ctx._watches or ()):
            self._unwatch_here(ctx, fileobj)

    # -- supervision ----------------------------------------------------------
    # A failed receive: the supervisor's strategy decides, and it is applied here.

    def _supervisor_of(self, parent: Context | None) -> SupervisorStrategy:
        if parent is None:
            return self._root_strategy
        return getattr(parent._actor, "supervisor", None) or DEFAULT_CHILD_STRATEGY

    def _callback_failed(self, ctx: Context, exc: Exception, what: str) -> None:
        """A timer or fd callback of ``ctx`` raised ``exc`` (in its except block):
        logged, counted as the actor's failure (the feed's ``failures``), and
        the run's failure under raise_failures.  The actor goes on."""
        log.exception("%s of actor %r failed", what, ctx.actor_id,
                      extra={"actor_id": ctx.actor_id})
        if self._inspector is not None:
            self._inspector.failed(ctx)
        if self._failures is not None:
            self._note_failure(ctx, exc, f"a {what}")

    def _handle_failure(self, ctx: Context, exc: BaseException, envelope: Envelope | None,
                        rest: Iterator[tuple[Any, ...]] | None) -> None:
        """``receive`` of ``ctx`` raised ``exc`` on ``envelope``: let its supervisor decide.

        A failed ask fails with ``exc``.  Unless the actor resumes, the message
        becomes a dead letter with the exception as reason.
        """
        if ctx._state is not _RUNNING:
            return
        if self._failures is not None:
            self._note_failure(ctx, exc, envelope)
        if self._inspector is not None:
            self._inspector.failed(ctx)
        reply = getattr(envelope, "_reply", None)
        if reply is not None:
            reply.settle(None, exc)
        parent = self._registry.get(ctx.parent) if ctx.parent is not None else None
        strategy = self._supervisor_of(parent)
        directive = strategy.decide(exc)
        where = _FailedOn(ctx.actor_id, envelope)
        if directive is Directive.RESUME:
            self._log_failure(ctx.actor_id, logging.ERROR,
                              "%s; it goes on with its next message", where, exc=exc)
            return
        reason = f"receive failed: {_safe_repr(exc)}"
        if envelope is not None:
            self._dead_letter(ctx.actor_id, envelope, reason)
        if directive is Directive.RESTART:
            if self._restart_with(strategy, ctx, parent, reason, where, exc):
                return
            self._stop_actor(ctx, f"restarted too often; {reason}", list(rest or ()))
        elif directive is Directive.STOP:
            log.error("%s; stopping it", where, exc_info=exc, extra={"actor_id": ctx.actor_id})
            self._stop_actor(ctx, reason, list(rest or ()))
            return
        if parent is None:
            log.error("%s; the failure escalated past the top level, so it stops",
                      where, exc_info=exc, extra={"actor_id": ctx.actor_id})
            self._stop_actor(ctx, f"escalated; {reason}", list(rest or ()))
            return
        if directive is Directive.ESCALATE:
            log.error("%s; escalating to its parent %r", where, parent.actor_id, exc_info=exc,
                      extra={"actor_id": ctx.actor_id})
        self._handle_failure(parent, exc, None, None)

    def _restart_with(self, strategy: SupervisorStrategy, ctx: Context,
                      parent: Context | None, reason: str, where: _FailedOn,
                      exc: BaseException) -> bool:
        """Restart what ``strategy`` says for the failed ``ctx``; False (and a log
        line) when it restarted too often and must stop and escalate instead."""
        if not self._may_restart(ctx, strategy):
            log.error("%s, and it restarted %d times within %s s; stopping it and escalating",
                      where, strategy.max_restarts, strategy.within_s, exc_info=exc,
                      extra={"actor_id": ctx.actor_id})
            return False
        self._log_failure(ctx.actor_id, logging.WARNING, "%s; restarting it (%r)", where,
                          strategy, exc=exc)
        if parent is not None:
            siblings = list(parent._children.values()) if parent._children else []
        else:
            siblings = [c for c in self._registry.values() if c.parent is None]
        for target in strategy.to_restart(ctx, siblings):
            self._restart(target, reason)
        return True

    def _log_failure(self, actor_id: str, level: int, text: str, *args: Any,
                     exc: BaseException) -> None:
        """Log a failure that the actor survives: the first with its traceback,
        then at most one line per FAILURE_LOG_EVERY seconds, the rest counted
        (one buggy subscriber logged 134 tracebacks, 939 lines)."""
        failures = self._guards.failures
        now = time.monotonic()
        entry = failures.get(actor_id)
        if entry is not None and now - entry[0] < FAILURE_LOG_EVERY:
            entry[1] += 1
            return
        if entry is not None and entry[1]:
            text += " (and %d more failures since its last logged one)"
            args += (entry[1],)
        failures[actor_id] = [now, 0]
        log.log(level, text, *args, exc_info=exc, extra={"actor_id": actor_id})

    def _log_failures_left(self, actor_id: str) -> None:
        """The stopped actor's failures not logged one by one, as one count."""
        entry = self._guards.failures.pop(actor_id, None)
        if entry is not None and entry[1]:
            log.warning("actor %r: %d more failures after its last logged one, counted "
                        "rather than logged one by one", actor_id, entry[1],
                        extra={"actor_id": actor_id})

    def _note_failure(self, ctx: Context, exc: BaseException, where: Any) -> None:
        """Engine(raise_failures=True): keep the run's first failure and end the run."""
        failures = self._failures
        if failures is not None and not failures:
            try:
                what = repr(where) if isinstance(where, Envelope) else str(where)
            except Exception:
                what = f"a {type(where).__name__} whose repr() failed"
            exc.add_note(f"raised by actor {ctx.actor_id!r} in {what[:200]} "
                         f"(Engine(raise_failures=True))")
            failures.append(exc)
            self.stop()

    def _raise_failure(self) -> None:
        failures = self._failures
        if failures:
            failure = failures.pop()
            raise failure

    def _may_restart(self, ctx: Context, strategy: SupervisorStrategy) -> bool:
        """Count a restart of ``ctx``, unless it would exceed the strategy's intensity."""
        now = time.monotonic()
        restarts = ctx._restarts
        if restarts is None:
            restarts = ctx._restarts = collections.deque()
        while restarts and restarts[0] <= now - strategy.within_s:
            restarts.popleft()
        if len(restarts) >= strategy.max_restarts:
            return False
        restarts.append(now)
        return True

    def _restart(self, ctx: Context, reason: str) -> None:
        """A new instance under the same Context: inbox, subscriptions and monitors stay."""
        if ctx._state is not _RUNNING:
            return
        if ctx._extra is not None and (ctx._extra.suspended or ctx._extra.stash):
            self._cancel_coroutine(ctx, "it restarted")
            self._unstash_all_here(ctx)
        self._pause_turn(ctx)   # the rest of the batch meets the new instance's receive
        self._deinit(ctx)
        if ctx._children:
            self._stop_children(ctx, "restarted")
        self._end_timers_and_watches(ctx)
        self.restart_count += 1
        if self._inspector is not None:
            self._inspector.restarted(ctx)
        try:
            self._new_instance(ctx, type(ctx._actor))
        except Exception as exc:
            if self._failures is not None:
                self._note_failure(ctx, exc, "__init__ in a restart")
            log.error("actor %r could not restart: its __init__ failed; stopping it",
                      ctx.actor_id, exc_info=exc)
            self._stop_actor(ctx, f"restart failed: {exc!r}", [], deinit=False)

    # -- death watch ----------------------------------------------------------
    # Monitors: be told with a Terminated message when an actor stops.

    def _monitor_here(self, watcher: Context, target_id: str) -> None:
        target = self._registry.get(target_id) or self._resolve_missing(target_id)
        if target is not None and target._inbox.__class__ is _StandInInbox:
            # A remote actor: its engine tells when it stops; the stand-in
            # (below) tells if that engine is lost.
            self._enqueue(target, (watcher.actor_id, None, _MONITOR))
        if target is None:
            self._enqueue(watcher, (target_id, Terminated(target_id, "no such actor"),
                                    _TERMINATED))
            return
        if target._monitors is None:
            target._monitors = {}
        target._monitors[watcher.actor_id] = watcher
        if watcher._monitoring is None:
            watcher._monitoring = set()
        watcher._monitoring.add(target_id)

    @staticmethod
    def _forget_monitoring(watcher: Context, target_id: str) -> None:
        if watcher._extra is not None and watcher._extra.monitoring:
            watcher._extra.monitoring.discard(target_id)

    def _drop_monitoring(self, ctx: Context) -> None:
        """A stopping actor leaves the monitors of the actors it watched: short-lived
        watchers of a long-lived actor left ~330 bytes each behind."""
        for target_id in ctx._extra.monitoring or ():
            target = self._registry.get(target_id)
            if target is not None and target._monitors \
                    and target._monitors.get(ctx.actor_id) is ctx:
                del target._monitors[ctx.actor_id]
                if target._inbox.__class__ is _StandInInbox and not self._closed:
                    # The target's own engine keeps the watch too: without this,
                    # a later actor under the watcher's id got its TERMINATED.
                    self._enqueue(target, (ctx.actor_id, None, _DEMONITOR))
        ctx._extra.monitoring = None

    def _tell_monitors(self, ctx: Context, reason: str) -> None:
        """Every watcher of the stopped ``ctx`` gets a TERMINATED envelope."""
        extra = ctx._extra
        if not extra.monitors:
            return
        if not self._closed:
            notice = (ctx.actor_id, Terminated(ctx.actor_id, reason), _TERMINATED)
            for watcher in extra.monitors.values():
                if watcher._state is _RUNNING:
                    try:
                        self._enqueue(watcher, notice)
                    except InboxFull as exc:
                        self._dead_letter(watcher.actor_id, _item_envelope(*notice),
                                          f"inbox full: {exc}")
                    self._forget_monitoring(watcher, ctx.actor_id)
        extra.monitors = None

    def _demonitor_here(self, watcher: Context, target_id: str) -> None:
        target = self._registry.get(target_id)
        if target is not None and target._monitors \
                and target._monitors.get(watcher.actor_id) is watcher:
            del target._monitors[watcher.actor_id]
            if target._inbox.__class__ is _StandInInbox:
                self._enqueue(target, (watcher.actor_id, None, _DEMONITOR))
        self._forget_monitoring(watcher, target_id)

    # -- file descriptors -----------------------------------------------------
    # An actor's watched files: its callbacks on readable or writable.

    def _watch_fd(self, ctx: Context, fileobj: Any, callback: Callable[[], Any],
               readable: bool) -> None:
        if ctx._state is not _RUNNING:
            raise RuntimeError(f"actor {ctx.actor_id!r} is stopping; it cannot watch files")
        if not callable(callback):
            raise TypeError(f"watch needs a callable callback, not {callback!r}")
        wrapped = _guarded(ctx, callback)
        # Registered first, counted after: a registration that fails (a bad fd)
        # was counted as work, and run() never returned.
        if readable:
            self._loop.add_reader(fileobj, wrapped)
        else:
            self._loop.add_writer(fileobj, wrapped)
        if ctx._watches is None:
            ctx._watches = {}
        if fileobj not in ctx._watches:
            ctx._watches[fileobj] = [False, False]
            self._user_watches += 1
        ctx._watches[fileobj][0 if readable else 1] = True

    def _unwatch_here(self, ctx: Context, fileobj: Any, reading: bool = True,
                      writing: bool = True) -> None:
        if not ctx._watches or fileobj not in ctx._watches:
            return
        watch = ctx._watches[fileobj]
        if reading and watch[0]:
            self._loop.remove_reader(fileobj)
            watch[0] = False
        if writing and watch[1]:
            self._loop.remove_writer(fileobj)
            watch[1] = False
        if not (watch[0] or watch[1]):
            del ctx._watches[fileobj]
            self._user_watches -= 1
            self._check_idle()


class Engine(_Lifecycle):
    """Runs actors on one thread, on an event loop.

    ``Engine(backend="selectors")``: "selectors" (built in), "asyncio",
    "uvloop", or a ``Loop`` instance.  Use it as a context manager, or call
    ``close()`` when done, so every actor's ``deinit`` runs.

    ``raise_failures=True`` (for tests) makes the first failure of an actor end
    the run and raise out of ``run()``, after its supervisor has dealt with it.

    ``inspector=True`` opens the stats feed that ``inspector_curses.py`` reads,
    on a Unix socket in a per-user directory (``inspector_path`` tells where);
    ``inspector="/path.sock"`` picks the path.  ``inspector_interval`` is the
    seconds between two snapshots.

    ``slow_callback_s`` (1.0 by default, None turns it off): a ``receive`` or
    callback that holds the engine thread longer than this is logged as a
    WARNING naming the actor, by a watchdog thread that lives as long as the
    engine (it looks at the engine thread four times per threshold, and costs
    nothing per message).
    """
    def __init__(self, backend: str | Loop = "selectors", *,
                 supervisor: SupervisorStrategy | None = None,
                 dead_letters_kept: int = DEAD_LETTERS_KEPT,
                 inspector: bool | str | os.PathLike[str] = False,
                 inspector_interval: float = INSPECTOR_INTERVAL,
                 inbound_capacity: int = INBOUND_CAPACITY,
                 inbound_overflow: InboundOverflow = "block",
                 slow_callback_s: float | None = SLOW_CALLBACK_S,
                 thread_pool_size: int | None = None,
                 raise_failures: bool = False) -> None:
        if supervisor is not None and not isinstance(supervisor, SupervisorStrategy):
            raise TypeError(f"supervisor must be a backstage.SupervisorStrategy such as "
                            f"OneForOne(), not {supervisor!r}")
        _check_engine_args(dead_letters_kept, inbound_capacity, inbound_overflow)
        _check_inspector_args(inspector, inspector_interval)
        _check_slow_callback(slow_callback_s)
        if thread_pool_size is not None:
            if isinstance(thread_pool_size, bool) or not isinstance(thread_pool_size, int):
                raise TypeError(f"thread_pool_size must be an int of at least 1 (or None for "
                                f"ThreadPoolExecutor's default), not {thread_pool_size!r}")
            if thread_pool_size < 1:
                raise ValueError(f"thread_pool_size must be an int of at least 1 (or None "
                                 f"for ThreadPoolExecutor's default), got {thread_pool_size}")
        if not isinstance(raise_failures, bool):
            raise TypeError(f"raise_failures must be True or False, not {raise_failures!r}")
        # At most 30 attributes: CPython 3.11 keeps an instance's values
        # inline, and specialises attribute loads on them, only up to 30 keys;
        # 31 cost burst +1.7 % and skynet +7 % instructions (callgrind).
        self._loop = make_loop(backend)
        self.backend = backend if isinstance(backend, str) else type(backend).__name__
        self._registry: dict[str, Context] = {}      # every live actor by id
        self._ready: collections.deque[Context] = collections.deque()  # actors with work
        self._tick_scheduled = False                 # a _tick is queued on the loop
        # (fn, args) calls and (target_id, sender_id, message, tag) posts from
        # other threads
        self._inbound: collections.deque[tuple[Any, ...]] = collections.deque()
        self._inbound_scheduled = False              # a _process_inbound is queued
        # The engine's thread (its maker, then the one in run(); no thread's once
        # closed) holds this mark: _owner._is_owned() is the check of every call
        # (the maker takes it below, _take_thread).
        self._owner = _NO_THREAD
        self._running = False                        # inside run() or run_forever()
        self._until_idle = False                     # run() (True) or run_forever()
        self._stop_requested = False                 # stop() was called: end the run
        self._close_requested = False                # close() waits for the run to end
        self._closed = False
        self._closed_event = threading.Event()
        self._lock = threading.RLock()               # taken by other threads' calls only
        self._user_timers = 0                        # live Timers of actors
        self._user_watches = 0                       # fds watched by actors
        self._asks: set[_Reply] = set()              # asks waiting for a reply
        if thread_pool_size is not None:             # else made at first use (_Waiting)
            self._waits = _WaitState(thread_pool_size)
        self._transport: _Transport | None = None    # see attach_transport()
        self._root_strategy = supervisor or DEFAULT_ROOT_STRATEGY  # for top-level actors
        self.restart_count = 0                       # actor restarts by supervisors
        self._dead_letter_subscribers: dict[str, Context] = {}
        self._signal_handlers: dict[int, Any] = {}   # replaced by run_forever()'s own
        self.dead_letters: collections.deque[DeadLetter] = collections.deque(
            maxlen=dead_letters_kept)                # the most recent dead letters
        self.dead_letter_count = 0                   # every dead letter ever
        self._guards = _Guards(inbound_capacity, inbound_overflow)  # see _Guards
        self._take_thread()
        self.started_at = time.time()
        self._watchdog: _Watchdog | None = None      # slow callbacks; the feed's stuck lines
        if raise_failures:
            self._failures = []                      # see _Lifecycle._failures
        self._inspector: _InspectorFeed | None = None  # the stats feed, when asked for
        self.inspector_path: str | None = None       # its socket path
        if inspector:
            try:
                self._inspector = _InspectorFeed(self, inspector, inspector_interval)
            except BaseException:
                self._loop.close()
                raise
            self.inspector_path = self._inspector.path
        if slow_callback_s is not None or self._inspector is not None:
            self._watchdog = _Watchdog(self, slow_callback_s)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running else "idle"
        return f"<Engine {self.backend} {state} actors={len(self._registry)}>"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- public API -----------------------------------------------------------
    # Lookups, and the calls that run, stop and close the engine (the rooms
    # above hold send, ask, poison_pill and spawn_actor).

    @overload
    def get_actor(self, actor_id: str, actor_class: None = None) -> Any: ...
    @overload
    def get_actor(self, actor_id: str, actor_class: type[_A]) -> _A | None: ...

    def get_actor(self, actor_id: str, actor_class: type[Any] | None = None) -> Any:
        """The actor instance registered under ``actor_id``, or None; any thread.

        With ``actor_class`` the result is typed as that class (for a type
        checker), and an actor of another class raises TypeError.
        """
        ctx = self.get_context(actor_id, "get_actor")
        actor = ctx._actor if ctx is not None else None
        if actor_class is not None and not isinstance(actor_class, type):
            raise TypeError(f"get_actor() needs the actor's class as actor_class, such as "
                            f"get_actor({actor_id!r}, Counter), not {actor_class!r}")
        if actor_class is not None and actor is not None and not isinstance(actor, actor_class):
            raise TypeError(f"actor {actor_id!r} is of class {type(actor).__name__}, not "
                            f"{actor_class.__name__}: pass the class it was spawned with, "
                            f"or call get_actor({actor_id!r}) without one")
        return actor

    def get_context(self, actor_id: str, _call: str = "get_context") -> Context | None:
        """The Context of ``actor_id``, or None; any thread."""
        if type(actor_id) is not str or not actor_id:
            _check_id(_call, actor_id)
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
        """Handle messages, timers and I/O until ``stop()`` is called (from anywhere).

        In the main thread, SIGINT (Ctrl-C) and SIGTERM end it cleanly: the
        engine closes (every actor's ``deinit`` runs, children first) and
        ``run_forever`` returns, with no KeyboardInterrupt.  A second signal
        meets the handler the program had before, and that handler is back
        when ``run_forever`` returns.  A signal whose handler the program set
        itself (or set to ignore) is left alone.
        """
        previous = self._catch_stop_signals()
        try:
            self._run(until_idle=False)
        finally:
            _restore_signal_handlers(previous)

    async def run_async(self, *, until_idle: bool = False) -> None:
        """``run_forever()`` as a coroutine, on the asyncio loop that is running it.

        For an engine that shares a running asyncio (or uvloop) loop: make it
        inside a coroutine with ``Engine(backend="asyncio")`` and run it as a
        task, ``asyncio.create_task(engine.run_async())``; the program's other
        coroutines go on beside the actors.  It returns on ``stop()`` or, with
        ``until_idle=True``, when no user work is left (as ``run()`` does).
        Cancelling the task ends the run too.  Signals are the program's business.
        """
        run_async = getattr(self._loop, "run_async", None)
        if run_async is None:
            raise TypeError(f"run_async() needs an engine on an asyncio loop, and this one runs "
                            f"on {self.backend!r}: make it with Engine(backend='asyncio') "
                            f"inside the coroutine, or call run() / run_forever()")
        self._enter_run(until_idle)
        try:
            self._process_inbound()
            while not self._stop_requested and not (until_idle and self._idle()):
                await run_async()
        finally:
            self._leave_run()
        self._raise_failure()

    def stop(self) -> None:
        """Make ``run()``/``run_forever()`` return soon; any thread, or an actor.

        Called while the engine is not running, it ends the next run at once
        (so a stop from another thread cannot be lost while a run starts).
        A closed engine has nothing to stop: the call does nothing.
        """
        if self._closed:
            return              # uvloop raises on a stop of its closed loop
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

    # -- running --------------------------------------------------------------
    # One run of the loop, the stop signals, and what "idle" means.

    def _run(self, until_idle: bool) -> None:
        self._enter_run(until_idle)
        try:
            self._process_inbound()
            while not self._stop_requested and not (until_idle and self._idle()):
                self._loop.run()
        finally:
            self._leave_run()
        self._raise_failure()

    def _enter_run(self, until_idle: bool) -> None:
        if self._closed:
            raise EngineClosed(f"cannot run: {_CLOSED}")
        with self._lock:
            if self._running:
                raise RuntimeError("the engine is already running; run() and run_forever() "
                                   "may not be nested or called from two threads")
            self._running = True
            self._guards.ran = True
        self._take_thread()
        self._until_idle = until_idle
        # _stop_requested is not reset here: a stop() from another thread that
        # lands just before this run began still ends it.

    def _leave_run(self) -> None:
        # Under the lock from start to end: a call from another thread that
        # finds the engine not running then runs on its own thread only once
        # the engine thread is done (a spawn racing close() was left registered
        # in a closed engine, never deinit'ed: 15 in 100 trials).
        with self._lock:
            self._running = False
            close = self._close_requested
            # Calls that other threads queued while we stopped must not wait
            # forever; only those already queued, or a flood would never end.
            self._process_inbound(len(self._inbound))
            self._stop_requested = False
            if close:
                self._close()

    def _catch_stop_signals(self) -> dict[int, Any]:
        """Route SIGINT and SIGTERM to a clean close; returns the handlers replaced.

        Only in the main thread (the only one Python delivers signals to), and
        only where the program kept the default handler.  The handler runs
        between two bytecodes of whatever runs, maybe inside a receive, so it
        only queues the close on the loop, as another thread would.
        """
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler):
                previous[signum] = signal.signal(signum, self._on_stop_signal)
        self._signal_handlers = previous
        return previous

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        # A second signal meets the old handler: Ctrl-C twice interrupts a
        # deinit that hangs.
        _restore_signal_handlers(self._signal_handlers)
        try:
            self._loop.call_soon_threadsafe(self._close_on_signal, signum)
        except RuntimeError:
            pass                    # the loop is closed: the run is over already

    def _close_on_signal(self, signum: int) -> None:
        log.info("%s: closing the engine", signal.Signals(signum).name)
        self.close()

    def _idle(self) -> bool:
        """True when no user work is left: no message, timer, watch or inbound call."""
        return not (self._ready or self._inbound or self._user_timers or self._user_watches
                    or self._asks or (self._waits is not None and (
                        self._waits.jobs or self._waits.suspended > self._waits.held_back)))

    def _check_idle(self) -> None:
        if self._until_idle and self._running and self._idle():
            self._loop.stop()

    def _on_engine_thread(self) -> bool:
        return self._owner._is_owned()

    def _take_thread(self) -> None:
        """The calling thread is the engine's from now on (see ``_owner``)."""
        self._owner = _thread_mark()
        self._guards.thread_id = _get_ident()

    def _close(self) -> None:
        """Stop every actor and free the loop; always under the lock.

        A KeyboardInterrupt or SystemExit from a deinit does not cut the close
        short: every other actor still stops, and the first such exception is
        raised once the engine is closed.
        """
        self._closed = True
        # No run is going: the closing thread is the engine's thread now, so the
        # deinits it calls may still use their Context (unwatch, send, ...).
        self._take_thread()
        try:
            if self._watchdog is not None:
                self._watchdog.stop()
            if self._inspector is not None:
                self._inspector.close()
            self._process_inbound(len(self._inbound))
            if not self._guards.ran:
                self._warn_never_ran()
            top_level = [c for c in self._registry.values() if c.parent is None]
            for ctx in reversed(top_level):
                self._stop_actor(ctx, "engine closed", [])
            for ctx in list(self._registry.values()):
                self._stop_actor(ctx, "engine closed", [])
            # Sends from other threads that landed during the close: dead letters.
            self._process_inbound(len(self._inbound))
            for reply in list(self._asks):
                reply._settle_here(None, EngineClosed(
                    f"no reply from {reply.target_id!r}: {_CLOSED}"))
            self._end_jobs()
            self._end_cancelled_tasks()
            self._ready.clear()
            self._owner = _NO_THREAD  # every later call takes the slow path, which raises
            self._guards.thread_id = None
            self._loop.close()
        finally:
            self._closed_event.set()
        if self._guards.interrupted:
            raise self._guards.interrupted.pop(0)


    def _warn_never_ran(self) -> None:
        """Closing an engine that never ran, with messages queued: they become
        dead letters, each logged at most at INFO; say why once, louder."""
        queued = sum(len(ctx._inbox) for ctx in self._registry.values())
        if queued or self._asks:
            log.warning("closing an engine that never ran: %d queued messages become dead "
                        "letters and %d asks fail; call engine.run() (or run_forever()) "
                        "before close() to deliver them", queued, len(self._asks))


class _Required:
    """The run-time default of a spawn's required ``id`` (and a pool's ``size``): a
    call without it reaches the spawn's checks, which raise ``error()``, saying what
    to pass.  Type checkers read the signatures as written, where it has no default."""

    __slots__ = ("call",)

    def __init__(self, call: str) -> None:
        self.call = call

    def __repr__(self) -> str:
        return "<required>"             # as help() shows the signature

    def error(self, actor_class: Any = None) -> TypeError:
        name = getattr(actor_class, "__name__", "Worker")
        if self.call == "spawn_pool":
            return TypeError(f"spawn_pool() missing the pool's id or size: pass "
                             f"spawn_pool({name}, \"some-id\", 4, ...)")
        return TypeError(f"{self.call}() missing the actor id: pass "
                         f"{self.call}({name}, \"some-id\", ...)")


def _name_the_public_calls() -> None:
    """Python's own TypeError for a missing or an extra argument names the method
    by its ``__qualname__``, and the Engine's calls are written in its rooms
    (``_Sending.send``), which a user never wrote: each is named
    ``Engine.<call>`` instead.  The spawns get ``_Required`` defaults."""
    for room in Engine.__mro__[1:]:
        for name, member in vars(room).items():
            if not name.startswith("_") and isinstance(member, types.FunctionType):
                member.__qualname__ = f"Engine.{name}"
    for cls, call in ((Engine, "spawn_actor"), (Context, "spawn_actor"),
                      (Context, "spawn_child_actor")):
        getattr(cls, call).__defaults__ = (_Required(call),)
    for cls in (Engine, Context):
        cls.spawn_pool.__defaults__ = (_Required("spawn_pool"), _Required("spawn_pool"))


_name_the_public_calls()


###############################################################################
# Pools and routing
# A router under one id in front of supervised routees: its inbox hands
# each message straight to a routee, so the router itself never takes a turn.
###############################################################################

# The routings spawn_pool knows, by name.
ROUTINGS: tuple[str, ...] = get_args(Routing)

# Points per routee on a consistent-hash ring: enough that 4 routees share
# 400 keys within about +-30 % of even, and a new routee takes keys from all.
_RING_POINTS = 100
_MASK64 = (1 << 64) - 1


def _mix64(value: int) -> int:
    """Scatter an int over 64 bits (the splitmix64 finaliser): hash(3) is 3."""
    value &= _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


class _RouterInbox(list[Any]):
    """A router's inbox: holds nothing, routes every item as it is appended.

    The item goes on unchanged (sender, message, tag), so an ask's or a proxied
    call's reply still reaches the asker; engine commands and the routees'
    Terminated notices are the pool's own.
    """
    __slots__ = ("_pool", "_route")

    def __init__(self, pool: Pool[Any]) -> None:
        super().__init__()
        self._pool = pool
        self._route = getattr(pool, "_" + pool.routing)   # chosen once, not per message

    def append(self, item: Any) -> None:
        if item.__class__ is tuple:
            tag = item[2]
            if tag is _COMMAND or tag is _TERMINATED:
                return self._pool._command(item)
        elif self._pool.ctx._tail_sender is not None:
            item = (self._pool.ctx._tail_sender, item, None)    # see _explicit
        self._route(item)


class _RoundRobinInbox(_RouterInbox):
    """``_RouterInbox`` with round robin and the delivery to a plain inbox
    written out: two Python calls less per message; a pool of 8 against one
    actor, 200k sends: 1.73x -> 1.56x the time (medians of 5)."""
    __slots__ = ()

    def append(self, item: Any) -> None:
        if item.__class__ is tuple:
            tag = item[2]
            if tag is _COMMAND or tag is _TERMINATED:
                return self._pool._command(item)
        elif self._pool.ctx._tail_sender is not None:
            item = (self._pool.ctx._tail_sender, item, None)    # see _explicit
        pool = self._pool
        live = pool._live
        if not live:
            return pool._no_routee(item)
        turn = pool._next
        pool._next = turn + 1
        routee = live[turn % len(live)]
        inbox = routee._inbox
        if inbox.__class__ is not list:
            return pool._deliver(routee, item)      # bounded: its policy decides
        _append_item(routee, item)
        if not routee._scheduled:
            routee.engine._schedule(routee)


class Pool(Generic[_A]):
    """A pool of routees behind one id; made by ``spawn_pool``, found by ``get_actor(id)``.

    A send, ask or proxy call to the pool's id goes to one routee, chosen by
    ``routing`` (see ``ROUTINGS``).  The routees are the router's children,
    ``id/0`` ... ``id/{size-1}``, supervised by ``supervisor``; one that stops
    is replaced under the same id, at most as often as the supervisor's
    restart intensity allows.  A cluster's spread pool
    (``Cluster.spawn_pool(..., spread=True)``) routes to actors of their own
    on several engines instead, which it watches and does not replace.
    """

    def __init__(self, ctx: Context, routee_class: type[_A], size: int, args: tuple[Any, ...],
                 kwargs: dict[str, Any], routing: str, hash_key: Callable[[Any], Hashable] | None,
                 capacity: int, overflow: str, supervisor: SupervisorStrategy | None,
                 routee_ids: list[str] | None = None) -> None:
        self.ctx = ctx
        self.routee_class = routee_class
        # A spread pool's routees: actors of their own on other engines, made
        # by the cluster's driver, which this pool routes to and watches but
        # does not make, replace or resize (Cluster.spawn_pool(spread=True)).
        self._group = routee_ids
        self.size = size                    # the routees it keeps
        self.routing = routing
        self.supervisor = supervisor or DEFAULT_CHILD_STRATEGY   # read by the engine
        self._spawn_args = (args, kwargs, capacity, overflow)
        self._hash_key = hash_key
        self._routees: dict[int, Context] = {}     # slot -> live routee, retiring ones too
        self._slot_of: dict[str, int] = {}         # routee id -> slot
        self._retiring: set[int] = set()           # slots told to stop by a resize
        self._live: list[Context] = []             # routees taking messages, in slot order
        self._next = 0                              # round-robin counter
        self._afar = False                          # routing a batch from another engine
        self._block = overflow == "block"           # routees may have waiting lines
        self._stopping = False                      # a poison pill came: no new messages
        self._done = False                          # deinit ran: this instance is over
        self._replaced: collections.deque[float] = collections.deque()  # replacement times
        self._ring: list[int] = []                  # consistent hashing: sorted points,
        self._ring_slots: list[int] = []            # and the slot owning each point
        ctx._inbox = (_RoundRobinInbox if routing == "round_robin" else _RouterInbox)(self)
        ctx._scheduled = _ROUTER
        for slot in range(size):
            self._spawn_routee(slot)
        self._refresh()

    def receive(self, envelope: Envelope) -> None:
        """Never called: a router's inbox routes what it gets (see _RouterInbox)."""

    def deinit(self) -> None:
        # The router stops or restarts: this instance routes and replaces no more
        # (a restarted router's new instance makes routees of its own).
        self._stopping = self._done = True
        self._live = []

    def __repr__(self) -> str:
        return (f"<Pool {self.ctx.actor_id!r} {self.routee_class.__name__} x{self.size} "
                f"{self.routing}>")

    @property
    def id(self) -> str:
        return self.ctx.actor_id

    @property
    def routees(self) -> list[str]:
        """Ids of the routees taking messages, in slot order."""
        return [c.actor_id for slot, c in sorted(self._routees.items())
                if c._state is _RUNNING and slot not in self._retiring]

    def resize(self, size: int) -> None:
        """Keep ``size`` routees from now on; any thread.

        New routees start at once.  Removed ones (the highest slots) take no
        new message and stop after handling what they already had.
        """
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"resize() needs an int size, not {size!r}")
        if size < 1:
            raise ValueError(f"resize() needs a size of at least 1, got {size}; "
                             f"to stop the pool, engine.poison_pill({self.ctx.actor_id!r})")
        self.ctx.engine._call_on_loop(self._resize_here, size)

    # -- the engine's side ----------------------------------------------------

    def _resize_here(self, size: int) -> None:
        current = self.ctx._actor
        if current is not self and isinstance(current, Pool):
            # The pool restarted since this handle was made: its new instance resizes.
            current._resize_here(size)
            return
        if self._stopping:
            raise RuntimeError(f"pool {self.ctx.actor_id!r} is stopping; it cannot resize")
        if self._group is not None:
            raise RuntimeError(f"pool {self.ctx.actor_id!r} is spread over a cluster's "
                               f"engines, and its routees are not its own: it cannot resize; "
                               f"spawn a new pool of the size wanted")
        old, self.size = self.size, size
        for slot in range(size, old):
            routee = self._routees.get(slot)
            if routee is not None and slot not in self._retiring:
                self._retiring.add(slot)
                self._pill(routee)
        for slot in range(old, size):
            if slot not in self._routees:   # a retiring one comes back when it has stopped
                self._spawn_routee(slot)
        self._refresh()

    def _spawn_routee(self, slot: int) -> bool:
        """Make the routee of ``slot``; False (logged) if its id is taken or its __init__ fails."""
        ctx = self.ctx
        engine = ctx.engine
        if self._group is not None:
            return self._join_routee(slot)
        routee_id = f"{ctx.actor_id}/{slot}"
        if routee_id in engine._registry:
            raise ValueError(f"pool {ctx.actor_id!r} cannot make its routee {routee_id!r}: "
                             f"another actor has that id")
        args, kwargs, capacity, overflow = self._spawn_args
        engine._spawn_here(self.routee_class, routee_id, capacity, overflow, ctx, args, kwargs)
        routee = engine._registry[routee_id]
        engine._monitor_here(ctx, routee_id)
        self._routees[slot] = routee
        self._slot_of[routee_id] = slot
        return True

    def _join_routee(self, slot: int) -> bool:
        """A spread pool's routee of ``slot``: the actor under its id, here or on
        another engine (a stand-in), watched; False if there is none."""
        engine = self.ctx.engine
        routee_id = self._group[slot]                       # type: ignore[index]
        routee = engine._registry.get(routee_id) or engine._resolve_missing(routee_id)
        if routee is None:
            log.error("pool %r: no actor %r to route to", self.ctx.actor_id, routee_id)
            return False
        engine._monitor_here(self.ctx, routee_id)
        self._routees[slot] = routee
        self._slot_of[routee_id] = slot
        return True

    def _refresh(self) -> None:
        """Recompute the routees that take messages, and the hash ring."""
        self._live = [] if self._stopping else [
            c for slot, c in sorted(self._routees.items())
            if slot not in self._retiring and c._state is _RUNNING]
        if self.routing == "consistent_hash":
            points = sorted((_mix64(hash((slot, point))), slot)
                            for slot in range(self.size) for point in range(_RING_POINTS))
            self._ring = [point for point, _ in points]
            self._ring_slots = [slot for _, slot in points]

    def _command(self, item: tuple[Any, ...]) -> None:
        """A poison pill for the pool, or a routee's Terminated notice."""
        if self._done:
            return
        if item[2] is _COMMAND:
            if item[1] is _POISON_PILL and not self._stopping:
                self._stopping = True
                self._live = []
                for routee in list(self._routees.values()):
                    self._pill(routee)
                self._maybe_done()
            return
        slot = self._slot_of.pop(item[0], None)
        if slot is None or self._routees.get(slot) is None:
            return
        del self._routees[slot]
        self._retiring.discard(slot)
        if self._stopping:
            self._maybe_done()
        elif slot < self.size and self._group is None:
            self.ctx.engine._follow_up(self._replace, slot)
        self._refresh()

    def _pill(self, routee: Context) -> None:
        """Stop ``routee`` after what its inbox already has, past its policy, as
        ``Context.shutdown`` queues an actor's own stop: a full "block" inbox
        raised InboxFull here, and left the pool half stopped for good (a
        helper's review).  What waits for room then becomes dead letters."""
        if routee._inbox.__class__ is _StandInInbox:
            # A spread pool's routee on another engine: a pill as any sent there.
            self.ctx.engine._enqueue(routee, _PILL)
            return
        list.append(routee._inbox, _PILL)
        if not routee._scheduled:
            self.ctx.engine._schedule(routee)

    def _maybe_done(self) -> None:
        if not self._routees and self.ctx._state is _RUNNING:
            self.ctx.engine._follow_up(self.ctx.engine._stop_actor, self.ctx,
                                       "stopped by poison pill", [])

    def _replace(self, slot: int) -> None:
        """A routee stopped: a new one in its slot, unless that happens too often.

        Called from the engine's inbound queue: run() may be done after it.
        """
        try:
            self._replace_now(slot)
        finally:
            self.ctx.engine._check_idle()

    def _replace_now(self, slot: int) -> None:
        ctx = self.ctx
        if self._stopping or ctx._state is not _RUNNING or slot >= self.size \
                or slot in self._routees:
            return
        strategy = self.supervisor
        now = time.monotonic()
        replaced = self._replaced
        while replaced and replaced[0] <= now - strategy.within_s:
            replaced.popleft()
        if len(replaced) >= strategy.max_restarts:
            log.error("pool %r lost its routee %s/%d and replaced routees %d times within "
                      "%s s; not replacing it (resize() to try again)", ctx.actor_id,
                      ctx.actor_id, slot, strategy.max_restarts, strategy.within_s)
            return
        replaced.append(now)
        try:
            self._spawn_routee(slot)
        except Exception:
            log.exception("pool %r could not replace its routee %s/%d", ctx.actor_id,
                          ctx.actor_id, slot)
        self._refresh()

    # -- routing: the router inbox calls one of these per message -------------

    def _deliver(self, routee: Context, item: Any) -> None:
        if self._afar and _is_block(routee._inbox) and not routee._inbox.has_room():
            # From another engine: it waits in the routee's line, as one for a
            # "block" actor does, and the transport's answer waits for it (it
            # was a dead letter: its sender is not here to pause).
            return self.ctx.engine._wait_from_afar(routee, item)
        try:
            _append_item(routee, item)
        except InboxFull:
            if _unpack(item)[0] is not None:
                raise               # an actor's send: it gets InboxFull, as if sent direct
            self.ctx.engine._dead_letter(routee.actor_id, _item_envelope(*_unpack(item)),
                                         "inbox full")
            return
        if not routee._scheduled:
            if routee._inbox.__class__ is _StandInInbox:
                # A spread pool's routee on another engine: its stand-in's turn
                # only hands the messages to the link, so it goes ahead of the
                # local turns, which may be long.  Behind a local routee's turn
                # of 128 jobs, the other engine sat idle: 300 CPU-bound asks
                # over 2 engines, 1.05-1.1x a plain pool's jobs/s (review25).
                self.ctx.engine._schedule_ahead(routee)
            else:
                self.ctx.engine._schedule(routee)

    def _no_routee(self, item: Any, reason: str | None = None) -> None:
        if reason is None:
            reason = "pool is stopping" if self._stopping else "pool has no routee"
        self.ctx.engine._dead_letter(self.ctx.actor_id, _item_envelope(*_unpack(item)), reason)

    def _round_robin(self, item: Any) -> None:
        live = self._live
        if not live:
            return self._no_routee(item)
        turn = self._next
        self._next = turn + 1
        self._deliver(live[turn % len(live)], item)

    def _least_loaded(self, item: Any) -> None:
        live = self._live
        if not live:
            return self._no_routee(item)
        count = len(live)
        start = self._next                  # ties go round the routees in turn
        self._next = start + 1
        if self._block:
            return self._least_in_line(live, start, item)
        # Other routees have no line: inboxes alone, with no call per routee
        # (_load for every pool cost 8 busy routees 1,300 -> 1,700 ns a message).
        best = live[start % count]
        shortest = len(best._inbox) - best._head
        for step in range(1, count):
            if not shortest:
                break
            routee = live[(start + step) % count]
            length = len(routee._inbox) - routee._head
            if length < shortest:
                best, shortest = routee, length
        self._deliver(best, item)

    def _least_in_line(self, live: list[Context], start: int, item: Any) -> None:
        """``_least_loaded`` for "block" routees: full ones tie on their
        inboxes, so the messages waiting in their lines decide.  (A method of
        its own: in _least_loaded, this closure made its locals cells, and 8
        busy routees 17,350 -> 18,300 instructions a message; callgrind, 3.11.)"""
        count = len(live)
        self._deliver(min((live[(start + step) % count] for step in range(count)),
                          key=_load), item)

    def _broadcast(self, item: Any) -> None:
        live = list(self._live)
        if not live:
            return self._no_routee(item)
        tag = item[2] if item.__class__ is tuple else None
        if tag is None or tag is _PUBLISH:
            for routee in live:
                self._deliver(routee, item)
            return
        sender_id, message, reply = item        # an ask or a proxied call: gather
        answers: list[Any] = [None] * len(live)
        waiting = [len(live)]
        engine = self.ctx.engine
        # A local ask's parts are of its kind (a proxied call's run the method);
        # an ask from elsewhere (another engine, the driver) gathers plain asks.
        kind: type[_Reply] = reply.__class__ if isinstance(reply, _Reply) else \
            _CallReply if reply.__class__ in _CALL_REPLIES else _Reply
        for index, routee in enumerate(live):
            part = kind(engine, AskFuture(engine), routee.actor_id, sender_id, False)
            part.future.add_done_callback(
                functools.partial(_gather, reply, answers, waiting, index))
            self._deliver(routee, (sender_id, message, part))

    def _consistent_hash(self, item: Any) -> None:
        live = self._live
        if not live:
            return self._no_routee(item)
        message = item[1] if item.__class__ is tuple else item
        try:
            point = _mix64(hash(self._hash_key(message)))   # type: ignore[misc]
        except Exception as exc:
            log.error("hash_key of pool %r failed on %r", self.ctx.actor_id, message,
                      exc_info=exc)
            return self._no_routee(item, f"hash_key failed: {exc!r}")
        ring, slots, routees = self._ring, self._ring_slots, self._routees
        index = bisect.bisect_left(ring, point)
        for step in range(len(ring)):       # the first live slot clockwise
            slot = slots[(index + step) % len(ring)]
            routee = routees.get(slot)
            if routee is not None and slot not in self._retiring \
                    and routee._state is _RUNNING:
                return self._deliver(routee, item)
        self._no_routee(item)


def _load(routee: Context) -> int:
    """A "block" routee's load for "least_loaded": its queued messages, and
    those waiting for room in its full inbox (a full inbox alone would tie
    with every other full one, however long the line behind it)."""
    length: int = len(routee._inbox) - routee._head
    extra = routee._extra
    if extra is not None and extra.waiting:
        length += len(extra.waiting)
    return length


def _gather(reply: Any, answers: list[Any], waiting: list[int], index: int,
            future: Future[Any]) -> None:
    """One routee answered a broadcast ask: settle the ask once all have, or one
    failed.  ``reply``: any reply channel (``done()``, ``settle()``)."""
    if reply.done():
        return
    exc = future.exception()
    if exc is not None:
        waiting[0] = -1
        reply.settle(None, exc)
        return
    answers[index] = future.result()
    waiting[0] -= 1
    if waiting[0] == 0:
        reply.settle(answers, None)


def _check_pool_args(size: Any, routing: Any, hash_key: Any, supervisor: Any) -> None:
    if isinstance(size, bool) or not isinstance(size, int):
        if type(size) is _Required:
            raise size.error()
        raise TypeError(f"spawn_pool() needs an int size, not {size!r}")
    if size < 1:
        raise ValueError(f"spawn_pool() needs a size of at least 1, got {size}")
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}: use one of "
                         f"{', '.join(map(repr, ROUTINGS))}")
    if routing == "consistent_hash":
        if not callable(hash_key):
            raise TypeError("routing='consistent_hash' needs hash_key=, a function from a "
                            "message to its key: spawn_pool(..., routing='consistent_hash', "
                            "hash_key=lambda message: message.user_id)")
    elif hash_key is not None:
        raise ValueError(f"hash_key= is only for routing='consistent_hash', not {routing!r}")
    if supervisor is not None and not isinstance(supervisor, SupervisorStrategy):
        raise TypeError(f"supervisor must be a backstage.SupervisorStrategy such as "
                        f"OneForOne(), not {supervisor!r}")



###############################################################################
# Test kit
# An actor for users' own tests, which records what it receives and waits for
# what should come (see also Engine(raise_failures=True)).
###############################################################################

_ANY: Any = object()        # Probe.expect(): any message, any sender


class Probe:
    """An actor for tests: records every envelope, and waits for expected ones.

    ``engine.spawn_actor(Probe, "probe", reply=fn)`` also answers each ask
    with ``fn(message)``.  ``expect``, ``wait_for`` and ``expect_no_message``
    called on the engine's thread with no run going (a plain test) run the
    engine until the message is there or the time is up; called from another
    thread they wait while the engine runs in its own.
    """

    def __init__(self, ctx: Context, reply: Callable[[Any], Any] | None = None) -> None:
        if reply is not None and not callable(reply):
            raise TypeError(f"Probe needs reply=, a function from a message to the answer, "
                            f"not {reply!r}")
        self.ctx = ctx
        self.envelopes: list[Envelope] = []     # everything received, in order
        self._reply = reply
        self._next = 0                          # the next envelope expect() looks at
        self._arrived = threading.Condition()
        self._until: Callable[[], bool] | None = None   # ends a run expect() drives

    @property
    def messages(self) -> list[Any]:
        """The messages received so far, in order."""
        return [envelope.message for envelope in self.envelopes]

    def receive(self, envelope: Envelope) -> None:
        with self._arrived:
            self.envelopes.append(envelope)
            self._arrived.notify_all()
        if self._reply is not None and getattr(envelope, "_reply", None) is not None:
            envelope.reply(self._reply(envelope.message))
        if self._until is not None and self._until():
            self.ctx.engine.stop()

    def expect(self, expected: Any = _ANY, *, where: Callable[[Any], bool] | None = None,
               sender: str | None = _ANY, timeout: float = 3.0) -> Envelope:
        """The next message must match: equal ``expected`` (an instance of it, if
        it is a class), pass ``where(message)``, and come from ``sender``.
        Returns its envelope; ``AssertionError`` otherwise or after ``timeout`` s."""
        wanted = _Wanted(expected, where, sender)
        envelope = self._take(timeout, "expect")
        if envelope is None:
            raise AssertionError(f"expected {wanted} at {self.ctx.actor_id!r} within "
                                 f"{timeout} s, got nothing")
        if not wanted.matches(envelope):
            raise AssertionError(f"expected {wanted} at {self.ctx.actor_id!r}, got "
                                 f"{envelope.message!r} from {envelope.sender_id!r}")
        return envelope

    def wait_for(self, expected: Any = _ANY, *, where: Callable[[Any], bool] | None = None,
                 sender: str | None = _ANY, timeout: float = 3.0) -> Envelope:
        """Like ``expect``, but messages that do not match are skipped."""
        wanted = _Wanted(expected, where, sender)
        deadline = time.monotonic() + timeout
        skipped: list[Any] = []
        while True:
            envelope = self._take(max(0.0, deadline - time.monotonic()), "wait_for")
            if envelope is None:
                raise AssertionError(f"expected {wanted} at {self.ctx.actor_id!r} within "
                                     f"{timeout} s; got only {skipped!r}"[:2000])
            if wanted.matches(envelope):
                return envelope
            skipped.append(envelope.message)

    def expect_no_message(self, within: float = 0.1) -> None:
        """``AssertionError`` if a message comes within ``within`` seconds."""
        envelope = self._take(within, "expect_no_message")
        if envelope is not None:
            raise AssertionError(f"expected no message at {self.ctx.actor_id!r}, got "
                                 f"{envelope.message!r} from {envelope.sender_id!r}")

    def _take(self, timeout: float, call: str) -> Envelope | None:
        """The next unread envelope, waiting at most ``timeout`` s; None if none came."""
        _check_delay(call, "within" if call == "expect_no_message" else "timeout", timeout,
                     allow_zero=True)

        def arrived() -> bool:
            return len(self.envelopes) > self._next

        engine = self.ctx.engine
        if not arrived():
            if not engine._running:
                self._drive(engine, arrived, timeout)
            elif engine._on_engine_thread():
                raise RuntimeError(
                    f"{call}() would block the engine: it waits for messages the engine "
                    f"thread must deliver. Call it from the test's thread, with the engine "
                    f"idle there or running in another thread")
            else:
                with self._arrived:
                    self._arrived.wait_for(arrived, timeout)
        with self._arrived:
            if not arrived():
                return None
            envelope = self.envelopes[self._next]
            self._next += 1
            return envelope

    def _drive(self, engine: Engine, arrived: Callable[[], bool], timeout: float) -> None:
        """Run the idle engine here until a message arrives or ``timeout`` passes."""
        self._until = arrived
        handle = engine._loop.call_later(timeout, engine.stop)
        try:
            engine._run(until_idle=False)
        finally:
            handle.cancel()
            self._until = None


class _Wanted:
    """What a Probe waits for, and how to say it in an error."""
    __slots__ = ("expected", "where", "sender")

    def __init__(self, expected: Any, where: Callable[[Any], bool] | None, sender: Any) -> None:
        if where is not None and not callable(where):
            raise TypeError(f"where= needs a function from a message to a bool, not {where!r}")
        self.expected = expected
        self.where = where
        self.sender = sender

    def matches(self, envelope: Envelope) -> bool:
        message, expected = envelope.message, self.expected
        if expected is not _ANY:
            if isinstance(expected, type):
                if not isinstance(message, expected):
                    return False
            elif not message == expected:
                return False
        if self.sender is not _ANY and envelope.sender_id != self.sender:
            return False
        return self.where is None or bool(self.where(message))

    def __str__(self) -> str:
        expected = self.expected
        if expected is _ANY:
            text = "a message"
        elif isinstance(expected, type):
            text = f"a {expected.__name__}"
        else:
            text = repr(expected)
        if self.where is not None:
            text += f" passing {getattr(self.where, '__name__', 'where')}"
        if self.sender is not _ANY:
            text += f" from {self.sender!r}"
        return text


###############################################################################
# Inspector feed
# A Unix-socket stats feed for inspector_curses.py: JSON snapshots on a timer.
###############################################################################

# The feed costs nothing per message: Context._count, bumped once per turn, is
# the counter it reads.  Every interval (INSPECTOR_INTERVAL by default) a loop timer samples
# the counters, updates the rolling rates and, when a client is connected,
# writes one JSON line to each client without blocking.  The socket and the
# timer are the engine's own housekeeping: they never keep run() going.

INSPECTOR_SMOOTHING = 0.3     # weight of the newest sample in a rolling messages/s
INSPECTOR_FORMAT = 1          # the "v" of every line the feed writes
# A client that has not taken this many snapshots in a row (its socket buffer
# is full, a newer snapshot replaced the waiting one each time) is disconnected.
INSPECTOR_STALL_LIMIT = 20
_INSPECTOR_LINE_MAX = 65536   # longest command line a client may send
_INSPECTOR_REPLIES_MAX = 64   # replies queued for a client that does not read
_INSPECTOR_INTERVAL_RANGE = (0.01, 3600.0)
# sun_path holds 108 bytes on Linux, 104 on macOS, with the final NUL.
_UNIX_PATH_MAX = 103

# The advice every inspector path error ends with.
_PICK_PATH = ("pass Engine(inspector='/some/short/path.sock'), or set XDG_RUNTIME_DIR "
              "to a directory of your own")

# Socket path -> (owner pid, device, inode): removed at normal exit when still ours.
_INSPECTOR_SOCKETS: dict[str, tuple[int, int, int]] = {}


def inspector_dir() -> str:
    """The per-user directory of inspector sockets (it may not exist yet).

    ``$XDG_RUNTIME_DIR/backstage`` when that variable names a directory, else
    ``backstage-<uid>`` in the temporary directory.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "backstage")
    return os.path.join(tempfile.gettempdir(), f"backstage-{os.getuid()}")


def _program_name() -> str:
    """A file-name-safe name for this program: the script's name without .py."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if name.endswith(".py"):
        name = name[:-3]
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:32]
    return name if name and name not in ("-c", "_c", "-") else "python"


def _make_private_dir(path: str) -> None:
    """Make ``path`` a directory only this user can enter (mode 0700)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(f"inspector directory {path} is not a directory owned by this "
                              f"user, so its sockets would not be private: {_PICK_PATH}")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


def _socket_is_live(path: str) -> bool:
    """True when a process accepts connections on the Unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True       # e.g. the backlog is full: someone is there
    finally:
        probe.close()
    return True


class _SocketBusy(BackstageError):
    """A live engine already serves that socket path."""


def _listen_unix(path: str) -> socket.socket:
    """A non-blocking listening socket at ``path``, mode 0600.

    A socket file nobody listens on (left by a dead process) is replaced; a live
    one is never stolen; any other sort of file is left alone.
    """
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise ValueError(f"inspector socket path is {len(os.fsencode(path))} bytes long, over "
                         f"the {_UNIX_PATH_MAX} a Unix socket allows: {_PICK_PATH}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            # On Linux bind() gives the file the socket's own mode less the
            # umask: 0600 from birth, with no window where others may connect.
            os.fchmod(sock.fileno(), 0o600)
        except OSError:
            pass
        try:
            sock.bind(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise FileNotFoundError(
                    exc.errno, f"cannot make the inspector socket {path}: its directory "
                    f"{os.path.dirname(path) or '.'!r} does not exist: create it first, or "
                    f"pass inspector=True for the per-user directory") from None
            if exc.errno != errno.EADDRINUSE:
                raise
            if _socket_is_live(path):
                raise _SocketBusy(f"another engine is serving {path}; a live inspector socket "
                                  f"is never replaced: stop that program, or pick another "
                                  f"path") from None
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise FileExistsError(f"{path} exists and is not a socket; the inspector will "
                                      f"not replace it: remove it, or pick another "
                                      f"path") from None
            log.info("inspector: replacing the stale socket %s", path)
            os.unlink(path)
            sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _peer_uid(conn: socket.socket) -> int | None:
    """The user id of the process at the other end, where the OS tells (Linux)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None       # elsewhere the 0700 directory is the only guard
    creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", creds)[1]
    return pid


def _remove_inspector_sockets() -> None:
    """At normal exit: remove the sockets this process still owns."""
    for path in list(_INSPECTOR_SOCKETS):
        _unlink_socket(path)


def _unlink_socket(path: str) -> None:
    owner = _INSPECTOR_SOCKETS.pop(path, None)
    if owner is None or owner[0] != os.getpid():
        return            # not ours, or a forked child's copy of the table
    try:
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == owner[1:]:
            os.unlink(path)
    except OSError:
        pass


atexit.register(_remove_inspector_sockets)


class _InspectorClient:
    """One connected inspector: what it has yet to read and to send."""
    __slots__ = ("sock", "fd", "inbuf", "sending", "waiting", "replies", "behind", "writing")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()                  # command bytes up to the next newline
        self.sending: memoryview | None = None    # the rest of the line being written
        self.waiting: bytes | None = None         # the newest snapshot, not yet started
        self.replies: list[bytes] = []            # command replies, before any snapshot
        self.behind = 0                           # snapshots in a row it could not take
        self.writing = False                      # the loop watches fd for writing


class _InspectorFeed:
    """The stats feed of one engine; every method runs on the engine's thread."""

    def __init__(self, engine: Engine, where: Literal[True] | str | os.PathLike[str],
                 interval: float) -> None:
        self._engine = engine
        self._loop = engine._loop
        self.interval = float(interval)
        self.program = _program_name()
        self._made_dir: str | None = None            # a fallback directory made for us
        if where is True:
            self._sock, self.path = self._listen_default()
        else:
            self.path = os.path.abspath(os.fsdecode(where))
            self._sock = _listen_unix(self.path)
        info = os.lstat(self.path)
        _INSPECTOR_SOCKETS[self.path] = (os.getpid(), info.st_dev, info.st_ino)
        self._fd = self._sock.fileno()
        self._clients: dict[int, _InspectorClient] = {}   # by fd
        self.seq = 0                                 # snapshots sampled so far
        self._sampled_at = self._loop.time()         # loop time of the last sample
        self._rates: dict[str, list[Any]] = {}            # id -> [ctx, count then, msgs/s rolling]
        self._retired = 0                            # messages of actors gone since
        self._total = 0                              # messages total at the last sample
        self._rate_now = 0.0                         # engine msgs/s over the last interval
        self._rate_avg = 0.0                         # engine msgs/s, rolling
        # Counted on the cold paths (a failure, a restart, a dead letter) and
        # at the start of a batch turn, only while the feed is on.
        self.failure_count = 0                       # exceptions raised by receive
        self._failures: dict[Context, int] = {}      # per actor
        self._restarts: dict[Context, int] = {}
        self._dead_to: dict[Context, int] = {}       # dead letters to a live actor
        self._hwm: dict[Context, int] = {}           # longest inbox since the last sample
        self._by_reason: dict[str, int] = {}         # dead letters by reason, ever
        self._by_target: dict[str, int] = {}         # and by target id
        self._recent: collections.deque[DeadLetter | dict[str, Any]] = collections.deque(
            maxlen=_DEAD_LETTERS_RECENT)             # formatted when first sent
        self._receive_s = 0.0                        # seconds in receive, all actors
        self._busy_share = 0.0                       # of the engine thread, last interval
        self._timed: dict[Context, float] = {}       # seconds of the timed turns, per actor
        self._busy = 0.0                             # seconds in ticks since the last sample
        self._busy_timed = 0.0                       # of which in ticks whose turns were timed
        self._busy_scaled = 0.0                      # of which timed or cheap (scaled)
        self._time_all = True                        # time every turn of the next tick
        self._fresh_line: bytes | None = None        # the snapshot new clients share
        self._send_lock = threading.Lock()           # the watchdog writes too
        self.stuck_after = max(2 * self.interval, 1.0)  # seconds held: a "stuck" line
        self._accept_pause = 0.0                     # seconds; 0: accepting
        self._accept_failures = 0                    # since the last accept that worked
        self._accept_timer: Any = None               # ends the pause
        # Set by a cluster transport: {"name", "engine", "engines"}; the snapshot
        # then says which cluster this engine is part of (the inspector groups them).
        self.cluster: dict[str, Any] | None = None
        self._loop.add_reader(self._fd, self._accept)
        self._timer = self._loop.call_later(self.interval, self._on_timer)
        log.info("inspector feed at %s; open it with: python inspector_curses.py %s",
                 self.path, self.path)

    def _listen_default(self) -> tuple[socket.socket, str]:
        directory = inspector_dir()
        try:
            _make_private_dir(directory)
        except PermissionError as exc:
            # Someone else made it first (or planted a file there): a fresh
            # private directory instead, which inspector_curses.py also finds.
            directory = tempfile.mkdtemp(prefix=f"backstage-{os.getuid()}-")
            self._made_dir = directory
            log.warning("inspector: %s; using the fresh private directory %s instead",
                        exc, directory)
        stem = f"{self.program}-{os.getpid()}"
        for n in range(1, 100):
            path = os.path.join(directory, stem + (".sock" if n == 1 else f".{n}.sock"))
            try:
                return _listen_unix(path), path
            except _SocketBusy:
                continue      # another engine of this process has it
        raise _SocketBusy(f"99 engines of this process already serve inspector feeds in "
                          f"{directory}: close some")

    # -- snapshots -----------------------------------------------------------

    # Sampling the counters on a timer, and the JSON snapshot.
    def _on_timer(self) -> None:
        # Re-arm first, so a slow snapshot does not drift the period.
        self._timer = self._loop.call_later(self.interval, self._on_timer)
        try:
            self._sample()
            if self._clients:
                line = self.snapshot_line()
                for client in list(self._clients.values()):
                    self._give_snapshot(client, line)
        except Exception:
            log.exception("inspector: snapshot failed; the feed goes on")

    def _sample(self) -> None:
        """Read every actor's counter and update the rolling rates."""
        now = self._loop.time()
        elapsed = max(now - self._sampled_at, 1e-6)
        self._sampled_at = now
        alpha = INSPECTOR_SMOOTHING
        keep = 1.0 - alpha
        old = self._rates
        rates: dict[str, list[Any]] = {}
        live = 0
        for actor_id, ctx in self._engine._registry.items():
            if ctx._inbox.__class__ is _StandInInbox:
                continue            # an actor on another engine: counted there
            count = ctx._count
            live += count
            entry = old.pop(actor_id, None)
            if entry is None or entry[0] is not ctx:
                if entry is not None:
                    self._retired += entry[0]._count   # a new actor under an old id
                # [ctx, count then, msgs/s, receive s, receive ms/s, share, high-water]
                rates[actor_id] = entry = [ctx, count, count / elapsed, 0.0, 0.0, 0.0,
                                           1 if count else 0]
            else:
                entry[2] = alpha * (count - entry[1]) / elapsed + keep * entry[2]
                entry[6] = 1 if count != entry[1] else 0   # a turn of one message
                entry[1] = count
                rates[actor_id] = entry
        for entry in old.values():
            self._retired += entry[0]._count            # stopped since the last sample
        self._rates = rates
        self._sample_receive(rates, elapsed)
        total = self._retired + live
        self._rate_now = (total - self._total) / elapsed
        self._rate_avg = (self._rate_now if self.seq == 0
                          else alpha * self._rate_now + keep * self._rate_avg)
        self._total = total
        self.seq += 1

    def snapshot(self) -> dict[str, Any]:
        """The current snapshot as a dict (the rates are those of the last sample)."""
        engine = self._engine
        now = self._loop.time()
        wall = time.time()
        rates = self._rates
        restarts, failures, dead_to = self._restarts, self._failures, self._dead_to
        rows: list[dict[str, Any]] = []
        forwarded = 0               # messages stand-ins handed to other engines
        waiting = 0                 # actors parked (see _waits_of)
        # The context's fields read directly rather than through its
        # properties, the extra state once: 1.4 -> 0.8 ms at 1,000 actors.
        for actor_id, ctx in engine._registry.items():
            if ctx._inbox.__class__ is _StandInInbox:
                forwarded += ctx._count
                continue
            entry = rates.get(actor_id)
            if entry is not None and entry[0] is not ctx:
                entry = None
            rate = entry[2] if entry is not None else 0.0
            count = ctx._count
            inbox = ctx._inbox
            extra = ctx._extra
            subscribers = extra.subscribers if extra is not None else None
            subscriptions = extra.subscriptions if extra is not None else None
            hwm = entry[6] if entry is not None and entry[0] is ctx else 0
            queued = len(inbox) - ctx._head
            waits = _waits_of(extra.waiting_on) if extra is not None else []
            waiting += bool(waits)
            rows.append({
                "id": actor_id,
                "type": type(ctx._actor).__name__,
                "parent": ctx.parent,
                "state": ctx._state,
                "inbox": queued,
                "capacity": ctx.capacity,
                "overflow": inbox._policy.name if inbox.__class__ is _BoundedInbox else "grow",
                "messages_total": count,
                "messages_per_s": round(rate, 2),
                "last_message_at": round(wall - (now - ctx._last), 3) if count else None,
                "subscribers": sum(map(len, subscribers.values())) if subscribers else 0,
                "subscriptions": sorted(map(list, subscriptions)) if subscriptions else [],
                "restarts": restarts.get(ctx, 0),
                "failures": failures.get(ctx, 0),
                "dead_letters": dead_to.get(ctx, 0),
                "receive_s": round(entry[3], 4) if entry is not None else 0.0,
                "receive_ms_per_s": round(entry[4], 2) if entry is not None else 0.0,
                "busy_share": round(entry[5], 4) if entry is not None else 0.0,
                "inbox_hwm": hwm if hwm > queued else queued,
                "strategy": _strategy_repr(ctx),
                "waiting_on": waits,
            })
        return {
            "v": INSPECTOR_FORMAT,
            "type": "snapshot",
            "seq": self.seq,
            "time": round(wall, 3),
            "interval": self.interval,
            "engine": {
                "pid": os.getpid(),
                "program": self.program,
                "backend": engine.backend,
                "started_at": round(engine.started_at, 3),
                "uptime": round(wall - engine.started_at, 3),
                "actors": len(rows),
                "waiting": waiting,
                "messages_total": self._retired + sum(r["messages_total"] for r in rows),
                "messages_per_s": round(self._rate_now, 2),
                "messages_per_s_avg": round(self._rate_avg, 2),
                "dead_letters": engine.dead_letter_count,
                "restarts": engine.restart_count,
                "clients": len(self._clients),
                "failures": self.failure_count,
                "receive_s": round(self._receive_s, 4),
                "busy_share": round(self._busy_share, 4),
                "dead_letters_by_reason": self._by_reason,
                "dead_letters_by_target": dict(sorted(
                    self._by_target.items(), key=lambda kv: -kv[1])[:_DEAD_LETTER_TOP]),
                "dead_letters_recent": self._recent_rows(),
                **({"cluster": {**self.cluster, "sent_to_other_engines": forwarded}}
                   if self.cluster is not None else {}),
            },
            "actors": rows,
        }

    def snapshot_line(self) -> bytes:
        return _json_line(self.snapshot())

    def set_interval(self, seconds: float) -> None:
        self.interval = float(seconds)
        self._timer.cancel()
        self._timer = self._loop.call_later(self.interval, self._on_timer)

    def timed_turns(self, ready: collections.deque[Context],
                    turn: Callable[[Context, float], int], now: float, budget: int) -> None:
        """The engine's tick while the feed is on: the same turns, timed.

        The tick as a whole is timed (two clock reads a tick): the engine's
        busy share, exactly.  Each turn is timed too (one clock read a turn),
        unless the engine is saturated with cheap messages (busy over
        _SATURATED of the last interval or of this one so far, under _CHEAP_S a
        message in the last tick): then one tick in _TIMED_ONE_IN at random times its turns,
        and an actor's time is its timed turns scaled by all cheap ticks' time
        over the timed ones', an unbiased estimate.  Timing every turn cost
        saturated ping-pong ~20 %; this costs it ~1 % (bench/bench_inspector.py),
        and an engine with time to spare pays a clock read per turn.
        """
        clock = time.perf_counter
        start = clock()
        handled = budget
        # The clock's nanoseconds as the dice: random enough, and no import.
        timed = self._time_all or not int(start * 1e9) % _TIMED_ONE_IN
        try:
            if not timed:
                while ready and budget > 0:
                    budget -= turn(ready.popleft(), now)
            else:
                spent = self._timed
                began = start
                while ready and budget > 0:
                    ctx = ready.popleft()
                    budget -= turn(ctx, now)
                    ended = clock()
                    spent[ctx] = spent.get(ctx, 0.0) + (ended - began)
                    began = ended
        finally:
            seconds = clock() - start
            handled -= budget
            cheap = handled > 0 and seconds / handled < _CHEAP_S
            self._busy += seconds
            window = now - self._sampled_at
            saturated = self._busy_share >= _SATURATED or (
                window > _SATURATION_WINDOW_S and self._busy >= _SATURATED * window)
            self._time_all = not (cheap and saturated)
            if timed:
                self._busy_timed += seconds
                self._busy_scaled += seconds
            elif cheap:
                self._busy_scaled += seconds   # like the timed ones: scaled from them

    def _sample_receive(self, rates: dict[str, list[Any]], elapsed: float) -> None:
        """Time in receive over the last interval, and the high-water marks."""
        hwm, self._hwm = self._hwm, {}
        for entry in rates.values():
            seen = hwm.get(entry[0])
            if seen is not None and seen > entry[6]:
                entry[6] = seen
        registry = self._engine._registry
        for counts in (self._failures, self._restarts, self._dead_to):
            for ctx in [c for c in counts if registry.get(c.actor_id) is not c]:
                del counts[ctx]         # gone: its row went with it
        busy, busy_timed = self._busy, self._busy_timed
        if self._busy_scaled > 0 and busy_timed == 0:
            return          # no tick timed its turns yet: the busy time waits for one
        timed, self._timed = self._timed, {}
        scale = self._busy_scaled / busy_timed if busy_timed > 0 else 0.0
        self._busy = self._busy_timed = self._busy_scaled = 0.0
        for entry in rates.values():
            seconds = timed.get(entry[0], 0.0) * scale
            share = min(seconds / elapsed, 1.0)
            entry[3] += seconds
            entry[4] = share * 1000.0
            entry[5] = share
        self._busy_share = min(busy / elapsed, 1.0)
        self._receive_s += busy

    # -- counting, called by the engine on its cold paths ---------------------

    def failed(self, ctx: Context) -> None:
        self.failure_count += 1
        self._failures[ctx] = self._failures.get(ctx, 0) + 1

    def restarted(self, ctx: Context) -> None:
        self._restarts[ctx] = self._restarts.get(ctx, 0) + 1

    def saw_inbox(self, ctx: Context, waiting: int) -> None:
        if waiting > self._hwm.get(ctx, 0):
            self._hwm[ctx] = waiting

    def dead_letter(self, record: DeadLetter) -> None:
        self._recent.append(record)
        _bump(self._by_reason, record.reason)
        _bump(self._by_target, record.target_id)
        ctx = self._engine._registry.get(record.target_id)
        if ctx is not None:
            self._dead_to[ctx] = self._dead_to.get(ctx, 0) + 1

    def _recent_rows(self) -> list[dict[str, Any]]:
        """The recent dead letters, most recent first, each formatted once."""
        recent = self._recent
        rows: list[dict[str, Any]] = []
        for i, record in enumerate(recent):
            if isinstance(record, DeadLetter):
                envelope = record.envelope
                message = getattr(envelope, "message", envelope)
                recent[i] = record = {
                    "time": round(record.time, 3), "target": record.target_id,
                    "sender": getattr(envelope, "sender_id", None), "reason": record.reason,
                    "type": type(message).__name__, "repr": _short_repr(message)}
            rows.append(record)
        rows.reverse()
        return rows

    def _line_for_new_clients(self) -> bytes:
        """One snapshot line for every client accepted in this loop tick."""
        if self._fresh_line is None:
            self._fresh_line = self.snapshot_line()
            self._loop.call_soon(self._forget_fresh_line)
        return self._fresh_line

    def _forget_fresh_line(self) -> None:
        self._fresh_line = None

    def write_from_watchdog(self, obj: dict[str, Any]) -> None:
        """Write a line to every client now, from the watchdog's thread.

        Only to clients with nothing half-written; what the socket does not
        take at once is left for the engine thread's next flush.
        """
        line = _json_line(obj)
        with self._send_lock:
            for client in list(self._clients.values()):
                if client.sending is not None:
                    continue
                try:
                    sent = client.sock.send(line)
                except OSError:
                    continue
                if sent < len(line):
                    client.sending = memoryview(line)[sent:]

    # -- clients -------------------------------------------------------------

    # Connected inspectors: accepting, writing, commands, dropping.
    def _accept(self) -> None:
        for _ in range(16):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._accept_failed(exc)
                return
            if self._accept_pause:
                log.warning("inspector: accepting again after %d failed accepts",
                            self._accept_failures)
                self._accept_pause, self._accept_failures = 0.0, 0
            try:
                uid = _peer_uid(conn)
            except OSError:
                uid = -1
            if uid is not None and uid != os.getuid():
                log.warning("inspector: refused a client of user id %s; only user id %s "
                            "is served", uid, os.getuid())
                conn.close()
                continue
            conn.setblocking(False)
            client = _InspectorClient(conn)
            self._clients[client.fd] = client
            self._loop.add_reader(client.fd, self._on_readable, client)
            try:
                # Something to show at once, shared by the clients of this tick.
                self._give_snapshot(client, self._line_for_new_clients())
            except Exception:
                log.exception("inspector: snapshot failed; the feed goes on")

    def _accept_failed(self, exc: OSError) -> None:
        """Out of file descriptors or memory: stop accepting for a pause that doubles,
        then resume; one log line per pause.  Unpaused, accept() failed at once
        again and again: tens of thousands of log lines a second."""
        self._accept_failures += 1
        if exc.errno not in _OUT_OF_RESOURCES:
            log.warning("inspector: accept failed: %s", exc)
            return
        self._accept_pause = min(_ACCEPT_PAUSE_LAST, self._accept_pause * 2 or _ACCEPT_PAUSE_FIRST)
        if self._accept_pause < _ACCEPT_PAUSE_LAST:
            log.warning("inspector: accept failed: %s; pausing accepts for %.2f s", exc,
                        self._accept_pause)
        self._loop.remove_reader(self._fd)
        self._accept_timer = self._loop.call_later(self._accept_pause, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._accept_timer = None
        self._loop.add_reader(self._fd, self._accept)

    def _give_snapshot(self, client: _InspectorClient, line: bytes) -> None:
        """Give ``client`` the newest snapshot, dropping one it has not started."""
        if client.waiting is not None:
            client.behind += 1
            if client.behind >= INSPECTOR_STALL_LIMIT:
                log.warning("inspector: a client took no snapshot for %d intervals; "
                            "disconnected", client.behind)
                self._drop(client)
                return
        else:
            client.behind = 0
        client.waiting = line
        self._flush(client)

    def _reply(self, client: _InspectorClient, reply: dict[str, Any]) -> None:
        if len(client.replies) >= _INSPECTOR_REPLIES_MAX:
            log.warning("inspector: a client sends commands and reads no reply; disconnected")
            self._drop(client)
            return
        client.replies.append(_json_line({"v": INSPECTOR_FORMAT, **reply}))
        self._flush(client)

    def _flush(self, client: _InspectorClient) -> None:
        """Write what the socket takes now; watch for writability for the rest."""
        with self._send_lock:       # the watchdog may write a stuck line meanwhile
            self._flush_locked(client)

    def _flush_locked(self, client: _InspectorClient) -> None:
        while True:
            if client.sending is None:
                if client.replies:
                    client.sending = memoryview(client.replies.pop(0))
                elif client.waiting is not None:
                    client.sending = memoryview(client.waiting)
                    client.waiting = None
                else:
                    break
            try:
                sent = client.sock.send(client.sending)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(client)
                return
            rest = client.sending[sent:]
            client.sending = rest if len(rest) else None
        blocked = client.sending is not None
        if blocked != client.writing:
            client.writing = blocked
            if blocked:
                self._loop.add_writer(client.fd, self._flush, client)
            else:
                self._loop.remove_writer(client.fd)

    def _on_readable(self, client: _InspectorClient) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.inbuf += data
        while self._clients.get(client.fd) is client:
            end = client.inbuf.find(b"\n")
            if end < 0:
                break
            line = bytes(client.inbuf[:end])
            del client.inbuf[:end + 1]
            self._command(client, line)
        if len(client.inbuf) > _INSPECTOR_LINE_MAX and self._clients.get(client.fd) is client:
            log.warning("inspector: a client sent a line of over %d bytes; disconnected",
                        _INSPECTOR_LINE_MAX)
            self._drop(client)

    def _command(self, client: _InspectorClient, line: bytes) -> None:
        """Carry out one command line, and answer it with a reply or an error line."""
        if not line.strip():
            return
        try:
            command = json.loads(line)
        except ValueError:
            command = None
        if not isinstance(command, dict):
            return self._reply(client, {
                "type": "error", "cmd": None,
                "error": 'commands are one JSON object per line, such as '
                         '{"cmd": "poison_pill", "id": "worker-1"}'})
        name = command.get("cmd")
        if name == "poison_pill":
            actor_id = command.get("id")
            if type(actor_id) is not str or actor_id not in self._engine._registry:
                return self._reply(client, {
                    "type": "error", "cmd": name,
                    "error": f"no actor has the id {actor_id!r}; nothing was stopped"})
            ctx = self._engine._registry[actor_id]
            inbox = ctx._inbox
            if inbox.__class__ is _BoundedInbox and ctx.overflow != "drop_oldest" \
                    and not inbox.has_room():
                return self._reply(client, {
                    "type": "error", "cmd": name,
                    "error": f"the inbox of {actor_id!r} is full (capacity {ctx.capacity}, "
                             f"overflow {ctx.overflow!r}): a poison pill would not get in; "
                             f"nothing was stopped, try again once it has room"})
            try:
                self._engine.poison_pill(actor_id)
            except Exception as exc:    # noqa: BLE001 - told to the client, not raised in the loop
                return self._reply(client, {
                    "type": "error", "cmd": name,
                    "error": f"the poison pill for {actor_id!r} failed: {exc}; nothing was "
                             f"stopped"})
            return self._reply(client, {"type": "reply", "cmd": name, "ok": True,
                                        "id": actor_id})
        if name == "interval":
            seconds = command.get("seconds")
            low, high = _INSPECTOR_INTERVAL_RANGE
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                    or not low <= seconds <= high:
                return self._reply(client, {
                    "type": "error", "cmd": name,
                    "error": f"interval needs seconds between {low} and {high}, "
                             f"got {seconds!r}; the interval stays {self.interval}"})
            self.set_interval(seconds)
            return self._reply(client, {"type": "reply", "cmd": name, "ok": True,
                                        "seconds": self.interval})
        return self._reply(client, {
            "type": "error", "cmd": name if isinstance(name, str) else None,
            "error": f"unknown command {name!r}: the commands are poison_pill "
                     f"(with an id) and interval (with seconds)"})

    def _drop(self, client: _InspectorClient) -> None:
        if self._clients.pop(client.fd, None) is None:
            return
        self._loop.remove_reader(client.fd)
        if client.writing:
            self._loop.remove_writer(client.fd)
        client.sock.close()
        client.waiting = client.sending = None

    @property
    def clients(self) -> int:
        return len(self._clients)

    def close(self) -> None:
        """Disconnect every client and remove the socket file."""
        self._timer.cancel()
        if self._accept_timer is not None:
            self._accept_timer.cancel()
        for client in list(self._clients.values()):
            self._drop(client)
        self._loop.remove_reader(self._fd)
        self._sock.close()
        _unlink_socket(self.path)
        self._rates = {}
        if self._made_dir is not None:
            try:
                os.rmdir(self._made_dir)
            except OSError:
                pass            # another engine of ours still has its socket there


# Out of these, accept() fails at once until a descriptor is free: the feed
# pauses accepting, from the first pause to the last, doubling.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_PAUSE_FIRST = 0.05      # seconds
_ACCEPT_PAUSE_LAST = 2.0        # seconds


# The feed's JSON, compact.  Our own snapshots hold no cycles, so the encoder
# need not look for them: 1.8 -> 1.5 ms for 1,000 actors.
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _json_line(obj: dict[str, Any]) -> bytes:
    return _JSON.encode(obj).encode() + b"\n"

def _refuse_timeout_here(timeout: Any) -> None:
    _check_delay("send", "timeout", timeout, allow_zero=True)
    raise ValueError("send(timeout=...) applies only to a send from another thread while "
                     "the engine runs (it bounds the wait for room); on the engine's own "
                     "thread a send never waits: leave timeout out")


class _Described:
    """``str()`` of it describes an envelope (or any object) safely and briefly.

    Handed to the logger as an argument, so nothing is formatted unless a
    handler emits the record; a ``repr`` that raises, or a 50 MB message,
    never fails or slows the failure path (a failing receive on a 50 MB
    message cost 0.6 s with logging off when formatted eagerly).
    """
    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __str__(self) -> str:
        obj = self.obj
        if isinstance(obj, Envelope):
            topic = f", topic={obj.topic!r}" if obj.topic is not None else ""
            kind = getattr(obj.message_type, "name", obj.message_type)
            return (f"Envelope(sender_id={_safe_repr(obj.sender_id)}, message_type={kind}, "
                    f"message={_safe_repr(obj.message)}{topic})")
        return _safe_repr(obj)


_short = reprlib.Repr()
_short.maxstring = _short.maxother = _short.maxlong = LOGGED_MESSAGE_CHARS


def _safe_repr(obj: Any) -> str:
    """``repr(obj)`` cut to LOGGED_MESSAGE_CHARS; never raises."""
    try:
        text = _short.repr(obj)
    except Exception as exc:        # noqa: BLE001 - a user's __repr__ may raise anything
        return f"<{type(obj).__name__} object; its repr() raised {type(exc).__name__}>"
    if len(text) > LOGGED_MESSAGE_CHARS:
        text = text[:LOGGED_MESSAGE_CHARS] + "..."
    return text


class _FailedOn:
    """Lazy "actor 'x' failed on <envelope>" for the failure log lines."""
    __slots__ = ("actor_id", "envelope")

    def __init__(self, actor_id: str, envelope: Envelope | None) -> None:
        self.actor_id = actor_id
        self.envelope = envelope

    def __str__(self) -> str:
        return f"actor {self.actor_id!r} failed on {_Described(self.envelope)}"


def _is_closed(fileobj: Any) -> bool:
    """True for a file object whose fd was closed (an int fd is never known closed)."""
    if isinstance(fileobj, int):
        return False
    try:
        return bool(fileobj.fileno() < 0)
    except (ValueError, OSError):
        return True


def _fd_number(call: str, fileobj: Any) -> int:
    """The fd number of what a watch call got, or a clear error at the call."""
    if isinstance(fileobj, int) and not isinstance(fileobj, bool):
        number = fileobj
    elif callable(getattr(fileobj, "fileno", None)):
        try:
            number = fileobj.fileno()
        except (ValueError, OSError):
            raise ValueError(f"{call}() cannot watch {fileobj!r}: it is closed") from None
    else:
        raise TypeError(f"{call}() needs a socket, a file object with fileno() or an int fd, "
                        f"not {fileobj!r}")
    if number < 0:
        raise ValueError(f"{call}() needs an open file: {number} is not an fd")
    return number


def _check_watchable(call: str, fileobj: Any, callback: Any) -> None:
    """What select/epoll would refuse later, refused at the call, said plainly."""
    number = _fd_number(call, fileobj)
    if not callable(callback):
        raise TypeError(f"{call}() needs a callable callback, not {callback!r}")
    _refuse_async_callback(call, callback)
    try:
        mode = os.fstat(number).st_mode
    except OSError:
        raise ValueError(f"{call}() cannot watch fd {number}: it is not open; pass an open "
                         f"socket, pipe or terminal") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        raise ValueError(f"{call}() cannot watch {fileobj!r}: regular files are always ready "
                         f"(select and epoll refuse them); read the file directly, or in a "
                         f"thread")


def _check_unwatchable(call: str, fileobj: Any) -> None:
    if not (isinstance(fileobj, int) or callable(getattr(fileobj, "fileno", None))):
        raise TypeError(f"{call}() needs the socket, file object or int fd that was watched, "
                        f"not {fileobj!r}")


def _class_behind(actor: Any) -> type:
    """The class whose methods a proxy to ``actor`` calls: a pool's routees'."""
    return actor.routee_class if isinstance(actor, Pool) else type(actor)


def _proxy_classes(maker: str, target_id: Any, cls: Any,
                   timeout: Any) -> tuple[type[Proxy[Any]], type | None]:
    """proxy()'s arguments checked: the Proxy class to make, and the actor's
    class if ``cls`` names it (``maker``: "engine" or "cluster", for the hint)."""
    _check_id("proxy", target_id)
    if cls is not None and not isinstance(cls, type):
        raise TypeError(f"proxy() needs the actor's class (or a Proxy subclass), such as "
                        f"{maker}.proxy({target_id!r}, Counter), not {cls!r}")
    if timeout is not None:
        _check_delay("proxy", "timeout", timeout, allow_zero=False)
    if cls is not None and issubclass(cls, Proxy):
        return cls, _proxied_class(cls)
    return Proxy, cls


def _no_actor_to_proxy(maker: str, target_id: str) -> str:
    return (f"cannot make a proxy for {target_id!r}: no actor has that id; pass its class, "
            f"{maker}.proxy({target_id!r}, TheClass), to make one before the actor exists")


def _check_proxied_class(target_id: str, actor_class: type, live_class: type | None) -> None:
    """proxy(id, cls) for a live actor of another class fails at the call, not per call."""
    if live_class is None:
        return
    if not issubclass(live_class, actor_class):
        raise TypeError(f"proxy() for {target_id!r} was given {actor_class.__name__}, but "
                        f"that actor's class is {live_class.__name__}: pass its own class, or "
                        f"leave the class out")


def _check_id(call: str, actor_id: Any) -> None:
    if type(actor_id) is not str:
        raise TypeError(f"{call}() needs a str actor id, not {actor_id!r}")
    if not actor_id:
        raise ValueError(f"{call}() got an empty actor id: pass the id the actor was "
                         f"spawned with")


def _check_int(what: str, value: Any, low: int = 1, high: int | None = None,
               why: str = "", kind: str = "an int") -> None:
    """TypeError unless ``value`` is an int (not a bool); ValueError outside
    ``low`` .. ``high`` (no upper bound if None)."""
    wrong_type = isinstance(value, bool) or not isinstance(value, int)
    if wrong_type or value < low or (high is not None and value > high):
        wanted = f"of at least {low}" if high is None else f"from {low} to {high}"
        raise (TypeError if wrong_type else ValueError)(
            f"{what} must be {kind} {wanted}, got {value!r}{why}")


def _check_engine_args(dead_letters_kept: Any, inbound_capacity: Any,
                       inbound_overflow: Any) -> None:
    _check_int("dead_letters_kept", dead_letters_kept, 1, DEAD_LETTERS_KEPT_MAX)
    _check_int("inbound_capacity", inbound_capacity,
               why=": the entries the cross-thread queue holds")
    if inbound_overflow not in get_args(InboundOverflow):
        raise ValueError(f"inbound_overflow must be 'block' or 'fail', got {inbound_overflow!r}: "
                         f"what a send from another thread does when the cross-thread "
                         f"queue is full")


# While the feed is on, every turn is timed unless the engine is saturated
# (busy over _SATURATED of the last interval) with cheap messages (under
# _CHEAP_S each): then one tick in _TIMED_ONE_IN, at random, times its turns.
_SATURATED = 0.5
_SATURATION_WINDOW_S = 0.005  # judged on the current interval once it is this long
_CHEAP_S = 5e-6
_TIMED_ONE_IN = 32
_DEAD_LETTERS_RECENT = 50     # dead letters a snapshot lists
_DEAD_LETTER_TOP = 20         # targets a snapshot counts dead letters for
_COUNTED_KEYS_MAX = 1000      # reasons or targets counted one by one; then "(other)"
_REPR_MAX = 120               # characters of a dead letter's repr in the feed
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _REPR_MAX
_STRATEGY_REPRS: dict[int, tuple[SupervisorStrategy, str]] = {}


def _bump(counts: dict[str, int], key: str) -> None:
    if key not in counts and len(counts) >= _COUNTED_KEYS_MAX:
        key = "(other)"
    counts[key] = counts.get(key, 0) + 1


def _short_repr(obj: Any) -> str:
    """A repr of at most _REPR_MAX characters that never raises."""
    try:
        text = _SHORT.repr(obj)
    except Exception as exc:
        text = f"<{type(obj).__name__}: repr failed with {type(exc).__name__}>"
    return text if len(text) <= _REPR_MAX else text[:_REPR_MAX - 3] + "..."


def _waits_of(waiting_on: dict[Any, int] | None) -> list[dict[str, Any]]:
    """Why a parked actor takes no turns, for the inspector: one entry per cause.

    ``{"on": "room", "id": target, "messages": n}``: n of its sends wait for
    room in target's full inbox (overflow "block"); ``{"on": "link", "id":
    target}``: its link to target's engine holds more than it may send soon
    (a Cluster's back-pressure); ``{"on": "await"}``: its async receive awaits.
    """
    if not waiting_on:
        return []
    waits: list[dict[str, Any]] = []
    for key, count in waiting_on.items():
        if key.__class__ is _Suspended:
            waits.append({"on": "await"})
        elif key._inbox.__class__ is _StandInInbox:
            waits.append({"on": "link", "id": key.actor_id})
        else:
            waits.append({"on": "room", "id": key.actor_id, "messages": count})
    return waits


def _strategy_repr(ctx: Context) -> str | None:
    """The strategy ``ctx`` applies to its children, when it declares one or has any."""
    strategy = getattr(ctx._actor, "supervisor", None)
    if not isinstance(strategy, SupervisorStrategy):
        if not ctx._children:
            return None
        strategy = DEFAULT_CHILD_STRATEGY
    known = _STRATEGY_REPRS.get(id(strategy))
    if known is None or known[0] is not strategy:
        known = _STRATEGY_REPRS[id(strategy)] = (strategy, repr(strategy))
    return known[1]


class _Watchdog:
    """Watches the engine thread from a thread of its own, from the engine's
    creation to its close (started early, so a run begins without waiting).

    Four times per slow_callback_s (or per the feed's stuck_after) it looks
    at the engine thread's stack (sys._current_frames): which user callback
    runs, and in which actor's turn.  The same callback seen for
    slow_callback_s is logged; for the feed's stuck_after, a "stuck" line goes
    to the feed's clients, and "unstuck" when it returns.  Nothing per
    message: a thread that needs the GIL sees the engine thread only when it
    lets go of it, which is why it finds long callbacks, not time shares (a
    sampling profiler built this way saw the demo's 5 %-busy engine as idle).
    """

    def __init__(self, engine: Engine, slow: float | None) -> None:
        self._engine = weakref.ref(engine)
        self.slow = slow                          # Engine(slow_callback_s=...)
        stuck = engine._inspector.stuck_after if engine._inspector is not None else 1.0
        self.period = min(max(min(slow or 1.0, stuck) / 4, _WATCHDOG_MIN_S), 0.25)
        self._held: Any = None                    # the callback frame seen last
        self._held_ctx: Context | None = None
        self._held_since = 0.0                    # monotonic time it was first seen
        self._held_wall = 0.0
        self._warned = False
        self._stuck_sent = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backstage-watchdog",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)
        self._held = self._held_ctx = None

    def _run(self) -> None:
        while not self._done.wait(self.period):
            engine = self._engine()
            if engine is None or engine._closed:
                return
            try:
                self._look(engine)
            except Exception:
                log.exception("the engine's watchdog failed; slow callbacks go unreported")
                return
            del engine

    def _look(self, engine: Engine) -> None:
        thread_id = engine._guards.thread_id
        frame = sys._current_frames().get(thread_id) \
            if engine._running and thread_id is not None else None
        ctx, callback = _callback_of(frame) if frame is not None else (None, None)
        del frame
        now = time.monotonic()
        if callback is not self._held:
            if self._stuck_sent and engine._inspector is not None:
                engine._inspector.write_from_watchdog({
                    "v": INSPECTOR_FORMAT, "type": "unstuck", "time": round(time.time(), 3),
                    "for_s": round(now - self._held_since, 3)})
            self._held, self._held_ctx = callback, ctx
            self._held_since, self._held_wall = now - self.period / 2, time.time()
            self._warned = self._stuck_sent = False
            return
        if callback is None:
            return
        held_for = now - self._held_since
        slow = self.slow
        what = _describe(self._held_ctx, callback)
        if slow is not None and not self._warned and held_for >= slow:
            self._warned = True
            held_ctx = self._held_ctx
            log.warning("%s has held the engine thread for %.1f s (over slow_callback_s=%s): "
                        "no other actor, timer or I/O runs meanwhile; move blocking work to "
                        "a thread (or raise slow_callback_s, or pass None)",
                        what, held_for, slow,
                        extra={"actor_id": held_ctx.actor_id} if held_ctx is not None else None)
        feed = engine._inspector
        if feed is not None and not self._stuck_sent and held_for >= feed.stuck_after:
            self._stuck_sent = True
            feed.write_from_watchdog({
                "v": INSPECTOR_FORMAT, "type": "stuck", "time": round(time.time(), 3),
                "since": round(self._held_wall - self.period / 2, 3),
                "for_s": round(held_for, 3),
                "actor": self._held_ctx.actor_id if self._held_ctx is not None else None,
                "callback": what})


_WATCHDOG_MIN_S = 0.01         # the watchdog looks at most this often
_HERE = os.path.normcase(os.path.abspath(__file__))
_BACKENDS = os.path.join(os.path.dirname(_HERE), "backends") + os.sep
_LOOP_FILES = (os.path.dirname(os.path.abspath(selectors.__file__)) + os.sep + "asyncio" + os.sep,
               os.path.abspath(selectors.__file__), os.path.abspath(threading.__file__))


def _is_engine_frame(code: Any) -> bool:
    name = os.path.normcase(code.co_filename)
    return name == _HERE or name.startswith(_BACKENDS) or name.startswith(_LOOP_FILES) \
        or "uvloop" in name


def _callback_of(frame: Any) -> tuple[Context | None, Any]:
    """(the actor whose turn it is or None, the user frame the engine called) of a stack.

    The user frame is the outermost frame that is not the engine's (nor its
    loop's) inside the engine's own frames; None when the engine thread runs
    its own code (or waits for I/O).
    """
    stack: list[Any] = []
    while frame is not None and len(stack) < 500:
        stack.append(frame)
        frame = frame.f_back
    inside = False
    outer = None
    for frame in reversed(stack):
        code = frame.f_code
        if _is_engine_frame(code):
            inside = inside or os.path.normcase(code.co_filename) == _HERE
            outer = frame
        elif inside:
            found = None
            if outer is not None:
                names = outer.f_code.co_varnames
                if "ctx" in names:
                    found = outer.f_locals.get("ctx")            # a turn
                elif "suspended" in names:      # an async receive's step after an await
                    found = getattr(outer.f_locals.get("suspended"), "ctx", None)
                elif "self" in names:
                    found = getattr(outer.f_locals.get("self"), "_ctx", None)  # a Timer
            return (found if isinstance(found, Context) else None), frame
    return None, None


def _describe(ctx: Context | None, frame: Any) -> str:
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)
    if ctx is not None:
        return f"receive of {ctx.actor_id}" if code.co_name == "receive" else \
            f"{name} of actor {ctx.actor_id}"
    return f"callback {name} ({os.path.basename(code.co_filename)}:{frame.f_lineno})"


def _check_slow_callback(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"slow_callback_s needs a number of seconds or None, not {value!r}: "
                        f"write Engine(slow_callback_s=1.0), or None to turn the warning off")
    if not 0 < value < float("inf"):
        raise ValueError(f"slow_callback_s needs seconds above 0 and finite, got {value!r}; "
                         f"pass None to turn the warning off")


def _check_inspector_args(inspector: Any, interval: Any) -> None:
    if not isinstance(inspector, (bool, str, os.PathLike)) and inspector is not None:
        raise TypeError(f"inspector must be False, True or a socket path, not {inspector!r}: "
                        f"write Engine(inspector=True) or Engine(inspector='/tmp/app.sock')")
    if isinstance(inspector, str) and not inspector:
        raise ValueError("inspector path may not be empty: pass Engine(inspector=True) for "
                         "the default path")
    low, high = _INSPECTOR_INTERVAL_RANGE
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise TypeError(f"inspector_interval needs a number of seconds, not {interval!r}")
    if not low <= interval <= high:
        raise ValueError(f"inspector_interval needs seconds between {low} and {high}, "
                         f"got {interval!r}")


###############################################################################
# Cluster
# Engines in other processes or on other machines, one id space: the front.
# The transports live in backends/ and are imported only when asked for.
###############################################################################

# Transport name -> where its cluster class lives, and how to install what it needs.
TRANSPORTS: dict[str, tuple[str, str]] = {
    "ray": ("backends.ray_transport:RayCluster",
            "pip install 'ray==2.60.0' (the version it is tested with)"),
}


class Cluster:
    """Several engines, each in its own process (or machine), with one id space.

        with backstage.Cluster(transport="ray", engines=4) as cluster:
            cluster.spawn_actor(Worker, "worker-17", *args, **kwargs)
            cluster.send("worker-17", job)
            cluster.ask("worker-17", question).result(timeout=5)

    The engines run from the start; every method works from any thread of
    the program without a run call.  An actor is placed on the engine that a
    stable hash of its id names (``pin=k`` places it on engine k); actors on
    any engine send, ask, publish and subscribe, monitor, poison-pill and
    spawn across engines exactly as on one engine, and per-sender order holds.
    Messages and actor classes travel pickled.  Without ``address=`` the
    cluster starts its transport (Ray) on this machine, bound to loopback, and
    ``close()`` shuts it down; with ``address=`` it joins a running one and
    leaves it running.  ``close()`` (or leaving the ``with`` block) closes
    every engine: every actor's ``deinit`` runs once.  See docs/cluster.md.
    """

    def __init__(self, transport: str = "ray", engines: int = 2, *,
                 address: str | None = None, **options: Any) -> None:
        _check_int("engines", engines)
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r}: use one of "
                             f"{', '.join(map(repr, TRANSPORTS))}")
        where, install = TRANSPORTS[transport]
        module_name, _, class_name = where.partition(":")
        package = _backends_package()       # as make_loop finds the loop backends
        if module_name.startswith("backends."):
            module_name = package + module_name[len("backends"):]
        if address is None and transport == "ray":
            # A Ray started here binds to loopback only (read when Ray is imported).
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name and exc.name.split(".")[0] == transport:
                raise ImportError(f"Cluster(transport={transport!r}) needs {transport!r}, "
                                  f"which is not installed: {install}") from exc
            if exc.name and (exc.name == package or exc.name.startswith(package + ".")):
                raise ImportError(
                    f"transport {transport!r} lives in the 'backends' package beside "
                    f"backstage.py, and it is not importable here: copy the backends/ folder "
                    f"next to backstage.py") from exc
            raise
        self.transport = transport
        self.engines = engines
        cluster_class = getattr(module, class_name)
        _check_cluster_options(transport, cluster_class, engines, address, options)
        self._impl = cluster_class(engines, address, **options)

    def __repr__(self) -> str:
        return f"<Cluster {self.transport} engines={self.engines}>"

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def spawn_actor(self, actor_class: type, id: str, *args: Any, pin: int | None = None,
                    capacity: int = DEFAULT_CAPACITY, overflow: Overflow = "grow",
                    **kwargs: Any) -> None:
        """Create an actor on its engine; it exists when this returns.

        ``args`` and ``kwargs`` go to ``actor_class(ctx, *args, **kwargs)``.
        The engine is the one the id's stable hash names, or ``pin``.  An
        exception from ``__init__`` propagates here.
        """
        _check_spawn_args(actor_class, id, capacity, overflow)
        if pin is not None:
            _check_int("pin", pin, 0, self.engines - 1, kind="an engine number")
        self._impl.spawn_actor(actor_class, id, args, kwargs, pin,
                               {"capacity": capacity, "overflow": overflow})

    def spawn_pool(self, actor_class: type, /, id: str, size: int, *args: Any,
                   routing: Routing = "round_robin",
                   hash_key: Callable[[Any], Hashable] | None = None,
                   capacity: int = DEFAULT_CAPACITY, overflow: Overflow = "grow",
                   supervisor: SupervisorStrategy | None = None, pin: int | None = None,
                   spread: bool = False, **kwargs: Any) -> None:
        """``Engine.spawn_pool`` on one engine: the router ``id`` and its routees
        ``id/0`` ... ``id/{size-1}`` live on the engine ``id``'s hash names, or
        ``pin``; they exist when this returns.  Sends, asks and proxy calls to
        ``id`` from the driver and from every engine reach the routees.

        ``spread=True`` puts routee k on the k-th live engine from the router's,
        so that the pool works on every engine's core.  Its routees are actors
        of their own there (their engine's supervisor treats their failures);
        the router routes to them and watches them: one that stops, or whose
        engine is lost, leaves the pool, and is not replaced.  A poison pill
        to the pool stops them all.  "least_loaded" cannot see their inboxes,
        and is refused; a spread pool cannot resize.
        """
        _check_pool_args(size, routing, hash_key, supervisor)
        _check_spawn_args(actor_class, id, capacity, overflow, "spawn_pool")
        if pin is not None:
            _check_int("pin", pin, 0, self.engines - 1, kind="an engine number")
        if type(spread) is not bool:
            raise TypeError(f"spread must be True or False, not {spread!r}")
        if spread and routing == "least_loaded":
            raise ValueError('a spread pool cannot route "least_loaded": its routees\' '
                             'inboxes are on other engines; use "round_robin" or '
                             '"consistent_hash", or spread=False')
        pool: dict[str, Any] = {"size": size, "routing": routing, "hash_key": hash_key,
                                "supervisor": supervisor}
        options: dict[str, Any] = {"capacity": capacity, "overflow": overflow}
        if spread:
            pool["routee_ids"] = self._spawn_spread(actor_class, id, size, args, kwargs, pin,
                                                    options)
            if pool["routee_ids"] is None:
                return                      # a pool lives under the id: it is the one
        try:
            self._impl.spawn_actor(actor_class, id, args, kwargs, pin, {**options, "pool": pool})
        except BaseException:
            if spread:
                self._stop_all(pool["routee_ids"])
            raise

    def _spawn_spread(self, actor_class: type, pool_id: str, size: int, args: tuple[Any, ...],
                      kwargs: dict[str, Any], pin: int | None,
                      options: dict[str, Any]) -> list[str] | None:
        """A spread pool's routees, routee k pinned to the k-th live engine from
        the router's; None if a pool lives under ``pool_id`` already.  Checked
        first, so that a refused call makes none; if one cannot be made, those
        made are stopped before this raises."""
        home: int = self._impl.where(pool_id) if pin is None else pin
        lost = self._impl.lost
        if home in lost:
            live = [i for i in range(self.engines) if i not in lost]
            raise BackstageError(f"cannot spawn {pool_id!r} on engine {home}: {lost[home]}; "
                                 f"pass pin= one of the live engines {live} to spawn it there")
        kind = self._impl.call(home, _what_lives, pool_id)
        if kind == "pool":
            return None
        if kind is not None:
            raise TypeError(f"spawn_pool() found {pool_id!r} taken by an actor of class "
                            f"{kind}, not a pool: pick another id")
        routee_ids = [f"{pool_id}/{k}" for k in range(size)]
        for routee_id in routee_ids:
            where = self._impl.where(routee_id)
            if where not in lost and self._impl.call(where, _what_lives, routee_id):
                raise ValueError(f"cannot spread the pool {pool_id!r}: {routee_id!r}, the "
                                 f"id of one of its routees, is taken on engine {where}; stop "
                                 f"that actor first, or pick another id")
        live = [i for i in range(self.engines) if i not in lost]
        start = live.index(home)
        made: list[str] = []
        try:
            for k, routee_id in enumerate(routee_ids):
                self._impl.spawn_actor(actor_class, routee_id, args, kwargs,
                                       live[(start + k) % len(live)], options)
                made.append(routee_id)
        except BaseException:
            self._stop_all(made)
            raise
        return routee_ids

    def _stop_all(self, actor_ids: list[str], timeout: float = 10.0) -> None:
        """Poison-pill ``actor_ids`` and wait, up to ``timeout`` seconds, until
        they are gone: a call that failed leaves none of what it made."""
        for actor_id in actor_ids:
            self.poison_pill(actor_id)
        deadline = time.monotonic() + timeout
        for actor_id in actor_ids:
            while time.monotonic() < deadline:
                where = self._impl.where(actor_id)
                if where in self._impl.lost or not self._impl.call(where, _what_lives,
                                                                    actor_id):
                    break
                time.sleep(0.01)

    def send(self, target_id: str, message: Any) -> None:
        """Send ``message`` to ``target_id`` (sender_id None); any thread.

        A message that does not pickle raises TypeError here; a message to an
        id with no actor, or to a lost engine, is a dead letter.
        """
        if type(target_id) is not str:
            raise TypeError(f"send() needs a str actor id, not {target_id!r}")
        self._impl.send(target_id, message)

    def ask(self, target_id: str, message: Any, timeout: float | None = 5.0) -> AskFuture[Any]:
        """Send ``message`` and return a future for the reply; any thread.

        The future's callbacks run on a thread of the driver's; in asyncio
        code, ``await`` it."""
        if type(target_id) is not str:
            raise TypeError(f"ask() needs a str actor id, not {target_id!r}")
        if timeout is not None:
            _check_delay("ask", "timeout", timeout, allow_zero=False)
        future: AskFuture[Any] = self._impl.ask(target_id, message, timeout)
        return future

    @overload
    def proxy(self, id: str, cls: None = None, *,
              timeout: float | None = None) -> Proxy[Any]: ...
    @overload
    def proxy(self, id: str, cls: type[_PX], *, timeout: float | None = None) -> _PX: ...
    @overload
    def proxy(self, id: str, cls: type[_A], *, timeout: float | None = None) -> Proxy[_A]: ...

    def proxy(self, id: str, cls: type | None = None, *,
              timeout: float | None = None) -> Any:
        """A proxy for the actor ``id``, on whichever engine it lives; any thread.

        As ``Engine.proxy``: ``proxy.method(...)`` runs that method on the
        actor's engine, as a message in order with this driver's sends, and
        returns an ``AskFuture`` of its result (``result()``, callbacks on a
        thread of the driver's, ``await`` in asyncio code).  Arguments and
        results travel pickled.  ``cls``: the actor's class, to make a proxy
        before the actor exists, or a ``Proxy`` subclass.  ``timeout``: seconds
        after which a call fails with ``TimeoutError`` (default: none; a call
        to a lost engine fails with ``ActorNotFound``).
        """
        proxy_class, actor_class = _proxy_classes("cluster", id, cls, timeout)
        live_class = self._impl.class_for_proxy(id, actor_class)
        if actor_class is None:
            if live_class is None:
                raise ActorNotFound(_no_actor_to_proxy("cluster", id))
            actor_class = live_class
        return proxy_class(self, id, actor_class, None, False, timeout)

    def _call(self, proxy: Proxy[Any], call: MethodCall, /) -> AskFuture[Any]:
        """A driver proxy's call: an ask whose message is ``call`` (see Proxy)."""
        future: AskFuture[Any] = self._impl.ask(proxy._target_id, call, proxy._timeout, "call")
        return future

    def poison_pill(self, target_id: str) -> None:
        """Stop ``target_id`` after the messages already in its inbox; any thread."""
        if type(target_id) is not str:
            raise TypeError(f"poison_pill() needs a str actor id, not {target_id!r}")
        self._impl.send(target_id, None, "pill")

    def get_engine_of(self, actor_id: str) -> int:
        """The engine number ``actor_id`` lives on: pinned by spawn_actor, spawned
        there by an actor (once that engine has told the others), else placed
        by its hash."""
        _check_id("get_engine_of", actor_id)
        engine: int = self._impl.where(actor_id)
        return engine

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every engine is idle and nothing is in flight; False on timeout.

        Idle means no message queued in any engine and none between engines,
        and every engine has handled the losses of engines the driver knows of
        (their traffic dead-lettered, their actors' monitors told); timers and
        pending asks do not count.
        """
        if timeout is not None:
            _check_delay("wait_idle", "timeout", timeout, allow_zero=True)
        idle: bool = self._impl.wait_idle(timeout)
        return idle

    def dead_letters(self) -> list[DeadLetter]:
        """The dead letters of every live engine and of the driver's own sends
        (the newest ``dead_letters_kept`` of those, as an engine keeps); once
        closed, the driver's own only (those of close() among them)."""
        letters: list[DeadLetter] = self._impl.dead_letters()
        return letters

    def stats(self) -> list[dict[str, Any]]:
        """One dict per live engine: pid, actors, messages, dead letters, links."""
        stats: list[dict[str, Any]] = self._impl.stats()
        return stats

    def kill_engine(self, engine: int) -> None:
        """Kill one engine's process, as a crash would (for tests and drills)."""
        if isinstance(engine, bool) or not isinstance(engine, int) \
                or not 0 <= engine < self.engines:
            raise (ValueError if isinstance(engine, int) and not isinstance(engine, bool)
                   else TypeError)(f"kill_engine() needs an engine number from 0 to "
                                   f"{self.engines - 1}, got {engine!r}")
        self._impl.kill_engine(engine)

    @property
    def lost(self) -> dict[int, str]:
        """Engines lost so far: number -> why."""
        lost: dict[int, str] = self._impl.lost
        return lost

    def close(self) -> None:
        """Close every engine (every actor's deinit runs once); idempotent."""
        self._impl.close()


###############################################################################
# Helpers
# Small functions the rooms above share: argument checks and wrappers.
###############################################################################

_IDENTITY_EQ: Any = object.__eq__


def _alike(a: Any, b: Any) -> bool:
    """False only if ``a`` and ``b`` are known to differ: a value whose class
    compares by identity (a lambda, a fresh strategy object) or whose ``==``
    cannot say (an array) is taken as alike, for a get-or-spawn makes them anew."""
    if a is b:
        return True
    if type(a) is not type(b) or isinstance(a, type):   # a class is never made anew
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(map(_alike, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_alike(a[k], b[k]) for k in a)
    if getattr(type(a), "__eq__", None) is _IDENTITY_EQ:
        return True
    try:
        return bool(a == b)
    except Exception:       # noqa: BLE001 - an __eq__ that cannot say
        return True


def _warn_unused_spawn(ctx: Context, capacity: int, overflow: str, args: tuple[Any, ...],
                       kwargs: dict[str, Any] | None) -> None:
    """A spawn found its id taken by an actor of its class, which it returns
    (DESIGN: as in the seed): warn if the call asked for anything else than
    what that actor has, which it then does not get.  A repeated spawn with
    the same arguments (get-or-spawn) says nothing."""
    unused = []
    old_args, old_kwargs = ctx._init_args or ((), None)
    if type(ctx._actor) is Pool:     # made by name (see _spawn_pool); a bare get: none
        given, had = kwargs or {}, old_kwargs or {}
    else:
        given = {"args": args, "kwargs": kwargs or {}}
        had = {"args": old_args, "kwargs": old_kwargs or {}}
    for name, value in given.items():
        if name in had and not _alike(value, had[name]):
            unused.append(f"{name}={reprlib.repr(value)} (it has {reprlib.repr(had[name])})")
    if overflow != ctx.overflow:
        unused.append(f"overflow={overflow!r} (it has {ctx.overflow!r})")
    elif OVERFLOW_POLICIES[overflow].bounded and capacity != ctx.capacity:
        unused.append(f"capacity={capacity} (it has {ctx.capacity})")
    if unused:
        log.warning("spawn %r: the id is taken by a running %s, which is returned as it "
                    "is; not used: %s (get_actor(id) takes an actor without spawning; "
                    "poison_pill it first to spawn it anew)", ctx.actor_id,
                    type(ctx._actor).__name__, "; ".join(unused),
                    extra={"actor_id": ctx.actor_id})


def _taken(actor_id: str, actor: Any, actor_class: type) -> str:
    """Why a spawn of ``actor_class`` cannot take ``actor_id``, held by ``actor``
    (of another class), in the words of the call the user made."""
    call, wants = ("spawn_pool()", "a pool") if actor_class is Pool else \
        ("spawn_actor()", actor_class.__name__)
    has = (f"a pool of {actor.routee_class.__name__}" if type(actor) is Pool
           else f"an actor of class {type(actor).__name__}")
    return (f"{call} found {actor_id!r} taken by {has}, not {wants}: pick another id, "
            f"or take the one there with get_actor({actor_id!r})")


def _init_mismatch(actor_class: Any, ctx: Context, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> str | None:
    """Why ``actor_class(ctx, *args, **kwargs)`` does not match its
    ``__init__``'s parameters, or None if it does (the TypeError came from
    inside it)."""
    import inspect
    try:
        inspect.signature(actor_class.__init__).bind(None, ctx, *args, **kwargs)
    except TypeError as exc:
        given = ", ".join(["ctx", *map(reprlib.repr, args),
                           *(f"{k}={reprlib.repr(v)}" for k, v in kwargs.items())])
        return (f"{actor_class.__name__}({given}) does not match its __init__: {exc}. "
                f"An actor's __init__ takes the engine's Context first, then the spawn's "
                f"extra arguments: def __init__(self, ctx, ...)")
    except ValueError:
        return None                         # no signature to read (a builtin)
    return None

def _check_cluster_options(transport: str, cluster_class: Any, engines: int,
                           address: str | None, options: dict[str, Any]) -> None:
    """Options the transport does not take, refused in the Cluster's own words."""
    import inspect
    try:
        inspect.signature(cluster_class).bind(engines, address, **options)
    except TypeError as exc:
        takes = [p.name for p in inspect.signature(cluster_class).parameters.values()
                 if p.kind is p.KEYWORD_ONLY]
        raise TypeError(f"Cluster(transport={transport!r}) {exc}: its options are "
                        f"{', '.join(takes)} (docs/cluster.md)") from None


def _what_lives(engine: Engine, actor_id: str) -> str | None:
    """What lives under ``actor_id`` on ``engine``: "pool", an actor's class
    name, or None (a cluster's spread spawn asks each engine, on its thread)."""
    actor = engine.get_actor(actor_id)
    if actor is None:
        return None
    return "pool" if isinstance(actor, Pool) else type(actor).__name__


def _check_spawn_args(actor_class: Any, actor_id: Any, capacity: Any, overflow: Any,
                      call: str = "spawn_actor") -> None:
    """``call``: the public call checked, for the message ("spawn_pool")."""
    if not isinstance(actor_class, type):
        if isinstance(actor_class, str):
            raise TypeError(f"{call}() needs the class itself, not its name "
                            f"{actor_class!r}: import it and pass it, {call}(Greeter, "
                            f"id=...)")
        raise TypeError(f"{call}() needs a class, not {actor_class!r}: "
                        f"write {call}(Greeter, id=...), not {call}(Greeter(), ...)")
    if not callable(getattr(actor_class, "receive", None)):
        raise TypeError(f"{call}() needs a class with a receive(self, envelope) method; "
                        f"{actor_class.__name__} has none")
    if type(actor_id) is not str:
        if type(actor_id) is _Required:
            raise actor_id.error(actor_class)
        raise TypeError(f"actor ids are strings, not {type(actor_id).__name__}: got {actor_id!r}")
    if not actor_id:
        raise ValueError("actor ids may not be empty: pass id='some-name'")
    # ASCII always encodes: no bytes object made per spawn.  With the class
    # check of capacity below and the "grow" check in _spawn_here:
    # create-and-stop (25k, callgrind, 3.11) 45,297 -> 44,236 instructions per actor.
    if not actor_id.isascii():
        try:
            actor_id.encode()
        except UnicodeEncodeError:
            raise ValueError(f"actor ids must be valid Unicode text (encodable as UTF-8), "
                             f"got {actor_id!r}: a lone surrogate cannot be logged, shown or "
                             f"sent elsewhere") from None
    if capacity.__class__ is not int and (isinstance(capacity, bool)
                                          or not isinstance(capacity, int)):
        raise TypeError(f"capacity must be an int, not {capacity!r}")
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1, got {capacity}")
    if not isinstance(overflow, str) or overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"unknown overflow policy {overflow!r}: use one of "
                         f"{', '.join(map(repr, OVERFLOW_POLICIES))}")
    supervisor = getattr(actor_class, "supervisor", None)
    if supervisor is not None and not isinstance(supervisor, SupervisorStrategy):
        raise TypeError(f"{actor_class.__name__}.supervisor must be a backstage."
                        f"SupervisorStrategy such as OneForOne(), not {supervisor!r}")


def _run_into_future(future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result = fn(*args)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        if handler is not None:     # None: set from C, cannot be put back from Python
            signal.signal(signum, handler)


def _guarded(ctx: Context, callback: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            callback()
        except Exception as exc:
            ctx.engine._callback_failed(ctx, exc, "fd callback")
    return run

