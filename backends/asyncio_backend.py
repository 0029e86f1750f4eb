"""The engine on an asyncio event loop: ``Engine(backend="asyncio")``.

Two ways to run:

- on its own loop, in a thread of its own: ``engine.run()`` / ``engine.run_forever()``
  (``Engine(backend="asyncio")`` made where no asyncio loop runs);
- inside an asyncio program, on the program's running loop, beside its own
  coroutines: make the engine inside a coroutine (it picks up the running loop)
  and ``await engine.run_async()``.  Actors resolve replies for coroutines with
  ``set_result_threadsafe(future, value)``.  See docs/backends.md.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backstage import EngineClosed, Loop
else:
    try:        # vendored: pkg/_vendor/backstage.py beside pkg/_vendor/backends/
        from ..backstage import EngineClosed, Loop
    except ImportError:     # backends/ at the top level, or installed as backstage.backends
        from backstage import EngineClosed, Loop

__all__ = ["AsyncioLoop", "set_result_threadsafe", "set_exception_threadsafe"]

# Said by every error about running an engine that shares a running loop.
_SHARED_ADVICE = ("inside a coroutine, make the engine there (Engine(backend='asyncio') picks up "
                  "the running loop) and use `await engine.run_async()`")
# Said when the loop under a live engine was closed by its owner.
_LOOP_CLOSED = ("the asyncio loop under this engine was closed (asyncio.run() closes its loop "
                "when main() returns); close the engine before the loop ends, and make a new "
                "Engine inside the next loop to go on")


class AsyncioLoop(Loop):
    """A backstage Loop on an asyncio event loop.

    ``AsyncioLoop()`` made while an asyncio loop runs in this thread shares
    that loop (the engine then runs with ``await engine.run_async()``);
    made elsewhere, it makes and owns a new loop, closed at ``close()``.
    ``AsyncioLoop(loop)`` uses ``loop`` and leaves it open at ``close()``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            loop = self._running_loop()
        self._owned = loop is None
        self.aio = loop if loop is not None else self._new_event_loop()
        self._thread: int | None = None   # the thread inside run() or run_async()
        self._blocking = False            # inside run(): stop() may stop the asyncio loop
        # What run_async() awaits; stop() resolves it.
        self._waiter: asyncio.Future[None] | None = None
        self._stop_flag = False           # a stop() that run_async() must not miss
        # Watched fds, number -> file object, so remove_* can answer True/False
        # on every loop (uvloop's remove_reader returns None) and can remove a
        # socket that was closed while watched: its fileno() is then -1, and a
        # registration left behind would shadow the next socket given that number.
        self._readers: dict[int, Any] = {}
        self._writers: dict[int, Any] = {}
        # On a loop the program runs (shared), the engine's callbacks, timers
        # and fd callbacks run only while run_async() is awaited, as they run
        # only inside run() on a loop of its own: callbacks due in between
        # wait in _deferred and fds are unregistered (_paused).  Without it, a
        # cancelled run_async() task left its actors running on the program's
        # loop.  Costs one Python call per loop callback (a tick, a timer),
        # never one per message.
        self._shared = not self._owned
        self._deferred: list[tuple[list[Any], Callable[..., Any], tuple[Any, ...]]] = []
        self._paused = self._shared
        self._callbacks: dict[tuple[int, bool],
                              tuple[Callable[..., Any], tuple[Any, ...]]] = {}

    @staticmethod
    def _new_event_loop() -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()

    @classmethod
    def _running_loop(cls) -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def time(self) -> float:
        return self.aio.time()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> asyncio.Handle:
        try:
            if self._shared:
                return self._gated(self.aio.call_soon, callback, args)  # type: ignore[no-any-return]
            return self.aio.call_soon(callback, *args)
        except RuntimeError as exc:
            raise self._closed_error(exc) from exc

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> asyncio.Handle:
        try:
            if self._shared:
                return self._gated(  # type: ignore[no-any-return]
                    self.aio.call_soon_threadsafe, callback, args)
            return self.aio.call_soon_threadsafe(callback, *args)
        except RuntimeError as exc:
            raise self._closed_error(exc) from exc

    def call_later(self, delay: float, callback: Callable[..., Any],
                   *args: Any) -> asyncio.TimerHandle:
        try:
            if self._shared:
                return self._gated(  # type: ignore[no-any-return]
                    self.aio.call_later, callback, args, delay)
            return self.aio.call_later(delay, callback, *args)
        except RuntimeError as exc:
            raise self._closed_error(exc) from exc

    def _closed_error(self, exc: RuntimeError) -> BaseException:
        return EngineClosed(_LOOP_CLOSED) if self.aio.is_closed() else exc

    def _gated(self, schedule: Callable[..., Any], callback: Callable[..., Any],
               args: tuple[Any, ...], *when: float) -> Any:
        """Schedule ``callback(*args)`` to run only while the engine runs (shared loops)."""
        cell: list[Any] = []
        handle = schedule(*when, self._run_gated, cell, callback, args)
        cell.append(handle)
        return handle

    def _run_gated(self, cell: list[Any], callback: Callable[..., Any],
                   args: tuple[Any, ...]) -> None:
        if self._paused:
            self._deferred.append((cell, callback, args))
        else:
            callback(*args)

    def _pause(self) -> None:
        """The run ended on a shared loop: hold the engine's callbacks until the next."""
        self._paused = True
        for number in self._readers:
            self.aio.remove_reader(number)
        for number in self._writers:
            self.aio.remove_writer(number)

    def _resume(self) -> None:
        self._paused = False
        for number in self._readers:
            self.aio.add_reader(number, *self._callback_of(number, True))
        for number in self._writers:
            self.aio.add_writer(number, *self._callback_of(number, False))
        deferred, self._deferred = self._deferred, []
        for cell, callback, args in deferred:
            if not cell[0].cancelled():
                self.aio.call_soon(self._run_gated, cell, callback, args)

    def _callback_of(self, number: int, reading: bool) -> tuple[Any, ...]:
        callback, args = self._callbacks[number, reading]
        return (callback, *args)

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        self._watch(fd, callback, args, True)

    def remove_reader(self, fd: Any) -> bool:
        return self._unwatch(fd, True)

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        self._watch(fd, callback, args, False)

    def remove_writer(self, fd: Any) -> bool:
        return self._unwatch(fd, False)

    def _watch(self, fd: Any, callback: Callable[..., Any], args: tuple[Any, ...],
               reading: bool) -> None:
        watched = self._readers if reading else self._writers
        number = _fileno(fd)
        stale = watched.get(number)
        if stale is not None and stale is not fd and _fileno(stale) != number:
            # The fd number of a file closed while watched, given to a new one:
            # asyncio's selector still holds the old registration and would
            # never report the new file ready.  Drop the old one first.
            self._unwatch(stale, reading)
        if not self._paused:
            (self.aio.add_reader if reading else self.aio.add_writer)(fd, callback, *args)
        watched[number] = fd
        self._callbacks[number, reading] = (callback, args)

    def _unwatch(self, fd: Any, reading: bool) -> bool:
        watched = self._readers if reading else self._writers
        number = _watched_number(watched, fd)
        if number is None:
            return False
        del watched[number]
        del self._callbacks[number, reading]
        if not self._paused:
            (self.aio.remove_reader if reading else self.aio.remove_writer)(number)
        return True

    def run(self) -> None:
        if self.aio.is_running():
            raise RuntimeError("this engine's asyncio loop is already running (it is the "
                               "program's loop), so run() and run_forever() cannot run it; "
                               + _SHARED_ADVICE)
        self._thread = threading.get_ident()
        self._blocking = True
        try:
            self.aio.run_forever()
        finally:
            self._blocking = False
            self._thread = None

    async def run_async(self) -> None:
        """Wait, on the running loop, until ``stop()``; the loop runs everything else."""
        if asyncio.get_running_loop() is not self.aio:
            raise RuntimeError("run_async() must be awaited on the engine's own asyncio loop, "
                               "and this engine was made for another one; " + _SHARED_ADVICE)
        self._thread = threading.get_ident()
        # The waiter is set before the flag is read, and stop() sets the flag
        # before it reads the waiter: a stop from another thread is never missed.
        self._waiter = waiter = self.aio.create_future()
        if self._shared:
            self._resume()
        try:
            if not self._stop_flag:
                await waiter
        finally:
            if self._shared:
                self._pause()
            self._waiter = None
            self._thread = None
            self._stop_flag = False

    def stop(self) -> None:
        self._stop_flag = True
        waiter = self._waiter
        if waiter is not None:
            if threading.get_ident() == self._thread:
                _wake(waiter)
            else:
                self.aio.call_soon_threadsafe(_wake, waiter)
        elif self._blocking or not self.aio.is_running():
            # Our own run(), or nobody runs the loop (then the next run returns
            # at once).  A loop the program runs is never stopped from here.
            # asyncio's stop() is not thread-safe; from another thread, ask the loop.
            if threading.get_ident() == self._thread or self._thread is None:
                self.aio.stop()
            else:
                self.aio.call_soon_threadsafe(self.aio.stop)

    def close(self) -> None:
        if self._owned and not self.aio.is_closed():
            self.aio.close()


def set_result_threadsafe(future: asyncio.Future[Any], value: Any) -> None:
    """Resolve an asyncio ``future`` with ``value`` from any thread, e.g. an actor's reply.

    Does nothing if the future is already done (say, its awaiter gave up
    waiting and cancelled it), where ``future.set_result`` would raise.
    """
    future.get_loop().call_soon_threadsafe(_settle, future, value, None)


def set_exception_threadsafe(future: asyncio.Future[Any], exception: BaseException) -> None:
    """Fail an asyncio ``future`` with ``exception`` from any thread; nothing if it is done."""
    future.get_loop().call_soon_threadsafe(_settle, future, None, exception)


def _settle(future: asyncio.Future[Any], value: Any, exception: BaseException | None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(value)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _fileno(fd: Any) -> int:
    return fd if isinstance(fd, int) else fd.fileno()


def _watched_number(watched: dict[int, Any], fd: Any) -> int | None:
    """The fd number ``fd`` was watched under, or None; works for a closed socket too."""
    number = _fileno(fd)
    if number in watched:
        return number
    if number == -1:
        for number, fileobj in watched.items():
            if fileobj is fd:
                return number
    return None
