"""The STUN server on real sockets (relay.stun_server, relay.server): UDP, TCP, RFC 5780's four.

Every server binds port 0 on 127.0.0.1 (and 127.0.0.2) and tells which port
it got; every wait is bounded. The loop is uvloop's, as in ``sipline relay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from prometheus_client import REGISTRY

from relay.server import serve_relay
from relay.stun_server import StunServer
from sipline.config import load_settings
from sipline.net.ports import free_port
from tests.support import on_uvloop, private_node

A1, A2 = "127.0.0.1", "127.0.0.2"
TIMEOUT = 2.0



def binding_request(*, change: int | None = None) -> stun.Message:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    if change is not None:
        request.attributes["CHANGE-REQUEST"] = change
    request.add_fingerprint()
    return request


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Client(asyncio.DatagramProtocol):
    """A UDP socket that keeps what it receives, with the address each came from."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.received.put_nowait((data, addr))

    async def reply(self, timeout: float = TIMEOUT) -> tuple[stun.Message, tuple[str, int]]:
        data, addr = await asyncio.wait_for(self.received.get(), timeout)
        return stun.parse_message(data), addr


@contextlib.asynccontextmanager
async def udp_client() -> AsyncIterator[tuple[asyncio.DatagramTransport, Client]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Client, local_addr=(A1, 0))
    try:
        yield transport, protocol
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def stun_server(discovery: bool = False) -> AsyncIterator[StunServer]:
    """On port 0 of 127.0.0.1; with ``discovery`` also of 127.0.0.2, and a second port."""
    alternate = {"alt_host": A2, "alt_port": 0} if discovery else {}
    server = StunServer(A1, 0, **alternate)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@on_uvloop
async def test_a_udp_binding_request_learns_the_clients_address() -> None:
    async with stun_server() as server, udp_client() as (transport, protocol):
        address = (A1, server.layout.port)
        before = metric("sipline_stun_responses_total", transport="udp", status="200")
        request = binding_request()
        transport.sendto(bytes(request), address)
        response, origin = await protocol.reply()
        assert origin == address
        assert response.transaction_id == request.transaction_id
        assert response.attributes["XOR-MAPPED-ADDRESS"] == transport.get_extra_info("sockname")
        assert metric("sipline_stun_responses_total", transport="udp", status="200") == before + 1


@on_uvloop
async def test_udp_garbage_is_dropped_counted_and_the_server_goes_on() -> None:
    async with stun_server() as server, udp_client() as (transport, protocol):
        address = (A1, server.layout.port)
        before = metric("sipline_stun_dropped_total", reason="malformed")
        for junk in (b"\x00", b"\x00\x01\x00", b"\xff" * 40, b"INVITE sip:a@b SIP/2.0\r\n\r\n"):
            transport.sendto(junk, address)
        transport.sendto(bytes(binding_request()), address)
        response, _ = await protocol.reply()  # the first reply is the Binding's
        assert response.message_class == stun.Class.RESPONSE
        assert metric("sipline_stun_dropped_total", reason="malformed") == before + 4
        assert protocol.received.empty()


@on_uvloop
async def test_a_fault_in_the_core_costs_one_message() -> None:
    async with stun_server() as server, udp_client() as (transport, protocol):
        address = (A1, server.layout.port)
        before = metric("sipline_stun_dropped_total", reason="error")
        handle = server.responder.handle
        faults = iter([ZeroDivisionError, None])

        def flaky(*args: Any, **kwargs: Any) -> Any:
            fault = next(faults)
            if fault is not None:
                raise fault()
            return handle(*args, **kwargs)

        server.responder.handle = flaky  # type: ignore[method-assign]
        transport.sendto(bytes(binding_request()), address)
        transport.sendto(bytes(binding_request()), address)
        response, _ = await protocol.reply()
        assert response.message_class == stun.Class.RESPONSE
        assert metric("sipline_stun_dropped_total", reason="error") == before + 1


@on_uvloop
async def test_tcp_messages_are_framed_by_their_length_whatever_the_segments() -> None:
    async with stun_server() as server:
        reader, writer = await asyncio.open_connection(A1, server.layout.port)
        requests = [binding_request() for _ in range(3)]
        data = b"".join(bytes(r) for r in requests)
        writer.write(data[:30])  # the first message, cut in its attributes
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(data[30:])  # its end, then two whole ones
        for request in requests:
            response = await read_message(reader)
            assert response.transaction_id == request.transaction_id
            assert response.attributes["XOR-MAPPED-ADDRESS"] == writer.get_extra_info("sockname")
        assert metric("sipline_stun_responses_total", transport="tcp", status="200") >= 3
        writer.close()


@on_uvloop
async def test_a_tcp_stream_that_is_not_stun_is_closed_and_counted() -> None:
    async with stun_server() as server:
        before = metric("sipline_stun_dropped_total", reason="framing")
        reader, writer = await asyncio.open_connection(A1, server.layout.port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed by the server
        writer.close()
        assert metric("sipline_stun_dropped_total", reason="framing") == before + 1


@on_uvloop
async def test_tcp_refuses_to_change_address() -> None:
    async with stun_server(discovery=True) as server:
        reader, writer = await asyncio.open_connection(A1, server.layout.port)
        writer.write(bytes(binding_request(change=0x6)))
        response = await read_message(reader)
        assert response.attributes["ERROR-CODE"][0] == 400
        writer.close()


@on_uvloop
async def test_closing_the_server_closes_its_tcp_connections() -> None:
    async with stun_server() as server:
        reader, writer = await asyncio.open_connection(A1, server.layout.port)
        writer.write(bytes(binding_request()))
        await read_message(reader)
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()


@on_uvloop
async def test_idle_tcp_connections_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("relay.stun_server.TCP_IDLE_TIMEOUT", 0.0)
    monkeypatch.setattr("relay.stun_server.TCP_SWEEP_EVERY", 0.05)
    async with stun_server() as server:
        reader, writer = await asyncio.open_connection(A1, server.layout.port)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()


@on_uvloop
async def test_ipv6_clients_get_their_ipv6_address() -> None:
    server = StunServer("::1", 0)
    await server.start()
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Client, local_addr=("::1", 0))
    try:
        transport.sendto(bytes(binding_request()), ("::1", server.layout.port))
        response, _ = await protocol.reply()
        assert response.attributes["XOR-MAPPED-ADDRESS"] == transport.get_extra_info("sockname")[:2]
    finally:
        transport.close()
        await server.close()


async def read_message(reader: asyncio.StreamReader) -> stun.Message:
    header = await asyncio.wait_for(reader.readexactly(20), TIMEOUT)
    body = await asyncio.wait_for(reader.readexactly(int.from_bytes(header[2:4], "big")), TIMEOUT)
    return stun.parse_message(header + body)


# --- RFC 5780: two addresses by two ports --------------------------------------------


@on_uvloop
async def test_behaviour_discovery_listens_on_two_addresses_by_two_ports() -> None:
    async with stun_server(discovery=True) as server:
        layout = server.layout
        assert (layout.host, layout.alt_host) == (A1, A2)
        assert layout.port != layout.alt_port
        for host, port in layout.addresses():
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as probe, pytest.raises(OSError):
                    probe.bind((host, port))  # taken: ours


@pytest.mark.parametrize(
    ("flags", "origin"),
    [(0x0, (A1, "P1")), (0x4, (A2, "P1")), (0x2, (A1, "P2")), (0x6, (A2, "P2"))],
    ids=["none", "change-ip", "change-port", "both"],
)
@on_uvloop
async def test_the_reply_leaves_from_the_address_change_request_asks_for(
    flags: int, origin: tuple[str, str]
) -> None:
    async with stun_server(discovery=True) as server, udp_client() as (transport, protocol):
        ports = {"P1": server.layout.port, "P2": server.layout.alt_port}
        expected = (origin[0], ports[origin[1]])
        transport.sendto(bytes(binding_request(change=flags)), (A1, ports["P1"]))
        response, source = await protocol.reply()
        assert source == expected
        assert response.attributes["RESPONSE-ORIGIN"] == expected
        assert response.attributes["OTHER-ADDRESS"] == (A2, ports["P2"])
        assert response.attributes["XOR-MAPPED-ADDRESS"] == transport.get_extra_info("sockname")


@on_uvloop
async def test_the_other_address_answers_too() -> None:
    async with stun_server(discovery=True) as server, udp_client() as (transport, protocol):
        other = (A2, server.layout.alt_port)
        transport.sendto(bytes(binding_request()), other)
        response, source = await protocol.reply()
        assert source == other
        assert response.attributes["OTHER-ADDRESS"] == (A1, server.layout.port)


# --- the relay node ---------------------------------------------------------------------



@on_uvloop
async def test_serve_relay_runs_the_stun_server_of_the_settings_until_stopped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    private_node(monkeypatch, tmp_path)
    port = free_port()
    monkeypatch.setenv("SIPLINE_RELAY__STUN_PORT", str(port))
    monkeypatch.setenv("SIPLINE_RELAY__NG_PORT", str(free_port()))  # not rtpengine's 2223
    stop = asyncio.Event()
    relay = asyncio.create_task(serve_relay(load_settings(None), stop))
    async with udp_client() as (transport, protocol):
        response = None
        for _ in range(50):  # bounded: until it listens
            transport.sendto(bytes(binding_request()), (A1, port))
            with contextlib.suppress(TimeoutError):
                response, _ = await protocol.reply(timeout=0.1)
                break
        stop.set()
        await asyncio.wait_for(relay, TIMEOUT)
    assert response is not None
    assert response.attributes["XOR-MAPPED-ADDRESS"][0] == A1
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as again:
            again.bind((A1, port))  # released


@on_uvloop
async def test_serve_relay_without_stun_transports_starts_no_stun_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    private_node(monkeypatch, tmp_path)
    monkeypatch.setenv("SIPLINE_RELAY__STUN_TRANSPORTS", "[]")
    monkeypatch.setenv("SIPLINE_RELAY__NG_PORT", str(free_port()))
    stop = asyncio.Event()
    stop.set()
    await serve_relay(load_settings(None), stop)
