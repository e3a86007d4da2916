"""The ACR's SIP handler: a transaction-stateful, record-routing proxy
(RFC 3261 §16) with serial forking over the routing decision's carriers.

Not a B2BUA: the B2BUA in front already hides our topology, so the ACR
forwards the INVITE as a proxy does (Via, Max-Forwards, Record-Route), one
hop at a time. Who sent it decides what it is (``acr.calls.Sources``): from a
carrier's gateway an inbound call, routed by DID to its home proxy (the
backups when that one is down or fails); from a trusted peer an outbound
call, routed by the ranking's ``Decision``; anyone else gets 403.

Failover (serial, §16.6 one branch at a time): 408, 5xx, any failure but the
profile's final codes, or no provisional response within ``pdd_timeout``
(that attempt is CANCELled, §9.1: at once, or at its first 1xx) → the next
gateway or carrier. A CANCEL from upstream cancels the attempt in progress
and is answered 487. Every attempt to a carrier feeds the statistics, the
gateway's passive health and the carrier counters; every call that reached
a carrier gives a CDR, at its final failure or at the BYE of either side
(we record-route, so we see it), or when an in-dialog request we relay gets
408 or 481 (the dialog is gone at one side, §12.2.1.2), or, never hung up,
when it is swept MAX_CALL after its answer (extra {"ended": "swept"}).

A CDR per billable attempt: an attempt that answers after we gave up on it
(its 2xx crossed the caller's CANCEL, or came past the PDD limit) is ACKed
and hung up by us (§15), and the carrier bills it as a connected call, so it
gets a CDR of its own besides the call's: the caller's Call-ID, that
attempt's carrier and gateway, start = answer = its 2xx arrived (the CDR
table's key is Call-ID, node and start: a duplicate would be dropped as a
retried write, and the call's own CDR starts when its INVITE came), end = the final
response to our BYE (when the BYE went out if none came), billed by its
deck's increments, the final code the caller saw (487, the hunt's final
failure, or 200 when another attempt took the call; 408 if our BYE was over
while the hunt still went on), and ``extra`` {"answer": "late"}.

Nothing of a call answered is lost with the node (issue 12): the answer is
appended to the journal (``acr.journal``) and the 2xx goes upstream only once
it is on disk (its retransmissions are not relayed meanwhile); the BYE is
relayed only once the call's CDR is on disk. A restarted node takes the calls
still up back from the journal (``resume``): their BYE, routed to us by our
Record-Route, or the sweep, ends them. A BYE from the B2BUA with ``Reason:
SIP;cause=200;text="ghost"`` hangs up an answer to an INVITE it had given up
on: its CDR says {"answer": "ghost"} and costs nothing.

Our internal headers (X-Sipline-*) are believed only from a trusted peer and
taken off whatever a carrier sends; the B2BUA's never reach a carrier:
X-Sipline-Account (the CDR's account) and X-Sipline-Media-Call (the Call-ID
the relay anchored the call's media under, the B2BUA's A leg's: at the BYE
the statistics fetch the relay's figures for the call by it,
``sipline:relay:call:<it>``). In a dialog, only our signed Record-Route
(``sipline.proxying.signing``) takes a request anywhere.
X-Sipline-Deadline (when the B2BUA gives up on the INVITE unless it hears from
us) is read from a trusted peer: an INVITE past it is answered 408 and routed
nowhere, and so is one that would reach a carrier past it with nothing sent
upstream yet.

Timers: the PDD limit and timer C (§16.8) are ``Deadlines`` run from the
node's tick (``on_tick``, with the prober's rounds), no task or timer handle per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from sipline.carriers.model import Carrier, Cdr, Did
from sipline.config import Settings
from sipline.logs import event
from sipline.proxying.deadlines import Deadlines
from sipline.proxying.internal import strip_internal
from sipline.proxying.responses import best_response, for_upstream
from sipline.proxying.rules import (
    Rejection,
    decrement_max_forwards,
    loop_key,
    next_hop,
    pop_own_via,
    resolve,
    strict_route,
    via_address,
)
from sipline.proxying.stateful import COUNTED as PROXY_COUNTED
from sipline.proxying.stateful import StatefulProxy
from sipline.proxying.stateless import stray_2xx
from sipline.secret import node_secret
from sipline.sip.address import Address
from sipline.sip.dialog import GHOST, Dialog, answered_invite
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction, Transaction

from .billing import bill
from .calls import (
    ACCOUNT_HEADER,
    DEADLINE_HEADER,
    MEDIA_CALL_HEADER,
    Answered,
    Call,
    Hop,
    LateAnswer,
    Source,
    Sources,
    Try,
    address_of,
    caller_of,
    deadline_of,
    dialled_number,
    hop_uri,
    is_ghost,
    media_call_of,
    user_part,
)
from .stats import Attempt

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike

log = logging.getLogger("sipline.acr.router")

TIMER_C = 180.0  # seconds after the last 1xx before an attempt is CANCELled (§16.8)
MAX_CALL = 4 * 3600.0  # an answered call never hung up is closed (CDR) after this long
PASSIVE_FAILURES = frozenset((408, 503))  # a gateway answering these is passed over a while
# An in-dialog request answered so: the dialog is gone at one side (RFC 3261 §12.2.1.2)
DIALOG_GONE = frozenset((408, 481))
INBOUND_FINAL = frozenset((486, 487, 600, 603, 404, 484, 480))
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY"
PAST_DEADLINE = "Request Timeout: deadline passed"


# -- what the router is given (acr.ranking, acr.live, acr.cdrs) --------------------------
class Table(Protocol):
    def decide(self, number: str, now: float) -> Any: ...


class Live(Protocol):
    """acr.live.LiveState: ``.stats``, ``.health``, ``.counters``."""

    stats: Any
    health: Any
    counters: Any


class CdrSink(Protocol):
    """acr.journal.Journal: ``done(on_disk)`` is called once the record is on disk
    (False: the disk refused it)."""

    def answered(self, cdr: Cdr, media_call: str | None, done: Callable[[bool], None]) -> None: ...

    def ended(self, cdr: Cdr, done: Callable[[bool], None] | None = None) -> None: ...

    def add(self, cdr: Cdr) -> None: ...


class Relay:
    """An in-dialog request forwarded to one next hop (BYE, re-INVITE, UPDATE ...)."""

    __slots__ = ("server", "call_id")

    def __init__(self, server: ServerTransaction, call_id: str) -> None:
        self.server: ServerTransaction | None = server
        self.call_id = call_id


# What the ACR counts beyond every stateful proxy's (sipline_acr_<name>_total).
COUNTED = {
    **PROXY_COUNTED,
    "strangers": "Requests refused 403: from no carrier gateway nor trusted peer",
    "invites_past_deadline": "INVITEs answered 408 because the B2BUA had given up on them",
    "ghost_calls": "Answers the B2BUA had given up on, hung up as ghosts (never billed)",
    "strays_hung_up": "Carriers' answers to INVITEs this process never sent (sent before a restart): ACKed and BYEd, never relayed unbilled",
    "calls_resumed": "Answered calls taken back from the journal at start",
    "answers_not_journalled": "Answers sent upstream although the journal could not write them",
}


class AcrRouter(StatefulProxy):
    """Routes every request the ACR node receives.

    ``table`` decides outbound calls (``acr.ranking.RouteTable``), ``live``
    holds the shared statistics, health and counters, ``cdrs`` takes answers
    and CDRs (``acr.journal.Journal``); ``carriers`` and ``dids`` as loaded from the
    store (``load`` replaces all three when the store changes). ``clock`` is
    wall-clock time, ``monotonic`` the deadlines' clock.
    """

    role = "acr"
    counted = COUNTED
    log = log

    def __init__(
        self,
        settings: Settings,
        node_name: str,
        table: Table,
        live: Live,
        cdrs: CdrSink,
        carriers: Iterable[Carrier] = (),
        dids: Iterable[Did] = (),
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        prober: Any = None,
    ) -> None:
        # The node's secret: a restarted node still checks the Record-Routes of the
        # calls it takes back from its journal (sipline.secret).
        super().__init__(
            settings.sip, settings.auth, secret=node_secret(settings), monotonic=monotonic
        )
        acr = settings.acr
        self.node_name = node_name
        self.trusted = list(acr.trusted)
        self.live = live
        self.cdrs = cdrs
        self.clock = clock
        self.pdd: Deadlines[Try] = Deadlines(acr.pdd_timeout)
        self.timer_c: Deadlines[Try] = Deadlines(TIMER_C)
        self.dialogs: dict[str, Answered] = {}  # answered calls to carriers, by Call-ID
        self.prober = prober
        self.table = table
        self.sources = Sources((), self.trusted, ())
        self.dids: dict[str, Did] = {}
        self.load(table, carriers, dids)

    def resume(self, calls: Iterable[tuple[Cdr, str | None]]) -> None:
        """Calls answered before a restart, from the journal (CDR so far, media
        Call-ID), oldest first: their BYE, or the sweep, ends them."""
        now, monotonic = self.clock(), self._now()
        for cdr, media_call in calls:
            answered_at = monotonic - max(0.0, now - (cdr.answer or now))
            self.dialogs[cdr.call_id] = Answered(cdr, answered_at, media_call)
            self.live.counters.resume(cdr.carrier)  # still up at the carrier
            self.metrics.values["calls_resumed"] += 1

    def load(self, table: Table, carriers: Iterable[Carrier], dids: Iterable[Did]) -> None:
        """Use a new routing table, carriers and DIDs (calls in progress keep their hops)."""
        carriers, dids = list(carriers), list(dids)
        self.table = table
        self.sources = Sources(carriers, self.trusted, dids)
        self.dids = {did.number: did for did in dids}

    def trusts(self, source: Address) -> bool:
        """A trusted peer or a carrier's gateway: exempt from the node's flood limits."""
        return self.sources.classify(source) is not Source.STRANGER

    # -- requests -----------------------------------------------------------------------
    def _route(self, node: NodeLike, request: Request, txn: ServerTransaction, source: Address) -> None:
        preprocessed = self._preprocess(node, request, txn)
        if preprocessed is None:
            return
        local, ours, key = preprocessed
        if request.to.tag is not None:
            self._in_dialog(node, request, txn, source, ours)
            return
        method = request.method
        if method == "OPTIONS" and "route" not in request.headers:
            node.respond_stateless(txn, self._capabilities(request))
            return
        kind = self.sources.classify(source)
        if kind is Source.STRANGER:
            reason = f"Forbidden: {source.host}:{source.port} is no carrier gateway or trusted peer"
            self._refuse(node, txn, "strangers", 403, reason)
            return
        if method != "INVITE":
            self._reject(node, txn, Rejection(405, f"Method Not Allowed: {method} outside a call"))
            return
        number = dialled_number(request)
        if number is None:
            reason = "Address Incomplete: the Request-URI holds no number"
            self._reject(node, txn, Rejection(484, reason))
            return
        if kind is Source.PEER:
            call = self._outbound(node, request, txn, number)
        else:
            call = self._inbound(node, request, txn, number)
        if call is None:
            return
        call.key = key
        decrement_max_forwards(request)
        params = self.signer.sign("", request.call_id)  # in-dialog requests prove they are ours
        request.headers.prepend("Record-Route", local.record_route(txn.source.transport, params))
        txn.context = call
        self._next(node, call)

    def _outbound(
        self, node: NodeLike, request: Request, txn: ServerTransaction, number: str
    ) -> Call | None:
        now = self.clock()
        stamped = request.headers.get(DEADLINE_HEADER)
        deadline = deadline_of(stamped)
        if deadline is not None and now > deadline:
            self._past_deadline(node, txn, deadline, now)
            return None
        decision = self.table.decide(number, now)
        if log.isEnabledFor(logging.DEBUG):
            event(
                log, "decision", logging.DEBUG, call_id=request.call_id, explain=decision.explain()
            )
        if not decision.candidates:
            if decision.prefix:
                reason = f"Temporarily Unavailable: no carrier available for {number}"
                self._reject(node, txn, Rejection(480, reason))
            else:
                self._reject(node, txn, Rejection(404, f"Not Found: no route for {number}"))
            return None
        user = user_part(request)
        hops = [
            Hop(
                address_of(gateway.address, gateway.transport),
                gateway.address,
                hop_uri(user, gateway.address, gateway.transport),
                candidate,
            )
            for candidate in decision.candidates
            for gateway in candidate.gateways
        ]
        headers = request.headers
        call = Call(
            txn,
            request,
            hops,
            final_codes=decision.profile.final_codes,
            outbound=True,
            number=number,
            start=now,
        )
        call.account = headers.get(ACCOUNT_HEADER)
        if call.account is not None:
            headers.remove(ACCOUNT_HEADER)  # ours, not the carrier's business
        media = headers.get(MEDIA_CALL_HEADER)
        if media is not None:
            headers.remove(MEDIA_CALL_HEADER)
            call.media_call = media_call_of(media)
        if stamped is not None:
            headers.remove(DEADLINE_HEADER)
            call.deadline = deadline
        call.caller = caller_of(request)
        return call

    def _inbound(
        self, node: NodeLike, request: Request, txn: ServerTransaction, number: str
    ) -> Call | None:
        did = self.dids.get(number)
        if did is None:
            self._reject(node, txn, Rejection(404, f"Not Found: {number} is none of our DIDs"))
            return None
        now = self.clock()
        health = self.live.health
        proxies = [did.proxy, *did.backups]
        up = [p for p in proxies if health.gateway_up(p, now)]
        # Down proxies last, not left out: a probe may be wrong, the call is worth a try.
        ordered = up + [p for p in proxies if p not in up]
        user = user_part(request)
        hops = [Hop(address_of(p), p, hop_uri(user, p)) for p in ordered]
        # A carrier must not speak for our side: it could name an account or a media call.
        strip_internal(request, identity=False)
        return Call(
            txn,
            request,
            hops,
            final_codes=INBOUND_FINAL,
            outbound=False,
            number=number,
            start=now,
        )

    # -- serial failover ----------------------------------------------------------------
    def _next(self, node: NodeLike, call: Call) -> None:
        """Send the call to its next usable hop, or answer upstream when none is left."""
        local = self.local(node)
        now = self.clock()
        live = self.live
        while True:
            hop = call.next_hop()
            if hop is None:
                self._finish(node, call)
                return
            if hop.dest.transport not in local.addresses:
                continue
            candidate = hop.candidate
            if candidate is not None:
                if not live.health.gateway_up(hop.address, now):
                    continue
                carrier = candidate.carrier
                if call.carrier != carrier.name:
                    self._release(call)
                    admitted = self._admit(node, call, hop, carrier, now)
                    if admitted is None:
                        return  # sent on (or not) when the shared counters answer
                    if not admitted:
                        call.skip_carrier(carrier.name)
                        continue
                    call.carrier = carrier.name
            break
        self._send(node, call, hop)

    def _admit(self, node: NodeLike, call: Call, hop: Hop, carrier: Carrier, now: float) -> bool | None:
        """Whether the carrier takes one more call, or None when the answer comes later.

        A carrier with a capacity or cps limit is admitted exactly across the
        ACR nodes (``Counters.admit``: a Redis round trip, batched with the
        other calls waiting then); one without limits by the local count alone.
        """
        counters = self.live.counters
        if carrier.capacity is None and carrier.cps is None:
            return counters.try_start(carrier, now)
        verdict = counters.admit(carrier, now)
        if isinstance(verdict, bool):
            return verdict
        verdict.add_done_callback(lambda done: self._admitted(node, call, hop, carrier, done))
        return None

    def _admitted(
        self, node: NodeLike, call: Call, hop: Hop, carrier: Carrier, done: asyncio.Future[bool]
    ) -> None:
        try:
            admitted = not done.cancelled() and done.exception() is None and done.result()
            if call.answered or call.cancelled:  # CANCELled (or over) while we waited
                if admitted:
                    self.live.counters.end(carrier.name)
                return
            if not admitted:
                call.skip_carrier(carrier.name)
                self._next(node, call)
                return
            call.carrier = carrier.name
            self._send(node, call, hop)
        except Exception:
            log.exception("event=router_error where=admitted number=%s", call.number)

    def _send(self, node: NodeLike, call: Call, hop: Hop) -> None:
        """Forward the call's INVITE to ``hop`` in a client transaction of its own."""
        if hop.candidate is not None and self._given_up(call):
            self._finish(node, call, self._make(call, 408, PAST_DEADLINE))
            return
        local = self.local(node)
        request = call.request
        copy = Request("INVITE", hop.uri, request.headers.copy(), request.body)
        branch = self.branch(call.key, via_address(request.via))
        transport = hop.dest.transport
        if call.server is not None and transport != call.server.source.transport:
            # RFC 5658: a second Record-Route naming us on the transport the hop is reached by.
            params = self.signer.sign("", request.call_id)
            copy.headers.prepend("Record-Route", local.record_route(transport, params))
        copy.headers.prepend("Via", local.via(transport, branch))
        attempt = Try(call, hop, self._now(), self.clock())
        call.current = attempt
        if hop.candidate is not None:
            call.reached = attempt
        txn = node.send_request(copy, hop.dest)
        txn.context = attempt
        attempt.txn = txn
        self.pdd.arm(attempt, attempt.sent)

    def _given_up(self, call: Call) -> bool:
        """The B2BUA has given up on ``call`` by now: its deadline passed and it has
        heard nothing from us (after a response it waits; §16.7)."""
        deadline, server = call.deadline, call.server
        if deadline is None or server is None or server.data:
            return False
        now = self.clock()
        if now <= deadline:
            return False
        self._count_past_deadline(server, deadline, now)
        return True

    def _past_deadline(
        self, node: NodeLike, txn: ServerTransaction, deadline: float, now: float
    ) -> None:
        """408 to an INVITE that came after its deadline: the B2BUA has moved on."""
        self._count_past_deadline(txn, deadline, now)
        response = txn.request.response(408, PAST_DEADLINE, to_tag=new_tag())
        response.headers.add("Server", self.server_header)
        node.respond(txn, response)

    def _count_past_deadline(self, txn: ServerTransaction, deadline: float, now: float) -> None:
        self.metrics.values["invites_past_deadline"] += 1
        event(log, "invite_past_deadline", call_id=txn.request.call_id, source=txn.source,
              late_ms=round((now - deadline) * 1000))  # fmt: skip

    def _release(self, call: Call) -> None:
        if call.carrier is not None:
            self.live.counters.end(call.carrier)
            call.carrier = None

    def _ended(self, attempt: Try, code: int, *, answered: bool = False) -> None:
        """An attempt is over: its outcome goes to the statistics and the gateway's health."""
        attempt.done = True
        self.pdd.disarm(attempt)
        self.timer_c.disarm(attempt)
        candidate = attempt.hop.candidate
        now = self.clock()
        health = self.live.health
        if code in PASSIVE_FAILURES:
            health.passive_failure(attempt.hop.address, code, now)
        elif code != 487 or attempt.pdd is not None:
            health.passive_success(attempt.hop.address, now)
        if candidate is None:
            return
        self.live.stats.record_attempt(
            _attempt(candidate, attempt.hop.address, attempt.start, code, attempt.pdd, answered)
        )

    def _failed(self, node: NodeLike, attempt: Try, response: Response) -> None:
        call = attempt.call
        status = response.status
        self._ended(attempt, status)
        call.finals.append(response)
        if call.answered:
            return
        if call.cancelled or status in call.final_codes or status >= 600:
            self._finish(node, call)
        else:
            self._next(node, call)

    def _finish(self, node: NodeLike, call: Call, response: Response | None = None) -> None:
        """No hop left (or the hunt ended): the best answer upstream, the CDR."""
        if call.answered:
            return
        call.answered = True
        self._release(call)
        if response is None:
            if call.cancelled:
                response = self._make(call, 487, "Request Terminated: cancelled by the caller")
            elif call.finals:
                response = for_upstream(best_response(call.finals))
            else:
                response = self._make(call, 480, "Temporarily Unavailable: no carrier available")
        call.status = response.status
        if call.server is not None:
            node.respond(call.server, response)
        if call.reached is not None and call.outbound:
            cdr = self._cdr(
                call, call.reached, call.request.call_id,
                code=response.status, answer=None, end=self.clock(),
            )  # fmt: skip
            self.cdrs.add(bill(cdr))

    # -- responses (§16.7) --------------------------------------------------------------
    def _response(
        self, node: NodeLike, response: Response, txn: ClientTransaction, source: Address
    ) -> None:
        context = txn.context
        kind = type(context)
        if kind is Try:
            self._attempt_response(node, context, response, txn)  # type: ignore[arg-type]
        elif kind is Relay:
            self._relay_response(node, context, response)  # type: ignore[arg-type]
        elif kind is LateAnswer:
            if response.status >= 200:
                self._late_cdr(context, self.clock())  # type: ignore[arg-type]
        elif self.prober is not None and self.prober.owns(txn):
            self.prober.on_response(node, response, txn, source)

    def _attempt_response(
        self, node: NodeLike, attempt: Try, response: Response, txn: ClientTransaction
    ) -> None:
        status = response.status
        if status == 100:
            return  # hop by hop (§16.7 step 5); not a sign the carrier found the callee
        if not pop_own_via(response):
            return
        call = attempt.call
        if attempt.done:
            if 200 <= status < 300 and attempt.late is not None:
                node.send_stateless(attempt.late.ack, txn.dest)  # a retransmission
            elif 200 <= status < 300 and not attempt.answered:
                self._hang_up(node, attempt, txn, response)  # answered after we gave up on it
            elif 200 <= status < 300 and not attempt.held:
                self._upstream_2xx(node, call, response)  # a retransmission, or another fork
            return
        if status < 200:
            if attempt.pdd is None:
                attempt.pdd = self._now() - attempt.sent
                self.pdd.disarm(attempt)
            self.timer_c.arm(attempt, self._now())  # §16.6 step 11: reset on every 1xx
            if not call.answered and call.server is not None:
                node.respond(call.server, response)
        elif status < 300:
            self._answered(node, attempt, response)
        else:
            self._failed(node, attempt, response)

    def _answered(self, node: NodeLike, attempt: Try, response: Response) -> None:
        call = attempt.call
        if attempt.pdd is None:
            attempt.pdd = self._now() - attempt.sent
        attempt.answered = True
        self._ended(attempt, response.status, answered=True)
        if call.answered:
            self._upstream_2xx(node, call, response)
            return
        call.answered = True
        call.status = response.status
        if attempt.hop.candidate is not None and call.outbound:
            # The counted carrier stays counted until the BYE. The caller hears the
            # answer once the journal holds it: a node killed after that bills it.
            now = self.clock()
            cdr = self._cdr(call, attempt, response.call_id, code=200, answer=now, end=now)
            self.dialogs[response.call_id] = Answered(cdr, self._now(), call.media_call)
            call.carrier = None
            attempt.held = True
            on_disk = partial(self._answer_on_disk, node, attempt, response)
            self.cdrs.answered(cdr, call.media_call, on_disk)
        else:
            self._release(call)
            self._upstream_2xx(node, call, response)
        call.request = None  # type: ignore[assignment]  # nothing more is forwarded from it
        call.hops = []

    def _answer_on_disk(self, node: NodeLike, attempt: Try, response: Response, on_disk: bool) -> None:
        attempt.held = False
        if not on_disk:  # the journal logged why; the call goes on, billed from memory
            self.metrics.values["answers_not_journalled"] += 1
        self._upstream_2xx(node, attempt.call, response)

    def _upstream_2xx(self, node: NodeLike, call: Call, response: Response) -> None:
        """Every 2xx goes upstream (§16.7 step 5, RFC 6026)."""
        self._upstream(node, call.server, response, True)

    def on_timeout(self, node: NodeLike, txn: Transaction) -> None:
        """Timer B/F: the hop answered 408 (§16.7 step 2)."""
        context = txn.context
        if type(context) is Try:
            if not context.done:
                dest = context.hop.address
                self._failed(
                    node, context, self._make(context.call, 408, f"Request Timeout: {dest}")
                )
        elif type(context) is Relay:
            self._hung_up(context.call_id, "408")
            if context.server is not None:
                response = context.server.request.response(408, to_tag=None)
                node.respond(context.server, response)
        elif type(context) is LateAnswer:
            self._late_cdr(context, context.bye_sent)
        elif self.prober is not None and self.prober.owns(txn):
            self.prober.on_timeout(node, txn)

    def on_terminated(self, node: NodeLike, txn: Transaction) -> None:
        """Break the references of a finished transaction (reference counting frees the call)."""
        context = txn.context
        txn.context = None
        kind = type(context)
        if kind is Try:
            context.txn = None  # type: ignore[union-attr]
            if not context.done:  # type: ignore[union-attr]
                reason = "Service Unavailable: attempt ended unanswered"
                self._failed(node, context, self._make(context.call, 503, reason))  # type: ignore[union-attr,arg-type]
        elif kind is Call:
            context.server = None  # type: ignore[union-attr]
        elif kind is Relay:
            context.server = None  # type: ignore[union-attr]
        elif kind is LateAnswer and not context.billed:  # type: ignore[union-attr]
            self._late_cdr(context, context.bye_sent)  # type: ignore[union-attr,arg-type]

    # -- CANCEL (§16.10) ----------------------------------------------------------------
    def _cancel_context(self, node: NodeLike, call: Any) -> None:
        if type(call) is not Call or call.answered:
            return
        call.cancelled = True
        attempt = call.current
        if attempt is not None and not attempt.done:
            if attempt.txn is not None:
                node.cancel(attempt.txn)  # at once after a 1xx, else at its first (§9.1)
            self._ended(attempt, 487)
        self._finish(node, call)

    # -- in-dialog requests ---------------------------------------------------------------
    def _in_dialog(
        self,
        node: NodeLike,
        request: Request,
        txn: ServerTransaction,
        source: Address,
        ours: dict[str, str] | None,
    ) -> None:
        kind = self.sources.classify(source)
        if kind is not Source.PEER:
            if not self.sources.known_host(source):
                self._refuse(node, txn, "strangers", 403, "Forbidden: not a party of our calls")
                return
            strip_internal(request, identity=False)
        if "route" in request.headers:
            dest = next_hop(request)
            strict_route(request)
        else:
            dest = resolve(request.uri)
        local = self.local(node)
        if dest is None or dest.transport not in local.addresses or local.is_self(dest):
            self._reject(node, txn, Rejection(404, f"Not Found: no next hop for {request.uri}"))
            return
        if request.method == "BYE":
            ghost = is_ghost(request) and self.sources.classify(source) is Source.PEER
            relay = partial(self._relay_in_dialog, node, request, txn, dest)
            if self._hung_up(request.call_id, ghost=ghost, done=relay):
                return  # relayed once the call's CDR is on disk
        self._relay_in_dialog(node, request, txn, dest)

    def _relay_in_dialog(
        self,
        node: NodeLike,
        request: Request,
        txn: ServerTransaction,
        dest: Address,
        on_disk: bool = True,  # a BYE's CDR reached the disk (False: the disk refused it)
    ) -> None:
        local = self.local(node)
        copy = Request(request.method, request.uri, request.headers.copy(), request.body)
        decrement_max_forwards(copy)
        branch = self.branch(loop_key(request), via_address(request.via))
        copy.headers.prepend("Via", local.via(dest.transport, branch))
        relay = Relay(txn, request.call_id)
        txn.context = relay
        client = node.send_request(copy, dest)
        client.context = relay

    def _relay_response(self, node: NodeLike, relay: Relay, response: Response) -> None:
        if response.status == 100 or not pop_own_via(response):
            return
        if response.status in DIALOG_GONE:
            self._hung_up(relay.call_id, str(response.status))
        stray = 200 <= response.status < 300 and response.cseq.method == "INVITE"
        self._upstream(node, relay.server, response, stray)

    def _hung_up(
        self,
        call_id: str,
        ended: str | None = None,
        *,
        ghost: bool = False,
        done: Callable[[bool], None] | None = None,
    ) -> bool:
        """A BYE, from either side, ends an answered call: the CDR, the statistics.
        False when ``call_id`` is no answered call of ours; else ``done`` is called
        once its CDR is on disk.

        ``ended`` says how else it ended, in the CDR's extra {"ended": ...}:
        "408" or "481" (an in-dialog request found the dialog gone at one
        side), "swept" (never hung up: billed up to MAX_CALL, for billing to
        tell). A ``ghost`` (the B2BUA had given up on the INVITE) costs nothing:
        extra {"answer": "ghost"}; the caller's real call has a CDR of its own."""
        answered = self.dialogs.pop(call_id, None)
        if answered is None:
            return False
        cdr = answered.cdr
        end = self.clock()
        live = self.live
        live.counters.end(cdr.carrier)
        extra = {} if ended is None else {"ended": ended}
        if ghost:
            self.metrics.values["ghost_calls"] += 1
            extra["answer"] = "ghost"
            self.cdrs.ended(replace(cdr, end=end, extra=extra), done)
            return True
        # The relay's figures are under the Call-ID it anchored the media with (the
        # B2BUA's A leg's, which the B2BUA passes in MEDIA_CALL_HEADER), not ours (its
        # B leg's); with no such header the media was not anchored: nothing to fetch.
        live.stats.record_call_end(
            cdr.carrier, cdr.prefix, end - (cdr.answer or end), call_id=answered.media_call
        )
        self.cdrs.ended(bill(replace(cdr, end=end, extra=extra)), done)
        return True

    def _cdr(
        self,
        call: Call,
        attempt: Try,
        call_id: str,
        *,
        code: int,
        answer: float | None,
        end: float,
        extra: dict[str, str] | None = None,
        start: float | None = None,
    ) -> Cdr:
        """The CDR of ``attempt``, one of ``call``'s, under ``call_id`` (unbilled: see
        ``acr.billing.bill``), by its candidate's deck row."""
        candidate = attempt.hop.candidate
        rate = candidate.rate
        return Cdr(
            call_id=call_id,
            account=call.account,
            caller=call.caller,
            callee=call.number,
            prefix=candidate.prefix,
            carrier=candidate.carrier.name,
            gateway=attempt.hop.address,
            rate=rate.rate,
            start=call.start if start is None else start,
            end=end,
            final_code=code,
            node=self.node_name,
            answer=answer,
            connect_fee=rate.connect_fee,
            first_increment=rate.first_increment,
            next_increment=rate.next_increment,
            extra=extra or {},
        )

    def _late_cdr(self, late: LateAnswer, end: float) -> None:
        """The CDR of an attempt answered after we gave up on it, once our BYE
        is over (its final response, else when it went out): what the carrier
        bills. Its final code is the caller's (408 while the hunt went on)."""
        if late.billed:
            return
        late.billed = True
        attempt = late.attempt
        call = attempt.call
        if attempt.hop.candidate is None or not call.outbound:
            return
        code = call.status or 408
        extra = {"answer": "late"}
        answer = late.answer
        cdr = self._cdr(
            call, attempt, late.ack.call_id, code=code, answer=answer, end=end, extra=extra,
            start=answer,
        )  # fmt: skip
        self.cdrs.add(bill(cdr))

    # -- calls we end ourselves ------------------------------------------------------------
    def _hang_up(
        self, node: NodeLike, attempt: Try, txn: ClientTransaction, response: Response
    ) -> None:
        """A 2xx from an attempt we gave up on (the PDD limit, a CANCEL that
        crossed it): that call leg is ours to end, ACK and BYE (§15, RFC 3261),
        and billed (``_late_cdr``)."""
        local = self.local(node)
        try:
            dialog = Dialog.uac(txn.request, response)
        except ParseError:
            return
        dialog.route_set = [r for r in dialog.route_set if not local.names_us(_uri_of(r))]
        transport = txn.dest.transport
        ack, _ = dialog.create_ack(
            txn.request.cseq.number, via=local.via(transport, self.branch("ack", None))
        )
        node.send_stateless(ack, txn.dest)
        late = attempt.late = LateAnswer(attempt, self.clock(), ack)
        bye, _ = dialog.create_request("BYE", via=local.via(transport, self.branch("bye", None)))
        node.send_request(bye, txn.dest).context = late
        event(log, "late_answer_ended", call_id=response.call_id, gateway=txn.dest)

    def _forward_stray(self, node: NodeLike, response: Response, source: Address) -> None:
        """A carrier's 2xx with no transaction here, for no call we know: an answer
        to an INVITE a previous run of this node sent (killed and restarted within
        the B2BUA's failover timeout). Relayed, it would connect a call nobody
        bills; the B2BUA gives up on that INVITE and tries the other node instead.
        So it is ACKed and BYEd as a ghost (RFC 3326 Reason), counted and logged."""
        if (
            not stray_2xx(response)
            or response.call_id in self.dialogs
            or self.sources.classify(source) is not Source.CARRIER
        ):
            super()._forward_stray(node, response, source)
            return
        local = self.local(node)
        try:
            dialog = Dialog.uac(answered_invite(response), response)
            dialog.route_set = [r for r in dialog.route_set if not local.names_us(_uri_of(r))]
            transport = source.transport
            ack, _ = dialog.create_ack(
                response.cseq.number, via=local.via(transport, self.branch("ack", None))
            )
            bye, _ = dialog.create_request(
                "BYE", via=local.via(transport, self.branch("bye", None)), extra=(("Reason", GHOST),)
            )
        except ParseError as exc:
            event(log, "stray_not_hung_up", logging.WARNING, call_id=response.call_id,
                  source=source, error=exc)  # fmt: skip
            return
        node.send_stateless(ack, source)
        node.send_request(bye, source)
        self.counts["strays_hung_up"] += 1
        event(log, "stray_hung_up", logging.WARNING, call_id=response.call_id, source=source)

    # -- our own answers ------------------------------------------------------------------
    def _make(self, call: Call, status: int, reason: str) -> Response:
        request = call.request if call.request is not None else call.server.request  # type: ignore[union-attr]
        return request.response(status, reason, to_tag=new_tag())

    def _capabilities(self, request: Request) -> Response:
        response = request.response(200, to_tag=new_tag())
        headers = response.headers
        headers.add("Allow", ALLOW)
        headers.add("Accept", "application/sdp")
        headers.add("Server", self.server_header)
        return response

    # -- timers ---------------------------------------------------------------------------
    def on_tick(self, node: NodeLike, now: float) -> None:
        """Run the PDD limit, timer C, the sweep and the prober's round due at ``now``
        (monotonic)."""
        for attempt in self.pdd.expire(now):
            if attempt.done or attempt.pdd is not None:
                continue
            if attempt.txn is not None:
                node.cancel(attempt.txn)  # at once after a 100, else at its first 1xx (§9.1)
            limit = self.pdd.duration
            reason = f"Request Timeout: no provisional response from {attempt.hop.address} in {limit:g} s"
            self._failed(node, attempt, self._make(attempt.call, 408, reason))
        for attempt in self.timer_c.expire(now):
            if not attempt.done and attempt.txn is not None:
                node.cancel(attempt.txn)  # its 487 ends it
        self._sweep(now)
        if self.prober is not None:
            self.prober.on_tick(node, now)

    def _sweep(self, now: float) -> None:
        """Answered calls never hung up (both sides gone): closed after MAX_CALL."""
        if not self.dialogs:
            return
        first = next(iter(self.dialogs.values()))
        if now - first.answered_at < MAX_CALL:
            return
        stale = [cid for cid, a in self.dialogs.items() if now - a.answered_at >= MAX_CALL]
        for call_id in stale:
            self._hung_up(call_id, "swept")


def _attempt(
    candidate: Any, gateway: str, start: float, code: int, pdd: float | None, answered: bool
) -> Attempt:
    return Attempt(candidate.carrier.name, candidate.prefix, gateway, start, code, pdd, answered)


def _uri_of(route: str) -> str:
    return route.strip().removeprefix("<").partition(">")[0]
