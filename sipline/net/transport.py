"""UDP and TCP endpoints: bytes on the wire to framed SIP messages and back.

The endpoints know framing (a datagram is one message; a stream is framed by
Content-Length, RFC 3261 §18.3) and connections, nothing more: every framed
message goes to a ``Sink`` with its source ``Address``, and whatever cannot be
taken (too large, unframeable) goes to ``Sink.message_refused`` with the status
that would answer it, for the sink to answer or drop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from typing import Protocol

from sipline.logs import event
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.message import find_message_end

log = logging.getLogger("sipline.net.transport")

UDP = "UDP"
TCP = "TCP"
CONNECT_TIMEOUT = 10.0
UDP_BUFFER_BYTES = 4 * 1024 * 1024


def udp_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port`` with large buffers: bursts (and a GC
    pause) overflow the default ~200 KB, and lost datagrams come back as
    retransmissions that add load. The kernel caps the size at
    net.core.rmem_max / wmem_max."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER_BYTES)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
TOO_LARGE = (513, "Message Too Large")
_PING = b"\r\n\r\n"  # RFC 5626 §3.5.1 keepalive ping; the pong is one CRLF
_PONG = b"\r\n"
_CRLF_BYTES = (13, 10)


class Sink(Protocol):
    """Where endpoints hand what they read."""

    def message_received(self, data: bytes, source: Address) -> None: ...

    def message_refused(self, data: bytes, source: Address, status: int, reason: str) -> None:
        """``data`` (at least the head of a message) cannot be taken; answer ``status`` if possible."""


class UdpEndpoint(asyncio.DatagramProtocol):
    """One bound UDP socket."""

    def __init__(self, sink: Sink, max_message_bytes: int) -> None:
        self._received = sink.message_received
        self._refused = sink.message_refused
        self._max = max_message_bytes
        self._transport: asyncio.DatagramTransport | None = None
        self._sendto = None
        self._closed = asyncio.Event()
        self.address: Address | None = None

    @classmethod
    async def bind(cls, sink: Sink, host: str, port: int, max_message_bytes: int) -> UdpEndpoint:
        loop = asyncio.get_running_loop()
        sock = udp_socket(host, port)
        _, endpoint = await loop.create_datagram_endpoint(
            lambda: cls(sink, max_message_bytes), sock=sock
        )
        return endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance checks here.
        self._transport = transport  # type: ignore[assignment]
        self._sendto = transport.sendto
        host, port = transport.get_extra_info("sockname")[:2]
        self.address = Address(UDP, host, port)

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        source = Address(UDP, addr[0], addr[1])
        if len(data) > self._max:
            self._refused(data, source, *TOO_LARGE)
        else:
            self._received(data, source)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier datagrams (port unreachable ...); nothing to undo.
        event(log, "udp_error", logging.DEBUG, error=exc)

    def send(self, data: bytes, dest: Address) -> bool:
        if self._sendto is None:
            return False
        self._sendto(data, (dest.host, dest.port))
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()

    async def close(self) -> None:
        """Close the socket and wait until it is released (a restart can bind it again)."""
        if self._transport is not None:
            self._sendto = None
            self._transport.close()
            await asyncio.wait_for(self._closed.wait(), 1.0)


class TcpConnection(asyncio.Protocol):
    """One TCP connection, accepted or opened; frames its stream by Content-Length."""

    def __init__(self, endpoint: TcpEndpoint, cid: int, peer: tuple[str, int] | None = None) -> None:
        self._endpoint = endpoint
        self.id = cid
        self.peer = peer
        self.source: Address | None = None
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []  # written before the connection is up
        self.active = True  # any traffic since the last idle sweep
        self.idle_since = 0.0
        self.closed = False
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.closed:  # given up on while connecting
            transport.close()
            return
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        if self.peer is None:  # accepted; an opened one keeps the key it was asked for
            self.peer = (host, port)
        self.source = Address(TCP, host, port, self.id)
        self._endpoint._register(self)
        for data in self.pending:
            transport.write(data)
        self.pending.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self._endpoint._forget(self)

    def write(self, data: bytes) -> None:
        self.active = True
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.write(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._endpoint._forget(self)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.active = True
        buffer = self._buffer
        buffer += data
        try:
            start = self._frame(buffer)
        except ParseError as exc:
            self._refuse(buffer, 400, exc.reason)
            return
        if self.closed:
            return
        if start:
            del buffer[:start]
        if len(buffer) > self._endpoint.max_message_bytes:
            self._refuse(buffer, *TOO_LARGE)

    def _frame(self, buffer: bytearray) -> int:
        """Hand every complete message on; return how much of ``buffer`` was used."""
        start = 0
        size = len(buffer)
        limit = self._endpoint.max_message_bytes
        received = self._endpoint.sink_received
        while start < size:
            if buffer[start] in _CRLF_BYTES:
                skipped = self._keepalive(buffer, start, size)
                if skipped is None:
                    break
                start = skipped
                continue
            end = find_message_end(buffer, start)
            if end is None:
                break
            if end - start > limit:
                self._refuse(buffer[start:], *TOO_LARGE)
                break
            received(bytes(buffer[start:end]), self.source)
            start = end
            if self.closed:
                break
        return start

    def _keepalive(self, buffer: bytearray, start: int, size: int) -> int | None:
        """Skip CRLFs before a message (RFC 3261 §7.5), answering a ping with a pong.

        None: what is left may be the first part of a ping, wait for more."""
        if buffer.startswith(_PING, start):
            self.write(_PONG)
            return start + 4
        if size - start < 4 and _PING.startswith(buffer[start:]):
            return None
        return start + 1

    def _refuse(self, data: bytearray, status: int, reason: str) -> None:
        head_end = data.find(b"\r\n\r\n")
        head = bytes(data[: head_end + 4] if head_end >= 0 else data)
        self._endpoint.sink_refused(head, self.source, status, reason)
        self._buffer.clear()
        self.close()


class TcpEndpoint:
    """A TCP listener plus every connection, accepted or opened, by id and by peer."""

    def __init__(self, sink: Sink, max_message_bytes: int, idle_timeout: float) -> None:
        self.sink_received = sink.message_received
        self.sink_refused = sink.message_refused
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.address: Address | None = None
        self.by_id: dict[int, TcpConnection] = {}
        self.by_peer: dict[tuple[str, int], TcpConnection] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._connecting: set[asyncio.Task] = set()
        self._sweep_every = min(1.0, idle_timeout / 2)
        self._next_sweep = 0.0

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: TcpConnection(self, next(self._ids)), host, port, backlog=1024
        )
        sockname = self._server.sockets[0].getsockname()
        self.address = Address(TCP, sockname[0], sockname[1])

    def send(self, data: bytes, dest: Address) -> bool:
        """Write on ``dest.connection`` if alive, else any connection to the peer, else a new one."""
        conn = self.by_id.get(dest.connection) if dest.connection is not None else None
        if conn is not None and conn.peer != (dest.host, dest.port):
            conn = None  # a connection id (from a flow token) reaches only the peer it names
        if conn is None:
            conn = self.by_peer.get((dest.host, dest.port))
            if conn is None:
                conn = self._open(dest.host, dest.port)
        conn.write(data)
        return True

    def _open(self, host: str, port: int) -> TcpConnection:
        conn = TcpConnection(self, next(self._ids), (host, port))
        self.by_id[conn.id] = conn
        self.by_peer[(host, port)] = conn
        task = asyncio.get_running_loop().create_task(self._connect(conn, host, port))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return conn

    async def _connect(self, conn: TcpConnection, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: conn, host, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            event(log, "tcp_connect_failed", logging.WARNING, peer=f"{host}:{port}",
                  dropped=len(conn.pending), error=exc or "timeout")
            conn.pending.clear()
            conn.close()

    def _register(self, conn: TcpConnection) -> None:
        self.by_id[conn.id] = conn
        assert conn.peer is not None
        self.by_peer[conn.peer] = conn

    def _forget(self, conn: TcpConnection) -> None:
        if self.by_id.get(conn.id) is conn:
            del self.by_id[conn.id]
        if conn.peer is not None and self.by_peer.get(conn.peer) is conn:
            del self.by_peer[conn.peer]

    def sweep(self, now: float) -> None:
        """Close connections idle longer than the timeout; cheap to call from every tick."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_every
        for conn in list(self.by_id.values()):
            if conn.active:
                conn.active = False
                conn.idle_since = now
            elif now - conn.idle_since >= self.idle_timeout:
                event(log, "tcp_idle_closed", logging.DEBUG, peer=conn.peer, connection=conn.id)
                conn.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connecting):
            task.cancel()
        for conn in list(self.by_id.values()):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
