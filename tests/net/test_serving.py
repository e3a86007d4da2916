"""run_until_stopped: a role is started, runs until SIGTERM or SIGINT, and is stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from sipline.net import serving
from sipline.net.serving import run_until_stopped
from tests.support import on_uvloop


class Role:
    def __init__(self, fail_start: bool = False) -> None:
        self.calls: list[str] = []
        self.fail_start = fail_start

    async def start(self) -> None:
        self.calls.append("start")
        if self.fail_start:
            raise OSError("address in use")

    async def stop(self) -> None:
        self.calls.append("stop")


@pytest.fixture
def tuned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The GC is tuned once the role has started (not in this test process, though)."""
    done: list[str] = []
    monkeypatch.setattr(serving, "tune_gc", lambda: done.append("tune_gc"))
    return done


@on_uvloop
async def test_a_role_runs_until_sigterm_then_stops(
    tuned: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    role = Role()
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
    with caplog.at_level(logging.INFO):
        await run_until_stopped(role, logging.getLogger("sipline.test"))
    assert role.calls == ["start", "stop"] and tuned == ["tune_gc"]
    assert "event=signal" in caplog.text and "SIGTERM" in caplog.text


@on_uvloop
async def test_a_role_that_fails_to_start_is_not_run(tuned: list[str]) -> None:
    role = Role(fail_start=True)
    with pytest.raises(OSError, match="address in use"):
        await run_until_stopped(role, logging.getLogger("sipline.test"))
    assert role.calls == ["start"] and tuned == []
