"""A node bound to ``::`` serves IPv4 peers as IPv4 (issue 10): Via received and
rport, the guard's counts and bans see 127.0.0.1, never ::ffff:127.0.0.1.
This machine's loopback has ::1 (``ip -6 addr show lo``)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sipline.config import Settings
from sipline.net.node import MinimalHandler, Node
from sipline.net.ports import free_port
from sipline.sip.address import Address
from sipline.sip.message import Response, parse_message
from tests.support import on_uvloop, until


class Recording(MinimalHandler):
    def __init__(self) -> None:
        super().__init__("sipline-test")
        self.sources: list[Address] = []

    def on_request(self, node: Node, request: Any, txn: Any, source: Address) -> None:
        self.sources.append(source)
        super().on_request(node, request, txn, source)


@asynccontextmanager
async def node_on_any(**limits: Any) -> AsyncIterator[tuple[Node, Recording]]:
    settings = Settings(
        node={"name": "dual", "drain_timeout": 0.1},
        sip={"host": "::", "port": free_port(), "advertised_host": "127.0.0.1"},
        limits=limits,
    )
    handler = Recording()
    node = Node(settings, handler)
    await node.start()
    try:
        yield node, handler
    finally:
        await node.stop()


def options(sent_by: str, transport: str = "UDP", branch: str = "z9hG4bKdual") -> bytes:
    return (
        f"OPTIONS sip:node@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by};branch={branch};rport\r\n"
        f"From: <sip:a@example.com>;tag=1\r\nTo: <sip:node@127.0.0.1>\r\n"
        f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.replies.append(data)


async def ask(host: str, port: int, data: bytes) -> tuple[Response, tuple]:
    """Send ``data`` from ``host`` to ``host:port``; the answer and where it was sent from."""
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(Peer, local_addr=(host, 0))
    try:
        transport.sendto(data, (host, port))
        await until(lambda: peer.replies)
        return parse_message(peer.replies[0]), transport.get_extra_info("sockname")  # type: ignore[return-value]
    finally:
        transport.close()


@on_uvloop
async def test_an_ipv4_peer_of_a_node_on_any_address_is_seen_and_answered_as_ipv4() -> None:
    async with node_on_any() as (node, handler):
        port = node.local_address("UDP").port
        response, mine = await ask("127.0.0.1", port, options("192.0.2.1:5999"))
        assert response.status == 200
        via = response.headers.get("Via")
        assert f"rport={mine[1]};received=127.0.0.1" in via
        assert handler.sources == [Address("UDP", "127.0.0.1", mine[1])]
        # An IPv6 peer of the same socket is itself.
        response, mine6 = await ask("::1", port, options("[::1]:5999", branch="z9hG4bK6"))
        assert response.status == 200
        assert handler.sources[1] == Address("UDP", "::1", mine6[1])


@on_uvloop
async def test_an_ipv4_peer_over_tcp_to_any_address_is_ipv4() -> None:
    async with node_on_any() as (node, handler):
        port = node.local_address("TCP").port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(options("192.0.2.1:5999", "TCP"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"SIP/2.0 200 ")
        (source,) = handler.sources
        assert source.host == "127.0.0.1" and source.transport == "TCP"
        writer.close()


@on_uvloop
async def test_an_ipv4_flood_on_any_address_bans_the_ipv4_address_alone() -> None:
    async with node_on_any(flood_density=20) as (node, handler):
        port = node.local_address("UDP").port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flooder:
            for n in range(40):
                flooder.sendto(options("127.0.0.1:9", branch=f"z9hG4bKf{n}"), ("127.0.0.1", port))
        dropped = node.metrics.dropped
        await until(lambda: dropped["flood"].value + dropped["banned"].value == 20)
        assert list(node.guard.banned) == ["127.0.0.1"]
        response, _ = await ask("::1", port, options("[::1]:5999"))
        assert response.status == 200
