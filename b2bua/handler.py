"""The B2BUA's node callbacks: who may call, and which step of a call a message is for.

A new INVITE from a trusted peer (the proxies) is the A leg of a call; we
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
calls that need them. Failover, duration limit and session timers run from
``expire``, which one periodic callback calls (``start``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sipline.config import split_host_port
from sipline.logs import event
from sipline.net.handler import Handler
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction, Transaction

from . import answering, indialog, probes, setup
from .call import Call, Own, Phase, Relay
from .calls import AccountsLike, Calls, LicencesLike, MediaLike
from .nexthop import Hop
from .teardown import end, fail

if TYPE_CHECKING:
    from sipline.net.node import Node

log = logging.getLogger("sipline.b2bua")

TICK = 0.02  # seconds between runs of the call timers (failover is late by one at most)


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
        self.calls = Calls(
            b2bua, server_header=settings.sip.server_header,
            accounts=accounts, licences=licences, media=media, clock=clock,
        )  # fmt: skip
        self.trusted_hosts = frozenset(p for p in b2bua.trusted if p.count(":") != 1)
        self.trusted_peers = frozenset(
            split_host_port(p) for p in b2bua.trusted if p.count(":") == 1
        )
        self.probing = True  # OPTIONS to the next hops (off while draining)
        self._node: Node | None = None
        self._tick_handle: asyncio.TimerHandle | None = None

    # -- life -------------------------------------------------------------------------
    def start(self, node: Node) -> None:
        """Run the timers and the probes from one periodic callback (the node listens)."""
        self._node = node
        self._tick_handle = asyncio.get_running_loop().call_later(TICK, self._tick)

    def close(self) -> None:
        self.calls.metrics.unwatch()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    def _tick(self) -> None:
        self._tick_handle = asyncio.get_running_loop().call_later(TICK, self._tick)
        if self._node is not None:
            try:
                self.expire(self._node, self.calls.clock())
            except Exception:
                log.exception("event=b2bua_error where=expire")

    def __len__(self) -> int:
        """Calls in progress."""
        return len(self.calls)

    def _trusted(self, source: Address) -> bool:
        return source.host in self.trusted_hosts or (source.host, source.port) in self.trusted_peers

    # -- what the node delivers -------------------------------------------------------------
    def on_request(
        self, node: Node, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        self._node = node
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
                status = 200 if self._trusted(source) else 403
                reason = None if status == 200 else "Forbidden: not a trusted peer"
                calls.answer(node, txn, status, reason)
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
        self, node: Node, request: Request, txn: ServerTransaction, source: Address
    ) -> None:
        if not self._trusted(source):
            self.calls.counts["untrusted"] += 1
            self.calls.answer(node, txn, 403, "Forbidden: not a trusted peer")
            return
        setup.on_invite(self.calls, node, request, txn, source)

    def on_response(
        self, node: Node, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        self._node = node
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

    def on_timeout(self, node: Node, txn: Transaction) -> None:
        self._node = node
        context = txn.context
        kind = type(context)
        if kind is Call:
            setup.on_timeout(self.calls, node, context, txn)
        elif kind is Relay:
            indialog.on_timeout(self.calls, node, context, txn)
        elif kind is Own:
            indialog.on_own_timeout(self.calls, node, context, txn)

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
                answering.no_ack(self.calls, node, context)

    # -- timers -----------------------------------------------------------------------------
    def expire(self, node: Node, now: float) -> None:
        """Failover, silent hops, timer C, duration limit, session timers and probes
        due at ``now`` (monotonic)."""
        calls = self.calls
        setup.silence_due(calls, now)
        setup.failover_due(calls, node, now)
        setup.timer_c_due(calls, node, now)
        for call in calls.duration.expire(now):
            end(calls, node, call, None, "duration limit")
        indialog.sessions_due(calls, node, now)
        if self.probing:
            probes.due(calls, node, now)
