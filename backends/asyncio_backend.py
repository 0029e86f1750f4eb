"""The engine on an asyncio event loop: ``Engine(backend="asyncio")``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from backstage import Loop


class AsyncioLoop(Loop):
    """A backstage Loop on an asyncio event loop.

    With no argument it makes and owns a new event loop; given one, it uses
    that loop and leaves it open at ``close()``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._owned = loop is None
        self.aio = loop if loop is not None else self._new_event_loop()
        self._thread: int | None = None   # the thread inside run()
        # Watched fds, so remove_* can answer True/False on every loop
        # (uvloop's remove_reader returns None).
        self._readers: set[int] = set()
        self._writers: set[int] = set()

    @staticmethod
    def _new_event_loop() -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()

    def time(self) -> float:
        return self.aio.time()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> asyncio.Handle:
        return self.aio.call_soon(callback, *args)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> asyncio.Handle:
        return self.aio.call_soon_threadsafe(callback, *args)

    def call_later(self, delay: float, callback: Callable[..., Any],
                   *args: Any) -> asyncio.TimerHandle:
        return self.aio.call_later(delay, callback, *args)

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        self.aio.add_reader(fd, callback, *args)
        self._readers.add(_fileno(fd))

    def remove_reader(self, fd: Any) -> bool:
        number = _fileno(fd)
        if number not in self._readers:
            return False
        self._readers.discard(number)
        self.aio.remove_reader(fd)
        return True

    def add_writer(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        self.aio.add_writer(fd, callback, *args)
        self._writers.add(_fileno(fd))

    def remove_writer(self, fd: Any) -> bool:
        number = _fileno(fd)
        if number not in self._writers:
            return False
        self._writers.discard(number)
        self.aio.remove_writer(fd)
        return True

    def run(self) -> None:
        self._thread = threading.get_ident()
        try:
            self.aio.run_forever()
        finally:
            self._thread = None

    def stop(self) -> None:
        # asyncio's stop() is not thread-safe; from another thread, ask the loop.
        if threading.get_ident() == self._thread or self._thread is None:
            self.aio.stop()
        else:
            self.aio.call_soon_threadsafe(self.aio.stop)

    def close(self) -> None:
        if self._owned and not self.aio.is_closed():
            self.aio.close()


def _fileno(fd: Any) -> int:
    return fd if isinstance(fd, int) else fd.fileno()
