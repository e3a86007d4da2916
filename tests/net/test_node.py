"""The node in-process on uvloop, spoken to by real UDP and TCP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import REGISTRY

from sipline.config import Settings
from sipline.net.admin import AdminServer
from sipline.net.node import MinimalHandler, Node
from sipline.net.ports import free_port
from sipline.sip.address import Address
from sipline.sip.ids import new_branch
from sipline.sip.message import Headers, Request, Response, parse_message
from sipline.sip.transaction import TransactionLayer
from tests.support import on_uvloop, until

HOST = "127.0.0.1"
QUIET = 0.3  # how long "no answer" is waited for




def make_settings(drain_timeout: float = 0.1, metrics_port: int = 0, **sip: Any) -> Settings:
    return Settings(
        node={"name": "test", "drain_timeout": drain_timeout},
        sip={"host": HOST, "port": free_port(), "server_header": "sipline-test", **sip},
        metrics={"host": HOST, "port": metrics_port},
    )


@asynccontextmanager
async def running(handler: Any = None, layer: Any = None, **options: Any) -> AsyncIterator[Node]:
    node = Node(make_settings(**options), handler or MinimalHandler("sipline-test"), layer=layer)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def request(
    method: str = "OPTIONS",
    port: int = 5999,
    transport: str = "UDP",
    branch: str | None = None,
    call_id: str = "call-1",
    extra: str = "",
) -> bytes:
    return (
        f"{method} sip:node@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {HOST}:{port};branch={branch or new_branch()};rport\r\n"
        f"From: <sip:alice@{HOST}>;tag=a1\r\nTo: <sip:node@{HOST}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_total", labels) or 0.0


class UdpPeer(asyncio.DatagramProtocol):
    """A UDP phone: sends to the node and keeps what comes back."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.transport: Any = None

    @classmethod
    async def open(cls) -> UdpPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(cls, local_addr=(HOST, 0))
        return peer

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.datagrams.append(data)

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    def send(self, node: Node, data: bytes) -> None:
        self.transport.sendto(data, (HOST, node.local_address("UDP").port))

    async def responses(self, count: int = 1) -> list[Response]:
        await until(lambda: len(self.datagrams) >= count)
        return [parse_message(d) for d in self.datagrams]  # type: ignore[misc]

    async def silence(self) -> None:
        await asyncio.sleep(QUIET)
        assert self.datagrams == []


class TcpPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, node: Node) -> TcpPeer:
        return cls(*await asyncio.open_connection(HOST, node.local_address("TCP").port))

    @property
    def port(self) -> int:
        return self.writer.get_extra_info("sockname")[1]

    async def read_message(self) -> Request | Response:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 2)
        message = parse_message(head, stream=True)
        length = message.content_length or 0
        if length:
            message.body = await asyncio.wait_for(self.reader.readexactly(length), 2)
        return message


class Recording(MinimalHandler):
    """The minimal node, keeping what it is given."""

    def __init__(self) -> None:
        super().__init__("sipline-test")
        self.requests: list[Request] = []
        self.responses: list[tuple[Response, Any]] = []
        self.timeouts: list[Any] = []
        self.terminated: list[Any] = []

    def on_request(self, node: Node, request: Request, txn: Any, source: Address) -> None:
        self.requests.append(request)
        super().on_request(node, request, txn, source)

    def on_response(self, node: Node, response: Response, txn: Any, source: Address) -> None:
        self.responses.append((response, txn))

    def on_timeout(self, node: Node, txn: Any) -> None:
        self.timeouts.append(txn)

    def on_terminated(self, node: Node, txn: Any) -> None:
        self.terminated.append(txn)


class Holding(MinimalHandler):
    """Keeps requests with Call-ID "held" unanswered until told."""

    def __init__(self) -> None:
        super().__init__("sipline-test")
        self.held: list[tuple[Any, Request]] = []

    def on_request(self, node: Node, request: Request, txn: Any, source: Address) -> None:
        if request.call_id == "held":
            self.held.append((txn, request))
        else:
            super().on_request(node, request, txn, source)


class Failing(MinimalHandler):
    def on_request(self, node: Node, request: Request, txn: Any, source: Address) -> None:
        if request.method == "MESSAGE":
            raise RuntimeError("role bug")
        super().on_request(node, request, txn, source)


# -- the minimal node ------------------------------------------------------------
@on_uvloop
async def test_options_over_udp_gets_200_with_the_node_capabilities() -> None:
    async with running() as node:
        phone = await UdpPeer.open()
        phone.send(node, request(port=phone.port))
        [ok] = await phone.responses()
        assert (ok.status, ok.reason) == (200, "OK")
        assert "OPTIONS" in ok.headers.get("Allow", "")
        assert ok.headers.get("Accept") == "application/sdp"
        assert "Supported" in ok.headers
        assert ok.headers.get("Server") == "sipline-test"
        assert ok.to.tag and ok.call_id == "call-1"
        assert ok.via.rport == phone.port and ok.via.received == HOST


@on_uvloop
async def test_options_over_tcp_is_answered_on_the_connection_it_came_on() -> None:
    async with running() as node:
        phone = await TcpPeer.connect(node)
        phone.writer.write(request(transport="TCP", port=5999))  # Via port is not ours
        ok = await phone.read_message()
        assert isinstance(ok, Response) and ok.status == 200


@on_uvloop
async def test_other_methods_get_501_and_ack_gets_nothing() -> None:
    async with running() as node:
        phone = await UdpPeer.open()
        phone.send(node, request("MESSAGE", port=phone.port))
        [refused] = await phone.responses()
        assert refused.status == 501
        phone.datagrams.clear()
        phone.send(node, request("ACK", port=phone.port))
        await phone.silence()


@on_uvloop
async def test_cancel_matching_nothing_gets_481() -> None:
    async with running() as node:
        phone = await UdpPeer.open()
        phone.send(node, request("CANCEL", port=phone.port))
        [answer] = await phone.responses()
        assert answer.status == 481


@on_uvloop
async def test_retransmitted_options_is_answered_by_the_transaction_not_the_handler() -> None:
    handler = Recording()
    async with running(handler) as node:
        phone = await UdpPeer.open()
        options = request(port=phone.port)
        phone.send(node, options)
        await phone.responses(1)
        phone.send(node, options)
        first, second = await phone.responses(2)
        assert len(handler.requests) == 1
        assert first == second


# -- bad input ---------------------------------------------------------------------
@on_uvloop
async def test_readable_request_that_fails_to_parse_gets_400_with_the_reason() -> None:
    before = counter("sipline_sip_parse_errors", kind="request")
    async with running() as node:
        phone = await UdpPeer.open()
        phone.send(node, request(port=phone.port).replace(b"Max-Forwards: 70", b"Max-Forwards: many"))
        [bad] = await phone.responses()
        assert (bad.status, bad.reason) == (400, "bad Max-Forwards")
        assert bad.call_id == "call-1" and bad.via.rport == phone.port
    assert counter("sipline_sip_parse_errors", kind="request") == before + 1


@on_uvloop
async def test_malformed_response_is_dropped_and_counted() -> None:
    parse_errors = counter("sipline_sip_parse_errors", kind="response")
    dropped = counter("sipline_sip_dropped", reason="parse_error")
    async with running() as node:
        phone = await UdpPeer.open()
        phone.send(node, b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5999\r\n\r\n")
        await phone.silence()
    assert counter("sipline_sip_parse_errors", kind="response") == parse_errors + 1
    assert counter("sipline_sip_dropped", reason="parse_error") == dropped + 1


def test_a_message_before_every_transport_listens_is_dropped_and_counted() -> None:
    # The UDP socket reads before the TCP listener is up; the handler may need both.
    class Recorder(MinimalHandler):
        def __init__(self) -> None:
            super().__init__("test")
            self.requests: list[Request] = []

        def on_request(self, node: Node, request: Request, txn: Any, source: Address) -> None:
            self.requests.append(request)

    dropped = counter("sipline_sip_dropped", reason="not_started")
    handler = Recorder()
    node = Node(make_settings(), handler)
    node.message_received(request(), Address("UDP", HOST, 5999))
    assert handler.requests == []
    assert counter("sipline_sip_dropped", reason="not_started") == dropped + 1


@on_uvloop
async def test_garbage_on_udp_and_tcp_is_dropped_and_the_node_goes_on() -> None:
    garbage = counter("sipline_sip_parse_errors", kind="garbage")
    async with running() as node:
        phone = await UdpPeer.open()
        phone.send(node, b"\x00\xff\xfe hello")
        phone.send(node, b"OPTIONS sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n")  # cannot be answered
        await phone.silence()
        stream = await TcpPeer.connect(node)
        stream.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + request(transport="TCP"))
        ok = await stream.read_message()
        assert isinstance(ok, Response) and ok.status == 200
        phone.send(node, request(port=phone.port))
        [ok] = await phone.responses()
        assert ok.status == 200
    assert counter("sipline_sip_parse_errors", kind="garbage") >= garbage + 2


@on_uvloop
async def test_request_over_the_size_limit_gets_513() -> None:
    async with running(max_message_bytes=1024) as node:
        phone = await UdpPeer.open()
        big = request(port=phone.port, extra=f"X-Padding: {'x' * 1100}\r\n")
        phone.send(node, big)
        [too_large] = await phone.responses()
        assert (too_large.status, too_large.reason) == (513, "Message Too Large")


@on_uvloop
async def test_tcp_stream_that_cannot_be_taken_is_answered_and_closed() -> None:
    async with running(max_message_bytes=1024) as node:
        too_large = request(transport="TCP", extra=f"X-Padding: {'x' * 1100}\r\n")
        unframeable = request(transport="TCP").replace(b"Content-Length: 0", b"l: many")
        for data, status in ((too_large, 513), (unframeable, 400)):
            stream = await TcpPeer.connect(node)
            stream.writer.write(data)
            answer = await stream.read_message()
            assert isinstance(answer, Response) and answer.status == status
            assert await asyncio.wait_for(stream.reader.read(), 2) == b""


@on_uvloop
async def test_handler_exception_is_answered_500_and_the_node_goes_on() -> None:
    errors = REGISTRY.get_sample_value("sipline_handler_errors_total") or 0.0
    async with running(Failing("sipline-test")) as node:
        phone = await UdpPeer.open()
        phone.send(node, request("MESSAGE", port=phone.port))
        [failed] = await phone.responses()
        assert failed.status == 500
        phone.send(node, request(port=phone.port))
        _, ok = await phone.responses(2)
        assert ok.status == 200
    assert REGISTRY.get_sample_value("sipline_handler_errors_total") == errors + 1


class Ticking(MinimalHandler):
    """Counts the node's ticks; the first one raises."""

    def __init__(self, server_header: str) -> None:
        super().__init__(server_header)
        self.ticks: list[float] = []

    def on_tick(self, node: Any, now: float) -> None:
        self.ticks.append(now)
        if len(self.ticks) == 1:
            raise RuntimeError("a role's timer failed")


@on_uvloop
async def test_the_node_s_one_tick_runs_the_handler_s_timers_until_it_stops() -> None:
    errors = REGISTRY.get_sample_value("sipline_handler_errors_total") or 0.0
    handler = Ticking("sipline-test")
    async with running(handler):
        await until(lambda: len(handler.ticks) >= 3)  # the first raised: counted, ticks go on
    stopped = len(handler.ticks)
    await asyncio.sleep(0.05)
    assert len(handler.ticks) == stopped
    assert handler.ticks == sorted(handler.ticks) and handler.ticks[0] <= time.monotonic()
    assert REGISTRY.get_sample_value("sipline_handler_errors_total") == errors + 1


# -- as a client ---------------------------------------------------------------------
def outgoing_options(node: Node, transport: str) -> Request:
    local = node.local_address(transport)
    headers = Headers()
    headers.add("Via", f"SIP/2.0/{transport} {HOST}:{local.port};branch={new_branch()};rport")
    headers.add("From", f"<sip:node@{HOST}>;tag=n1")
    headers.add("To", "<sip:phone@127.0.0.1>")
    headers.add("Call-ID", "out-1")
    headers.add("CSeq", "1 OPTIONS")
    headers.add("Max-Forwards", "70")
    return Request("OPTIONS", "sip:phone@127.0.0.1", headers)


@on_uvloop
async def test_request_sent_by_the_node_gets_its_response_to_the_handler() -> None:
    handler = Recording()
    async with running(handler) as node:
        phone = await UdpPeer.open()
        txn = node.send_request(outgoing_options(node, "UDP"), Address("UDP", HOST, phone.port))
        await until(lambda: phone.datagrams)
        incoming = parse_message(phone.datagrams[0])
        assert isinstance(incoming, Request)
        phone.send(node, incoming.response(200, to_tag="p1").serialise())
        await until(lambda: handler.responses)
        response, matched = handler.responses[0]
        assert response.status == 200 and matched is txn


@on_uvloop
async def test_request_over_tcp_opens_a_connection_and_the_response_comes_back_on_it() -> None:
    handler = Recording()
    async with running(handler) as node, running(Recording()) as far:
        node.send_request(outgoing_options(node, "TCP"), far.local_address("TCP"))
        await until(lambda: handler.responses)
        assert handler.responses[0][0].status == 200


@on_uvloop
async def test_unanswered_request_times_out_to_the_handler() -> None:
    handler = Recording()
    layer = TransactionLayer(time.monotonic, t1=0.01)  # timer F = 64*T1 = 0.64 s
    async with running(handler, layer=layer) as node:
        silent = await UdpPeer.open()
        txn = node.send_request(outgoing_options(node, "UDP"), Address("UDP", HOST, silent.port))
        await until(lambda: handler.timeouts, timeout=3)
        assert handler.timeouts == [txn] and txn in handler.terminated
        assert len(silent.datagrams) > 1  # timer E retransmitted it meanwhile


# -- start and drain ---------------------------------------------------------------------
@on_uvloop
async def test_start_fails_loudly_on_a_taken_port_and_releases_what_it_bound() -> None:
    settings = make_settings()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, settings.sip.port))
        taken.listen()
        with pytest.raises(OSError):
            await Node(settings, MinimalHandler("x")).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((HOST, settings.sip.port))  # the node's UDP socket is gone



@on_uvloop
async def test_stop_drains_new_requests_get_503_and_open_ones_finish() -> None:
    handler = Holding()
    node = Node(make_settings(drain_timeout=5.0), handler)
    await node.start()
    held = await TcpPeer.connect(node)
    held.writer.write(request(transport="TCP", call_id="held"))
    await until(lambda: handler.held)

    started = time.monotonic()
    stopping = asyncio.create_task(node.stop())
    await until(lambda: node.layer.draining)
    phone = await UdpPeer.open()
    phone.send(node, request(port=phone.port))
    [refused] = await phone.responses()
    assert refused.status == 503

    txn, pending = handler.held[0]
    node.respond(txn, pending.response(200, to_tag="late"))
    answer = await held.read_message()
    assert isinstance(answer, Response) and answer.status == 200
    await asyncio.wait_for(stopping, 2)
    assert time.monotonic() - started < 2  # done when idle, not at the timeout
    assert await asyncio.wait_for(held.reader.read(), 2) == b""  # connections closed


@on_uvloop
async def test_drain_gives_up_on_unfinished_transactions_at_the_timeout() -> None:
    handler = Holding()
    node = Node(make_settings(drain_timeout=0.3), handler)
    await node.start()
    phone = await UdpPeer.open()
    phone.send(node, request(port=phone.port, call_id="held"))
    await until(lambda: handler.held)
    started = time.monotonic()
    await asyncio.wait_for(node.stop(), 2)
    assert 0.3 <= time.monotonic() - started < 1.0


# -- observability ------------------------------------------------------------------------
@on_uvloop
async def test_messages_are_counted_and_served_on_metrics() -> None:
    labels = {"transport": "udp"}
    before_in = counter("sipline_sip_messages", direction="in", kind="request", **labels)
    before_out = counter("sipline_sip_messages", direction="out", kind="response", **labels)
    options = counter("sipline_sip_requests", direction="in", method="OPTIONS")
    ok = counter("sipline_sip_responses", direction="out", code="200")
    admin = AdminServer(HOST, 0)  # what a role's member runs beside its node
    await admin.start()
    try:
        async with running() as node:
            phone = await UdpPeer.open()
            for _ in range(3):
                phone.send(node, request(port=phone.port))
            await phone.responses(3)
            url = f"http://{admin.address}/metrics"
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read())
    finally:
        await admin.close()
    assert counter("sipline_sip_messages", direction="in", kind="request", **labels) == before_in + 3
    assert counter("sipline_sip_messages", direction="out", kind="response", **labels) == before_out + 3
    assert counter("sipline_sip_requests", direction="in", method="OPTIONS") == options + 3
    assert counter("sipline_sip_responses", direction="out", code="200") == ok + 3
    assert b"sipline_sip_messages_total{" in text


def test_trace_logs_every_message_in_and_out(caplog: pytest.LogCaptureFixture) -> None:
    @on_uvloop
    async def exchange() -> None:
        async with running(trace=True) as node:
            phone = await UdpPeer.open()
            phone.send(node, request(port=phone.port, call_id="traced"))
            await phone.responses()

    with caplog.at_level(logging.INFO, logger="sipline"):
        exchange()
    lines = [r.getMessage() for r in caplog.records if r.name == "sipline.node"]
    assert any("event=sip_in" in line and "traced" in line for line in lines)
    assert any("event=sip_out" in line and "SIP/2.0 200 OK" in line for line in lines)
    assert any("event=request" in line and "method=OPTIONS" in line for line in lines)


async def test_local_address_is_the_advertised_host_when_one_is_set() -> None:
    async with running(advertised_host="192.0.2.7") as node:
        address = node.local_address("UDP")
    assert address.host == "192.0.2.7" and address.port == node.settings.sip.port


@on_uvloop
async def test_a_keepalive_goes_only_on_an_open_connection_of_the_peer() -> None:
    async with running() as node:
        phone = await TcpPeer.connect(node)
        phone.writer.write(request(transport="TCP"))
        await phone.read_message()
        (conn,) = node._tcp.by_id.values()
        peer = conn.source
        assert node.send_keepalive(peer)
        assert await asyncio.wait_for(phone.reader.readexactly(4), 2) == b"\r\n\r\n"
        assert not node.send_keepalive(peer._replace(connection=None))
        assert not node.send_keepalive(peer._replace(connection=10**9))


# -- the edge: validation, limits, addresses ------------------------------------------------------
def invite_with_to(to: str, port: int, branch: str | None = None) -> bytes:
    return request("INVITE", port=port, branch=branch).replace(
        f"To: <sip:node@{HOST}>".encode(), f"To: {to}".encode()
    )


@on_uvloop
async def test_an_invite_whose_to_does_not_parse_gets_one_stateless_400_and_leaves_nothing() -> None:
    handler = Recording()
    before = counter("sipline_sip_parse_errors", kind="request")
    async with running(handler) as node:
        phone = await UdpPeer.open()
        for i in range(3):
            phone.send(node, invite_with_to(f'"Bob <sip:bob@{HOST}>', phone.port, f"z9hG4bKbadto{i}"))
        answers = await phone.responses(3)
        await asyncio.sleep(0.3)  # no 100 Trying after 200 ms, no retransmitted 400
        assert [(a.status, a.reason) for a in answers] == [
            (400, "bad To: unterminated quoted string")
        ] * 3
        assert len(phone.datagrams) == 3
        assert len(node.layer) == 0 and handler.requests == []
    assert counter("sipline_sip_parse_errors", kind="request") == before + 3


@on_uvloop
async def test_a_handler_that_raises_again_and_again_writes_one_traceback_and_counts_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = REGISTRY.get_sample_value("sipline_handler_errors_total") or 0.0
    with caplog.at_level(logging.ERROR, logger="sipline.node"):
        async with running(Failing("sipline-test")) as node:
            phone = await UdpPeer.open()
            for _ in range(20):
                phone.send(node, request("MESSAGE", port=phone.port))
            answers = await phone.responses(20)
            assert {a.status for a in answers} == {500}
            assert len(node.layer) == 0  # each 500 was stateless: no transaction kept
    tracebacks = [r for r in caplog.records if r.exc_info and "handler_error" in r.getMessage()]
    assert len(tracebacks) == 1
    assert REGISTRY.get_sample_value("sipline_handler_errors_total") == errors + 20


@on_uvloop
async def test_over_the_per_source_limit_requests_get_503_and_other_sources_do_not() -> None:
    refused = counter("sipline_sip_refused", reason="source_transaction_limit")
    async with running(max_transactions_per_source=2) as node:
        phone = await UdpPeer.open()
        for _ in range(3):  # answered, each lingers 32 s for timer J
            phone.send(node, request(port=phone.port))
        answers = await phone.responses(3)
        assert sorted(a.status for a in answers) == [200, 200, 503]
        busy = next(a for a in answers if a.status == 503)
        assert busy.headers.get("Retry-After") == "5"
        other = await TcpPeer.connect(node)  # the same IP, another transport: still the same source
        other.writer.write(request(transport="TCP"))
        assert (await other.read_message()).status == 503  # type: ignore[union-attr]
        assert node.layer.from_source(HOST) == 2
    assert counter("sipline_sip_refused", reason="source_transaction_limit") == refused + 2


@on_uvloop
async def test_a_response_from_an_address_the_request_did_not_go_to_is_dropped() -> None:
    handler = Recording()
    wrong = counter("sipline_sip_refused", reason="wrong_source")
    async with running(handler) as node:
        phone, impostor = await UdpPeer.open(), await UdpPeer.open()
        txn = node.send_request(outgoing_options(node, "UDP"), Address("UDP", HOST, phone.port))
        await until(lambda: phone.datagrams)
        forged = parse_message(phone.datagrams[0]).response(200, to_tag="evil")  # type: ignore[union-attr]
        impostor.send(node, forged.serialise())
        await asyncio.sleep(0.1)
        assert handler.responses == []
        phone.send(node, forged.serialise())
        await until(lambda: handler.responses)
        assert handler.responses[0][1] is txn
    assert counter("sipline_sip_refused", reason="wrong_source") == wrong + 1


@on_uvloop
async def test_a_request_the_transport_cannot_send_gets_a_503_to_the_handler_at_once() -> None:
    handler = Recording()
    failed = counter("sipline_sip_dropped", reason="send_failed")
    async with running(handler) as node:
        started = time.monotonic()
        txn = node.send_request(outgoing_options(node, "UDP"), Address("UDP", "2001:db8::7", 5060))
        await until(lambda: handler.responses, timeout=1)
        response, matched = handler.responses[0]
        assert matched is txn and response.status == 503
        assert time.monotonic() - started < 0.5  # not timer F's 32 s
        assert txn in handler.terminated and len(node.layer) == 0
    assert counter("sipline_sip_dropped", reason="send_failed") == failed + 1


@on_uvloop
async def test_a_request_on_a_tcp_connection_that_is_refused_gets_a_503_at_once() -> None:
    handler = Recording()
    closed = free_port()  # nothing listens there: the connect is refused after send returned
    async with running(handler, transports=["udp", "tcp"]) as node:
        started = time.monotonic()
        txn = node.send_request(outgoing_options(node, "TCP"), Address("TCP", HOST, closed))
        await until(lambda: handler.responses, timeout=2)
        [(response, matched)] = handler.responses
        assert matched is txn and response.status == 503
        assert time.monotonic() - started < 1.5  # not timer F's 32 s
        assert txn in handler.terminated and len(node.layer) == 0


@on_uvloop
async def test_a_request_over_a_transport_we_do_not_listen_on_gets_a_503() -> None:
    handler = Recording()
    async with running(handler, transports=["udp"]) as node:
        txn = node.send_request(outgoing_options(node, "UDP"), Address("TCP", HOST, 5999))
        await until(lambda: handler.responses, timeout=1)
        [(response, matched)] = handler.responses
        assert matched is txn and response.status == 503


def test_malformed_requests_are_logged_with_their_source_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    @on_uvloop
    async def flood() -> None:
        async with running() as node:
            phone = await UdpPeer.open()
            for i in range(10):
                phone.send(node, invite_with_to(f"<sip:bob@{HOST}", phone.port, f"z9hG4bKlog{i}"))
            await phone.responses(10)

    with caplog.at_level(logging.INFO, logger="sipline.node"):
        flood()
    lines = [r.getMessage() for r in caplog.records if "event=parse_error" in r.getMessage()]
    assert len(lines) == 1
    assert "kind=request" in lines[0] and f"source=udp:{HOST}:" in lines[0] and "unclosed" in lines[0]
