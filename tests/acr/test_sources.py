"""Who sends a request to the ACR (acr.calls.Sources): carriers' gateways over UDP,
TCP and TLS, and carriers known by their certificate."""

from __future__ import annotations

from acr.calls import Source, Sources
from sipline.carriers.model import Carrier, Gateway
from sipline.peers import CERTIFIED
from sipline.sip.address import Address

CARRIERS = [
    Carrier("udp-co", (Gateway("udp-co", "192.0.2.10", 5060),)),
    Carrier("tls-co", (Gateway("tls-co", "192.0.2.20", 5061, "tls"),)),
    Carrier("cert-co", (Gateway("cert-co", "192.0.2.30", 5061, "tls"),)),
]


def test_a_udp_gateway_is_known_by_its_address_and_port() -> None:
    sources = Sources(CARRIERS, [], [])
    assert sources.classify(Address("UDP", "192.0.2.10", 5060)) is Source.CARRIER
    assert sources.classify(Address("UDP", "192.0.2.10", 5070)) is Source.STRANGER


def test_a_tls_gateway_connects_from_any_port_of_its_host() -> None:
    sources = Sources(CARRIERS, [], [])
    assert sources.classify(Address("TLS", "192.0.2.20", 41234, 7)) is Source.CARRIER
    assert sources.classify(Address("UDP", "192.0.2.20", 41234)) is Source.STRANGER


def test_a_carrier_proved_by_its_certificate_is_known_from_anywhere() -> None:
    sources = Sources(CARRIERS, [], [])
    CERTIFIED[9101] = "cert-co"  # its [[tls.peers]] entry bears the carrier's name
    try:
        assert sources.classify(Address("TLS", "198.51.100.3", 40000, 9101)) is Source.CARRIER
        assert sources.classify(Address("TLS", "198.51.100.3", 40001, 9102)) is Source.STRANGER
        assert sources.classify(Address("TCP", "198.51.100.3", 40002, 9101)) is Source.STRANGER
    finally:
        CERTIFIED.clear()
