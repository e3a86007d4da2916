"""The ng flags that tell the relay where a party's signalling came from (sipline.ng.anchoring)."""

from __future__ import annotations

from sipline.ng.anchoring import received_from, srtp_flags
from sipline.sip.address import Address


def sdp(host: str) -> bytes:
    return f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n".encode()


def test_the_source_is_always_named_so_its_host_may_latch() -> None:
    flags = received_from(sdp("198.51.100.9"), Address("UDP", "198.51.100.9", 5060))
    assert flags == {"received_from": ["IP4", "198.51.100.9"]}


def test_behind_nat_the_relay_also_sends_to_the_source_until_it_latches() -> None:
    flags = received_from(sdp("192.168.1.10"), Address("UDP", "203.0.113.7", 61000))
    assert flags == {"received_from": ["IP4", "203.0.113.7"], "flags": ["SIP-source-address"]}


def test_an_ipv6_source_is_named_as_such() -> None:
    flags = received_from(b"v=0\r\n", Address("TCP", "2001:db8::7", 5061))
    assert flags == {"received_from": ["IP6", "2001:db8::7"]}  # no c= line: nothing to replace


SAVP = (
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/SAVP 0\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\r\n"
)


def test_an_srtp_offer_asks_the_relay_for_the_other_sides_protocol() -> None:
    assert srtp_flags(SAVP, "RTP/AVP") == {"transport_protocol": "RTP/AVP"}
    assert srtp_flags(SAVP.replace(b"RTP/SAVP", b"RTP/AVP"), "RTP/AVP") == {}
    no_key = SAVP.split(b"a=crypto")[0]  # DTLS-SRTP or nothing we can key: left alone
    assert srtp_flags(no_key, "RTP/AVP") == {}
