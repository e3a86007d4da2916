"""Stateless forwarding (RFC 3261 §16.11, RFC 6026 §8): ACKs for 2xx and stray 2xx."""

from __future__ import annotations

from sipline.proxying.rules import Local
from sipline.proxying.signing import Signer
from sipline.proxying.stateless import forward_ack, forward_stray
from sipline.sip.address import Address, as_flow
from sipline.sip.message import Headers, Response
from tests.proxying.test_rules import invite

US = "10.0.0.1"
LOCAL = Local({"UDP": Address("UDP", US, 5060)}, ["example.com"])
SIGNER = Signer.from_secret("test secret")
CALLER = Address("UDP", "203.0.113.7", 4000)  # where the caller's Via sends responses
OUR_VIA = f"SIP/2.0/UDP {US}:5060;branch={SIGNER.branch('z9hG4bKours', 'k1', CALLER)}"
CALLER_VIA = "SIP/2.0/UDP 192.168.1.7:5060;branch=z9hG4bKa;received=203.0.113.7;rport=4000"


def test_an_ack_goes_to_the_flow_our_record_route_recorded() -> None:
    ack = invite("sip:bob@192.168.1.5", method="ACK", to_tag="b1")
    ours = {"lr": "", "ftag": "a1", "fb": "203.0.113.5~5060~u"}  # our Route, popped and checked
    assert forward_ack(ack, LOCAL, ours) == as_flow(Address("UDP", "203.0.113.5", 5060))
    assert ack.headers.values("via")[0].startswith(f"SIP/2.0/UDP {US}:5060;branch=z9hG4bK")
    assert ack.max_forwards == 69


def test_an_ack_follows_a_route_beyond_us() -> None:
    ack = invite(method="ACK", to_tag="b1", routes=("<sip:198.51.100.1;lr>",))
    assert forward_ack(ack, LOCAL, {"lr": ""}) == Address("UDP", "198.51.100.1", 5060)
    assert ack.headers.values("route") == ["<sip:198.51.100.1;lr>"]


def test_a_retransmitted_ack_is_forwarded_with_the_same_branch() -> None:
    first, again = (invite("sip:bob@192.0.2.9", method="ACK", to_tag="b1") for _ in range(2))
    forward_ack(first, LOCAL, None)
    forward_ack(again, LOCAL, None)
    assert first.via.branch == again.via.branch


def test_an_ack_out_of_hops_or_for_us_is_dropped() -> None:
    out_of_hops = invite("sip:bob@192.0.2.9", method="ACK", max_forwards=0)
    assert forward_ack(out_of_hops, LOCAL, None) is None
    assert forward_ack(invite(f"sip:bob@{US}:5060", method="ACK"), LOCAL, None) is None


def stray(status: int, *vias: str, method: str = "INVITE") -> Response:
    headers = Headers([*(("Via", v) for v in vias), ("CSeq", f"1 {method}")])
    return Response(status, "x", headers)


def test_a_stray_2xx_to_an_invite_goes_on_upstream_without_our_via() -> None:
    response = stray(200, OUR_VIA, CALLER_VIA)
    assert forward_stray(response, LOCAL, SIGNER) == CALLER
    assert response.headers.values("via") == [CALLER_VIA]


def test_a_stray_2xx_is_reflected_nowhere_unless_we_made_its_branch_for_that_hop() -> None:
    # A forged 200 with our sent-by on top and a victim's address below it.
    victim = "SIP/2.0/UDP 198.51.100.66:5060;branch=z9hG4bKv"
    made_up = f"SIP/2.0/UDP {US}:5060;branch=z9hG4bKforged.AAAAAAAAAAAA.k1"
    assert forward_stray(stray(200, made_up, victim), LOCAL, SIGNER) is None
    # Ours, but made for the caller: replayed with the victim below it, still nothing.
    assert forward_stray(stray(200, OUR_VIA, victim), LOCAL, SIGNER) is None
    other_key = Signer.from_secret("another node's secret")
    assert forward_stray(stray(200, OUR_VIA, CALLER_VIA), LOCAL, other_key) is None


def test_other_stray_responses_are_dropped() -> None:
    assert forward_stray(stray(180, OUR_VIA, CALLER_VIA), LOCAL, SIGNER) is None
    assert forward_stray(stray(200, OUR_VIA, CALLER_VIA, method="BYE"), LOCAL, SIGNER) is None
    not_ours = stray(200, "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx", CALLER_VIA)
    assert forward_stray(not_ours, LOCAL, SIGNER) is None
    assert forward_stray(stray(200, OUR_VIA), LOCAL, SIGNER) is None  # it was for us
