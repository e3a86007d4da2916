"""Media anchoring in SDP (relay.anchor): where a party receives, and the body rewritten to us."""

from __future__ import annotations

from relay.anchor import anchor, describe
from sipline.sip.sdp import SessionDescription

RELAY = "203.0.113.1"


def sdp(*lines: str) -> SessionDescription:
    return SessionDescription.parse("".join(f"{line}\r\n" for line in lines).encode())


def phone_offer() -> SessionDescription:
    return sdp(
        "v=0",
        "o=alice 2890844526 2890844526 IN IP4 192.168.1.10",
        "s=-",
        "c=IN IP4 192.168.1.10",
        "t=0 0",
        "m=audio 49170 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    )


def test_a_party_receives_rtp_at_the_sdp_address_and_rtcp_one_port_up() -> None:
    [audio] = describe(phone_offer())
    assert audio.kind == "audio" and audio.protocol == "RTP/AVP"
    assert audio.rtp == ("192.168.1.10", 49170)
    assert audio.rtcp == ("192.168.1.10", 49171)  # RFC 3550 §11
    assert audio.rates == {0: 8000, 101: 8000}
    assert audio.names == {0: "PCMU", 101: "telephone-event"}


def test_a_rtcp_names_the_rtcp_port_and_perhaps_its_address() -> None:
    body = sdp(
        "v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0",
        "m=audio 5000 RTP/AVP 0", "a=rtcp:5005",
        "m=audio 6000 RTP/AVP 0", "a=rtcp:6001 IN IP4 10.0.0.9",
    )  # fmt: skip
    first, second = describe(body)
    assert first.rtcp == ("10.0.0.1", 5005)
    assert second.rtcp == ("10.0.0.9", 6001)


def test_a_media_level_address_wins_over_the_session_one() -> None:
    body = sdp(
        "v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0",
        "m=audio 5000 RTP/AVP 0", "c=IN IP4 10.0.0.2",
    )  # fmt: skip
    assert describe(body)[0].rtp == ("10.0.0.2", 5000)


def test_rejected_and_on_hold_streams_have_no_address() -> None:
    body = sdp(
        "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "c=IN IP4 0.0.0.0", "t=0 0",
        "m=audio 5000 RTP/AVP 0", "m=video 0 RTP/AVP 31",
    )  # fmt: skip
    held, rejected = describe(body)
    assert (held.rtp, held.rtcp, held.rejected) == (None, None, False)  # RFC 3264 §8.4
    assert (rejected.rtp, rejected.rejected) == (None, True)


def test_the_anchored_body_sends_media_and_rtcp_to_the_relay() -> None:
    body = anchor(phone_offer(), RELAY, [30000]).decode()
    assert body == (
        "v=0\r\n"
        "o=alice 2890844526 2890844526 IN IP4 192.168.1.10\r\n"
        "s=-\r\n"
        f"c=IN IP4 {RELAY}\r\n"
        "t=0 0\r\n"
        "m=audio 30000 RTP/AVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
        "a=rtcp:30001\r\n"
    )


def test_every_media_connection_is_rewritten_and_an_old_a_rtcp_replaced() -> None:
    body = sdp(
        "v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0",
        "m=audio 5000 RTP/AVP 0", "c=IN IP4 10.0.0.2", "a=rtcp:5001 IN IP4 10.0.0.2",
        "m=video 6000 RTP/AVP 96", "c=IN IP4 10.0.0.3",
    )  # fmt: skip
    out = SessionDescription.parse(anchor(body, RELAY, [30000, 30002]))
    assert [out.media_address(m) for m in out.media] == [RELAY, RELAY]
    assert [m.port for m in out.media] == [30000, 30002]
    assert [m.attributes("rtcp") for m in out.media] == [["30001"], ["30003"]]


def test_a_rejected_stream_stays_rejected() -> None:
    body = sdp(
        "v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0",
        "m=audio 5000 RTP/AVP 0", "m=video 0 RTP/AVP 31",
    )  # fmt: skip
    out = SessionDescription.parse(anchor(body, RELAY, [30000, None]))
    assert [m.port for m in out.media] == [30000, 0]
    assert out.media[1].attribute("rtcp") is None


def test_ice_attributes_are_removed_so_the_parties_cannot_bypass_the_relay() -> None:
    body = sdp(
        "v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0",
        "a=ice-lite",
        "m=audio 5000 RTP/AVP 0",
        "a=ice-ufrag:F7gI", "a=ice-pwd:x9cml/YzichV2+XlhiMu8g",
        "a=candidate:1 1 UDP 2130706431 10.0.0.1 5000 typ host",
        "a=end-of-candidates", "a=sendrecv",
    )  # fmt: skip
    out = SessionDescription.parse(anchor(body, RELAY, [30000]))
    assert out.attribute("ice-lite") is None
    assert out.media[0].lines == [("a", "sendrecv"), ("a", "rtcp:30001")]


def test_the_origin_address_changes_only_when_asked() -> None:
    kept = SessionDescription.parse(anchor(phone_offer(), RELAY, [30000]))
    assert kept.origin.address == "192.168.1.10"
    replaced = SessionDescription.parse(anchor(phone_offer(), RELAY, [30000], replace_origin=True))
    assert replaced.origin.address == RELAY
    assert replaced.origin.sess_version == kept.origin.sess_version


def test_an_ipv6_relay_address_is_written_as_ip6() -> None:
    out = SessionDescription.parse(anchor(phone_offer(), "2001:db8::1", [30000]))
    assert str(out.connection) == "IN IP6 2001:db8::1"
