"""The STUN load loop (relay.stun_load): counts what a server answers, and always stops."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import uvloop

from relay.stun_load import main, run_load
from relay.stun_server import StunServer

A1 = "127.0.0.1"


@pytest.fixture
def server_port() -> Iterator[int]:
    """A STUN server on its own uvloop in a thread, as it would be in its own process."""
    ready = threading.Event()
    state: dict[str, object] = {}

    async def serve() -> None:
        server = StunServer(A1, 0, transports=["udp"])
        await server.start()
        stop = asyncio.Event()
        state.update(port=server.layout.port, stop=stop, loop=asyncio.get_running_loop())
        ready.set()
        await stop.wait()
        await server.close()

    thread = threading.Thread(target=uvloop.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    yield state["port"]  # type: ignore[misc]
    state["loop"].call_soon_threadsafe(state["stop"].set)  # type: ignore[attr-defined]
    thread.join(5)


def test_every_request_in_the_window_is_answered(server_port: int) -> None:
    result = run_load(A1, server_port, duration=0.3, window=8)
    assert result.answered == result.sent > 0
    assert result.lost == 0
    assert 0.3 <= result.seconds < 1.0
    assert result.rate > 0
    assert f"answered={result.answered}" in str(result)


def test_a_silent_port_is_all_loss_and_the_loop_still_stops() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((A1, 0))  # bound, never read: no reply, no ICMP
        port = silent.getsockname()[1]
        result = run_load(A1, port, duration=0.3, window=4, timeout=0.05)
    assert result.answered == 0
    assert result.lost == result.sent > 0


def test_the_command_fails_when_nothing_is_answered(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind((A1, 0))
        port = closed.getsockname()[1]
    assert main(["--port", str(port), "--duration", "0.2", "--timeout", "0.05"]) == 1
    assert "answered=0" in capsys.readouterr().out
