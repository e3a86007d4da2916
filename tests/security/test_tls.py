"""TLS attacks on the wire (issue 16) against a real ``sipline proxy`` listening on
UDP and TLS: connections that never handshake, cleartext SIP on the TLS port, a
peer's address with the wrong certificate, a sips call that would leave over UDP."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.proxystack import HOST
from sipline.net.testcerts import Authority
from sipline.sip.message import Request, Response, parse_message
from tests.security.net_proxy import RunningProxy, running_proxy
from tests.security.proxy_wire import Sock

pytestmark = pytest.mark.e2e

READ_TIMEOUT = 1.0
PER_IP = 4


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Authority, Authority]:
    return Authority.create(tmp_path, "our-ca"), Authority.create(tmp_path, "peer-ca")


@pytest.fixture
def proxy(tmp_path: Path, pki: tuple[Authority, Authority]) -> Iterator[tuple[RunningProxy, Sock]]:
    ours, theirs = pki
    cert = ours.issue("proxy", dns=["example.com"], ips=[HOST])
    b2bua = Sock()  # where off-net calls would go, over UDP
    peer = {"name": "acr", "identity": "acr.sipline.example", "ca": str(theirs.certificate),
            "hosts": ["127.0.0.9"]}  # fmt: skip
    with running_proxy(
        tmp_path,
        SIP__TRANSPORTS='["udp", "tls"]',
        TLS__CERTIFICATE=str(cert.certificate),
        TLS__KEY=str(cert.key),
        TLS__PEERS=json.dumps([peer]),
        LIMITS__TCP_MAX_CONNECTIONS_PER_IP=str(PER_IP),
        LIMITS__TCP_READ_TIMEOUT=str(READ_TIMEOUT),
        PROXY__B2BUA=json.dumps([f"{HOST}:{b2bua.port}"]),
        PROXY__TRUSTED='["tls:acr"]',
        PROXY__MEDIA_RELAY="",
    ) as running:
        try:
            yield running, b2bua
        finally:
            b2bua.close()


def client(ca: Authority, cert: object = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.certificate))
    if cert is not None:
        context.load_cert_chain(str(cert.certificate), str(cert.key))  # type: ignore[attr-defined]
    return context


class TlsPhone(Sock):
    """A phone over TLS: Sock's requests and digest answers on one TLS connection."""

    def __init__(self, port: int, context: ssl.SSLContext, source: str = HOST) -> None:
        raw = socket.create_connection((HOST, port), timeout=3, source_address=(source, 0))
        self.stream = context.wrap_socket(raw, server_hostname="example.com")
        self.port = self.stream.getsockname()[1]
        self.buffer = b""

    def close(self) -> None:
        self.stream.close()

    def send(self, data: bytes | Request | Response, dest: tuple[str, int]) -> None:
        text = bytes(data).replace(b"SIP/2.0/UDP ", b"SIP/2.0/TLS ")
        self.stream.sendall(text)

    def receive(self, timeout: float = 3.0) -> Request | Response:
        self.stream.settimeout(timeout)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._read()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), b"0"))  # fmt: skip
        while len(rest) < length:
            rest += self._read()
        self.buffer = rest[length:]
        return parse_message(head + b"\r\n\r\n" + rest[:length], stream=True)

    def _read(self) -> bytes:
        data = self.stream.recv(65535)
        if not data:
            raise ConnectionError("closed")
        return data


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(100) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def test_connections_that_never_handshake_are_bounded_per_address_and_closed_in_time(
    proxy: tuple[RunningProxy, Sock], pki: tuple[Authority, Authority]
) -> None:
    running, _ = proxy
    tls_port = running.port + 1
    before = running.metric("sipline_tcp_closed_total", reason="tls_handshake")
    per_ip = running.metric("sipline_tcp_closed_total", reason="per_ip")
    idle = [socket.create_connection((HOST, tls_port), source_address=("127.0.0.5", 0))
            for _ in range(PER_IP)]  # fmt: skip
    time.sleep(0.2)
    extra = socket.create_connection((HOST, tls_port), source_address=("127.0.0.5", 0))
    assert closed_within(extra, 0.5)  # over the limit: closed before any cryptography
    assert running.metric("sipline_tcp_closed_total", reason="per_ip") == per_ip + 1
    phone = TlsPhone(tls_port, client(pki[0]), source="127.0.0.6")  # others still get in
    options = phone.request("OPTIONS", f"sip:{HOST}:{tls_port}", contact=False)
    phone.send(options, (HOST, tls_port))
    assert phone.response().status == 200
    for sock in idle:  # the handshake must end within the read timeout
        assert closed_within(sock, READ_TIMEOUT + 2)
    assert running.metric("sipline_tcp_closed_total", reason="tls_handshake") >= before + PER_IP
    assert "reason=tls_handshake source=tls:127.0.0.5" in running.log_text()
    for sock in (*idle, extra):
        sock.close()
    phone.close()


def test_cleartext_sip_on_the_tls_port_gets_nothing_back(proxy: tuple[RunningProxy, Sock]) -> None:
    running, _ = proxy
    sock = socket.create_connection((HOST, running.port + 1))
    sock.sendall(
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKclear\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    sock.settimeout(3)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except (ConnectionError, TimeoutError):
        pass
    assert b"SIP/2.0" not in data  # a TLS alert at most
    sock.close()


def test_a_peer_address_with_the_wrong_certificate_is_refused_and_a_right_one_trusted(
    proxy: tuple[RunningProxy, Sock], pki: tuple[Authority, Authority]
) -> None:
    running, _ = proxy
    ours, theirs = pki
    tls_port = running.port + 1
    refused = running.metric("sipline_tcp_closed_total", reason="tls_peer")
    wrong = theirs.issue("wrong", dns=["other.sipline.example"])
    for cert in (wrong, None):
        with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
            phone = TlsPhone(tls_port, client(ours, cert), source="127.0.0.9")
            options = phone.request("OPTIONS", f"sip:{HOST}:{tls_port}", contact=False)
            phone.send(options, (HOST, tls_port))
            phone.response()
    assert running.metric("sipline_tcp_closed_total", reason="tls_peer") == refused + 2
    assert "reason=tls_peer source=tls:127.0.0.9" in running.log_text()
    # The peer itself (from its host, with its certificate: trusted as tls:acr) is
    # believed: its INVITE is routed without a challenge.
    right = theirs.issue("acr", dns=["acr.sipline.example"])
    acr = TlsPhone(tls_port, client(ours, right), source="127.0.0.9")
    invite = acr.request("INVITE", "sip:+15550001@example.com", contact=False)
    acr.send(invite, (HOST, tls_port))
    first = acr.receive()
    assert isinstance(first, Response) and first.status not in (401, 407), first.status
    acr.close()
    # Elsewhere, the same certificate proves nothing: the peer is known at its hosts only.
    elsewhere = TlsPhone(tls_port, client(ours, right), source="127.0.0.10")
    elsewhere.send(acr.request("INVITE", "sip:+15550001@example.com", contact=False), ("", 0))
    assert elsewhere.response().status == 407
    elsewhere.close()


def test_a_sips_call_over_tls_is_never_sent_on_over_udp(
    proxy: tuple[RunningProxy, Sock], pki: tuple[Authority, Authority]
) -> None:
    running, b2bua = proxy
    tls_port = running.port + 1
    phone = TlsPhone(tls_port, client(pki[0]))
    invite = phone.request("INVITE", "sips:+15550001@example.com")
    phone.send_authenticated(invite, (HOST, tls_port))
    answer = phone.response()
    assert answer.status == 480, (answer.status, answer.reason)
    assert "TLS" in answer.reason
    b2bua.nothing()  # the B2BUA, over UDP, never saw it
    plain = phone.request("INVITE", "sip:+15550002@example.com")
    phone.send_authenticated(plain, (HOST, tls_port))
    forwarded = b2bua.receive()  # a sip: call goes on to the B2BUA as before
    assert isinstance(forwarded, Request) and forwarded.method == "INVITE"
    phone.close()
