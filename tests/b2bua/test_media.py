"""Media anchoring at the B2BUA (b2bua.media): which calls, and a call's media through
real relays (ours in process, and real rtpengine) with RTP flowing both ways."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from b2bua.media import LegMedia, caller
from relay.media import RelayOptions, RtpRelay
from sipline.config import Settings
from sipline.net.ports import free_port
from sipline.ng.bencode import decode, encode
from sipline.ng.client import NgClient, NgError, NgTimeout
from sipline.sip.address import Address
from sipline.sip.message import Request, parse_message
from tests.conftest import port_range
from tests.relay.test_media import Phone, receive, rtp, send
from tests.support import on_uvloop

HOST = "127.0.0.1"
PROXY = Address("UDP", HOST, 5060)


def sdp(address: str, port: int, origin: str | None = None) -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {origin or address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def invite(*vias: str, body: bytes = b"") -> Request:
    lines = [
        "INVITE sip:+441234567@127.0.0.1:5070 SIP/2.0",
        *(f"Via: {via}" for via in vias),
        "From: <sip:alice@example.com>;tag=a1",
        "To: <sip:+441234567@example.com>",
        "Call-ID: c1",
        "CSeq: 1 INVITE",
        "Max-Forwards: 69",
        *(["Content-Type: application/sdp"] if body else []),
        f"Content-Length: {len(body)}",
    ]
    request = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(request, Request)
    return request


PROXY_VIA = "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-p"


def media_of(mode: str) -> LegMedia:
    return LegMedia(NgClient(HOST, 9), mode, ["127.0.0.1"])


# -- configuration ------------------------------------------------------------------------------
def test_no_relay_or_never_means_no_anchoring() -> None:
    assert LegMedia.from_settings(Settings(b2bua={"media_relay": ""}).b2bua) is None
    assert LegMedia.from_settings(Settings(b2bua={"anchor_media": "never"}).b2bua) is None
    media = LegMedia.from_settings(Settings(b2bua={"media_relay": "127.0.0.1:2299"}).b2bua)
    assert media is not None
    assert (media.mode, media.client.address) == ("nat", ("127.0.0.1", 2299))


# -- which calls --------------------------------------------------------------------------------
def test_a_caller_behind_nat_seen_through_the_proxy_s_stamps_is_anchored() -> None:
    # The phone wrote its private address; the proxy stamped where it really came from.
    phone = "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-a;received=203.0.113.7;rport=40001"
    request = invite(PROXY_VIA, phone, body=sdp("192.168.1.10", 4000))
    assert caller(request, PROXY) == Address("UDP", "203.0.113.7", 40001)
    assert media_of("nat").wants(request, PROXY)


def test_a_caller_whose_sdp_names_another_address_than_its_own_is_anchored() -> None:
    phone = "SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK-a"
    request = invite(PROXY_VIA, phone, body=sdp("10.0.0.5", 4000))
    assert media_of("nat").wants(request, PROXY)


def test_a_caller_with_nothing_to_hide_is_not_anchored_unless_always() -> None:
    phone = "SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK-a;rport=5060"
    request = invite(PROXY_VIA, phone, body=sdp("203.0.113.7", 4000))
    assert not media_of("nat").wants(request, PROXY)
    assert media_of("always").wants(request, PROXY)


def test_a_caller_sending_straight_to_us_is_judged_by_the_packet_source() -> None:
    phone = "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-a"
    request = invite(phone, body=sdp("192.168.1.10", 4000))
    source = Address("UDP", "203.0.113.7", 40001)
    assert caller(request, source) == source
    assert media_of("nat").wants(request, source)


def test_an_invite_without_sdp_is_never_anchored() -> None:
    assert not media_of("always").wants(invite(PROXY_VIA), PROXY)


# -- through real relays ------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def our_relay() -> AsyncIterator[int]:
    low, high = port_range()
    relay = RtpRelay(RelayOptions(ng_port=0, port_min=low, port_max=high))
    await relay.start()
    assert relay.ng_address is not None
    try:
        yield relay.ng_address[1]
    finally:
        await relay.close()


def port_of(body: bytes) -> int:
    found = re.search(rb"^m=audio (\d+) ", body, re.M)
    assert found, body
    return int(found[1])


async def ready(client: NgClient) -> None:
    for _ in range(50):  # rtpengine may still be starting: ICMP says so at once
        with contextlib.suppress(NgTimeout):
            await client.ping()
            return
        await asyncio.sleep(0.1)


async def call_through(ng_port: int) -> dict[str, Any]:
    """A B2BUA call anchored at the relay on ``ng_port``: offer, answer, RTP both ways, delete."""
    a, b = Phone(), Phone()  # the caller (through the proxy) and the callee (a carrier)
    media = LegMedia(NgClient(HOST, ng_port, timeout=0.2), "always", ["127.0.0.1"])
    try:
        await ready(media.client)
        a_sdp = sdp(HOST, a.port, origin="192.168.1.10")
        for_b = await media.offer("b2b-1", "A", a_sdp, PROXY)
        for_a = await media.answer("b2b-1", "A", "B", sdp(HOST, b.port))
        await send(a.rtp, port_of(for_a), [rtp(seq) for seq in range(10)])
        at_b = await receive(b.rtp, 10)
        await send(b.rtp, port_of(for_b), [rtp(seq, ssrc=0xB) for seq in range(10)])
        at_a = await receive(a.rtp, 10)
        calls = await media.client.list_calls()
        media.delete("b2b-1", "A")
        for _ in range(100):
            if media.commands["delete"] and not await media.client.list_calls():
                break
            await asyncio.sleep(0.02)
        return {
            "origin hidden": b"192.168.1.10" not in for_b,
            "relay ports": port_of(for_b) != a.port and port_of(for_a) != b.port,
            "at B": [data for data, _ in at_b] == [rtp(seq) for seq in range(10)],
            "at A": [data for data, _ in at_a] == [rtp(seq, ssrc=0xB) for seq in range(10)],
            "calls while up": calls,
            "calls after delete": await media.client.list_calls(),
            "failures": media.failures,
        }
    finally:
        media.close()
        a.close()
        b.close()


EXPECTED = {
    "origin hidden": True,
    "relay ports": True,
    "at B": True,
    "at A": True,
    "calls while up": ["b2b-1"],
    "calls after delete": [],
    "failures": 0,
}


@on_uvloop
async def test_a_call_s_media_flows_both_ways_through_our_relay() -> None:
    async with our_relay() as ng_port:
        assert await call_through(ng_port) == EXPECTED


def test_a_call_s_media_flows_both_ways_through_real_rtpengine(rtpengine: int) -> None:
    result: dict[str, Any] = {}

    @on_uvloop
    async def run() -> None:
        result.update(await call_through(rtpengine))

    run()
    assert result == EXPECTED


# -- the ng flags, and a relay that fails ------------------------------------------------------
class Recorder(asyncio.DatagramProtocol):
    """A relay that records each request and answers it with the SDP it was given."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        cookie, _, body = data.partition(b" ")
        message = decode(body)
        self.requests.append(message)
        reply = {"result": "ok", "sdp": message.get("sdp", b"")}
        self.transport.sendto(cookie + b" " + encode(reply), addr)


@contextlib.asynccontextmanager
async def recorder() -> AsyncIterator[tuple[Recorder, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Recorder, local_addr=(HOST, 0))
    try:
        yield protocol, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


@on_uvloop
async def test_a_natted_caller_gets_media_at_its_real_address_until_its_rtp_is_latched() -> None:
    async with recorder() as (relay, port):
        media = LegMedia(NgClient(HOST, port), "nat", ["127.0.0.1"])
        try:
            phone = "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-a;received=203.0.113.7;rport=4"
            request = invite(PROXY_VIA, phone, body=sdp("192.168.1.10", 4000))
            await media.offer("c1", "A", request.body, media.caller(request, PROXY))
            await media.offer("c1", "A", request.body, PROXY)  # the proxy's address: no use
            await media.offer("c1", "B", sdp(HOST, 5000), to_tag="A")  # the callee re-offers
        finally:
            media.close()
    first, second, third = relay.requests
    assert first["received-from"] == ["IP4", "203.0.113.7"]
    assert first["flags"] == ["SIP-source-address"] and first["replace"] == ["origin"]
    assert "received-from" not in second
    assert (third["from-tag"], third["to-tag"]) == ("B", "A")


@on_uvloop
async def test_a_relay_that_is_not_there_fails_the_offer_and_is_counted() -> None:
    media = LegMedia(NgClient(HOST, free_port(), timeout=0.05, retries=1), "always")
    try:
        with pytest.raises(NgError):
            await media.offer("c1", "A", sdp(HOST, 4000))
        media.delete("c1", "A")
        await asyncio.sleep(0.2)
        assert media.failures == 2 and media.commands == {"offer": 1, "delete": 1}
    finally:
        media.close()
