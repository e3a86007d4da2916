"""The RTP relay on real sockets (relay.media), and side by side with real rtpengine.

Every relay listens for ng on a free port of 127.0.0.1 and takes its RTP ports
from a range picked at random (a taken port is skipped); every wait is bounded.
The "phones" are plain UDP sockets; a phone behind NAT sends from another
socket than the one its SDP names. The loop is uvloop's, as in ``sipline relay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from prometheus_client import REGISTRY, generate_latest

import relay.media
from relay.media import RelayOptions, RtpRelay
from relay.publish import MemoryQuality, RedisQuality
from relay.server import serve_relay
from sipline.config import ConfigError, load_settings
from sipline.net.ports import free_port
from sipline.ng.bencode import decode, encode
from tests.conftest import port_range
from tests.support import on_uvloop, private_node

HOST = "127.0.0.1"
ELSEWHERE = "127.0.0.2"
WAIT = 2.0
TEST_TIMEOUT = 20.0



def options(**overrides: Any) -> RelayOptions:
    low, high = port_range()
    return RelayOptions(**{"ng_port": 0, "port_min": low, "port_max": high, **overrides})


@contextlib.asynccontextmanager
async def running(opts: RelayOptions, **kwargs: Any) -> Any:
    rtp_relay = RtpRelay(opts, **kwargs)
    await rtp_relay.start()
    try:
        yield rtp_relay
    finally:
        await rtp_relay.close()


class Ng:
    """An ng client on the running loop."""

    def __init__(self, port: int) -> None:
        self.address = (HOST, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.serial = 0

    async def raw(self, data: bytes) -> bytes:
        self.sock.sendto(data, self.address)
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65535), WAIT)

    async def ready(self, attempts: int = 50) -> None:
        """Until the relay answers a ping (at most ``attempts`` tries)."""
        for attempt in range(attempts):
            with contextlib.suppress(TimeoutError):
                cookie = f"ready_{attempt}".encode()
                self.sock.sendto(cookie + b" d7:command4:pinge", self.address)
                loop = asyncio.get_running_loop()
                if (await asyncio.wait_for(loop.sock_recv(self.sock, 65535), 0.2)).startswith(
                    cookie
                ):
                    return
        raise AssertionError(f"no ng reply from {self.address}")

    async def __call__(self, **message: Any) -> dict[str, Any]:
        self.serial += 1
        cookie = f"{os.getpid()}_{self.serial}".encode()
        reply = await self.raw(cookie + b" " + encode(message))
        head, _, body = reply.partition(b" ")
        assert head == cookie
        return decode(body)


class Phone:
    """An RTP/RTCP socket pair; ``nat`` sockets are where it really sends from."""

    def __init__(self) -> None:
        self.rtp, self.rtcp = _pair()
        self.nat_rtp = _socket()
        self.nat_rtcp = _socket()

    @property
    def port(self) -> int:
        return self.rtp.getsockname()[1]

    def sdp(self) -> str:
        return (
            f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {self.port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )

    def close(self) -> None:
        for sock in (self.rtp, self.rtcp, self.nat_rtp, self.nat_rtcp):
            sock.close()


def _socket(port: int = 0, host: str = HOST) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _pair() -> tuple[socket.socket, socket.socket]:
    for _ in range(100):
        port = random.randrange(20_000, 60_000, 2)
        with contextlib.suppress(OSError):
            rtp = _socket(port)
            try:
                return rtp, _socket(port + 1)
            except OSError:
                rtp.close()
    raise RuntimeError("no free even/odd port pair")


@pytest.fixture
def phones() -> Iterator[tuple[Phone, Phone]]:
    a, b = Phone(), Phone()
    yield a, b
    a.close()
    b.close()


def rtp(seq: int, ssrc: int = 0xA) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes(160)


def port_of(body: str) -> int:
    match = re.search(r"^m=audio (\d+) ", body, re.M)
    assert match, body
    return int(match[1])


async def call(ng: Ng, a: Phone, b: Phone, call_id: str = "c1") -> tuple[int, int]:
    """A calls B through the relay; the relay ports A and B send to."""
    ids = {"call-id": call_id, "from-tag": "A"}
    offer = await ng(command="offer", **ids, sdp=a.sdp())
    answer = await ng(command="answer", **ids, **{"to-tag": "B"}, sdp=b.sdp())
    assert offer["result"] == answer["result"] == "ok", (offer, answer)
    return port_of(answer["sdp"]), port_of(offer["sdp"])


async def receive(sock: socket.socket, count: int) -> list[tuple[bytes, tuple[str, int]]]:
    """Up to ``count`` datagrams with their sources, within WAIT (uvloop has no sock_recvfrom)."""
    got = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT):
            while len(got) < count:
                try:
                    got.append(sock.recvfrom(2048))
                except BlockingIOError:
                    await asyncio.sleep(0.005)
    return got


async def nothing_arrives(sock: socket.socket, wait: float = 0.2) -> bool:
    await asyncio.sleep(wait)
    try:
        sock.recvfrom(2048)
    except BlockingIOError:
        return True
    return False


async def send(sock: socket.socket, port: int, packets: list[bytes]) -> None:
    for packet in packets:
        sock.sendto(packet, (HOST, port))
        await asyncio.sleep(0.002)


# -- relaying -------------------------------------------------------------------------------


@on_uvloop
async def test_media_latches_through_nat_and_flows_both_ways(phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    async with running(options()) as rtp_relay:
        ng = Ng(rtp_relay.ng_address[1])
        port_a, port_b = await call(ng, a, b)
        await send(a.nat_rtp, port_a, [rtp(seq) for seq in range(20)])
        got = await receive(b.rtp, 20)
        assert [data for data, _ in got] == [rtp(seq) for seq in range(20)]
        assert {source for _, source in got} == {(HOST, port_b)}  # B hears the port it was given
        await send(b.rtp, port_b, [rtp(seq, ssrc=0xB) for seq in range(10)])
        back = await receive(a.nat_rtp, 10)  # to where A really is, not its SDP port
        assert len(back) == 10 and {source for _, source in back} == {(HOST, port_a)}
        assert await nothing_arrives(a.rtp)
        query = await ng(command="query", **{"call-id": "c1"})
        stream = query["tags"]["A"]["medias"][0]["streams"][0]
        assert stream["endpoint"]["port"] == a.nat_rtp.getsockname()[1]
        assert stream["advertised endpoint"]["port"] == a.port
        assert query["totals"]["RTP"]["packets"] == 30


@on_uvloop
async def test_rtcp_is_relayed_alongside_rtp(phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    async with running(options()) as rtp_relay:
        port_a, port_b = await call(Ng(rtp_relay.ng_address[1]), a, b)
        report = struct.pack("!BBHI", 0x80, 201, 1, 0xA)  # an empty RTCP RR
        a.nat_rtcp.sendto(report, (HOST, port_a + 1))
        [(data, source)] = await receive(b.rtcp, 1)  # b's SDP port + 1 (RFC 3550 §11)
        assert (data, source) == (report, (HOST, port_b + 1))
        b.rtcp.sendto(report, (HOST, port_b + 1))
        [(data, source)] = await receive(a.nat_rtcp, 1)
        assert source == (HOST, port_a + 1)


@on_uvloop
async def test_a_host_the_signalling_did_not_name_neither_latches_nor_hears(
    phones: tuple[Phone, Phone],
) -> None:
    a, b = phones
    intruder = _socket(host=ELSEWHERE)  # another host: 127.0.0.2 reaches 127.0.0.1 on lo
    async with running(options()) as rtp_relay:
        ng = Ng(rtp_relay.ng_address[1])
        port_a, port_b = await call(ng, a, b)
        await send(intruder, port_a, [rtp(0, ssrc=0xBAD)])  # before A: no latch
        await send(a.nat_rtp, port_a, [rtp(1)])
        assert [data for data, _ in await receive(b.rtp, 1)] == [rtp(1)]
        await send(intruder, port_a, [rtp(2, ssrc=0xBAD)])  # after A: no take-over
        assert await nothing_arrives(b.rtp)
        await send(b.rtp, port_b, [rtp(1, ssrc=0xB)])
        assert len(await receive(a.nat_rtp, 1)) == 1 and await nothing_arrives(intruder)
        query = await ng(command="query", **{"call-id": "c1"})
        stream = query["tags"]["A"]["medias"][0]["streams"][0]
        assert stream["stats"]["errors"] == 2 and stream["stats"]["packets"] == 1
        assert stream["endpoint"]["port"] == a.nat_rtp.getsockname()[1]
        assert rtp_relay.metrics.values["rtp_refused"] == 2
    intruder.close()


@on_uvloop
async def test_ng_from_a_host_not_allowed_gets_no_answer_and_is_counted() -> None:
    async with running(options(ng_allowed=("127.0.0.1",))) as rtp_relay:
        port = rtp_relay.ng_address[1]
        await Ng(port).ready()
        stranger = _socket(host=ELSEWHERE)
        try:
            stranger.sendto(b"1 d7:command4:pinge", (HOST, port))
            offer = encode({"command": "offer", "call-id": "x", "from-tag": "A", "sdp": "v=0"})
            stranger.sendto(b"2 " + offer, (HOST, port))
            assert await nothing_arrives(stranger, 0.3)
        finally:
            stranger.close()
        assert rtp_relay.metrics.values["ng_refused"] == 2
        assert rtp_relay.table.get("x") is None
        exported = generate_latest(REGISTRY).decode()
        assert re.search(r"^sipline_relay_ng_refused_total [1-9]", exported, re.M)
        assert re.search(r"^sipline_relay_ports_open ", exported, re.M)


# -- life of a call -------------------------------------------------------------------------


@on_uvloop
async def test_delete_frees_the_ports_and_publishes_the_call_quality(
    phones: tuple[Phone, Phone],
) -> None:
    a, b = phones
    quality = MemoryQuality()
    async with running(options(), quality=quality) as rtp_relay:
        ng = Ng(rtp_relay.ng_address[1])
        port_a, _ = await call(ng, a, b)
        await send(a.nat_rtp, port_a, [rtp(seq) for seq in range(10) if seq != 4])
        await receive(b.rtp, 9)
        reply = await ng(command="delete", **{"call-id": "c1", "from-tag": "A"})
        assert reply["result"] == "ok" and reply["totals"]["RTP"]["packets"] == 9
        assert rtp_relay.plane.open_ports == 0
        await _bindable(port_a)
        published = quality.get("c1")
        assert published is not None and published.state == "deleted"
        [stream] = published.streams
        assert (stream.tag, stream.packets, stream.lost) == ("A", 9, 1)


async def _bindable(port: int) -> None:
    """The closed socket is released within a few loop turns."""
    async with asyncio.timeout(WAIT):
        while True:
            try:
                _socket(port).close()
                return
            except OSError:
                await asyncio.sleep(0.01)


@on_uvloop
async def test_a_call_whose_media_stops_is_torn_down_and_reported(
    phones: tuple[Phone, Phone], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay.media, "SWEEP_INTERVAL", 0.05)
    a, b = phones
    quality = MemoryQuality()
    async with running(options(media_timeout=0.3), quality=quality) as rtp_relay:
        ng = Ng(rtp_relay.ng_address[1])
        port_a, _ = await call(ng, a, b)
        for seq in range(8):  # media keeps the call up past its timeout
            await send(a.nat_rtp, port_a, [rtp(seq)])
            await asyncio.sleep(0.1)
        assert rtp_relay.table.get("c1") is not None
        async with asyncio.timeout(WAIT):
            while rtp_relay.table.get("c1") is not None:
                await asyncio.sleep(0.05)
        published = quality.get("c1")
        assert published is not None and published.state == "timeout"
        assert rtp_relay.plane.open_ports == 0
        reply = await ng(command="query", **{"call-id": "c1"})
        assert reply == {"result": "error", "error-reason": "Unknown call-id"}


@on_uvloop
async def test_limits_and_garbage_get_ng_errors_and_the_relay_goes_on(
    phones: tuple[Phone, Phone],
) -> None:
    a, b = phones
    low, _ = port_range()
    async with running(options(port_min=low, port_max=low + 7, max_sessions=3)) as rtp_relay:
        ng = Ng(rtp_relay.ng_address[1])
        await call(ng, a, b, "c1")
        await call(ng, a, b, "c2")
        reply = await ng(command="offer", **{"call-id": "c3", "from-tag": "A"}, sdp=a.sdp())
        assert reply == {"result": "error", "error-reason": "Ran out of ports"}
        await ng(command="delete", **{"call-id": "c2"})
        await call(ng, a, b, "c3")
        reply = await ng(command="offer", **{"call-id": "c4", "from-tag": "A"}, sdp=a.sdp())
        assert reply["error-reason"] in ("Parallel session limit reached", "Ran out of ports")
        for junk in (b"x y", b"1 d7:command", b"2 " + b"l" * 5000, bytes(range(256))):
            with contextlib.suppress(TimeoutError):
                await ng.raw(junk)
        assert await ng(command="ping") == {"result": "pong"}


# -- configuration ----------------------------------------------------------------------------


def test_by_default_ng_is_on_2223_and_rtp_takes_30000_to_40000() -> None:
    rtp_relay = RtpRelay.from_settings(load_settings(None).relay)
    opts = rtp_relay.options
    assert (opts.ng_host, opts.ng_port, opts.rtp_host) == (HOST, 2223, HOST)
    assert (opts.port_min, opts.port_max, opts.advertise) == (30000, 40000, "")
    assert (opts.media_timeout, opts.max_sessions, opts.latch_window) == (60.0, 10_000, 3.0)
    assert (opts.max_media, opts.max_call_ports, opts.max_source_ports) == (8, 64, 2000)
    assert opts.ng_allowed == ("127.0.0.0/8", "::1")
    assert isinstance(rtp_relay.quality, MemoryQuality)
    assert rtp_relay.ng.address == HOST


def test_the_relay_follows_its_section_and_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "RELAY__RTP_HOST": "0.0.0.0",
        "RELAY__RTP_ADVERTISE": "203.0.113.1",
        "RELAY__LATCH_WINDOW": "1.5",
        "RELAY__NG_ALLOWED": '["10.0.0.0/8"]',
        "RELAY__MAX_MEDIA": "2",
        "REDIS__URL": "redis://127.0.0.1:6379/0",
    }.items():
        monkeypatch.setenv(f"SIPLINE_{key}", value)
    settings = load_settings(None)
    rtp_relay = RtpRelay.from_settings(settings.relay, settings.redis.url)
    assert rtp_relay.ng.address == "203.0.113.1" and rtp_relay.table.window == 1.5
    assert rtp_relay.ng.max_media == 2
    assert "10.1.2.3" in rtp_relay.allowed and "127.0.0.1" not in rtp_relay.allowed
    assert isinstance(rtp_relay.quality, RedisQuality)


@on_uvloop
async def test_sipline_relay_serves_ng_beside_stun(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    private_node(monkeypatch, tmp_path)
    port = free_port()
    monkeypatch.setenv("SIPLINE_RELAY__NG_PORT", str(port))
    monkeypatch.setenv("SIPLINE_RELAY__STUN_TRANSPORTS", "[]")
    stop = asyncio.Event()
    served = asyncio.create_task(serve_relay(load_settings(None), stop))
    try:
        await Ng(port).ready()
    finally:
        stop.set()
        await asyncio.wait_for(served, WAIT)


@pytest.mark.parametrize(
    "env,problem",
    [
        ({"RTP_PORT_MIN": "30001", "RTP_PORT_MAX": "30002"}, "even/odd port pair"),
        ({"RTP_PORT_MIN": "40000", "RTP_PORT_MAX": "30000"}, "even/odd port pair"),
        ({"RTP_HOST": "0.0.0.0"}, "needs rtp_advertise"),
        ({"MAX_SESSIONS": "0"}, "relay.max_sessions"),
        ({"MEDIA_TIMEOUT": "0"}, "relay.media_timeout"),
        ({"NG_PORT": "70000"}, "relay.ng_port"),
        ({"NG_ALLOWED": '["localhost"]'}, "relay.ng_allowed"),
        ({"NG_ALLOWED": "[]"}, "relay.ng_allowed"),
        ({"MAX_MEDIA": "0"}, "relay.max_media"),
        ({"MAX_CALL_PORTS": "2"}, "relay.max_call_ports"),
        ({"LATCH_WINDOW": "-1"}, "relay.latch_window"),
    ],
)
def test_unusable_relay_settings_fail_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(f"SIPLINE_RELAY__{key}", value)
    with pytest.raises(ConfigError, match=problem):
        load_settings(None)


# -- against real rtpengine -------------------------------------------------------------------


async def script(ng: Ng, a: Phone, b: Phone) -> dict[str, Any]:
    """The ng exchanges of a NATed call as the B2BUA makes them, with media both ways."""
    await ng.ready()  # rtpengine may still be starting
    out: dict[str, Any] = {"ping": await ng(command="ping")}
    ids = {"call-id": "compat-1", "from-tag": "A"}
    out["offer"] = await ng(command="offer", **ids, sdp=a.sdp())
    out["answer"] = await ng(command="answer", **ids, **{"to-tag": "B"}, sdp=b.sdp())
    port_a, port_b = port_of(out["answer"]["sdp"]), port_of(out["offer"]["sdp"])
    await send(a.nat_rtp, port_a, [rtp(seq) for seq in range(20)])
    out["b got"] = len(await receive(b.rtp, 20))
    await send(b.rtp, port_b, [rtp(seq, ssrc=0xB) for seq in range(10)])
    out["a got"] = len(await receive(a.nat_rtp, 10))
    await asyncio.sleep(0.1)
    out["query"] = await ng(command="query", **{"call-id": "compat-1"})
    out["list"] = await ng(command="list")
    out["unknown"] = await ng(command="query", **{"call-id": "nope"})
    out["no tag"] = await ng(command="offer", **{"call-id": "x"}, sdp=a.sdp())
    out["no sdp"] = await ng(command="offer", **{"call-id": "x", "from-tag": "A"})
    out["late answer"] = await ng(
        command="answer", **{"call-id": "nope", "from-tag": "A", "to-tag": "B"}, sdp=b.sdp()
    )
    out["delete"] = await ng(command="delete", **ids)
    return out


def summary(out: dict[str, Any], a: Phone) -> dict[str, Any]:
    """What the B2BUA relies on, relay-independent."""
    tags = out["query"]["tags"]
    nat_port = a.nat_rtp.getsockname()[1]

    def stream(tag: str) -> dict[str, Any]:
        return tags[tag]["medias"][0]["streams"][0]

    return {
        "results": {k: v["result"] for k, v in out.items() if isinstance(v, dict)},
        "errors": {
            k: out[k]["error-reason"] for k in ("unknown", "no tag", "no sdp", "late answer")
        },
        "media": (out["b got"], out["a got"]),
        "sdp": [_anchored(out[k]["sdp"]) for k in ("offer", "answer")],
        "tags": sorted(tags),
        "A latched": stream("A")["endpoint"]["port"] == nat_port,
        "packets": {tag: stream(tag)["stats"]["packets"] for tag in ("A", "B")},
        "stream keys": {k for k in stream("A") if k in _STREAM_KEYS},
        "stats keys": {k for k in stream("A")["stats"] if k in ("packets", "bytes", "errors")},
        "totals": out["query"]["totals"]["RTP"]["packets"],
        "list": out["list"]["calls"],
        "deleted totals": out["delete"].get("totals", {}).get("RTP", {}).get("packets"),
    }


_STREAM_KEYS = {"local port", "endpoint", "advertised endpoint", "stats", "flags", "last packet"}


def _anchored(body: str) -> tuple[bool, bool, bool]:
    port = port_of(body)
    rtcp = re.search(r"^a=rtcp:(\d+)", body, re.M)
    return (f"c=IN IP4 {HOST}\r\n" in body, port % 2 == 0, bool(rtcp) and int(rtcp[1]) == port + 1)


def test_our_replies_match_real_rtpengine_s_where_the_b2bua_looks(rtpengine: int) -> None:
    outputs = {}

    async def both() -> None:
        for name in ("rtpengine", "sipline"):
            a, b = Phone(), Phone()
            try:
                if name == "rtpengine":
                    outputs[name] = summary(await script(Ng(rtpengine), a, b), a)
                else:
                    async with running(options()) as ours:
                        outputs[name] = summary(await script(Ng(ours.ng_address[1]), a, b), a)
            finally:
                a.close()
                b.close()

    uvloop.run(asyncio.wait_for(both(), TEST_TIMEOUT))
    theirs, ours = outputs["rtpengine"], outputs["sipline"]
    assert theirs["media"] == (20, 10) and theirs["A latched"]  # the reference behaves
    assert ours == theirs
