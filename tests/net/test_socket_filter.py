"""The kernel's drops of banned sources (sipline.net.socket_filter) on real sockets:
exactly the (address, port) pairs given, IPv4 on IPv4 and dual-stack sockets,
IPv6 datagrams untouched; and a node's flood stops reaching Python."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sipline.config import Settings
from sipline.net import socket_filter
from sipline.net.node import MinimalHandler, Node
from sipline.net.ports import free_port
from tests.support import on_uvloop, until


def udp(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    if ":" in host:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, 0))
    return sock


def received(sock: socket.socket) -> list[bytes]:
    sock.settimeout(0.2)
    got = []
    try:
        while True:
            got.append(sock.recv(100))
    except TimeoutError:
        return got


@pytest.mark.parametrize("listen", ["127.0.0.1", "::"])
def test_only_the_given_sources_are_dropped(listen: str) -> None:
    with udp(listen) as server, udp("127.0.0.5") as banned, udp("127.0.0.5") as same_host:
        with udp("127.0.0.6") as other, udp("::1") as v6:
            port = server.getsockname()[1]
            many = [("127.0.0.9", p) for p in range(1000, 1300)]  # several groups of ports
            pairs = [*many, ("127.0.0.5", banned.getsockname()[1])]
            socket_filter.attach(server, socket_filter.program(pairs, ":" in listen))
            for sock, data in ((banned, b"banned"), (same_host, b"same host"), (other, b"other")):
                sock.sendto(data, ("127.0.0.1", port))
            if ":" in listen:
                v6.sendto(b"ipv6", ("::1", port))
            expected = [b"same host", b"other"] + ([b"ipv6"] if ":" in listen else [])
            assert sorted(received(server)) == sorted(expected)
            socket_filter.detach(server)
            banned.sendto(b"banned again", ("127.0.0.1", port))
            assert received(server) == [b"banned again"]


def test_as_many_sources_are_dropped_as_the_kernel_takes() -> None:
    pairs = [(f"10.0.{n // 256}.{n % 256}", 5060) for n in range(5000)]
    assert len(socket_filter.program(pairs, ipv6_socket=True)) <= socket_filter.MAX_INSTRUCTIONS
    with udp("::") as server, udp("127.0.0.5") as banned:
        taken = socket_filter.drop(server, [("127.0.0.5", banned.getsockname()[1]), *pairs], True)
        assert 1 <= taken <= 5001
        banned.sendto(b"banned", ("127.0.0.1", server.getsockname()[1]))
        assert received(server) == []


@on_uvloop
async def test_a_banned_flood_stops_reaching_the_node() -> None:
    settings = Settings(
        node={"name": "k", "drain_timeout": 0.1}, sip={"port": free_port()}, limits={"flood_density": 10}
    )
    node = Node(settings, MinimalHandler("k"))
    await node.start()
    try:
        port = settings.sip.port
        with udp("127.0.0.7") as flooder:
            flooder.setblocking(False)
            for _ in range(30):
                flooder.sendto(b"OPTIONS sip:x SIP/2.0\r\n\r\n", ("127.0.0.1", port))
            dropped = node.metrics.dropped
            await until(lambda: dropped["flood"].value + dropped["banned"].value == 20)
            await asyncio.sleep(0.1)  # the filter is attached within milliseconds
            for _ in range(1000):
                flooder.sendto(b"OPTIONS sip:x SIP/2.0\r\n\r\n", ("127.0.0.1", port))
            await asyncio.sleep(0.2)
            assert dropped["banned"].value == 19  # the kernel took the rest
    finally:
        await node.stop()
