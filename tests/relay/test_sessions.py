"""The session table (relay.sessions): ports per offer and answer, limits, delete, timeouts.

``FakePlane`` stands in for the sockets (it can refuse a port, as when another
program holds it) and the clocks are plain numbers the tests move.
"""

from __future__ import annotations

import pytest

from relay.anchor import MediaSpec
from relay.ports import PortPool
from relay.rtp import Stream
from relay.sessions import (
    CALL_PORTS,
    OUT_OF_PORTS,
    SOURCE_PORTS,
    TOO_MANY_SESSIONS,
    LimitReached,
    RelayError,
    SessionTable,
)
from tests.support import FakeClock


class FakePlane:
    def __init__(self, taken: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.taken = set(taken)
        self.open_ports: set[int] = set()

    def open(self, rtp: Stream, rtcp: Stream) -> bool:
        if {rtp.local_port, rtcp.local_port} & self.taken:
            return False
        self.open_ports |= {rtp.local_port, rtcp.local_port}
        return True

    def close(self, stream: Stream) -> None:
        self.open_ports.remove(stream.local_port)



def audio(host: str, port: int) -> MediaSpec:
    return MediaSpec("audio", "RTP/AVP", (host, port), (host, port + 1), rates={0: 8000})


def table(
    low: int = 30000, high: int = 30099, *, plane: FakePlane | None = None, **kwargs: object
) -> tuple[SessionTable, FakePlane, FakeClock]:
    plane = plane or FakePlane()
    clock = FakeClock()
    sessions = SessionTable(
        PortPool(low, high), plane, clock=clock, wall=lambda: 1.7e9 + clock.now, **kwargs
    )
    return sessions, plane, clock


def test_an_offer_opens_a_pair_for_each_side_and_gives_the_peer_its_port() -> None:
    sessions, plane, _ = table()
    ports = sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    call = sessions.get("c1")
    assert call is not None
    a, peer = call.parties
    assert ports == [peer.media[0].rtp.local_port]  # the peer sends to its own pair
    mine = a.media[0].rtp.local_port
    assert plane.open_ports == {mine, mine + 1, ports[0], ports[0] + 1}
    assert mine % 2 == 0 and a.media[0].rtcp.local_port == mine + 1
    assert (a.tag, peer.tag) == ("A", "")  # the peer is named by the answer
    assert call.ports == 4
    assert a.media[0].rtp.endpoint == ("10.0.0.1", 4000)
    assert a.media[0].rtcp.endpoint == ("10.0.0.1", 4001)
    assert a.media[0].rtp.peer is peer.media[0].rtp
    assert a.media[0].rtcp.peer is peer.media[0].rtcp


def test_the_answer_names_the_peer_and_gives_the_offerer_its_port() -> None:
    sessions, _, _ = table()
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    ports = sessions.answer("c1", "A", "B", [audio("10.0.0.2", 5000)])
    call = sessions.get("c1")
    assert call is not None
    assert ports == [call.parties[0].media[0].rtp.local_port]
    b = call.party("B")
    assert b is not None and b.media[0].rtp.endpoint == ("10.0.0.2", 5000)


def test_a_re_offer_keeps_the_ports_and_takes_the_new_addresses() -> None:
    sessions, plane, _ = table()
    to_b = sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    to_a = sessions.answer("c1", "A", "B", [audio("10.0.0.2", 5000)])
    # re-INVITE from B: B offers, A answers
    assert sessions.offer("c1", "B", "A", [audio("10.0.0.2", 5002)]) == to_a
    assert sessions.answer("c1", "B", "A", [audio("10.0.0.1", 4000)]) == to_b
    assert len(plane.open_ports) == 4
    call = sessions.get("c1")
    assert call is not None and call.party("B").media[0].rtp.endpoint == ("10.0.0.2", 5002)


def test_a_second_media_section_gets_pairs_of_its_own() -> None:
    sessions, _, _ = table()
    video = MediaSpec("video", "RTP/AVP", ("10.0.0.1", 6000), ("10.0.0.1", 6001))
    ports = sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000), video])
    call = sessions.get("c1")
    assert call is not None
    assert ports == [media.rtp.local_port for media in call.parties[1].media]
    assert len(set(ports)) == 2 and call.ports == 8


def test_a_rejected_media_section_gets_no_port_in_the_sdp() -> None:
    sessions, _, _ = table()
    rejected = MediaSpec("video", "RTP/AVP", None, None, rejected=True)
    ports = sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000), rejected])
    assert ports[0] is not None and ports[1] is None


def test_running_out_of_ports_is_an_error_that_leaves_nothing_behind() -> None:
    sessions, plane, _ = table(30000, 30007)  # four pairs: two calls of one stream
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    with pytest.raises(RelayError, match=OUT_OF_PORTS):
        sessions.offer("c2", "A", None, [audio("10.0.0.3", 4000), audio("10.0.0.3", 4002)])
    assert sessions.get("c2") is None
    assert sessions.ports.available == 2 and len(plane.open_ports) == 4
    [port] = sessions.offer("c3", "A", None, [audio("10.0.0.4", 4000)])
    assert port in plane.open_ports and len(plane.open_ports) == 8


def test_a_failed_re_offer_keeps_the_call_as_it_was() -> None:
    sessions, _, _ = table(30000, 30007)
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    more = [audio("10.0.0.1", 4000), audio("10.0.0.1", 4002), audio("10.0.0.1", 4004)]
    with pytest.raises(RelayError, match=OUT_OF_PORTS):
        sessions.offer("c1", "A", None, more)
    call = sessions.get("c1")
    assert call is not None and [len(p.media) for p in call.parties] == [1, 1]
    assert sessions.ports.available == 2


def test_a_port_held_by_another_program_is_skipped() -> None:
    # Three pairs, the first drawn each time (pick 0); 30001 is another program's.
    sessions = SessionTable(PortPool(30000, 30005, pick=lambda n: 0), FakePlane(taken={30001}))
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    call = sessions.get("c1")
    assert call is not None
    assert {p.media[0].rtp.local_port for p in call.parties} == {30002, 30004}
    assert 30000 not in sessions.ports and sessions.ports.available == 1


def test_the_session_limit_refuses_new_calls_but_not_re_offers() -> None:
    sessions, _, _ = table(max_sessions=1)
    first = sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    with pytest.raises(RelayError, match=TOO_MANY_SESSIONS):
        sessions.offer("c2", "A", None, [audio("10.0.0.1", 4000)])
    assert sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)]) == first


def test_an_answer_needs_the_call_and_the_offerer() -> None:
    sessions, _, _ = table()
    with pytest.raises(RelayError, match="Unknown call-id"):
        sessions.answer("nope", "A", "B", [audio("10.0.0.2", 5000)])
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    with pytest.raises(RelayError, match="Unknown from-tag"):
        sessions.answer("c1", "X", "B", [audio("10.0.0.2", 5000)])


def test_delete_frees_the_ports_at_once() -> None:
    sessions, plane, _ = table()
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    call = sessions.delete("c1")
    assert call is not None and call.call_id == "c1"
    assert plane.open_ports == set() and sessions.ports.available == 50
    assert sessions.get("c1") is None
    assert sessions.delete("c1") is None


def test_delete_with_a_tag_of_another_call_deletes_nothing() -> None:
    sessions, _, _ = table()
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    assert sessions.delete("c1", "Z") is None
    assert sessions.get("c1") is not None


def test_a_call_without_media_for_the_timeout_expires() -> None:
    sessions, plane, clock = table(timeout=30.0)
    sessions.offer("quiet", "A", None, [audio("10.0.0.1", 4000)])
    sessions.offer("busy", "A", None, [audio("10.0.0.2", 4000)])
    busy = sessions.get("busy")
    assert busy is not None
    stream = busy.parties[0].media[0].rtp
    for second in range(1, 41):
        clock.now += 1
        stream.receive(b"\x80" + bytes(171), ("10.0.0.2", 4000), clock.now)
        expired = sessions.expire(clock.now)
        if second < 30:
            assert expired == []
    assert sessions.get("quiet") is None and sessions.get("busy") is not None
    assert len(plane.open_ports) == 4
    clock.now += 30
    assert [call.call_id for call in sessions.expire(clock.now)] == ["busy"]
    assert plane.open_ports == set()


def test_a_signal_counts_as_activity() -> None:
    sessions, _, clock = table(timeout=30.0)
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    clock.now += 25
    sessions.answer("c1", "A", "B", [audio("10.0.0.2", 5000)])
    clock.now += 25
    assert sessions.expire(clock.now) == []


# -- budgets ---------------------------------------------------------------------------------


def test_a_call_over_its_port_budget_is_refused_before_a_port_is_taken() -> None:
    sessions, plane, _ = table(max_call_ports=8)  # two media sections
    three = [audio("10.0.0.1", 4000 + 2 * n) for n in range(3)]
    with pytest.raises(LimitReached, match=CALL_PORTS):
        sessions.offer("c1", "A", None, three)
    assert plane.open_ports == set() and sessions.get("c1") is None
    sessions.offer("c1", "A", None, three[:2])
    with pytest.raises(LimitReached, match=CALL_PORTS):  # a re-offer adding a third
        sessions.offer("c1", "A", None, three)
    with pytest.raises(LimitReached, match=CALL_PORTS):  # another pair of parties
        sessions.offer("c1", "X", None, three[:1])
    assert len(plane.open_ports) == 8


def test_the_calls_of_one_signalling_host_share_a_budget_others_do_not_touch() -> None:
    sessions, plane, _ = table(max_source_ports=8)
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)], "203.0.113.7")
    sessions.offer("c2", "A", None, [audio("10.0.0.1", 4002)], "203.0.113.7")
    with pytest.raises(LimitReached, match=SOURCE_PORTS):
        sessions.offer("c3", "A", None, [audio("10.0.0.1", 4004)], "203.0.113.7")
    assert sessions.get("c3") is None and len(plane.open_ports) == 8
    sessions.offer("c4", "A", None, [audio("10.0.0.9", 4000)], "198.51.100.1")
    sessions.offer("c5", "A", None, [audio("10.0.0.9", 4000)])  # a peer of ours: no host
    assert sessions.by_source == {"203.0.113.7": 8, "198.51.100.1": 4}
    sessions.delete("c1")
    sessions.offer("c3", "A", None, [audio("10.0.0.1", 4004)], "203.0.113.7")
    sessions.delete("c2")
    sessions.delete("c3")
    assert sessions.by_source == {"198.51.100.1": 4}


def test_streams_learn_for_the_table_s_window_and_report_refusals_to_it() -> None:
    refused: list[tuple[int, object]] = []
    sessions, _, clock = table(
        window=1.5, refused=lambda s, src: refused.append((s.local_port, src))
    )
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)], "203.0.113.7")
    call = sessions.get("c1")
    assert call is not None
    stream = call.parties[0].media[0].rtp
    assert (stream.window, stream.call_id, stream.signalled) == (1.5, "c1", "203.0.113.7")
    stream.receive(b"\x80" + bytes(171), ("192.0.2.66", 9), clock.now)
    assert refused == [(stream.local_port, ("192.0.2.66", 9))]
    stream.receive(b"\x80" + bytes(171), ("203.0.113.7", 61000), clock.now)
    assert stream.latched


def test_the_answer_s_signalling_host_may_latch_the_answerer_s_streams() -> None:
    sessions, _, _ = table()
    sessions.offer("c1", "A", None, [audio("10.0.0.1", 4000)])
    sessions.answer("c1", "A", "B", [audio("192.168.5.5", 5000)], "198.51.100.20")
    call = sessions.get("c1")
    assert call is not None and call.party("B") is not None
    rtp = call.party("B").media[0].rtp  # type: ignore[union-attr]
    assert {"192.168.5.5", "198.51.100.20"} <= rtp.allowed
