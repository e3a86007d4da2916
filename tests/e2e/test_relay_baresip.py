"""Two real softphones (baresip) call each other through the proxy and the relay (issue 6).

``sipline relay`` and ``sipline proxy`` (anchor_media = "always") run as
processes of their own on free ports of 127.0.0.1; alice and bob are the
baresips of tests/e2e/test_proxy_baresip.py, sending ausine's tone. While the
call is up, ng ``query`` to the relay shows the audio of both phones flowing
through it, each side latched to the phone's RTP port; when alice hangs up,
the proxy deletes the call at the relay.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bench.proxystack import (
    HOST,
    REPO,
    SIPLINE,
    free_port,
    provision,
    start_proxy,
)
from sipline.ng.client import NgClient, NgError
from tests.e2e.test_proxy_baresip import ALICE, BOB, Baresip
from tests.relay.test_media import port_range

pytestmark = pytest.mark.e2e

AUDIO_SECONDS = 2.0
T = TypeVar("T")


def ng(port: int, command: Callable[[NgClient], Awaitable[T]]) -> T:
    """One ng command to the relay on ``port``, from this (synchronous) test."""

    async def run() -> T:
        async with NgClient(HOST, port, timeout=0.2) as client:
            return await command(client)

    return asyncio.run(run())


def relay_answers(port: int, process: subprocess.Popen[bytes]) -> bool:
    for _ in range(50):  # bounded: 50 pings, each failing at once (ICMP) or within 0.8 s
        if process.poll() is not None:
            return False
        try:
            return ng(port, lambda client: client.ping()) == "pong"
        except NgError:
            time.sleep(0.1)
    return False


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[int, tuple[int, int]]]:
    """``sipline relay``: its ng port and its RTP port range (no STUN: not needed here)."""
    ng_port = free_port()
    low, high = port_range(pairs=20)
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    env = clean | {
        "SIPLINE_RELAY__NG_PORT": str(ng_port),
        "SIPLINE_RELAY__STUN_TRANSPORTS": "[]",
        "SIPLINE_RELAY__RTP_PORT_MIN": str(low),
        "SIPLINE_RELAY__RTP_PORT_MAX": str(high),
    }
    log = tmp_path / "relay.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SIPLINE), "relay"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        if not relay_answers(ng_port, process):
            pytest.fail(f"sipline relay did not start:\n{log.read_text()}", pytrace=False)
        yield ng_port, (low, high)
    finally:
        process.kill()
        process.wait(5)


@pytest.fixture
def proxy_port(
    tmp_path: Path, sqlite_url: str, relay: tuple[int, tuple[int, int]]
) -> Iterator[int]:
    """``sipline proxy`` anchoring every call's media at ``relay``."""
    asyncio.run(provision(sqlite_url, [ALICE, BOB]))
    extra = {
        "SIPLINE_AUTH__ALGORITHMS": '["MD5"]',  # baresip 1.0 answers MD5 challenges only
        "SIPLINE_PROXY__MEDIA_RELAY": f"{HOST}:{relay[0]}",
        "SIPLINE_PROXY__ANCHOR_MEDIA": "always",
    }
    proxy = start_proxy(sqlite_url, tmp_path, extra)
    try:
        yield proxy.port
    finally:
        proxy.kill()


@pytest.fixture
def phones(baresip_bin: str, proxy_port: int, tmp_path: Path) -> Iterator[tuple[Baresip, Baresip]]:
    started: list[Baresip] = []
    try:
        for phone in (ALICE, BOB):
            started.append(Baresip(baresip_bin, phone, proxy_port, tmp_path, "udp"))
        yield started[0], started[1]
    finally:
        for process in started:
            process.stop()


def rtp_streams(query: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each party's RTP stream (the one its audio arrives on) in a query reply, by tag."""
    streams = {}
    for tag, party in query["tags"].items():
        [media] = party["medias"]
        [rtp] = [s for s in media["streams"] if "RTP" in s["flags"]]
        streams[tag] = rtp
    return streams


def calls_at(ng_port: int) -> list[str]:
    return ng(ng_port, lambda client: client.list_calls())


def test_two_baresips_talk_through_the_relay_and_it_counts_both_directions(
    phones: tuple[Baresip, Baresip], relay: tuple[int, tuple[int, int]]
) -> None:
    alice, bob = phones
    ng_port, (low, high) = relay
    for phone in phones:
        phone.wait_registered()

    assert alice.command("dial", f"sip:{BOB.aor}")["ok"] is True
    bob.wait_event("CALL_INCOMING")
    assert bob.command("accept")["ok"] is True
    for phone in phones:
        phone.wait_event("CALL_ESTABLISHED")
    time.sleep(AUDIO_SECONDS)  # ausine's tone, both ways

    [call_id] = calls_at(ng_port)
    streams = rtp_streams(ng(ng_port, lambda client: client.query(call_id)))
    assert len(streams) == 2  # alice's side and bob's side, by their tags
    for tag, stream in streams.items():
        assert low <= stream["local port"] <= high, tag
        assert "confirmed" in stream["flags"], (tag, stream)  # latched to the phone
        assert stream["endpoint"]["address"] == HOST
        assert stream["stats"]["packets"] >= 25, (tag, stream)  # 20 ms packets, 2 s
    phone_ports = {stream["endpoint"]["port"] for stream in streams.values()}
    assert len(phone_ports) == 2  # two phones, not one talking to itself

    assert alice.command("hangup")["ok"] is True
    for phone in phones:
        phone.wait_event("CALL_CLOSED")
    for _ in range(50):  # the proxy deletes the call when bob answers the BYE
        if not calls_at(ng_port):
            break
        time.sleep(0.1)
    assert calls_at(ng_port) == []
