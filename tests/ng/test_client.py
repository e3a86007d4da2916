"""The ng client (sipline.ng.client) against real relays: ours in process, and real rtpengine.

Silent, lossy and absent relays are UDP sockets of the test's own on free
ports of 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.media import RelayOptions, RtpRelay
from sipline.net.ports import free_port
from sipline.ng.bencode import decode, encode
from sipline.ng.client import NgClient, NgError, NgTimeout
from tests.conftest import port_range
from tests.support import on_uvloop

HOST = "127.0.0.1"


def sdp(port: int, address: str = "192.0.2.10") -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def media(body: bytes) -> tuple[str, int]:
    found = re.search(rb"^c=IN IP4 (\S+)\r\n.*^m=audio (\d+)", body, re.M | re.S)
    assert found, body
    return found[1].decode(), int(found[2])


@contextlib.asynccontextmanager
async def our_relay() -> AsyncIterator[NgClient]:
    low, high = port_range()
    relay = RtpRelay(RelayOptions(ng_port=0, port_min=low, port_max=high))
    await relay.start()
    assert relay.ng_address is not None
    try:
        async with NgClient(HOST, relay.ng_address[1], timeout=0.2) as client:
            yield client
    finally:
        await relay.close()


class FakeRelay(asyncio.DatagramProtocol):
    """A UDP socket that records every request and answers ``pong`` from the ``answer_from``-th copy on."""

    def __init__(self, answer_from: int | None) -> None:
        self.answer_from = answer_from
        self.received: list[bytes] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)
        if self.answer_from is not None and len(self.received) >= self.answer_from:
            self.transport.sendto(data.partition(b" ")[0] + b" " + encode({"result": "pong"}), addr)


@contextlib.asynccontextmanager
async def fake_relay(answer_from: int | None) -> AsyncIterator[tuple[FakeRelay, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: FakeRelay(answer_from), local_addr=(HOST, 0)
    )
    try:
        yield protocol, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


# -- with our relay ----------------------------------------------------------------------------
@on_uvloop
async def test_ping_gets_pong() -> None:
    async with our_relay() as client:
        assert await client.ping() == "pong"


@on_uvloop
async def test_offer_and_answer_come_back_anchored_and_delete_brings_the_stats() -> None:
    async with our_relay() as client:
        offered = await client.offer("call-1", "tag-a", sdp(4000, "192.0.2.10"))
        address, port_for_b = media(offered)
        assert address == HOST and port_for_b % 2 == 0
        answered = await client.answer("call-1", "tag-a", "tag-b", sdp(5000, "198.51.100.7"))
        assert media(answered)[0] == HOST and media(answered)[1] != port_for_b

        assert await client.list_calls() == ["call-1"]
        query = await client.query("call-1")
        assert sorted(query["tags"]) == ["tag-a", "tag-b"]
        deleted = await client.delete("call-1", "tag-a")
        assert deleted["result"] == "ok" and deleted["totals"]["RTP"]["packets"] == 0
        assert await client.list_calls() == []


@on_uvloop
async def test_flags_travel_with_dashes_for_underscores() -> None:
    async with our_relay() as client:
        offered = await client.offer(
            "call-2", "a", sdp(4000), replace=["origin"], received_from=["IP4", "192.0.2.99"]
        )
        assert b"o=- 1 1 IN IP4 127.0.0.1\r\n" in offered  # replace=origin was understood


@on_uvloop
async def test_the_relay_s_error_reason_is_raised_as_an_ng_error() -> None:
    async with our_relay() as client:
        with pytest.raises(NgError) as caught:
            await client.answer("no-such-call", "a", "b", sdp(4000))
    assert caught.value.reason == "Unknown call-id" and caught.value.command == "answer"
    assert not isinstance(caught.value, NgTimeout)


@on_uvloop
async def test_many_requests_in_flight_each_get_their_own_reply() -> None:
    async with our_relay() as client:
        offers = [client.offer(f"call-{n}", "a", sdp(4000 + 2 * n)) for n in range(20)]
        ports = [media(body)[1] for body in await asyncio.gather(*offers)]
        assert len(set(ports)) == 20
        assert len(client.exchanges) == 0


# -- a relay that loses, ignores or is not there ----------------------------------------------
@on_uvloop
async def test_a_lost_request_is_sent_again_with_the_same_cookie_and_then_answered() -> None:
    async with (
        fake_relay(answer_from=3) as (relay, port),
        NgClient(HOST, port, timeout=0.05) as client,
    ):
        assert await client.ping() == "pong"
    cookies = {datagram.partition(b" ")[0] for datagram in relay.received}
    assert len(relay.received) == 3 and len(cookies) == 1


@on_uvloop
async def test_a_silent_relay_fails_the_request_with_a_timeout_after_every_try() -> None:
    async with fake_relay(answer_from=None) as (relay, port):
        async with NgClient(HOST, port, timeout=0.05, retries=2) as client:
            started = time.monotonic()
            with pytest.raises(NgTimeout, match="after 3 tries") as caught:
                await client.offer("c", "a", sdp(4000))
            assert 0.14 <= time.monotonic() - started < 1.0
    assert caught.value.command == "offer"
    assert len(relay.received) == 3
    assert decode(relay.received[0].partition(b" ")[2])["call-id"] == "c"


@on_uvloop
async def test_nothing_listening_on_the_relay_s_port_fails_at_once_not_after_the_retries() -> None:
    async with NgClient(HOST, free_port(), timeout=1.0, retries=5) as client:
        started = time.monotonic()
        with pytest.raises(NgTimeout, match="unreachable"):
            await client.ping()
        assert time.monotonic() - started < 1.0  # told by ICMP, not by six timeouts


@on_uvloop
async def test_a_relay_that_comes_up_after_being_unreachable_is_answered() -> None:
    port = free_port()
    async with NgClient(HOST, port, timeout=0.05) as client:
        with pytest.raises(NgTimeout, match="unreachable"):
            await client.ping()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: FakeRelay(answer_from=1), local_addr=(HOST, port)
        )
        try:
            assert await client.ping() == "pong"  # the ICMP error did not end the socket
        finally:
            transport.close()


@on_uvloop
async def test_commands_sent_before_the_socket_is_open_go_out_once_it_is() -> None:
    async with our_relay() as opened:
        client = NgClient(*opened.address)  # not started: the first command opens it
        try:
            assert await asyncio.gather(client.ping(), client.ping()) == ["pong", "pong"]
        finally:
            client.close()


@on_uvloop
async def test_closing_the_client_fails_what_is_in_flight() -> None:
    async with fake_relay(answer_from=None) as (_, port):
        client = NgClient(HOST, port)
        pending = client.query("call-1")
        client.close()
        with pytest.raises(NgError, match="client closed"):
            await pending


@on_uvloop
async def test_a_reply_to_a_request_given_up_on_by_its_caller_is_dropped() -> None:
    async with our_relay() as client:
        abandoned = client.ping()
        abandoned.cancel()
        assert await client.ping() == "pong"  # the late reply to the first does no harm


# -- with real rtpengine ------------------------------------------------------------------------
async def call_through(client: NgClient) -> dict[str, Any]:
    """A call's ng commands as the proxy makes them; what it relies on in the replies."""
    for _ in range(50):  # rtpengine may still be starting: ICMP says so at once
        with contextlib.suppress(NgTimeout):
            await client.ping()
            break
        await asyncio.sleep(0.1)
    offered = await client.offer("cmp-1", "A", sdp(4000), replace=["origin"])
    answered = await client.answer("cmp-1", "A", "B", sdp(5000, "198.51.100.7"))
    query = await client.query("cmp-1")
    deleted = await client.delete("cmp-1", "A")
    with pytest.raises(NgError) as missing:
        await client.answer("cmp-2", "A", "B", sdp(4000))
    return {
        "anchored": [media(offered)[0], media(answered)[0]],
        "even ports": [media(body)[1] % 2 for body in (offered, answered)],
        "tags": sorted(query["tags"]),
        "deleted totals": sorted(deleted["totals"]),
        "missing call": missing.value.reason,
    }


def test_the_client_gets_the_same_from_real_rtpengine_as_from_our_relay(rtpengine: int) -> None:
    outputs: dict[str, Any] = {}

    @on_uvloop
    async def both() -> None:
        async with NgClient(HOST, rtpengine, timeout=0.2) as client:
            outputs["rtpengine"] = await call_through(client)
        async with our_relay() as client:
            outputs["sipline"] = await call_through(client)

    both()
    assert outputs["rtpengine"]["anchored"] == [HOST, HOST]  # the reference behaves
    assert outputs["sipline"] == outputs["rtpengine"]
