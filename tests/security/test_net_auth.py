"""Brute force on the wire (issue 10): N failed digest authentications from one
source ban it; every failure and the ban are one log line each, with the
address first, in the form a fail2ban filter matches."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest

from bench.proxystack import HOST
from sipline.config import Settings
from sipline.net.handler import Handler
from sipline.net.node import Node
from sipline.net.ports import free_port
from sipline.sip.address import Address
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response, parse_message
from tests.proxy.phone import authorization, request
from tests.security.net_proxy import running_proxy, udp_from
from tests.support import on_uvloop

pytestmark = pytest.mark.e2e

# The fail2ban filter of the README ("Security"): the address comes before anything
# the sender chose.
FAILREGEX = re.compile(r"^\S+ WARNING sipline\.guard event=auth_failed ip=(?P<host>[0-9a-fA-F.:]+) ")


class WrongPasswords(Handler):
    """Stands in for the digest part: every REGISTER fails authentication."""

    def on_request(self, node: Node, req: Request, txn: object, source: Address) -> None:
        node.guard.auth_failed(source, req.from_.uri.user or "")
        node.respond_stateless(txn, req.response(403, "Forbidden", to_tag=new_tag()))  # type: ignore[arg-type]


def register(sock: socket.socket, cseq: int, credentials: str | None = None) -> Request:
    """alice's REGISTER from ``sock`` (with ``credentials`` in Authorization)."""
    host, port = sock.getsockname()
    return request(
        "REGISTER", "sip:example.com", from_="alice@example.com", to="alice@example.com",
        call_id=f"brute-{port}", cseq=cseq,
        via=f"SIP/2.0/UDP {host}:{port};branch=z9hG4bKb{cseq};rport",
        headers=(("Authorization", credentials),) if credentials else (),
    )  # fmt: skip


@on_uvloop
async def test_failed_authentications_ban_their_source_on_the_wire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", "sipline.guard")
    settings = Settings(
        node={"name": "auth", "drain_timeout": 0.1},
        sip={"host": HOST, "port": free_port()},
        limits={"auth_failures": 5, "auth_window": 60, "auth_ban": 120},
    )
    node = Node(settings, WrongPasswords())
    await node.start()
    loop = asyncio.get_running_loop()
    try:
        with udp_from("127.0.0.7") as brute, udp_from("127.0.0.8") as other:
            for sock in (brute, other):
                sock.setblocking(False)
            answers = []
            for n in range(1, 8):
                brute.sendto(bytes(register(brute, n)), (HOST, settings.sip.port))
                try:
                    answers.append(await asyncio.wait_for(loop.sock_recv(brute, 65535), 0.5))
                except TimeoutError:
                    answers.append(None)
            assert [a is not None for a in answers] == [True] * 5 + [False] * 2
            other.sendto(bytes(register(other, 1)), (HOST, settings.sip.port))
            assert (await asyncio.wait_for(loop.sock_recv(other, 65535), 1)).startswith(b"SIP/2.0 403")
    finally:
        await node.stop()
    assert node.metrics.auth_failures.value == 6 and node.metrics.bans["auth"].value == 1
    lines = [f"2026-01-01T00:00:00.000Z {r.levelname} {r.name} {r.getMessage()}" for r in caplog.records]
    hosts = [m.group("host") for line in lines if (m := FAILREGEX.match(line))]
    assert hosts == ["127.0.0.7"] * 5 + ["127.0.0.8"]
    assert sum("event=banned ip=127.0.0.7 reason=auth seconds=120" in line for line in lines) == 1


def exchange(sock: socket.socket, port: int, data: bytes) -> Response | None:
    sock.sendto(data, (HOST, port))
    try:
        message = parse_message(sock.recv(65535))
    except TimeoutError:
        return None
    assert isinstance(message, Response)
    return message


def test_wrong_passwords_to_the_real_registrar_ban_the_source(tmp_path: Path) -> None:
    with running_proxy(tmp_path, LIMITS__AUTH_FAILURES="3") as proxy, udp_from("127.0.0.9") as sock:
        sock.settimeout(1.0)
        for n in range(1, 4):
            first = register(sock, 2 * n)
            challenge = exchange(sock, proxy.port, bytes(first))
            assert challenge is not None and challenge.status == 401
            wrong = authorization(challenge, first, "alice", "not-the-password")
            answer = exchange(sock, proxy.port, bytes(register(sock, 2 * n + 1, wrong)))
            assert answer is not None and answer.status == 401  # a fresh challenge
        assert exchange(sock, proxy.port, bytes(register(sock, 99))) is None  # banned
        log = proxy.log_text()
        assert len(re.findall(r"event=auth_failed ip=127\.0\.0\.9 ", log)) == 3
        assert "event=banned ip=127.0.0.9 reason=auth" in log
