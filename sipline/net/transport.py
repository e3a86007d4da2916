"""UDP, TCP and TLS endpoints: bytes on the wire to framed SIP messages and back.

The endpoints know framing (a datagram is one message; a stream is framed by
Content-Length, RFC 3261 §18.3) and connections, nothing more: every framed
message goes to a ``Sink`` with its source ``Address``, and whatever cannot be
taken (too large, unframeable) goes to ``Sink.message_refused`` with the status
that would answer it, for the sink to answer or drop.

A wildcard IPv6 host (``::``) takes IPv4 peers too (one dual-stack socket):
their IPv4-mapped addresses (``::ffff:192.0.2.1``) are given as the IPv4
address everywhere an ``Address`` is made, so Via received/rport, trust and
bans see what an IPv4 socket would, and mapped back when sending.

TCP is bounded for strangers: accepted connections in all and per source IP
(over either the new one is closed at once), a message (and a new
connection's first) must arrive whole within ``read_timeout``, framing scans
only the bytes that arrived since the last look, and only a whole message or
a CRLF ping counts as activity for the idle timeout.

TLS is TCP with an ``ssl.SSLContext`` (RFC 3261 §26.3.1, contexts from
``sipline.net.tls``): an accepted connection is admitted and counted like a
TCP one before any cryptography, then handshaken (``start_tls``) within the
read timeout; a failed handshake, or a certificate that does not prove the
peer its address claims, closes it (counted, logged with its source). A
connection we open verifies the server (SNI and name of its ``[[tls.peers]]``
entry). Connections whose certificate proved a peer are noted in
``sipline.peers.CERTIFIED`` while they are open.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import resource
import socket
import ssl
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sipline.logs import event
from sipline.net import socket_filter
from sipline.net.metrics import NodeMetrics
from sipline.net.tls import Credentials
from sipline.peers import CERTIFIED
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.message import content_length

log = logging.getLogger("sipline.net.transport")

UDP = "UDP"
TCP = "TCP"
TLS = "TLS"
CONNECT_TIMEOUT = 10.0
UDP_BUFFER_BYTES = 4 * 1024 * 1024
MAPPED = "::ffff:"  # an IPv4 peer on a dual-stack IPv6 socket (RFC 4291 §2.5.5.2)
REFUSAL_LOG_EVERY = 1.0  # seconds: at most one line per kind of TCP refusal, with a count
SPARE_FILES = 256  # descriptors beyond the connection limit: database, Redis, logs
TOO_LARGE = (513, "Message Too Large")
_PING = b"\r\n\r\n"  # RFC 5626 §3.5.1 keepalive ping; the pong is one CRLF
_PONG = b"\r\n"
_CRLF_BYTES = (13, 10)


def _socket(host: str, kind: socket.SocketKind) -> socket.socket:
    """A socket of ``host``'s family; an IPv6 one also takes IPv4 peers (not V6ONLY)."""
    if ":" not in host:
        return socket.socket(socket.AF_INET, kind)
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    return sock


def udp_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A UDP socket bound to ``host:port`` with large buffers: bursts (and a GC
    pause) overflow the default ~200 KB, and lost datagrams come back as
    retransmissions that add load. The kernel caps the size at
    net.core.rmem_max / wmem_max. ``reuse_port``: one of the workers' sockets
    on a shared address (SO_REUSEPORT: the kernel spreads sources over them)."""
    sock = _socket(host, socket.SOCK_DGRAM)
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER_BYTES)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def tcp_listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` (asyncio's own makes ``::`` IPv6-only);
    ``reuse_port`` as for ``udp_socket``."""
    sock = _socket(host, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def unmapped(host: str) -> str:
    """``host`` with an IPv4-mapped IPv6 address given as the IPv4 address."""
    return host[7:] if host.startswith(MAPPED) else host


def raise_file_limit(needed: int) -> None:
    """Let the process hold ``needed`` descriptors if the hard limit allows (the
    soft default, 1024, is below the connection limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed or soft == resource.RLIM_INFINITY:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        event(log, "file_limit_low", logging.WARNING, needed=needed, limit=target)


class Sink(Protocol):
    """Where endpoints hand what they read."""

    def message_received(self, data: bytes, source: Address) -> None: ...

    def message_refused(self, data: bytes, source: Address, status: int, reason: str) -> None:
        """``data`` (at least the head of a message) cannot be taken; answer ``status`` if possible."""

    def unsent(self, waiters: list[object], error: str) -> None:
        """A connection we opened never came up: the ``waiters`` given with what was
        written on it meanwhile (RFC 3261 §18.4: a transport error) are told."""


class UdpEndpoint(asyncio.DatagramProtocol):
    """One bound UDP socket."""

    ipv6 = False

    def __init__(self, sink: Sink, max_message_bytes: int) -> None:
        self._received = sink.message_received
        self._refused = sink.message_refused
        self._max = max_message_bytes
        self._transport: asyncio.DatagramTransport | None = None
        self._sendto: Callable[[bytes, tuple[str, int]], None] | None = None
        self._closed = asyncio.Event()
        self.address: Address | None = None

    @classmethod
    async def bind(
        cls, sink: Sink, host: str, port: int, max_message_bytes: int, *, reuse_port: bool = False
    ) -> UdpEndpoint:
        return await cls.adopt(sink, udp_socket(host, port, reuse_port=reuse_port), max_message_bytes)

    @classmethod
    async def adopt(cls, sink: Sink, sock: socket.socket, max_message_bytes: int) -> UdpEndpoint:
        """An endpoint on a socket bound already (a worker's own, from its supervisor)."""
        loop = asyncio.get_running_loop()
        kind = DualStackUdpEndpoint if sock.family == socket.AF_INET6 else cls
        _, endpoint = await loop.create_datagram_endpoint(
            lambda: kind(sink, max_message_bytes), sock=sock
        )
        return endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance checks here.
        self._transport = transport  # type: ignore[assignment]
        self._sendto = cast(asyncio.DatagramTransport, transport).sendto
        host, port = transport.get_extra_info("sockname")[:2]
        self.address = Address(UDP, host, port)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source = Address(UDP, addr[0], addr[1])
        if len(data) > self._max:
            self._refused(data, source, *TOO_LARGE)
        else:
            self._received(data, source)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier datagrams (port unreachable ...); nothing to undo.
        event(log, "udp_error", logging.DEBUG, error=exc)

    def send(self, data: bytes, dest: Address, waiter: object = None) -> bool:
        if self._sendto is None:
            return False
        self._sendto(data, (dest.host, dest.port))
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()

    def drop_sources(self, sources: Collection[tuple[str, int]]) -> int:
        """Have the kernel drop the datagrams of ``sources`` (IPv4 address, UDP port)
        before they take room in the socket's buffer; empty: drop none. How many
        it drops (as many as it takes)."""
        if self._transport is None:
            return 0
        sock = self._transport.get_extra_info("socket")
        if not sources:
            socket_filter.detach(sock)
            return 0
        return socket_filter.drop(sock, sorted(sources), self.ipv6)

    async def close(self) -> None:
        """Close the socket and wait until it is released (a restart can bind it again)."""
        if self._transport is not None:
            self._sendto = None
            self._transport.close()
            await asyncio.wait_for(self._closed.wait(), 1.0)


class DualStackUdpEndpoint(UdpEndpoint):
    """A UDP endpoint on an IPv6 socket: IPv4 peers come and go as IPv4 addresses."""

    ipv6 = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.address is not None
        self.address = self.address._replace(host=unmapped(self.address.host))

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        host = addr[0]
        if host.startswith(MAPPED):
            addr = (host[7:], addr[1])
        super().datagram_received(data, addr)

    def send(self, data: bytes, dest: Address, waiter: object = None) -> bool:
        if self._sendto is None:
            return False
        host = dest.host
        self._sendto(data, (host if ":" in host else MAPPED + host, dest.port))
        return True


class Gate(Protocol):
    """What the TCP endpoint asks the node's guard (sipline.net.guard.Guard) about a peer."""

    def admit(self, source: Address) -> bool: ...

    def trusted(self, source: Address) -> bool: ...

    def key(self, host: str) -> str:
        """What ``host`` is counted by (an IPv6 address: its prefix)."""


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """Bounds on accepted connections (``[limits] tcp_*``)."""

    max_connections: int = 4096
    max_per_ip: int = 64
    read_timeout: float = 20.0

    @classmethod
    def of(cls, limits: object) -> TcpLimits:
        """From a ``LimitsSection``."""
        return cls(
            limits.tcp_max_connections,  # type: ignore[attr-defined]
            limits.tcp_max_connections_per_ip,  # type: ignore[attr-defined]
            limits.tcp_read_timeout,  # type: ignore[attr-defined]
        )


class TcpConnection(asyncio.Protocol):
    """One TCP connection, accepted or opened; frames its stream by Content-Length."""

    def __init__(self, endpoint: TcpEndpoint, cid: int, peer: tuple[str, int] | None = None) -> None:
        self._endpoint = endpoint
        self.id = cid
        self.peer = peer
        self.source: Address | None = None
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []  # written before the connection is up
        self.waiters: list[object] = []  # told if it never comes up (Sink.unsent)
        self.active = True  # a whole message, a ping or a write since the last idle sweep
        self.idle_since = 0.0
        self.closed = False
        self.counted = ""  # an accepted connection: the key its source is counted by
        # When the message being read began (endpoint.now), None between messages.
        self.partial_since: float | None = None
        self._buffer = bytearray()
        self._scan = 0  # where the search for the end of the head goes on
        self._stop = 0  # where the message being read ends, once its head is whole

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.closed:  # given up on while connecting
            transport.close()
            return
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        host = unmapped(host)
        self.source = Address(self._endpoint.transport, host, port, self.id)
        if self.peer is None:  # accepted; an opened one keeps the key it was asked for
            self.peer = (host, port)
            if not self._endpoint._admit(self):
                self.closed = True
                self.transport = None
                transport.abort()  # type: ignore[attr-defined]
                return
        self._endpoint._register(self)
        for data in self.pending:
            transport.write(data)  # type: ignore[attr-defined]
        self.pending.clear()
        self.waiters.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self._endpoint._forget(self)

    def write(self, data: bytes, waiter: object = None) -> None:
        self.active = True
        if self.transport is None:
            self.pending.append(data)
            if waiter is not None:
                self.waiters.append(waiter)
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
            self._scan = max(self._scan - start, 0)
            if self._stop:
                self._stop -= start
        if not buffer:
            self.partial_since = None
            return
        if self.partial_since is None:
            self.partial_since = self._endpoint.now
        if len(buffer) > self._endpoint.max_message_bytes:
            self._refuse(buffer, *TOO_LARGE)

    def _frame(self, buffer: bytearray) -> int:
        """Hand every complete message on; return how much of ``buffer`` was used.

        Only what arrived since the last call is searched for the end of a
        head, and a body is waited for by its length: a message dripped a
        byte at a time costs no more than one sent whole."""
        start = 0
        size = len(buffer)
        endpoint = self._endpoint
        limit = endpoint.max_message_bytes
        received = endpoint.sink_received
        source = self.source
        assert source is not None  # data comes after connection_made
        while start < size:
            stop = self._stop
            if not stop:
                if buffer[start] in _CRLF_BYTES:
                    skipped = self._keepalive(buffer, start, size)
                    if skipped is None:
                        break
                    start = skipped
                    continue
                head = buffer.find(b"\r\n\r\n", max(self._scan, start))
                if head < 0:
                    self._scan = max(size - 3, start)
                    break
                stop = self._stop = head + 4 + content_length(buffer, start, head)
            if stop - start > limit:
                self._refuse(buffer[start:], *TOO_LARGE)
                break
            if stop > size:
                break
            self._stop = 0
            self._scan = stop
            self.active = True
            self.partial_since = None
            received(bytes(buffer[start:stop]), source)
            start = stop
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
        assert self.source is not None  # data comes after connection_made
        self._endpoint.sink_refused(head, self.source, status, reason)
        self._buffer.clear()
        self.close()


class TcpEndpoint:
    """A TCP listener plus every connection, accepted or opened, by id and by peer.

    ``gate`` (the node's guard) admits each accepted connection as it would a
    message, and exempts trusted peers from the per-IP limit."""

    transport = TCP

    def __init__(
        self,
        sink: Sink,
        max_message_bytes: int,
        idle_timeout: float,
        limits: TcpLimits | None = None,
        gate: Gate | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.sink_received = sink.message_received
        self.sink_refused = sink.message_refused
        self.sink_unsent = sink.unsent
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.limits = limits = limits if limits is not None else TcpLimits()
        self.gate = gate
        self.address: Address | None = None
        self.by_id: dict[int, TcpConnection] = {}
        self.by_peer: dict[tuple[str, int], TcpConnection] = {}
        self.accepted = 0  # accepted connections open
        self._per_host: dict[str, int] = {}
        self._closes = (metrics if metrics is not None else NodeMetrics(register=False)).tcp_closed
        self._log_after: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self._sweep_every = min(1.0, idle_timeout / 2, limits.read_timeout / 2)
        self._next_sweep = 0.0
        self.now = time.monotonic()  # as of the last sweep (every tick in a node)

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        raise_file_limit(self.limits.max_connections + SPARE_FILES)
        sock = tcp_listener(host, port, reuse_port=reuse_port)
        try:
            self._server = await loop.create_server(self._connection, sock=sock)
        except BaseException:
            sock.close()
            raise
        sockname = self._server.sockets[0].getsockname()
        self.address = Address(self.transport, unmapped(sockname[0]), sockname[1])

    def _connection(self, peer: tuple[str, int] | None = None) -> TcpConnection:
        return TcpConnection(self, next(self._ids), peer)

    def send(self, data: bytes, dest: Address, waiter: object = None) -> bool:
        """Write on ``dest.connection`` if alive, else any connection to the peer, else a new
        one; ``waiter`` is handed to ``Sink.unsent`` if that new one never comes up."""
        conn = self.by_id.get(dest.connection) if dest.connection is not None else None
        if conn is not None and conn.peer != (dest.host, dest.port):
            conn = None  # a connection id (from a flow token) reaches only the peer it names
        if conn is None:
            conn = self.by_peer.get((dest.host, dest.port))
            if conn is None:
                conn = self._open(dest.host, dest.port)
        conn.write(data, waiter)
        return True

    def _open(self, host: str, port: int) -> TcpConnection:
        conn = self._connection((host, port))
        self.by_id[conn.id] = conn
        self.by_peer[(host, port)] = conn
        task = asyncio.get_running_loop().create_task(self._connect(conn, host, port))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return conn

    async def _connect(self, conn: TcpConnection, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            context, server_name = self._tls_for(conn)
            if context is None:
                connecting = loop.create_connection(lambda: conn, host, port)
            else:
                connecting = loop.create_connection(
                    lambda: conn, host, port, ssl=context, server_hostname=server_name,
                    ssl_handshake_timeout=CONNECT_TIMEOUT,
                )  # fmt: skip
            await asyncio.wait_for(connecting, CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            event(log, "tcp_connect_failed", logging.WARNING, peer=f"{host}:{port}",
                  transport=self.transport, dropped=len(conn.pending), error=exc or "timeout")
            conn.pending.clear()
            conn.close()
            waiters, conn.waiters = conn.waiters, []
            if waiters:
                self.sink_unsent(waiters, str(exc) or "connect timeout")

    def _tls_for(self, conn: TcpConnection) -> tuple[ssl.SSLContext | None, str | None]:
        """The context and server name a new connection is opened with (none: TCP)."""
        return None, None

    def _admit(self, conn: TcpConnection) -> bool:
        """Count an accepted connection in, or say it must be closed at once."""
        source = conn.source
        assert source is not None
        gate = self.gate
        if gate is not None and not gate.admit(source):
            return False  # banned or flooding: counted by the guard
        host = gate.key(source.host) if gate is not None else source.host
        count = self._per_host.get(host, 0)
        limits = self.limits
        if self.accepted >= limits.max_connections:
            self._closing("max_connections", source)
            return False
        if count >= limits.max_per_ip and (gate is None or not gate.trusted(source)):
            self._closing("per_ip", source)
            return False
        self._per_host[host] = count + 1
        self.accepted += 1
        conn.counted = host
        conn.partial_since = self.now  # its first message must come within the read timeout
        return True

    def _closing(self, reason: str, source: Address | None, **why: object) -> None:
        """Count a connection closed for ``reason``; log it, at most a line a second a reason."""
        self._closes[reason].value += 1
        now = time.monotonic()
        if now < self._log_after.get(reason, 0.0):
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return
        self._log_after[reason] = now + REFUSAL_LOG_EVERY
        event(log, "tcp_closed", logging.WARNING, reason=reason, source=source,
              unlogged=self._unlogged.pop(reason, 0), **why)  # fmt: skip

    def _register(self, conn: TcpConnection) -> None:
        self.by_id[conn.id] = conn
        assert conn.peer is not None
        self.by_peer[conn.peer] = conn

    def _forget(self, conn: TcpConnection) -> None:
        if self.by_id.get(conn.id) is conn:
            del self.by_id[conn.id]
        if conn.peer is not None and self.by_peer.get(conn.peer) is conn:
            del self.by_peer[conn.peer]
        host = conn.counted
        if host:
            conn.counted = ""
            self.accepted -= 1
            left = self._per_host[host] - 1
            if left:
                self._per_host[host] = left
            else:
                del self._per_host[host]

    def sweep(self, now: float) -> None:
        """Close connections idle longer than the timeout, or reading one message for
        longer than the read timeout; cheap to call from every tick (``now``: monotonic)."""
        self.now = now
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_every
        read_timeout = self.limits.read_timeout
        for conn in list(self.by_id.values()):
            since = conn.partial_since
            if since is not None and now - since >= read_timeout:
                self._closing("read_timeout", conn.source)
                conn.close()
            elif conn.active:
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


# Process-wide, as sipline.peers.CERTIFIED is keyed by them (tests run several nodes).
_TLS_IDS = itertools.count(1)


class TlsConnection(TcpConnection):
    """A TLS connection: ``connection_made`` comes once the handshake is over. An
    accepted one (``accepted``) was admitted and counted before its handshake;
    its certificate is checked against our peers (``Credentials.identify``)."""

    accepted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.accepted and not self.closed:
            endpoint: TlsEndpoint = self._endpoint  # type: ignore[assignment]
            if not endpoint._identified(self, transport):
                self.close()
                transport.abort()  # type: ignore[attr-defined]
                return
        super().connection_made(transport)


class TlsEndpoint(TcpEndpoint):
    """A TLS listener and connections: TCP's limits, framing and reuse, with
    ``credentials`` (``sipline.net.tls.Credentials``) for the handshakes.

    Connections are accepted here (``sock_accept``), so each is admitted and
    counted by its address before any cryptography, then handshaken within
    the read timeout."""

    transport = TLS

    def __init__(self, sink: Sink, max_message_bytes: int, idle_timeout: float,
                 limits: TcpLimits | None = None, gate: Gate | None = None,
                 metrics: NodeMetrics | None = None, *, credentials: Credentials) -> None:  # fmt: skip
        super().__init__(sink, max_message_bytes, idle_timeout, limits, gate, metrics)
        self.credentials = credentials
        self._ids = _TLS_IDS
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    async def listen(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        raise_file_limit(self.limits.max_connections + SPARE_FILES)
        self._listener = sock = tcp_listener(host, port, reuse_port=reuse_port)
        sockname = sock.getsockname()
        self.address = Address(TLS, unmapped(sockname[0]), sockname[1])
        self._accepting = asyncio.get_running_loop().create_task(self._accept_all(sock))

    async def _accept_all(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, addr = await loop.sock_accept(sock)
            except OSError as exc:  # out of descriptors ...: the backlog waits
                event(log, "tls_accept_failed", logging.WARNING, error=exc)
                await asyncio.sleep(0.1)
                continue
            self._accepted(client, addr)

    def _accepted(self, client: socket.socket, addr: tuple[Any, ...]) -> None:
        host, port = unmapped(addr[0]), addr[1]
        conn = TlsConnection(self, next(self._ids), (host, port))
        conn.accepted = True
        conn.source = Address(TLS, host, port, conn.id)
        if not self._admit(conn):
            client.close()
            return
        client.setblocking(False)
        task = asyncio.get_running_loop().create_task(self._handshake(conn, client))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _handshake(self, conn: TlsConnection, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: conn, client, ssl=self.credentials.server,
                ssl_handshake_timeout=self.limits.read_timeout,
            )  # fmt: skip
        except asyncio.CancelledError:
            conn.close()
            client.close()
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the handshake raised, it failed
            if not conn.closed:
                self._closing("tls_handshake", conn.source, error=_reason(exc))
                conn.close()
            client.close()

    def _identified(self, conn: TlsConnection, transport: asyncio.BaseTransport) -> bool:
        """Note the peer an accepted connection's certificate proves; False (counted,
        logged) when it comes from a peer's address and proves no peer there."""
        source = conn.source
        assert source is not None
        cert = transport.get_extra_info("peercert")
        name, refuse = self.credentials.identify(cert, source.host)
        if refuse:
            self._closing("tls_peer", source, error="its certificate proves no peer of its address")
            return False
        if name is not None:
            CERTIFIED[conn.id] = name
        return True

    def _connection(self, peer: tuple[str, int] | None = None) -> TcpConnection:
        return TlsConnection(self, next(self._ids), peer)

    def _tls_for(self, conn: TcpConnection) -> tuple[ssl.SSLContext | None, str | None]:
        assert conn.peer is not None
        context, server_name, name = self.credentials.client(*conn.peer)
        if name is not None:
            CERTIFIED[conn.id] = name  # the handshake proves it, or the connection never opens
        return context, server_name

    def _forget(self, conn: TcpConnection) -> None:
        CERTIFIED.pop(conn.id, None)
        super()._forget(conn)

    async def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await super().close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__
