"""Media anchoring at the proxy (proxy.media): which calls go through the relay,
and calls through a real proxy node and our real relay (RtpRelay, in process)
on 127.0.0.1, with phones made of raw sockets and RTP sent through the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from proxy.authn import Authenticator
from proxy.location import Location
from proxy.media import ANCHORED, MediaAnchor, caller_behind_nat, wants_anchoring
from proxy.router import Router
from proxy.routing import Plan, Target
from proxy.subscribers import ServedDomains, SubscriberDirectory
from relay.media import RelayOptions, RtpRelay
from sipline.config import ConfigError, Settings, load_settings
from sipline.net.node import Node
from sipline.ng.anchoring import connection_address, packets
from sipline.ng.client import NgClient
from sipline.sip.address import Address
from sipline.sip.dialog import Dialog
from sipline.sip.message import Request, Response, parse_message
from tests.net.test_node import free_port, on_uvloop
from tests.proxy.phone import authorization, subscriber
from tests.proxy.phones import HOST, StandInRegistrar, UdpPhone
from tests.relay.test_media import Phone as RtpPhone
from tests.relay.test_media import port_of, port_range, receive, rtp, send

PRIVATE = "192.168.1.50"
SDP = "application/sdp"


def sdp(port: int, address: str = HOST) -> bytes:
    return (
        f"v=0\r\no=- 7 7 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def invite(
    body: bytes = b"", via: str = f"SIP/2.0/UDP {HOST}:5060;branch=z9hG4bK1", extra: str = ""
) -> Request:
    text = (
        f"INVITE sip:bob@example.com SIP/2.0\r\nVia: {via}\r\n{extra}"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n"
        "Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Content-Type: {SDP}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    message = parse_message(text.encode() + body)
    assert isinstance(message, Request)
    return message


SOURCE = Address("UDP", HOST, 5060)
TO_PHONE = Plan([[Target(Address("UDP", HOST, 5062), flow=True)]])
TO_NATED_PHONE = Plan([[Target(Address("UDP", "203.0.113.9", 40000), flow=True, nat=True)]])


# -- which calls ------------------------------------------------------------------------------
def test_never_anchors_nothing_and_always_anchors_every_on_net_call() -> None:
    request = invite(sdp(4000))
    assert not wants_anchoring("never", request, SOURCE, TO_NATED_PHONE, trusted=False)
    assert wants_anchoring("always", request, SOURCE, TO_PHONE, trusted=False)


def test_calls_to_the_b2bua_are_left_to_it_to_anchor() -> None:
    off_net = Plan([[Target(Address("UDP", HOST, 5070))]], off_net=True)
    assert not wants_anchoring("always", invite(sdp(4000)), SOURCE, off_net, trusted=False)


def test_with_nat_a_callee_registered_from_behind_nat_is_anchored() -> None:
    request = invite(sdp(4000))
    assert wants_anchoring("nat", request, SOURCE, TO_NATED_PHONE, trusted=False)
    assert not wants_anchoring("nat", request, SOURCE, TO_PHONE, trusted=False)


@pytest.mark.parametrize(
    ("via", "address", "behind"),
    [
        (f"{HOST}:5060", HOST, False),  # where it came from, as it says
        (f"{PRIVATE}:5060", HOST, True),  # the Via names a private address
        (f"{HOST}:5099", HOST, True),  # a NAT mapped the port (RFC 3581)
        (f"{HOST}:5060", PRIVATE, True),  # the SDP names a private address
        (f"{HOST}:5060", "0.0.0.0", False),  # on hold: no address to compare
    ],
)
def test_a_caller_is_behind_nat_when_its_via_or_sdp_name_another_address(
    via: str, address: str, behind: bool
) -> None:
    request = invite(sdp(4000, address), f"SIP/2.0/UDP {via};branch=z9hG4bK1;rport")
    assert caller_behind_nat(request, SOURCE) is behind
    assert wants_anchoring("nat", request, SOURCE, TO_PHONE, trusted=False) is behind


def test_a_caller_behind_another_proxy_or_a_trusted_peer_is_not_taken_for_nat() -> None:
    two_vias = invite(sdp(4000, PRIVATE), extra="Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK0\r\n")
    assert not caller_behind_nat(two_vias, SOURCE)
    carrier_media = invite(sdp(4000, "198.51.100.20"))
    assert not wants_anchoring("nat", carrier_media, SOURCE, TO_PHONE, trusted=True)


def test_the_first_connection_address_is_read_without_parsing_the_sdp() -> None:
    assert connection_address(sdp(4000, "192.0.2.1")) == "192.0.2.1"
    assert connection_address(b"v=0\r\nc=IN IP4 224.2.1.1/127\r\n") == "224.2.1.1"
    assert connection_address(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n") is None


def test_the_log_of_a_deleted_call_counts_each_party_s_rtp() -> None:
    def party(rtp_packets: int) -> dict[str, object]:
        streams = [
            {"flags": ["RTP"], "stats": {"packets": rtp_packets}},
            {"flags": ["RTCP"], "stats": {"packets": 3}},
        ]
        return {"medias": [{"streams": streams}]}

    assert packets({"tags": {"b": party(40), "a": party(50)}}) == "a:50,b:40"
    assert packets({"result": "ok", "warning": "gone"}) == ""


def test_no_relay_or_never_means_no_anchor() -> None:
    def section(**proxy: str) -> object:
        return Settings(proxy=proxy).proxy

    assert MediaAnchor.from_settings(section(media_relay="")) is None
    assert MediaAnchor.from_settings(section(anchor_media="never")) is None
    anchor = MediaAnchor.from_settings(section(media_relay="127.0.0.1:2299", anchor_media="always"))
    assert anchor is not None and anchor.client.address == ("127.0.0.1", 2299)
    assert anchor.mode == "always"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("MEDIA_RELAY", "relay.example.com:2223", "proxy.media_relay = 'relay.example.com:2223'"),
        ("MEDIA_RELAY", "127.0.0.1", "expected HOST:PORT"),
        ("ANCHOR_MEDIA", "sometimes", "proxy.anchor_media = 'sometimes'"),
    ],
)
def test_a_bad_media_setting_fails_at_start_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(f"SIPLINE_PROXY__{key}", value)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_settings(None)


# -- calls through the proxy and the relay ------------------------------------------------------
@dataclass
class Stack:
    node: Node
    router: Router
    location: Location
    port: int
    relay: RtpRelay

    @property
    def anchor(self) -> MediaAnchor:
        assert self.router.media is not None
        return self.router.media

    async def registered(
        self, user: str, contact: str | None = None, nat: bool = False
    ) -> UdpPhone:
        phone = await UdpPhone.open(self.port)
        phone.send(phone.register(user, contact=contact))
        await phone.response(200)
        if nat:  # what the registrar records for a phone behind NAT
            for binding in self.location.lookup(f"{user}@example.com", 0):
                self.location.apply([replace(binding, nat=True)])
        return phone

    def relayed(self, port: int) -> bool:
        options = self.relay.options
        return options.port_min <= port <= options.port_max


@contextlib.asynccontextmanager
async def stack(
    mode: str = "always", media_relay: str | None = None, timer_c: float | None = None
) -> AsyncIterator[Stack]:
    low, high = port_range()
    relay = RtpRelay(RelayOptions(ng_port=0, port_min=low, port_max=high))
    await relay.start()
    assert relay.ng_address is not None
    port = free_port()
    settings = Settings(
        node={"name": "media-test", "drain_timeout": 0.1},
        sip={"host": HOST, "port": port, "server_header": "sipline-test"},
        proxy={
            "domains": ["example.com"], "trusted": [], "b2bua": [], "anchor_media": mode,
            "media_relay": media_relay or f"{HOST}:{relay.ng_address[1]}",
        },
    )  # fmt: skip
    location = Location()
    directory = SubscriberDirectory(
        subscribers=[subscriber(f"{u}@example.com", id_=i) for i, u in enumerate(("alice", "bob"))]
    )
    authenticator = Authenticator(settings.auth, directory, ServedDomains(["example.com"], [HOST]))
    router = Router(settings, location, directory, authenticator, timer_c=timer_c)
    node = Node(settings, StandInRegistrar(router, location))
    await node.start()
    try:
        yield Stack(node, router, location, port, relay)
    finally:
        router.close()
        await node.stop()
        await relay.close()


async def call(alice: UdpPhone, body: bytes) -> Request:
    """Alice's INVITE with ``body``: challenged, then sent with her credentials."""
    first = alice.new_request("INVITE", "sip:bob@example.com")
    first.set_body(body, SDP)
    alice.send(first)
    challenge = await alice.response(407)
    alice.ack_failure(first, challenge)
    second = parse_message(bytes(first))
    assert isinstance(second, Request)
    second.headers.set("Via", alice.via())
    second.headers.set("CSeq", "2 INVITE")
    second.headers.add("Proxy-Authorization", authorization(challenge, second, "alice", proxy=True))
    alice.send(second)
    return second


def answer(phone: UdpPhone, request: Request, status: int, tag: str, body: bytes = b"") -> Response:
    """A UAS's answer, with SDP when ``body`` is given (Record-Route copied, §12.1.1)."""
    response = request.response(status, to_tag=tag)
    if 100 < status < 300:
        for value in request.headers.get_all("record-route"):
            response.headers.add("Record-Route", value)
        response.headers.add("Contact", phone.contact("bob"))
    if body:
        response.set_body(body, SDP)
    phone.send(response)
    return response


async def no_call_left(relay: RtpRelay) -> None:
    for _ in range(200):
        if not relay.table.calls:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the relay still holds {list(relay.table.calls)}")


@on_uvloop
async def test_an_anchored_call_carries_media_through_the_relay_and_bye_deletes_it() -> None:
    a, b = RtpPhone(), RtpPhone()
    async with stack("always") as s:
        bob = await s.registered("bob")
        alice = await UdpPhone.open(s.port)
        invite_sent = await call(alice, a.sdp().encode())

        forwarded = await bob.request("INVITE")
        to_b = port_of(forwarded.body.decode())
        assert s.relayed(to_b) and to_b != a.port  # bob is offered the relay, not alice
        [record_route] = forwarded.headers.values("record-route")
        assert f";{ANCHORED}" in record_route

        answer(bob, forwarded, 200, "b1", b.sdp().encode())
        ok = await alice.response(200)
        to_a = port_of(ok.body.decode())
        assert s.relayed(to_a) and to_a != b.port
        assert list(s.relay.table.calls) == [invite_sent.call_id]

        await send(a.rtp, to_a, [rtp(seq) for seq in range(10)])
        assert len(await receive(b.rtp, 10)) == 10
        await send(b.rtp, to_b, [rtp(seq, ssrc=0xB) for seq in range(10)])
        assert len(await receive(a.rtp, 10)) == 10

        dialog = Dialog.uac(invite_sent, ok)
        alice.ack(dialog, invite_sent)
        await bob.request("ACK")
        alice.in_dialog(dialog, "BYE")
        bye = await bob.request("BYE")
        answer(bob, bye, 200, "b1")
        await alice.response(200)
        await no_call_left(s.relay)
        assert s.anchor.commands == {"offer": 1, "answer": 1, "delete": 1}
        assert s.anchor.failures == 0
    a.close()
    b.close()


@on_uvloop
async def test_a_call_that_needs_no_anchoring_makes_no_ng_round_trip() -> None:
    async with stack("nat") as s:
        bob = await s.registered("bob")
        alice = await UdpPhone.open(s.port)
        body = sdp(4000)
        await call(alice, body)
        forwarded = await bob.request("INVITE")
        assert forwarded.body == body and ANCHORED not in forwarded.headers.get("record-route", "")
        answer(bob, forwarded, 200, "b1", sdp(5000))
        assert (await alice.response(200)).body == sdp(5000)
        assert not s.anchor.commands


@on_uvloop
async def test_a_caller_whose_sdp_names_a_private_address_is_anchored() -> None:
    async with stack("nat") as s:
        bob = await s.registered("bob")
        alice = await UdpPhone.open(s.port)
        await call(alice, sdp(4000, PRIVATE))
        forwarded = await bob.request("INVITE")
        assert connection_address(forwarded.body) == HOST
        assert s.relayed(port_of(forwarded.body.decode()))


@on_uvloop
async def test_the_relay_latches_to_where_a_nated_caller_s_rtp_really_comes_from() -> None:
    a, b = RtpPhone(), RtpPhone()
    async with stack("nat") as s:
        bob = await s.registered("bob")
        alice = await UdpPhone.open(s.port)
        await call(alice, sdp(a.port, PRIVATE))  # what alice's SDP says: nobody can reach it
        forwarded = await bob.request("INVITE")
        answer(bob, forwarded, 200, "b1", b.sdp().encode())
        to_a, to_b = (
            port_of((await alice.response(200)).body.decode()),
            port_of(forwarded.body.decode()),
        )

        await send(a.nat_rtp, to_a, [rtp(seq) for seq in range(5)])  # through her NAT
        assert len(await receive(b.rtp, 5)) == 5
        await send(b.rtp, to_b, [rtp(seq, ssrc=0xB) for seq in range(5)])
        assert len(await receive(a.nat_rtp, 5)) == 5  # back through the NAT's mapping
    a.close()
    b.close()


@on_uvloop
async def test_a_callee_registered_from_behind_nat_gets_an_anchored_call() -> None:
    async with stack("nat") as s:
        bob = await s.registered("bob", nat=True)
        alice = await UdpPhone.open(s.port)
        await call(alice, sdp(4000))
        forwarded = await bob.request("INVITE")
        assert s.relayed(port_of(forwarded.body.decode()))


@on_uvloop
async def test_the_answer_in_a_183_is_anchored_and_the_200_repeating_it_costs_no_second_answer() -> (
    None
):
    async with stack("always") as s:
        bob = await s.registered("bob")
        alice = await UdpPhone.open(s.port)
        await call(alice, sdp(4000))
        forwarded = await bob.request("INVITE")
        answer(bob, forwarded, 183, "b1", sdp(5000))
        early = await alice.response(183)
        answer(bob, forwarded, 200, "b1", sdp(5000))
        answer(bob, forwarded, 200, "b1", sdp(5000))  # a 2xx retransmission
        final = await alice.response(200)
        again = await alice.response(200)
        assert early.body == final.body == again.body
        assert s.relayed(port_of(final.body.decode()))
        assert s.anchor.commands == {"offer": 1, "answer": 1}


@on_uvloop
async def test_cancel_during_ringing_deletes_the_call_s_media() -> None:
    async with stack("always") as s:
        bob = await s.registered("bob")
        alice = await UdpPhone.open(s.port)
        sent = await call(alice, sdp(4000))
        forwarded = await bob.request("INVITE")
        answer(bob, forwarded, 180, "b1")
        await alice.response(180)
        assert s.relay.table.calls
        alice.cancel(sent)
        await alice.response(200)  # to the CANCEL
        cancel = await bob.request("CANCEL")
        bob.send(cancel.response(200))
        answer(bob, forwarded, 487, "b1")
        await alice.response(487)
        await no_call_left(s.relay)


@on_uvloop
async def test_a_rejected_call_s_media_is_deleted() -> None:
    async with stack("always") as s:
        bob = await s.registered("bob")
        alice = await UdpPhone.open(s.port)
        await call(alice, sdp(4000))
        forwarded = await bob.request("INVITE")
        answer(bob, forwarded, 486, "b1")
        await alice.response(486)
        await no_call_left(s.relay)


@on_uvloop
async def test_timer_c_ends_a_call_that_rings_too_long_and_its_media() -> None:
    async with stack("always", timer_c=0.3) as s:
        bob = await s.registered("bob")
        alice = await UdpPhone.open(s.port)
        await call(alice, sdp(4000))
        forwarded = await bob.request("INVITE")
        answer(bob, forwarded, 180, "b1")
        await alice.response(180)
        cancel = await bob.request("CANCEL", timeout=2.0)
        bob.send(cancel.response(200))
        answer(bob, forwarded, 487, "b1")
        await alice.response(487)
        await no_call_left(s.relay)


@on_uvloop
async def test_a_reinvite_in_an_anchored_dialog_is_anchored_again_and_bye_from_the_callee_deletes() -> (
    None
):
    async with stack("always") as s:
        bob = await s.registered("bob")
        alice = await UdpPhone.open(s.port)
        sent = await call(alice, sdp(4000))
        forwarded = await bob.request("INVITE")
        response = answer(bob, forwarded, 200, "b1", sdp(5000))
        ok = await alice.response(200)
        to_a = port_of(ok.body.decode())
        dialog = Dialog.uac(sent, ok)
        alice.ack(dialog, sent)
        await bob.request("ACK")

        callee = Dialog.uas(forwarded, response)
        reinvite, _ = callee.create_request("INVITE", via=bob.via(), contact=bob.contact("bob"))
        reinvite.set_body(sdp(5002), SDP)  # bob moves his media
        bob.send(reinvite)
        to_alice = await alice.request("INVITE")
        assert port_of(to_alice.body.decode()) == to_a  # the relay keeps its ports
        answer(alice, to_alice, 200, "a-tag-unused", sdp(4000))
        reanswered = await bob.response(200)
        assert s.relayed(port_of(reanswered.body.decode()))
        assert s.relay.table.calls  # a re-INVITE never deletes

        bob_bye, _ = callee.create_request("BYE", via=bob.via(), contact=bob.contact("bob"))
        bob.send(bob_bye)
        bye = await alice.request("BYE")
        alice.send(bye.response(200))
        await bob.response(200)
        await no_call_left(s.relay)


@on_uvloop
async def test_with_no_relay_listening_the_call_goes_ahead_un_anchored_at_once() -> None:
    async with stack("always", media_relay=f"{HOST}:{free_port()}") as s:
        bob = await s.registered("bob")
        alice = await UdpPhone.open(s.port)
        await call(alice, sdp(4000))
        forwarded = await bob.request("INVITE", timeout=1.0)  # ICMP, not 2 s of retries
        assert forwarded.body == sdp(4000)
        assert ANCHORED not in forwarded.headers.get("record-route", "")
        answer(bob, forwarded, 200, "b1", sdp(5000))
        assert (await alice.response(200)).body == sdp(5000)
        assert s.anchor.failures == 1


@on_uvloop
async def test_a_silent_relay_delays_the_call_by_its_timeout_then_lets_it_through() -> None:
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(HOST, 0))
    try:
        async with stack("always") as s:
            port = silent.get_extra_info("sockname")[1]
            s.router.media = MediaAnchor(NgClient(HOST, port, timeout=0.1, retries=1), "always")
            bob = await s.registered("bob")
            alice = await UdpPhone.open(s.port)
            await call(alice, sdp(4000))
            forwarded = await bob.request("INVITE")
            assert forwarded.body == sdp(4000) and s.anchor.failures == 1
    finally:
        silent.close()
