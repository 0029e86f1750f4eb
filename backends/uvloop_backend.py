"""The engine on uvloop: ``Engine(backend="uvloop")``; needs ``pip install uvloop``."""

from __future__ import annotations

import asyncio

from backends.asyncio_backend import AsyncioLoop


class UvloopLoop(AsyncioLoop):
    """AsyncioLoop on a uvloop event loop: only the loop factory differs."""

    @staticmethod
    def _new_event_loop() -> asyncio.AbstractEventLoop:
        try:
            import uvloop
        except ImportError as exc:
            raise ImportError("backend 'uvloop' needs the uvloop package: pip install uvloop, "
                              "or use Engine(backend='asyncio')") from exc
        return uvloop.new_event_loop()
