"""The handler a transaction-stateful proxy role builds on (RFC 3261 §16): the
parts that do not depend on how requests are routed.

``StatefulProxy`` learns its addresses from the node (``local``), dispatches
requests (an ACK for a 2xx forwarded statelessly, §16.11; a CANCEL answered
here, §16.10; any other to the role's ``_route``, a header it needed that does
not parse answered 400) and responses (a stray one forwarded statelessly, one
in our transactions to the role's ``_response``), answers requests itself
(``_reject``, and ``_refuse`` statelessly for what nobody vouches for). Its
timers run from the node's tick (``on_tick``), not a task or timer handle
per transaction, nor a loop callback of its own: nothing here imports asyncio.

What we wrote for ourselves is believed only under our signature
(``signing.Signer``): the parameters of a Route naming us (a forged one, or
none in a dialog we record-route, is refused 403), the branch of a stray
2xx's Via. An ACK is forwarded only along our signed Route, from a trusted
peer, or when ``_ack_expected`` says it ends a transaction of ours. The edge proxy's ``proxy.router.Router``
and the ACR's ``acr.router.AcrRouter`` subclass it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sipline.config import AuthSection, SipSection
from sipline.logs import event
from sipline.net.handler import Handler, NodeLike
from sipline.net.metrics import RoleCounts
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_branch, new_tag
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
from .signing import Signer
from .stateless import forward_ack, forward_stray, stray_2xx

if TYPE_CHECKING:
    from sipline.sip.address import Address
    from sipline.sip.message import Request, Response

log = logging.getLogger("sipline.proxying")

# A server transaction in these states still takes the responses we forward.
FORWARDING = frozenset((State.TRYING, State.PROCEEDING, State.ACCEPTED))
_UNSIGNED = "Forbidden: a Route names us without our signature"
_NOT_OURS = "Forbidden: in a dialog we did not record-route (no Route names us)"
# What every stateful proxy counts (sipline_<role>_<name>_total on /metrics).
COUNTED = {
    "forged_routes": "Requests refused 403: a Route naming us with a signature not ours,"
    " or none in a dialog we record-route",
    "foreign_dialogs": "In-dialog requests refused 403: no Route of ours, in a dialog we"
    " would have record-routed",
    "acks_dropped": "ACKs dropped: not routed by our signed Route, from no trusted peer,"
    " ending no transaction of ours",
    "strays_dropped": "Stray 2xx dropped: the branch of our Via is not one we made for the hop"
    " below it",
}


class StatefulProxy(Handler):
    """What every stateful proxy's handler does the same way.

    A subclass gives ``_route`` (each new request but an ACK for a 2xx and a
    CANCEL), ``_response`` (each response to a request it sent),
    ``_cancel_context`` (what a matched CANCEL cancels) and ``on_tick`` for
    its timers. ``monotonic`` is the timers' clock (the node's).
    """

    log = log  # a subclass logs under its own name
    role = "proxy"  # its counters' prefix on /metrics
    counted = COUNTED  # a subclass adds its own
    record_route = True  # we put ourselves in the route set of every dialog we see

    def __init__(
        self,
        sip: SipSection,
        auth: AuthSection,
        domains: Iterable[str] = (),
        *,
        secret: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.domains = [d.lower() for d in domains]
        self.server_header = sip.server_header
        self._transports = len(sip.transports)
        self._now = monotonic
        self._local: Local | None = None
        # The node's secret (sipline.secret) when the role gives it, else auth.secret.
        self.signer = Signer.from_secret(auth.secret if secret is None else secret)
        self.metrics = RoleCounts(self.role, self.counted)
        self.counts = self.metrics.values  # plain ints, bumped on the message path

    def close(self) -> None:
        """The node has stopped: let go of what the role holds open."""

    def local(self, node: NodeLike) -> Local:
        """This proxy's addresses, learnt from the node; kept once it listens on
        every transport (a datagram can arrive while TCP is still opening)."""
        local = self._local
        if local is None:
            local = Local.of(node, self.domains)
            if len(local.addresses) >= self._transports:
                self._local = local
        return local

    # -- requests ---------------------------------------------------------------------------
    def on_request(
        self, node: NodeLike, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        if txn is None:
            self._forward_ack(node, request, source)
        elif request.method == "CANCEL":
            self._cancel(node, request, txn)
        else:
            try:
                self._route(node, request, txn, source)
            except ParseError as exc:  # a header a decision needed (parsed lazily)
                self._reject(node, txn, Rejection(400, f"Bad Request: {exc.reason}"), stateless=True)

    def _route(self, node: NodeLike, request: Request, txn: ServerTransaction, source: Address) -> None:
        raise NotImplementedError

    def _preprocess(
        self,
        node: NodeLike,
        request: Request,
        txn: ServerTransaction,
        refused: Rejection | None = None,
    ) -> tuple[Local, dict[str, str] | None, str] | None:
        """§16.3 and §16.4 for a request to route: answered when invalid (or
        ``refused``, after the checks of §16.3), when a Route naming us is not
        signed as it must be (403), or looped (482); else our Route entries are
        taken off it. With ``record_route``, a request in a dialog must be
        routed by our signed Record-Route. Returns this proxy's ``Local``, the
        signed parameters of our Route entries (None unless a request in a
        dialog is routed by our signed Record-Route) and the loop key; None
        when the request was answered."""
        local = self.local(node)
        rejection = validate(request) or refused
        if rejection is not None:
            self._reject(node, txn, rejection, stateless=True)
            return None
        found = preprocess_routes(request, local)
        ours, forged = self.signer.believe(found, request.call_id) if found else (None, False)
        if forged:
            reason = "Forbidden: a Route names us with a signature that is not ours"
            self._refuse(node, txn, "forged_routes", 403, reason)
            return None
        if request.to.tag is None:
            ours = self._new_request_route(ours, txn.source)  # nothing of a dialog
        elif ours is None and self.record_route:
            # Every dialog through us has our signed Record-Route in its route set
            # (Kamailio's default answers such a request 404 "Not here").
            if found:
                self._refuse(node, txn, "forged_routes", 403, _UNSIGNED)
            else:
                self._refuse(node, txn, "foreign_dialogs", 403, _NOT_OURS)
            return None
        key = loop_key(request)
        if looped(request, local, key):
            self._reject(node, txn, Rejection(482, "Loop Detected: the request came back"), stateless=True)
            return None
        return local, ours, key

    def _new_request_route(
        self, ours: dict[str, str] | None, source: Address
    ) -> dict[str, str] | None:
        """What our signed Route entries may say of a new request (None: nothing,
        it is routed by its Request-URI); a proxy of a cluster overrides it."""
        return None

    def branch(self, key: str, upstream: Address | None) -> str:
        """The branch of a copy we forward (``signing.Signer.branch``): fresh, with
        the loop key; ``upstream`` is where its responses go back to."""
        return self.signer.branch(new_branch(), key, upstream)

    def _cancel(self, node: NodeLike, request: Request, txn: ServerTransaction) -> None:
        """§16.10: a CANCEL is answered here, then what its INVITE started is cancelled."""
        invite = txn.cancels
        if invite is None:
            reason = "Call/Transaction Does Not Exist: no INVITE matches this CANCEL"
            self._reject(node, txn, Rejection(481, reason), stateless=True)
            return
        node.respond(txn, request.response(200, to_tag=new_tag()))
        self._cancel_context(node, invite.context)

    def _cancel_context(self, node: NodeLike, context: Any) -> None:
        """Cancel what the CANCELled INVITE's server transaction carries as context."""

    # -- responses (§16.7) ------------------------------------------------------------------
    def on_response(
        self, node: NodeLike, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        if txn is None:
            self._forward_stray(node, response, source)
        else:
            self._response(node, response, txn, source)

    def _response(
        self, node: NodeLike, response: Response, txn: ClientTransaction, source: Address
    ) -> None:
        """A response in one of our client transactions."""

    # -- forwarding -------------------------------------------------------------------------
    def _upstream(
        self, node: NodeLike, server: ServerTransaction | None, response: Response, stray: bool
    ) -> None:
        """``response`` upstream in ``server`` while it still forwards; else, when
        ``stray`` (a 2xx to an INVITE, §16.7 step 5, RFC 6026), statelessly by its Via."""
        if server is not None and server.state in FORWARDING:
            node.respond(server, response)
        elif stray:
            node.send_stateless(response, via_address(response.via))

    def _forward_ack(self, node: NodeLike, request: Request, source: Address) -> None:
        local = self.local(node)
        found = preprocess_routes(request, local)
        ours, forged = self.signer.believe(found, request.call_id) if found else (None, False)
        dest = None if forged else forward_ack(request, local, ours)
        if dest is None and not forged:
            # For us (the ACK of a final we sent, statelessly too) or nowhere to go.
            event(self.log, "ack_dropped", logging.DEBUG, call_id=request.call_id, uri=request.uri)
            return
        if forged or (ours is None and not self._ack_expected(request, source)):
            self.counts["acks_dropped"] += 1
            why = "forged Route" if forged else "not ours to forward"
            event(self.log, "ack_dropped", why=why, call_id=request.call_id, source=source)
            return
        node.send_stateless(request, dest)

    def _ack_expected(self, request: Request, source: Address) -> bool:
        """An ACK not routed by our signed Route that is still ours to forward:
        a trusted peer's (a role may add the ACKs of its own transactions)."""
        return self.trusts(source)

    def _forward_stray(self, node: NodeLike, response: Response, source: Address) -> None:
        dest = forward_stray(response, self.local(node), self.signer)
        if dest is not None:
            node.send_stateless(response, dest)
        elif stray_2xx(response):
            self.counts["strays_dropped"] += 1
            event(self.log, "stray_dropped", call_id=response.call_id, source=source)

    # -- our own answers --------------------------------------------------------------------
    def _reject(
        self, node: NodeLike, txn: ServerTransaction, rejection: Rejection, *, stateless: bool = False
    ) -> None:
        """Answer a request ourselves; ``stateless`` (before anyone is known to have
        sent it) answers once and forgets the transaction, as ``_refuse`` does."""
        request = txn.request
        response = rejection.response(request)
        response.headers.add("Server", self.server_header)
        if stateless:
            node.respond_stateless(txn, response)
        else:
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

    def _refuse(
        self,
        node: NodeLike,
        txn: ServerTransaction,
        counter: str,
        status: int,
        reason: str,
        *,
        stateless: bool = True,
    ) -> None:
        """Refuse a request: counted, logged with its source. One nobody vouches for
        is answered once and forgotten (no retransmission, no transaction kept);
        ``stateless=False`` for an authenticated one, whose retransmissions the
        transaction absorbs (its credentials are not presented twice)."""
        self.counts[counter] += 1
        request = txn.request
        event(
            self.log, "refused", why=counter, status=status, reason=reason,
            method=request.method, call_id=request.call_id, source=txn.source,
        )  # fmt: skip
        response = self._answer(request, status, reason)
        if stateless:
            node.respond_stateless(txn, response)
        else:
            node.respond(txn, response)

    def _answer(self, request: Request, status: int, reason: str) -> Response:
        response = request.response(status, reason, to_tag=new_tag())
        response.headers.add("Server", self.server_header)
        return response

    # -- timers -----------------------------------------------------------------------------
    def on_tick(self, node: NodeLike, now: float) -> None:
        """Run the role's timers due at ``now`` (monotonic): a subclass's."""
