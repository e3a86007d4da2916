"""The STUN server's asyncio shell: UDP sockets and TCP listeners around ``StunResponder``.

One UDP socket and one TCP listener per server address: one address, or four
with RFC 5780 behaviour discovery, as a reply asked to change address or port
leaves from the socket bound there. Over TCP, messages are framed by their own
length field (RFC 5389 §7.2.2) and replies go back on the connection.

Nothing a peer sends stops the server: what gets no reply is counted in
``sipline_stun_dropped{reason}``, replies in ``sipline_stun_responses{transport,status}``.

    server = StunServer("127.0.0.1", 3478)
    await server.start()   # port 0: the kernel picks, and server.layout tells which
    ...
    await server.close()
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter

from relay.stun import Addr, Dropped, Layout, Reply, StunResponder, frame_length
from sipline.logs import event
from sipline.net.transport import udp_socket

log = logging.getLogger("relay.stun")

BIND_ATTEMPTS = 20  # port 0 on four addresses: the pick may be taken on another one
TCP_IDLE_TIMEOUT = 300.0  # seconds; RFC 8489 §6.2.2 leaves closing to the client, within reason
TCP_SWEEP_EVERY = 30.0
STATUSES = (200, 400, 420)

RESPONSES = Counter(
    "sipline_stun_responses",
    "STUN responses sent, by transport and status",
    ["transport", "status"],
)
DROPPED = Counter("sipline_stun_dropped", "STUN messages dropped without a reply", ["reason"])
# Beyond relay.stun.Dropped: a TCP stream that is not STUN, and a fault of ours.
DROP_REASONS = (*(reason.value for reason in Dropped), "framing", "error")


class StunServer:
    """The STUN listeners for ``host:port``, and with ``alt_host`` its RFC 5780 alternates."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        alt_host: str = "",
        alt_port: int = 0,
        transports: Iterable[str] = ("udp", "tcp"),
    ) -> None:
        self.host = str(ipaddress.ip_address(host))
        self.alt_host = str(ipaddress.ip_address(alt_host)) if alt_host else ""
        self.ports = (port, alt_port) if alt_host else (port,)
        self.transports = tuple(transports)
        self.layout = Layout(self.host, port, self.alt_host, alt_port)
        self.responder = StunResponder(self.layout)
        self._udp: dict[Addr, asyncio.DatagramTransport] = {}
        self._sendto: dict[Addr, Callable[[bytes, Addr], None]] = {}
        self._tcp: list[asyncio.Server] = []
        self._connections: set[StunConnection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._responses = {
            (t, s): RESPONSES.labels(t, str(s)) for t in ("udp", "tcp") for s in STATUSES
        }
        self._dropped = {reason: DROPPED.labels(reason) for reason in DROP_REASONS}

    @classmethod
    def from_settings(cls, relay: Any) -> StunServer:
        """The server the ``[relay]`` section describes."""
        return cls(
            relay.stun_host,
            relay.stun_port,
            alt_host=relay.stun_alt_host,
            alt_port=relay.stun_alt_port,
            transports=relay.stun_transports,
        )

    # -- life cycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Bind every socket; a port given as 0 is picked once, the same on every address."""
        for attempt in range(BIND_ATTEMPTS):
            try:
                ports = await self._bind_all()
                break
            except OSError as exc:
                await self.close()
                retry = exc.errno == errno.EADDRINUSE and 0 in self.ports
                if not retry or attempt == BIND_ATTEMPTS - 1:
                    raise
        self.layout = Layout(self.host, ports[0], self.alt_host, ports[-1] if self.alt_host else 0)
        self.responder = StunResponder(self.layout)
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(TCP_SWEEP_EVERY, self._sweep)
        for address in self.layout.addresses():
            event(
                log,
                "listening",
                service="stun",
                transports="/".join(self.transports),
                address=_show(address),
            )

    async def _bind_all(self) -> list[int]:
        hosts = [self.host, self.alt_host] if self.alt_host else [self.host]
        bound = []
        for wanted in self.ports:
            port = wanted
            for host in hosts:
                for transport in self.transports:
                    port = await self._bind(transport, host, port)
            bound.append(port)
        return bound

    async def _bind(self, transport: str, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        if transport == "tcp":
            server = await loop.create_server(
                lambda: StunConnection(self), host, port, backlog=1024, reuse_address=True
            )
            self._tcp.append(server)
            return server.sockets[0].getsockname()[1]
        sock = udp_socket(host, port)
        udp, _ = await loop.create_datagram_endpoint(lambda: StunDatagrams(self), sock=sock)
        local = _address(udp.get_extra_info("sockname"))
        self._udp[local] = udp  # type: ignore[assignment]
        self._sendto[local] = udp.sendto
        return local[1]

    async def close(self) -> None:
        """Close every socket and connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for udp in self._udp.values():
            udp.close()
        self._udp.clear()
        self._sendto.clear()
        for server in self._tcp:
            server.close()
        for connection in list(self._connections):
            connection.close()
        for server in self._tcp:
            await server.wait_closed()
        self._tcp.clear()
        await asyncio.sleep(0)  # let the transports' connection_lost run

    # -- messages ------------------------------------------------------------------
    def datagram_received(self, data: bytes, source: Addr, local: Addr) -> None:
        try:
            outcome = self.responder.handle(data, source, local)
        except Exception as exc:  # a bug of ours must cost one message, not the server
            self._failed(exc, source)
            return
        if type(outcome) is Reply:
            sendto = self._sendto.get(outcome.origin)
            if sendto is None:  # closing
                return
            sendto(outcome.data, outcome.dest)
            self._count("udp", outcome.status)
        else:
            self._dropped[outcome.value].inc()  # type: ignore[union-attr]

    def stream_message(self, data: bytes, source: Addr, local: Addr) -> bytes | None:
        """The reply to one framed TCP message, if any."""
        try:
            outcome = self.responder.handle(data, source, local, stream=True)
        except Exception as exc:
            self._failed(exc, source)
            return None
        if type(outcome) is Reply:
            self._count("tcp", outcome.status)
            return outcome.data
        self._dropped[outcome.value].inc()  # type: ignore[union-attr]
        return None

    def stream_unframed(self, source: Addr) -> None:
        self._dropped["framing"].inc()
        event(log, "stun_stream_closed", logging.DEBUG, reason="not STUN", peer=_show(source))

    def _count(self, transport: str, status: int) -> None:
        counter = self._responses.get((transport, status))
        if counter is None:
            counter = RESPONSES.labels(transport, str(status))
        counter.inc()

    def _failed(self, exc: Exception, source: Addr) -> None:
        self._dropped["error"].inc()
        event(log, "stun_error", logging.ERROR, error=repr(exc), source=_show(source))

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() - TCP_IDLE_TIMEOUT
        for connection in [c for c in self._connections if c.last_active < deadline]:
            connection.close()
        self._sweeper = loop.call_later(TCP_SWEEP_EVERY, self._sweep)


class StunDatagrams(asyncio.DatagramProtocol):
    """One UDP socket of the server."""

    def __init__(self, server: StunServer) -> None:
        self._received = server.datagram_received
        self._local: Addr = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._local = _address(transport.get_extra_info("sockname"))

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:  # type: ignore[override]
        self._received(data, (addr[0], addr[1]), self._local)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors about earlier replies (port unreachable...): nothing to undo.
        event(log, "stun_udp_error", logging.DEBUG, error=exc)


class StunConnection(asyncio.Protocol):
    """One TCP connection: STUN messages framed by their length field, replies written back."""

    def __init__(self, server: StunServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._peer: Addr = ("", 0)
        self._local: Addr = ("", 0)
        self.last_active = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._peer = _address(transport.get_extra_info("peername"))
        self._local = _address(transport.get_extra_info("sockname"))
        self.last_active = asyncio.get_running_loop().time()
        self._server._connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_active = asyncio.get_running_loop().time()
        buffer = self._buffer
        buffer += data
        while self._transport is not None:
            try:
                size = frame_length(buffer)
            except ValueError:  # a stream cannot be resynchronised: RFC 5389 §7.2.2
                self._server.stream_unframed(self._peer)
                self.close()
                return
            if size is None or len(buffer) < size:
                return
            reply = self._server.stream_message(bytes(buffer[:size]), self._peer, self._local)
            del buffer[:size]
            if reply is not None:
                self._transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._server._connections.discard(self)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._server._connections.discard(self)


def _address(sockname: tuple[Any, ...]) -> Addr:
    return (sockname[0], sockname[1])


def _show(address: Addr) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
