"""The B2BUA's node callbacks: who may call, and which step of a call a message is for.

A new INVITE from a trusted peer (the proxies), with the caller's
P-Asserted-Identity (whose account it bills), is the A leg of a call; we
answer it as a UAS and open the B leg as a UAC toward the next hop
(``b2bua.nexthop``), moving to the next one on a 503 or on silence for
``failover_timeout`` before anything reaches the caller. Responses,
ACK, BYE, CANCEL, re-INVITE, UPDATE, INFO and PRACK cross between the legs
by Call-ID (one table entry per leg); BYE from either side ends both legs.

This module only dispatches; the calls live in ``b2bua.calls.Calls`` and
their steps are functions over it: ``setup`` (INVITE, CANCEL, failover),
``answering`` (the far side's answer to the caller, the caller's ACK back),
``indialog`` (requests within a call, session refreshes), ``teardown``
(failing and ending calls), ``anchoring`` (waiting for the relay's SDP),
``probes`` (OPTIONS to the next hops).

Calls find their way by context objects on transactions (``Call`` for the
B leg's INVITE, ``Relay`` for a request sent on, ``Own`` for our BYEs and
refreshes, ``Hop`` for probes): no task per call. The licence check and the
relay's offer/answer are awaited in done callbacks of futures, and only for
calls that need them. Failover, silence, timer C, duration limit, session
timers and probes run from ``on_tick``, on the node's own periodic tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sipline.config import B2buaSection
from sipline.logs import event
from sipline.net.handler import Handler, NodeLike
from sipline.peers import TrustedPeers
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction, Transaction

from . import answering, indialog, probes, setup
from .accounts import asserted_aor
from .call import Call, Own, Phase, Relay
from .calls import AccountsLike, Calls, LicencesLike, MediaLike
from .nexthop import Hop
from .teardown import end, fail

log = logging.getLogger("sipline.b2bua")


class B2buaHandler(Handler):
    """``b2bua`` is the [b2bua] section, ``server_header`` [sip]'s; ``accounts``,
    ``licences`` and ``media`` are optional (b2bua.accounts, b2bua.licences,
    b2bua.media); ``clock`` is monotonic time (a fake one in tests)."""

    def __init__(
        self,
        b2bua: B2buaSection,
        *,
        server_header: str,
        accounts: AccountsLike | None = None,
        licences: LicencesLike | None = None,
        media: MediaLike | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.calls = Calls(
            b2bua, server_header=server_header,
            accounts=accounts, licences=licences, media=media, clock=clock,
        )  # fmt: skip
        self.trusted = TrustedPeers(b2bua.trusted)
        self.probing = True  # OPTIONS to the next hops (off while draining)

    def close(self) -> None:
        self.calls.metrics.unwatch()

    def __len__(self) -> int:
        """Calls in progress."""
        return len(self.calls)

    def trusts(self, source: Address) -> bool:
        """One of the proxies ``b2bua.trusted`` names: the only ones that may open calls."""
        return self.trusted.trusts(source)

    # -- what the node delivers -------------------------------------------------------------
    def on_request(
        self, node: NodeLike, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        calls = self.calls
        try:
            if txn is None:
                answering.on_ack(calls, node, request)
            elif request.method == "CANCEL":
                setup.on_cancel(calls, node, request, txn)
            elif request.to.tag is not None:
                indialog.on_request(calls, node, request, txn)
            elif request.method == "INVITE":
                self._invite(node, request, txn, source)
            elif request.method == "OPTIONS":
                status = 200 if self.trusts(source) else 403
                reason = None if status == 200 else "Forbidden: not a trusted peer"
                calls.answer(node, txn, status, reason, stateless=True)
            else:
                calls.answer(node, txn, 405, "Method Not Allowed outside a call")
        except ParseError as exc:
            if txn is not None and request.method != "ACK":
                call = txn.context
                if type(call) is Call and call.phase is not Phase.ENDED:
                    fail(calls, node, call, 400, f"Bad Request: {exc.reason}")
                else:
                    calls.answer(node, txn, 400, f"Bad Request: {exc.reason}")

    def _invite(
        self, node: NodeLike, request: Request, txn: ServerTransaction, source: Address
    ) -> None:
        calls = self.calls
        if not self.trusts(source):
            calls.counts["untrusted"] += 1
            event(log, "call_refused", reason="untrusted", source=source, call_id=request.call_id)
            calls.answer(node, txn, 403, "Forbidden: not a trusted peer", stateless=True)
            return
        caller = asserted_aor(request)  # whose call it is: the proxy's word, never the From
        if caller is None:
            calls.counts["unidentified"] += 1
            event(log, "call_refused", reason="unidentified", source=source, call_id=request.call_id)
            reason = "Forbidden: no P-Asserted-Identity from the proxy"
            calls.answer(node, txn, 403, reason, stateless=True)
            return
        setup.on_invite(calls, node, request, txn, source, caller)

    def on_response(
        self, node: NodeLike, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        calls = self.calls
        if txn is None:
            answering.on_stray(calls, node, response, source)
            return
        context = txn.context
        try:
            kind = type(context)
            if kind is Call:
                setup.on_response(calls, node, context, response, txn)
            elif kind is Relay:
                indialog.on_response(calls, node, context, response, txn)
            elif kind is Own:
                indialog.on_own_response(calls, node, context, response, txn)
            elif kind is Hop and response.status >= 200:
                # 503: draining or overloaded.
                probes.probed(calls, context, txn, response.status != 503)
        except ParseError as exc:
            event(log, "bad_response", logging.DEBUG, call_id=response.call_id, reason=exc.reason)

    def on_timeout(self, node: NodeLike, txn: Transaction) -> None:
        context = txn.context
        kind = type(context)
        if kind is Call:
            setup.on_timeout(self.calls, node, context, txn)
        elif kind is Relay:
            indialog.on_timeout(self.calls, node, context, txn)
        elif kind is Own:
            indialog.on_own_timeout(self.calls, node, context, txn)

    def on_terminated(self, node: NodeLike, txn: Transaction) -> None:
        """Break the references between the layer's transaction and the call at once:
        the B leg's INVITE (parsed) goes with its transaction, not with the call."""
        context = txn.context
        txn.context = None
        if type(context) is Call:
            if context.client is txn:
                context.client = None
            if context.server is txn:
                context.server = None
                answering.no_ack(self.calls, node, context)

    # -- timers -----------------------------------------------------------------------------
    def on_tick(self, node: NodeLike, now: float) -> None:
        """Failover, silent hops, timer C, duration limit, session timers and probes
        due at ``now`` (monotonic: the calls' clock, which is the node's)."""
        calls = self.calls
        setup.silence_due(calls, now)
        setup.failover_due(calls, node, now)
        setup.timer_c_due(calls, node, now)
        for call in calls.duration.expire(now):
            end(calls, node, call, None, "duration limit")
        indialog.sessions_due(calls, node, now)
        if self.probing:
            probes.due(calls, node, now)
