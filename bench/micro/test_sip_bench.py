"""The SIP message layer on the hot path of a proxy.

Targets (medians on one core, not asserted): parse a ~950-byte INVITE and
read what routing needs <= 15 us; the proxy's forward transformation,
bytes in to bytes out, <= 25 us; parse and serialise a 200 OK <= 12 us.
"""

from __future__ import annotations

from sipline.sip.address import Address, stamp_received
from sipline.sip.message import Request, Response, find_message_end, parse_message

from .messages import INVITE, OK_200, OUR_RECORD_ROUTE, OUR_VIA


def parse_and_read(data: bytes) -> tuple[object, ...]:
    """What a proxy reads of every request: transaction key, dialog ids, routes."""
    request = parse_message(data)
    return (
        request.via.branch,
        request.from_.tag,
        request.to.tag,
        request.call_id,
        request.cseq,
        request.routes,
    )


def forward(data: bytes) -> bytes:
    """A record-routing proxy forwarding a request (RFC 3261 §16.6)."""
    request = parse_message(data)
    headers = request.headers
    max_forwards = request.max_forwards
    headers.prepend("Via", OUR_VIA)
    headers.set("Max-Forwards", str(max_forwards - 1 if max_forwards else 0))
    headers.prepend("Record-Route", OUR_RECORD_ROUTE)
    headers.pop_first_value("Route")
    return request.serialise()


def parse_and_serialise(data: bytes) -> bytes:
    return parse_message(data).serialise()


def test_parse_an_invite_and_read_the_routing_headers(benchmark):
    branch, from_tag, to_tag, call_id, cseq, routes = benchmark(parse_and_read, INVITE)
    assert (branch, from_tag, to_tag) == ("z9hG4bK-524287-1---8e3f2a1c", "1928301774", None)
    assert call_id == "a84b4c76e66710@pc33.sipline.example"
    assert (cseq.number, cseq.method) == (314159, "INVITE")
    assert len(routes) == 3


def test_forward_an_invite_through_a_record_routing_proxy(benchmark):
    out = benchmark(forward, INVITE)
    request = parse_message(out)
    assert isinstance(request, Request)
    assert request.via.branch == "z9hG4bK.proxy.1"
    assert len(request.vias) == 3
    assert request.max_forwards == 68
    assert request.record_routes[0].uri_text == "sip:192.0.2.1:5060;lr"
    assert [r.uri_text for r in request.routes] == ["sip:b2bua.sipline.example;lr", "sip:acr1.sipline.example;lr"]
    assert request.body == parse_message(INVITE).body


def test_parse_and_serialise_a_200_ok(benchmark):
    out = benchmark(parse_and_serialise, OK_200)
    assert out == OK_200


# The pieces, for seeing where the time goes --------------------------------------


def test_parse_an_invite_only(benchmark):
    assert isinstance(benchmark(parse_message, INVITE), Request)


def test_serialise_an_untouched_invite(benchmark):
    request = parse_message(INVITE)
    assert benchmark(request.serialise) == INVITE


def test_answer_an_invite_with_180_ringing(benchmark):
    request = parse_message(INVITE)

    def ring() -> bytes:
        return request.response(180, to_tag="a6c85cf").serialise()

    assert isinstance(parse_message(benchmark(ring)), Response)


def test_stamp_received_and_rport_on_the_top_via(benchmark):
    source = Address("UDP", "203.0.113.9", 40000)

    def stamp() -> Request:
        request = parse_message(INVITE)
        stamp_received(request, source)
        return request

    assert benchmark(stamp).via.received == "203.0.113.9"


def test_frame_an_invite_on_a_stream(benchmark):
    buffer = bytearray(INVITE * 2)
    assert benchmark(find_message_end, buffer, len(INVITE)) == 2 * len(INVITE)
