"""The B2BUA's decisions: every callback of its node.

A new INVITE from a trusted peer (the proxies), with the caller's
P-Asserted-Identity (whose account it bills), is the A leg of a call; we
answer it as a UAS and open the B leg as a UAC toward the next hop
(``b2bua.nexthop``), moving to the next one on a 503 or on silence for
``failover_timeout`` before anything reaches the caller. Responses,
ACK, BYE, CANCEL, re-INVITE, UPDATE, INFO and PRACK cross between the legs
by Call-ID (one table entry per leg); BYE from either side ends both legs.

Calls find their way by context objects on transactions (``Call`` for the
B leg's INVITE, ``Relay`` for a request sent on, ``Own`` for our BYEs and
refreshes, ``Hop`` for probes): no task per call. The licence check and the
relay's offer/answer are awaited in done callbacks of futures, and only for
calls that need them. Failover, duration limit and session timers run from
``expire``, which one periodic callback calls (``start``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from sipline.logs import event
from sipline.net.handler import Handler
from sipline.net.metrics import RoleCounts
from sipline.peers import TrustedPeers
from sipline.proxying.deadlines import Timers
from sipline.sip.address import Address
from sipline.sip.dialog import Dialog
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_branch, new_call_id, new_tag
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction, State, Transaction

from .accounts import asserted_aor
from .call import Call, Leg, Own, Phase, Relay
from .legs import (
    ACCOUNT_HEADER,
    MEDIA_CALL_HEADER,
    REQUEST_HEADERS,
    Local,
    b_invite,
    crossing_response,
    next_hop_address,
    with_supported,
)
from .nexthop import Hop, NextHops, dialled_number
from .sessiontimer import (
    SessionTimer,
    TooSmall,
    from_response,
    min_se,
    negotiate_uas,
    offer_headers,
    session_expires,
)

if TYPE_CHECKING:
    from sipline.net.node import Node

log = logging.getLogger("sipline.b2bua")

TICK = 0.05  # seconds between runs of the call timers
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO"
SUPPORTED = "timer"
# In-dialog requests that cross to the other leg (BYE ends both instead).
RELAYED = frozenset(("INVITE", "UPDATE", "INFO", "PRACK", "MESSAGE", "NOTIFY", "REFER", "OPTIONS"))
FAILOVER_STATUS = frozenset((503, 408))
# What the handler counts (exported as sipline_b2bua_<name>_total on /metrics).
COUNTED = {
    "calls": "INVITEs from trusted peers that opened a call",
    "answered": "Calls answered by the far side (a 2xx on the B leg)",
    "failovers": "B-leg INVITEs sent to the next hop after a 503, 408 or silence",
    "failed": "Calls ended before an answer with a final error to the caller (487 included)",
    "untrusted": "INVITEs refused 403 because they came from no trusted peer",
    "unidentified": "INVITEs refused 403 because they carried no P-Asserted-Identity",
    "refused": "Calls refused 403 by their account's licence",
    "admission_errors": "Licence checks that failed (the call went through uncounted)",
    "media_errors": "Relay requests (offer, answer) that failed: the SDP went through as it came",
}


class Admission(Protocol):
    allowed: bool
    reason: str


class AccountsLike(Protocol):
    def account_of(self, aor: str) -> str | None: ...


class LicencesLike(Protocol):
    def licensed(self, account: str | None) -> bool: ...

    async def admit(self, account: str | None, call_id: str, now: float | None = None) -> Any: ...

    async def release(self, account: str | None, call_id: str) -> None: ...


class MediaLike(Protocol):
    def wants(self, request: Request, source: Address) -> bool: ...

    def caller(self, request: Request, source: Address) -> Address: ...

    def offer(
        self,
        call_id: str,
        from_tag: str,
        sdp: bytes,
        source: Address | None,
        *,
        to_tag: str | None = None,
    ) -> asyncio.Future[bytes]: ...

    def answer(
        self, call_id: str, from_tag: str, to_tag: str, sdp: bytes
    ) -> asyncio.Future[bytes]: ...

    def delete(self, call_id: str, from_tag: str) -> None: ...


class B2buaHandler(Handler):
    """``settings`` needs the [b2bua] and [sip] sections; ``accounts``,
    ``licences`` and ``media`` are optional (b2bua.accounts, b2bua.licences,
    b2bua.media); ``clock`` is monotonic time (a fake one in tests)."""

    def __init__(
        self,
        settings: Any,
        *,
        accounts: AccountsLike | None = None,
        licences: LicencesLike | None = None,
        media: MediaLike | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        b2bua = settings.b2bua
        self.server_header: str = settings.sip.server_header
        self.trusted = TrustedPeers(b2bua.trusted)
        self.hops = NextHops.from_settings(b2bua)
        self.failover_timeout: float = b2bua.failover_timeout
        self.max_duration: float = b2bua.max_call_duration
        self.session_expires: int = b2bua.session_expires
        self.min_se: int = b2bua.min_se
        self.probe_interval: float = b2bua.probe_interval
        self.accounts = accounts
        self.licences = licences
        self.media = media
        self.clock = clock
        self.legs: dict[str, Leg] = {}  # Call-ID of either leg -> that leg
        self.failover: Timers[Call] = Timers()
        self.duration: Timers[Call] = Timers()
        self.sessions: Timers[Leg] = Timers()
        self.metrics = RoleCounts("b2bua", COUNTED)
        self.metrics.watch("calls_active", "Calls in progress", self.__len__)
        self.counts = self.metrics.values  # plain ints, bumped on the call path
        self._node: Node | None = None
        self._locals: dict[str, Local] = {}
        self._next_probe = 0.0
        self.probing = True  # OPTIONS to the next hops (off while draining)
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- life -------------------------------------------------------------------------
    def start(self, node: Node) -> None:
        """Run the timers and the probes from one periodic callback (the node listens)."""
        self._node = node
        self._tick_handle = asyncio.get_running_loop().call_later(TICK, self._tick)

    def close(self) -> None:
        self.metrics.unwatch()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    def _tick(self) -> None:
        self._tick_handle = asyncio.get_running_loop().call_later(TICK, self._tick)
        if self._node is not None:
            try:
                self.expire(self._node, self.clock())
            except Exception:
                log.exception("event=b2bua_error where=expire")

    def local(self, node: Node, transport: str = "UDP") -> Local:
        local = self._locals.get(transport)
        if local is None:
            local = self._locals[transport] = Local(node.local_address(transport))
        return local

    def __len__(self) -> int:
        """Calls in progress."""
        return sum(1 for leg in self.legs.values() if leg is leg.call.a)

    # -- requests ---------------------------------------------------------------------
    def on_request(
        self, node: Node, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        self._node = node
        try:
            if txn is None:
                self._ack(node, request)
            elif request.method == "CANCEL":
                self._cancel(node, request, txn)
            elif request.to.tag is not None:
                self._in_dialog(node, request, txn)
            elif request.method == "INVITE":
                self._invite(node, request, txn, source)
            elif request.method == "OPTIONS":
                status = 200 if self.trusts(source) else 403
                reason = None if status == 200 else "Forbidden: not a trusted peer"
                self._answer(node, txn, status, reason, stateless=True)
            else:
                self._answer(node, txn, 405, "Method Not Allowed outside a call")
        except ParseError as exc:
            if txn is not None and request.method != "ACK":
                call = txn.context
                if type(call) is Call and call.phase is not Phase.ENDED:
                    self._fail(node, call, 400, f"Bad Request: {exc.reason}")
                else:
                    self._answer(node, txn, 400, f"Bad Request: {exc.reason}")

    def trusts(self, source: Address) -> bool:
        """One of the proxies ``b2bua.trusted`` names: the only ones that may open calls."""
        return self.trusted.trusts(source)

    def _invite(
        self, node: Node, request: Request, txn: ServerTransaction, source: Address
    ) -> None:
        if not self.trusts(source):
            self.counts["untrusted"] += 1
            event(log, "call_refused", reason="untrusted", source=source, call_id=request.call_id)
            self._answer(node, txn, 403, "Forbidden: not a trusted peer", stateless=True)
            return
        caller = asserted_aor(request)  # whose call it is: the proxy's word, never the From
        if caller is None:
            self.counts["unidentified"] += 1
            event(log, "call_refused", reason="unidentified", source=source, call_id=request.call_id)
            reason = "Forbidden: no P-Asserted-Identity from the proxy"
            self._answer(node, txn, 403, reason, stateless=True)
            return
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            self._answer(node, txn, 483, "Too Many Hops")
            return
        if not request.contacts:  # parsed once: the dialog reuses it
            self._answer(node, txn, 400, "Bad Request: INVITE without Contact")
            return
        call_id = request.call_id
        if call_id in self.legs:
            self._answer(node, txn, 482, "Loop Detected: this Call-ID is a call here already")
            return
        timer = negotiate_uas(request, self.session_expires, self.min_se)
        if isinstance(timer, TooSmall):
            response = request.response(422, to_tag=new_tag())
            response.headers.add("Min-SE", str(timer.min_se))
            self._respond(node, txn, response)
            return
        a_local = self.local(node, source.transport)
        b_local = self.local(node)
        from_tag = request.from_.tag or ""
        call = Call(new_tag(), from_tag, new_tag(), txn, self.clock())
        call.a = Leg(call, "A", call_id, a_local, timer=timer)
        call.b = Leg(call, "B", new_call_id(b_local.host), b_local)
        call.a.update_allowed = _allows_update(request)
        call.b_sdp = request.body
        txn.context = call
        self.legs[call_id] = call.a
        self.legs[call.b.call_id] = call.b
        self.counts["calls"] += 1
        if self.accounts is not None:
            call.account = self.accounts.account_of(caller)
        if self.licences is not None and self.licences.licensed(call.account):
            # A task only for calls that count against a licence (the others go straight on).
            self._spawn(
                self.licences.admit(call.account, call_id),
                lambda done: self._guarded(node, call, self._admitted, done),
            )
            return
        self._offer(node, call, source)

    def _guarded(self, node: Node, call: Call, work: Callable[..., None], *args: Any) -> None:
        """Run a future's callback for ``call``: what it raises fails the call, not the loop."""
        try:
            work(node, call, *args)
        except Exception:
            log.exception("event=b2bua_error where=%s call_id=%s", work.__name__, call.call_id)
            if call.phase is not Phase.ENDED:
                self._fail(node, call, 500, "Server Internal Error")

    def _admitted(self, node: Node, call: Call, done: asyncio.Future[Any]) -> None:
        if call.phase is Phase.ENDED:
            if not done.cancelled() and done.exception() is None and done.result().allowed:
                call.admitted = True
                self._release(call)
            return
        try:
            admission = done.result()
        except Exception as exc:
            # Counters unreachable: let the call through rather than fail every call.
            self.counts["admission_errors"] += 1
            event(log, "admission_failed", logging.WARNING, call_id=call.call_id, error=exc)
            admission = None
        if admission is not None and not admission.allowed:
            self.counts["refused"] += 1
            reason = admission.reason or "Licence Exceeded"
            event(log, "call_refused", call_id=call.call_id, account=call.account, reason=reason)
            self._fail(node, call, 403, reason)
            return
        call.admitted = admission is not None
        server = call.server
        self._offer(node, call, server.source if server is not None else None)

    def _offer(self, node: Node, call: Call, source: Address | None) -> None:
        """Anchor the caller's offer at the relay if the call needs it, then call out."""
        media, server = self.media, call.server
        if media is not None and server is not None and source is not None and call.b_sdp:
            if media.wants(server.request, source):
                call.media = call.offering = True
                caller = media.caller(server.request, source)
                future = media.offer(call.call_id, call.a_from_tag, call.b_sdp, caller)
                future.add_done_callback(
                    lambda done: self._guarded(node, call, self._offered, done)
                )
                return
        self._call_out(node, call)

    def _offered(self, node: Node, call: Call, done: asyncio.Future[bytes]) -> None:
        call.offering = False
        try:
            call.b_sdp = done.result()
        except Exception as exc:
            self.counts["media_errors"] += 1
            event(log, "media_not_anchored", logging.WARNING, call_id=call.call_id, error=exc)
            call.media = False  # through as it came
        if call.phase is Phase.ENDED:
            if call.media:
                self._media_delete(call)
            return
        self._call_out(node, call)

    def _call_out(self, node: Node, call: Call) -> None:
        server = call.server
        assert server is not None
        call.phase = Phase.CALLING
        call.plan = self.hops.plan(dialled_number(server.request))
        self._try_next(node, call)

    def _try_next(self, node: Node, call: Call) -> None:
        """Send the B leg's INVITE to the plan's next hop; with none left, fail upstream."""
        plan = call.plan
        assert plan is not None
        hop = plan.next()
        if hop is None:
            last = call.last_failure
            if last is not None and last.status not in FAILOVER_STATUS:
                self._fail(node, call, last.status, last.reason)
            elif last is not None and last.status == 503:
                self._fail(node, call, 503, "Service Unavailable: no next hop took the call")
            else:
                self._fail(node, call, 408, "Request Timeout: no next hop answered")
            return
        if plan.tried > 1:
            self.counts["failovers"] += 1
        self._send_invite(node, call, hop)

    def _send_invite(self, node: Node, call: Call, hop: Hop) -> None:
        server = call.server
        assert server is not None
        a = server.request
        call.hop = hop
        call.cseq += 1
        external = call.plan is not None and call.plan.route is not None
        extra = offer_headers(self._b_interval(call), self.min_se)
        if not external:  # internal headers only toward our own ACR nodes
            if call.account is not None:
                extra.append((ACCOUNT_HEADER, call.account))
            if call.media:
                extra.append((MEDIA_CALL_HEADER, call.call_id))
        request = b_invite(
            a, call.b.local, call_id=call.b.call_id, from_tag=call.b_tag, cseq=call.cseq,
            body=call.b_sdp, supported=with_supported(a.headers.get("supported"), SUPPORTED),
            extra=extra, external=external,
        )  # fmt: skip
        call.b_invite = request
        call.b.sdp = call.b_sdp
        txn = node.send_request(request, hop.address)
        txn.context = call
        call.client = txn
        self.failover.arm(call, self.clock(), self.failover_timeout)

    def _b_interval(self, call: Call) -> int:
        timer = call.b.timer
        return timer.interval if timer is not None and call.refreshed_se else self.session_expires

    # -- CANCEL and ACK -----------------------------------------------------------------
    def _cancel(self, node: Node, request: Request, txn: ServerTransaction) -> None:
        invite = txn.cancels
        if invite is None:
            self._answer(node, txn, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(node, txn, request.response(200))
        call = invite.context
        if type(call) is not Call or invite.state is not State.PROCEEDING:
            return  # answered already: the CANCEL changes nothing (RFC 3261 §9.2)
        self._fail(node, call, 487, "Request Terminated")

    def _ack(self, node: Node, request: Request) -> None:
        leg = self.legs.get(request.call_id)
        if leg is None:
            return
        call = leg.call
        relay = call.reinvite
        if (
            relay is not None
            and relay.source is leg
            and request.cseq.number == relay.server.request.cseq.number
        ):
            if not relay.acked:
                relay.acked = True
                self._send_ack(node, leg.peer, relay.cseq, request)
            return
        if leg is call.a and call.phase is Phase.ANSWERED:
            call.phase = Phase.CONFIRMED
            self._send_ack(node, call.b, call.cseq, request)
            # What only a retransmission would have needed goes now; the caller's
            # INVITE transaction lingers 32 s (RFC 6026 timer L) without the call.
            call.answer = None
            if call.server is not None:
                call.server.context = None
            call.server = None
            call.b_invite = None

    def _send_ack(self, node: Node, leg: Leg, cseq: int, request: Request | None) -> None:
        dialog = leg.dialog
        if dialog is None:
            return
        body = request.body if request is not None else b""
        content_type = request.headers.get("content-type") if body and request is not None else None
        if body:
            leg.sdp = body
        ack, hop = dialog.create_ack(
            cseq, via=leg.local.via(), body=body, content_type=content_type
        )
        node.send_stateless(ack, next_hop_address(hop))

    # -- in-dialog requests -------------------------------------------------------------
    def _in_dialog(self, node: Node, request: Request, txn: ServerTransaction) -> None:
        leg = self.legs.get(request.call_id)
        call = leg.call if leg is not None else None
        if leg is None or call is None or not self._ours(leg, request):
            # Anyone may write a To tag: no dialog of ours, no state for it.
            self._answer(node, txn, 481, "Call/Transaction Does Not Exist", stateless=True)
            return
        dialog = leg.dialog
        if dialog is not None and not dialog.receive_request(request):
            self._answer(node, txn, 500, "Server Internal Error: CSeq out of order")
            return
        method = request.method
        if method == "BYE":
            self._respond(node, txn, request.response(200))
            self._end(node, call, leg, "bye")
            return
        if method not in RELAYED:
            self._answer(node, txn, 405, "Method Not Allowed")
            return
        peer = leg.peer
        if peer.dialog is None or call.phase is Phase.ENDED:
            self._answer(node, txn, 481, "Call/Transaction Does Not Exist: the other leg is not up")
            return
        if method == "INVITE" and call.reinvite is not None and not call.reinvite.acked:
            self._answer(node, txn, 491, "Request Pending")
            return
        if method in ("INVITE", "UPDATE") and leg.timer is not None:
            asked = session_expires(request)
            if asked is not None and asked[0] < self.min_se:
                response = request.response(422)
                response.headers.add("Min-SE", str(self.min_se))
                self._respond(node, txn, response)
                return
        extra: list[tuple[str, str]] = []
        target = peer.dialog
        if method in ("INVITE", "UPDATE"):
            if peer.timer is not None:
                extra += peer.timer.request_headers()
            extra.append(("Supported", SUPPORTED))
        headers = request.headers
        for name in REQUEST_HEADERS:
            for value in headers.get_all(name):
                if name == "RAck":
                    value = self._rack(call, peer, value)
                extra.append((name, value))
        body = request.body
        if body and method in ("INVITE", "UPDATE", "PRACK", "ACK"):
            peer.sdp = body
        out, hop = target.create_request(
            method, via=peer.local.via(), contact=peer.local.contact, body=body,
            content_type=headers.get("content-type") if body else None, extra=extra,
        )  # fmt: skip
        relay = Relay(call, leg, txn, cseq=out.cseq.number)
        txn.context = relay
        if method == "INVITE":
            call.reinvite = relay
        try:
            dest = next_hop_address(hop)
        except ParseError as exc:
            self._answer(node, txn, 502, f"Bad Gateway: {exc.reason}")
            return
        media = self.media
        if call.media and body and media is not None and method in ("INVITE", "UPDATE"):
            # A new offer in an anchored call: anchored again (one ng call, the A leg's tags).
            relay.anchored = True
            if leg is call.a:
                future = media.offer(call.call_id, call.a_from_tag, body, None)
            else:
                future = media.offer(call.call_id, call.a_tag, body, None, to_tag=call.a_from_tag)
            future.add_done_callback(
                lambda done: self._guarded(node, call, self._reoffered, relay, out, dest, done)
            )
            return
        client = node.send_request(out, dest)
        client.context = relay

    def _reoffered(
        self,
        node: Node,
        call: Call,
        relay: Relay,
        out: Request,
        dest: Address,
        done: asyncio.Future[bytes],
    ) -> None:
        try:
            out.body = done.result()
            relay.source.peer.sdp = out.body
        except Exception as exc:
            self.counts["media_errors"] += 1
            event(log, "media_not_anchored", logging.WARNING, call_id=call.call_id, error=exc)
            relay.anchored = False  # on as it came
        if call.phase is Phase.ENDED:
            self._answer(node, relay.server, 481, "Call/Transaction Does Not Exist")
            return
        client = node.send_request(out, dest)
        client.context = relay

    def _ours(self, leg: Leg, request: Request) -> bool:
        """The request's tags are this leg's dialog (a made-up To tag is not enough)."""
        call = leg.call
        if leg is call.a:
            return request.to.tag == call.a_tag
        dialog = leg.dialog
        return dialog is not None and request.to.tag == dialog.id.local_tag

    @staticmethod
    def _rack(call: Call, peer: Leg, value: str) -> str:
        # RFC 3262 §7.2: "RSeq CSeq method"; the CSeq is the INVITE's on the other leg.
        parts = value.split()
        if len(parts) == 3 and parts[2].upper() == "INVITE":
            cseq = (
                call.cseq
                if peer is call.b
                else (call.server.request.cseq.number if call.server else 1)
            )
            return f"{parts[0]} {cseq} INVITE"
        return value

    # -- responses ----------------------------------------------------------------------
    def on_response(
        self, node: Node, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        self._node = node
        if txn is None:
            self._stray(node, response)
            return
        context = txn.context
        try:
            kind = type(context)
            if kind is Call:
                self._invite_response(node, context, response, txn)
            elif kind is Relay:
                self._relay_response(node, context, response, txn)
            elif kind is Own:
                self._own_response(node, context, response, txn)
            elif kind is Hop and response.status >= 200:
                self._probed(context, response.status != 503)  # 503: draining or overloaded
        except ParseError as exc:
            event(log, "bad_response", logging.DEBUG, call_id=response.call_id, reason=exc.reason)

    def _invite_response(
        self, node: Node, call: Call, response: Response, txn: ClientTransaction
    ) -> None:
        status = response.status
        if txn is not call.client or call.phase is Phase.ENDED:
            if 200 <= status < 300 and not self._ours_already(call, response):
                self._hang_up_stray(node, txn.request, response)
            return
        self.failover.disarm(call)
        if status == 100:
            return
        if status < 200:
            self._b_dialog(call, txn.request, response)
            self._to_caller(node, call, response)
        elif status < 300:
            if call.phase is not Phase.CALLING:
                dialog = call.b.dialog
                if dialog is not None and dialog.id.remote_tag == response.to.tag:
                    self._retransmitted_2xx(node, call, response)
                else:
                    self._hang_up_stray(node, txn.request, response)  # another fork's
                return
            self._b_dialog(call, txn.request, response)
            call.b.timer = from_response(response)
            call.b.update_allowed = _allows_update(response)
            call.phase = Phase.ANSWERED
            self.counts["answered"] += 1
            self._to_caller(node, call, response)
        elif status in FAILOVER_STATUS:
            call.last_failure = response
            self._try_next(node, call)
        elif status == 422 and not call.refreshed_se and (floor := min_se(response)) > 0:
            call.refreshed_se = True
            call.b.timer = SessionTimer(floor, True)
            assert call.hop is not None
            self._send_invite(node, call, call.hop)
        else:
            self._fail(node, call, status, response.reason, response)

    @staticmethod
    def _ours_already(call: Call, response: Response) -> bool:
        """A 2xx of the B leg's dialog once confirmed (the call may have ended since)."""
        dialog = call.b.dialog
        return (
            dialog is not None
            and dialog.state != "early"
            and dialog.id.remote_tag == response.to.tag
            and call.answer is None
            and call.phase is not Phase.CALLING
        )

    def _b_dialog(self, call: Call, request: Request, response: Response) -> None:
        if response.to.tag is None:
            return
        dialog = call.b.dialog
        if dialog is None or dialog.id.remote_tag != response.to.tag:
            call.b.dialog = Dialog.uac(request, response)
        else:
            dialog.update_from_response(response)

    def _to_caller(self, node: Node, call: Call, response: Response) -> None:
        """A 1xx or 2xx of the B leg goes to the caller, its answer anchored first if need be."""
        if response.body and call.media and self.media is not None:
            if call.answering:
                return  # a retransmission while the relay works on the first
            call.answering = True
            future = self.media.answer(call.call_id, call.a_from_tag, call.a_tag, response.body)
            future.add_done_callback(
                lambda done: self._guarded(node, call, self._answered, response, done)
            )
            return
        self._send_to_caller(node, call, response, response.body)

    def _answered(
        self, node: Node, call: Call, response: Response, done: asyncio.Future[bytes]
    ) -> None:
        call.answering = False
        try:
            body = done.result()
        except Exception as exc:
            self.counts["media_errors"] += 1
            event(log, "media_answer_failed", logging.WARNING, call_id=call.call_id, error=exc)
            body = response.body
        if call.phase is Phase.ENDED:
            return
        self._send_to_caller(node, call, response, body)

    def _send_to_caller(self, node: Node, call: Call, response: Response, body: bytes) -> None:
        server = call.server
        if server is None:
            return
        status = response.status
        a = call.a
        extra = a.timer.response_headers() if status >= 200 and a.timer is not None else ()
        if status >= 200:
            extra = [*extra, ("Supported", SUPPORTED)]
        out = crossing_response(
            server.request, response, to_tag=call.a_tag, contact=a.local.contact,
            record_route=True, body=body, extra=extra,
        )  # fmt: skip
        if body:
            a.sdp = body
        if a.dialog is None:
            a.dialog = Dialog.uas(server.request, out)
        a.dialog.send_response(out)
        if status >= 200:
            call.answer = out
            now = self.clock()
            self.duration.arm(call, now, self.max_duration)
            for leg in (a, call.b):
                if leg.timer is not None:
                    self.sessions.arm(leg, now, leg.timer.due_in)
        self._respond(node, server, out)

    def _retransmitted_2xx(self, node: Node, call: Call, response: Response) -> None:
        """The B leg sends its 2xx again: our ACK was lost, or the caller's has not come."""
        if call.phase is Phase.CONFIRMED:
            self._send_ack(node, call.b, call.cseq, None)
        elif call.answer is not None and call.server is not None:
            node.respond(call.server, call.answer)

    def _relay_response(
        self, node: Node, relay: Relay, response: Response, txn: ClientTransaction
    ) -> None:
        status = response.status
        if status == 100:
            return
        call = relay.call
        peer = relay.source.peer
        if peer.dialog is not None and response.to.tag == peer.dialog.id.remote_tag:
            peer.dialog.update_from_response(response)
        server = relay.server
        if call.phase is Phase.ENDED and 200 <= status < 300 and txn.method == "INVITE":
            # A 2xx to a re-INVITE that crossed the BYE: ACKed (§13.2.2.4), not sent on.
            self._send_ack(node, peer, relay.cseq, None)
            return
        if 200 <= status < 300 and relay.answer is not None:
            # A 2xx to a re-INVITE again: our ACK was lost, or the other side's has not come.
            if relay.acked:
                self._send_ack(node, peer, relay.cseq, None)
            else:
                node.respond(server, relay.answer)
            return
        if relay.anchored and response.body and status < 300 and self.media is not None:
            if relay.answering:
                return  # a retransmission while the relay works on the first
            relay.answering = True
            if relay.source is call.a:
                tags = (call.a_from_tag, call.a_tag)
            else:
                tags = (call.a_tag, call.a_from_tag)
            future = self.media.answer(call.call_id, *tags, response.body)
            future.add_done_callback(
                lambda done: self._guarded(node, call, self._reanswered, relay, response, done)
            )
            return
        self._relay_on(node, relay, response, response.body)

    def _reanswered(
        self, node: Node, call: Call, relay: Relay, response: Response, done: asyncio.Future[bytes]
    ) -> None:
        relay.answering = False
        try:
            body = done.result()
        except Exception as exc:
            self.counts["media_errors"] += 1
            event(log, "media_answer_failed", logging.WARNING, call_id=call.call_id, error=exc)
            body = response.body
        if response.status >= 200:
            relay.anchored = False  # answered: a 2xx again is a retransmission
        self._relay_on(node, relay, response, body)

    def _relay_on(self, node: Node, relay: Relay, response: Response, body: bytes) -> None:
        """The response to a request sent on goes back to the leg the request came on."""
        status = response.status
        call = relay.call
        peer = relay.source.peer
        server = relay.server
        method = server.method
        source = relay.source
        extra: list[tuple[str, str]] = []
        if 200 <= status < 300 and method in ("INVITE", "UPDATE"):
            timer = from_response(response)
            if timer is not None and peer.timer is not None:
                peer.timer = timer
            if peer.timer is not None and call.phase is not Phase.ENDED:
                self.sessions.arm(peer, self.clock(), peer.timer.due_in)
            if source.timer is not None:
                extra += source.timer.response_headers()
                if call.phase is not Phase.ENDED:
                    self.sessions.arm(source, self.clock(), source.timer.due_in)
        contact = source.local.contact if method in ("INVITE", "UPDATE") else None
        out = crossing_response(
            server.request, response, to_tag=None, contact=contact, record_route=False,
            body=body, extra=extra,
        )  # fmt: skip
        if out.body and method in ("INVITE", "UPDATE", "PRACK"):
            source.sdp = out.body
        if method == "INVITE" and status >= 200:
            if status < 300:
                relay.answer = out
            elif call.reinvite is relay:
                call.reinvite = None  # its ACK stays with the transactions
        self._respond(node, server, out)
        if status in (408, 481) and call.phase is not Phase.ENDED:
            self._end(node, call, None, f"{status} in dialog")

    def _own_response(
        self, node: Node, own: Own, response: Response, txn: ClientTransaction
    ) -> None:
        status = response.status
        if status < 200:
            return
        leg, call = own.leg, own.call
        if txn.method == "BYE":
            return
        # A session refresh of ours (RFC 4028 §10).
        if leg.dialog is not None and response.to.tag == leg.dialog.id.remote_tag:
            leg.dialog.update_from_response(response)
        if status < 300:
            if txn.method == "INVITE":
                self._send_ack(node, leg, txn.request.cseq.number, None)
            timer = from_response(response)
            if timer is not None:
                leg.timer = timer
        elif status in (408, 481) and call.phase is not Phase.ENDED:
            self._end(node, call, None, "refresh failed")

    def _stray(self, node: Node, response: Response) -> None:
        """A 2xx whose transaction is gone (RFC 6026): ACK it again if it is a call's."""
        if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
            return
        leg = self.legs.get(response.call_id)
        if leg is not None and leg is leg.call.b and leg.call.phase is Phase.CONFIRMED:
            self._send_ack(node, leg, response.cseq.number, None)

    def _hang_up_stray(self, node: Node, request: Request, response: Response) -> None:
        """A 2xx for an INVITE given up on (failover, CANCEL crossing a 200): ACK and BYE it."""
        try:
            dialog = Dialog.uac(request, response)
        except ParseError:
            return
        via = request.via
        local_via = f"SIP/2.0/{via.transport} {via.host}:{via.port};branch="
        ack, hop = dialog.create_ack(request.cseq.number, via=f"{local_via}{new_branch()};rport")
        dest = next_hop_address(hop)
        node.send_stateless(ack, dest)
        bye, hop = dialog.create_request("BYE", via=f"{local_via}{new_branch()};rport")
        node.send_request(bye, next_hop_address(hop))
        event(log, "stray_answer_hung_up", logging.DEBUG, call_id=response.call_id)

    # -- transactions ending ----------------------------------------------------------------
    def on_timeout(self, node: Node, txn: Transaction) -> None:
        self._node = node
        context = txn.context
        kind = type(context)
        if kind is Call:
            call = context
            if txn is call.client and call.phase is Phase.CALLING:
                self.failover.disarm(call)
                call.last_failure = None
                self._try_next(node, call)
        elif kind is Relay:
            if isinstance(txn, ClientTransaction):
                relay = context
                self._answer(
                    node, relay.server, 408, "Request Timeout: no answer from the other side"
                )
                self._end(node, relay.call, None, "timeout in dialog")
        elif kind is Own:
            if txn.method != "BYE" and context.call.phase is not Phase.ENDED:
                self._end(node, context.call, None, "refresh timed out")

    def on_terminated(self, node: Node, txn: Transaction) -> None:
        """Break the references between the layer's transaction and the call at once:
        the B leg's INVITE (parsed) goes with its transaction, not with the call."""
        context = txn.context
        txn.context = None
        if type(context) is Call:
            if context.client is txn:
                context.client = None
            if context.server is txn:
                context.server = None
                if context.phase is Phase.ANSWERED:
                    # 64*T1 of 2xx without the caller's ACK: the session ends (RFC 3261 §13.3.1.4).
                    self._end(node, context, None, "no ACK from the caller")

    # -- probes -------------------------------------------------------------------------------
    def _probe(self, node: Node) -> None:
        local = self.local(node)
        for hop in self.hops.hops.values():
            if hop.probing:  # unanswered since the last round
                self._probed(hop, False)
            uri = f"sip:{hop.address.host}:{hop.address.port}"
            request = Request("OPTIONS", uri)
            headers = request.headers
            headers.add("Via", local.via())
            headers.add("Max-Forwards", "70")
            headers.add("From", f"<sip:b2bua@{local.host}:{local.port}>;tag={new_tag()}")
            headers.add("To", f"<{uri}>")
            headers.add("Call-ID", new_call_id(local.host))
            headers.add("CSeq", "1 OPTIONS")
            headers.add("Content-Length", "0")
            hop.probing = True
            txn = node.send_request(request, hop.address)
            txn.context = hop

    def _probed(self, hop: Hop, answered: bool) -> None:
        if not hop.probing:
            return  # a late answer, counted as failed already
        if self.hops.probed(hop, answered):
            event(log, "next_hop_up" if hop.up else "next_hop_down", hop=str(hop))

    # -- ending calls --------------------------------------------------------------------------
    def _fail(
        self, node: Node, call: Call, status: int, reason: str, response: Response | None = None
    ) -> None:
        """End a call that was not answered: ``status`` to the caller, CANCEL the B leg."""
        server = call.server
        if server is not None and server.state is State.PROCEEDING:
            self.counts["failed"] += 1
            if response is not None:
                out = crossing_response(
                    server.request, response, to_tag=call.a_tag, contact=None, record_route=False
                )
            else:
                out = server.request.response(status, reason, to_tag=call.a_tag)
            self._respond(node, server, out)
        client = call.client
        if client is not None and client.state in (State.CALLING, State.PROCEEDING):
            node.cancel(client)
        elif call.phase is Phase.ANSWERED and call.b.dialog is not None:
            # The far side answered while the relay rewrote its answer: ACK and BYE it.
            self._send_ack(node, call.b, call.cseq, None)
            self._bye(node, call.b)
        self._forget(call)

    def _end(self, node: Node, call: Call, origin: Leg | None, why: str) -> None:
        """End a call in any phase: BYE each leg that is up but ``origin``."""
        if call.phase is Phase.ENDED:
            return
        if call.phase in (Phase.ADMITTING, Phase.CALLING):
            if origin is call.b:
                self._fail(node, call, 480, f"Temporarily Unavailable: {why}")
            else:
                self._fail(node, call, 487, "Request Terminated")
            return
        relay = call.reinvite
        if relay is not None and not relay.acked:
            if relay.answer is not None:  # its 2xx went on, its ACK will not come now
                self._send_ack(node, relay.source.peer, relay.cseq, None)
            else:  # still pending: answered here (RFC 3261 §15.1.2)
                self._respond(node, relay.server, relay.server.request.response(487))
        if call.phase is Phase.ANSWERED:
            # The caller's ACK has not come, so ours to the far side's 2xx has not gone:
            # every 2xx is ACKed before its dialog is ended (RFC 3261 §13.2.2.4, §15).
            self._send_ack(node, call.b, call.cseq, None)
        # Answered but no 2xx to the caller yet (the relay rewrites it): an early dialog at most.
        early = call.phase is Phase.ANSWERED and call.answer is None
        if early:
            self._unanswered(node, call, why)
        for leg in (call.a, call.b):
            if leg is origin or (early and leg is call.a):
                continue
            if leg.dialog is not None and leg.dialog.state != "terminated":
                self._bye(node, leg)
        event(log, "call_ended", logging.DEBUG, call_id=call.call_id, why=why)
        self._forget(call)

    def _unanswered(self, node: Node, call: Call, why: str) -> None:
        """The call ends before its 2xx reached the caller (a BYE while the relay
        rewrote it): a BYE must not end the caller's early dialog (RFC 3261 §15),
        so its INVITE gets its final answer. 487, as §15.1.2 has a UAS answer an
        INVITE whose early dialog a BYE ended: the request was terminated, by a
        BYE; unlike a 5xx it invites no retry elsewhere of a call that was
        answered and hung up, and it ends the ACR's and proxies' hunts."""
        server = call.server
        if server is None or server.state is not State.PROCEEDING:
            return
        self.counts["failed"] += 1
        reason = f"Request Terminated: {why} before the answer reached you"
        self._respond(node, server, server.request.response(487, reason, to_tag=call.a_tag))

    def _bye(self, node: Node, leg: Leg) -> None:
        dialog = leg.dialog
        assert dialog is not None
        request, hop = dialog.create_request("BYE", via=leg.local.via())
        try:
            dest = next_hop_address(hop)
        except ParseError:
            return
        node.send_request(request, dest)  # its answer needs nothing of the call

    def _forget(self, call: Call) -> None:
        call.phase = Phase.ENDED
        legs = self.legs
        for leg in (call.a, call.b):
            if legs.get(leg.call_id) is leg:
                del legs[leg.call_id]
            self.sessions.disarm(leg)
        self.failover.disarm(call)
        self.duration.disarm(call)
        client = call.client
        if client is not None and client.state is State.ACCEPTED:
            # Answered and ended: it lingers 32 s (timer M) for 2xx retransmissions,
            # which need no call (a fork's 2xx then goes unanswered: its UAS gives up).
            client.context = None
        call.answer = None
        call.b_invite = None
        call.server = None
        call.client = None
        call.reinvite = None
        if call.media and not call.offering:
            self._media_delete(call)
        if call.admitted:
            self._release(call)

    def _media_delete(self, call: Call) -> None:
        call.media = False
        if self.media is not None:
            try:
                self.media.delete(call.call_id, call.a_from_tag)
            except Exception as exc:
                event(log, "media_delete_failed", logging.WARNING, call_id=call.call_id, error=exc)

    def _release(self, call: Call) -> None:
        call.admitted = False
        if self.licences is not None:
            self._spawn(self.licences.release(call.account, call.call_id), None)

    def _spawn(self, coroutine: Any, done: Callable[[asyncio.Future[Any]], None] | None) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if done is not None:
            task.add_done_callback(done)

    # -- timers ---------------------------------------------------------------------------------
    def expire(self, node: Node, now: float) -> None:
        """Failover, duration limit, session timers and probes due at ``now`` (monotonic)."""
        for call in self.failover.expire(now):
            if call.phase is Phase.CALLING and call.client is not None:
                node.cancel(call.client)  # goes when (if ever) it answers 1xx (§9.1)
                call.last_failure = None
                event(log, "failover", logging.INFO, call_id=call.call_id, hop=str(call.hop))
                self._try_next(node, call)
        for call in self.duration.expire(now):
            self._end(node, call, None, "duration limit")
        for leg in self.sessions.expire(now):
            self._session_due(node, leg, now)
        if self.probing and now >= self._next_probe:
            self._next_probe = now + self.probe_interval
            if self.hops.hops:
                self._probe(node)

    def _session_due(self, node: Node, leg: Leg, now: float) -> None:
        call, timer = leg.call, leg.timer
        if call.phase is Phase.ENDED or timer is None or leg.dialog is None:
            return
        if not timer.we_refresh:
            self._end(node, call, None, f"session expired on leg {leg.name}")  # RFC 4028 §10
            return
        self.sessions.arm(leg, now, timer.due_in)
        extra = [*timer.request_headers(), ("Supported", SUPPORTED)]
        if leg.update_allowed:
            request, hop = leg.dialog.create_request(
                "UPDATE", via=leg.local.via(), contact=leg.local.contact, extra=extra
            )
        else:
            request, hop = leg.dialog.create_request(
                "INVITE", via=leg.local.via(), contact=leg.local.contact, body=leg.sdp,
                content_type="application/sdp" if leg.sdp else None, extra=extra,
            )  # fmt: skip
        txn = node.send_request(request, next_hop_address(hop))
        txn.context = Own(call, leg)

    # -- answering ------------------------------------------------------------------------------
    def _answer(
        self,
        node: Node,
        txn: ServerTransaction,
        status: int,
        reason: str | None,
        *,
        stateless: bool = False,
    ) -> None:
        """Answer ``txn`` ourselves; ``stateless`` for what nobody vouches for (answered
        once, the transaction forgotten)."""
        request = txn.request
        response = request.response(status, reason, to_tag=new_tag())
        if stateless:
            response.headers.add("Server", self.server_header)
            node.respond_stateless(txn, response)
        else:
            self._respond(node, txn, response)

    def _respond(self, node: Node, txn: ServerTransaction, response: Response) -> None:
        response.headers.add("Server", self.server_header)
        node.respond(txn, response)


def _allows_update(message: Request | Response) -> bool:
    allow = message.headers.get("allow")
    return allow is not None and "UPDATE" in allow.upper()
