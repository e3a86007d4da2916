"""The proxy node: the handler that splits traffic between registrar and router, and its life.

``ProxyHandler`` sends a REGISTER for one of our domains to the registrar
(unless the router refuses its Contact or Path: an internal node),
answers an OPTIONS addressed to the proxy itself, and gives everything else
(calls, in-dialog requests, CANCEL, stray ACKs, every response) to the router.
``serve_proxy`` opens the database, loads subscribers and bindings, starts the
node and the registrar's background work, and on SIGTERM or SIGINT drains the
node and writes the bindings still pending before it closes the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from proxy.cluster import check_cluster_node
from proxy.registrar import RegistrarService, proxy_address
from proxy.router import Router
from sipline.cluster.member import Drain, Figures, Member, node_settings
from sipline.logs import event
from sipline.net.handler import Handler, NodeLike
from sipline.net.metrics import RoleCounts
from sipline.net.node import Node
from sipline.net.serving import run_until_stopped
from sipline.net.supervisor import Supervisor, worker_command
from sipline.net.workers import Workers
from sipline.proxying.rules import Local
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.headers import format_host_port
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction, Transaction
from sipline.sip.uri import SipUri
from sipline.storage import Database, open_database, prepare_schema
from sipline.storage.database import redact

log = logging.getLogger("sipline.proxy")

SYNCING = "subscribers and bindings"  # what a proxy loads before it serves
LOCATION = "the location, after a gap in its change feed"  # proxy.feed
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, UPDATE, INFO, MESSAGE, REFER, NOTIFY"
ACCEPT = "application/sdp"
SUPPORTED = "path"


class RegistrarLike(Protocol):
    def on_register(
        self, node: NodeLike, request: Request, txn: ServerTransaction, source: Address
    ) -> None: ...

    def on_tick(self, node: NodeLike, now: float) -> None: ...


class PingerLike(Protocol):
    def owns(self, txn: Transaction | None) -> bool: ...

    def on_response(
        self, node: NodeLike, response: Response, txn: ClientTransaction, source: Address
    ) -> None: ...

    def on_timeout(self, node: NodeLike, txn: Transaction) -> None: ...

    def on_tick(self, node: NodeLike, now: float) -> None: ...


class RouterLike(Protocol):
    def trusts(self, source: Address) -> bool: ...

    def refuse_register(
        self, node: NodeLike, request: Request, txn: ServerTransaction, source: Address
    ) -> bool: ...

    def on_request(
        self, node: NodeLike, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None: ...

    def on_response(
        self, node: NodeLike, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None: ...

    def on_timeout(self, node: NodeLike, txn: Transaction) -> None: ...

    def on_terminated(self, node: NodeLike, txn: Transaction) -> None: ...

    def on_tick(self, node: NodeLike, now: float) -> None: ...

    def local(self, node: NodeLike) -> Local:
        """Who we are: the node's addresses and our domains."""
        ...


class ProxyHandler(Handler):
    """Dispatches the node's callbacks: REGISTER and OPTIONS to us here, the rest to the router.

    The node's tick runs the router's timers, the registrar's expiry sweep and
    the NAT keepalives of the ``pinger``; the outcomes of the OPTIONS it sent go back to it.
    """

    def __init__(
        self,
        registrar: RegistrarLike,
        router: RouterLike,
        server_header: str,
        pinger: PingerLike | None = None,
        syncing: Syncing | None = None,
    ) -> None:
        self.registrar = registrar
        self.router = router
        self.server_header = server_header
        self.pinger = pinger
        self.syncing = syncing

    def trusts(self, source: Address) -> bool:
        return self.router.trusts(source)

    def on_request(
        self, node: NodeLike, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        if txn is not None:
            method = request.method
            if self.syncing is not None and self.syncing.refuses(node, request, txn):
                return
            if method == "REGISTER" and self._for_our_domain(node, request):
                if not self.router.refuse_register(node, request, txn, source):
                    self.registrar.on_register(node, request, txn, source)
                return
            if method == "OPTIONS" and self._for_us(node, request):
                # Anyone's keepalive: answered once, nothing kept (a retransmission
                # is answered again).
                node.respond_stateless(txn, self._capabilities(request))
                return
        self.router.on_request(node, request, txn, source)

    def on_response(
        self, node: NodeLike, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        pinger = self.pinger
        if pinger is not None and txn is not None and pinger.owns(txn):
            pinger.on_response(node, response, txn, source)
            return
        self.router.on_response(node, response, txn, source)

    def on_timeout(self, node: NodeLike, txn: Transaction) -> None:
        if self.pinger is not None and self.pinger.owns(txn):
            self.pinger.on_timeout(node, txn)
            return
        self.router.on_timeout(node, txn)

    def on_terminated(self, node: NodeLike, txn: Transaction) -> None:
        if self.pinger is not None and self.pinger.owns(txn):
            return
        self.router.on_terminated(node, txn)

    def on_tick(self, node: NodeLike, now: float) -> None:
        self.router.on_tick(node, now)
        self.registrar.on_tick(node, now)
        if self.pinger is not None:
            self.pinger.on_tick(node, now)

    def _for_our_domain(self, node: NodeLike, request: Request) -> bool:
        uri = _sip_uri(request)
        return uri is not None and self.router.local(node).domain_of(uri) is not None

    def _for_us(self, node: NodeLike, request: Request) -> bool:
        """The Request-URI names the proxy itself (no user part), not a subscriber."""
        # A pre-loaded Route to somewhere else makes it the router's business (§16.4).
        uri = _sip_uri(request)
        local = self.router.local(node)
        if uri is None or uri.user is not None or local.domain_of(uri) is None:
            return False
        if "route" not in request.headers:
            return True
        try:
            routes = request.routes
        except ParseError:
            return False  # the router answers 400
        return all(
            isinstance(r.uri, SipUri) and local.domain_of(r.uri) is not None for r in routes
        )

    def _capabilities(self, request: Request) -> Response:
        response = request.response(200, to_tag=new_tag())
        headers = response.headers
        headers.add("Allow", ALLOW)
        headers.add("Accept", ACCEPT)
        headers.add("Supported", SUPPORTED)
        headers.add("Server", self.server_header)
        return response


class Syncing:
    """While the location catches up (``ready`` False), new work gets 503 with
    Retry-After, statelessly: REGISTERs and requests outside a dialog, but an
    OPTIONS keepalive to the proxy itself. Counted (``refused``); the first
    refusal of each catch-up is logged with its source."""

    __slots__ = ("ready", "retry_after", "refused", "_logged")

    def __init__(self, ready: Callable[[], bool], retry_after: int) -> None:
        self.ready = ready
        self.retry_after = str(retry_after)
        self.refused = 0
        self._logged = False

    def refuses(self, node: NodeLike, request: Request, txn: ServerTransaction) -> bool:
        """Answered 503 (True) when the location is not ready for ``request``."""
        if self.ready():
            self._logged = False
            return False
        method = request.method
        try:
            in_dialog = method != "REGISTER" and request.to.tag is not None
        except ParseError:
            return False  # the router answers 400
        if method in ("CANCEL", "ACK") or in_dialog:
            return False
        if method == "OPTIONS" and "route" not in request.headers and _names_no_user(request):
            return False
        response = request.response(503, "Service Unavailable (syncing)", to_tag=new_tag())
        response.headers.add("Retry-After", self.retry_after)
        node.respond_stateless(txn, response)
        self.refused += 1
        if not self._logged:
            self._logged = True
            event(log, "syncing_refused", method=method, source=txn.source)
        return True


def _names_no_user(request: Request) -> bool:
    uri = _sip_uri(request)
    return uri is not None and uri.user is None


def _sip_uri(request: Request) -> SipUri | None:
    try:
        uri = request.request_uri
    except ParseError:
        return None
    return uri if isinstance(uri, SipUri) else None


async def serve_proxy(settings: Any, workers: Workers | None = None) -> None:
    """Run the proxy until SIGTERM or SIGINT, then drain, write pending bindings and return.

    SchemaOutdated (a StorageError) if a MySQL database lacks migrations:
    there the schema is shared by every node and changed by an operator
    (``sipline db migrate``). A SQLite file belongs to this node alone and
    is migrated here. ``workers``: this proxy is one worker of several
    (``supervise_proxy`` started it).
    """
    settings = node_settings(
        settings, "proxy", format_host_port(settings.sip.host, settings.sip.port)
    )
    db = await open_database(settings.database.url)
    try:
        await prepare_schema(db)
        await run_until_stopped(ProxyNode(settings, db, workers), log)
    finally:
        await db.close()


async def supervise_proxy(settings: Any, count: int) -> None:
    """``count`` workers of the proxy on its address (sipline.net.supervisor), each a
    node of the cluster of its own (so ``auth.secret`` must be set, with Redis);
    a SQLite schema is migrated once, before any starts."""
    check_cluster_node(settings)
    settings = node_settings(
        settings, "proxy", format_host_port(settings.sip.host, settings.sip.port)
    )
    db = await open_database(settings.database.url)
    try:
        await prepare_schema(db)
    finally:
        await db.close()
    await Supervisor(settings, "proxy", settings.node.name, worker_command(), count).run()


class ProxyNode:
    """The node, the router and the registrar's service (caches, group commit, sweep, NAT)."""

    def __init__(self, settings: Any, db: Database, workers: Workers | None = None) -> None:
        self.settings = settings
        check_cluster_node(settings)
        self.service = RegistrarService(settings, db)
        service = self.service
        self.router = Router(
            settings, service.location, service.directory, service.authenticator,
            cluster=service.cluster,
        )  # fmt: skip
        self.syncing = syncing = Syncing(lambda: service.in_sync, settings.registrar.sync_retry_after)
        service.metrics.watch("syncing_refused", "Requests answered 503 while catching up",
                              lambda: syncing.refused)  # fmt: skip
        handler = ProxyHandler(
            service.registrar, self.router, settings.sip.server_header, service.nat, syncing
        )
        self.node = Node(settings, handler, db=db, workers=workers)
        self.member = Member(
            settings, "proxy", format_host_port(settings.sip.host, settings.sip.port), db
        )
        self.member.figures = self._figures
        self.member.drains.append(Drain.sip(lambda: self.node))
        if self.member.feed is not None:
            self.member.feed.on("subscribers", self._subscribers_changed)
        self.metrics = RoleCounts("proxy", {})
        self.metrics.watch("registrations", "Live bindings", lambda: len(service.location))

    def _figures(self) -> Figures:
        # The location catching up after a gap (proxy.feed) is `syncing` too.
        if self.service.in_sync:
            self.member.synced(LOCATION)
        else:
            self.member.syncing(LOCATION)
        return Figures(
            registrations=len(self.service.location),
            calls_total=self.node.metrics.calls.value,
            holding=not self.node.layer.idle,
        )

    async def _subscribers_changed(self, aors: tuple[str, ...]) -> None:
        if aors:
            await self.service.directory.refresh(aors)
        else:
            await self.service.directory.load()

    async def start(self) -> None:
        """Load subscribers and bindings, then listen; SIP traffic waits for the caches."""
        self.member.syncing(SYNCING)
        await self.service.start()
        self.member.synced(SYNCING)
        try:
            await self.node.start()
        except BaseException:
            await self.service.close()
            raise
        # Where the other proxies reach this one, written with the bindings it takes;
        # the other workers of this one (sipline.net.workers), trusted like itself.
        self.service.cluster.address = proxy_address(self.node)
        own = self.node.via_address("UDP") if "udp" in self.settings.sip.transports else None
        if own is not None:
            siblings = [own._replace(port=p) for p in self.node.worker_ports() if p != own.port]
            self.service.cluster.set_siblings(siblings)
        log_started(self.settings)

    async def stop(self) -> None:
        """Drain the node (REGISTERs in flight still get their commits), then write the rest."""
        await self.node.stop()
        self.metrics.unwatch()
        self.router.close()
        await self.service.close()
        writer = self.service.writer
        event(log, "bindings_flushed", commits=writer.commits, rows=writer.rows)


def log_started(settings: Any) -> None:
    event(
        log,
        "proxy_started",
        node=settings.node.name,
        domains=",".join(settings.proxy.domains),
        database=redact(settings.database.url),
    )
