"""The RTP relay's asyncio shell: a UDP socket per stream, the ng endpoint, the timeout sweep.

Every relay port is a uvloop datagram endpoint whose protocol hands each
packet straight to its ``Stream`` (latching, counters, statistics, then
``sendto`` on the peer stream's transport); nothing else runs per packet.
The ng endpoint feeds ``NgHandler`` what the hosts of ``ng_allowed`` send
(by default loopback): anything else is dropped unanswered and counted, as an
ng reply is larger than its request (an amplifier otherwise) and a command
binds ports. A once-a-second sweep tears down calls whose media stopped and
publishes their quality, and every ``publish_interval`` it publishes the
figures of the calls still up.

Metrics (``sipline_relay_*``): refusals (relay.refusals), and the gauges
``ports_open`` and ``calls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay.networks import Networks
from relay.ng import MAX_MEDIA, NgHandler
from relay.ports import PortPool
from relay.publish import ACTIVE, CallQuality, MemoryQuality, QualitySink, open_quality_sink
from relay.refusals import COUNTED, Refusals
from relay.rtp import LEARN_WINDOW, Stream, _unbound
from relay.sessions import Call, SessionTable
from sipline.logs import event
from sipline.net.metrics import RoleCounts

__all__ = ["RelayOptions", "RtpRelay", "UdpMediaPlane"]

log = logging.getLogger("sipline.relay.media")

SOCKET_BUFFER_BYTES = 1 << 20
SWEEP_INTERVAL = 1.0


@dataclass(slots=True)
class RelayOptions:
    ng_host: str = "127.0.0.1"
    ng_port: int = 2223
    ng_allowed: tuple[str, ...] = ("127.0.0.0/8", "::1")
    """Networks whose hosts may send ng commands."""
    rtp_host: str = "127.0.0.1"
    """Where the RTP ports are bound."""
    advertise: str = ""
    """The address written into SDP; "" = ``rtp_host``."""
    port_min: int = 30000
    port_max: int = 40000
    media_timeout: float = 60.0
    max_sessions: int = 10_000
    max_media: int = MAX_MEDIA
    """Media sections an offer or answer may have."""
    max_call_ports: int = 64
    max_source_ports: int = 2000
    """Ports of the calls whose offers came from one signalling host, together."""
    latch_window: float = LEARN_WINDOW
    publish_interval: float = 10.0


class StreamProtocol(asyncio.DatagramProtocol):
    """Hands every datagram of one relay port to its stream."""

    def __init__(self, stream: Stream, clock: Callable[[], float]) -> None:
        self.stream = stream
        self.transport: asyncio.DatagramTransport | None = None
        self._receive = stream.receive
        self._clock = clock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.stream.sendto = transport.sendto  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._receive(data, addr, self._clock())

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for an earlier send: the party went away; the timeout will tell.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream.sendto = _unbound


class UdpMediaPlane:
    """Opens and closes the relay's sockets for the session table."""

    def __init__(self, host: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.clock = clock
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._protocols: dict[int, StreamProtocol] = {}
        self._pending: set[asyncio.Task[Any]] = set()

    def open(self, rtp: Stream, rtcp: Stream) -> bool:
        sockets = []
        try:
            for stream in (rtp, rtcp):
                sock = socket.socket(self._family, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
                sock.bind((self.host, stream.local_port))
        except OSError:
            for sock in sockets:
                sock.close()
            return False
        for stream, sock in zip((rtp, rtcp), sockets, strict=True):
            self._attach(stream, sock)
        return True

    def _attach(self, stream: Stream, sock: socket.socket) -> None:
        # The socket is bound now, so the port is ours; the transport follows at the
        # next loop iteration and reads whatever arrived in between.
        protocol = StreamProtocol(stream, self.clock)
        self._protocols[stream.local_port] = protocol
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.create_datagram_endpoint(lambda: protocol, sock=sock))
        self._pending.add(task)
        task.add_done_callback(lambda t: self._attached(t, protocol, sock))

    def _attached(
        self, task: asyncio.Task[Any], protocol: StreamProtocol, sock: socket.socket
    ) -> None:
        self._pending.discard(task)
        if task.cancelled() or task.exception() is not None:
            sock.close()
            return
        if self._protocols.get(protocol.stream.local_port) is not protocol:
            task.result()[0].close()  # closed before it was attached

    def close(self, stream: Stream) -> None:
        protocol = self._protocols.pop(stream.local_port, None)
        stream.sendto = _unbound
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    @property
    def open_ports(self) -> int:
        return len(self._protocols)

    async def settle(self) -> None:
        """Wait until every opened socket has its transport (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class NgProtocol(asyncio.DatagramProtocol):
    def __init__(self, handler: NgHandler, allowed: Networks) -> None:
        self.handler = handler
        self.allowed = allowed
        self.transport: asyncio.DatagramTransport | None = None
        self.refused = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if addr[0] not in self.allowed:
            self.handler.refusals.refuse("ng_refused", addr, bytes=len(data))
            return  # silently: no answer to anyone else
        try:
            reply = self.handler.datagram(data, addr)
        except Exception as exc:  # a bug must not take the relay down with it
            event(log, "ng_failed", logging.ERROR, source=addr, error=repr(exc))
            reply = _internal_error(data)
        if reply is None:
            self.refused += 1
        elif self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass


def _internal_error(data: bytes) -> bytes | None:
    cookie, space, _ = data.partition(b" ")
    if not space:
        return None
    return cookie + b" d12:error-reason14:internal error6:result5:errore"


class RtpRelay:
    """The RTP relay of ``sipline relay``: ng control, media sockets, timeouts, quality."""

    def __init__(
        self,
        options: RelayOptions,
        quality: QualitySink | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.quality = quality or MemoryQuality()
        self.wall = wall
        self.metrics = RoleCounts("relay", COUNTED)
        self.refusals = Refusals(self.metrics.values, clock=clock)
        self.allowed = Networks(options.ng_allowed)
        self.plane = UdpMediaPlane(options.rtp_host, clock)
        self.table = SessionTable(
            PortPool(options.port_min, options.port_max),
            self.plane,
            max_sessions=options.max_sessions,
            max_call_ports=options.max_call_ports,
            max_source_ports=options.max_source_ports,
            window=options.latch_window,
            timeout=options.media_timeout,
            clock=clock,
            wall=wall,
            refused=self._refused,
        )
        address = options.advertise or options.rtp_host
        self.ng = NgHandler(
            self.table,
            address,
            on_end=self._ended,
            max_media=options.max_media,
            refusals=self.refusals,
        )
        self._endpoint: NgProtocol | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.ng_address: tuple[str, int] | None = None

    @classmethod
    def from_settings(cls, section: Any, redis_url: str | None = None) -> RtpRelay:
        """The relay of a ``[relay]`` section; quality goes to Redis when ``redis_url`` is set."""
        options = RelayOptions(
            ng_host=section.ng_host,
            ng_port=section.ng_port,
            ng_allowed=tuple(section.ng_allowed),
            rtp_host=section.rtp_host,
            advertise=section.rtp_advertise,
            port_min=section.rtp_port_min,
            port_max=section.rtp_port_max,
            media_timeout=section.media_timeout,
            max_sessions=section.max_sessions,
            max_media=section.max_media,
            max_call_ports=section.max_call_ports,
            max_source_ports=section.max_source_ports,
            latch_window=section.latch_window,
        )
        return cls(options, open_quality_sink(redis_url))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.quality.start()
        transport, self._endpoint = await loop.create_datagram_endpoint(
            lambda: NgProtocol(self.ng, self.allowed),
            local_addr=(self.options.ng_host, self.options.ng_port),
        )
        self.ng_address = transport.get_extra_info("sockname")[:2]
        self.metrics.watch("ports_open", "Relay ports bound (RTP and RTCP)", self._ports_open)
        self.metrics.watch("calls", "Calls the relay holds", self._calls)
        self._sweeper = loop.create_task(self._sweep())
        event(
            log,
            "relay_started",
            ng=f"{self.ng_address[0]}:{self.ng_address[1]}",
            ports=f"{self.options.port_min}-{self.options.port_max}",
        )

    async def close(self) -> None:
        """Stop taking commands, end every call (publishing its figures), close the sockets."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._endpoint is not None and self._endpoint.transport is not None:
            self._endpoint.transport.close()
        for call_id in list(self.table.calls):
            call = self.table.delete(call_id)
            if call is not None:
                self._ended(call, "shutdown")
        await self.plane.settle()
        await self.quality.close()
        self.metrics.unwatch()

    def _ports_open(self) -> float:
        return self.plane.open_ports

    def _calls(self) -> float:
        return len(self.table)

    def _refused(self, stream: Stream, source: Any) -> None:
        latched = stream.source
        self.refusals.refuse(
            "rtp_refused",
            source,
            call_id=stream.call_id,
            port=stream.local_port,
            latched="-" if latched is None else f"{latched[0]}:{latched[1]}",
        )

    def _ended(self, call: Call, state: str) -> None:
        refused = sum(stream.errors for stream in call.streams())
        if refused:
            event(
                log, "call_refused_packets", logging.WARNING, call_id=call.call_id, packets=refused
            )
        self.quality.publish(CallQuality.of(call, state, self.wall()))

    async def _sweep(self) -> None:
        last_publish = self.table.clock()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = self.table.clock()
            self.expire(now)
            if now - last_publish >= self.options.publish_interval:
                last_publish = now
                self.publish_active()

    def expire(self, now: float) -> list[Call]:
        """End the calls whose media timed out at ``now``."""
        ended = self.table.expire(now)
        for call in ended:
            event(
                log,
                "media_timeout",
                logging.WARNING,
                call_id=call.call_id,
                timeout=self.options.media_timeout,
            )
            self._ended(call, "timeout")
        return ended

    def publish_active(self) -> None:
        wall = self.wall()
        for call in self.table.calls.values():
            self.quality.publish(CallQuality.of(call, ACTIVE, wall))
