"""The stateful proxy core (RFC 3261 §16): every request the proxy routes.

For each request: validate it (§16.3), take our own Route entries off it
(§16.4, believed only under our signature), detect loops, decide who sends
it, choose the targets (§16.5: a subscriber's registered contacts in
q-ordered groups, the B2BUA for anything off-net, the dialog's recorded
flow or the Request-URI in a dialog), forward a copy to each in its own
client transaction (§16.6) and pick the response to send upstream (§16.7,
``proxy.forking``).

Who sends it (docs/design.md "The trust model as built"): a trusted peer (``proxy.trusted``),
believed as it is; a party of a dialog our signed Record-Route runs
(``sipline.proxying.signing``); or a subscriber, challenged (§22.3) before
anything is looked up for it, so a stranger learns nothing of who is
registered. A stranger's internal headers are taken off first, and a new
request of his with a pre-loaded Route is refused 403 "Preload Route
denied". An authenticated request goes on with the subscriber's
P-Asserted-Identity, only if its From is theirs (``proxy.identity``), and
never to an internal node (``sipline.proxying.internal``) unless the
dialog runs through it.

Calls whose media the relay anchors (``proxy.media``) wait for its ng
replies in done callbacks of futures, not tasks: the INVITE is forwarded once
its offer is rewritten, a 18x or 2xx goes upstream once its answer is.

ACKs for 2xx and stray 2xx retransmissions are forwarded statelessly
(§16.11, RFC 6026). Timer C and the B2BUA failover timer run from the
node's tick (``on_tick``), not a task or timer handle per transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sipline.config import Settings, split_hop, split_host_port
from sipline.peers import TrustedPeers
from sipline.proxying.deadlines import Deadlines
from sipline.proxying.flows import HELD, encode_flow, record_route_params
from sipline.proxying.internal import INSIDE, InternalHops, hop, strip_internal
from sipline.proxying.rules import (
    DIALOG_METHODS,
    Rejection,
    decrement_max_forwards,
    loop_key,
    pop_own_via,
    strict_route,
    via_address,
)
from sipline.proxying.stateful import COUNTED as PROXY_COUNTED
from sipline.proxying.stateful import StatefulProxy
from sipline.secret import node_secret
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.headers import NameAddr
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction, State, Transaction

from .forking import Branch, Fork
from .identity import assert_identity, from_is_theirs
from .media import ANCHORED, Kind, MediaAnchor, has_sdp
from .routing import Plan, Target, drop_own_credentials
from .targets import Targets

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike

log = logging.getLogger("sipline.proxy.router")

# What the proxy counts beyond every stateful proxy's (sipline_proxy_<name>_total).
COUNTED = {
    **PROXY_COUNTED,
    "preloaded_routes": "New requests from strangers refused 403: a pre-loaded Route",
    "impersonations": "Requests refused 403: the From is not the authenticated subscriber's",
    "internal_hops": "Requests refused 403: a Contact, Path or next hop of a subscriber's"
    " leads to an internal node",
    "insecure_hops": "Branches of a sips request received over TLS not forwarded (480):"
    " the target is not reached over TLS",
}
FAILOVER_AFTER = 4.0  # seconds a B2BUA may stay silent before the next one is tried


class Awaiting:
    """The context of a request whose credentials are being checked (a future)."""

    __slots__ = ("server",)

    def __init__(self, server: ServerTransaction) -> None:
        self.server = server


class Router(StatefulProxy):
    """Routes every request but REGISTER for our domains and OPTIONS to us.

    ``location``, ``directory`` and ``authenticator`` are piece A's
    ``Location``, ``SubscriberDirectory`` and ``Authenticator``; ``clock``
    is wall-clock time for them. ``timer_c`` and ``failover_after``
    override the configured timer C and the B2BUA silence limit (tests).
    ``cluster`` (proxy.cluster.Cluster) reaches phones whose flows other
    proxies hold.
    """

    log = log
    counted = COUNTED

    def __init__(
        self,
        settings: Settings,
        location: Any,
        directory: Any,
        authenticator: Any,
        clock: Callable[[], float] = time.time,
        *,
        timer_c: float | None = None,
        failover_after: float = FAILOVER_AFTER,
        monotonic: Callable[[], float] = time.monotonic,
        cluster: Any = None,
    ) -> None:
        proxy = settings.proxy
        super().__init__(
            settings.sip, settings.auth, proxy.domains,
            secret=node_secret(settings), monotonic=monotonic,
        )  # fmt: skip
        self.trusted = TrustedPeers(proxy.trusted)
        self.record_route = proxy.record_route
        b2bua = [Address(*split_hop(peer)) for peer in proxy.b2bua]
        self.targets = Targets(location, directory, b2bua, clock, cluster)
        self.cluster = cluster
        self.authenticator = authenticator
        self.clock = clock
        self.timer_c: Deadlines[Branch] = Deadlines(timer_c or proxy.timer_c)
        self.no_answer: Deadlines[Branch] = Deadlines(failover_after)
        self.media = MediaAnchor.from_settings(proxy)
        self.internal = InternalHops(internal_hops(settings))
        # INVITEs answered while we do not record-route: (Call-ID, CSeq) -> their fork,
        # until the server transaction ends; their ACKs are ours to forward.
        self.accepted: dict[tuple[str, int], Fork] = {}

    def close(self) -> None:
        """Stop the relay's client (the node has stopped)."""
        if self.media is not None:
            self.media.close()

    # -- requests -------------------------------------------------------------------
    def _route(self, node: NodeLike, request: Request, txn: ServerTransaction, source: Address) -> None:
        refused = None
        if request.method == "REGISTER":
            refused = Rejection(403, "Forbidden: REGISTER for a domain not served here")
        preprocessed = self._preprocess(node, request, txn, refused)
        if preprocessed is None:
            return
        _, ours, key = preprocessed
        if self.trusts(source):
            self._route_as(node, request, txn, source, None, ours, key)
            return
        strip_internal(request)
        if ours is not None:
            # A party of a dialog our signed Record-Route runs: nothing to authenticate.
            self._route_as(node, request, txn, source, None, ours, key)
            return
        if request.to.tag is None and "route" in request.headers:
            self._refuse(node, txn, "preloaded_routes", 403, "Preload Route denied")
            return
        # §22.3: anything else is a subscriber's to prove, before anything is looked up.
        subscriber = self._authenticate(node, request, txn)
        if subscriber is not None:
            self._route_as(node, request, txn, source, subscriber, ours, key)

    def _route_as(
        self,
        node: NodeLike,
        request: Request,
        txn: ServerTransaction,
        source: Address,
        subscriber: Any,
        ours: dict[str, str] | None = None,
        key: str | None = None,
    ) -> None:
        """Route ``request`` once it is known who sends it: ``subscriber`` (authenticated,
        ``_authenticate``'s result) or None (a trusted peer, or a party of a dialog
        our signed Record-Route runs: ``ours`` are its parameters).

        The continuation of ``_route`` after authentication, also when the
        authenticator answers later (a future's callback calls it with the
        first five arguments). ``key`` is the loop key (computed again when
        not given)."""
        local = self.local(node)
        if key is None:
            key = loop_key(request)
        trusted = self.trusts(source)
        anonymous = subscriber is None  # stateless refusals: nobody vouches for it
        if subscriber is not None:
            if not from_is_theirs(request, subscriber, local.domain_of):
                reason = f"Forbidden: the From is not {subscriber.aor}'s"
                self._refuse(node, txn, "impersonations", 403, reason, stateless=False)
                return
            assert_identity(request, subscriber)
        if not trusted and self._contact_inside(request):
            reason = "Forbidden: the Contact leads to one of our internal nodes"
            self._refuse(node, txn, "internal_hops", 403, reason, stateless=anonymous)
            return
        plan = self.targets.plan(request, local, ours, trusted=trusted)
        if isinstance(plan, Rejection):
            self._reject(node, txn, plan)
            return
        if not trusted and request.to.tag is not None and self._leads_inside(plan, ours):
            reason = "Forbidden: the next hop is one of our internal nodes"
            self._refuse(node, txn, "internal_hops", 403, reason, stateless=anonymous)
            return
        decrement_max_forwards(request)
        fork = Fork(txn, request, plan.groups, plan.failover)
        fork.key = key
        if self.record_route and request.method in DIALOG_METHODS and request.to.tag is None:
            fork.record_route = record_route_params(request, source)
            if trusted and source in self.internal:
                fork.record_route += f";{INSIDE}={hop(source)}"  # its side may be reached
        txn.context = fork
        if self.media is not None:
            fork.media = self.media.plan(request, source, plan, ours, trusted=trusted)
            if fork.media is not None and fork.media.kind is not Kind.BYE:
                self._offer(node, fork, source)
                return
        self._settle(node, fork)

    def trusts(self, source: Address) -> bool:
        """A configured peer of ours (``proxy.trusted``), or another worker of this
        proxy: not challenged, its identity kept."""
        cluster = self.cluster
        return self.trusted.trusts(source) or (cluster is not None and cluster.is_sibling(source))

    def _new_request_route(
        self, ours: dict[str, str] | None, source: Address
    ) -> dict[str, str] | None:
        """A new request another proxy of ours (a trusted peer) sends to the phone
        whose flow we hold: the flow it names under our signature (proxy.cluster)."""
        if ours is None or HELD not in ours or not self.trusts(source):
            return None
        return {HELD: ours[HELD]}

    def refuse_register(
        self, node: NodeLike, request: Request, txn: ServerTransaction, source: Address
    ) -> bool:
        """Refuse (403, True) a stranger's REGISTER whose Contact or Path leads to
        one of our internal nodes: its calls would be sent there through us."""
        if self.trusts(source):
            return False
        try:
            inside = self._contact_inside(request) or any(
                self.internal.reached_by(NameAddr.parse(value).uri_text)
                for value in request.headers.values("path")
            )
        except ParseError:
            return False  # the registrar answers 400
        if inside:
            reason = "Forbidden: a Contact or Path leads to one of our internal nodes"
            self._refuse(node, txn, "internal_hops", 403, reason)
        return inside

    def _contact_inside(self, request: Request) -> bool:
        if "contact" not in request.headers:
            return False
        reached_by = self.internal.reached_by
        return any(not c.star and reached_by(c.uri_text) for c in request.contacts)

    def _leads_inside(self, plan: Plan, ours: dict[str, str] | None) -> bool:
        """A request in a dialog goes to an internal node our Record-Route does not name."""
        allowed = ours.get(INSIDE) if ours is not None else None
        return any(
            target.dest in self.internal and hop(target.dest) != allowed
            for group in plan.groups
            for target in group
        )

    def _ack_expected(self, request: Request, source: Address) -> bool:
        """Without record-routing, the ACK for a 2xx to an INVITE of ours is ours to forward."""
        if self.trusts(source):
            return True
        return (request.call_id, request.cseq.number) in self.accepted

    def _authenticate(self, node: NodeLike, request: Request, txn: ServerTransaction) -> Any:
        """The subscriber the request is from, or None once it was answered (a 407
        or refusal, statelessly: nobody authenticated it) or while its verdict is
        awaited (a database lookup, the nonce counts on Redis): then routing goes
        on from the future's done callback (``_route_as``), or the request is
        answered from it."""
        result = self.authenticator.authenticate(
            request, txn.source, self.clock(), proxy=True, guard=node.guard
        )
        if isinstance(result, asyncio.Future):
            txn.context = Awaiting(txn)  # a CANCEL meanwhile answers the INVITE 487
            result.add_done_callback(lambda verdict: self._authenticated(node, txn, verdict))
            return None
        if isinstance(result, Response):
            node.respond_stateless(txn, result)
            return None
        drop_own_credentials(request, self.domains)
        return result

    def _authenticated(
        self, node: NodeLike, txn: ServerTransaction, verdict: asyncio.Future[Any]
    ) -> None:
        """A verdict that was awaited: route the request as its subscriber, or answer it."""
        request = txn.request
        if verdict.cancelled() or txn.state not in (State.TRYING, State.PROCEEDING):
            return  # answered meanwhile (CANCELled) or ended (the node stopped)
        txn.context = None
        try:
            subscriber = verdict.result()
            if isinstance(subscriber, Response):
                node.respond_stateless(txn, subscriber)
                return
            drop_own_credentials(request, self.domains)
            self._route_as(node, request, txn, txn.source, subscriber)
        except Exception:
            log.exception("event=router_error where=authenticated call_id=%s", request.call_id)
            if txn.state in (State.TRYING, State.PROCEEDING):  # not answered before
                why = "Server Internal Error: authentication failed, see the node's log"
                self._reject(node, txn, Rejection(500, why))

    # -- forking (§16.6) --------------------------------------------------------------
    def _settle(self, node: NodeLike, fork: Fork) -> None:
        """Start the next group when the current one is over, or answer upstream."""
        while not fork.pending and not fork.answered:
            targets = fork.next_group()
            if targets is None:
                fork.answered = True
                if fork.server is not None:
                    node.respond(fork.server, fork.best())
                if fork.media is not None:
                    self._media_over(fork, answered=False)
                return
            for target in targets:
                self._branch(node, fork, target)

    def _branch(self, node: NodeLike, fork: Fork, target: Target) -> None:
        branch = fork.add(target)
        local = self.local(node)
        assert fork.server is not None
        transport = target.dest.transport
        if transport not in local.addresses:
            # §16.9: a transport error counts as a 503 from that branch.
            reason = f"Service Unavailable: no {transport} listener to reach {target.dest}"
            fork.finish(branch, fork.make(503, reason))
            return
        request = fork.request
        if transport != "TLS" and secure(request, fork.server.source):
            # RFC 3261 §26.2.2, RFC 5630 §3.1.3: a sips request that came over TLS
            # goes on over TLS or not at all.
            self.counts["insecure_hops"] += 1
            reason = f"Temporarily Unavailable: {target.dest} is not reached over TLS (sips)"
            fork.finish(branch, fork.make(480, reason))
            return
        copy = Request(
            request.method, target.uri or request.uri, request.headers.copy(), request.body
        )
        headers = copy.headers
        for route in reversed(target.routes):
            headers.prepend("Route", route)
        if "route" in headers:
            strict_route(copy)
        if fork.record_route is not None:
            params = fork.record_route
            if target.flow:
                params += f";fb={encode_flow(target.dest)}"
            elif target.dest in self.internal:
                params += f";{INSIDE}={hop(target.dest)}"  # the B2BUA: its side may be reached
            params = self.signer.sign(params, request.call_id)
            inbound = fork.server.source.transport
            headers.prepend("Record-Route", local.record_route(inbound, params))
            if transport != inbound:  # RFC 5658 double record-routing
                headers.prepend("Record-Route", local.record_route(transport, params))
        headers.prepend("Via", local.via(transport, self.branch(fork.key, via_address(request.via))))
        txn = node.send_request(copy, target.dest)
        txn.context = branch
        branch.txn = txn
        now = self._now()
        if fork.invite:
            self.timer_c.arm(branch, now)
        if fork.failover is not None and fork.groups:
            self.no_answer.arm(branch, now)

    def _give_up(self, node: NodeLike, branch: Branch, response: Response | None = None) -> None:
        """End a branch here: CANCEL it (sent when it answers, if it has not yet, §9.1)."""
        self._disarm(branch)
        if branch.txn is not None and branch.fork.invite:
            node.cancel(branch.txn)
        branch.fork.finish(branch, response)

    def _disarm(self, branch: Branch) -> None:
        self.timer_c.disarm(branch)
        self.no_answer.disarm(branch)

    # -- media anchoring (proxy.media) ----------------------------------------------------
    def _offer(self, node: NodeLike, fork: Fork, source: Address) -> None:
        """Forward the request once the relay has anchored its offer."""
        assert self.media is not None and fork.media is not None
        future = self.media.offer(fork.media, fork.request, source)
        future.add_done_callback(lambda done: self._offered(node, fork, done))

    def _offered(self, node: NodeLike, fork: Fork, future: asyncio.Future[bytes]) -> None:
        media = fork.media
        assert self.media is not None and media is not None
        try:
            if not self.media.offered(media, fork.request, future):
                fork.media = None  # the relay failed: forwarded as it came
            elif media.kind is Kind.CALL and fork.record_route is not None:
                fork.record_route += f";{ANCHORED}"  # in-dialog requests will know
            if fork.answered:  # cancelled, or the transaction ended, while the relay answered
                if fork.media is not None:
                    self._media_over(fork, answered=False)
                return
            self._settle(node, fork)
        except Exception:
            log.exception("event=router_error where=offered call_id=%s", media.call_id)

    def _anchor_answer(
        self, node: NodeLike, branch: Branch, response: Response, source: Address
    ) -> bool:
        """Anchor the answer in ``response``: False if done already (a retransmission),
        True if the response goes on when the relay has answered."""
        media = branch.fork.media
        assert self.media is not None and media is not None
        future = self.media.answer(media, response, source, direct=branch.target.flow)
        if future.done():
            self.media.answered(media, response, future)
            return False
        future.add_done_callback(lambda done: self._answer_back(node, branch, response, done))
        return True

    def _answer_back(
        self, node: NodeLike, branch: Branch, response: Response, future: asyncio.Future[bytes]
    ) -> None:
        media = branch.fork.media
        try:
            if self.media is not None and media is not None:
                self.media.answered(media, response, future)
            self._final_or_not(node, branch, response)
        except Exception:
            log.exception("event=router_error where=answered call_id=%s", response.call_id)

    def _media_over(self, fork: Fork, *, answered: bool) -> None:
        """The request's fork has ended: a BYE's, or an unanswered call's, media is deleted."""
        media = fork.media
        assert self.media is not None and media is not None
        if media.offering:
            return  # the offer's callback sees the fork answered and deletes then
        if media.kind is Kind.BYE or (media.kind is Kind.CALL and not answered):
            fork.media = None
            self.media.delete(media)

    # -- CANCEL (§16.10) --------------------------------------------------------------
    def _cancel_context(self, node: NodeLike, fork: Any) -> None:
        if type(fork) is Awaiting:  # its credentials are still being checked: nothing sent on
            response = fork.server.request.response(487, to_tag=new_tag())
            node.respond(fork.server, response)  # §9.2; the verdict then finds it answered
            return
        if type(fork) is not Fork or fork.answered:
            return
        fork.cancelled = True
        for branch in fork.running():
            if branch.provisional and branch.txn is not None:
                node.cancel(branch.txn)  # its 487 ends it
            else:
                self._give_up(node, branch)
        self._settle(node, fork)

    # -- responses (§16.7) ------------------------------------------------------------
    def _response(
        self, node: NodeLike, response: Response, txn: ClientTransaction, source: Address
    ) -> None:
        branch = txn.context
        if type(branch) is not Branch:
            return  # a CANCEL's answer, or a transaction someone else started
        status = response.status
        if status == 100:
            self._provisional(node, branch, response)  # never forwarded (§16.7 step 5)
            return
        if not pop_own_via(response):
            return  # §16.7 step 3: it was for us
        media = branch.fork.media
        if media is not None and media.anchored and status < 300 and has_sdp(response):
            if self._anchor_answer(node, branch, response, source):
                return  # goes on when the relay has answered
        self._final_or_not(node, branch, response)

    def _final_or_not(self, node: NodeLike, branch: Branch, response: Response) -> None:
        status = response.status
        if status < 200:
            self._provisional(node, branch, response)
        elif status < 300:
            self._answered(node, branch, response)
        else:
            self._failed(node, branch, response)

    def _provisional(self, node: NodeLike, branch: Branch, response: Response) -> None:
        if not branch.provisional:
            branch.provisional = True
            self.no_answer.disarm(branch)
        fork = branch.fork
        if branch.done or fork.answered:
            return
        if fork.invite:
            self.timer_c.arm(branch, self._now())  # §16.6 step 11: reset on every 1xx
        if response.status > 100 and fork.server is not None:
            node.respond(fork.server, response)  # §16.7 step 5: at once

    def _answered(self, node: NodeLike, branch: Branch, response: Response) -> None:
        """A 2xx goes upstream at once (§16.7 step 5), every one for an INVITE
        (RFC 6026); the other branches are cancelled (§16.7 step 10)."""
        fork = branch.fork
        self._disarm(branch)
        fork.finish(branch, None)
        self._upstream(node, fork.server, response, fork.invite)
        if fork.answered:
            return
        fork.answered = True
        if fork.invite and not self.record_route and fork.server is not None:
            self.accepted[_transaction_of(fork.request)] = fork
        if fork.media is not None:
            self._media_over(fork, answered=True)
        for other in fork.running():
            self._give_up(node, other)

    def _failed(self, node: NodeLike, branch: Branch, response: Response) -> None:
        if branch.done:
            return  # given up on before it answered
        fork = branch.fork
        self._disarm(branch)
        fork.finish(branch, response)
        if fork.stopped:  # a 6xx: no one else is to be tried (§16.7 step 5)
            for other in fork.running():
                self._give_up(node, other)
        self._settle(node, fork)

    def on_timeout(self, node: NodeLike, txn: Transaction) -> None:
        """Timer B or F: the branch answered 408 (§16.7 step 2)."""
        branch = txn.context
        if type(branch) is not Branch or branch.done:
            return
        self._disarm(branch)
        fork = branch.fork
        fork.finish(branch, fork.make(408, f"Request Timeout: no answer from {branch.target.dest}"))
        self._settle(node, fork)

    def on_terminated(self, node: NodeLike, txn: Transaction) -> None:
        """Break the reference cycles of a finished transaction at once, so a
        call's objects go with reference counting, not the (rare) cyclic GC."""
        context = txn.context
        txn.context = None
        if type(context) is Branch:
            context.txn = None
            if not context.done and context.fork.server is not None:
                self._disarm(context)
                fork = context.fork
                fork.finish(context, fork.make(503, "Service Unavailable: branch ended unanswered"))
                self._settle(node, fork)
        elif type(context) is Fork:
            context.server = None
            context.branches = []
            if self.accepted:
                self.accepted.pop(_transaction_of(context.request), None)

    # -- timers ---------------------------------------------------------------------------
    def on_tick(self, node: NodeLike, now: float) -> None:
        """Run timer C (§16.8) and the B2BUA failover timer due at ``now`` (monotonic)."""
        for branch in self.no_answer.expire(now):
            if not branch.done and not branch.provisional:
                dest = branch.target.dest
                reason = f"Request Timeout: {dest} sent nothing for {self.no_answer.duration:g} s"
                self._give_up(node, branch, branch.fork.make(408, reason))
                self._settle(node, branch.fork)
        for branch in self.timer_c.expire(now):
            if branch.done:
                continue
            if branch.provisional:
                if branch.txn is not None:
                    node.cancel(branch.txn)  # its 487 (or §9.1's limit) ends it
            else:
                reason = "Request Timeout: no provisional response before timer C"
                self._give_up(node, branch, branch.fork.make(408, reason))
                self._settle(node, branch.fork)


def secure(request: Request, source: Address) -> bool:
    """A sips request that came over TLS: every hop after us must be TLS too."""
    return source.transport == "TLS" and request.uri[:5].lower() == "sips:"


def _transaction_of(request: Request) -> tuple[str, int]:
    return (request.call_id, request.cseq.number)


def internal_hops(settings: Settings) -> list[tuple[str, int]]:
    """Our internal nodes as the configuration names them: the B2BUAs, the ACR
    nodes, the relay's ng control."""
    hops = [*settings.proxy.b2bua, settings.acr.primary, settings.acr.secondary]
    hops.append(f"{settings.b2bua.host}:{settings.b2bua.port}")
    hops.append(f"{settings.relay.ng_host}:{settings.relay.ng_port}")
    if settings.proxy.media_relay:
        hops.append(settings.proxy.media_relay)
    return [split_host_port(value) for value in hops]
