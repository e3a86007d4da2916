"""A real ``sipline proxy`` process and raw sockets around it, for the attacks of issue 10.

``edge`` starts the proxy (``bench.proxystack.start_proxy``) on a free port
of 127.0.0.1 with its own SQLite
database (subscribers alice, bob, carol), its B2BUA and ACR addresses on
sockets the test holds (``Wire.b2bua``, ``Wire.acr``: nothing should reach
them unless the test says so) and a ``Wire.victim`` socket that nothing
should ever reach. ``Sock`` is a bare UDP socket that speaks SIP by hand;
``Sock.authenticated`` answers the proxy's digest challenge the way a phone
does.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.proxystack import HOST, Phone, RunningProxy, provision, start_proxy
from sipline.sip.message import Request, Response, parse_message
from tests.proxy.phone import authorization

PASSWORDS = {"alice": "alice-Secret1", "bob": "bob-Secret2", "carol": "carol-Secret3"}
QUIET = 0.5  # seconds a socket that must receive nothing is watched
_numbers = itertools.count(1)


class Sock:
    """A UDP socket on 127.0.0.1 that sends SIP by hand and reads what comes."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, port))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes | Request | Response, dest: tuple[str, int]) -> None:
        self.sock.sendto(bytes(data), dest)

    def receive(self, timeout: float = 3.0) -> Request | Response:
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65535)
        return parse_message(data)

    def response(self, timeout: float = 3.0) -> Response:
        """The next final response (a 100 Trying passed over)."""
        while True:
            message = self.receive(timeout)
            assert isinstance(message, Response), message
            if message.status >= 200:
                return message

    def nothing(self, duration: float = QUIET) -> None:
        self.sock.settimeout(duration)
        try:
            data, source = self.sock.recvfrom(65535)
        except TimeoutError:
            return
        raise AssertionError(f"received from {source}: {data[:300]!r}")

    def request(
        self,
        method: str,
        uri: str,
        *,
        user: str = "alice",
        to: str | None = None,
        cseq: int = 1,
        call_id: str | None = None,
        headers: tuple[str, ...] = (),
        contact: bool = True,
    ) -> Request:
        n = next(_numbers)
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bKsec{n}x{cseq};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@example.com>;tag=from{n}",
            f"To: {to or f'<{uri}>'}",
            f"Call-ID: {call_id or f'sec-{n}@{HOST}'}",
            f"CSeq: {cseq} {method}",
            *((f"Contact: <sip:{user}@{HOST}:{self.port}>",) if contact else ()),
            *headers,
            "Content-Length: 0",
        ]
        parsed = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
        assert isinstance(parsed, Request)
        return parsed

    def authenticated(
        self, request: Request, dest: tuple[str, int], user: str = "alice"
    ) -> Response:
        """Send ``request``, answer its challenge as ``user``; the final response."""
        self.send_authenticated(request, dest, user)
        return self.response()

    def send_authenticated(
        self, request: Request, dest: tuple[str, int], user: str = "alice"
    ) -> Request:
        """Send ``request`` and, once challenged, again with ``user``'s credentials
        (as a phone does: a new branch and CSeq); what went the second time."""
        self.send(request, dest)
        challenge = self.response()
        status = challenge.status
        assert status in (401, 407), (status, challenge.reason)
        again = parse_message(bytes(request))
        assert isinstance(again, Request)
        via = again.headers.get("via") or ""
        again.headers.set("Via", via.replace(";rport", "x2;rport"))
        again.headers.set("CSeq", f"{request.cseq.number + 1} {request.method}")
        proxy = status == 407
        credentials = authorization(challenge, again, user, PASSWORDS[user], proxy=proxy)
        again.headers.add("Proxy-Authorization" if proxy else "Authorization", credentials)
        self.send(again, dest)
        return again


@dataclass
class Wire:
    proxy: RunningProxy
    b2bua: Sock
    acr: Sock
    victim: Sock
    socks: list[Sock] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def address(self) -> tuple[str, int]:
        return self.proxy.address

    def sock(self) -> Sock:
        sock = Sock()
        self.socks.append(sock)
        return sock

    def log_text(self) -> str:
        return self.proxy.log_text()

    def registered(self, user: str) -> Sock:
        """A phone that registered ``user`` from its socket."""
        phone = self.sock()
        register = phone.request(
            "REGISTER", "sip:example.com", user=user, to=f"<sip:{user}@example.com>"
        )
        ok = phone.authenticated(register, self.address, user)
        assert ok.status == 200, (ok.status, ok.reason)
        return phone


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Wire]:
    url = f"sqlite:///{tmp_path / 'sipline.db'}"
    asyncio.run(provision(url, [Phone(user, password) for user, password in PASSWORDS.items()]))
    b2bua, acr, victim = Sock(), Sock(), Sock()
    proxy = start_proxy(url, tmp_path, {
        "SIPLINE_LOG__LEVEL": "info",
        "SIPLINE_PROXY__TRUSTED": "[]",
        "SIPLINE_PROXY__B2BUA": json.dumps([f"{HOST}:{b2bua.port}"]),
        "SIPLINE_PROXY__MEDIA_RELAY": "",
        "SIPLINE_ACR__PRIMARY": f"{HOST}:{acr.port}",
        "SIPLINE_SIP__TRANSPORTS": '["udp"]',
    })  # fmt: skip
    wire = Wire(proxy, b2bua, acr, victim)
    try:
        yield wire
    finally:
        proxy.stop()
        for sock in (b2bua, acr, victim, *wire.socks):
            sock.close()
