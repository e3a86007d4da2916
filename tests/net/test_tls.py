"""SIP over TLS on a real node (uvloop, 127.0.0.1), spoken to by Python's ssl client:
listeners, start-up refusals naming the key, certificates replaced while running,
peers known by their certificate, connections we open verifying the server."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from sipline.config import ConfigError, Settings
from sipline.net.node import MinimalHandler, Node
from sipline.net.ports import free_port
from sipline.net.testcerts import Authority
from sipline.peers import CERTIFIED, TrustedPeers
from sipline.sip.address import Address
from sipline.sip.message import Request, Response, parse_message
from tests.net.test_node import counter, request
from tests.support import on_uvloop, until

HOST = "127.0.0.1"


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path, "test-ca")


def settings(ca: Authority, **tls: Any) -> Settings:
    server = ca.issue("node", dns=["node.example.com"], ips=[HOST])
    port = free_port(span=2)  # TLS listens on port + 1
    return Settings(
        node={"name": "tls-test", "drain_timeout": 0.1},
        sip={"host": HOST, "port": port, "transports": ["udp", "tls"], "server_header": "t"},
        tls={"certificate": str(server.certificate), "key": str(server.key), **tls},
    )


@asynccontextmanager
async def running(config: Settings, handler: Any = None) -> AsyncIterator[Node]:
    node = Node(config, handler or MinimalHandler("t"))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def client_context(ca: Authority, cert: Any = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.certificate))
    if cert is not None:
        context.load_cert_chain(str(cert.certificate), str(cert.key))
    return context


async def exchange(port: int, context: ssl.SSLContext, data: bytes) -> bytes:
    """Send ``data`` over a new TLS connection; what comes back (the head of one message)."""
    reader, writer = await asyncio.open_connection(
        HOST, port, ssl=context, server_hostname="node.example.com"
    )
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3.0)
    finally:
        writer.close()


@on_uvloop
async def test_options_over_tls_on_port_plus_one_is_answered_on_its_connection(
    ca: Authority,
) -> None:
    config = settings(ca)
    async with running(config) as node:
        address = node.local_address("TLS")
        assert address.port == config.sip.port + 1 and address.transport == "TLS"
        answer = await exchange(address.port, client_context(ca), request(transport="TLS"))
        assert answer.startswith(b"SIP/2.0 200")
        assert counter("sipline_sip_messages", direction="in", transport="tls", kind="request") >= 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@on_uvloop
async def test_tls_below_1_2_is_refused(ca: Authority) -> None:
    async with running(settings(ca)) as node:
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(str(ca.certificate))
        old.maximum_version = ssl.TLSVersion.TLSv1_1  # deprecated: exactly what is refused
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client does offer TLS 1.1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await exchange(node.local_address("TLS").port, old, request(transport="TLS"))


@on_uvloop
async def test_a_missing_file_or_a_key_of_another_certificate_refuses_the_start(
    ca: Authority, tmp_path: Path
) -> None:
    config = settings(ca)
    other = ca.issue("other")
    wrong = config.model_copy(
        update={"tls": config.tls.model_copy(update={"key": str(other.key)})}
    )
    with pytest.raises(ConfigError, match=r"tls\.key = .*does not match the certificate"):
        await Node(wrong, MinimalHandler("t")).start()
    os.unlink(config.tls.certificate)
    with pytest.raises(ConfigError, match=r"tls\.certificate = .*no such file"):
        await Node(config, MinimalHandler("t")).start()


def test_tls_in_transports_without_files_is_refused_naming_the_keys() -> None:
    config = Settings(sip={"transports": ["tls"]})
    with pytest.raises(ConfigError, match=r"tls\.certificate and tls\.key"):
        asyncio.run(Node(config, MinimalHandler("t")).start())


@on_uvloop
async def test_a_certificate_replaced_while_running_is_served_after_sighup(
    ca: Authority, tmp_path: Path
) -> None:
    config = settings(ca, watch_interval=0)
    async with running(config) as node:
        port = node.local_address("TLS").port
        first = await peer_certificate(port, ca)
        renewed = ca.issue("renewed", dns=["node.example.com"], ips=[HOST])
        shutil.copy(renewed.certificate, config.tls.certificate)
        shutil.copy(renewed.key, config.tls.key)
        done = counter("sipline_tls_reloads", outcome="ok")
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: counter("sipline_tls_reloads", outcome="ok") > done)
        second = await peer_certificate(port, ca)
        assert first != second
        assert (await exchange(port, client_context(ca), request(transport="TLS"))).startswith(
            b"SIP/2.0 200"
        )


@on_uvloop
async def test_a_renewal_caught_half_written_keeps_the_certificate_in_use(
    ca: Authority,
) -> None:
    config = settings(ca, watch_interval=0.05)
    async with running(config) as node:
        port = node.local_address("TLS").port
        before = await peer_certificate(port, ca)
        failed = counter("sipline_tls_reloads", outcome="failed")
        done = counter("sipline_tls_reloads", outcome="ok")
        Path(config.tls.key).write_text("-----BEGIN PRIVATE KEY-----\ntruncated")
        await until(lambda: counter("sipline_tls_reloads", outcome="failed") > failed)
        assert await peer_certificate(port, ca) == before
        renewed = ca.issue("renewed", dns=["node.example.com"], ips=[HOST])
        shutil.copy(renewed.key, config.tls.key)
        shutil.copy(renewed.certificate, config.tls.certificate)
        await until(lambda: counter("sipline_tls_reloads", outcome="ok") > done)
        assert await peer_certificate(port, ca) != before


async def peer_certificate(port: int, ca: Authority) -> bytes:
    reader, writer = await asyncio.open_connection(
        HOST, port, ssl=client_context(ca), server_hostname="node.example.com"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return der


class Recording(MinimalHandler):
    def __init__(self, trusted: TrustedPeers) -> None:
        super().__init__("t")
        self.trusted = trusted
        self.sources: list[tuple[Address, bool]] = []

    def trusts(self, source: Address) -> bool:
        return self.trusted.trusts(source)

    def on_request(self, node: Any, request: Request, txn: Any, source: Address) -> None:
        self.sources.append((source, self.trusts(source)))
        super().on_request(node, request, txn, source)


def peer_settings(ca: Authority, carrier_ca: Authority, hosts: list[str]) -> Settings:
    return settings(
        ca,
        peers=[
            {
                "name": "carrier",
                "identity": "sbc.carrier.example",
                "ca": str(carrier_ca.certificate),
                "hosts": hosts,
            }
        ],
    )


@on_uvloop
async def test_a_peer_is_trusted_by_its_certificate_and_a_phone_needs_none(
    ca: Authority, tmp_path: Path
) -> None:
    carrier_ca = Authority.create(tmp_path, "carrier-ca")
    carrier = carrier_ca.issue("carrier", dns=["sbc.carrier.example"])
    handler = Recording(TrustedPeers(["tls:carrier"]))
    async with running(peer_settings(ca, carrier_ca, []), handler) as node:
        port = node.local_address("TLS").port
        answer = await exchange(port, client_context(ca, carrier), request(transport="TLS"))
        assert answer.startswith(b"SIP/2.0 200")
        answer = await exchange(port, client_context(ca), request(transport="TLS"))
        assert answer.startswith(b"SIP/2.0 200")
    assert [trusted for _, trusted in handler.sources] == [True, False]
    assert not CERTIFIED  # forgotten with their connections


@on_uvloop
async def test_a_peer_address_with_the_wrong_certificate_is_refused_and_counted(
    ca: Authority, tmp_path: Path
) -> None:
    carrier_ca = Authority.create(tmp_path, "carrier-ca")
    impostor = carrier_ca.issue("impostor", dns=["sbc.impostor.example"])
    foreign = Authority.create(tmp_path, "foreign-ca").issue("x", dns=["sbc.carrier.example"])
    handler = Recording(TrustedPeers(["tls:carrier"]))
    async with running(peer_settings(ca, carrier_ca, [HOST]), handler) as node:
        port = node.local_address("TLS").port
        refused = counter("sipline_tcp_closed", reason="tls_peer")
        failed = counter("sipline_tcp_closed", reason="tls_handshake")
        for cert in (impostor, None):  # a certificate of another name; none at all
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError, ssl.SSLError)):
                await exchange(port, client_context(ca, cert), request(transport="TLS"))
        # One of a CA the peer's is not: the handshake itself fails.
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError, ssl.SSLError)):
            await exchange(port, client_context(ca, foreign), request(transport="TLS"))
        assert counter("sipline_tcp_closed", reason="tls_peer") == refused + 2
        assert counter("sipline_tcp_closed", reason="tls_handshake") == failed + 1
    assert handler.sources == []


class Upstream(MinimalHandler):
    def __init__(self) -> None:
        super().__init__("t")
        self.responses: list[tuple[Response, Address]] = []

    def on_response(self, node: Any, response: Response, txn: Any, source: Address) -> None:
        self.responses.append((response, source))


@on_uvloop
async def test_a_carrier_is_reached_over_mutual_tls_and_a_wrong_one_never(
    ca: Authority, tmp_path: Path
) -> None:
    carrier_ca = Authority.create(tmp_path, "carrier-ca")
    good = carrier_ca.issue("carrier", dns=["sbc.carrier.example"])
    wrong = carrier_ca.issue("wrong", dns=["sbc.other.example"])
    for cert, answered in ((good, True), (wrong, False)):
        carrier_port = free_port()
        hosts = [f"{HOST}:{carrier_port}"]
        seen: list[Any] = []
        server = await carrier_server(carrier_port, cert, ca, seen)
        upstream = Upstream()
        async with running(peer_settings(ca, carrier_ca, hosts), upstream) as node:
            dest = Address("TLS", HOST, carrier_port)
            sent = parse_message(request(transport="TLS"))
            via = node.local_address("TLS")
            sent.headers.set("Via", f"SIP/2.0/TLS {via.hostport};branch=z9hG4bKmtls{answered}")
            node.send_request(sent, dest)
            if answered:
                await until(lambda u=upstream: bool(u.responses), 3.0)
                assert seen and seen[0] == "node"  # our client certificate reached it
            else:  # the handshake fails: a transport error, our own 503 (RFC 3261 §16.9)
                await until(lambda u=upstream: bool(u.responses), 3.0)
                [(response, _)] = upstream.responses
                assert response.status == 503 and not seen
        server.close()


async def carrier_server(port: int, cert: Any, ca: Authority, seen: list[Any]) -> asyncio.Server:
    """A carrier's TLS server: requires our client certificate, answers 200."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.certificate))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(cert.certificate), str(cert.key))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        seen.append(dict(x[0] for x in peer["subject"])["commonName"])
        head = await reader.readuntil(b"\r\n\r\n")
        message = parse_message(head, stream=True)
        writer.write(message.response(200, to_tag="c1").serialise())
        await writer.drain()
        await asyncio.sleep(1.0)
        writer.close()

    return await asyncio.start_server(serve, HOST, port, ssl=context)
