"""What only our own nodes may say or reach (sipline.proxying.internal)."""

from __future__ import annotations

from sipline.proxying.internal import InternalHops, hop, strip_internal
from sipline.sip.address import Address
from tests.proxying.test_rules import invite

HOPS = InternalHops([("127.0.0.1", 5070), ("127.0.0.1", 5080), ("::1", 2223)])


def test_a_strangers_internal_headers_are_taken_off() -> None:
    request = invite(
        extra="X-Sipline-Account: ACME\r\nx-sipline-media-call: c\r\nX-SIPLINE-Anything: 1\r\n"
        "P-Asserted-Identity: <sip:carol@example.com>\r\nPath: <sip:127.0.0.1:5080;lr>\r\n"
        "X-Other: kept\r\n"
    )
    strip_internal(request)
    names = [name.lower() for name, _ in request.headers]
    assert not [n for n in names if n.startswith("x-sipline-")]
    assert "p-asserted-identity" not in names and "path" not in names
    assert request.headers.get("x-other") == "kept"


def test_a_register_keeps_its_path_and_a_carrier_its_asserted_identity() -> None:
    register = invite(method="REGISTER", extra="Path: <sip:198.51.100.1;lr>\r\n")
    strip_internal(register)
    assert register.headers.get("path") == "<sip:198.51.100.1;lr>"
    inbound = invite(extra="P-Asserted-Identity: <tel:+331>\r\nX-Sipline-Account: a\r\n")
    strip_internal(inbound, identity=False)
    assert inbound.headers.get("p-asserted-identity") == "<tel:+331>"
    assert "x-sipline-account" not in inbound.headers


def test_internal_hops_are_known_by_address_and_port() -> None:
    assert Address("UDP", "127.0.0.1", 5070) in HOPS
    assert Address("TCP", "127.0.0.1", 5080, 3) in HOPS  # any transport
    assert Address("UDP", "127.0.0.1", 5060) not in HOPS  # a phone on the same box
    assert Address("UDP", "0:0::1", 2223) in HOPS
    assert HOPS.reached_by("sip:acr@127.0.0.1:5080;transport=tcp")
    assert HOPS.reached_by("sip:x@[::1]:2223")
    assert not HOPS.reached_by("sip:bob@127.0.0.1:5090")
    assert not HOPS.reached_by("sip:bob@example.com")  # needs DNS: never routed here
    assert hop(Address("UDP", "127.0.0.1", 5070)) == "127.0.0.1~5070"
