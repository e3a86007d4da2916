"""One relayed stream (relay.rtp): latching through NAT, who may latch, relaying to the peer.

Streams are wired by hand to a recording ``sendto``: the packet path with no sockets.
"""

from __future__ import annotations

import struct
from typing import Any

from relay.rtp import Stream

SDP_A = ("192.168.1.10", 4000)  # what A's SDP says (a private address behind NAT)
PUBLIC_A = "203.0.113.7"  # where A's SIP came from: its NAT's public address
NAT_A = (PUBLIC_A, 61_000)  # where A's packets really come from
SDP_B = ("198.51.100.2", 5000)
INTRUDER = ("192.0.2.66", 7000)
WINDOW = 3.0


class Wire:
    """The sends of one stream's socket."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def __call__(self, data: bytes, dest: tuple[str, int]) -> None:
        self.sent.append((data, dest))


class Refusals:
    def __init__(self) -> None:
        self.sources: list[Any] = []

    def __call__(self, stream: Stream, source: Any) -> None:
        self.sources.append(source)


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xA) + bytes(160)


def pair(
    signalled: str | None = PUBLIC_A, refused: Refusals | None = None
) -> tuple[Stream, Stream, Wire, Wire]:
    """A's stream (A sends to it; its SIP came from ``signalled``) and B's, each
    with the socket it sends from."""
    hook = refused or Refusals()
    a = Stream(30000, window=WINDOW, refused=hook)
    b = Stream(30002, window=WINDOW, refused=hook)
    a.peer, b.peer = b, a
    a.advertise(SDP_A, signalled)
    b.advertise(SDP_B)
    wire_a, wire_b = Wire(), Wire()
    a.sendto, b.sendto = wire_a, wire_b
    return a, b, wire_a, wire_b


def test_a_packet_goes_out_of_the_peer_socket_to_the_peer() -> None:
    a, _, wire_a, wire_b = pair()
    assert a.receive(rtp(1), NAT_A, 1.0)
    assert wire_b.sent == [(rtp(1), SDP_B)]
    assert wire_a.sent == []


def test_the_signalling_host_latches_on_any_port_and_replies_follow_it() -> None:
    a, b, wire_a, _ = pair()
    a.receive(rtp(1), NAT_A, 1.0)
    assert a.latched and a.endpoint == NAT_A and a.advertised == SDP_A
    b.receive(rtp(1), SDP_B, 1.0)
    assert wire_a.sent == [(rtp(1), NAT_A)]  # not to the private address in A's SDP


def test_the_sdp_host_latches_without_a_signalling_source() -> None:
    _, b, _, wire_b = pair()
    assert b.receive(rtp(1), ("198.51.100.2", 5010), 1.0)  # its SDP's host, another port
    assert b.source == ("198.51.100.2", 5010)


def test_before_any_packet_media_goes_where_the_sdp_says() -> None:
    _, b, wire_a, _ = pair()
    b.receive(rtp(1), SDP_B, 1.0)
    assert wire_a.sent == [(rtp(1), SDP_A)]


def test_a_stranger_never_latches_and_hears_nothing() -> None:
    refused = Refusals()
    a, b, wire_a, wire_b = pair(refused=refused)
    assert not a.receive(rtp(1), INTRUDER, 1.0)  # before A's first packet
    assert not a.latched and wire_b.sent == []
    b.receive(rtp(1), SDP_B, 1.1)
    assert wire_a.sent == [(rtp(1), SDP_A)]  # B's audio is not the stranger's
    assert a.receive(rtp(2), NAT_A, 1.2)
    assert not a.receive(rtp(3), INTRUDER, 1.3)  # inside the window too
    assert (a.packets, a.errors, a.source) == (1, 2, NAT_A)
    assert refused.sources == [INTRUDER, INTRUDER]


def test_another_port_of_an_allowed_host_takes_over_only_inside_the_window() -> None:
    a, b, wire_a, _ = pair()
    a.receive(rtp(1), NAT_A, 10.0)
    moved = (PUBLIC_A, 61_002)
    assert a.receive(rtp(2), moved, 10.0 + WINDOW - 0.1)  # the NAT moved the port early
    assert a.endpoint == moved
    assert not a.receive(rtp(3), NAT_A, 10.0 + WINDOW)  # the window counts from the latch
    assert a.endpoint == moved and a.errors == 1
    b.receive(rtp(1), SDP_B, 20.0)
    assert wire_a.sent[-1][1] == moved


def test_the_exact_sdp_address_is_not_taken_over_by_its_host_s_other_ports() -> None:
    _, b, *_ = pair()
    b.receive(rtp(1), SDP_B, 1.0)
    assert not b.receive(rtp(2), ("198.51.100.2", 5010), 1.1)
    assert b.source == SDP_B
    other = Stream(30004, window=WINDOW)  # no peer: nothing is sent, what latches is seen
    other.advertise(SDP_B)
    other.receive(rtp(1), ("198.51.100.2", 5010), 1.0)  # host only: the exact one wins
    other.receive(rtp(2), SDP_B, 1.1)
    assert (other.source, other.errors) == (SDP_B, 0)


def test_a_zero_window_locks_the_first_latch() -> None:
    a = Stream(30000, window=0.0)
    a.advertise(SDP_A, PUBLIC_A)
    a.receive(rtp(1), NAT_A, 1.0)
    a.receive(rtp(2), (PUBLIC_A, 61_002), 1.0)
    assert (a.source, a.packets, a.errors) == (NAT_A, 1, 1)


def test_a_re_offer_naming_the_latched_host_keeps_the_latch() -> None:
    a, *_ = pair()
    a.receive(rtp(1), NAT_A, 1.0)
    a.advertise(("192.168.1.10", 4100))  # no new signalling source: the last one holds
    assert a.endpoint == NAT_A and a.signalled == PUBLIC_A


def test_a_party_that_moved_is_learned_again() -> None:
    a, *_ = pair()
    a.receive(rtp(1), NAT_A, 1.0)
    a.advertise(("10.1.1.1", 4200), "198.51.100.77")  # a re-INVITE from another network
    assert not a.latched and a.endpoint == ("10.1.1.1", 4200)
    assert not a.receive(rtp(2), NAT_A, 100.0)  # the old address may no longer send
    assert a.receive(rtp(3), ("198.51.100.77", 3000), 100.1)
    assert a.endpoint == ("198.51.100.77", 3000)


def test_on_hold_changes_no_one_s_right_to_send() -> None:
    a, *_ = pair()
    a.receive(rtp(1), NAT_A, 1.0)
    a.advertise(None)  # c=0.0.0.0
    assert a.receive(rtp(2), NAT_A, 50.0) and a.endpoint == NAT_A


def test_without_any_address_only_the_signalling_host_may_latch() -> None:
    a = Stream(30000)
    a.advertise(None, PUBLIC_A)
    a.receive(rtp(1), INTRUDER, 1.0)
    a.receive(rtp(2), NAT_A, 1.1)
    assert (a.source, a.packets, a.errors) == (NAT_A, 1, 1)


def test_a_stream_nobody_described_yet_takes_no_one() -> None:
    a = Stream(30000)
    a.receive(rtp(1), INTRUDER, 1.0)
    assert (a.latched, a.packets, a.errors) == (False, 0, 1)


def test_an_ipv4_source_on_a_dual_stack_socket_is_its_host() -> None:
    a = Stream(30000)
    a.advertise(SDP_A, PUBLIC_A)
    mapped = (f"::ffff:{PUBLIC_A}", 61_000, 0, 0)
    a.receive(rtp(1), mapped, 1.0)
    a.receive(rtp(2), mapped, 1.1)
    assert (a.source, a.packets, a.errors) == (mapped, 2, 0)


def test_an_ipv6_address_is_matched_however_the_sdp_spells_it() -> None:
    a = Stream(30000)
    a.advertise(("2001:DB8:0:0::7", 4000))
    a.receive(rtp(1), ("2001:db8::7", 4000, 0, 0), 1.0)
    assert (a.latched, a.errors) == (True, 0)


def test_without_a_peer_address_packets_are_counted_but_not_sent() -> None:
    a, b, _, wire_b = pair()
    b.advertise(None)  # B's answer has not come yet
    b.endpoint = None
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
    rtcp.advertise((SDP_A[0], 4001), PUBLIC_A)
    rtcp.receive(b"\x81\xc9" + bytes(30), NAT_A, 1.0)
    assert (rtcp.packets, rtcp.stats) == (1, None)


def test_a_stream_whose_socket_is_not_open_sends_nowhere() -> None:
    a, b = Stream(30000), Stream(30002)
    a.peer, b.peer = b, a
    a.advertise(SDP_A, PUBLIC_A)
    b.advertise(SDP_B)
    assert a.receive(rtp(1), NAT_A, 1.0)  # handed to a socket that is not there: no error
