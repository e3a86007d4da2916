"""What tests across packages share: running a coroutine test on uvloop, waiting for a
condition, a node's private database, a clock that moves only when the test says so."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

TEST_TIMEOUT = 20.0  # a bound so a hung test fails instead of stalling the suite


def on_uvloop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh uvloop, as every sipline node runs, bounded in time."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        uvloop.run(asyncio.wait_for(test(*args, **kwargs), TEST_TIMEOUT))

    return run


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``condition()`` holds, polling every 5 ms; fail after ``timeout``."""
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


def private_node(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Settings loaded from now on (``load_settings``) give a node a database and a
    data directory of its own, not the ones ``make run`` uses under ./data."""
    monkeypatch.setenv("SIPLINE_DATABASE__URL", f"sqlite:///{directory / 'sipline.db'}")
    monkeypatch.setenv("SIPLINE_NODE__DATA_DIR", str(directory))


class FakeClock:
    """Time (monotonic or wall-clock, as the code under test reads it) that moves
    only when a test sets or advances ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
