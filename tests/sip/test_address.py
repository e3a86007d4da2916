"""Where responses go: RFC 3261 §18.2.1 (received), §18.2.2 (sending responses)
and RFC 3581 (rport)."""

import pytest

from sipline.sip.address import Address, response_address, stamp_received
from sipline.sip.message import Request, parse_message

SOURCE = Address("UDP", "198.51.100.7", 40123)


def request(*vias: str) -> Request:
    lines = [
        "INVITE sip:bob@biloxi.example SIP/2.0",
        *(f"Via: {via}" for via in vias),
        "Max-Forwards: 70",
        "To: <sip:bob@biloxi.example>",
        "From: <sip:alice@atlanta.example>;tag=1",
        "Call-ID: c1@atlanta.example",
        "CSeq: 1 INVITE",
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


# --- Address ---------------------------------------------------------------------


def test_an_address_prints_as_transport_host_and_port_with_ipv6_in_brackets():
    assert str(Address("UDP", "192.0.2.1", 5060)) == "udp:192.0.2.1:5060"
    assert str(Address("TCP", "2001:db8::1", 5060, connection=7)) == "tcp:[2001:db8::1]:5060"
    assert Address("TCP", "2001:db8::1", 5060).hostport == "[2001:db8::1]:5060"


def test_only_udp_addresses_are_unreliable():
    assert not Address("UDP", "h", 1).reliable
    assert Address("TCP", "h", 1).reliable
    assert Address("TLS", "h", 1).reliable


# --- stamping the top Via (server side of RFC 3261 §18.2.1 / RFC 3581 §4) -------------


def test_received_is_added_when_the_sent_by_host_differs_from_the_source():
    req = request("SIP/2.0/UDP pc33.atlanta.example:5060;branch=z9hG4bK1")
    stamp_received(req, SOURCE)
    assert req.via.received == "198.51.100.7"
    assert req.via.rport is None
    assert not req.via.wants_rport


def test_nothing_is_added_when_the_sent_by_is_the_source_address_and_no_rport_is_asked():
    req = request("SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1")
    before = req.serialise()
    stamp_received(req, SOURCE)
    assert req.serialise() == before
    assert req.via.received is None


def test_an_empty_rport_is_filled_with_the_source_port_and_received_is_always_added():
    # RFC 3581 §4: with rport, received is added even when the host matches.
    req = request("SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bK1")
    stamp_received(req, SOURCE)
    assert req.via.rport == 40123
    assert req.via.received == "198.51.100.7"
    assert req.headers.get("via") == (
        "SIP/2.0/UDP 198.51.100.7:5060;rport=40123;branch=z9hG4bK1;received=198.51.100.7"
    )


def test_only_the_top_via_is_stamped_and_the_others_stay_as_they_were():
    req = request(
        "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK2;rport",
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport",
    )
    stamp_received(req, SOURCE)
    assert req.headers.get_all("Via") == [
        "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK2;rport=40123;received=198.51.100.7",
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport",
    ]


def test_a_top_via_sharing_its_line_with_others_is_stamped_in_place():
    req = request("SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1")
    stamp_received(req, SOURCE)
    assert [(v.host, v.received) for v in req.vias] == [("10.0.0.2", "198.51.100.7"), ("10.0.0.1", None)]
    assert req.serialise().index(b"10.0.0.2") < req.serialise().index(b"10.0.0.1")


def test_stamping_an_ipv6_source_writes_the_address_without_brackets():
    req = request("SIP/2.0/UDP [2001:db8::9];rport;branch=z9hG4bK1")
    stamp_received(req, Address("UDP", "2001:db8::5", 5062))
    assert (req.via.received, req.via.rport) == ("2001:db8::5", 5062)


# --- where the response goes: always its source (RFC 3581 applied to every request) -------


def test_a_response_to_a_reliable_request_goes_back_on_its_connection():
    source = Address("TCP", "198.51.100.7", 40123, connection=42)
    req = request("SIP/2.0/TCP pc33.atlanta.example:5060;branch=z9hG4bK1;rport")
    stamp_received(req, source)
    assert response_address(req, source) == source


def test_a_response_over_udp_goes_to_the_source_address_and_port():
    req = request("SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK1")
    stamp_received(req, SOURCE)
    assert response_address(req, SOURCE) == SOURCE


def test_without_rport_the_response_still_goes_to_the_source_port():
    # RFC 3261 §18.2.2 would use the sent-by port; behind a NAT or from a liar
    # that is the wrong place, so RFC 3581's rule holds for every request.
    req = request("SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK1")
    stamp_received(req, SOURCE)
    assert response_address(req, SOURCE) == SOURCE
    assert req.via.received == "198.51.100.7"  # what the client reads


@pytest.mark.parametrize(
    "via",
    [
        "SIP/2.0/UDP 10.0.0.5:5070;maddr=192.0.2.66;ttl=1;branch=z9hG4bK1",
        "SIP/2.0/UDP 10.0.0.5:5070;maddr=239.255.255.1;branch=z9hG4bK1;rport",
        "SIP/2.0/TCP 192.0.2.66:5060;branch=z9hG4bK1",
        "SIP/2.0/TLS 192.0.2.66;branch=z9hG4bK1",
    ],
)
def test_neither_maddr_nor_the_via_transport_nor_its_sent_by_moves_the_response(via):
    req = request(via)
    stamp_received(req, SOURCE)
    assert response_address(req, SOURCE) == SOURCE
