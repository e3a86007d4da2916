"""The core's edge, attacked on the wire: a real `sipline proxy` process and raw sockets.

Each attack of issue 10 that the SIP core answers for: a Via ``maddr`` or
transport aiming our answers at a victim, a From/To that does not parse, a
single-valued header sent twice, a flood of transactions from one source,
a response forged from another address. The proxy runs as `sipline proxy`
with its own SQLite database on a free port of 127.0.0.1 and /metrics on
another; the attackers, the victim and the peers are sockets on 127.x.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.proxystack import Phone, provision
from bench.proxystack import RunningProxy as Proxy
from bench.proxystack import start_proxy as start_proxy_process
from sipline.sip.message import Response, parse_message
from tests.proxy.phone import authorization

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
QUIET = 0.6  # seconds "nothing more arrives" is waited for (past timer G's first 0.5 s)


@pytest.fixture
def start_proxy(tmp_path: Path, sqlite_url: str) -> Iterator:
    started: list[Proxy] = []

    def start(**settings: str) -> Proxy:
        asyncio.run(provision(sqlite_url, [Phone("alice", "alice-Secret1")]))
        proxy = start_proxy_process(sqlite_url, tmp_path, settings, metrics=True)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.kill()
    for proxy in started:  # whatever a test sent, nothing may have reached the event loop
        text = proxy.log_text()
        assert "Traceback" not in text and "exc=" not in text, text[-3000:]


@pytest.fixture
def proxy(start_proxy) -> Proxy:
    return start_proxy()


class Udp:
    """A UDP socket on 127.x that sends to the proxy and keeps what comes back."""

    def __init__(self, host: str = HOST) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host, self.port = self.sock.getsockname()

    def send(self, proxy: Proxy, data: bytes) -> None:
        self.sock.sendto(data, (HOST, proxy.port))

    def receive(self, timeout: float = 2.0) -> bytes:
        self.sock.settimeout(timeout)
        return self.sock.recv(65535)

    def all(self, quiet: float = QUIET) -> list[bytes]:
        """Everything that arrives until ``quiet`` seconds pass with nothing."""
        got = []
        while True:
            try:
                got.append(self.receive(quiet))
            except TimeoutError:
                return got

    def close(self) -> None:
        self.sock.close()


def request(
    method: str,
    sender: Udp,
    *,
    uri: str = "sip:alice@example.com",
    via: str | None = None,
    to: str = "<sip:alice@example.com>",
    extra: str = "",
    branch: str | None = None,
    cseq: int = 1,
) -> bytes:
    branch = branch or f"z9hG4bK{method.lower()}{time.monotonic_ns()}"
    via = via or f"SIP/2.0/UDP {sender.host}:{sender.port};branch={branch};rport"
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:mallory@evil.example>;tag=m{cseq}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: attack-{branch}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def answer(data: bytes) -> Response:
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def ack_for(invite: bytes, response: Response) -> bytes:
    """The ACK a UAC sends for a non-2xx final: the INVITE's branch, the answer's To."""
    lines = invite.split(b"\r\n")
    out = [lines[0].replace(b"INVITE", b"ACK", 1)]
    for line in lines[1:]:
        if line.startswith(b"To:"):
            line = b"To: " + (response.headers.get("To") or "").encode()
        elif line.startswith(b"CSeq:"):
            line = line.replace(b"INVITE", b"ACK")
        out.append(line)
    return b"\r\n".join(out)


# -- answers go to the source, never where the Via points --------------------------------------------


def test_a_via_maddr_does_not_aim_the_answers_at_a_victim(proxy: Proxy) -> None:
    attacker, victim = Udp(), Udp("127.0.0.2")
    try:
        via = (
            f"SIP/2.0/UDP {victim.host}:{victim.port};maddr={victim.host};ttl=1"
            f";branch=z9hG4bKreflect{time.monotonic_ns()}"
        )
        invite = request("INVITE", attacker, via=via)
        attacker.send(proxy, invite)
        first = answer(attacker.receive())
        assert first.status in (401, 407)  # the stranger is challenged ...
        attacker.send(proxy, ack_for(invite, first))  # ... and a UAC ACKs a failure
        assert attacker.all() == []  # exactly one answer, to the sender
        assert victim.all(quiet=1.0) == []  # and nothing at all to the victim
    finally:
        attacker.close()
        victim.close()


def test_a_tcp_via_on_a_udp_request_neither_changes_transport_nor_opens_a_connection(proxy: Proxy) -> None:
    attacker = Udp()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.2", 0))
    listener.listen()
    listener.settimeout(1.0)
    try:
        host, port = listener.getsockname()
        via = f"SIP/2.0/TCP {host}:{port};branch=z9hG4bKtcp{time.monotonic_ns()}"
        attacker.send(proxy, request("OPTIONS", attacker, uri=f"sip:{HOST}:{proxy.port}", via=via))
        assert answer(attacker.receive()).status == 200  # over UDP, to where it came from
        with pytest.raises(TimeoutError):
            listener.accept()  # and no connection to the host the Via named
    finally:
        attacker.close()
        listener.close()


# -- nothing is done with what does not parse ---------------------------------------------------------


def test_an_invite_whose_to_has_an_unbalanced_quote_gets_one_400_and_leaves_nothing(proxy: Proxy) -> None:
    attacker = Udp()
    try:
        kept = proxy.metric("sipline_sip_transactions")
        errors = proxy.metric("sipline_sip_parse_errors_total", kind="request")
        for i in range(20):
            attacker.send(proxy, request("INVITE", attacker, to='"Bob <sip:alice@example.com>', cseq=i + 1))
        answers = [answer(data) for data in attacker.all()]
        assert [(a.status, a.reason) for a in answers] == [(400, "bad To: unterminated quoted string")] * 20
        assert proxy.metric("sipline_sip_transactions") <= kept  # no transaction made or left
        assert proxy.metric("sipline_sip_parse_errors_total", kind="request") == errors + 20
        assert proxy.metric("sipline_handler_errors_total") == 0
    finally:
        attacker.close()


@pytest.mark.parametrize(
    ("method", "line", "header"),
    [
        ("INVITE", "To: <sip:carol@example.com>", "To"),
        ("INVITE", "From: <sip:alice@example.com>;tag=a", "From"),
        ("OPTIONS", "Call-ID: another", "Call-ID"),
        ("OPTIONS", "CSeq: 2 OPTIONS", "CSeq"),
        ("INVITE", "Max-Forwards: 10", "Max-Forwards"),
    ],
)
def test_a_single_valued_header_sent_twice_gets_400(proxy: Proxy, method: str, line: str, header: str) -> None:
    attacker = Udp()
    try:
        kept = proxy.metric("sipline_sip_transactions")
        attacker.send(proxy, request(method, attacker, extra=f"{line}\r\n"))
        [reply] = [answer(data) for data in attacker.all()]
        assert (reply.status, reply.reason) == (400, f"duplicated {header}")
        assert proxy.metric("sipline_sip_transactions") <= kept
    finally:
        attacker.close()


def test_an_options_to_the_proxy_with_a_bad_from_is_refused_before_it_is_answered(proxy: Proxy) -> None:
    attacker = Udp()
    try:
        data = request("OPTIONS", attacker, uri=f"sip:{HOST}:{proxy.port}")
        attacker.send(proxy, data.replace(b"From: <sip:mallory@evil.example>", b"From: <sip:mallory@evil.example"))
        [reply] = [answer(data) for data in attacker.all()]
        assert (reply.status, reply.reason) == (400, "bad From: unclosed <URI>")
    finally:
        attacker.close()


# -- bounded transactions --------------------------------------------------------------------------------


def test_over_the_per_source_limit_a_source_gets_503_and_others_do_not(start_proxy) -> None:
    # What a stranger sends is answered statelessly; what an authenticated subscriber
    # sends keeps a transaction (a REGISTER's lingers 32 s after its 200): alice's
    # registrations from one source fill its share of the table.
    proxy = start_proxy(SIPLINE_SIP__MAX_TRANSACTIONS_PER_SOURCE="3")
    flood, other = Udp("127.0.0.2"), Udp("127.0.0.3")
    try:
        refused = proxy.metric("sipline_sip_refused_total", reason="source_transaction_limit")
        for n in range(3):
            first = parse_message(register(flood, 2 * n + 1))
            flood.send(proxy, bytes(first))
            challenge = answer(flood.receive())
            assert challenge.status == 401
            credentials = authorization(challenge, first, "alice", "alice-Secret1")
            flood.send(proxy, register(flood, 2 * n + 2, credentials))
            assert answer(flood.receive()).status == 200
        for n in range(7, 9):
            flood.send(proxy, register(flood, n))
        assert [answer(data).status for data in flood.all()] == [503, 503]
        other.send(proxy, register(other, 1))
        assert answer(other.receive()).status == 401
        assert proxy.metric("sipline_sip_refused_total", reason="source_transaction_limit") == refused + 2
        assert "event=refused reason=source_transaction_limit" in proxy.log_text()
    finally:
        flood.close()
        other.close()


def register(sender: Udp, cseq: int, credentials: str | None = None) -> bytes:
    """alice's REGISTER from ``sender`` (a binding of its own per CSeq)."""
    auth = f"Authorization: {credentials}\r\n" if credentials else ""
    return (
        "REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sender.host}:{sender.port};branch=z9hG4bKreg{cseq}x{sender.port};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@example.com>;tag=r{sender.port}\r\n"
        "To: <sip:alice@example.com>\r\n"
        f"Call-ID: cap-{sender.port}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:alice@{sender.host}:{sender.port}>\r\n"
        f"{auth}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


# -- responses only from where the request went -----------------------------------------------------------


def test_a_response_forged_from_another_address_is_ignored(start_proxy) -> None:
    peer, callee, impostor = Udp(), Udp(), Udp("127.0.0.2")
    proxy = start_proxy(SIPLINE_PROXY__TRUSTED=f'["{HOST}:{peer.port}"]')
    try:
        peer.send(proxy, request("OPTIONS", peer, uri=f"sip:bob@{HOST}:{callee.port}"))
        forwarded = parse_message(callee.receive())  # the proxy's client transaction to the callee
        forged = forwarded.response(200, to_tag="forged").serialise()  # type: ignore[union-attr]
        wrong = proxy.metric("sipline_sip_refused_total", reason="wrong_source")
        impostor.sock.sendto(forged, (HOST, proxy.port))  # the right branch, the wrong address
        assert peer.all() == []
        assert proxy.metric("sipline_sip_refused_total", reason="wrong_source") == wrong + 1
        callee.sock.sendto(forwarded.response(200, to_tag="real").serialise(), (HOST, proxy.port))  # type: ignore[union-attr]
        real = answer(peer.receive())
        assert real.status == 200 and real.to.tag == "real"
    finally:
        peer.close()
        callee.close()
        impostor.close()
