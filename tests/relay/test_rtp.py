"""One relayed stream (relay.rtp): latching through NAT, strictness, relaying to the peer.

Streams are wired by hand to a recording ``sendto``: the packet path with no sockets.
"""

from __future__ import annotations

import struct

from relay.rtp import Stream

SDP_A = ("192.168.1.10", 4000)  # what A's SDP says (a private address behind NAT)
NAT_A = ("203.0.113.7", 61_000)  # where A's packets really come from
SDP_B = ("198.51.100.2", 5000)
INTRUDER = ("192.0.2.66", 7000)


class Wire:
    """The sends of one stream's socket."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def __call__(self, data: bytes, dest: tuple[str, int]) -> None:
        self.sent.append((data, dest))


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xA) + bytes(160)


def pair(*, strict: bool = False) -> tuple[Stream, Stream, Wire, Wire]:
    """A's stream (A sends to it) and B's, each with the socket it sends from."""
    a, b = Stream(30000, strict=strict), Stream(30002, strict=strict)
    a.peer, b.peer = b, a
    a.advertise(SDP_A)
    b.advertise(SDP_B)
    wire_a, wire_b = Wire(), Wire()
    a.sendto, b.sendto = wire_a, wire_b
    return a, b, wire_a, wire_b


def test_a_packet_goes_out_of_the_peer_socket_to_the_peer() -> None:
    a, _, wire_a, wire_b = pair()
    assert a.receive(rtp(1), NAT_A, 1.0)
    assert wire_b.sent == [(rtp(1), SDP_B)]
    assert wire_a.sent == []


def test_the_first_packet_latches_the_real_source_and_replies_follow_it() -> None:
    a, b, wire_a, _ = pair()
    a.receive(rtp(1), NAT_A, 1.0)
    assert a.latched and a.endpoint == NAT_A and a.advertised == SDP_A
    b.receive(rtp(1), SDP_B, 1.0)
    assert wire_a.sent == [(rtp(1), NAT_A)]  # not to the private address in A's SDP


def test_before_any_packet_media_goes_where_the_sdp_says() -> None:
    _, b, wire_a, _ = pair()
    b.receive(rtp(1), SDP_B, 1.0)
    assert wire_a.sent == [(rtp(1), SDP_A)]


def test_a_strict_stream_drops_other_sources_once_latched() -> None:
    a, _, _, wire_b = pair(strict=True)
    a.receive(rtp(1), NAT_A, 1.0)
    assert not a.receive(rtp(2), INTRUDER, 1.1)
    assert (a.packets, a.errors, a.endpoint) == (1, 1, NAT_A)
    assert len(wire_b.sent) == 1


def test_a_lenient_stream_relays_other_sources_but_keeps_its_latch() -> None:
    a, b, wire_a, wire_b = pair()
    a.receive(rtp(1), NAT_A, 1.0)
    assert a.receive(rtp(2), INTRUDER, 1.1)
    assert (a.packets, a.errors, a.endpoint) == (2, 0, NAT_A)
    b.receive(rtp(1), SDP_B, 1.2)
    assert wire_a.sent[-1][1] == NAT_A


def test_a_new_sdp_address_does_not_undo_a_latch() -> None:
    a, *_ = pair()
    a.receive(rtp(1), NAT_A, 1.0)
    a.advertise(("192.168.1.10", 4100))
    assert a.endpoint == NAT_A


def test_without_a_peer_address_packets_are_counted_but_not_sent() -> None:
    a, b, _, wire_b = pair()
    b.advertise(None)  # B's answer has not come yet
    assert not a.receive(rtp(1), NAT_A, 1.0)
    assert (a.packets, a.errors, wire_b.sent) == (1, 0, [])


def test_a_stream_counts_packets_bytes_and_the_time_of_the_last() -> None:
    a, *_ = pair()
    for seq in range(10):
        a.receive(rtp(seq), NAT_A, 5.0 + seq)
    assert (a.packets, a.bytes, a.last_packet) == (10, 10 * 172, 14.0)
    assert a.stats is not None and a.stats.received == 10


def test_rtcp_streams_count_packets_without_rtp_statistics() -> None:
    rtcp = Stream(30001, rtcp=True)
    rtcp.receive(b"\x81\xc9" + bytes(30), NAT_A, 1.0)
    assert (rtcp.packets, rtcp.stats) == (1, None)


def test_a_stream_whose_socket_is_not_open_sends_nowhere() -> None:
    a, b = Stream(30000), Stream(30002)
    a.peer, b.peer = b, a
    b.advertise(SDP_B)
    assert a.receive(rtp(1), NAT_A, 1.0)  # handed to a socket that is not there: no error
