"""The registrar (RFC 3261 §10.3): authenticate, then add, refresh or remove bindings.

``Registrar.on_register`` decides with the rules of proxy/bindings.py, hands
the change to the group-commit writer and answers from the writer's callback:
the 200 OK (every current binding, with its expires) once the batch is
committed; when it failed, 503 with Retry-After (RFC 3261 §21.5.4: a phone
tries another server on a 503, not on a 500). No task per REGISTER.

REGISTERs for one AOR are taken one at a time: while one waits for its
commit, the next waits behind it, so every decision sees the bindings as
committed (Location) and two REGISTERs cannot both pass ``max_contacts``.

Until a REGISTER is authenticated, whatever answers it (the 401 challenge, a
refusal) is sent statelessly: one answer per request received, no
retransmission, no transaction kept (the phone retransmits its request).
When authentication must wait (a database lookup, the nonce counts on
Redis), the REGISTER goes on from the future's done callback; one whose
transaction ended meanwhile is dropped quietly.

``RegistrarService`` is what a proxy process runs of all this::

    service = RegistrarService(settings, db, aliases=[...])
    await service.start()                 # load subscribers and bindings, start the writer
    handler = ProxyHandler(..., service.registrar, Router(settings, service.location,
                           service.directory, service.authenticator), ...)
    node = Node(settings, handler); await node.start()
    # the handler's on_tick calls service.nat.on_tick (keepalives to bindings behind
    # NAT); its on_response / on_timeout: if service.nat.owns(txn), hand the ping's
    # outcome to service.nat.on_response(...) / .on_timeout(...), not the router
    ...
    await node.stop(); await service.close()   # close writes what is still queued
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from proxy.authn import Authenticator
from proxy.bindings import Origin, Policy, aor_of, check_require, ok, plan
from proxy.cluster import Cluster
from proxy.feed import LocationFeed
from proxy.location import Location
from proxy.location_store import LocationStore, Removal
from proxy.nat import NatPinger
from proxy.subscribers import ServedDomains, SubscriberDirectory
from proxy.writer import BindingWriter, Change
from sipline.cluster.heartbeat import Liveness
from sipline.logs import event
from sipline.net.handler import NodeLike
from sipline.net.metrics import RoleCounts
from sipline.net.nonces import SharedNonceCounts
from sipline.proxying.rules import Rejection
from sipline.proxying.signing import Signer
from sipline.secret import node_secret
from sipline.sip.address import Address
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ServerTransaction, State
from sipline.storage import Database, StorageError, Subscriber, Subscribers
from sipline.storage.live import open_redis

log = logging.getLogger("sipline.proxy.registrar")

STORE_FAILED = Rejection(
    503, "Service Unavailable (binding not stored: location database unavailable)",
    (("Retry-After", "5"),),
)  # fmt: skip

INTERNAL_ERROR = Rejection(500, "Server Internal Error (registrar error, see the node's log)")
UNANSWERED = frozenset((State.TRYING, State.PROCEEDING))  # a server transaction still waiting


@dataclass(slots=True)
class Pending:
    """A REGISTER on its way to an answer (authenticated once it reaches ``_busy``)."""

    node: NodeLike
    request: Request
    txn: ServerTransaction
    source: Address
    aor: str


class Registrar:
    def __init__(
        self,
        settings: Any,
        location: Location,
        writer: BindingWriter,
        authenticator: Authenticator,
        *,
        clock: Callable[[], float] = time.time,
        adopted: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.policy = Policy.from_settings(settings.registrar)
        self._adopted = adopted  # dead proxies whose expired rows we sweep too
        self.location = location
        self.writer = writer
        self.authenticator = authenticator
        self._node_name: str = settings.node.name
        self._server: str = settings.sip.server_header
        self._clock = clock
        self._busy: dict[str, deque[Pending]] = {}  # AOR -> REGISTERs waiting behind a commit
        self._sweep_interval: float = settings.registrar.sweep_interval
        self._next_sweep: float | None = None  # monotonic, by the node's tick

    def on_tick(self, node: NodeLike, now: float) -> None:
        """The expiry sweep, every ``registrar.sweep_interval`` of the node's ticks
        (``now``, monotonic): bindings past their expiry (wall clock) leave the
        location, and the writer deletes their rows (and the expired rows of the
        dead proxies this one adopted) between its batches."""
        due = self._next_sweep
        if due is None or now >= due:
            self._next_sweep = now + self._sweep_interval
            if due is not None:
                wall = self._clock()
                self.location.expire(wall)
                self.writer.sweep(wall, self._adopted())

    def on_register(
        self, node: NodeLike, request: Request, txn: ServerTransaction, source: Address
    ) -> None:
        aor = check_require(request) or aor_of(request, self.authenticator.domains.canonical)
        if isinstance(aor, Rejection):
            self._respond(node, txn, aor.response(request), stateless=True)
            return
        pending = Pending(node, request, txn, source, aor)
        verdict = self.authenticator.authenticate(
            request, source, self._clock(), proxy=False, guard=node.guard
        )
        if isinstance(verdict, asyncio.Future):
            verdict.add_done_callback(partial(self._authenticated, pending))
            return
        self._admit(pending, verdict)

    def _authenticated(self, p: Pending, verdict: asyncio.Future[Subscriber | Response]) -> None:
        if verdict.cancelled() or p.txn.state not in UNANSWERED:
            return  # ended meanwhile (the node stopped): nobody waits for an answer
        try:
            self._admit(p, verdict.result())
        except Exception:
            log.exception("event=register_error call_id=%s", p.request.call_id)
            with contextlib.suppress(Exception):
                self._respond(p.node, p.txn, INTERNAL_ERROR.response(p.request), stateless=True)

    def _admit(self, pending: Pending, verdict: Subscriber | Response) -> None:
        """Go on with an authenticated REGISTER, or answer the one refused."""
        if isinstance(verdict, Response):
            self._respond(pending.node, pending.txn, verdict, stateless=True)
            return
        aor = pending.aor
        waiting = self._busy.get(aor)
        if waiting is not None:
            waiting.append(pending)
            return
        self._busy[aor] = deque()
        if not self._process(pending):
            self._release(aor)

    def _process(self, p: Pending) -> bool:
        """Decide and answer, or hand to the writer; True while a commit is pending."""
        try:
            return self._decide(p)
        except Exception:  # a bug must not leave the AOR waiting forever
            log.exception("event=register_error call_id=%s", p.request.call_id)
            with contextlib.suppress(Exception):  # it may have been answered already
                self._respond(p.node, p.txn, INTERNAL_ERROR.response(p.request))
            return False

    def _decide(self, p: Pending) -> bool:
        now = self._clock()
        origin = Origin(p.source, self._node_name, proxy_address(p.node))
        update = plan(p.request, p.aor, self.location.lookup(p.aor, now), now, self.policy, origin)
        if isinstance(update, Rejection):
            self._respond(p.node, p.txn, update.response(p.request))
            return False
        if update.empty:
            self._respond(p.node, p.txn, ok(p.request, self.location.lookup(p.aor, now), now))
            return False
        removals = [Removal(b.aor, b.contact) for b in update.removals]

        def committed(error: StorageError | None) -> None:
            try:
                if error is None:
                    gone = [b.key for b in update.removals]
                    self.location.apply(update.upserts, gone, change.version)
                    later = self._clock()
                    response = ok(p.request, self.location.lookup(p.aor, later), later)
                else:
                    response = STORE_FAILED.response(p.request)
                self._respond(p.node, p.txn, response)
            finally:
                self._release(p.aor)

        change = Change(update.upserts, removals, committed)
        self.writer.submit(change)
        return True

    def _release(self, aor: str) -> None:
        """The AOR's commit is over: take the REGISTERs that waited behind it."""
        waiting = self._busy[aor]
        while waiting:
            if self._process(waiting.popleft()):
                return
        del self._busy[aor]

    def _respond(
        self, node: NodeLike, txn: ServerTransaction, response: Response, *, stateless: bool = False
    ) -> None:
        """Answer; ``stateless`` for a REGISTER nobody authenticated (no state kept for it)."""
        response.headers.add("Server", self._server)
        # Challenges are the normal first answer (debug); a registration done and a refusal
        # are worth an info line (the node's name ends every line).
        level = logging.DEBUG if response.status == 401 else logging.INFO
        if log.isEnabledFor(level):
            event(log, "register_answered", level, status=response.status,
                  reason=response.reason, call_id=response.call_id, source=txn.source)  # fmt: skip
        if stateless:
            node.respond_stateless(txn, response)
        else:
            node.respond(txn, response)


def proxy_address(node: NodeLike) -> str | None:
    """HOST:PORT where other proxies reach this one (its UDP listener, as advertised;
    a worker's own socket: the flows it holds are its own, sipline.net.workers)."""
    try:
        return node.via_address("UDP").hostport
    except LookupError:
        return None


class RegistrarService:
    """Subscribers, authentication, location, group commit, sweep and NAT keepalives of a proxy.

    ``aliases``: the hosts that stand for the first domain (the proxy's own
    addresses); by default ``sip.host``.
    """

    def __init__(
        self,
        settings: Any,
        db: Database,
        *,
        aliases: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        domains = ServedDomains(settings.proxy.domains, aliases or [settings.sip.host])
        auth = settings.auth
        self.directory = SubscriberDirectory(
            Subscribers(db), wait=auth.lookup_timeout, max_wanted=auth.max_pending
        )
        url = settings.redis.url
        self.shared = SharedNonceCounts.from_url(url) if url else None
        secret = node_secret(settings)
        self.authenticator = Authenticator(
            auth, self.directory, domains, self.shared, secret=secret
        )
        name = settings.node.name
        self.store = LocationStore(db, name)
        r = settings.registrar
        self.location = Location()
        self.feed = LocationFeed(
            self.store, self.location, open_redis(url) if url else None,
            interval=r.catch_up_interval, unsubscribed_interval=r.catch_up_interval_unsubscribed,
            clock=clock,
        )  # fmt: skip
        self.writer = BindingWriter(self.store, r.commit_rows, r.commit_ms, self.feed.committed)
        self.location.forgetter = self.writer
        self.liveness = Liveness(open_redis(url), "proxy", name) if url else None
        self.cluster = Cluster(name, self.liveness, Signer.from_secret(secret or ""))
        self.registrar = Registrar(
            settings, self.location, self.writer, self.authenticator, clock=clock,
            adopted=self.adopted,
        )  # fmt: skip
        self.nat = NatPinger(
            settings.nat, self.location, node_name=name, clock=clock, keeps=self.cluster.keeps
        )
        feed = self.feed
        self.metrics = RoleCounts("proxy", {})
        self.metrics.watch("location_aors", "Addresses of record whose bindings this proxy holds",
                           lambda: self.location.aors)  # fmt: skip
        self.metrics.watch("location_version", "The last location version applied",
                           lambda: feed.last)  # fmt: skip
        self.metrics.watch("location_syncing", "1 while the location catches up (503s)",
                           lambda: float(feed.syncing))  # fmt: skip

    @property
    def in_sync(self) -> bool:
        """The location holds what every proxy committed (False: ``syncing``)."""
        return self.feed.in_sync

    def adopted(self) -> Iterable[str]:
        """The dead proxies whose rows this one sweeps (proxy.cluster)."""
        liveness = self.liveness
        dead = liveness.members - liveness.alive if liveness is not None else ()
        return self.cluster.adopted(dead)

    async def start(self) -> None:
        """Load the subscribers and the live bindings; start the writer (the node's
        tick runs the sweep: ``Registrar.on_tick``).

        StorageError if ``redis.url`` is set and Redis does not answer."""
        if self.shared is not None:
            await self.shared.check()
        if self.liveness is not None:
            await self.liveness.look()  # who is alive before anything is taken over
            self.liveness.start()
        await self.directory.load()
        await self.feed.load()
        event(log, "registrar_loaded", subscribers=len(self.directory), bindings=len(self.location),
              version=self.feed.last)  # fmt: skip
        self.directory.start()
        self.feed.start()
        self.writer.start()

    async def close(self) -> None:
        """Write what is queued, stop reloading subscribers."""
        await self.writer.close()
        await self.feed.close()
        self.metrics.unwatch()
        if self.liveness is not None:
            await self.liveness.close()
            await self.liveness.redis.aclose()
        await self.directory.close()
        self.authenticator.close()
        if self.shared is not None:
            await self.shared.close()
