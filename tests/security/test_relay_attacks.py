"""Attacks on the media relay and its STUN server, on the wire against a real
``sipline relay`` (issue 10).

The relay runs as its own process, its ng port answering 127.0.0.1 only
(``relay.ng_allowed``), STUN on UDP. The phones and the proxy's ng client sit on
127.0.0.1; the attacker is another host, 127.0.0.2 or 127.0.0.3, which
reaches 127.0.0.1 over Linux loopback like any other address. Every wait is
bounded: sockets time out, loops count.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import struct
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun

from bench.serving import stop
from sipline.net.ports import free_port
from sipline.ng.bencode import decode, encode
from tests.conftest import port_range

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SIPLINE = Path(sysconfig.get_path("scripts")) / "sipline"
HOST = "127.0.0.1"
ATTACKER = "127.0.0.3"
STRANGER = "127.0.0.2"
WAIT = 0.5


class Relay:
    """The ``sipline relay`` process: its pid, ng and STUN ports, RTP range and log."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        ng_port: int,
        stun_port: int,
        ports: range,
        log: Path,
    ) -> None:
        self.process = process
        self.ng_port = ng_port
        self.stun_port = stun_port
        self.ports = ports
        self.log = log
        self.idle = 0  # sockets held with no call up (set once it answers)

    def sockets(self) -> int:
        """Sockets the relay process holds open (its ng, its RTP and RTCP ports)."""
        fds = Path(f"/proc/{self.process.pid}/fd")
        count = 0
        for fd in fds.iterdir():
            try:
                count += os.readlink(fd).startswith("socket:")
            except OSError:
                continue  # closed meanwhile
        return count


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    ng_port, stun_port = free_port(), free_port()
    low, high = port_range(pairs=20)
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    env = clean | {
        "SIPLINE_RELAY__NG_PORT": str(ng_port),
        "SIPLINE_RELAY__NG_ALLOWED": f'["{HOST}"]',
        "SIPLINE_RELAY__STUN_PORT": str(stun_port),
        "SIPLINE_RELAY__STUN_TRANSPORTS": '["udp"]',
        "SIPLINE_RELAY__RTP_PORT_MIN": str(low),
        "SIPLINE_RELAY__RTP_PORT_MAX": str(high),
    }
    log = tmp_path_factory.mktemp("relay") / "relay.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(SIPLINE), "relay"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    relay = Relay(process, ng_port, stun_port, range(low, high + 1), log)
    try:
        ng = Ng(ng_port)
        for _ in range(50):  # bounded: 50 pings of 0.2 s
            if process.poll() is not None or ng.ping():
                break
        if process.poll() is not None or not ng.ping():
            pytest.fail(f"sipline relay did not start:\n{log.read_text()}", pytrace=False)
        relay.idle = relay.sockets()  # its ng and STUN sockets, with no call up
        yield relay
    finally:
        stop(process)


class Ng:
    """A blocking ng client on ``host`` (one retransmission)."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.sock = udp(host)
        self.sock.settimeout(0.2)
        self.address = (HOST, port)
        self.prefix = secrets.token_hex(4)  # the relay caches replies by cookie
        self.serial = 0

    def __call__(self, **message: Any) -> dict[str, Any] | None:
        """The reply, or None when none came."""
        self.serial += 1
        cookie = f"{self.prefix}_{self.serial}".encode()
        for _ in range(2):
            self.sock.sendto(cookie + b" " + encode(message), self.address)
            try:
                reply = self.sock.recv(65535)
            except TimeoutError:
                continue
            head, _, body = reply.partition(b" ")
            assert head == cookie
            return decode(body)
        return None

    def ping(self) -> bool:
        reply = self(command="ping")
        return reply is not None and reply.get("result") == "pong"


def udp(host: str = HOST) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def sdp(port: int, media: int = 1) -> str:
    sections = "".join(f"m=audio {port + 2 * n} RTP/AVP 0\r\n" for n in range(media))
    return f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n{sections}"


def port_of(body: str) -> int:
    match = re.search(r"^m=audio (\d+) ", body, re.M)
    assert match, body
    return int(match[1])


def rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes(160)


def heard(sock: socket.socket, wait: float = WAIT) -> list[bytes]:
    """What ``sock`` receives within ``wait`` seconds."""
    got = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            got.append(sock.recv(2048))
        except TimeoutError:
            break
    return got


def test_an_attacker_spraying_the_ports_neither_latches_nor_hears_the_callee(relay: Relay) -> None:
    ng = Ng(relay.ng_port)
    alice, alice_nat, bob, attacker = udp(), udp(), udp(), udp(ATTACKER)
    sockets = (alice, alice_nat, bob, attacker)
    try:
        ids = {"call-id": "hijack-1", "from-tag": "alice"}
        # What the proxy sends for alice, who called from 127.0.0.1 (received-from).
        offer = ng(
            command="offer", **ids, sdp=sdp(alice.getsockname()[1]),
            **{"received-from": ["IP4", HOST]},
        )  # fmt: skip
        answer = ng(command="answer", **ids, **{"to-tag": "bob"}, sdp=sdp(bob.getsockname()[1]))
        assert offer and answer and offer["result"] == answer["result"] == "ok"
        to_alice_side, to_bob_side = port_of(answer["sdp"]), port_of(offer["sdp"])

        # Before alice sends anything: the attacker sprays every port of the range.
        for port in relay.ports:
            attacker.sendto(rtp(1, 0xBAD), (HOST, port))
        bob.sendto(rtp(1, 0xB0B), (HOST, to_bob_side))
        assert heard(attacker) == []  # no latch: bob's audio still goes to alice's SDP
        assert heard(alice) == [rtp(1, 0xB0B)]
        assert heard(bob, 0.1) == []  # nothing the attacker sent reached bob

        # Alice's RTP comes through her NAT (another port of her host): it latches.
        alice_nat.sendto(rtp(2, 0xA11CE), (HOST, to_alice_side))
        assert heard(bob) == [rtp(2, 0xA11CE)]

        # After: the attacker sprays again, and bob talks.
        for port in relay.ports:
            attacker.sendto(rtp(3, 0xBAD), (HOST, port))
        assert heard(bob) == []
        for seq in range(5):
            bob.sendto(rtp(4 + seq, 0xB0B), (HOST, to_bob_side))
        assert len(heard(alice_nat)) == 5
        assert heard(attacker) == []

        query = ng(command="query", **{"call-id": "hijack-1"})
        assert query is not None
        alice_rtp = query["tags"]["alice"]["medias"][0]["streams"][0]
        assert alice_rtp["endpoint"]["port"] == alice_nat.getsockname()[1]
        assert alice_rtp["stats"]["packets"] == 1 and alice_rtp["stats"]["errors"] == 2
        assert query["totals"]["RTP"]["errors"] >= 4  # both sprays hit both parties' ports
        ng(command="delete", **ids)
    finally:
        for sock in sockets:
            sock.close()
    assert f"event=rtp_refused source={ATTACKER}:" in relay.log.read_text()


def test_an_offer_of_2400_media_sections_is_refused_and_binds_no_port(relay: Relay) -> None:
    ng = Ng(relay.ng_port)
    for _ in range(100):  # an earlier test's deleted calls close their sockets within turns
        if relay.sockets() == relay.idle:
            break
        time.sleep(0.02)
    before = relay.sockets()
    assert before == relay.idle
    ids = {"call-id": "mlines-1", "from-tag": "a", "received-from": ["IP4", HOST]}
    body = sdp(4000, media=2400)
    assert len(body) < 65_000  # one datagram
    reply = ng(command="offer", **ids, sdp=body)
    assert reply == {"result": "error", "error-reason": "Too many media sections"}
    assert relay.sockets() == before
    assert ng(command="query", **{"call-id": "mlines-1"}) == {
        "result": "error",
        "error-reason": "Unknown call-id",
    }
    # The count moves when ports are bound: one stream takes a pair on each side.
    reply = ng(command="offer", **ids, sdp=sdp(4000))
    assert reply is not None and reply["result"] == "ok"
    assert relay.sockets() == before + 4
    ng(command="delete", **{"call-id": "mlines-1"})
    for _ in range(50):  # the sockets close within a few loop turns
        if relay.sockets() == before:
            break
        time.sleep(0.02)
    assert relay.sockets() == before
    assert "event=offers_refused source=127.0.0.1" in relay.log.read_text()


def test_ng_from_a_host_not_allowed_gets_no_answer(relay: Relay) -> None:
    stranger = Ng(relay.ng_port, host=STRANGER)
    try:
        assert stranger(command="ping") is None
        offer = {"call-id": "stranger-1", "from-tag": "a", "sdp": sdp(4000)}
        assert stranger(command="offer", **offer) is None
    finally:
        stranger.sock.close()
    ng = Ng(relay.ng_port)
    assert ng.ping()  # the relay is fine, and answers its own
    assert ng(command="query", **{"call-id": "stranger-1"}) == {
        "result": "error",
        "error-reason": "Unknown call-id",
    }
    assert f"event=ng_refused source={STRANGER}:" in relay.log.read_text()


def test_stun_answers_a_spoofable_request_with_little_more_than_it_got(relay: Relay) -> None:
    client, elsewhere = udp(), udp(ATTACKER)
    try:
        client.settimeout(2.0)
        binding = bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))  # 20 bytes
        client.sendto(binding, (HOST, relay.stun_port))
        reply = client.recv(2048)
        assert stun.parse_message(reply).attributes == {"XOR-MAPPED-ADDRESS": client.getsockname()}
        assert len(reply) == len(binding) + 12

        allocate = b"\x00\x03" + binding[2:]  # a TURN method this server does not offer
        client.sendto(allocate, (HOST, relay.stun_port))
        assert len(client.recv(2048)) == 40

        # RFC 3489's RESPONSE-ADDRESS would send the reply elsewhere: not understood (420),
        # and the 420 goes to the source.
        target = struct.pack("!BBH4s", 0, 1, elsewhere.getsockname()[1], socket.inet_aton(ATTACKER))
        classic = struct.pack("!HH", 0x0001, 12) + bytes(16) + struct.pack("!HH", 2, 8) + target
        client.sendto(classic, (HOST, relay.stun_port))
        error = stun.parse_message(client.recv(2048))
        assert error.attributes["ERROR-CODE"][0] == 420
        assert heard(elsewhere) == []
    finally:
        client.close()
        elsewhere.close()
