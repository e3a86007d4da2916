"""How a node process waits to be told to stop."""

from __future__ import annotations

import asyncio
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def until_stopped(stop: asyncio.Event | None = None) -> signal.Signals | None:
    """Wait for SIGTERM or SIGINT (returns it) or for ``stop`` to be set (returns None)."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals | None] = loop.create_future()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, _settle, received, sig)
    waiter = None
    if stop is not None:
        waiter = loop.create_task(stop.wait())
        waiter.add_done_callback(lambda _: _settle(received, None))
    try:
        return await received
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        if waiter is not None:
            waiter.cancel()


def _settle(future: asyncio.Future[signal.Signals | None], value: signal.Signals | None) -> None:
    if not future.done():
        future.set_result(value)
