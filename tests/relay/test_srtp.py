"""SDES-SRTP bridged by the relay (relay.srtp) on real sockets: a phone speaking SRTP
(keys and packets made with libsrtp through pylibsrtp, as a phone's would be) and
one speaking RTP or SRTP, driven by rtpengine's ng flags."""

from __future__ import annotations

import re
from base64 import b64encode

from pylibsrtp import Policy, Session

from relay.srtp import Crypto, offered, suites
from tests.relay.test_media import (
    HOST,
    Ng,
    Phone,
    _socket,
    nothing_arrives,
    options,
    phones,  # noqa: F401 - the fixture
    port_of,
    receive,
    rtp,
    running,
    send,
)
from tests.support import on_uvloop

KEY = bytes(range(30))  # the phone's master key and salt


def savp(phone: Phone, key: bytes = KEY) -> str:
    line = f"1 AES_CM_128_HMAC_SHA1_80 inline:{b64encode(key).decode()}"
    return (
        f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {phone.port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{line}\r\n"
    )


def sender(key: bytes) -> Session:
    return Session(Policy(key, Policy.SSRC_ANY_OUTBOUND))


def receiver(key: bytes) -> Session:
    return Session(Policy(key, Policy.SSRC_ANY_INBOUND))


def crypto_of(body: str) -> list[Crypto]:
    return offered(re.findall(r"^a=crypto:(.*?)\r?$", body, re.M))


@on_uvloop
async def test_an_srtp_phone_talks_to_an_rtp_one_through_the_relay(phones) -> None:  # noqa: F811
    a, b = phones
    async with running(options()) as relay:
        ng = Ng(relay.ng_address[1])
        ids = {"call-id": "s1", "from-tag": "A"}
        offer = await ng(command="offer", **ids, sdp=savp(a), **{"transport-protocol": "RTP/AVP"})
        assert "RTP/AVP 0" in offer["sdp"] and "a=crypto" not in offer["sdp"]
        answer = await ng(command="answer", **ids, **{"to-tag": "B"}, sdp=b.sdp())
        assert "RTP/SAVP 0" in answer["sdp"]
        [ours] = crypto_of(answer["sdp"])  # the key A decrypts our media with
        assert ours.tag == 1 and ours.key != KEY
        port_a, port_b = port_of(answer["sdp"]), port_of(offer["sdp"])

        phone = sender(KEY)
        await send(a.rtp, port_a, [phone.protect(rtp(seq)) for seq in range(10)])
        got = await receive(b.rtp, 10)
        assert [data for data, _ in got] == [rtp(seq) for seq in range(10)]  # in clear

        await send(b.rtp, port_b, [rtp(seq, ssrc=0xB) for seq in range(5)])
        back = await receive(a.rtp, 5)
        assert len(back) == 5 and all(data != rtp(i, 0xB) for i, (data, _) in enumerate(back))
        decrypt = receiver(ours.key)
        assert [decrypt.unprotect(data) for data, _ in back] == [rtp(s, 0xB) for s in range(5)]


@on_uvloop
async def test_packets_not_keyed_by_the_phone_are_dropped_and_never_latch(phones) -> None:  # noqa: F811
    a, b = phones
    async with running(options()) as relay:
        ng = Ng(relay.ng_address[1])
        ids = {"call-id": "s2", "from-tag": "A"}
        offer = await ng(command="offer", **ids, sdp=savp(a), **{"transport-protocol": "RTP/AVP"})
        answer = await ng(command="answer", **ids, **{"to-tag": "B"}, sdp=b.sdp())
        port_a = port_of(answer["sdp"])
        forger = _socket()  # the same host (allowed by the signalling), another key
        await send(forger, port_a, [sender(bytes(30)).protect(rtp(seq)) for seq in range(5)])
        await send(a.nat_rtp, port_a, [rtp(seq) for seq in range(5)])  # plain RTP
        assert await nothing_arrives(b.rtp)
        phone = sender(KEY)
        packets = [phone.protect(rtp(seq)) for seq in range(5, 8)]
        await send(a.nat_rtp, port_a, packets)
        assert [data for data, _ in await receive(b.rtp, 3)] == [rtp(s) for s in range(5, 8)]
        await send(forger, port_a, packets[:1])  # a replay from elsewhere
        assert await nothing_arrives(b.rtp)
        query = await ng(command="query", **{"call-id": "s2"})
        stream = query["tags"]["A"]["medias"][0]["streams"][0]
        assert stream["endpoint"]["port"] == a.nat_rtp.getsockname()[1]  # the real phone
        assert stream["stats"]["errors"] == 11
        assert port_of(offer["sdp"])


@on_uvloop
async def test_rtp_offered_to_an_srtp_callee_with_our_keys_and_its_answer_keys_its_side(
    phones,  # noqa: F811
) -> None:
    a, b = phones
    async with running(options()) as relay:
        ng = Ng(relay.ng_address[1])
        ids = {"call-id": "s3", "from-tag": "A"}
        flags = {"transport-protocol": "RTP/SAVP", "SDES": ["no-AEAD_AES_256_GCM"]}
        offer = await ng(command="offer", **ids, sdp=a.sdp(), **flags)
        assert "RTP/SAVP 0" in offer["sdp"]
        keys = crypto_of(offer["sdp"])
        assert [k.suite for k in keys] == [
            s for s in suites(None) if s != "AEAD_AES_256_GCM"
        ]
        taken = keys[0]
        b_key = bytes(range(100, 130))
        answer = await ng(command="answer", **ids, **{"to-tag": "B"}, sdp=savp(b, b_key))
        assert "RTP/AVP 0" in answer["sdp"] and "a=crypto" not in answer["sdp"]
        port_a, port_b = port_of(answer["sdp"]), port_of(offer["sdp"])
        await send(a.rtp, port_a, [rtp(seq) for seq in range(4)])
        got = await receive(b.rtp, 4)
        decrypt = receiver(taken.key)
        assert [decrypt.unprotect(data) for data, _ in got] == [rtp(s) for s in range(4)]
        callee = sender(b_key)
        await send(b.rtp, port_b, [callee.protect(rtp(seq, 0xB)) for seq in range(3)])
        assert [data for data, _ in await receive(a.rtp, 3)] == [rtp(s, 0xB) for s in range(3)]


@on_uvloop
async def test_without_transport_protocol_srtp_passes_untouched(phones) -> None:  # noqa: F811
    a, b = phones
    async with running(options()) as relay:
        ng = Ng(relay.ng_address[1])
        ids = {"call-id": "s4", "from-tag": "A"}
        offer = await ng(command="offer", **ids, sdp=savp(a))
        assert "RTP/SAVP 0" in offer["sdp"] and crypto_of(offer["sdp"])[0].key == KEY
        answer = await ng(command="answer", **ids, **{"to-tag": "B"}, sdp=savp(b))
        packet = sender(KEY).protect(rtp(1))
        await send(a.rtp, port_of(answer["sdp"]), [packet])
        assert [data for data, _ in await receive(b.rtp, 1)] == [packet]


def test_sdes_flags_choose_the_suites() -> None:
    assert suites(["off"]) == []
    assert suites(["only-AES_CM_128_HMAC_SHA1_80"]) == ["AES_CM_128_HMAC_SHA1_80"]
    assert "AES_CM_128_HMAC_SHA1_32" not in suites(["no-AES_CM_128_HMAC_SHA1_32"])


def test_crypto_lines_we_cannot_use_are_ignored() -> None:
    good = f"1 AES_CM_128_HMAC_SHA1_80 inline:{b64encode(KEY).decode()}|2^20"
    assert Crypto.parse(good) == Crypto(1, "AES_CM_128_HMAC_SHA1_80", KEY)
    for value in (
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{b64encode(KEY).decode()}|2^20|1:4",  # an MKI
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{b64encode(KEY[:20]).decode()}",  # too short
        f"1 F8_128_HMAC_SHA1_80 inline:{b64encode(KEY).decode()}",  # another suite
        "x AES_CM_128_HMAC_SHA1_80 inline:!!!",
    ):
        assert Crypto.parse(value) is None
