import asyncio
import os
import signal

from sipline.net.signals import until_stopped
from tests.support import on_uvloop


@on_uvloop
async def test_a_sigterm_ends_the_wait_and_says_which_signal() -> None:
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    assert await until_stopped() is signal.SIGTERM


@on_uvloop
async def test_setting_the_stop_event_ends_the_wait_with_no_signal() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await until_stopped(stop) is None
    # the handlers are gone again: the default SIGINT handler is back
    assert signal.getsignal(signal.SIGINT) is not None
