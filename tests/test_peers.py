"""Trusted peers (sipline.peers): who a role believes by address alone."""

from __future__ import annotations

import pytest

from sipline.peers import CERTIFIED, Peer, TrustedPeers, parse_peer
from sipline.sip.address import Address


def udp(host: str, port: int) -> Address:
    return Address("UDP", host, port)


def tcp(host: str, port: int) -> Address:
    return Address("TCP", host, port, 7)


@pytest.mark.parametrize(
    ("entry", "peer"),
    [
        ("10.0.0.5", Peer("10.0.0.5", None, None)),
        ("10.0.0.5:5070", Peer("10.0.0.5", 5070, None)),
        ("10.0.0.5;transport=tcp", Peer("10.0.0.5", None, "TCP")),
        ("10.0.0.5:5070;transport=TCP", Peer("10.0.0.5", 5070, "TCP")),
        ("10.0.0.5:5070;transport=udp", Peer("10.0.0.5", 5070, "UDP")),
        ("10.0.0.5;transport=tls", Peer("10.0.0.5", None, "TLS")),
        ("2001:DB8::5", Peer("2001:db8::5", None, None)),
        ("[2001:db8:0::5]:5070", Peer("2001:db8::5", 5070, None)),
    ],
)
def test_an_entry_is_an_address_with_an_optional_port_and_transport(entry: str, peer: Peer) -> None:
    assert parse_peer(entry) == peer


@pytest.mark.parametrize(
    "entry",
    ["proxy.example", "10.0.0.5:0", "10.0.0.5:70000", "10.0.0.5:", "10.0.0.5;transport=sctp",
     "10.0.0.5;tcp", "[2001:db8::5]", "[2001:db8::5:5070", "10.0.0.0/8", ""],
)  # fmt: skip
def test_anything_else_is_refused_saying_what_is_expected(entry: str) -> None:
    with pytest.raises(ValueError, match="expected an IP address, IP:PORT"):
        parse_peer(entry)


def test_an_address_without_a_port_is_trusted_on_every_port_and_transport() -> None:
    peers = TrustedPeers(["10.0.0.5"])
    assert peers.trusts(udp("10.0.0.5", 5060)) and peers.trusts(tcp("10.0.0.5", 40123))
    assert not peers.trusts(udp("10.0.0.6", 5060))


def test_a_port_narrows_it_to_that_port() -> None:
    # Phones on the same box share the address: only the role's own port is ours.
    peers = TrustedPeers(["127.0.0.1:5070"])
    assert peers.trusts(udp("127.0.0.1", 5070))
    assert not peers.trusts(udp("127.0.0.1", 5071))
    assert not peers.trusts(udp("127.0.0.2", 5070))


def test_a_transport_narrows_it_to_that_transport() -> None:
    peers = TrustedPeers(["10.0.0.5;transport=tcp", "10.0.0.9:5070;transport=udp"])
    assert peers.trusts(tcp("10.0.0.5", 40123))
    assert not peers.trusts(udp("10.0.0.5", 5060))  # a forged UDP source proves nothing
    assert peers.trusts(udp("10.0.0.9", 5070))
    assert not peers.trusts(tcp("10.0.0.9", 5070))


def test_several_entries_for_one_host_each_count() -> None:
    peers = TrustedPeers(["127.0.0.1:5070", "127.0.0.1:5080;transport=tcp"])
    assert peers.trusts(udp("127.0.0.1", 5070))
    assert peers.trusts(tcp("127.0.0.1", 5080))
    assert not peers.trusts(udp("127.0.0.1", 5080))
    assert peers.hosts == frozenset({"127.0.0.1"})


def test_ipv6_entries_match_the_compressed_form_sockets_give() -> None:
    peers = TrustedPeers(["[2001:DB8:0:0::5]:5070"])
    assert peers.trusts(udp("2001:db8::5", 5070))


def test_no_entries_trust_nobody() -> None:
    peers = TrustedPeers([])
    assert not peers and not peers.trusts(udp("127.0.0.1", 5060))


def tls(host: str, port: int, connection: int) -> Address:
    return Address("TLS", host, port, connection)


def test_a_tls_entry_trusts_the_connections_whose_certificate_proved_that_peer() -> None:
    # The TLS transport notes which [[tls.peers]] entry a connection's certificate proved.
    peers = TrustedPeers(["tls:carrier"])
    CERTIFIED[9001] = "carrier"
    CERTIFIED[9002] = "other"
    try:
        assert peers.trusts(tls("203.0.113.7", 40000, 9001))  # from any address
        assert not peers.trusts(tls("203.0.113.7", 40001, 9002))  # another peer's certificate
        assert not peers.trusts(tls("203.0.113.7", 40002, 9003))  # none (a phone)
        assert not peers.trusts(tcp("203.0.113.7", 40000)._replace(connection=9001))
    finally:
        CERTIFIED.clear()


def test_a_tls_entry_needs_a_name() -> None:
    with pytest.raises(ValueError, match="tls:NAME"):
        TrustedPeers(["tls:"])
