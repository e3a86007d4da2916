"""The node: transports, the transaction layer and a role's handler on one uvloop.

Every datagram or framed stream message is decoded once, stamped with its
source (RFC 3581) and given to the sans-IO ``TransactionLayer``; the node
carries out the actions that come back (``Send`` to a transport, the rest to
the ``Handler``, through the dispatcher it shares with ``Wire``:
``sipline.net.shell``). One periodic tick runs every transaction timer, the
handler's own timers (``Handler.on_tick``), the TCP and TLS idle sweeps and
the look at the TLS files (``[tls] watch_interval``): no task or timer
handle per message, per transaction or per role. SIGHUP reloads the TLS
certificate and key too.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from sipline.logs import Throttle, event, quote
from sipline.net.bans import BanSync
from sipline.net.gcpauses import GcPacer, GcPauses
from sipline.net.guard import Guard
from sipline.net.handler import Handler, NodeLike
from sipline.net.metrics import NodeMetrics
from sipline.net.shell import Shell
from sipline.net.signals import until_stopped
from sipline.net.tls import Credentials
from sipline.net.transport import TcpEndpoint, TcpLimits, TlsEndpoint, UdpEndpoint
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response, parse_message, salvage_request
from sipline.sip.transaction import (
    ClientTransaction,
    Refused,
    Send,
    ServerTransaction,
    TransactionLayer,
)
from sipline.storage.database import Database

log = logging.getLogger("sipline.node")

# Seconds between runs of the transaction timers and the handler's (on_tick):
# a role's timer is late by one tick at most. The roles' ticks cost a few
# microseconds when nothing is due (docs/design.md), 100 a second.
TICK = 0.01
DRAIN_POLL = 0.02
GC_THRESHOLDS = (30_000, 170, 100)  # see tune_gc
GC_PAUSES = GcPauses()  # the process's collections, timed (one GC per process)
GC_PACER = GcPacer()  # young collections on time, from every node's tick (tune_gc starts it)
LOG_INTERVAL = 60.0  # seconds between two log lines of the same error or refusal


class Node(Shell):
    """One SIP node. ``settings`` needs ``node`` and ``sip`` sections (see sipline.config).

    ``layer`` replaces the default transaction layer (other timer values); its
    clock must be ``time.monotonic``, which the tick passes to ``expire``. The
    node sets its transaction limits from ``[sip]``, trusted peers exempt.
    ``db``, the role's database, holds the bans shared with other nodes when
    there is no ``[redis]`` (sipline.net.bans).
    """

    def __init__(
        self,
        settings: Any,
        handler: Handler,
        *,
        layer: TransactionLayer | None = None,
        db: Database | None = None,
    ) -> None:
        self.settings = settings
        layer = layer if layer is not None else TransactionLayer(time.monotonic, tick=TICK)
        sip = settings.sip
        layer.limit(sip.max_transactions, sip.max_transactions_per_source, handler.trusts)
        self.metrics = NodeMetrics()
        guard = Guard(handler.trusts, getattr(settings, "limits", None), metrics=self.metrics)
        super().__init__(handler, layer, guard)
        self.server_header: str = sip.server_header
        self._bans = BanSync.for_node(settings, self.guard, db)
        self._received = self.metrics.received
        self._sent = self.metrics.sent
        self._trace = settings.sip.trace
        self._udp: UdpEndpoint | None = None
        self._tcp: TcpEndpoint | None = None
        self._tls: TlsEndpoint | None = None
        self._next_watch = 0.0
        self._senders: dict[str, Callable[[bytes, Address], bool]] = {}
        self._tick_handle: asyncio.TimerHandle | None = None
        # False until every transport listens: the UDP socket reads before the TCP
        # listener is up, and the handler may rely on both (its Via, its Record-Route).
        self._started = False
        # A stranger can repeat an error or a refusal at will: one line (and
        # one traceback) per kind a minute, every one of them counted.
        self._quiet = Throttle(LOG_INTERVAL)

    # -- life cycle -------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._open_transports()
            if self._udp is not None:
                self._bans.drop = self._udp.drop_sources
            await self._bans.start()
        except BaseException:
            await self._close_transports()
            raise
        streams = [e for e in (self._tcp, self._tls) if e is not None]
        self.metrics.watch(lambda: len(self.layer), lambda: sum(len(e.by_id) for e in streams))
        self._tick_handle = asyncio.get_running_loop().call_later(TICK, self._tick)
        self._started = True
        for transport in self._senders:
            event(log, "listening", node=self.settings.node.name, address=self.local_address(transport))

    async def stop(self) -> None:
        """Drain: new requests get 503, open transactions get up to ``node.drain_timeout``."""
        if self._tick_handle is None:
            return
        self.layer.drain()
        event(log, "draining", transactions=len(self.layer))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.node.drain_timeout
        while not self.layer.idle and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        left = len(self.layer)
        self._tick_handle.cancel()
        self._tick_handle = None
        if self._tls is not None:
            _forget_signal(signal.SIGHUP)
        await self._close_transports()
        await self._bans.stop()
        self.metrics.unwatch()
        event(log, "stopped", transactions_left=left)

    async def _open_transports(self) -> None:
        sip = self.settings.sip
        if "udp" in sip.transports:
            self._udp = await UdpEndpoint.bind(self, sip.host, sip.port, sip.max_message_bytes)
            self._senders["UDP"] = self._udp.send
        if "tcp" in sip.transports:
            limits = TcpLimits.of(self.guard.limits)
            self._tcp = TcpEndpoint(
                self, sip.max_message_bytes, sip.tcp_idle_timeout, limits, self.guard, self.metrics
            )
            await self._tcp.listen(sip.host, sip.port)
            self._senders["TCP"] = self._tcp.send
        if "tls" in sip.transports:
            credentials = Credentials(self.settings.tls)  # ConfigError naming the key
            self._tls = TlsEndpoint(
                self, sip.max_message_bytes, sip.tcp_idle_timeout, TcpLimits.of(self.guard.limits),
                self.guard, self.metrics, credentials=credentials,
            )  # fmt: skip
            await self._tls.listen(sip.host, sip.tls_port or sip.port + 1)
            self._senders["TLS"] = self._tls.send
            _on_signal(signal.SIGHUP, self.reload_tls)

    async def _close_transports(self) -> None:
        self._senders.clear()
        if self._udp is not None:
            await self._udp.close()
        if self._tcp is not None:
            await self._tcp.close()
        if self._tls is not None:
            await self._tls.close()

    def reload_tls(self) -> bool:
        """Load the ``[tls]`` files again (SIGHUP, or one changed): new connections
        get them; on a failure the ones in use stay (logged), False."""
        if self._tls is None:
            return False
        done = self._tls.credentials.reload()
        self.metrics.tls_reloads["ok" if done else "failed"].inc()
        return done

    def local_address(self, transport: str) -> Address:
        """Where this node listens on ``transport`` ("UDP", "TCP", "TLS"), for Via and Contact."""
        endpoint = {"UDP": self._udp, "TCP": self._tcp, "TLS": self._tls}.get(transport.upper())
        if endpoint is None or endpoint.address is None:
            raise LookupError(f"not listening on {transport}")
        advertised = self.settings.sip.advertised_host
        return endpoint.address._replace(host=advertised) if advertised else endpoint.address

    def _tick(self) -> None:
        self._tick_handle = asyncio.get_running_loop().call_later(TICK, self._tick)
        now = time.monotonic()
        try:
            GC_PACER.tick(now)
            self.tick(now)
            if self._tcp is not None:
                self._tcp.sweep(now)
            if self._tls is not None:
                self._tls.sweep(now)
                self._watch_tls(now)
        except Exception:
            self._core_error("expire")

    def _watch_tls(self, now: float) -> None:
        interval = self.settings.tls.watch_interval
        if interval and now >= self._next_watch:
            self._next_watch = now + interval
            assert self._tls is not None
            if self._tls.credentials.changed():
                self.reload_tls()

    # -- what roles call beside the shell's (sipline.net.handler.NodeLike) --------------
    def send_keepalive(self, dest: Address, data: bytes = b"\r\n\r\n") -> bool:
        """Write a keepalive (RFC 5626 §3.5.1 CRLF ping) on the stream connection
        ``dest.connection`` only: never a new connection, which a phone behind
        NAT could not accept. False when that connection is gone."""
        stream = self._tls if dest.transport == "TLS" else self._tcp
        if stream is None or dest.connection is None:
            return False
        conn = stream.by_id.get(dest.connection)
        if conn is None or conn.closed:
            return False
        conn.write(data)
        return True

    # -- from the transports (the Sink protocol) -------------------------------------
    def message_received(self, data: bytes, source: Address) -> None:
        # The layer validates every message and stamps received/rport (RFC
        # 3581) on the requests it takes; nothing raised here reaches the loop.
        if not self._started:
            self.metrics.dropped["not_started"].inc()  # the sender retransmits
            return
        if not self.guard.admit(source):
            return  # counted and logged by the guard
        try:
            message = parse_message(data, stream=source.transport != "UDP")
            self._received[source.transport][type(message) is Response].inc()
            if self._trace:
                event(log, "sip_in", source=source, message=data.decode(errors="replace"))
            actions = self.layer.receive(message, source)
        except ParseError as exc:
            self._malformed(data, source, exc.status, exc.reason)
            return
        except Exception:
            self._core_error("receive", source)
            return
        try:
            self._carry_out(actions)
        except Exception:
            self._core_error("carry_out", source)

    def message_refused(self, data: bytes, source: Address, status: int, reason: str) -> None:
        """Too large (513: always counted as dropped) or unframeable (400)."""
        try:
            if status == 513:
                self.metrics.dropped["oversize"].inc()
            actions = self.layer.answer_malformed(
                salvage_request(data), source, status, reason, self.server_header
            )
            if not actions and status != 513:
                self.metrics.dropped["parse_error"].inc()
            self._carry_out(actions)
        except Exception:
            self._core_error("refused", source)

    def _malformed(self, data: bytes, source: Address, status: int, reason: str) -> None:
        """A message that did not parse or validate: one stateless answer to a
        request, no transaction; a response or garbage is dropped."""
        try:
            request = salvage_request(data)
            if request is not None:
                kind = "request"
            else:
                kind = "response" if data.lstrip(b"\r\n").startswith(b"SIP/") else "garbage"
            self.metrics.parse_errors[kind].inc()
            held = self._quiet.admit(("parse_error", kind, source.host))
            if held is not None:
                event(log, "parse_error", kind=kind, reason=reason, source=source, repeated=held)
            actions = self.layer.answer_malformed(request, source, status, reason, self.server_header)
            if not actions:
                self.metrics.dropped["parse_error"].inc()
            self._carry_out(actions)
        except Exception:
            self._core_error("malformed", source)

    def _core_error(self, where: str, source: Address | None = None) -> None:
        self.metrics.dropped["core_error"].inc()
        self._log_exception("core_error", where, source=source)

    def _log_exception(self, name: str, where: str, **fields: Any) -> None:
        """The traceback of the exception being handled, once per minute for
        the same place it was raised; the line after says how many were held back."""
        _, exc, tb = sys.exc_info()
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        origin = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else None
        held = self._quiet.admit((name, where, type(exc), origin))
        if held is None:
            return
        parts = " ".join(f"{key}={quote(value)}" for key, value in fields.items())
        log.error("event=%s where=%s %s repeated=%d", name, where, parts, held, exc_info=True)

    # -- carrying out the layer's actions (the rest is the shell's) ---------------------
    def _send(self, action: Send) -> None:
        data, dest = action.data, action.dest
        send = self._senders.get(dest.transport)
        if send is None:
            self._send_failed(action, f"no {dest.transport} listener")
            return
        self._sent[dest.transport][data.startswith(b"SIP/")].inc()
        if self._trace:
            event(log, "sip_out", dest=dest, message=data.decode(errors="replace"))
        try:
            sent = send(data, dest)
        except (OSError, ValueError) as exc:  # an IPv6 host from an IPv4 socket ...
            self._send_failed(action, str(exc) or type(exc).__name__)
            return
        if sent is False:
            self._send_failed(action, "transport closed")

    def _send_failed(self, action: Send, error: str) -> None:
        """Counted and logged; a request of a client transaction ends it with a
        503 to the handler at the next tick (RFC 3261 §16.9, §17.1.4)."""
        self.metrics.dropped["send_failed"].inc()
        if action.txn is not None:
            self.layer.transport_error(action.txn, error)
        held = self._quiet.admit(("send_failed", action.dest.host, error))
        if held is not None:
            event(log, "send_failed", logging.WARNING, dest=action.dest, error=error, repeated=held)

    def _refused(self, action: Refused) -> None:
        self.metrics.refused[action.reason].inc()
        held = self._quiet.admit(("refused", action.reason, action.source.host))
        if held is not None:
            event(log, "refused", logging.WARNING, reason=action.reason, source=action.source, repeated=held)

    def _handler_error(self, callback: str, call_id: str | None = None) -> None:
        """Counted, and its traceback logged (once a minute per place)."""
        self.metrics.handler_errors.inc()
        self._log_exception("handler_error", callback, call_id=call_id)


def _on_signal(sig: signal.Signals, callback: Callable[[], Any]) -> None:
    try:
        asyncio.get_running_loop().add_signal_handler(sig, callback)
    except (RuntimeError, ValueError):  # not the main thread (an embedded node): no signal
        pass


def _forget_signal(sig: signal.Signals) -> None:
    try:
        asyncio.get_running_loop().remove_signal_handler(sig)
    except (RuntimeError, ValueError):
        pass


# -- the node `sipline run` starts -----------------------------------------------------
class MinimalHandler(Handler):
    """Answers OPTIONS with its capabilities; ACK gets nothing, anything else 501."""

    ALLOW = "OPTIONS, ACK, CANCEL"
    ACCEPT = "application/sdp"
    SUPPORTED = ""

    def __init__(self, server_header: str) -> None:
        self.server_header = server_header

    def on_request(
        self, node: NodeLike, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        if log.isEnabledFor(logging.INFO):
            event(log, "request", method=request.method, call_id=request.call_id, source=source)
        if txn is None:
            return  # ACK for a 2xx: end to end, nothing to answer
        required = request.headers.values("require")
        if request.method == "CANCEL":
            response = request.response(481, to_tag=new_tag())  # nothing here to cancel (§9.2)
        elif request.method != "OPTIONS":
            response = request.response(501, to_tag=new_tag())
        elif not request.uri[:5].lower().startswith(("sip:", "sips:", "tel:")):
            response = request.response(416, to_tag=new_tag())  # §8.2.2.1 (RFC 4475 §3.3.2)
        elif required:  # §8.2.2.3: we support no extension (RFC 4475 §3.3.5)
            response = request.response(420, to_tag=new_tag())
            response.headers.add("Unsupported", ", ".join(required))
        else:
            response = request.response(200, to_tag=new_tag())
            headers = response.headers
            headers.add("Allow", self.ALLOW)
            headers.add("Accept", self.ACCEPT)
            headers.add("Supported", self.SUPPORTED)
        response.headers.add("Server", self.server_header)
        node.respond(txn, response)

    def on_response(
        self, node: NodeLike, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        if log.isEnabledFor(logging.INFO):
            event(log, "response", status=response.status, call_id=response.call_id, source=source)


async def serve(settings: Any) -> None:
    """Run the minimal node until SIGTERM or SIGINT, then drain and return."""
    node = Node(settings, MinimalHandler(settings.sip.server_header))
    await node.start()
    tune_gc()
    await until_stopped()
    await node.stop()


def tune_gc() -> None:
    """Make the cyclic GC rare, for a whole node process; call once it has started.

    A node's live set is large (every UDP transaction lingers 32 s for timer J
    or L) and the default thresholds rescan it often enough to cost more than
    the SIP work, with pauses past T1 that peers see as loss and retransmit:
    at 2000 OPTIONS/s, 246 us CPU each and 33% retransmitted, against 108 us
    and none with these thresholds. Objects made at start are frozen out of
    every collection.

    A young-generation collection stops the loop for as long as it takes to
    scan what survived since the last one (about 1 us an object on this
    machine): 30,000 keeps it near 30 ms where 100,000 took 90 ms, for the
    same CPU per call, since a lingering transaction is scanned once either
    way (in process, relay scenario at 2000 cps for 70 s: 42 ms at most with
    40,000, 97 ms with 100,000; 19.7 against 21.2 us per call). Generation 1
    is collected after 170 of them, as after 50 of 100,000: 5 million objects
    more, beyond what the lingering transactions of 2000 calls/s reach (the
    proxy's call path leaves no cyclic garbage: tests/proxy/test_gc.py).

    Under a steady load the counts are not enough (deallocations of old
    objects count too, so the young generation grows for seconds): the
    node's tick paces the young collections and freezes their survivors
    (``GC_PACER``, sipline.net.gcpauses.GcPacer), started here.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])
    GC_PAUSES.install()  # a collection over 50 ms is logged (event=gc_pause)
    GC_PACER.start(time.monotonic())
