"""The engine on uvloop: ``Engine(backend="uvloop")``; needs ``pip install uvloop``."""

from __future__ import annotations

import asyncio
from types import ModuleType

from .asyncio_backend import AsyncioLoop


def _uvloop() -> ModuleType:
    try:
        import uvloop
    except ImportError as exc:
        raise ImportError("backend 'uvloop' needs the uvloop package: pip install uvloop, "
                          "or use Engine(backend='asyncio')") from exc
    return uvloop


class UvloopLoop(AsyncioLoop):
    """AsyncioLoop on a uvloop event loop: only the loop factory differs.

    Made inside a running uvloop loop (``uvloop.run(main())``), it shares that
    loop, as ``AsyncioLoop`` does; inside a plain asyncio loop it refuses.
    """

    @staticmethod
    def _new_event_loop() -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop = _uvloop().new_event_loop()
        return loop

    @classmethod
    def _running_loop(cls) -> asyncio.AbstractEventLoop | None:
        running = super()._running_loop()
        if running is not None and not isinstance(running, _uvloop().Loop):
            raise ValueError(
                f"Engine(backend='uvloop') was made inside a running {type(running).__name__}, "
                f"which is not uvloop: use Engine(backend='asyncio') to share it, or run the "
                f"program on uvloop with uvloop.run(main())")
        return running
