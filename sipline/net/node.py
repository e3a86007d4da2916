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

A node that is one of ``[node] workers`` (``workers``: sipline.net.workers)
shares its listeners with its siblings (SO_REUSEPORT), sends its own requests
from a UDP socket of its own (but to a UA's flow, from the shared one) with
that socket's port in its Via, and hands a sibling what belongs to it: a
CANCEL or ACK for an INVITE it does not hold, a response whose Via is the
sibling's.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Collection
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
from sipline.net.workers import (
    CHANGED_WINDOW,
    HANDED,
    MAGIC,
    MAX_DATAGRAM,
    Workers,
    handover_key,
    seal,
    unseal,
)
from sipline.secret import node_secret
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
    there is no ``[redis]`` (sipline.net.bans). ``workers``: this node is one of
    several processes on its address (sipline.net.workers).
    """

    def __init__(
        self,
        settings: Any,
        handler: Handler,
        *,
        layer: TransactionLayer | None = None,
        db: Database | None = None,
        workers: Workers | None = None,
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
        self._workers = workers
        self._own: UdpEndpoint | None = None  # a worker's own UDP socket
        self._handover_key = handover_key(node_secret(settings) or "") if workers else b""
        self._handovers = self.metrics.handovers
        self._changed_until = 0.0  # the set of workers changed lately (CHANGED_WINDOW)
        self._sibling_ports = frozenset(workers.siblings) if workers else frozenset()
        self._sibling_host = ""  # the host of the workers' own sockets, once bound
        self._next_watch = 0.0
        self._senders: dict[str, Callable[[bytes, Address, object], bool]] = {}
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
                self._bans.drop = self._drop_sources
            await self._bans.start()
        except BaseException:
            await self._close_transports()
            raise
        streams = [e for e in (self._tcp, self._tls) if e is not None]
        self.metrics.watch(lambda: len(self.layer), lambda: sum(len(e.by_id) for e in streams))
        self._tick_handle = asyncio.get_running_loop().call_later(TICK, self._tick)
        if self._workers is not None:
            self.workers_changed()  # our sockets just joined the set
            _on_signal(signal.SIGUSR1, self.workers_changed)
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
        if self._workers is not None:
            _forget_signal(signal.SIGUSR1)
        await self._close_transports()
        await self._bans.stop()
        self.metrics.unwatch()
        event(log, "stopped", transactions_left=left)

    async def _open_transports(self) -> None:
        sip = self.settings.sip
        shared = self._workers is not None
        if "udp" in sip.transports:
            self._udp = await UdpEndpoint.bind(
                self, sip.host, sip.port, sip.max_message_bytes, reuse_port=shared
            )
            self._senders["UDP"] = self._udp.send
            if self._workers is not None:
                own = socket.socket(fileno=self._workers.fd)
                self._own = await UdpEndpoint.adopt(self, own, sip.max_message_bytes)
                self._senders["UDP"] = self._send_udp
                # Where siblings send from: the host their Via names (advertised_host
                # when the listeners are on a wildcard address).
                self._sibling_host = self.via_address("UDP").host
        if "tcp" in sip.transports:
            limits = TcpLimits.of(self.guard.limits)
            self._tcp = TcpEndpoint(
                self, sip.max_message_bytes, sip.tcp_idle_timeout, limits, self.guard, self.metrics
            )
            await self._tcp.listen(sip.host, sip.port, reuse_port=shared)
            self._senders["TCP"] = self._tcp.send
        if "tls" in sip.transports:
            credentials = Credentials(self.settings.tls)  # ConfigError naming the key
            self._tls = TlsEndpoint(
                self, sip.max_message_bytes, sip.tcp_idle_timeout, TcpLimits.of(self.guard.limits),
                self.guard, self.metrics, credentials=credentials,
            )  # fmt: skip
            await self._tls.listen(sip.host, sip.tls_port or sip.port + 1, reuse_port=shared)
            self._senders["TLS"] = self._tls.send
            _on_signal(signal.SIGHUP, self.reload_tls)

    async def _close_transports(self) -> None:
        self._senders.clear()
        if self._udp is not None:
            await self._udp.close()
        if self._own is not None:
            await self._own.close()
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

    def via_address(self, transport: str) -> Address:
        """A worker's own UDP socket for UDP (its responses come back to it), else
        where it listens."""
        address = self.local_address(transport)
        if self._workers is not None and address.transport == "UDP":
            return address._replace(port=self._workers.own_port)
        return address

    def worker_ports(self) -> tuple[int, ...]:
        return self._workers.ports if self._workers is not None else ()

    def workers_changed(self) -> None:
        """A worker started or died (SIGUSR1 from the supervisor): for a while, the
        kernel may give an ACK to another worker than its INVITE's."""
        self._changed_until = time.monotonic() + CHANGED_WINDOW

    def _drop_sources(self, sources: Collection[tuple[str, int]]) -> int:
        """The kernel filter of banned sources, on every UDP socket of ours."""
        assert self._udp is not None
        dropped = self._udp.drop_sources(sources)
        if self._own is not None:
            self._own.drop_sources(sources)
        return dropped

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
        if (
            source.port in self._sibling_ports
            and data.startswith(MAGIC)
            and source.host == self._sibling_host
            and source.transport == "UDP"
        ):
            self._from_sibling(data, source)  # a handover, checked there: a worker's seal
            return
        if not self.guard.admit(source):
            return  # counted and logged by the guard
        try:
            message = parse_message(data, stream=source.transport != "UDP")
            self._received[source.transport][type(message) is Response].inc()
            if self._trace:
                event(log, "sip_in", source=source, message=data.decode(errors="replace"))
            if self._workers is not None and source.transport == "UDP":
                if self._hand_over(message, data, source):
                    return
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

    # -- workers (sipline.net.workers) ---------------------------------------------------
    def _send_udp(self, data: bytes, dest: Address, waiter: object = None) -> bool:
        """A worker's: its own requests from its own socket; the responses, and the
        requests to a UA's flow (its NAT lets in what comes from the address it
        sends to) or to a trusted peer (which knows us by our address and port),
        from the shared one (their responses may reach another worker, which hands
        them over: ``_hand_over``); whatever goes to a sibling, from our own."""
        own, udp = self._own, self._udp
        assert own is not None and udp is not None
        if dest.port in self._sibling_ports and dest.host == self._sibling_host:
            return own.send(data, dest)  # between workers: own socket to own socket
        if data.startswith(b"SIP/"):
            return udp.send(data, dest)  # an answer leaves from where its request came
        if dest.connection is not None or self.handler.trusts(dest):
            return udp.send(data, dest)
        return own.send(data, dest)

    def _hand_over(self, message: Request | Response, data: bytes, source: Address) -> bool:
        """Whether ``message`` went to the sibling it belongs to instead (a response
        whose Via is the sibling's, a CANCEL for an INVITE not held here); an ACK
        not matched here goes to the siblings too, and on here (it may be the ACK
        of a 2xx, the role's). ParseError on a bad Via."""
        workers = self._workers
        assert workers is not None
        if isinstance(message, Response):
            port = message.via.port
            if port == workers.own_port or port not in workers.siblings:
                return False
            if self.layer.holds_response(message):
                return False
            return self._seal_to((port,), data, source)
        method = message.method
        if method not in HANDED or self.layer.holds(message, "INVITE"):
            return False
        if method == "CANCEL":
            if self.layer.holds(message, "CANCEL"):
                return False  # a retransmission of one answered here
            return self._seal_to(workers.siblings, data, source)
        # The ACK of a 2xx carries our Record-Route, that of a non-2xx the INVITE's
        # Route (§17.1.1.3): one without may be a sibling's, and is the role's too.
        if "route" not in message.headers and time.monotonic() < self._changed_until:
            self._seal_to(workers.siblings, data, source)
        return False

    def _seal_to(self, ports: tuple[int, ...], data: bytes, source: Address) -> bool:
        """Hand ``data`` from ``source`` to the workers on ``ports``; False when it
        does not fit in a datagram (it is then this worker's to deal with)."""
        own, udp = self._own, self._udp
        assert own is not None and udp is not None and udp.address is not None
        sealed = seal(self._handover_key, source, data, time.time())
        if len(sealed) > MAX_DATAGRAM:
            return False
        for port in ports:
            own.send(sealed, udp.address._replace(port=port))
        self._handovers["handed"].inc()
        return True

    def _from_sibling(self, datagram: bytes, sibling: Address) -> None:
        """A handover on our own socket: taken as if from its source when it belongs
        here (a response, a CANCEL or ACK of an INVITE held here), else dropped."""
        opened = unseal(self._handover_key, datagram, time.time())
        if opened is None:
            self._handovers["forged"].inc()
            held = self._quiet.admit(("handover_forged", sibling.host))
            if held is not None:
                event(log, "handover_forged", logging.WARNING, source=sibling, repeated=held)
            return
        source, data = opened
        try:
            message = parse_message(data)
            if type(message) is Request and not (
                self.layer.holds(message, "INVITE")
                or (message.method == "CANCEL" and self.layer.holds(message, "CANCEL"))
            ):
                self._handovers["unmatched"].inc()
                return
            actions = self.layer.receive(message, source)
        except ParseError:
            self._handovers["unmatched"].inc()  # it parsed at the sibling's: not ours to answer
            return
        except Exception:
            self._core_error("handover", source)
            return
        self._handovers["taken"].inc()
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
            sent = send(data, dest, action.txn)
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

    def unsent(self, waiters: list[object], error: str) -> None:
        """Requests written on a TCP/TLS connection that never came up (refused,
        unreachable, a failed handshake): their client transactions end with a
        503 at the next tick (RFC 3261 §16.9), not a 408 after timer B."""
        for txn in waiters:
            if isinstance(txn, ClientTransaction):
                self.layer.transport_error(txn, error)

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
