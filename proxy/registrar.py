"""The registrar (RFC 3261 §10.3): authenticate, then add, refresh or remove bindings.

``Registrar.on_register`` decides with the rules of proxy/bindings.py, hands
the change to the group-commit writer and answers from the writer's callback:
the 200 OK (every current binding, with its expires) once the batch is
committed, a 500 with the reason when it failed. No task per REGISTER.

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
    service.start_nat(node)               # keepalives to bindings behind NAT
    # the handler's on_response / on_timeout: if service.nat.owns(txn), hand the
    # ping's outcome to service.nat.on_response(...) / .on_timeout(...), not the router
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
from proxy.bindings import Origin, Policy, Reject, aor_of, check_require, ok, plan
from proxy.cluster import Cluster
from proxy.feed import LocationFeed
from proxy.location import Location
from proxy.location_store import LocationStore, Removal
from proxy.nat import NatPinger
from proxy.subscribers import ServedDomains, SubscriberDirectory
from proxy.writer import BindingWriter, Change
from sipline.logs import event
from sipline.net.alive import Liveness
from sipline.net.metrics import RoleCounts
from sipline.net.node import Node
from sipline.net.nonces import SharedNonceCounts
from sipline.proxying.signing import Signer
from sipline.sip.address import Address
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ServerTransaction, State
from sipline.storage import Database, StorageError, Subscriber, Subscribers
from sipline.storage.live import open_redis

log = logging.getLogger("sipline.proxy.registrar")

STORE_FAILED = Reject(
    500, "Server Internal Error (binding not stored: location database unavailable)",
    (("Retry-After", "5"),),
)  # fmt: skip

INTERNAL_ERROR = Reject(500, "Server Internal Error (registrar error, see the node's log)")
UNANSWERED = frozenset((State.TRYING, State.PROCEEDING))  # a server transaction still waiting


@dataclass(slots=True)
class Pending:
    """A REGISTER on its way to an answer (authenticated once it reaches ``_busy``)."""

    node: Node
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
    ) -> None:
        self.policy = Policy.from_settings(settings.registrar)
        self.location = location
        self.writer = writer
        self.authenticator = authenticator
        self._node_name: str = settings.node.name
        self._server: str = settings.sip.server_header
        self._clock = clock
        self._busy: dict[str, deque[Pending]] = {}  # AOR -> REGISTERs waiting behind a commit

    def on_register(
        self, node: Node, request: Request, txn: ServerTransaction, source: Address
    ) -> None:
        aor = check_require(request) or aor_of(request, self.authenticator.domains.canonical)
        if isinstance(aor, Reject):
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
        if isinstance(update, Reject):
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
        self, node: Node, txn: ServerTransaction, response: Response, *, stateless: bool = False
    ) -> None:
        """Answer; ``stateless`` for a REGISTER nobody authenticated (no state kept for it)."""
        response.headers.add("Server", self._server)
        # Challenges and 200s are the normal answers (debug); refusals are worth an info line.
        level = logging.DEBUG if response.status in (200, 401) else logging.INFO
        if log.isEnabledFor(level):
            event(log, "register_answered", level, status=response.status,
                  reason=response.reason, call_id=response.call_id, source=txn.source)  # fmt: skip
        if stateless:
            node.respond_stateless(txn, response)
        else:
            node.respond(txn, response)


def proxy_address(node: Node) -> str | None:
    """HOST:PORT where other proxies reach this one (its UDP listener, as advertised)."""
    try:
        return node.local_address("UDP").hostport
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
        self.authenticator = Authenticator(auth, self.directory, domains, self.shared)
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
        self.registrar = Registrar(
            settings, self.location, self.writer, self.authenticator, clock=clock
        )
        self.liveness = Liveness(open_redis(url), "proxy", name) if url else None
        self.cluster = Cluster(name, self.liveness, Signer.from_secret(auth.secret))
        self.nat = NatPinger(settings.nat, self.location, clock=clock, keeps=self.cluster.keeps)
        self._sweep_timer: asyncio.TimerHandle | None = None
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

    async def start(self) -> None:
        """Load the subscribers and the live bindings; start the writer and the sweep.

        StorageError if ``redis.url`` is set and Redis does not answer."""
        if self.shared is not None:
            await self.shared.check()
        if self.liveness is not None:
            await self.liveness.beat()  # who is alive before anything is taken over
            self.liveness.start()
        await self.directory.load()
        await self.feed.load()
        event(log, "registrar_loaded", subscribers=len(self.directory), bindings=len(self.location),
              version=self.feed.last)  # fmt: skip
        self.directory.start()
        self.feed.start()
        self.writer.start()
        self._schedule_sweep()

    def start_nat(self, node: Node) -> None:
        """Begin NAT keepalives through ``node`` (after it started); from then on the
        bindings this proxy takes name it as the holder of their flows."""
        self.cluster.address = proxy_address(node)
        self.nat.start(node)

    async def close(self) -> None:
        """Stop pinging and sweeping, write what is queued, stop reloading subscribers."""
        self.nat.stop()
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
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

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweep_timer = loop.call_later(self.settings.registrar.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        self._schedule_sweep()
        now = self.clock()
        self.location.expire(now)
        liveness = self.liveness
        dead = liveness.members - liveness.alive if liveness is not None else ()
        self.writer.sweep(now, self.cluster.adopted(dead))
