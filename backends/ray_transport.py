"""The Ray transport of ``backstage.Cluster``: engines in Ray actors, one id space.

``backstage.Cluster(transport="ray", engines=N)`` imports this module (and so
Ray) only when asked for.  Each engine is a backstage ``Engine`` run by a
thread of its own in one threaded Ray actor (``EngineHost``, its own
process); Ray's calls hand their work to that thread.  The driver (the
program that made the Cluster) is not an engine: it talks to the hosts
through Ray calls.

How a message crosses (see docs/cluster.md for the whole design and figures):

- An actor id lives on the engine its stable hash names (blake2b of the id,
  modulo the number of engines; never Python's salted ``hash()``), unless it
  is pinned: spawned by the driver with ``pin=k``, or spawned by an actor on
  its own engine.  Pins are told to every engine.
- The first send to an id that is not local installs a *stand-in* in the
  local registry (the engine's transport seam).  Later sends are ordinary
  appends to its inbox; its turn hands the whole inbox to the *link* to the
  engine that owns the id, once per tick.
- A link to a peer batches what its stand-ins hand it, pickles the batch once
  (protocol 5) and calls ``peer.deliver`` fire-and-forget, with a sequence
  number; at most ``window`` calls are in flight, and the acknowledgements
  (the calls' answers, given once the batch is handled, taken by a waiter
  thread per link and handed to the engine's thread) release the next
  batches: back-pressure without polling.  An answer may carry a batch of
  the peer's back (``_Link.ride``).
- Between engines on one Ray node, the same packets and answers go over a
  Unix socket that the engines' own loops read and write (``_Conn``), not by
  Ray calls: no thread, no hop, ten times the throughput at small batches.
  Ray still starts, places and watches the engines, carries the driver's
  calls and links engines on different nodes.
- Ray does not keep the call order of an actor that runs calls on several
  threads (nor of an async one), so the receiver keeps a reorder buffer per
  sender (engine or driver) and applies batches in sequence order:
  per-sender order holds across engines.
- Every host watches every peer with a call that never returns: when a peer
  is lost, its call fails at once, and the watcher turns what it had buffered
  for the peer into dead letters, what was in flight into dead letters marked
  "possibly delivered", stops the stand-ins of the peer's actors (their
  monitors get TERMINATED), and fails the asks the peer had not answered.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import heapq
import io
import logging
import operator
import os
import pickle
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING, Any, NamedTuple

import ray

if not hasattr(ray, "remote"):
    # A directory named ray found first on sys.path, such as Ray's own temp
    # directory /tmp/ray for a program run from /tmp: a namespace package.
    raise ImportError(f"'import ray' found {list(getattr(ray, '__path__', []))}, not Ray: "
                      f"install Ray, or run from a directory without a 'ray' folder in it",
                      name="ray")

if TYPE_CHECKING:
    import backstage
    from backstage import ActorNotFound, DeadLetter, Engine, Envelope
else:
    try:        # vendored: pkg/_vendor/backstage.py beside pkg/_vendor/backends/
        from .. import backstage
    except ImportError:     # backends/ at the top level, or installed as backstage.backends
        import backstage
    ActorNotFound, DeadLetter, Engine, Envelope = (
        backstage.ActorNotFound, backstage.DeadLetter, backstage.Engine, backstage.Envelope)

__all__ = ["RayCluster", "EngineHost", "home_of", "this_engine"]

log = logging.getLogger("backstage.cluster")

# The link source index of the driver (engines are 0 .. N-1).
DRIVER = -1
# Messages per link call at most; under load batches grow to this.
DEFAULT_BATCH_LIMIT = 1000
# Link calls in flight at most per link; then batches wait for acknowledgements.
DEFAULT_WINDOW = 4
# Seconds a link may hold senders without an answer from its peer before it
# lets them go (see _Link.hold): a cycle of waits through another engine
# cannot then stall them for good.
_HOLD_VALVE = 1.0
# The stops (id, engine) each engine remembers, the newest, so that a word of
# where an id lives that the stop overtook is known stale (_Host.pin).
UNPINNED_KEPT = 10_000
# Seconds between sweeps of the stand-ins: one that held nothing and handed
# nothing over since the sweep before is dropped (the next send makes it anew),
# so an engine does not keep one for every id it ever sent to.
STAND_IN_SWEEP_S = 30.0
# The driver's own pins (pin= moves, ids of lost engines) are checked against
# the engines' when they first number this many, then twice as many as were
# left: those no engine keeps any more (their actors stopped) go.
DRIVER_PINS_CHECKED_AT = 10_000

# Wire codes of queued items that are not plain sends.  A plain send crosses
# as the engine's own (sender_id, message, None) tuple, untouched.
(_PUBLISH, _TERMINATED, _ASK, _PILL, _SUB, _UNSUB, _MON, _DEMON, _DROPPED, _CALL,
 _FORWARDED) = range(1, 12)
_MT = backstage.MessageType
_CODES = {_MT.PUBLISH: _PUBLISH, _MT.TERMINATED: _TERMINATED, _MT.POISON_PILL: _PILL,
          _MT.SUBSCRIBE: _SUB, _MT.UNSUBSCRIBE: _UNSUB, "monitor": _MON, "demonitor": _DEMON,
          "dropped": _DROPPED, backstage._FORWARDED_PUBLICATION: _FORWARDED}
# What _Host._uncode gives for a publication its subscriber no longer wants.
_UNWANTED = object()


_TUPLE = {tuple}
# Classes whose instances unpickle as instances of the same class: a run of
# one sender's messages of only these (exact classes, no subclass) is vouched
# to hold no tuple when it arrives (Engine._deliver_remote_run's no_tuples).
# Each is pickled by the pickler's own code, not through copyreg's table,
# which any import may change (complex is in that table: left out).  Any
# other class may unpickle as something else (its __reduce__ says what).
_KEEP_THEIR_CLASS = frozenset({int, float, bool, str, bytes, bytearray, type(None),
                               list, dict, set, frozenset})
_first, _second, _third = (operator.itemgetter(i) for i in range(3))
# How the items of one entry of a batch cross (see _Link._wire).
_CODED, _PLAIN, _ONE_SENDER = range(3)
# A link call's packet: this header (source, sequence number, acknowledged),
# then the pickled batch; an answer's: the sequence number, then the batch.
# Read apart, so that a batch that cannot be unpickled still moves the
# sequence on (and becomes dead letters) instead of stopping the link.
_CALL_HEADER = struct.Struct("<qqq")
_RIDE_HEADER = struct.Struct("<q")


_RUNNING = backstage._RUNNING
# What a record may hold besides its inbox (monitors, subscribers, held senders...).
_EXTRAS_FIELDS = backstage._Extras.__slots__
# The reply id of an ask that ended before its batch was packed: registered nowhere.
_ENDED_ASK = "ended before it was sent"
# The sender of an entry of a link whose items are tuples (see _Link.pending).
_EXPLICIT = object()


def _is_stand_in(ctx: Any) -> bool:
    """Whether ``ctx`` is a stand-in for an actor on another engine."""
    return ctx._inbox.__class__ is backstage._StandInInbox


def _routee_of_a_pool(stand_in: Any) -> bool:
    """Whether a pool here routes to ``stand_in``, a spread pool's routee on
    another engine: the pool watches its routees."""
    monitors = stand_in._monitors
    return bool(monitors) and any(isinstance(watcher._actor, backstage.Pool)
                                  for watcher in monitors.values())


def _sends_to(stand_in: Any) -> int:
    """The engine a stand-in sends to: the peer of the link it hands its items to."""
    return stand_in._inbox._flush.__self__.peer  # type: ignore[no-any-return]


# The engine of this process, in an engine process (one per process).
_current: _Host | None = None


def this_engine() -> int | None:
    """The number of the cluster engine this code runs on, or None outside one."""
    return None if _current is None else _current.index


def current_host() -> _Host | None:
    """This process's engine host (its transport state), for tools and benchmarks."""
    return _current


def home_of(actor_id: str, engines: int) -> int:
    """The engine an id lives on unless pinned: a hash stable across processes."""
    digest = hashlib.blake2b(actor_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % engines


def _dumps(obj: Any) -> bytes:
    """Pickle ``obj``: the C pickler, or cloudpickle for lambdas and local
    classes, and for what names the driver's ``__main__`` (a class of its
    script): the engines' ``__main__`` is Ray's worker, so such a class
    travels by value, as Ray's own serializer sends it.  (A search of the
    pickled bytes: a batch of 100 small messages is about 1 KB.)  An open
    file is refused, as the C pickler refuses it (see _Pickler)."""
    try:
        data = pickle.dumps(obj, protocol=5)
    except Exception:
        data = b"__main__"
    if b"__main__" not in data:
        return data
    with io.BytesIO() as out:
        _Pickler(out, protocol=5).dump(obj)  # type: ignore[no-untyped-call]
        return out.getvalue()


def _refuse_open_file(file: Any) -> Any:
    """cloudpickle's way with a text file, but for the standard streams: refused.
    cloudpickle sends a copy of what a file open for reading holds, read on
    the sender's thread; sys.stdout and sys.stderr go as references to the
    receiver's own."""
    for name in ("stdout", "stderr"):
        if file is getattr(sys, name):
            return getattr, (sys, name)
    raise TypeError(f"cannot pickle {file!r}: an open file does not travel; send its "
                    f"name, or what you read from it")


class _Pickler(ray.cloudpickle.Pickler):
    """Ray's cloudpickle, open files refused (see _refuse_open_file)."""
    dispatch_table = collections.ChainMap({io.TextIOWrapper: _refuse_open_file},
                                          ray.cloudpickle.Pickler.dispatch_table)


# What pickling or unpickling a message may raise and still be only a message
# that does not travel: a __reduce__ may call sys.exit, which would otherwise
# end the engine's thread (or a Ray thread) and leave the engine a zombie
# (review27).  KeyboardInterrupt still ends the program.
_PICKLE_ERRORS = (Exception, SystemExit)


def _picklable(obj: Any) -> str | None:
    """None if ``obj`` pickles, else why not."""
    try:
        _dumps(obj)
    except _PICKLE_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _round_trips(obj: Any) -> str | None:
    """None if ``obj`` pickles and unpickles again, else why not (an exception
    class whose __init__ takes other arguments than it passes on pickles, but
    does not unpickle)."""
    try:
        pickle.loads(_dumps(obj))
    except _PICKLE_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _unpicklable_reason(what: str, why: str) -> str:
    return (f"{what} cannot be pickled to travel to another engine ({why}); send data that "
            f"pickles (module-level classes, no locks, sockets or open files)")


def _unloadable_reason(src: int, here: int, exc: BaseException) -> str:
    return (f"engine {here} could not unpickle a batch from engine {src} ({exc!r}); send "
            f"data that unpickles where it is received (classes importable there)")


def _portable_exception(exc: BaseException) -> BaseException:
    """``exc`` if it travels (pickles and unpickles), else a RuntimeError that
    says what it was."""
    if _round_trips(exc) is None:
        return exc
    return RuntimeError(f"{type(exc).__name__}: {exc}")


###############################################################################
# The engine side: one EngineHost per engine, in its own process
###############################################################################

class _RemoteReply:
    """The reply channel of an ask that came from another engine.

    Duck-typed like the engine's own reply channel (``settle`` from any
    thread, ``done()``, and ``remote_id`` for ``Engine._register_reply`` when
    the ask is forwarded once more).  Settling sends the value back over the
    link to the asking engine, from the engine's thread.  (backstage's own
    _RemoteReply has no thread hop and no remote_id, hence this one.)
    """
    __slots__ = ("host", "src", "reply_id", "flag", "remote_id", "target_id")

    def __init__(self, host: _Host, src: int, reply_id: str, target_id: str) -> None:
        self.host = host
        self.src = src
        self.reply_id = reply_id
        self.target_id = target_id
        self.flag = False
        self.remote_id: str | None = None

    def done(self) -> bool:
        return self.flag

    def settle(self, value: Any, exc: BaseException | None) -> None:
        engine = self.host.engine
        if not engine._on_engine_thread():
            self.host.loop.call_soon_threadsafe(self._settle_here, value, exc)
        else:
            self._settle_here(value, exc)

    def unanswered(self) -> None:
        """The target handled the ask and dropped its envelope without a reply
        (``_AskedEnvelope``'s finaliser, maybe on another thread): the asker
        is told so now, as on one engine, not at its timeout."""
        self.settle(None, backstage._unanswered(self.host.engine, self.target_id))

    def _settle_here(self, value: Any, exc: BaseException | None) -> None:
        if self.flag:
            if exc is None:
                self.host.engine._late_reply(self.target_id, value)
            return
        self.flag = True
        self.host.send_reply(self.src, self.reply_id, value, exc)


class _RemoteCallReply(_RemoteReply):
    """The reply channel of a proxied method call from another engine: as an
    item's tag, it says "run the method" (backstage._CALL_REPLIES)."""
    __slots__ = ()


backstage._CALL_REPLIES.add(_RemoteCallReply)


class _Link:
    """What one engine sends to one peer: batches, sequence numbers, a window."""

    def __init__(self, host: _Host, peer: int, handle: Any) -> None:
        self.host = host
        self.peer = peer
        self.handle = handle
        # (target id, items, _EXPLICIT), (target id, messages, _Run(their sender,
        # vouched tuple-free)) for one sender's plain sends, or (None, control, _EXPLICIT)
        self.pending: deque[tuple[str | None, Any, Any]] = deque()
        self.head = 0               # items of pending[0] already taken (see _take)
        self.pending_count = 0
        self.inflight: dict[int, list[Any]] = {}              # seq -> entries sent, until acked
        self.returned: dict[int, list[Any]] = {}     # seq -> entries that rode back, until acked
        self.asked: dict[str, Any] = {}                  # reply id -> reply sent this way
        self.unreported: set[int] = set()   # the peer's ridden batches that did not unpickle
        self.reports: dict[int, list[int]] = {}    # our batch -> the reports of them it carries
        self.seq = 0
        self.flush_scheduled = False
        self.lost: str | None = None                     # why the peer is gone
        self.waiter: _Waiter | _SocketCalls = _Waiter(self)    # a socket's on one node
        self.batches = 0                # sent as calls of their own or riding back
        self.messages = 0
        self.holding_for: set[Any] = set()  # stand-ins whose senders are held (see hold)
        self.over_buffer = 0            # stand-in turns that found it over send_buffer
        self.unsent_peak = 0            # the most messages it held unsent (its stats)
        self.answers = 0                # calls of ours answered, for the valve
        self.valve: Any = None          # the valve's timer while holding
        self.valve_opened = 0           # times the valve let senders go (its stats)

    # -- filling ------------------------------------------------------------

    def hand(self, ctx: Any, items: list[Any]) -> bool:
        """A stand-in's turn (its flush): its items, sent at the end of this tick
        (or now, see ``_before_local_turn``).  True: hold their senders (see
        ``hold``)."""
        self.add(ctx.actor_id, items, _EXPLICIT)
        return self._handed(ctx)

    def hand_run(self, ctx: Any, sender_id: str | None, messages: list[Any],
                 classes: set[type]) -> bool:
        """A stand-in's turn of one sender's plain sends (its flush_run);
        ``classes``: the set of the messages' classes, which says whether the
        run can be vouched tuple-free.  True: hold the sender (see ``hold``)."""
        self.add(ctx.actor_id, messages, _Run(sender_id, classes <= _KEEP_THEIR_CLASS))
        return self._handed(ctx)

    def _handed(self, ctx: Any) -> bool:
        """After a stand-in's turn: whether to hold its senders, else perhaps
        send at once (``_before_local_turn``)."""
        full = self.hold(ctx)
        if not full:
            self._before_local_turn(ctx)
        return full

    def _before_local_turn(self, ctx: Any) -> None:
        """For a spread pool's routee (``ctx``): send now, not at the end of the
        tick, if an actor's turn comes next.  The turn may be a routee's of
        128 CPU-bound jobs, and the other engine would wait for it: 1.05-1.1x
        a plain pool's jobs/s.  Not for every stand-in: workers with a
        backlog, sending after each one's turn, made 2-3.4x the calls, at
        0.65-0.94x the throughput (review26), also when only calls in flight
        for 5 ms or more sent early.  After another stand-in's turn, the two
        batch together.  Not when the stand-in's senders are to be held (the
        callers check): sent now, the link could let them go before the engine
        holds them, and they stayed held for good (the word-count example
        hung)."""
        ready = self.host.engine._ready
        if ready and ready[0]._inbox.__class__ is not backstage._StandInInbox \
                and _routee_of_a_pool(ctx):
            try:
                self.flush()
            except Exception:       # noqa: BLE001 - the tick's own flush tries again
                log.exception("engine %d: sending to engine %d before a turn failed",
                              self.host.index, self.peer)

    def add(self, target_id: str, items: list[Any], sender: Any = _EXPLICIT) -> None:
        """Items for ``target_id`` (``sender`` _EXPLICIT), or one sender's messages
        (``sender`` a _Run); sent at the end of this tick."""
        if self.lost is not None:
            self.host.engine._dead_letter_all(target_id, _items(items, sender), self.lost)
            return
        self.pending.append((target_id, items, sender))
        self.pending_count += len(items)
        self._schedule()

    def add_control(self, control: tuple[Any, ...]) -> None:
        if self.lost is None:
            self.pending.append((None, control, _EXPLICIT))
            self.pending_count += 1
            self._schedule()

    def report_unloaded(self, seq: int, reason: str) -> None:
        """A batch of the peer's that rode back (``seq``) did not unpickle here:
        tell the peer, first in the next batch this way, so that it makes the
        batch's messages dead letters and fails its asks (``refused``).  Until
        the peer has taken the batch carrying the report (``_reported``), our
        acknowledgements stop short of ``seq``, and the peer keeps its batch
        for it: if the one carrying the report does not unpickle there either,
        the report goes again (``undelivered``) and still finds it."""
        if self.lost is not None:
            return
        self.unreported.add(seq)
        # After the entry partly taken, if any: its rest goes first (see _take).
        self.pending.insert(1 if self.head else 0, (None, ("unloaded", seq, reason), _EXPLICIT))
        self.pending_count += 1
        self._schedule()

    def _schedule(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.host.loop.call_soon(self.flush)

    # -- back-pressure on senders -------------------------------------------

    def hold(self, ctx: Any) -> bool:
        """After a stand-in's turn: whether the local actors that sent to ``ctx``
        are to be held (they take no turns), because more than ``send_buffer``
        messages wait unsent.  They go once half of that is left (``_drained``),
        when the peer is lost, and each one a call of the peer's waits for
        (``let_go``).  A producer faster than the link then waits
        for it, as Ray's own sender waits in ray.wait, instead of queueing
        without bound: one way at batch 1,000, 1.6M messages, the link held up
        to 1.44M unsent.  If the peer answers nothing for _HOLD_VALVE seconds,
        they go on anyway (the valve)."""
        pending = self.pending_count
        if pending > self.unsent_peak:
            self.unsent_peak = pending
        if pending <= self.host.send_buffer or self.lost is not None:
            return False
        self.holding_for.add(ctx)
        self.over_buffer += 1
        if self.valve is None:
            self.valve = self.host.loop.call_later(_HOLD_VALVE, self._stalled, self.answers)
        return True

    def let_go(self, marks: list[Any]) -> None:
        """A call of the peer's waits for these actors to take its messages (the
        marks of ``_Host.when_handled``): those held for this link go on.  The
        peer may be holding senders of its own until we answer, and one of them
        may be what ours wait for (two actors flooding each other).  Checked
        each loop pass while the call is unanswered, so an actor held again
        before it took them all goes on again."""
        release = self.host.engine._release_sender
        for ctx, _ in marks:
            if ctx._waiting_on:
                for stand_in in self.holding_for:
                    release(ctx, stand_in)

    def forget(self, ctx: Any) -> None:
        """The stand-in ``ctx`` sends over another link from now on (a pin moved
        its id): the senders held for it here go, and are held there if need be."""
        if ctx in self.holding_for:
            self.holding_for.discard(ctx)
            self.host.engine._release_senders(ctx)

    def _drained(self) -> None:
        """Let the held senders go once half the send buffer or less is left."""
        if self.pending_count * 2 <= self.host.send_buffer:
            self.free_senders()

    def free_senders(self) -> None:
        """The senders held for this link take turns again."""
        holding, self.holding_for = self.holding_for, set()
        if self.valve is not None:
            self.valve.cancel()
            self.valve = None
        release = self.host.engine._release_senders
        for ctx in holding:
            release(ctx)

    def _stalled(self, answers: int) -> None:
        """The valve: no answer since the senders were held ``_HOLD_VALVE`` ago."""
        self.valve = None
        if not any(ctx._held_senders for ctx in self.holding_for):
            self.holding_for.clear()        # each was let go (let_go) meanwhile
            return
        if self.answers == answers:
            log.info("link %d -> %d: no answer for %.1f s; its held senders go on",
                     self.host.index, self.peer, _HOLD_VALVE)
            self.valve_opened += 1
            self.free_senders()
        else:
            self.valve = self.host.loop.call_later(_HOLD_VALVE, self._stalled, self.answers)

    # -- sending ------------------------------------------------------------

    def flush(self) -> None:
        """Send pending entries in batches of at most batch_limit, within the window.

        Batches first ride back on the peer's calls that are handled and not
        yet answered (see ``ride``); the rest go as calls of their own.
        """
        self.flush_scheduled = False
        host = self.host
        if host.unhandled:
            host.answer_handled()
        acked = host.expect.get(self.peer, 1) - 1
        if self.unreported:
            acked = min(acked, min(self.unreported) - 1)
        waiter = self.waiter
        while self.pending and self.lost is None and waiter.has_room():
            batch = self._next_batch(lambda seq: _CALL_HEADER.pack(host.index, seq, acked))
            if batch is None:
                continue
            seq, entries, packet = batch
            self.inflight[seq] = entries
            waiter.queue(seq, packet)

    def ride(self) -> bytes | None:
        """A batch to travel back as the answer of a call the peer made to us.

        A round trip across engines is then one Ray call and its return, as
        Ray's own request/reply is, not two calls each with a return (ping-pong
        between two engines, bench/bench_cluster.py: 0.54x -> 0.70-0.75x Ray's
        round trips; both ways at batch 100: 0.63x -> 0.96-1.1x Ray's).
        The batch takes the link's next sequence number, so the peer applies it
        in order with the link's calls; it is kept until the peer's next call
        says it arrived (``release``), and is "possibly delivered" if the peer
        is lost before that.  A batch packed for a call and not yet sent rides
        first, keeping its sequence number.
        """
        if self.lost is not None:
            return None
        queued = self.waiter.take_queued()
        if queued is not None:         # packed for a call and not yet sent: it rides instead
            seq, packet = queued
            self.returned[seq] = self.inflight.pop(seq)
            return _RIDE_HEADER.pack(seq) + packet[_CALL_HEADER.size:]
        while self.pending:
            batch = self._next_batch(_RIDE_HEADER.pack)
            if batch is not None:
                seq, entries, packet = batch
                self.returned[seq] = entries
                return packet
        return None

    def release(self, acked: int) -> None:
        """The peer has applied every batch of ours up to sequence ``acked``
        (or was told it could not, ``refused``)."""
        returned = self.returned
        for seq in list(returned):
            if seq > acked:
                break
            del returned[seq]
            if self.reports:
                self._reported(seq)

    def _reported(self, seq: int) -> None:
        """The peer has taken our batch ``seq``: the reports it carried are
        told, and our acknowledgements may pass the batches they were of."""
        for reported in self.reports.pop(seq, ()):
            self.unreported.discard(reported)

    def refused(self, seq: int, reason: str) -> None:
        """The peer could not unpickle our batch ``seq`` that rode back."""
        entries = self.returned.pop(seq, None)
        if entries is not None:
            log.error("link %d -> %d: %s", self.host.index, self.peer, reason)
            self.reports.pop(seq, None)         # a report it carried goes again
            self.undelivered(entries, reason)

    def _next_batch(self, header: Callable[[int], bytes],
                    ) -> tuple[int, list[Any], bytes] | None:
        """The next batch of pending entries: (seq, entries, packet), the packet
        ``header(seq)`` then the pickled batch; None if none of the entries
        taken could travel (each became a dead letter).

        One packet is the call's one argument: Ray serializes each argument
        of a call on its own (no difference measured at batch 100 against
        four arguments: 487-500 against 463-543 CPU-us a call, sending engine).
        """
        entries, count = self._take(self.host.batch_limit)
        wire = self._wire(entries)
        if not wire:
            return None
        seq = self.seq + 1
        try:
            payload = _dumps(wire)
        except _PICKLE_ERRORS:
            wire = self._drop_unpicklable(entries)
            if not wire:
                return None
            payload = _dumps(wire)
        packet = header(seq) + payload
        if self.unreported:
            reports = [control[1] for target_id, control, _ in entries
                       if target_id is None and control[0] == "unloaded"]
            if reports:
                self.reports[seq] = reports
        self.seq = seq
        self.batches += 1
        self.messages += count
        return seq, entries, packet

    def _take(self, limit: int) -> tuple[list[Any], int]:
        """Up to ``limit`` messages of the pending entries, splitting the last one.

        A long entry is taken a slice at a time from ``self.head`` on: cutting
        off the rest each time copied it again per batch (10,000 messages of
        one turn in batches of 100: 50 copies per message).
        """
        pending = self.pending
        taken: list[Any] = []
        count = 0
        while pending and count < limit:
            target_id, items, sender = pending[0]
            if target_id is None:
                taken.append(pending.popleft())
                count += 1
                continue
            head = self.head
            room = limit - count
            if len(items) - head <= room:
                pending.popleft()
                taken.append((target_id, items[head:] if head else items, sender))
                count += len(items) - head
                self.head = 0
            else:
                taken.append((target_id, items[head:head + room], sender))
                self.head = head + room
                count += room
        self.pending_count -= count
        if self.holding_for:
            self._drained()
        return taken, count

    def _wire(self, entries: list[Any]) -> list[Any]:
        """The entries as they cross: plain sends untouched, the rest coded.

        (target_id, items, form): form _PLAIN says every item is a plain
        send, found by passes in C instead of a Python loop, and the receiver
        queues the list as it is; _ONE_SENDER says they also share one
        sender, and only (sender, messages, no_tuples) cross: a list of
        messages pickles in about a sixth of the time of a list of (sender,
        message, None) tuples, and unpickles in a quarter; no_tuples vouches
        that no message arrives as a tuple (see _KEEP_THEIR_CLASS).  The
        passes: one over the types, then the tag and sender columns taken by
        itemgetter and counted
        (identity first, in C): 117-159 ns a message at 100 to 10,000 sends,
        against 204-216 for a set per column and 156-228 for a zip into
        columns (10,000 arguments: py-spy put 57 % of the sending engine there
        at batch 10,000); timeit, a loaded machine.
        """
        wire = []
        for target_id, items, sender in entries:
            if target_id is None:
                wire.append((None, items, _CODED))
                continue
            if sender is not _EXPLICIT:         # a stand-in's run (Link.hand_run)
                wire.append((target_id, (sender.sender_id, items, sender.no_tuples),
                             _ONE_SENDER))
                continue
            if set(map(type, items)) == _TUPLE:
                n = len(items)
                if list(map(_third, items)).count(None) == n:
                    senders = list(map(_first, items))
                    if senders.count(senders[0]) == n:
                        wire.append((target_id,
                                     (senders[0], list(map(_second, items)), False),
                                     _ONE_SENDER))
                    else:
                        wire.append((target_id, items, _PLAIN))
                    continue
            out = []
            for item in items:
                if item.__class__ is tuple and item[2] is None:
                    out.append(item)
                else:
                    out.append(self._code(item))
            wire.append((target_id, out, _CODED))
        return wire

    def _code(self, item: Any) -> tuple[Any, ...]:
        sender_id, kind, message, topic, reply = backstage._item_fields(item)
        if reply is not None:                   # an ask
            asked_as = _CALL if reply.__class__ in backstage._CALL_REPLIES else _ASK
            if reply.done():
                # It timed out before it left: its answer, if any, is a late one
                # (a dead letter), and nothing is kept for it.
                return (sender_id, (message, _ENDED_ASK), asked_as)
            engine = self.host.engine
            reply_id = engine._register_reply(reply)
            asked = self.asked
            asked[reply_id] = reply
            pending = engine._transport.replies  # type: ignore[union-attr]  # attached
            if len(asked) > 2 * len(pending) + 1024:
                # Asks that ended without an answer from the peer (timed out, and
                # never answered) are dropped now and then, not kept for good.
                self.asked = {i: r for i, r in asked.items() if i in pending}
            return (sender_id, (message, reply_id), asked_as)
        code = _CODES.get(kind)
        if code is None:                        # a send: a bare message from Engine.send
            return (sender_id, message, None)
        if code == _PUBLISH or code == _FORWARDED:
            return (sender_id, (topic, message), code)
        if code in (_SUB, _UNSUB, _DROPPED):
            return (sender_id, topic, code)
        return (sender_id, message, code)

    def _drop_unpicklable(self, entries: list[Any]) -> list[Any]:
        """Dead-letter the items that do not pickle; the rest, coded again."""
        engine = self.host.engine
        kept = []
        for i, (target_id, items, sender) in enumerate(entries):
            if target_id is None:
                why = _picklable(items)
                if why is not None and items[0] == "reply":
                    items = ("reply", items[1], None, TypeError(
                        _unpicklable_reason("the reply", why)))
                kept.append((None, items, _EXPLICIT))
                continue
            good = []
            for item in _items(items, sender):
                why = _picklable(self._wire([(target_id, [item], _EXPLICIT)]))
                if why is None:
                    good.append(item)
                else:
                    reason = _unpicklable_reason("the message", why)
                    log.error("dead letter for %r: %s", target_id, reason)
                    engine._dead_letter_all(target_id, [item], reason)
            if good:
                kept.append((target_id, good, _EXPLICIT))
            entries[i] = (target_id, good, _EXPLICIT)
        return self._wire(kept)

    def completed(self, outcomes: list[tuple[int, Any, BaseException | None]]) -> None:
        """Calls of ours answered (from the waiter): (seq, answer, exception) each."""
        self.answers += len(outcomes)
        for seq, value, exc in outcomes:
            try:
                self._acked(seq, value, exc)
            except Exception:
                log.exception("link %d -> %d: answer %d", self.host.index, self.peer, seq)
        if self.pending and not self.flush_scheduled:
            self.flush()

    def _acked(self, seq: int, value: Any, exc: BaseException | None) -> None:
        """A call of ours is answered: its batch is handled, and the answer may
        carry a batch of the peer's (``ride``)."""
        entries = self.inflight.pop(seq, None)
        if exc is not None:
            if entries is None:
                return
            if isinstance(exc, ray.exceptions.RayActorError):
                self.inflight[seq] = entries        # the peer is gone: lost() sorts it out
                self.host.peer_lost(self.peer, f"engine {self.peer} lost ({type(exc).__name__})")
                return
            log.error("link %d -> %d: a batch failed: %r", self.host.index, self.peer, exc)
            self.reports.pop(seq, None)             # a report it carried goes again
            self.undelivered(entries, f"the batch to engine {self.peer} failed: {exc!r}")
            return
        if self.reports:
            self._reported(seq)
        if value is not None:
            self.host.arrive_ridden(self.peer, value)

    # -- losing the peer ------------------------------------------------------

    def lose(self, reason: str) -> None:
        """The peer is gone: in flight -> possibly delivered, pending -> dead letters."""
        self.lost = reason
        unsent = set(self.waiter.close())      # packed for a call and never sent
        sent = {**self.inflight, **self.returned}      # calls, and batches that rode back
        for seq in sorted(sent):
            self._dead_letter(sent[seq], reason if seq in unsent
                              else f"{reason}; possibly delivered")
        self.inflight.clear()
        self.returned.clear()
        pending, self.pending = list(self.pending), deque()
        if pending and self.head:
            target_id, items, sender = pending[0]
            pending[0] = (target_id, items[self.head:], sender)
        self.head = self.pending_count = 0
        self._dead_letter(pending, reason)
        self.free_senders()
        engine = self.host.engine
        for reply_id, reply in list(self.asked.items()):
            if engine._transport is not None:
                engine._transport.replies.pop(reply_id, None)
            if not reply.done():
                reply.settle(None, ActorNotFound(f"no reply: {reason}"))
        self.asked.clear()

    def undelivered(self, entries: list[Any], reason: str) -> None:
        """A batch the peer could not take, the peer still up: its messages
        become dead letters (asks among them fail), and its controls go again,
        a reply as a failure (its value may be what did not unpickle there:
        sent again, it would fail again) so that the asker is answered."""
        self._dead_letter(entries, reason)
        for target_id, control, _ in entries:
            if target_id is not None:
                continue
            if control[0] == "reply":
                control = ("reply", control[1], None, RuntimeError(
                    f"the reply did not reach the asker: {reason}"))
            self.add_control(control)

    def _dead_letter(self, entries: list[Any], reason: str) -> None:
        engine = self.host.engine
        for target_id, items, sender in entries:
            if target_id is not None:
                engine._dead_letter_all(target_id, _items(items, sender), reason)


class _Run(NamedTuple):
    """A pending entry's sender when it holds one sender's plain sends, bare."""
    sender_id: str | None
    no_tuples: bool             # vouched: none arrives as a tuple (_KEEP_THEIR_CLASS)


def _wire_items(items: Any, form: int) -> list[Any]:
    """The plain sends of a batch's entry as it crossed, as (sender, message,
    None) tuples: what becomes dead letters if the entry fails."""
    if form == _ONE_SENDER:
        sender_id, messages, _ = items
        return backstage._run_items(sender_id, messages)
    return [item for item in items if item[2] is None]


def _items(items: list[Any], sender: Any) -> list[Any]:
    """An entry's items as tuples: a run's messages with their sender."""
    return items if sender is _EXPLICIT else backstage._run_items(sender.sender_id, items)


# Seconds between looks at a link's calls in flight while its window has room.
_REWATCH = 0.005


class _Waiter:
    """Sends a link's packed batches and watches its calls in flight, from a
    thread of its own, with ray.wait; hands their answers to the engine's
    thread, all that finished per wake-up.

    Cheaper than a callback per call (ObjectRef.future()): Ray runs each such
    callback on its own I/O thread, which takes the GIL, builds the answer and
    wakes the loop once per call; sender 445 -> 280 CPU-us a call with the
    threaded host (batches of 100, window 4; docs/cluster.md).  One per link,
    so that a peer slow to answer does not hold up the answers of another.

    The engine packs up to a window of batches ahead (``queue``); an answer
    sends the next at once from this thread (or leaves it to the engine's
    thread if that one is making calls), as Ray's own sender does after its
    ray.wait, instead of after a hop to the engine's thread, which may be in
    the middle of a long turn.
    """

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.cond = threading.Condition()
        self.refs: dict[Any, int] = {}          # call -> sequence number, until answered
        self.queued: deque[tuple[int, bytes]] = deque()  # (seq, packet) packed, not sent
        self.window: int = link.host.window
        self.thread: threading.Thread | None = None
        self.closed = False
        self.sending = False                    # a thread is making calls (see _send)
        self.calls = 0                          # calls made (the link's stats)

    def has_room(self) -> bool:
        """Whether the engine may pack another batch: fewer than a window of
        them packed and not yet sent (so at most two windows are unanswered)."""
        return len(self.queued) < self.window

    def queue(self, seq: int, packet: bytes) -> None:
        """Send the packed batch ``seq`` once the window has room (engine thread)."""
        with self.cond:
            self.queued.append((seq, packet))
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, daemon=True,
                    name=f"backstage-link-{self.link.host.index}-{self.link.peer}")
                self.thread.start()
        self._send()

    def take_queued(self) -> tuple[int, bytes] | None:
        """The oldest batch packed and not yet sent, taken back (engine thread)."""
        with self.cond:
            return self.queued.popleft() if self.queued else None

    def _send(self) -> None:
        """Calls for queued batches while the window has room; either thread.

        One thread makes calls at a time (``sending``), so they go in sequence
        order; the other leaves its batches to it.  The call itself is made
        without the lock: a thread that queues or takes back a batch never
        waits on another's ``.remote()`` (a large batch goes through Ray's
        object store first), and the engine's thread goes on with its turns.
        """
        cond, queued, refs = self.cond, self.queued, self.refs
        deliver = self.link.handle.deliver
        with cond:
            if self.sending:
                return                      # the other thread sends what is queued
            self.sending = True
        try:
            while True:
                with cond:
                    if not queued or len(refs) >= self.window or self.closed:
                        self.sending = False
                        return
                    seq, packet = queued.popleft()  # in hand: no ride-back takes it now
                try:
                    ref = deliver.remote(packet)
                except BaseException:
                    with cond:
                        if not self.closed:     # (closed: lose() has dead-lettered it)
                            queued.appendleft((seq, packet))    # first next time
                    raise
                with cond:
                    refs[ref] = seq
                    self.calls += 1
                    cond.notify()           # the waiter watches it from now
        except BaseException:
            with cond:
                self.sending = False
            raise

    def close(self) -> list[int]:
        """Stop; the sequence numbers of the batches packed and never sent."""
        with self.cond:
            self.closed = True
            unsent = [seq for seq, _ in self.queued]
            self.queued.clear()
            self.cond.notify()
        return unsent

    def _run(self) -> None:
        link = self.link
        try:
            self._watch()
        except Exception as exc:
            log.exception("link %d -> %d: its waiter failed", link.host.index, link.peer)
            link.host.loop.call_soon_threadsafe(
                link.host.peer_lost, link.peer, f"the link to engine {link.peer} failed: {exc!r}")

    def _watch(self) -> None:
        cond, refs, link = self.cond, self.refs, self.link
        post = link.host.loop.call_soon_threadsafe
        window = self.window
        while True:
            with cond:
                while not refs and not self.closed:
                    cond.wait()
                if self.closed:
                    return
                watched = list(refs)
            # ray.wait watches only the calls it was given: while the window has
            # room, later calls are looked at every few milliseconds, so that a
            # slow one (its actor has a backlog) does not hold up their answers.
            ready, _ = ray.wait(watched, num_returns=1,
                                timeout=None if len(watched) >= window else _REWATCH)
            if not ready:
                continue
            if len(watched) > 1:            # and any others finished by now
                ready, _ = ray.wait(watched, num_returns=len(watched), timeout=0)
            failed = None
            with cond:
                seqs = [refs.pop(ref) for ref in ready]
            try:
                self._send()
            except Exception as exc:        # raised once the answers are handed over
                failed = exc
            outcomes = _outcomes(ready)
            post(link.completed, [(seq, value, exc) for seq, (value, exc)
                                  in zip(seqs, outcomes, strict=True)])
            if failed is not None:
                raise failed


def _outcomes(refs: list[Any]) -> list[tuple[Any, BaseException | None]]:
    """(answer, None) or (None, exception) of each finished call."""
    try:
        return [(value, None) for value in ray.get(refs)]
    except Exception:
        pass
    outcomes: list[tuple[Any, BaseException | None]] = []
    for ref in refs:
        try:
            outcomes.append((ray.get(ref), None))
        except Exception as exc:
            outcomes.append((None, exc))
    return outcomes


# -- Links on one node: a Unix socket instead of Ray calls --------------------------
# Two engines on one Ray node send their batches over a Unix socket, read and
# written by their engines' own loops; Ray still starts, places and watches
# them, and carries everything else (the driver's calls, links across nodes).
# Same packets, sequence numbers, window and answers as the calls: only the
# carrier changes.  A Ray call cost the two processes 850-1,100 CPU-us (the
# waiter thread, Ray's threads, the hops between them), whatever the batch:
# at batch 100, 6-10 CPU-us a message went to calls (docs/cluster.md, Links
# on one node, for the figures this bought).

_FRAME = struct.Struct("<Q")            # the length of what follows (a batch may pass 4 GiB)
_ANSWER = struct.Struct("<Bq")          # what an answer says, the sequence number it answers
# What an answer says: handled (with nothing, or with a batch riding back),
# the batch could not be unpickled (then the reason), the engine closed first.
_HANDLED, _RIDING, _UNLOADABLE, _ENGINE_CLOSED = range(4)
_RECV_SIZE = 1 << 18
# The most a socket may send before its hello is taken (the hello is the
# token and a number: under 64 bytes), so that a stranger cannot make an
# engine buffer a frame of any size it names.
_HELLO_MAX = 256


def _socket_address(token: str, index: int) -> str:
    """Where engine ``index`` of the cluster ``token`` listens: a name in
    Linux's abstract namespace (no file, so none is left when a process is
    killed), else a file in the temporary directory."""
    if sys.platform.startswith("linux"):
        return f"\0backstage-{token}-{index}"
    return os.path.join(tempfile.gettempdir(), f"backstage-{token[:16]}-{index}.sock")


def _peer_process(sock: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end of ``sock`` (Linux's
    SO_PEERCRED), or None where the system does not say (there the socket
    file's mode, 0600, keeps other users out)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


def _is_process(sock: socket.socket, pid: int | None) -> bool:
    """Whether the other end of ``sock`` is the process ``pid`` (None: any
    process of our user), where the system says."""
    creds = _peer_process(sock)
    return creds is None or (creds[1] == os.getuid() and pid in (None, creds[0]))


class _Conn:
    """One Unix socket of a link on one node, on the engine's thread: frames
    out, kept while the socket is full; frames in, handed over as they come.

    ``on_frames(frames)`` gets every whole frame one read brought (memoryviews,
    valid during the call); ``on_closed(reason)`` once, when the other end
    closes or fails."""

    def __init__(self, sock: socket.socket, loop: Any,
                 on_frames: Callable[[list[memoryview]], None],
                 on_closed: Callable[[str], None]) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.loop = loop
        self.on_frames = on_frames
        self.on_closed = on_closed
        # The start of a frame not yet whole, in the pieces read, joined once it
        # is: a 3 MB batch comes in a dozen reads, each copied once, not again per read.
        self.parts: list[bytes] = []
        self.have = 0                       # bytes in parts
        self.need = 0                       # bytes the frame in parts needs (0: unknown)
        self.max_frame: int | None = None   # a larger frame closes the socket
        self.unsent = bytearray()           # what the socket had no room for
        self.closed = False
        loop.add_reader(sock, self._readable)

    def write(self, head: bytes, body: bytes | memoryview = b"") -> None:
        if self.closed:
            return
        size = len(head) + len(body)
        frame = (_FRAME.pack(size), head, body)
        if self.unsent:
            for part in frame:
                self.unsent += part
            return
        try:
            sent = self.sock.sendmsg(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._fail(f"writing failed: {exc!r}")
            return
        if sent < _FRAME.size + size:
            self.unsent += b"".join(frame)[sent:]
            self.loop.add_writer(self.sock, self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(f"writing failed: {exc!r}")
            return
        del self.unsent[:sent]
        if not self.unsent:
            self.loop.remove_writer(self.sock)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(f"reading failed: {exc!r}")
            return
        if not data:
            self._fail("closed by the other end")
            return
        if self.parts:
            self.parts.append(data)
            self.have += len(data)
            if self.have < self.need:
                return
            data = b"".join(self.parts)
            self.parts = []
        view = memoryview(data)
        frames = []
        at, end = 0, len(data)
        head = _FRAME.size
        while end - at >= head:
            (size,) = _FRAME.unpack_from(view, at)
            if self.max_frame is not None and size > self.max_frame:
                self._fail(f"sent a frame of {size} bytes, over {self.max_frame}")
                return
            if end - at - head < size:
                break
            frames.append(view[at + head:at + head + size])
            at += head + size
        if at < end:
            rest = data[at:]
            self.parts = [rest]
            self.have = len(rest)
            self.need = head + _FRAME.unpack_from(rest)[0] if len(rest) >= head else 0
        if frames:
            self.on_frames(frames)

    def _fail(self, reason: str) -> None:
        if not self.closed:
            self.close()
            self.on_closed(reason)

    def close(self) -> None:
        """Stop reading and writing, and close the socket (any thread, once the
        engine's loop has stopped; else the engine's)."""
        if self.closed:
            return
        self.closed = True
        for stop_watching in (self.loop.remove_reader, self.loop.remove_writer):
            with contextlib.suppress(Exception):
                stop_watching(self.sock)
        self.sock.close()


class _SocketCalls:
    """A link's calls over a socket to a peer on this node, in place of its
    ``_Waiter``: the same answers, taken on the engine's thread (no thread of
    its own, no hop).  The window's calls and the window of batches the
    waiter would pack ahead are all written at once: the socket holds them,
    and the peer has them even while this engine is in a long turn, as the
    waiter sends its packed batches then."""

    def __init__(self, link: _Link, conn: _Conn) -> None:
        self.link = link
        self.conn = conn
        self.limit: int = 2 * link.host.window      # batches unanswered at most
        self.unanswered = 0
        self.calls = 0
        conn.on_frames = self._answered

    def has_room(self) -> bool:
        return self.unanswered < self.limit and not self.conn.closed

    def queue(self, seq: int, packet: bytes) -> None:
        self.conn.write(packet)
        self.unanswered += 1
        self.calls += 1

    def take_queued(self) -> tuple[int, bytes] | None:
        """Nothing is packed and unsent: each batch went when packed."""
        return None

    def _answered(self, frames: list[memoryview]) -> None:
        outcomes: list[tuple[int, Any, BaseException | None]] = []
        peer = self.link.peer
        for frame in frames:
            what, seq = _ANSWER.unpack_from(frame)
            if what == _HANDLED:
                outcomes.append((seq, None, None))
            elif what == _RIDING:
                outcomes.append((seq, bytes(frame[_ANSWER.size:]), None))
            elif what == _UNLOADABLE:
                reason = bytes(frame[_ANSWER.size:]).decode()
                outcomes.append((seq, None, RuntimeError(reason)))
            else:
                outcomes.append((seq, None, backstage.EngineClosed(
                    f"engine {peer} closed before it applied the batch")))
        self.unanswered -= len(outcomes)
        self.link.completed(outcomes)

    def close(self) -> list[int]:
        """Stop; the batches packed and never sent: none."""
        self.conn.close()
        return []


class _SocketAnswer:
    """What a batch that came by socket is answered with, as ``_Answer`` is
    for a call: written back on the socket it came by, by the engine's thread
    (or by EngineHost.stop, once that thread has ended)."""
    __slots__ = ("conn", "seq", "settled", "taken", "failure")

    def __init__(self, conn: _Conn, seq: int, failure: str | None) -> None:
        self.conn = conn
        self.seq = seq
        self.settled = False
        self.taken = False
        self.failure = failure          # why the batch did not unpickle, if it did not

    def done(self) -> bool:
        return self.settled

    def set_result(self, value: bytes | None) -> None:
        self.settled = True
        if self.failure is not None:
            self.conn.write(_ANSWER.pack(_UNLOADABLE, self.seq), self.failure.encode())
        elif value is None:
            self.conn.write(_ANSWER.pack(_HANDLED, self.seq))
        else:
            self.conn.write(_ANSWER.pack(_RIDING, self.seq), value)

    def refuse(self) -> None:
        self.settled = True
        self.conn.write(_ANSWER.pack(_ENGINE_CLOSED, self.seq))


class _Host:
    """The engine of one EngineHost and everything its transport keeps."""

    def __init__(self, index: int, count: int, handles: list[Any], settings: dict[str, Any],
                 engine: Engine) -> None:
        self.index = index
        self.count = count
        self.engine = engine
        self.loop = engine._loop            # call_soon, call_soon_threadsafe, call_later
        self.batch_limit = settings.get("batch_limit", DEFAULT_BATCH_LIMIT)
        self.window = settings.get("window", DEFAULT_WINDOW)
        self.send_buffer = settings.get("send_buffer") or self.window * self.batch_limit
        self.pins: dict[str, int] = {}
        # What each engine said of where ids live (see Pins): pins and
        # pin_stamps the claim followed, rival_pins the others.
        self.clock = 0
        self.pin_stamps: dict[str, int] = {}
        self.unpinned: dict[tuple[str, int], int] = {}  # (id, engine) -> stamp of its
        #                                               stop there, the newest kept
        self.rival_pins: dict[str, dict[int, int]] = {}  # id -> {engine: stamp}: claims
        #                                               not followed (see Pins)
        # id -> (engine, stamp, sweep number): a claim only the driver has made
        # so far (its word of a spawn), ended at the sweep after the next.
        self.hearsay: dict[str, tuple[int, int, int]] = {}
        self.sweeps = 0
        # id -> [its stand-in, what it had handed over at the last sweep]
        self.stand_ins: dict[str, list[Any]] = {}
        self.lost: dict[int, str] = {}
        self.lost_at: dict[int, float] = {}        # peer -> time.monotonic() it was found lost
        self.closing = False
        self.links = {i: _Link(self, i, h) for i, h in enumerate(handles) if i != index}
        self.expect: dict[int, int] = {}          # source -> next sequence number
        # source -> {seq: (thunk, the call's answer or None)} arrived early
        self.held: dict[int, dict[int, tuple[Callable[[], Any], _Answers | None]]] = {}
        self.received = 0
        self.marks: list[Any] = []                      # (ctx, count) of the batch being applied
        self.unhandled: list[Any] = []                  # (src, marks, future) not yet answered
        self.check_scheduled = False
        # The driver's asks: their outcomes, until its collect_replies call takes them.
        self.driver_replies: list[tuple[str, bytes]] = []   # (reply id, ("ok"/"err", value))
        self.replies_ready = threading.Condition()
        # Links on one node (see _Conn): where peers connect, and their sockets.
        self.token: str | None = settings.get("links_token")
        self.listener: socket.socket | None = None
        self.accepted: list[_Conn] = []
        self.connected: set[int] = set()                # peers whose socket is taken
        self.nodes: list[str] = []                      # each engine's Ray node (know_peers)
        self.pids: list[int] = []                       # and its pid
        self.engine.attach_transport(self)
        self.engine._call_on_loop(_label_feed, self, settings)
        self.loop.call_soon_threadsafe(self._sweep_later)
        global _current
        _current = self

    # -- the transport interface the engine calls ------------------------------

    def resolve(self, target_id: str) -> Any:
        where = self.pins.get(target_id)
        if where is None:
            where = home_of(target_id, self.count)
        if where == self.index or where in self.lost:
            return None
        return self._stand_in(target_id, self.links[where])

    def _stand_in(self, actor_id: str, link: _Link) -> Any:
        """The stand-in for ``actor_id`` that sends over ``link``, made now if
        need be, and kept in sight of the sweep."""
        ctx = self.engine._install_stand_in(actor_id, link.hand, link.hand_run)
        entry = self.stand_ins.get(actor_id)
        if (entry is None or entry[0] is not ctx) and _is_stand_in(ctx):
            self.stand_ins[actor_id] = [ctx, -1]
        return ctx

    def spawned(self, ctx: Any) -> None:
        """An actor spawned here: every other engine is told where ``ctx``'s id
        lives, its hash engine included (an actor elsewhere that spawned the
        id too would make two actors under one id)."""
        actor_id = ctx.actor_id
        # Told even when the driver placed it here (pin=): a word stamped after
        # anything this engine said of the id's earlier lives, which a link
        # may still carry.
        stamp = self.pin(actor_id, self.index)
        for link in self.links.values():
            link.add_control(("pin", actor_id, self.index, stamp))

    def stopped(self, ctx: Any) -> None:
        """An actor here left the registry: every engine forgets where its id
        lived, this one too.  Else each would keep an entry for every id ever
        spawned in the cluster, for good (103 bytes each)."""
        actor_id = ctx.actor_id
        if self.claim_stamp(actor_id, self.index) is None or _is_stand_in(ctx) \
                or self.engine._closed or self.closing:
            return
        stamp = self.unpin(actor_id, self.index)
        for link in self.links.values():
            link.add_control(("unpin", actor_id, self.index, stamp))

    # -- pins ------------------------------------------------------------------
    # Where ids live that are not (or not only) on their hash engine.  Each
    # engine says where its own actors live (spawned) and when they stopped
    # (stopped); what engine e said holds until e says otherwise, and a link
    # keeps e's words in order.  Links keep no order among them, so two
    # engines' words may both claim an id for a while (an earlier life whose
    # stop is still on its way, a new one elsewhere): each claim is kept until
    # its own engine ends it, and the id is sent to the claim with the
    # highest Lamport stamp (an engine that spawns an id after it heard of its
    # last stop stamps higher than that stop).  The driver's words come over
    # its own link: its move (pin=) is stamped one above every engine's
    # clock, read as it checked that no actor lives under the id; its word of
    # a spawn carries the stamp the engine gave its own, and one that comes
    # after that engine's stop of the id is stale (the last stop each engine
    # said of an id is kept for the newest UNPINNED_KEPT).

    def pin(self, actor_id: str, where: int, stamp: int | None = None) -> int | None:
        """Engine ``where`` holds ``actor_id``; ``stamp``: the word's, None for
        this engine's own.  Returns the claim's stamp, or None for a stale word."""
        if stamp is None:
            self.clock = stamp = self.clock + 1
        else:
            self.clock = max(self.clock, stamp)
            if stamp <= self.unpinned.get((actor_id, where), 0):
                return None                 # a life that engine ended since
        current = self.pins.get(actor_id)
        if current is None or current == where:
            if current == where:
                stamp = max(stamp, self.pin_stamps[actor_id])
            self.pins[actor_id] = where
            self.pin_stamps[actor_id] = stamp
            return stamp
        rivals = self.rival_pins.setdefault(actor_id, {})
        if stamp > self.pin_stamps[actor_id]:          # the newer claim is followed
            rivals[current] = self.pin_stamps[actor_id]
            rivals.pop(where, None)
            self.pins[actor_id] = where
            self.pin_stamps[actor_id] = stamp
            return stamp
        rivals[where] = stamp = max(stamp, rivals.get(where, 0))
        return stamp

    def claim_stamp(self, actor_id: str, where: int) -> int | None:
        """The stamp of engine ``where``'s claim on ``actor_id``, None if it has none."""
        if self.pins.get(actor_id) == where:
            return self.pin_stamps[actor_id]
        return self.rival_pins.get(actor_id, {}).get(where)

    def unpin(self, actor_id: str, where: int, stamp: int | None = None) -> int:
        """Engine ``where`` no longer holds ``actor_id`` (it stopped there): its
        claim goes, unless newer; another engine's claim, if any, is followed."""
        if stamp is None:
            self.clock = stamp = self.clock + 1
        else:
            self.clock = max(self.clock, stamp)
        unpinned = self.unpinned
        key = (actor_id, where)
        unpinned[key] = max(stamp, unpinned.pop(key, 0))    # the newest last: first goes first
        if len(unpinned) > UNPINNED_KEPT:
            del unpinned[next(iter(unpinned))]
        self._end_claim(actor_id, where, stamp)
        return stamp

    def _end_claim(self, actor_id: str, where: int, stamp: int) -> None:
        """Engine ``where``'s claim on ``actor_id`` ends, unless newer than ``stamp``."""
        rivals = self.rival_pins.get(actor_id)
        if self.pins.get(actor_id) == where and stamp >= self.pin_stamps[actor_id]:
            if rivals:
                best = max(rivals, key=rivals.__getitem__)
                self.pins[actor_id] = best
                self.pin_stamps[actor_id] = rivals.pop(best)
            else:
                del self.pins[actor_id]
                del self.pin_stamps[actor_id]
        elif rivals is not None and where in rivals and stamp >= rivals[where]:
            del rivals[where]
        if rivals is not None and not rivals:
            del self.rival_pins[actor_id]

    def _unpinned_there(self, actor_id: str, where: int, stamp: int) -> None:
        """Engine ``where`` says ``actor_id`` stopped there: forget its pin, and
        an idle stand-in that sends there (the next send makes it anew)."""
        self.unpin(actor_id, where, stamp)
        self._drop_stopped(actor_id, where)

    def _sweep_later(self) -> None:
        if not self.engine._closed:
            self.loop.call_later(STAND_IN_SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        try:
            self.sweep_stand_ins()
        finally:
            self._sweep_later()

    def sweep_stand_ins(self) -> int:
        """End the driver's unconfirmed words of two sweeps ago (hearsay), and
        drop every stand-in that ``_droppable`` lets go and that handed nothing
        over since the last sweep: those of ids that stopped, of ids that never
        lived, of actors not sent to lately.  Returns how many went."""
        self.sweeps += 1
        for actor_id, (where, stamp, made) in list(self.hearsay.items()):
            if made < self.sweeps - 1:
                # Not remembered as a stop: the engine's own word may still come.
                del self.hearsay[actor_id]
                self._end_claim(actor_id, where, stamp)
        dropped = 0
        for actor_id, entry in list(self.stand_ins.items()):
            ctx: Any = entry[0]
            if ctx._state is not _RUNNING:
                del self.stand_ins[actor_id]            # stopped meanwhile
            elif ctx._count == entry[1] and self._droppable(ctx):
                self.engine._stop_stand_in(actor_id, f"{actor_id!r} was not sent to lately")
                del self.stand_ins[actor_id]
                dropped += 1
            else:
                entry[1] = ctx._count
        return dropped

    def _send_there(self, actor_id: str, where: int) -> None:
        """The driver moved ``actor_id`` to engine ``where`` (no actor lives
        under it): a stand-in for it that sends elsewhere sends there from now
        on; one here, or on a lost engine, stops."""
        ctx = self.engine._registry.get(actor_id)
        if ctx is None or not _is_stand_in(ctx) or ctx._state is not _RUNNING \
                or _sends_to(ctx) == where:
            return
        for link in self.links.values():
            link.forget(ctx)
        if where == self.index or where in self.lost:
            self.engine._stop_stand_in(actor_id, f"{actor_id!r} is placed on engine {where} now")
            return
        link = self.links[where]
        ctx._inbox._flush, ctx._inbox._flush_run = link.hand, link.hand_run

    def _droppable(self, ctx: Any) -> bool:
        """Whether the stand-in ``ctx`` may go: it holds nothing, and a new one
        would send over the same link, or the id lives nowhere now.  One that
        sends elsewhere than the id lives (its hash engine forwards) stays:
        what it sent may be on its way there still, and a new one sending
        straight to the actor could overtake it."""
        if not _idle_stand_in(ctx, self.links.values()):
            return False
        where = self.pins.get(ctx.actor_id)
        return where is None or where == _sends_to(ctx)

    def _drop_stopped(self, actor_id: str, where: int) -> None:
        """Drop the stand-in for ``actor_id``, heard to have stopped on engine
        ``where``, if ``_droppable`` lets it go: at the word of the stop, and
        again at each notice the actor sent as it stopped (it unsubscribes
        and demonitors through its stand-ins, which may send after that word)."""
        ctx = self.engine._registry.get(actor_id)
        if ctx is not None and _is_stand_in(ctx) and ctx._state is _RUNNING \
                and (actor_id, where) in self.unpinned and self._droppable(ctx):
            self.engine._stop_stand_in(actor_id, f"{actor_id!r} stopped on engine {where}")

    def placing(self, actor_id: str) -> None:
        """Before an actor spawns here: refuse an id placed on another engine."""
        where = self.pins.get(actor_id)
        if where is not None and where != self.index:
            raise ValueError(_placed_elsewhere(actor_id, self.index, where))
        for rival in self.rival_pins.get(actor_id, ()):
            if rival != self.index and rival not in self.lost:  # it still says it holds the id
                raise ValueError(_placed_elsewhere(actor_id, self.index, rival))

    # -- inbound ---------------------------------------------------------------

    def arrive(self, src: int, seq: int, thunk: Callable[[], Any],
               answer: _Answers | None = None) -> None:
        """Apply ``thunk`` in ``src``'s sequence order (Ray may reorder calls).

        ``answer``: what the call waits on, if it waits; one held here when
        ``src`` is lost, or when this engine stops, is answered with nothing
        (``release_held``), so that its Ray thread is not held for good.
        """
        expect = self.expect.get(src, 1)
        if seq != expect:
            if seq < expect:            # a bug: kept, it would be held for good
                log.error("engine %d: batch %d from %s came again; passed over", self.index,
                          seq, "the driver" if src == DRIVER else f"engine {src}")
                if answer is not None and not answer.done():
                    answer.set_result(None)
                return
            self.held.setdefault(src, {})[seq] = (thunk, answer)
            return
        self._in_order(src, thunk, answer)
        expect += 1
        held = self.held.get(src)
        while held:
            entry = held.pop(expect, None)
            if entry is None:
                break
            self._in_order(src, *entry)
            expect += 1
        self.expect[src] = expect

    def _in_order(self, src: int, thunk: Callable[[], Any], answer: _Answers | None) -> None:
        """Run one of ``src``'s calls in its turn.  One that raises (a bug) is
        logged and its place passes, answered if it waits: a call left
        unfinished would hold every later call of ``src`` for good."""
        try:
            thunk()
        except Exception:
            log.exception("engine %d: a call from %s failed; its place in the order passes",
                          self.index, "the driver" if src == DRIVER else f"engine {src}")
            if answer is not None and not answer.done():
                answer.set_result(None)

    def release_held(self, src: int | None = None) -> None:
        """Drop what arrived early from the lost peer ``src``, answering its calls
        with nothing; or, with None (the engine stops), refuse every held call
        (its sender makes the batch dead letters).  Either way no Ray thread is
        held for good."""
        for source in [src] if src is not None else list(self.held):
            for _, answer in self.held.pop(source, {}).values():
                if answer is not None and not answer.done():
                    if src is None:
                        answer.refuse()
                    else:
                        answer.set_result(None)

    def receive(self, src: int, seq: int, acked: int, wire: list[Any] | None,
                answer: _Answers) -> None:
        """A ``deliver`` call, on the engine's thread: apply it in order, answer when
        handled.  ``wire`` None: the batch could not be unpickled; its place in
        ``src``'s order passes, answered with nothing (the call then fails and
        the sender makes the batch dead letters)."""
        answer.taken = True
        self.arrive(src, seq, lambda: self._take_call(src, acked, wire, answer), answer)

    def _take_call(self, src: int, acked: int, wire: list[Any] | None,
                   answer: _Answers) -> None:
        """A call from ``src``, in its order.  Its acknowledgement too, so that
        a report that our batch did not unpickle there (``_Link.refused``),
        sent before the call, finds the batch still kept."""
        if acked:
            self.links[src].release(acked)
        if wire is None:
            answer.set_result(None)
        else:
            self.apply(src, wire, answer)

    def arrive_ridden(self, peer: int, packet: bytes) -> None:
        """A batch of ``peer``'s that rode back on the answer of our call."""
        (seq,) = _RIDE_HEADER.unpack_from(packet)
        try:
            wire = pickle.loads(memoryview(packet)[_RIDE_HEADER.size:])
        except _PICKLE_ERRORS as exc:
            # Its messages become dead letters on the peer, which has them.
            self.links[peer].report_unloaded(seq, _unloadable_reason(peer, self.index, exc))
            self.arrive(peer, seq, lambda: None)
            return
        self.arrive(peer, seq, lambda: self.apply(peer, wire))

    def apply(self, src: int, wire: list[Any], handled: _Answers | None = None) -> None:
        """One batch from ``src``: messages into inboxes, in order, controls applied.

        ``handled`` is set once every actor the batch went to has taken all
        that was queued for it then: the acknowledgement the sender waits for
        (None for a batch that rode back on an answer: it needs none).
        """
        marks: list[Any] = []
        self.marks = marks
        for target_id, items, form in wire:
            try:
                self._apply_entry(src, target_id, items, form)
            except Exception as exc:        # a bug: the rest of the batch still goes in
                log.exception("engine %d: an entry from engine %s for %r failed",
                              self.index, src, target_id)
                if target_id is not None:
                    self._failed_entry(src, target_id, items, form, exc)
        if handled is not None:
            self.when_handled(src, marks, handled)

    def _failed_entry(self, src: int, target_id: str, items: Any, form: int,
                      exc: Exception) -> None:
        """An entry that raised as it went in: its plain sends become dead
        letters and its asks fail, both "possibly delivered" (part of it may
        have gone in before the error)."""
        reason = f"engine {self.index} failed to take it in ({exc!r}); possibly delivered"
        self.engine._dead_letter_all(target_id, _wire_items(items, form), reason)
        if form != _CODED:
            return
        for _, message, code in items:
            if (code == _ASK or code == _CALL) and message[1] != _ENDED_ASK:
                _RemoteReply(self, src, message[1], target_id).settle(
                    None, RuntimeError(reason))

    def _apply_entry(self, src: int, target_id: str | None, items: Any, form: Any) -> None:
        """One entry of a batch (see _Link._wire): a run, plain items, a
        control, or items with asks and operations among them."""
        if form == _ONE_SENDER:
            self._deliver_from_one(target_id, *items)   # type: ignore[arg-type]
            return
        if form == _PLAIN:
            self._deliver(target_id, items)              # type: ignore[arg-type]
            return
        if target_id is None:
            self._control(src, items)
            return
        run = []
        for item in items:
            if item[2] is None:
                run.append(item)
                continue
            made = self._uncode(src, target_id, item)
            if made is _UNWANTED:
                continue
            if made is not None:
                run.append(made)
                continue
            if run:
                self._deliver(target_id, run)
                run = []
            self._operate(src, target_id, item)
        if run:
            self._deliver(target_id, run)

    def _deliver_from_one(self, target_id: str, sender_id: str | None,
                          messages: list[Any], no_tuples: bool) -> None:
        """Plain sends of one sender, as they crossed: queued as a run, the way
        the sender's own engine queues them (Engine._deliver_remote_run)."""
        self._arriving(target_id, len(messages))
        self.engine._deliver_remote_run(target_id, sender_id, messages, no_tuples)
        self._mark(target_id)

    def _deliver(self, target_id: str, items: list[Any]) -> None:
        self._arriving(target_id, len(items))
        self.engine._deliver_remote(target_id, items)
        self._mark(target_id)

    def _arriving(self, target_id: str, count: int) -> None:
        """Count what arrives; an id pinned elsewhere gets its stand-in first."""
        self.received += count
        engine = self.engine
        if target_id not in engine._registry:
            where = self.pins.get(target_id)
            if where is not None and where != self.index:
                engine._resolve_missing(target_id)     # forward to where it lives

    def _mark(self, target_id: str) -> None:
        ctx = self.engine._registry.get(target_id)
        if ctx is None or _is_stand_in(ctx):
            return
        if isinstance(ctx._inbox, backstage._RouterInbox):
            # A pool holds nothing itself: what waits for room in its routees'
            # "block" inboxes holds the answer (Pool._deliver).
            self.marks.extend(_mark_of(routee) for routee in ctx._inbox._pool._live
                              if routee._waiting)
        else:
            self.marks.append(_mark_of(ctx))

    def when_handled(self, src: int, marks: list[Any], handled: _Answers) -> None:
        self.unhandled.append((src, marks, handled))
        if not self.check_scheduled:
            self.check_scheduled = True
            self.loop.call_soon(self._check_handled)

    def _check_handled(self) -> None:
        """Answer the calls whose messages are all handled.

        Runs once per loop pass while the engine has work, every few
        milliseconds while it waits: never per message.
        """
        self.check_scheduled = False
        self.answer_handled()
        if self.unhandled:
            self.check_scheduled = True
            if self.engine._ready:
                self.loop.call_soon(self._check_handled)
            else:
                self.loop.call_later(0.002, self._check_handled)

    def answer_handled(self) -> None:
        """Answer every call whose batch is handled (also before a link sends,
        so that what is pending for the caller rides back on the answer)."""
        still = []
        for src, marks, answer in self.unhandled:
            if _all_handled(marks):
                self._answer(src, answer)
            else:
                still.append((src, marks, answer))
                link = self.links.get(src)      # None for the driver, who holds no one
                if link is not None and link.holding_for:
                    link.let_go(marks)
        self.unhandled = still

    def _answer(self, src: int, handled: _Answers) -> None:
        """The acknowledgement of a call from ``src``, with a batch for it if one waits."""
        if handled.done():
            return
        link = self.links.get(src)          # None for the driver: nothing rides back
        handled.set_result(link.ride() if link is not None else None)

    def _uncode(self, src: int, target_id: str, item: tuple[Any, ...]) -> Any:
        sender_id, message, code = item
        if code == _FORWARDED:          # its target need not subscribe: kept
            topic, message = message
            return backstage._remote_item(sender_id, backstage._FORWARDED_PUBLICATION,
                                          message, topic)
        if code == _PUBLISH:
            topic, message = message
            if target_id not in self.engine._registry and target_id not in self.pins \
                    and (target_id, self.index) in self.unpinned:
                # The subscriber stopped here, and no engine says it holds the
                # id: dropped, as a stopped subscriber's are on one engine (an
                # actor spawned under the id since did not subscribe).  An id
                # not known here is a dead letter, as any message to it.
                return _UNWANTED
            if not self.engine._wants_publication(target_id, sender_id, topic):
                return _UNWANTED
            return backstage._remote_item(sender_id, _MT.PUBLISH, message, topic)
        if code == _ASK or code == _CALL:
            message, reply_id = message
            reply = (_RemoteReply if code == _ASK else _RemoteCallReply)
            return (sender_id, message, reply(self, src, reply_id, target_id))
        if code == _TERMINATED:
            watched = self.engine._registry.get(sender_id)
            if watched is not None and _is_stand_in(watched) and watched._monitors:
                watched._monitors.pop(target_id, None)   # told by its own engine
                # Its last monitor told, if it stopped: kept, the stand-in sent on
                # to the engine it stopped on, whose own stand-in (to the id's
                # hash engine, this one) sent it back, for good.
                self._drop_stopped(sender_id, src)
            return backstage._remote_item(sender_id, _MT.TERMINATED, message)
        if code == _PILL:
            return backstage._remote_item(None, _MT.POISON_PILL, None)
        return None

    def _operate(self, src: int, target_id: str, item: tuple[Any, ...]) -> None:
        """Subscribe, unsubscribe, monitor or demonitor on behalf of a remote actor."""
        sender_id, topic, code = item
        engine = self.engine
        if code == _DROPPED:
            _publisher_stopped(engine, sender_id, target_id, topic)
            self._drop_stopped(sender_id, src)          # its last word here, if it stopped
            return
        remote = engine._registry.get(sender_id)
        if remote is None:
            link = self.links.get(src)
            if link is None or link.lost:
                return
            remote = self._stand_in(sender_id, link)
        try:
            if code == _SUB:
                engine._subscribe_here(remote, target_id, topic)
            elif code == _UNSUB:
                engine._unsubscribe_here(remote, target_id, topic)
            elif code == _MON:
                engine._monitor_here(remote, target_id)
            elif code == _DEMON:
                engine._demonitor_here(remote, target_id)
        except Exception as exc:
            log.warning("%r on behalf of %r failed: %s", target_id, sender_id, exc)
            if code == _SUB and remote._state is _RUNNING:
                # No publisher here: the subscriber's engine drops the
                # subscription, as it does when a publisher stops.
                engine._enqueue(remote, (target_id, topic, backstage._DROPPED))
        if code == _UNSUB or code == _DEMON:
            self._drop_stopped(sender_id, src)  # the last of what it held, if it stopped

    def _control(self, src: int, control: tuple[Any, ...]) -> None:
        if control[0] == "reply":
            _, reply_id, value, exc = control
            link = self.links.get(src)
            if link is not None:
                link.asked.pop(reply_id, None)
            self.engine._settle_reply(reply_id, value, exc)
        elif control[0] == "pin":
            _, actor_id, where, stamp = control
            # A stand-in that sends elsewhere keeps doing so: what it sent may
            # still be forwarded from there, and must not be overtaken.
            if src != DRIVER:
                if self.hearsay.get(actor_id, (None,))[0] == where:
                    del self.hearsay[actor_id]          # its engine's own word came
                self.pin(actor_id, where, stamp)
            elif self.claim_stamp(actor_id, where) is None and self.pin(actor_id, where, stamp):
                # The driver's word of its spawn, until the engine's own comes:
                # if that came (and the stop after it) before this, and the
                # stop is no longer remembered, the next sweep ends the claim.
                self.hearsay[actor_id] = (where, stamp, self.sweeps)
        elif control[0] == "unpin":
            self._unpinned_there(*control[1:])
        elif control[0] == "ask":
            self._ask_for_driver(*control[1:])
        elif control[0] == "call":
            self._call_for_driver(*control[1:])
        elif control[0] == "unloaded":
            link = self.links.get(src)
            if link is not None:
                link.refused(control[1], control[2])

    # -- the driver's asks -----------------------------------------------------
    # They travel in the driver's batches, in order with its sends; their
    # outcomes wait here for its collect_replies call, so that no Ray thread
    # is held per pending ask (a web server's driver may have hundreds).

    def _ask_for_driver(self, reply_id: str, target_id: str, message: Any,
                        timeout: float | None) -> None:
        # Across: the driver is not an actor here to pause while it waits
        # for room in a full "block" inbox; the ask waits in line instead.
        self._for_driver(reply_id, lambda: self.engine._ask(
            target_id, message, timeout, None, deferred=False, across=True))

    def _call_for_driver(self, reply_id: str, target_id: str, call: backstage.MethodCall,
                         timeout: float | None) -> None:
        """A call of a driver's proxy, made here as a proxy of this engine's
        would (across, as the driver's asks)."""
        engine = self.engine
        self._for_driver(reply_id, lambda: engine._call(
            backstage.Proxy(engine, target_id, None, None, False, timeout), call, across=True))

    def _for_driver(self, reply_id: str, ask: Callable[[], Future[Any]]) -> None:
        """Make the driver's ask (or call) with ``ask``; its outcome goes back as
        reply ``reply_id``, failing it if the ask could not be made."""
        try:
            future = ask()
        except BaseException as exc:
            self._reply_to_driver(reply_id, ("err", _portable_exception(exc)))
            return
        future.add_done_callback(lambda done: self._reply_to_driver(reply_id, _outcome(done)))

    def _reply_to_driver(self, reply_id: str, outcome: tuple[str, Any]) -> None:
        """Any thread (an ask's future may be settled on another).  Each outcome
        pickled alone: one the driver cannot unpickle fails only its own ask."""
        with self.replies_ready:
            self.driver_replies.append((reply_id, _dumps(outcome)))
            self.replies_ready.notify()

    def collect_replies(self) -> list[tuple[str, bytes]]:
        """The driver's ask outcomes so far, waiting for one if none; [] once closing."""
        with self.replies_ready:
            while not self.driver_replies and not self.closing:
                self.replies_ready.wait()
            replies, self.driver_replies = self.driver_replies, []
        return replies

    def close_replies(self) -> None:
        with self.replies_ready:
            self.closing = True
            self.replies_ready.notify_all()

    def send_reply(self, src: int, reply_id: str, value: Any, exc: BaseException | None) -> None:
        if exc is not None:
            exc = _portable_exception(exc)
        link = self.links.get(src)
        if link is not None:
            link.add_control(("reply", reply_id, value, exc))

    # -- peers -----------------------------------------------------------------

    def watch(self, peer: int, handle: Any) -> None:
        ref = handle.watch.remote()
        ref.future().add_done_callback(lambda fut: self.loop.call_soon_threadsafe(
            self.peer_lost, peer, f"engine {peer} lost"))

    def peer_lost(self, peer: int, reason: str) -> None:
        if peer in self.lost or self.closing:
            return
        self.lost[peer] = reason
        self.lost_at[peer] = time.monotonic()
        log.warning("engine %d: %s", self.index, reason)
        engine = self.engine
        for ctx in list(engine._registry.values()):
            if _is_stand_in(ctx) and ctx._state is _RUNNING and _sends_to(ctx) == peer:
                engine._stop_stand_in(ctx.actor_id, reason)
        self.links[peer].lose(reason)
        self.release_held(peer)

    # -- links on one node (see _Conn) --------------------------------------------

    def listen(self) -> None:
        """Take the connections of the peers on this node (EngineHost.start, on
        a Ray thread: the loop watches the socket from its next pass).  Where
        that fails, the peers' batches come by Ray calls (they say so)."""
        assert self.token is not None
        address = _socket_address(self.token, self.index)
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except (AttributeError, OSError) as exc:   # AttributeError: no AF_UNIX here
            log.warning("engine %d: no Unix socket (%r): batches go by Ray calls",
                        self.index, exc)
            return
        try:
            if not address.startswith("\0"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address)
            sock.bind(address)
            if not address.startswith("\0"):
                os.chmod(address, 0o600)
            sock.listen(max(8, self.count))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.warning("engine %d: cannot listen at %r (%r): the batches of peers on "
                        "this node come by Ray calls", self.index, address, exc)
            return
        self.listener = sock
        self.loop.call_soon_threadsafe(self.loop.add_reader, sock, self._accept)

    def know_peers(self, nodes: list[str], pids: list[int]) -> None:
        """Each engine's Ray node and pid (before any peer connects): a socket
        is taken only from the process of the peer it names."""
        self.nodes, self.pids = nodes, pids

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("engine %d: accepting a peer's socket failed: %r", self.index, exc)
            return
        if not _is_process(sock, None):
            log.warning("engine %d: refused a socket from another user's process", self.index)
            sock.close()
            return
        conn = _Conn(sock, self.loop, lambda frames: None,
                     lambda reason: self.accepted.remove(conn))
        conn.max_frame = _HELLO_MAX
        conn.on_frames = lambda frames: self._hello(conn, frames)
        self.accepted.append(conn)

    def _hello(self, conn: _Conn, frames: list[memoryview]) -> None:
        """A new socket's first frame: the cluster's token and the peer's number;
        then its calls.  Taken once per peer, from the peer's own process (its
        pid, where the system says; none before know_peers, as peers connect
        only after it): any other socket is closed, and no peer is thought
        lost for it."""
        token, _, number = bytes(frames[0]).decode(errors="replace").rpartition(" ")
        peer = int(number) if number.isdigit() else -1
        if token != self.token or peer not in self.links or peer in self.connected \
                or not self.pids or not _is_process(conn.sock, self.pids[peer]):
            log.warning("engine %d: refused a socket that is not a peer's of this cluster "
                        "(or a second one from a peer)", self.index)
            conn.close()
            self.accepted.remove(conn)
            return
        self.connected.add(peer)
        conn.max_frame = None
        conn.on_frames = lambda frames: self._calls_came(peer, conn, frames)
        conn.on_closed = functools.partial(self._socket_closed, peer)
        if len(frames) > 1:
            self._calls_came(peer, conn, frames[1:])

    def _calls_came(self, peer: int, conn: _Conn, frames: list[memoryview]) -> None:
        """Batches from ``peer`` by socket, as ``deliver`` takes a call's: each
        applied in its order and answered when handled.  A frame that is not a
        batch of the peer's (a bug) closes the socket: the peer is then lost,
        loudly, where a frame passed over would stall the link for good."""
        for frame in frames:
            try:
                src, seq, acked = _CALL_HEADER.unpack_from(frame)
            except struct.error:
                src = DRIVER
            if src != peer:
                log.error("engine %d: a frame that is not a batch of engine %d's came on "
                          "its socket", self.index, peer)
                conn.close()
                self._socket_closed(peer, "sent a frame that is not a batch")
                return
            wire: list[Any] | None = None
            failure = None
            try:
                wire = pickle.loads(frame[_CALL_HEADER.size:])
            except _PICKLE_ERRORS as exc:
                failure = _unloadable_reason(src, self.index, exc)
            self.receive(src, seq, acked, wire, _SocketAnswer(conn, seq, failure))

    def connect_peers(self) -> None:
        """Send to the peers on this node by socket, not by Ray calls.  Before
        any traffic: a link that has made calls keeps them."""
        assert self.token is not None
        nodes = self.nodes
        for peer, link in self.links.items():
            if nodes[peer] != nodes[self.index] or peer in self.lost or link.waiter.calls:
                continue
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            except (AttributeError, OSError):          # AttributeError: no AF_UNIX here
                return
            try:
                sock.connect(_socket_address(self.token, peer))
            except OSError as exc:
                sock.close()
                log.warning("engine %d: no socket to engine %d on this node (%r): its "
                            "batches go by Ray calls", self.index, peer, exc)
                continue
            if not _is_process(sock, self.pids[peer]):
                sock.close()
                log.warning("engine %d: the socket of engine %d is another process's: its "
                            "batches go by Ray calls", self.index, peer)
                continue
            conn = _Conn(sock, self.loop, lambda frames: None,
                         functools.partial(self._socket_closed, peer))
            conn.write(f"{self.token} {self.index}".encode())
            link.waiter.close()
            link.waiter = _SocketCalls(link, conn)

    def _socket_closed(self, peer: int, reason: str) -> None:
        self.peer_lost(peer, f"engine {peer} lost (its socket {reason})")

    def close_sockets(self) -> None:
        """Once the engine's loop has stopped (EngineHost.stop)."""
        for conn in list(self.accepted):
            conn.close()
        if self.listener is not None:
            address = self.listener.getsockname()
            self.listener.close()
            if isinstance(address, str) and address and not address.startswith("\0"):
                with contextlib.suppress(OSError):
                    os.unlink(address)

    # -- quiescence --------------------------------------------------------------

    def busy(self) -> bool:
        engine = self.engine
        if engine._ready or engine._inbound:
            return True
        return any(link.pending or link.inflight or link.flush_scheduled
                   for link in self.links.values()) or any(self.held.values())


class _Answer:
    """What a ``deliver`` call waits for on its Ray thread: the engine's thread
    settles it once the batch is handled, with a batch that rides back or None.
    (A bare lock, taken twice: a threading.Event cost 5-15 CPU-us a call more.)"""
    __slots__ = ("lock", "value", "settled", "taken", "refused")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.value: bytes | None = None
        self.settled = False
        self.taken = False          # the engine's thread has the batch (it answers for it)
        self.refused = False

    def done(self) -> bool:
        return self.settled

    def set_result(self, value: bytes | None) -> None:
        self.value = value
        self.settled = True
        self.lock.release()

    def refuse(self) -> None:
        """The batch was not applied and will not be: the call fails (the sender
        then makes it dead letters)."""
        self.refused = self.settled = True
        self.lock.release()

    def wait(self, engine: Engine) -> bytes | None:
        """The answer; EngineClosed if ``engine`` closed without taking the batch
        (a batch it took is answered by the engine, or by EngineHost.stop)."""
        while not self.lock.acquire(timeout=1.0):
            if engine.closed and not self.taken:
                raise backstage.EngineClosed("the engine closed before it took the batch")
        if self.refused:
            raise backstage.EngineClosed("the engine closed before it applied the batch")
        return self.value


# What a batch is answered with: a Ray call's or a socket's.
_Answers = _Answer | _SocketAnswer


class EngineHost:
    """One backstage engine in a threaded Ray actor, run by a thread of its own.

    Ray's calls run on Ray's threads and hand their work to the engine's
    thread; ``deliver`` then waits (holding its Ray thread) until the batch is
    handled, which is the sender's acknowledgement.  Measured against the
    engine on an async Ray actor's event loop, the host before: Ray runs an
    async actor's call in a fiber that posts a coroutine to the loop's thread
    and waits for it, 525 against 355 CPU-us a call on the receiving side
    (batches of 100, window 4; docs/cluster.md, Design).
    The class is made per cluster (``_host_class``): Ray's concurrency
    groups, sized to the cluster, cannot be set per actor with .options().
    """
    host: _Host             # set by start()

    def __init__(self, index: int, count: int, settings: dict[str, Any]) -> None:
        self.index = index
        self.count = count
        self.settings = settings
        logging.basicConfig(level=settings.get("log_level", logging.WARNING))

    def start(self, handles: list[Any]) -> tuple[int, str]:
        """Start the engine; (this process's pid, its Ray node)."""
        # Ray's threads of this process need the GIL to take a call in and to
        # answer it; the engine's thread, busy with turns, lets go of it only
        # every switch interval.  5 ms (Python's default) made 30 round trips
        # to an engine busy with local traffic take 1.9 s; 1 ms: 0.5 s, with
        # throughput unchanged (tests/test_cluster_ray.py pins it).  This
        # process is the host's own, so the setting touches no user program.
        sys.setswitchinterval(_SWITCH_INTERVAL)
        engine = _make_engine(self.settings, "selectors")
        self.host = _Host(self.index, self.count, handles, self.settings, engine)
        self.thread = threading.Thread(target=_run_engine, args=(engine,), daemon=True,
                                       name=f"backstage-engine-{self.index}")
        self.thread.start()
        for peer, handle in enumerate(handles):
            if peer != self.index:
                self.host.watch(peer, handle)
        if self.host.token is not None:
            self.host.listen()
        return os.getpid(), ray.get_runtime_context().get_node_id()

    def know_peers(self, nodes: list[str], pids: list[int]) -> None:
        """Each engine's Ray node and pid, before any peer connects (see _Conn)."""
        self.host.engine._call_on_loop(self.host.know_peers, nodes, pids)

    def link_up(self) -> None:
        """Links to the peers on this node go by socket (see _Conn)."""
        self.host.engine._call_on_loop(self.host.connect_peers)

    @ray.method(concurrency_group="deliver", enable_task_events=False)
    def deliver(self, packet: bytes) -> bytes | None:
        """A batch: ``packet`` is _CALL_HEADER (src, seq, acked: the sender has
        applied our batches up to that sequence number), then the pickled
        batch.  Returns once the batch is handled (not merely queued): the
        sender's ack, carrying a batch of ours for the sender when one waits."""
        src, seq, acked = _CALL_HEADER.unpack_from(packet)
        host = self.host
        answer = _Answer()
        try:
            wire = pickle.loads(memoryview(packet)[_CALL_HEADER.size:])
        except _PICKLE_ERRORS as exc:
            host.loop.call_soon_threadsafe(host.receive, src, seq, acked, None, answer)
            answer.wait(host.engine)
            raise RuntimeError(_unloadable_reason(src, self.index, exc)) from None
        if host.engine.closed:
            raise backstage.EngineClosed(f"engine {self.index} is closed")
        host.loop.call_soon_threadsafe(host.receive, src, seq, acked, wire, answer)
        return answer.wait(host.engine)

    @ray.method(concurrency_group="watch", enable_task_events=False)
    def watch(self) -> None:
        threading.Event().wait()            # never set: the call fails when we die

    def spawn(self, src: int, seq: int, payload: bytes) -> tuple[Any, ...]:
        """The driver's spawn_actor or spawn_pool, ``payload`` the pickled (class,
        id, args, kwargs, options): ("ok", the stamp of this engine's word that
        the id lives here, [(routee id, stamp), ...] of a pool) or ("err",
        exception, []).  Unpickled here,
        so that one that does not unpickle still takes its place in the
        driver's order (as a deliver does) and fails with why."""
        host = self.host
        result: Future[Any] = Future()
        thunk: Callable[[], None]
        try:
            actor_class, actor_id, args, kwargs, options = pickle.loads(payload)
        except _PICKLE_ERRORS as exc:
            failure = TypeError(
                f"engine {self.index} could not unpickle the spawn's class or arguments "
                f"({exc!r}); pass ones the engine processes can import: a module on the "
                f"PYTHONPATH they inherit from the driver's environment, not one added to "
                f"sys.path after the cluster started")
            thunk = lambda: result.set_result(("err", failure, []))    # noqa: E731
        else:
            thunk = lambda: _spawn_into(                            # noqa: E731
                result, host, actor_class, actor_id, args, kwargs, options)
        host.loop.call_soon_threadsafe(host.arrive, src, seq, thunk)
        return result.result()              # type: ignore[no-any-return]

    @ray.method(concurrency_group="replies", enable_task_events=False)
    def collect_replies(self) -> list[tuple[str, bytes]]:
        """The outcomes of the driver's asks, once there are some (a long poll)."""
        return self.host.collect_replies()

    @ray.method(concurrency_group="idle", enable_task_events=False)
    def wait_idle(self, timeout: float | None) -> dict[str, Any] | None:
        """Wait until nothing is queued here, at most ``timeout`` seconds; then
        this engine's counters, or None if it was still busy.  In a group of its
        own, and never past the driver's timeout: a wait on an engine that is
        never idle holds none of the threads that spawns, stats and close use."""
        host = self.host
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # The engine's tick does not tell when it ends: look again soon.
            while host.engine._call_on_loop(host.busy):
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                time.sleep(0.002)
            return host.engine._call_on_loop(_counters, host)
        except backstage.EngineClosed:
            # The cluster closed while a wait the driver gave up on ran here:
            # no error for Ray to print about an answer no one takes.
            return None

    def stats(self) -> dict[str, Any]:
        return self.host.engine._call_on_loop(_stats, self.host)

    def dead_letters(self) -> list[Any]:
        return self.host.engine._call_on_loop(_dead_letters, self.host)

    def pin_of(self, actor_id: str) -> int | None:
        """Where this engine was told ``actor_id`` lives, or None: read on Ray's
        thread, as ``placed``."""
        return self.host.pins.get(actor_id)

    def placed(self, actor_id: str) -> int:
        """Where this engine sends ``actor_id``: where it was pinned or an actor
        spawned it, as every engine was told, else here.  Read on Ray's thread
        (a dict lookup): an engine in a long turn does not hold it up."""
        return self.host.pins.get(actor_id, self.index)

    def proxy_class(self, actor_id: str, cls: type | None) -> tuple[str, Any]:
        """For the driver's Cluster.proxy (see _class_for_proxy): read on Ray's
        thread, as ``placed``, so that an engine in a long turn does not hold it up."""
        return _class_for_proxy(self.host.engine, actor_id, cls)

    def get_actor_ids(self) -> list[Any]:
        engine = self.host.engine
        return engine._call_on_loop(
            lambda: [i for i, c in engine._registry.items() if not _is_stand_in(c)])

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(engine, *args)`` on the engine's thread (tests, tools)."""
        engine = self.host.engine
        return engine._call_on_loop(fn, engine, *args)

    def closing(self) -> None:
        self.host.close_replies()

    def stop(self) -> None:
        host = self.host
        host.close_replies()
        host.engine.close()             # from this thread: waits until the run has closed
        self.thread.join(5)
        for link in host.links.values():
            link.waiter.close()
        host.close_sockets()
        if self.thread.is_alive():
            log.error("engine %d: its thread did not end; calls waiting on it stay", self.index)
            return
        for _, _, answer in host.unhandled:     # calls still waiting: let their threads go
            if not answer.done():
                answer.set_result(None)
        host.release_held()


def _run_engine(engine: Engine) -> None:
    try:
        engine.run_forever()
    except BaseException:
        log.exception("the engine's run ended with an error")


# The GIL switch interval of an engine's process (see EngineHost.start).
_SWITCH_INTERVAL = 0.001

# Ray threads of an engine's process for the driver's calls other than
# deliver, watch, collect_replies and wait_idle: spawns, stats, close, tools.
_CONTROL_THREADS = 4
# Ray threads for the driver's wait_idle calls (from several driver threads).
_IDLE_THREADS = 2
# Seconds close() waits for the driver's calls under way before Ray shuts down.
_CLOSE_WAIT = 10.0


@functools.cache
def _host_class(deliver_threads: int, watch_threads: int) -> Any:
    """EngineHost as a Ray actor class with concurrency groups of these sizes:
    ``deliver`` one thread per call that may be in flight to an engine (each
    waits until its batch is handled; more would queue in Ray, never
    deadlock: the engine waits on none of them), ``watch`` one per watcher
    (the calls never return), ``replies`` for the driver's long poll,
    ``idle`` for the driver's wait_idle."""
    options: dict[str, Any] = {
        "num_cpus": 0, "max_restarts": 0, "max_concurrency": _CONTROL_THREADS,
        "concurrency_groups": {"deliver": deliver_threads, "watch": watch_threads,
                               "replies": 1, "idle": _IDLE_THREADS}}
    return ray.remote(**options)(EngineHost)


###############################################################################
# Placement: one id, one engine
###############################################################################

def _mark_of(ctx: Any) -> tuple[Any, int]:
    """(ctx, count): handled once the actor's count of messages taken reaches
    this, those waiting for room in a "block" inbox included: a call's answer,
    and so the sender's link, waits for them (Engine._wait_from_afar)."""
    waiting = ctx._waiting
    return (ctx, ctx._count + len(ctx._inbox) - ctx._head + (len(waiting) if waiting else 0))


def _all_handled(marks: list[Any]) -> bool:
    """Whether every actor a batch went to has taken what was queued for it then:
    its count reached the mark, or nothing is left to take (a message that
    waited for room ahead of the batch's may have been withdrawn since, and
    left the mark one too high)."""
    return all(ctx._count >= mark or ctx._state is not _RUNNING
               or (len(ctx._inbox) <= ctx._head and not ctx._waiting)
               for ctx, mark in marks)


def _placed_elsewhere(actor_id: str, here: int, where: int) -> str:
    return (f"cannot spawn {actor_id!r} on engine {here}: the cluster places it on engine "
            f"{where}; spawn it from the driver with cluster.spawn_actor(cls, {actor_id!r}, "
            f"pin={here}) to move it (once no actor is live under that id), or pick "
            f"another id")


def _spawn_into(result: Future[Any], host: _Host, actor_class: type, actor_id: str,
                args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> None:
    """The driver's spawn, on the engine's thread: see EngineHost.spawn."""
    try:
        host.placing(actor_id)
        pool = options.pop("pool", None)        # Cluster.spawn_pool's
        routees: list[str] = []
        if pool is None:
            host.engine.spawn_actor(actor_class, actor_id, *args, **options, **kwargs)
        else:
            spread = pool.get("routee_ids")     # placed already by the driver
            made = host.engine._spawn_pool(
                actor_class, actor_id, pool["size"], args, kwargs, pool["routing"],
                pool["hash_key"], options["capacity"], options["overflow"],
                pool["supervisor"], None, spread)
            routees = [] if spread else made.routees
        result.set_result(("ok", host.claim_stamp(actor_id, host.index) or 0,
                           [(r, host.claim_stamp(r, host.index) or 0) for r in routees]))
    except BaseException as exc:
        result.set_result(("err", _portable_exception(exc), []))


def _class_for_proxy(engine: Engine, actor_id: str, cls: type | None) -> tuple[str, Any]:
    """("ok", the live actor's class or None), or ("wrong", why) if ``cls`` is
    not the live actor's (Engine.proxy's check); any thread (get_actor is)."""
    actor = engine.get_actor(actor_id)
    live_class = None if actor is None else backstage._class_behind(actor)
    if cls is not None:
        try:
            backstage._check_proxied_class(actor_id, cls, live_class)
        except TypeError as exc:
            return "wrong", str(exc)
    return "ok", live_class


def _idle_stand_in(ctx: Any, links: Iterable[_Link]) -> bool:
    """Whether the stand-in ``ctx`` holds nothing: no message queued, no monitor,
    subscriber, subscription or held sender, not in a link's care.  Dropping it
    loses nothing: the next send to its id makes it anew."""
    if ctx._scheduled or len(ctx._inbox) or any(ctx in link.holding_for for link in links):
        return False
    extra = ctx._extra
    return extra is None or not any(getattr(extra, name, None) for name in _EXTRAS_FIELDS)


def _live_here(engine: Engine, actor_id: str) -> bool:
    """Whether a live actor (not a stand-in) has ``actor_id`` on this engine."""
    ctx = engine._registry.get(actor_id)
    return ctx is not None and not _is_stand_in(ctx) and ctx._state is _RUNNING


def _place(engine: Engine, actor_id: str, where: int, stamp: int) -> None:
    """The driver's move: from now on ``actor_id`` lives on engine ``where``, by
    a word stamped ``stamp`` (above every engine's clock when the driver
    checked that no actor lives under the id): the pin, and a stand-in for it
    re-routed there (or stopped, when it is this engine or a lost one; what it
    held becomes dead letters: no actor had the id when they were sent)."""
    host = _current
    assert host is not None
    # The only claim from now on: no live engine holds the id, the driver
    # found, and a lost engine's claim must not come back when it stops.
    host.rival_pins.pop(actor_id, None)
    host.pins.pop(actor_id, None)
    host.pin_stamps.pop(actor_id, None)
    host.pin(actor_id, where, stamp)
    host._send_there(actor_id, where)


def _unplace(engine: Engine, actor_id: str, where: int, stamp: int) -> None:
    """The driver's move whose spawn failed: its claim goes (as a stop would end it)."""
    host = _current
    assert host is not None
    host.unpin(actor_id, where, stamp)


def _pinned_here(engine: Engine, actor_ids: list[str]) -> list[str]:
    """Of ``actor_ids``, those this engine knows an engine to hold: the driver
    keeps its pin of those (it sends there, and the engine forwards: sending
    elsewhere now could overtake what is on its way)."""
    host = _current
    assert host is not None
    return [actor_id for actor_id in actor_ids if actor_id in host.pins]


def _live_here_at(engine: Engine, actor_id: str) -> tuple[bool, int]:
    """Whether a live actor has ``actor_id`` here, and this engine's clock."""
    host = _current
    assert host is not None
    return _live_here(engine, actor_id), host.clock


def _publisher_stopped(engine: Engine, publisher_id: str, subscriber_id: str,
                       topic: str) -> None:
    """A publisher on another engine stopped: its subscriber here drops the
    subscription, as it would for a local publisher."""
    sub = engine._registry.get(subscriber_id)
    if sub is not None and sub._subscriptions:
        sub._subscriptions.discard((publisher_id, topic))
    stand_in = engine._registry.get(publisher_id)
    if stand_in is not None and stand_in._subscribers:
        subscribed = stand_in._subscribers.get(topic)
        if subscribed is not None and subscribed.get(subscriber_id) is sub:
            del subscribed[subscriber_id]
            if not subscribed:      # an empty topic would keep the stand-in from the sweep
                del stand_in._subscribers[topic]


def _outcome(future: Future[Any]) -> tuple[str, Any]:
    """A settled ask's outcome for the driver: ("ok", value) or ("err", exception),
    the reply replaced by a TypeError saying why when it does not travel."""
    exc = future.exception()
    if exc is not None:
        return ("err", _portable_exception(exc))
    value = future.result()
    why = _round_trips(value)
    if why is not None:
        return ("err", TypeError(_unpicklable_reason("the reply", why)))
    return ("ok", value)


def _unpickled_outcome(outcome: bytes) -> tuple[str, Any]:
    """An ask's outcome as the driver gets it: ("ok"/"err", value)."""
    try:
        status, value = pickle.loads(outcome)
    except Exception as exc:
        return ("err", TypeError(f"the reply cannot be unpickled in the driver ({exc!r}); "
                                 f"reply with data whose classes the driver can import"))
    return status, value


def _counters(host: _Host) -> dict[str, Any]:
    return {"sent": {peer: link.seq for peer, link in host.links.items()},
            "expect": dict(host.expect), "busy": host.busy(), "lost": sorted(host.lost)}


def _stats(host: _Host) -> dict[str, Any]:
    engine = host.engine
    actors = [c for c in engine._registry.values() if not _is_stand_in(c)]
    return {"engine": host.index, "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "actors": len(actors), "messages": sum(c._count for c in actors),
            "dead_letters": engine.dead_letter_count, "lost": dict(host.lost),
            "lost_at": dict(host.lost_at), "received": host.received,
            "links": {p: {"via": "socket" if isinstance(lk.waiter, _SocketCalls) else "ray",
                          "batches": lk.batches, "calls": lk.waiter.calls, "messages": lk.messages,
                          "unsent": lk.pending_count, "unsent_peak": lk.unsent_peak,
                          "over_buffer": lk.over_buffer, "valve_opened": lk.valve_opened}
                      for p, lk in host.links.items()},
            "inspector": engine.inspector_path}


def _dead_letters(host: _Host) -> list[Any]:
    """The engine's dead letters, each one that travels (a message that does not
    pickle and unpickle, as its repr)."""
    out = []
    for record in host.engine.dead_letters:
        if _round_trips(record) is None:
            out.append(record)
        else:
            envelope = record.envelope
            out.append(DeadLetter(record.target_id, Envelope(
                envelope.sender_id, envelope.message_type, repr(envelope.message)),
                record.reason, record.time))
    return out


def _make_engine(settings: dict[str, Any], backend: str) -> Engine:
    return Engine(backend=backend, inspector=_feed_path(settings),
                  dead_letters_kept=settings.get("dead_letters_kept", 1000))


###############################################################################
# The inspector: each engine's feed says which cluster it is part of
###############################################################################

def _feed_path(settings: dict[str, Any]) -> bool | str:
    """``inspector=True``: the usual place; a directory: ``DIR/<cluster>-<pid>.sock``."""
    where = settings.get("inspector", False)
    if not isinstance(where, str):
        return bool(where)
    backstage._make_private_dir(where)
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in settings["name"])[:40]
    return os.path.join(where, f"{name}-{os.getpid()}.sock")


def _label_feed(host: _Host, settings: dict[str, Any]) -> None:
    """Tell the engine's inspector feed its cluster and number (on the engine's thread)."""
    feed = host.engine._inspector
    if feed is not None:
        feed.cluster = {"name": settings.get("name", "?"), "engine": host.index,
                        "engines": host.count}


###############################################################################
# The driver side
###############################################################################

# Seconds at least between two wakes of the driver's ask clock (a timeout
# runs out this much late at most).
_CLOCK_GRAIN = 0.002


class _AskClock:
    """The deadlines of the driver's asks, kept from the call (one thread, a heap).

    An ask waits in the driver while its engine's window is full, and its
    engine answers it only after what came before it: its timeout starts at
    the call, as an ask on one engine's does, not when it reaches its engine.
    """

    def __init__(self, expire: Callable[[list[tuple[str, float]]], None],
                 pending: dict[str, Any]) -> None:
        self._expire = expire           # called with [(reply id, timeout)] due, no lock held
        self._pending = pending         # the asks not yet settled, by reply id
        self._heap: list[tuple[float, str, float]] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self, reply_id: str, timeout: float) -> None:
        """Under the driver's lock (``pending`` does not change meanwhile)."""
        with self._changed:
            if self._stopped:
                return
            heap = self._heap
            if len(heap) > 2 * len(self._pending) + 1024:
                # The deadlines of answered asks stay until due: drop them
                # now and then, so that many quick asks do not pile them up.
                heap[:] = [entry for entry in heap if entry[1] in self._pending]
                heapq.heapify(heap)
            heapq.heappush(heap, (time.monotonic() + timeout, reply_id, timeout))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="backstage-cluster-ask-clock")
                self._thread.start()
            elif self._heap[0][1] == reply_id:
                self._changed.notify()      # sooner than what the thread sleeps for

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._heap.clear()
            self._changed.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        with self._changed:
            while not self._stopped:
                heap, now = self._heap, time.monotonic()
                due = []
                while heap and heap[0][0] <= now:
                    _, reply_id, timeout = heapq.heappop(heap)
                    due.append((reply_id, timeout))
                if due:
                    self._changed.release()
                    try:
                        self._expire(due)
                    except Exception:
                        log.exception("cluster: timing out the driver's asks")
                    finally:
                        self._changed.acquire()
                else:
                    # At least _CLOCK_GRAIN between wakes: the deadlines of answered
                    # asks stay in the heap (see start), and a dense run of them
                    # would wake the thread once each.
                    # At most TIMEOUT_MAX: a longer wait raises (an ask with a
                    # timeout of 1e10 s once killed this thread).
                    self._changed.wait(min(max(heap[0][0] - now, _CLOCK_GRAIN),
                                           threading.TIMEOUT_MAX) if heap else None)


# Set on the thread that settles the driver's asks (see _Settler).
_settling_here = threading.local()


class _DriverFuture(backstage.AskFuture[Any]):
    """A driver ask's (or proxy call's) future: waiting on it where its answer
    would be settled (in a done callback of another ask) raises at once
    instead of for good.  An AskFuture, so that asyncio code awaits it."""

    def __init__(self) -> None:
        Future.__init__(self)
        self._engine = None  # type: ignore[assignment]  # the driver has no engine

    def _refuse_to_deadlock(self) -> None:
        if not self.done() and getattr(_settling_here, "active", False):
            raise backstage.BackstageError(
                "a done callback of a cluster ask waited for another ask's answer; "
                "callbacks run on the thread that settles the asks, so it would wait "
                "forever: chain with add_done_callback, or wait on a thread of your own")


class _Settler:
    """The driver's thread that settles its asks, so that their done callbacks
    run on a thread of the driver's, never on Ray's: a callback there that
    called the cluster (spawn_actor, stats, an ask's result) waited on Ray
    from Ray's own I/O thread, and hung the driver and close() for good."""

    def __init__(self, settle: Callable[[], None]) -> None:
        self._settle = settle
        self._wake = threading.Condition()
        self._due = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        """Settle what is decided, soon, on the settler's thread; any thread."""
        with self._wake:
            if self._stopped:
                return
            self._due = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="backstage-cluster-settler")
                self._thread.start()
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        _settling_here.active = True
        while True:
            with self._wake:
                while not self._due and not self._stopped:
                    self._wake.wait()
                if self._stopped and not self._due:
                    return
                self._due = False
            try:
                self._settle()
            except Exception:
                log.exception("cluster: settling the driver's asks")


class RayCluster:
    """The driver's side of ``backstage.Cluster(transport="ray")``: see backstage.Cluster."""

    def __init__(self, engines: int, address: str | None = None, *,
                 batch_limit: int = DEFAULT_BATCH_LIMIT, window: int = DEFAULT_WINDOW,
                 send_buffer: int | None = None,
                 ray_init: dict[str, Any] | None = None,
                 engine_options: list[dict[str, Any]] | None = None,
                 inspector: bool | str = False, dead_letters_kept: int = 1000,
                 name: str | None = None,
                 start_timeout: float | None = 60.0,
                 local_links: bool = True) -> None:
        backstage._check_int("batch_limit", batch_limit)
        backstage._check_int("window", window)
        if send_buffer is not None:
            backstage._check_int("send_buffer", send_buffer,
                                 why="; or None for window * batch_limit")
        # Checked before Ray starts: a refusal leaves no Ray running.
        if inspector is not False and not isinstance(inspector, (bool, str)):
            raise TypeError(f"inspector must be True or a directory (str), not {inspector!r}")
        backstage._check_engine_args(dead_letters_kept, 1, "block")
        if start_timeout is not None:
            backstage._check_delay("Cluster", "start_timeout", start_timeout,
                                   allow_zero=False)
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be the cluster's name in the inspector (a non-empty "
                            f"str), or None for the program's name and pid, not {name!r}")
        if not isinstance(local_links, bool):
            raise TypeError(f"local_links must be True (engines on one node send to each "
                            f"other by socket) or False (by Ray calls), not {local_links!r}")
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a Ray address (a str such as 'auto' or "
                            f"'ray://host:10001') or None to start Ray here, not {address!r}")
        if ray_init is not None and not isinstance(ray_init, dict):
            raise TypeError(f"ray_init must be a dict of ray.init() arguments (or None), not "
                            f"{ray_init!r}")
        if engine_options is not None and (
                not isinstance(engine_options, list) or len(engine_options) != engines
                or not all(isinstance(o, dict) for o in engine_options)):
            raise TypeError(f"engine_options must be a list of {engines} dicts of Ray actor "
                            f"options, one per engine (or None), not {engine_options!r}")
        self.count = engines
        self.started_ray = False
        self._lock = threading.RLock()      # the driver's links; any thread
        self._seq = [0] * engines
        self._pending: list[list[Any]] = [[] for _ in range(engines)]  # sends not yet sent
        self._window_used = [0] * engines
        self._window = window
        self._batch_limit = batch_limit
        self._pins: dict[str, int] = {}
        self._pins_checked_at = DRIVER_PINS_CHECKED_AT
        self._lost: dict[int, str] = {}
        # The driver's own dead letters, the newest dead_letters_kept, as an engine keeps.
        self._dead: deque[DeadLetter] = deque(maxlen=dead_letters_kept)
        self._inflight: set[Any] = set()
        # reply id -> (future, engine, target id) of the asks not yet answered
        self._asked: dict[str, tuple[Future[Any], int, str]] = {}
        self._ask_ids = 0
        self._collecting: set[int] = set()          # engines with a collect_replies call open
        self._settling: list[tuple[Future[Any], str, Any]] = []   # asks decided, to settle
        self._clock = _AskClock(self._timed_out, self._asked)
        self._settler = _Settler(self._settle)
        self._closed = False
        # Driver calls that talk to the engines, under way: close() shuts Ray
        # down only after they end, so that none reaches Ray after it (Ray's
        # .remote() would start a Ray of its own, with default settings).
        self._gate = threading.Condition()
        self._calls = 0
        if not ray.is_initialized():
            self._init_ray(address, ray_init or {})
        elif ray_init or address is not None:
            log.warning("Ray already runs in this process (another Cluster, or ray.init()): "
                        "this cluster uses it, and its address and ray_init are not used")
        self.name = name if name is not None else f"{backstage._program_name()}-{os.getpid()}"
        # Where this cluster's engines on one node listen for each other (see _Conn).
        self.links_token = uuid.uuid4().hex if local_links else None
        settings = {"batch_limit": batch_limit, "window": window, "send_buffer": send_buffer,
                    "inspector": inspector,
                    "dead_letters_kept": dead_letters_kept, "name": self.name,
                    "links_token": self.links_token}
        options = engine_options or [{}] * engines
        try:
            host = _host_class(max(2, engines * window), engines)
            self.hosts = [host.options(**options[i]).remote(i, engines, settings)
                          for i in range(engines)]
            self.pids = self._start(options, start_timeout)
            if local_links and engines > 1:
                self._link_up(start_timeout)
            for i, handle in enumerate(self.hosts):
                ref = handle.watch.remote()
                ref.future().add_done_callback(
                    lambda fut, i=i: self._engine_lost(i, f"engine {i} lost"))
        except BaseException:
            for handle in getattr(self, "hosts", ()):   # in a Ray that stays (joined)
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=True)
            self._shutdown_ray()
            raise

    def _start(self, options: list[dict[str, Any]], timeout: float | None) -> list[int]:
        """Start every engine; their pids.  An engine Ray has not started within
        ``timeout`` (it could not place it: a resource no node has, or too few
        CPUs) is named with its options, not left as Ray's bare GetTimeoutError."""
        refs = [h.start.remote(self.hosts) for h in self.hosts]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if len(ready) < len(refs):
            late = [i for i, ref in enumerate(refs) if ref not in ready]
            raise TimeoutError(
                f"engine(s) {late} did not start within start_timeout={timeout} s: Ray could "
                f"not place them (their engine_options: {[options[i] for i in late]}; ask "
                f"only for resources some node has) or the machine is too slow to start "
                f"them (pass a longer start_timeout=)")
        started: list[tuple[int, str]] = ray.get(refs)
        self.nodes = [node for _, node in started]
        return [pid for pid, _ in started]

    @property
    def local_links(self) -> bool:
        """Whether engines on one node send to each other by socket."""
        return self.links_token is not None

    def _link_up(self, timeout: float | None) -> None:
        """Engines on one node send to each other by socket (see _Conn)."""
        ray.get([h.know_peers.remote(self.nodes, self.pids) for h in self.hosts],
                timeout=timeout)
        ray.get([h.link_up.remote() for h in self.hosts], timeout=timeout)

    def _init_ray(self, address: str | None, ray_init: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False}
        path = os.pathsep.join(p for p in sys.path if p)
        address = address or os.environ.get("RAY_ADDRESS") or None   # Ray's own variable
        if address is None:
            # Ray started here: bound to loopback; its workers inherit this
            # environment, so the driver's modules import there.  (A job-level
            # runtime_env would do it too, but costs 3-4 s of worker start.)
            kwargs["_node_ip_address"] = "127.0.0.1"
            kwargs.update(ray_init)
            saved = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = path
            try:
                # "local": a new Ray, never one that `ray start` left running
                # on this machine (address=None would join that one).
                ray.init(address="local", **kwargs)
            finally:
                if saved is None:
                    del os.environ["PYTHONPATH"]
                else:
                    os.environ["PYTHONPATH"] = saved
        else:
            # Joining: the cluster's workers did not inherit our environment.
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
            kwargs.update(ray_init)
            ray.init(address=address, **kwargs)
        self.started_ray = True

    # -- placement ---------------------------------------------------------------

    def engine_of(self, actor_id: str) -> int:
        """Where the driver sends ``actor_id``: its pin, else its hash engine
        (which forwards to where an actor spawned it), unless that is lost."""
        where = self._pins.get(actor_id)
        if where is not None:
            return where
        home = home_of(actor_id, self.count)
        return home if home not in self._lost else self._placed_after_loss(actor_id, home)

    def _placed_after_loss(self, actor_id: str, home: int) -> int:
        """Where ``actor_id`` lives now that its hash engine ``home`` is lost: an
        actor may have spawned it on another engine, and every engine was told
        (_Host.spawned).  One live engine is asked, once: the answer is kept as
        the driver's pin, also when it names a lost engine (the id lived there,
        and no actor may spawn it elsewhere now: only the driver's pin= moves
        it); asking at every send made each one a Ray call, 300 times as slow
        as a send to a live engine.  None found: ``home``, asked again next
        time (an actor may spawn it later); its sends meanwhile are dead
        letters."""
        placed = self._ask_where(actor_id)
        if placed is None:
            return home
        self._pins[actor_id] = placed
        self._check_pins()
        return placed

    def _ask_where(self, actor_id: str) -> int | None:
        """What the first live engine that answers was told of ``actor_id``."""
        for engine in range(self.count):
            if engine in self._lost:
                continue
            try:
                placed: int | None = ray.get(self.hosts[engine].pin_of.remote(actor_id))
            except Exception:       # noqa: BLE001 - lost meanwhile, or closing: ask the next
                continue
            return placed
        return None

    def where(self, actor_id: str) -> int:
        """The engine ``actor_id`` lives on: the driver's pin, else what its hash
        engine was told (an actor may have spawned it on its own engine), else
        the hash.  One call to the hash engine, unless the driver pinned it."""
        with self._open(f"look up where {actor_id!r} lives"):
            where = self.engine_of(actor_id)
            if actor_id in self._pins or where in self._lost:
                return where
            try:
                placed: int = ray.get(self.hosts[where].placed.remote(actor_id))
            except ray.exceptions.RayActorError:
                return where                    # lost meanwhile: its ids are placed there
            return placed

    # -- calls from the driver -------------------------------------------------------

    def class_for_proxy(self, actor_id: str, cls: type | None) -> type | None:
        """The class of the live actor ``actor_id`` (a pool's routees'), or None;
        TypeError if ``cls`` is given and the live actor is not one."""
        where = self.where(actor_id)
        reason = self._lost.get(where)
        if reason is None:
            try:
                with self._open(f"make a proxy for {actor_id!r}"):
                    status, value = ray.get(self.hosts[where].proxy_class.remote(actor_id, cls))
            except ray.exceptions.RayActorError:
                reason = f"engine {where} lost"        # the driver may not know it yet
        if reason is not None:
            if cls is None:
                raise ActorNotFound(f"cannot make a proxy for {actor_id!r}: {reason}")
            return None                 # its calls fail as asks to a lost engine do
        if status == "wrong":
            raise TypeError(value)
        return value  # type: ignore[no-any-return]

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise backstage.EngineClosed(f"cannot {what}: the cluster is closed; make a new "
                                         f"backstage.Cluster to go on")

    @contextlib.contextmanager
    def _open(self, what: str) -> Iterator[None]:
        """A driver call that talks to the engines: refused once the cluster is
        closed (EngineClosed), and counted while under way (see close)."""
        with self._gate:
            self._check_open(what)
            self._calls += 1
        try:
            yield
        finally:
            with self._gate:
                self._calls -= 1
                if not self._calls:
                    self._gate.notify_all()

    def _next_seq(self, engine: int) -> int:
        self._seq[engine] += 1
        return self._seq[engine]

    def spawn_actor(self, actor_class: type, actor_id: str, args: tuple[Any, ...],
                    kwargs: dict[str, Any],
                    pin: int | None, options: dict[str, Any]) -> None:
        with self._open(f"spawn {actor_id!r}"):
            self._spawn_actor(actor_class, actor_id, args, kwargs, pin, options)

    def _spawn_actor(self, actor_class: type, actor_id: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any],
                     pin: int | None, options: dict[str, Any]) -> None:
        placed = self.engine_of(actor_id)
        where = placed if pin is None else pin
        if where in self._lost:
            live = [i for i in range(self.count) if i not in self._lost]
            raise backstage.BackstageError(
                f"cannot spawn {actor_id!r} on engine {where}: {self._lost[where]}; pass "
                f"pin= one of the live engines {live} to spawn it there")
        try:
            # Pickled here, unpickled by the engine (EngineHost.spawn): one
            # that Ray could not unpickle there would never take its sequence
            # number, and the engine would hold the driver's later calls.
            # cloudpickle, as Ray's own arguments: a class of the driver's
            # __main__ travels by value (pickle would name a module the engine
            # processes do not have).
            payload: bytes = ray.cloudpickle.dumps(  # type: ignore[no-untyped-call]
                (actor_class, actor_id, args, kwargs, options), protocol=5)
        except Exception as exc:
            raise TypeError(_unpicklable_reason(f"spawn_actor({actor_class.__name__}, ...)",
                                                f"{type(exc).__name__}: {exc}")) from None
        moved = self._move(actor_id, where) if pin is not None or where != placed else None
        with self._lock:
            self._check_open(f"spawn {actor_id!r}")        # close() may have begun since
            self._flush(where, force=True)
            ref = self.hosts[where].spawn.remote(DRIVER, self._next_seq(where), payload)
        try:
            status, failure, routees = ray.get(ref)
        except ray.exceptions.RayActorError:
            live = [i for i in range(self.count) if i != where and i not in self._lost]
            raise backstage.BackstageError(
                f"cannot spawn {actor_id!r} on engine {where}: engine {where} was lost during "
                f"the spawn (the actor may have been made there, and is gone with it); pass "
                f"pin= one of the live engines {live} to spawn it there") from None
        if status == "err":
            if moved is not None:       # no actor will end the move's claim: it goes now
                self._unmove(actor_id, where, moved)
            raise failure
        if moved is None:           # (a move told every engine already, see _move)
            self._announce(actor_id, where, failure)
        for routee_id, stamp in routees:
            # A pool's routees live where it does, whatever their hash: the
            # driver goes straight there, and tells every engine before its
            # next message, as of the pool's own id (the engine's own word
            # would come over the links between engines, after this returns).
            if home_of(routee_id, self.count) != where:
                self._pins[routee_id] = where
            self._announce(routee_id, where, stamp)
        if routees:
            self._check_pins()

    def _announce(self, actor_id: str, where: int, stamp: int) -> None:
        """Tell the other engines, in the driver's order, that ``actor_id`` now
        lives on engine ``where`` (its hash engine): an actor there then cannot
        spawn a second one under the id (_Host.placing), for anything the
        driver sends it from now on.  The word is the engine's own, with its
        stamp (see _Host.pin): one that comes after the actor's stop is stale."""
        with self._lock:
            for engine in range(self.count):
                if engine != where and engine not in self._lost:
                    self._pending[engine].append((None, ("pin", actor_id, where, stamp), None,
                                                  "control"))
                    if self._window_used[engine] < self._window:
                        self._flush(engine, force=False)

    def _unmove(self, actor_id: str, where: int, stamp: int) -> None:
        live = [i for i in range(self.count) if i not in self._lost]
        with contextlib.suppress(ray.exceptions.RayActorError):    # lost: its pins with it
            ray.get([self.hosts[i].call.remote(_unplace, actor_id, where, stamp) for i in live])
        if self._pins.get(actor_id) == where:
            self._pins.pop(actor_id, None)          # another driver thread may be here too

    def _move(self, actor_id: str, where: int) -> int | None:
        """Place ``actor_id`` on engine ``where`` on every engine, before its spawn.

        Refused while an actor is live under that id on another engine: two
        actors under one id would split its messages between them.
        """
        live = [i for i in range(self.count) if i not in self._lost]
        found = ray.get([self.hosts[i].call.remote(_live_here_at, actor_id) for i in live])
        elsewhere = [i for i, (here, _) in zip(live, found, strict=True)
                     if here and i != where]
        if elsewhere:
            raise ValueError(f"cannot pin {actor_id!r} to engine {where}: an actor with that "
                             f"id is live on engine {elsewhere[0]}; stop it first "
                             f"(cluster.poison_pill({actor_id!r}), then wait until it is "
                             f"gone) or pick another id")
        if any(here for i, (here, _) in zip(live, found, strict=True) if i == where):
            return None         # placed there already: the spawn finds the actor
        stamp: int = max(clock for _, clock in found) + 1
        try:
            ray.get([self.hosts[i].call.remote(_place, actor_id, where, stamp) for i in live])
        except ray.exceptions.RayActorError:
            self._unmove(actor_id, where, stamp)    # from the engines still there
            raise backstage.BackstageError(
                f"cannot pin {actor_id!r} to engine {where}: an engine was lost while the "
                f"cluster placed it ({self._lost or 'found lost'}); try again") from None
        self._pins[actor_id] = where
        self._check_pins()
        return stamp

    def _check_pins(self) -> None:
        """Forget the driver's pins that their engines no longer keep (the actor
        stopped there, and every engine forgot the id), once there are
        DRIVER_PINS_CHECKED_AT of them, then twice as many as were left: one
        call per engine now and then, not one per stop.  A pin to a lost
        engine stays: its ids are placed there for good."""
        if len(self._pins) < self._pins_checked_at:
            return
        by_engine: dict[int, list[str]] = {}
        for actor_id, where in list(self._pins.items()):
            if where not in self._lost:
                by_engine.setdefault(where, []).append(actor_id)
        engines = list(by_engine)
        try:
            kept = ray.get([self.hosts[e].call.remote(_pinned_here, by_engine[e])
                            for e in engines])
        except ray.exceptions.RayActorError:
            kept = None                 # an engine lost meanwhile: next time
        if kept is not None:
            for engine, still in zip(engines, kept, strict=True):
                for actor_id in set(by_engine[engine]) - set(still):
                    if self._pins.get(actor_id) == engine:     # not moved meanwhile
                        self._pins.pop(actor_id, None)         # nor forgotten by another thread
        self._pins_checked_at = max(DRIVER_PINS_CHECKED_AT, 2 * len(self._pins))

    def send(self, target_id: str, message: Any, kind: str = "send") -> None:
        """Queue a send on the driver's link to the id's engine; sent at once while
        fewer than ``window`` batches are in flight, else with the next batch."""
        # Not through _open (the driver's sends a second, one thread, 2026-12-06:
        # 308-644k without the gate, 186-228k through it, 308-627k as now):
        # its calls are made under self._lock, which close() takes before Ray
        # shuts down, and _flush makes none once the cluster is closed.
        self._check_open(f"send to {target_id!r}")
        where = self.engine_of(target_id)
        item = (None, None, _PILL) if kind == "pill" else (None, message, None)
        if kind != "pill":
            why = _picklable(message)
            if why is not None:
                raise TypeError(_unpicklable_reason(f"the message {message!r}", why))
        if where in self._lost:
            self._dead_letter(target_id, message, kind, self._lost[where])
            return
        with self._lock:
            self._check_open(f"send to {target_id!r}")      # close() may have begun since
            pending = self._pending[where]
            pending.append((target_id, item, message, kind))
            if self._window_used[where] < self._window:
                self._flush(where, force=False)

    def _flush(self, where: int, force: bool) -> None:
        """Send the driver's pending sends to engine ``where``; under self._lock.
        Once the cluster is closing, they are dead letters instead (asks fail)."""
        pending = self._pending[where]
        if self._closed:
            if pending:
                log.warning("cluster: %d of the driver's messages to engine %d had not gone "
                            "when it closed: dead letters (asks fail); call wait_idle() "
                            "before close() to let them arrive", len(pending), where)
            reason = "the cluster closed before the driver's batch went"
            for target_id, _, message, kind in pending:
                if kind == "ask":
                    self._fail_asks([message], reason, backstage.EngineClosed)
                else:
                    self._dead_letter(target_id, message, kind, reason)
            pending.clear()
            return
        while pending and (force or self._window_used[where] < self._window):
            chunk = pending[:self._batch_limit]
            del pending[:self._batch_limit]
            entries: list[Any] = []
            for target_id, item, _, _ in chunk:
                if target_id is None:                   # an ask
                    entries.append((None, item, _CODED))
                elif entries and entries[-1][0] == target_id:
                    entries[-1][1].append(item)
                else:
                    entries.append((target_id, [item], _CODED))
            ref = self.hosts[where].deliver.remote(
                _CALL_HEADER.pack(DRIVER, self._next_seq(where), 0) + _dumps(entries))
            self._window_used[where] += 1
            fut = ref.future()
            self._inflight.add(fut)
            fut.add_done_callback(lambda f, chunk=chunk: self._delivered(f, where, chunk))

    def _delivered(self, fut: Future[Any], where: int, chunk: list[Any]) -> None:
        with self._lock:
            self._inflight.discard(fut)
            self._window_used[where] -= 1
            exc = fut.exception()
            if isinstance(exc, ray.exceptions.RayActorError):
                for target_id, _, message, kind in chunk:
                    self._dead_letter(target_id, message, kind,
                                      f"engine {where} lost; possibly delivered")
                for target_id, _, message, kind in self._pending[where]:
                    self._dead_letter(target_id, message, kind, f"engine {where} lost")
                self._pending[where].clear()
            else:
                if exc is not None:         # the engine could not take this batch
                    log.error("cluster: a batch to engine %d failed: %r", where, exc)
                    for target_id, _, message, kind in chunk:
                        self._dead_letter(target_id, message, kind,
                                          f"the batch to engine {where} failed: {exc!r}")
                if self._pending[where]:
                    self._flush(where, force=False)
        self._settler.kick()                # not here: this is Ray's I/O thread

    def _dead_letter(self, target_id: str, message: Any, kind: str, reason: str) -> None:
        if kind == "ask":           # message: its reply id; the ask fails instead
            self._fail_asks([message], reason)
            return
        if kind == "control":       # the driver's word to an engine: no message lost
            return
        mtype = backstage.MessageType.POISON_PILL if kind == "pill" else \
            backstage.MessageType.SEND
        self._dead.append(DeadLetter(target_id, Envelope(None, mtype, message), reason,
                                     time.time()))

    def ask(self, target_id: str, message: Any, timeout: float | None,
            control: str = "ask") -> _DriverFuture:
        """The ask travels in the driver's batches to the id's engine, in order with
        its sends; the reply comes back through that engine's collect_replies.
        ``control`` "call": ``message`` is a proxy's MethodCall, run as one."""
        self._check_open(f"ask {target_id!r}")        # not through _open: see send
        why = _picklable(message)
        if why is not None:
            raise TypeError(_unpicklable_reason(f"the message {message!r}", why))
        where = self.engine_of(target_id)
        future = _DriverFuture()
        if where in self._lost:
            future.set_exception(ActorNotFound(f"cannot ask {target_id!r}: {self._lost[where]}"))
            return future
        with self._lock:
            # close() may have begun since: it fails the asks it finds registered.
            self._check_open(f"ask {target_id!r}")
            self._ask_ids += 1
            reply_id = str(self._ask_ids)
            self._asked[reply_id] = (future, where, target_id)
            if timeout is not None:
                self._clock.start(reply_id, timeout)
            self._collect(where)
            self._pending[where].append(
                (None, (control, reply_id, target_id, message, timeout), reply_id, "ask"))
            if self._window_used[where] < self._window:
                self._flush(where, force=False)
        return future

    def _collect(self, where: int) -> None:
        """Keep a collect_replies call open to engine ``where``; under self._lock."""
        if where not in self._collecting:
            self._collecting.add(where)
            ref = self.hosts[where].collect_replies.remote()
            ref.future().add_done_callback(lambda fut: self._replies(where, fut))

    def _replies(self, where: int, fut: Future[Any]) -> None:
        """Outcomes from engine ``where`` (a Ray thread): settle their asks."""
        with self._lock:
            self._collecting.discard(where)
            exc = fut.exception()
            if isinstance(exc, ray.exceptions.RayActorError):
                reason = f"engine {where} lost ({type(exc).__name__})"
                self._fail_asks([reply_id for reply_id, (_, engine, _) in self._asked.items()
                                 if engine == where], reason)
            elif exc is not None:
                log.error("cluster: the replies of engine %d failed: %r", where, exc)
            else:
                for reply_id, outcome in fut.result():
                    entry = self._asked.pop(reply_id, None)
                    if entry is not None:
                        self._settling.append((entry[0], *_unpickled_outcome(outcome)))
            if not self._closed and any(e == where for _, e, _ in self._asked.values()):
                self._collect(where)
        self._settler.kick()                # not here: this is Ray's I/O thread

    def _timed_out(self, due: list[tuple[str, float]]) -> None:
        """The ask clock's thread: these asks' timeouts ran out (unless answered)."""
        with self._lock:
            for reply_id, timeout in due:
                entry = self._asked.pop(reply_id, None)
                if entry is not None:
                    self._settling.append((entry[0], "err", TimeoutError(
                        f"no reply from {entry[2]!r} within {timeout} s")))
        self._settler.kick()                # the clock's thread keeps to its deadlines

    def _fail_asks(self, reply_ids: list[str], reason: str,
                   error: type[Exception] = ActorNotFound) -> None:
        """Under self._lock: these asks fail (settled by ``_settle``, outside it)."""
        for reply_id in reply_ids:
            entry = self._asked.pop(reply_id, None)
            if entry is not None:
                self._settling.append((entry[0], "err", error(
                    f"no reply from {entry[2]!r}: {reason}")))

    def _settle(self) -> None:
        """Settle the asks decided so far, outside self._lock (their callbacks
        run here); an ask its owner cancelled meanwhile is left as it is."""
        with self._lock:
            settling, self._settling = self._settling, []
        for future, status, value in settling:
            if future.done():
                continue
            try:
                if status == "ok":
                    future.set_result(value)
                else:
                    future.set_exception(value)
            except InvalidStateError:           # cancelled just now
                pass

    def wait_idle(self, timeout: float | None) -> bool:
        """Until no engine has work queued and every batch sent has arrived."""
        with self._open("wait until idle"):
            deadline = None if timeout is None else time.monotonic() + timeout
            previous = None
            while True:
                while self._inflight or any(self._pending):
                    self._check_open("wait until idle")
                    if deadline is not None and time.monotonic() > deadline:
                        return False
                    time.sleep(0.001)
                self._check_open("wait until idle")
                live = [i for i in range(self.count) if i not in self._lost]
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    snaps = ray.get([self.hosts[i].wait_idle.remote(left) for i in live],
                                    timeout=left)
                except ray.exceptions.GetTimeoutError:
                    return False
                except ray.exceptions.RayActorError:
                    continue                                   # lost meanwhile; look again
                if None in snaps:                              # an engine still busy
                    return False
                if self._settled(dict(zip(live, snaps, strict=True))) and snaps == previous:
                    return True
                previous = snaps
                if deadline is not None and time.monotonic() > deadline:
                    return False

    def _settled(self, snaps: dict[int, Any]) -> bool:
        for i, snap in snaps.items():
            if snap["busy"]:
                return False
            if not set(self._lost) <= set(snap["lost"]):
                return False            # a loss the driver saw, and this engine not yet
            if snap["expect"].get(DRIVER, 1) - 1 != self._seq[i]:
                return False
            for peer, sent in snap["sent"].items():
                if peer in snaps and snaps[peer]["expect"].get(i, 1) - 1 != sent:
                    return False
        return True

    def dead_letters(self) -> list[Any]:
        if self._closed:            # the engines' went with them; the driver's are here
            return list(self._dead)
        with self._open("read the dead letters"):
            out = list(self._dead)
            for records in self._from_live(lambda h: h.dead_letters.remote()):
                out.extend(records)
            return out

    def stats(self) -> list[Any]:
        with self._open("read the stats"):
            return self._from_live(lambda h: h.stats.remote())

    def _from_live(self, call: Callable[[Any], Any]) -> list[Any]:
        """``call``'s answer from each live engine; one lost meanwhile is left
        out, as an engine the driver knew lost is (not Ray's ActorDiedError)."""
        refs = [call(h) for i, h in enumerate(self.hosts) if i not in self._lost]
        answers = []
        for ref in refs:
            try:
                answers.append(ray.get(ref))
            except ray.exceptions.RayActorError:
                continue
        return answers

    def call(self, engine: int, fn: Callable[..., Any], *args: Any) -> Any:
        with self._open(f"call {getattr(fn, '__name__', fn)!r} on engine {engine}"):
            return ray.get(self.hosts[engine].call.remote(fn, *args))

    def kill_engine(self, engine: int) -> None:
        with self._open(f"kill engine {engine}"):
            ray.kill(self.hosts[engine], no_restart=True)

    def _engine_lost(self, engine: int, reason: str) -> None:
        if not self._closed and engine not in self._lost:
            self._lost[engine] = reason
            log.warning("cluster: %s", reason)

    @property
    def lost(self) -> dict[int, str]:
        return dict(self._lost)

    # -- closing -------------------------------------------------------------------

    def close(self) -> None:
        with self._gate:
            if self._closed:
                return
            self._closed = True
        live = [h for i, h in enumerate(self.hosts) if i not in self._lost]
        # First every engine stops watching its peers (their closing is no loss),
        # then each closes; one that died meanwhile does not keep the others open.
        for step in ("closing", "stop"):
            for ref in [getattr(h, step).remote() for h in live]:
                try:
                    ray.get(ref, timeout=60)
                except Exception as exc:
                    log.warning("cluster: %s an engine: %r", step, exc)
        for handle in self.hosts:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:
                pass
        with self._lock:
            self._fail_asks(list(self._asked), "the cluster closed before the actor answered",
                            backstage.EngineClosed)
            for where in range(self.count):
                self._flush(where, force=True)      # what waited: dead letters
        self._settle()
        self._clock.stop()
        self._settler.stop()
        # The calls under way end once their engines are gone (wait_idle too).
        with self._gate:
            if not self._gate.wait_for(lambda: not self._calls, timeout=_CLOSE_WAIT):
                log.warning("cluster: %d driver calls still under way as Ray shuts down",
                            self._calls)
        self._shutdown_ray()

    def _shutdown_ray(self) -> None:
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False
