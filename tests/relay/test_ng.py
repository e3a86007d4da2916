"""The ng control protocol (relay.ng): cookies, commands, SDP in and out, errors, statistics.

The handler runs over a real session table whose sockets are ``FakePlane``;
requests go in as datagrams (cookie + bencode) and replies are decoded back.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import pytest

from relay.ng import COOKIE_TTL, NOT_FOUND, NgHandler
from relay.ports import PortPool
from relay.sessions import Call, SessionTable
from sipline.ng.bencode import decode, encode
from tests.relay.test_sessions import FakePlane
from tests.support import FakeClock

RELAY = "203.0.113.1"


def sdp(host: str, port: int, *extra: str) -> str:
    lines = [
        "v=0",
        f"o=- 1 1 IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        *extra,
    ]
    return "".join(f"{line}\r\n" for line in lines)


class Relay:
    """An NgHandler with its table, plane and clock, spoken to in datagrams."""

    def __init__(self, low: int = 30000, high: int = 30099, **kwargs: Any) -> None:
        self.clock = FakeClock()
        self.plane = FakePlane()
        self.table = SessionTable(
            PortPool(low, high),
            self.plane,
            clock=self.clock,
            wall=lambda: 1_700_000_000.25 + self.clock.now,
            **kwargs,
        )
        self.ended: list[tuple[Call, str]] = []
        self.ng = NgHandler(self.table, RELAY, on_end=lambda c, why: self.ended.append((c, why)))
        self._cookie = 0

    def __call__(self, **message: Any) -> dict[str, Any]:
        self._cookie += 1
        cookie = f"{self._cookie}_x".encode()
        reply = self.ng.datagram(cookie + b" " + encode(message))
        assert reply is not None
        head, _, body = reply.partition(b" ")
        assert head == cookie
        return decode(body)


def offer_answer(relay: Relay, call_id: str = "c1", source: str = "") -> tuple[int, int]:
    """A call A -> B (A's SIP from ``source`` if given); the relay ports A and B send to."""
    flags = {"received-from": ["IP4", source]} if source else {}
    offer = relay(
        command="offer",
        **{"call-id": call_id, "from-tag": "A"},
        **flags,
        sdp=sdp("10.0.0.1", 4000),
    )
    answer = relay(
        command="answer",
        **{"call-id": call_id, "from-tag": "A", "to-tag": "B"},
        sdp=sdp("10.0.0.2", 5000),
    )
    return media_port(answer["sdp"]), media_port(offer["sdp"])


def media_port(body: str) -> int:
    match = re.search(r"^m=audio (\d+) ", body, re.M)
    assert match
    return int(match[1])


# -- framing ---------------------------------------------------------------------------


def test_ping_is_answered_pong_under_the_same_cookie() -> None:
    relay = Relay()
    assert relay.ng.datagram(b"5323_1 d7:command4:pinge") == b"5323_1 d6:result4:ponge"


def test_a_retransmitted_request_gets_the_same_reply_without_running_again() -> None:
    relay = Relay()
    request = b"77 " + encode(
        {"command": "offer", "call-id": "c1", "from-tag": "A", "sdp": sdp("10.0.0.1", 4000)}
    )
    first = relay.ng.datagram(request)
    assert relay.ng.datagram(request) == first
    assert relay.table.ports.available == 48  # two pairs, not four


def test_a_cookie_is_forgotten_after_its_time() -> None:
    relay = Relay()
    relay.ng.datagram(b"1 d7:command4:pinge")
    relay.clock.now += COOKIE_TTL + 1
    assert relay.ng.datagram(b"1 d7:command4:liste") == b"1 d5:callsle6:result2:oke"


def test_a_datagram_without_a_cookie_is_dropped() -> None:
    assert Relay().ng.datagram(b"d7:command4:pinge") is None


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"garbage", "Could not decode bencode dictionary"),
        (b"li1ee", "Could not decode bencode dictionary"),
        (b"d3:foo3:bare", 'Dictionary contains no key "command"'),
        (b"d7:command4:jumpe", "Unrecognized command"),
    ],
)
def test_bad_requests_get_an_error_reply(body: bytes, reason: str) -> None:
    reply = Relay().ng.datagram(b"9 " + body)
    assert reply is not None
    assert decode(reply[2:]) == {"result": "error", "error-reason": reason}


# -- offer and answer ------------------------------------------------------------------


def test_offer_and_answer_put_the_relay_in_both_sdps() -> None:
    relay = Relay()
    offer = relay(command="offer", **{"call-id": "c1", "from-tag": "A"}, sdp=sdp("10.0.0.1", 4000))
    assert offer["result"] == "ok"
    assert f"c=IN IP4 {RELAY}\r\n" in offer["sdp"]
    to_b = media_port(offer["sdp"])
    assert f"m=audio {to_b} RTP/AVP 0 101\r\n" in offer["sdp"] and to_b % 2 == 0
    assert offer["sdp"].endswith(f"a=rtcp:{to_b + 1}\r\n")
    assert to_b in relay.table.ports
    answer = relay(
        command="answer",
        **{"call-id": "c1", "from-tag": "A", "to-tag": "B"},
        sdp=sdp("10.0.0.2", 5000),
    )
    assert answer["result"] == "ok"
    assert f"c=IN IP4 {RELAY}\r\n" in answer["sdp"]
    to_a = media_port(answer["sdp"])
    assert to_a in relay.table.ports and to_a != to_b


@pytest.mark.parametrize(
    "message,reason",
    [
        ({"from-tag": "A", "sdp": sdp("10.0.0.1", 4000)}, "No call-id in message"),
        ({"call-id": "c1", "sdp": sdp("10.0.0.1", 4000)}, "No from-tag in message"),
        ({"call-id": "c1", "from-tag": "A"}, "No SDP body in message"),
        ({"call-id": "c1", "from-tag": "A", "sdp": "not sdp"}, "Failed to parse SDP"),
        ({"call-id": 7, "from-tag": "A", "sdp": sdp("10.0.0.1", 4000)}, "No call-id in message"),
    ],
)
def test_an_offer_missing_what_it_needs_is_an_error(message: dict, reason: str) -> None:
    assert Relay()(command="offer", **message) == {"result": "error", "error-reason": reason}


def test_an_answer_needs_a_to_tag_and_a_known_call() -> None:
    relay = Relay()
    answer = {"call-id": "c1", "from-tag": "A", "sdp": sdp("10.0.0.2", 5000)}
    assert relay(command="answer", **answer)["error-reason"] == "No to-tag in message"
    assert relay(command="answer", **answer, **{"to-tag": "B"})["error-reason"] == "Unknown call-id"


def test_running_out_of_ports_is_answered_with_an_error() -> None:
    relay = Relay(30000, 30003)
    assert set(offer_answer(relay)) == {30000, 30002}
    reply = relay(command="offer", **{"call-id": "c2", "from-tag": "A"}, sdp=sdp("10.0.0.3", 4000))
    assert reply == {"result": "error", "error-reason": "Ran out of ports"}


def test_the_session_limit_is_answered_with_an_error() -> None:
    relay = Relay(max_sessions=1)
    offer_answer(relay)
    reply = relay(command="offer", **{"call-id": "c2", "from-tag": "A"}, sdp=sdp("10.0.0.3", 4000))
    assert reply == {"result": "error", "error-reason": "Parallel session limit reached"}


def test_sip_source_address_replaces_the_sdp_address() -> None:
    relay = Relay()
    relay(
        command="offer",
        **{"call-id": "c1", "from-tag": "A", "received-from": ["IP4", "198.51.100.9"]},
        flags=["SIP-source-address"],
        sdp=sdp("192.168.1.10", 4000),
    )
    call = relay.table.get("c1")
    assert call is not None
    assert call.parties[0].media[0].rtp.endpoint == ("198.51.100.9", 4000)


def test_received_from_lets_the_signalling_host_latch_beside_the_sdp_s() -> None:
    relay = Relay()
    relay(
        command="offer",
        **{"call-id": "c1", "from-tag": "A", "received-from": ["IP4", "198.51.100.9"]},
        sdp=sdp("10.0.0.1", 4000),
    )
    call = relay.table.get("c1")
    assert call is not None
    rtp = call.parties[0].media[0].rtp
    assert rtp.endpoint == ("10.0.0.1", 4000)  # without the flag the SDP's address holds
    rtp.receive(b"\x80" + bytes(171), ("192.0.2.66", 5000), relay.clock.now)
    rtp.receive(b"\x80" + bytes(171), ("198.51.100.9", 61000), relay.clock.now)
    assert rtp.source == ("198.51.100.9", 61000) and rtp.errors == 1


def sections(count: int) -> str:
    """An SDP with ``count`` audio sections."""
    media = "".join(f"m=audio {4000 + 2 * n} RTP/AVP 0\r\n" for n in range(count))
    return sdp("10.0.0.1", 3998).replace("m=audio 3998 RTP/AVP 0 101\r\n", "") + media


def test_an_offer_over_the_media_limit_allocates_nothing_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = Relay(max_call_ports=64)
    ids = {"call-id": "c1", "from-tag": "A", "received-from": ["IP4", "203.0.113.7"]}
    for count in (9, 2400):
        with caplog.at_level("WARNING", "sipline.relay.refusals"):
            reply = relay(command="offer", **ids, sdp=sections(count))
        assert reply == {"result": "error", "error-reason": "Too many media sections"}
    assert relay.table.get("c1") is None and relay.plane.open_ports == set()
    assert relay.ng.refusals.counts["offers_refused"] == 2
    [line] = [r.getMessage() for r in caplog.records]  # the second within the second: unlogged
    assert "event=offers_refused source=203.0.113.7" in line and "call_id=c1" in line
    assert relay(command="offer", **ids, sdp=sections(8))["result"] == "ok"
    assert len(relay.plane.open_ports) == 8 * 4


def test_an_answer_over_the_media_limit_is_refused_too() -> None:
    relay = Relay()
    offer_answer(relay)
    ids = {"call-id": "c1", "from-tag": "A", "to-tag": "B"}
    reply = relay(command="answer", **ids, sdp=sections(9))
    assert reply["error-reason"] == "Too many media sections"


def test_a_port_budget_refusal_names_the_offer_s_source() -> None:
    relay = Relay(max_source_ports=4)
    offer_answer(relay, "c1", source="203.0.113.7")
    flags = {"received-from": ["IP4", "203.0.113.7"]}
    reply = relay(command="offer", **{"call-id": "c2", "from-tag": "A"}, **flags, sdp=sections(1))
    assert reply["error-reason"] == "Port budget of the source exhausted"
    assert relay.ng.refusals.counts["offers_refused"] == 1


def test_replace_origin_puts_the_relay_in_the_o_line() -> None:
    relay = Relay()
    reply = relay(
        command="offer",
        **{"call-id": "c1", "from-tag": "A"},
        replace=["origin"],
        sdp=sdp("10.0.0.1", 4000),
    )
    assert f"o=- 1 1 IN IP4 {RELAY}\r\n" in reply["sdp"]


# -- query, delete, list ---------------------------------------------------------------


def send(relay: Relay, port: int, source: tuple[str, int], count: int, drop: set[int]) -> None:
    """``count`` G.711 packets from ``source`` to relay port ``port``, 20 ms apart."""
    stream = next(s for s in _streams(relay) if s.local_port == port)
    for seq in range(count):
        relay.clock.now += 0.02
        if seq not in drop:
            packet = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xCAFE) + bytes(160)
            stream.receive(packet, source, relay.clock.now)


def _streams(relay: Relay) -> list:
    return [s for call in relay.table.calls.values() for s in call.streams()]


def test_query_reports_each_party_s_streams_as_rtpengine_does() -> None:
    relay = Relay()
    port_a, _ = offer_answer(relay, source="203.0.113.7")  # A behind NAT
    send(relay, port_a, ("203.0.113.7", 61000), 100, drop={10, 11})
    reply = relay(command="query", **{"call-id": "c1"})
    assert reply["result"] == "ok"
    assert reply["created"] == 1_700_001_000 and reply["created_us"] == 250_000
    assert set(reply["tags"]) == {"A", "B"}
    a = reply["tags"]["A"]
    assert a["tag"] == "A" and a["subscriptions"] == [{"tag": "B", "type": "offer/answer"}]
    [media] = a["medias"]
    assert (media["index"], media["type"], media["protocol"]) == (1, "audio", "RTP/AVP")
    assert media["codec"] == "PCMU/8000"
    rtp, rtcp = media["streams"]
    assert rtp["local port"] == port_a and rtcp["local port"] == port_a + 1
    assert rtp["endpoint"] == {"family": "IPv4", "address": "203.0.113.7", "port": 61000}
    assert rtp["advertised endpoint"] == {"family": "IPv4", "address": "10.0.0.1", "port": 4000}
    assert rtp["flags"] == ["RTP", "filled", "confirmed"]
    assert rtp["SSRC"] == 0xCAFE
    stats = rtp["stats"]
    assert (stats["packets"], stats["bytes"], stats["errors"]) == (98, 98 * 172, 0)
    assert (stats["lost"], stats["expected"]) == (2, 100)
    assert 40 <= stats["MOS"] <= 44
    assert reply["totals"] == {
        "RTP": {"packets": 98, "bytes": 98 * 172, "errors": 0},
        "RTCP": {"packets": 0, "bytes": 0, "errors": 0},
    }
    quality = reply["SSRC"][str(0xCAFE)]
    assert quality["cumulative loss"] == 2
    assert quality["average MOS"]["packet loss"] == 2
    assert quality["average MOS"]["MOS"] == stats["MOS"]


def test_the_peer_is_untagged_until_the_answer() -> None:
    relay = Relay()
    relay(command="offer", **{"call-id": "c1", "from-tag": "A"}, sdp=sdp("10.0.0.1", 4000))
    tags = relay(command="query", **{"call-id": "c1"})["tags"]
    assert set(tags) == {"A", "<untagged 2>"}


def test_query_of_an_unknown_call_is_an_error() -> None:
    reply = Relay()(command="query", **{"call-id": "nope"})
    assert reply == {"result": "error", "error-reason": "Unknown call-id"}


def test_delete_ends_the_call_reports_its_figures_and_frees_the_ports() -> None:
    relay = Relay()
    port_a, _ = offer_answer(relay)
    send(relay, port_a, ("10.0.0.1", 4000), 10, drop=set())
    reply = relay(command="delete", **{"call-id": "c1", "from-tag": "A"})
    assert reply["result"] == "ok"
    assert reply["totals"]["RTP"]["packets"] == 10
    assert relay.plane.open_ports == set()
    assert [(call.call_id, why) for call, why in relay.ended] == [("c1", "deleted")]
    assert relay(command="query", **{"call-id": "c1"})["error-reason"] == "Unknown call-id"


def test_deleting_an_unknown_call_is_ok_with_a_warning() -> None:
    assert Relay()(command="delete", **{"call-id": "nope"}) == {
        "result": "ok",
        "warning": NOT_FOUND,
    }


def test_list_gives_the_call_ids_up_to_the_limit() -> None:
    relay = Relay()
    for call_id in ("c1", "c2", "c3"):
        offer_answer(relay, call_id)
    assert relay(command="list") == {"result": "ok", "calls": ["c1", "c2", "c3"]}
    assert relay(command="list", limit=2)["calls"] == ["c1", "c2"]
    assert relay(command="list", limit=-1)["result"] == "error"
