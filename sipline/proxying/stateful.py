"""The handler a transaction-stateful proxy role builds on (RFC 3261 §16): the
parts that do not depend on how requests are routed.

``StatefulProxy`` learns its addresses from the node (``local``), dispatches
requests (an ACK for a 2xx forwarded statelessly, §16.11; a CANCEL answered
here, §16.10; any other to the role's ``_route``, a header it needed that does
not parse answered 400) and responses (a stray one forwarded statelessly, one
in our transactions to the role's ``_response``), answers requests itself
(``_reject``) and runs the role's timers from one periodic callback, not a
task or timer handle per transaction. The edge proxy's ``proxy.router.Router``
and the ACR's ``acr.router.AcrRouter`` subclass it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sipline.logs import event
from sipline.net.handler import Handler
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_tag
from sipline.sip.transaction import ClientTransaction, ServerTransaction, State

from .rules import (
    Local,
    Rejection,
    loop_key,
    looped,
    preprocess_routes,
    validate,
    via_address,
)
from .stateless import forward_ack, forward_stray

if TYPE_CHECKING:
    from sipline.net.node import Node
    from sipline.sip.address import Address
    from sipline.sip.message import Request, Response

log = logging.getLogger("sipline.proxying")

# A server transaction in these states still takes the responses we forward.
FORWARDING = frozenset((State.TRYING, State.PROCEEDING, State.ACCEPTED))


class StatefulProxy(Handler):
    """What every stateful proxy's handler does the same way.

    A subclass gives ``_route`` (each new request but an ACK for a 2xx and a
    CANCEL), ``_response`` (each response to a request it sent), ``_cancel_context`` (what a matched CANCEL cancels), and for its
    timers ``expire(node, now)`` and ``_timers_pending()``, run every
    ``timer_tick`` seconds while pending. ``monotonic`` is the timers' clock.
    """

    timer_tick = 0.1  # seconds between runs of ``expire``
    log = log  # a subclass logs under its own name

    def __init__(
        self,
        settings: Any,
        domains: Iterable[str] = (),
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.domains = [d.lower() for d in domains]
        self.server_header: str = settings.sip.server_header
        self._transports = len(settings.sip.transports)
        self._now = monotonic
        self._local: Local | None = None
        self._node: Node | None = None
        self._tick_handle: asyncio.TimerHandle | None = None

    def close(self) -> None:
        """Stop the timer callback (the node is stopping)."""
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    def local(self, node: Node) -> Local:
        """This proxy's addresses, learnt from the node; kept once it listens on
        every transport (a datagram can arrive while TCP is still opening)."""
        local = self._local
        if local is None:
            addresses = {}
            for transport in ("UDP", "TCP"):
                try:
                    addresses[transport] = node.local_address(transport)
                except LookupError:
                    pass
            local = Local(addresses, self.domains)
            if len(addresses) >= self._transports:
                self._local = local
                self._node = node
        return local

    # -- requests ---------------------------------------------------------------------------
    def on_request(
        self, node: Node, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        if txn is None:
            self._forward_ack(node, request)
        elif request.method == "CANCEL":
            self._cancel(node, request, txn)
        else:
            try:
                self._route(node, request, txn, source)
            except ParseError as exc:  # a header a decision needed (parsed lazily)
                self._reject(node, txn, Rejection(400, f"Bad Request: {exc.reason}"))

    def _route(self, node: Node, request: Request, txn: ServerTransaction, source: Address) -> None:
        raise NotImplementedError

    def _preprocess(
        self,
        node: Node,
        request: Request,
        txn: ServerTransaction,
        refused: Rejection | None = None,
    ) -> tuple[Local, dict[str, str] | None, str] | None:
        """§16.3 and §16.4 for a request to route: answered when invalid (or
        ``refused``, after the checks of §16.3) or looped (482); else our
        Route entries are taken off it. Returns this proxy's ``Local``, the
        parameters of our Route entries (``preprocess_routes``) and the loop
        key; None when the request was answered."""
        local = self.local(node)
        rejection = validate(request) or refused
        if rejection is not None:
            self._reject(node, txn, rejection)
            return None
        ours = preprocess_routes(request, local)
        key = loop_key(request)
        if looped(request, local, key):
            self._reject(node, txn, Rejection(482, "Loop Detected: the request came back"))
            return None
        return local, ours, key

    def _cancel(self, node: Node, request: Request, txn: ServerTransaction) -> None:
        """§16.10: a CANCEL is answered here, then what its INVITE started is cancelled."""
        invite = txn.cancels
        if invite is None:
            reason = "Call/Transaction Does Not Exist: no INVITE matches this CANCEL"
            self._reject(node, txn, Rejection(481, reason))
            return
        node.respond(txn, request.response(200, to_tag=new_tag()))
        self._cancel_context(node, invite.context)

    def _cancel_context(self, node: Node, context: Any) -> None:
        """Cancel what the CANCELled INVITE's server transaction carries as context."""

    # -- responses (§16.7) ------------------------------------------------------------------
    def on_response(
        self, node: Node, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        if txn is None:
            self._forward_stray(node, response)
        else:
            self._response(node, response, txn, source)

    def _response(
        self, node: Node, response: Response, txn: ClientTransaction, source: Address
    ) -> None:
        """A response in one of our client transactions."""

    # -- forwarding -------------------------------------------------------------------------
    def _upstream(
        self, node: Node, server: ServerTransaction | None, response: Response, stray: bool
    ) -> None:
        """``response`` upstream in ``server`` while it still forwards; else, when
        ``stray`` (a 2xx to an INVITE, §16.7 step 5, RFC 6026), statelessly by its Via."""
        if server is not None and server.state in FORWARDING:
            node.respond(server, response)
        elif stray:
            node.send_stateless(response, via_address(response.via))

    def _forward_ack(self, node: Node, request: Request) -> None:
        dest = forward_ack(request, self.local(node))
        if dest is None:
            event(self.log, "ack_dropped", logging.DEBUG, call_id=request.call_id, uri=request.uri)
            return
        node.send_stateless(request, dest)

    def _forward_stray(self, node: Node, response: Response) -> None:
        dest = forward_stray(response, self.local(node))
        if dest is not None:
            node.send_stateless(response, dest)

    # -- our own answers --------------------------------------------------------------------
    def _reject(self, node: Node, txn: ServerTransaction, rejection: Rejection) -> None:
        request = txn.request
        response = request.response(rejection.status, rejection.reason, to_tag=new_tag())
        for name, value in rejection.headers:
            response.headers.add(name, value)
        response.headers.add("Server", self.server_header)
        node.respond(txn, response)
        if self.log.isEnabledFor(logging.INFO):
            event(
                self.log,
                "rejected",
                status=rejection.status,
                reason=rejection.reason,
                method=request.method,
                call_id=request.call_id,
            )

    # -- timers -----------------------------------------------------------------------------
    def expire(self, node: Node, now: float) -> None:
        """Run the role's timers due at ``now`` (monotonic)."""

    def _timers_pending(self) -> bool:
        return False

    def _ensure_tick(self) -> None:
        if self._tick_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # driven by hand (tests call expire)
            self._tick_handle = loop.call_later(self.timer_tick, self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        node = self._node
        if node is not None:
            try:
                self.expire(node, self._now())
            except Exception:
                self.log.exception("event=router_error where=expire")
        if self._timers_pending():
            self._ensure_tick()
