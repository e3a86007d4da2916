"""`sipline relay` as an operator runs it, asked by STUN clients that are not ours.

pystun3 is an RFC 3489 client: its NAT test sends CHANGE-REQUEST and reads
CHANGED-ADDRESS, so it needs the server's second address (127.0.0.2) and
finds "Open Internet" on loopback. aiostun asks for the mapped address the
RFC 5389 way (magic cookie, XOR-MAPPED-ADDRESS) over UDP and TCP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import aiostun
import pytest
from aioice import stun

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SIPLINE = Path(sysconfig.get_path("scripts")) / "sipline"
A1, A2 = "127.0.0.1", "127.0.0.2"
TIMEOUT = 10.0


def free_port(hosts: tuple[str, ...] = (A1, A2), avoid: int = 0) -> int:
    """A port free for UDP and TCP on every one of ``hosts`` (bound, then released)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
        if port != avoid and all(_free(host, port) for host in hosts):
            return port
    raise RuntimeError("no free port")


def _free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


def answers(port: int) -> bool:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        probe.sendto(bytes(request), (A1, port))
        try:
            return stun.parse_message(probe.recv(2048)).transaction_id == request.transaction_id
        except TimeoutError:
            return False


@pytest.fixture(scope="module")
def relay() -> Iterator[tuple[int, int]]:
    """`sipline relay` with STUN on 127.0.0.1 and 127.0.0.2, each on two free ports."""
    port = free_port()
    alt_port = free_port(avoid=port)
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    env = clean | {
        "SIPLINE_RELAY__STUN_PORT": str(port),
        "SIPLINE_RELAY__STUN_ALT_HOST": A2,
        "SIPLINE_RELAY__STUN_ALT_PORT": str(alt_port),
        "SIPLINE_RELAY__NG_PORT": str(free_port(avoid=alt_port)),  # not rtpengine's 2223
    }
    process = subprocess.Popen(
        [str(SIPLINE), "relay"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(100):  # bounded: until it answers, or 10 s
            if process.poll() is not None or answers(port):
                break
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield port, alt_port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, stderr
    assert "event=listening service=stun" in stderr
    assert "Traceback" not in stderr


def test_pystun3_finds_open_internet_through_change_request(relay: tuple[int, int]) -> None:
    port, _ = relay
    source_port = free_port((A1,))
    script = (
        "import stun; "
        f"print(stun.get_ip_info(source_ip={A1!r}, source_port={source_port}, "
        f"stun_host={A1!r}, stun_port={port}))"
    )
    # In a process of its own: pystun3 retries forever on an error response.
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"('Open Internet', '{A1}', {source_port})"


@pytest.mark.parametrize("proto", [aiostun.UDP, aiostun.TCP], ids=["udp", "tcp"])
def test_aiostun_gets_its_mapped_address(relay: tuple[int, int], proto: int) -> None:
    port, _ = relay

    async def ask() -> tuple[dict[str, object], tuple[str, int]]:
        async with aiostun.Client(host=A1, port=port, proto=proto, timeout=2) as client:
            return await client.get_mapped_address(), client.get_local_addr()

    mapped, local = asyncio.run(asyncio.wait_for(ask(), TIMEOUT))
    assert mapped == {"family": "IPv4", "ip": local[0], "port": local[1]}


def test_aiostun_as_an_rfc3489_client_gets_its_mapped_address(relay: tuple[int, int]) -> None:
    _, alt_port = relay

    async def ask() -> tuple[dict[str, object], tuple[str, int]]:
        async with aiostun.Client(host=A2, port=alt_port, timeout=2) as client:
            return await client.get_mapped_address(use_classicstun=True), client.get_local_addr()

    mapped, local = asyncio.run(asyncio.wait_for(ask(), TIMEOUT))
    assert mapped == {"family": "IPv4", "ip": local[0], "port": local[1]}


def test_a_stun_port_in_use_fails_the_start_with_the_reason() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((A1, 0))
        port = taken.getsockname()[1]
        clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
        result = subprocess.run(
            [str(SIPLINE), "relay"],
            cwd=REPO,
            env=clean
            | {
                "SIPLINE_RELAY__STUN_PORT": str(port),
                "SIPLINE_RELAY__NG_PORT": str(free_port(avoid=port)),
            },
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert "sipline: relay: cannot listen:" in result.stderr
    assert "Traceback" not in result.stderr
