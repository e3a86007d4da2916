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
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from proxy.cluster import check_cluster_node
from proxy.registrar import RegistrarService
from proxy.router import Router
from sipline.logs import event
from sipline.net.handler import Handler
from sipline.net.node import Node
from sipline.net.serving import run_until_stopped
from sipline.sip.address import DEFAULT_PORT, Address
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction, Transaction
from sipline.sip.uri import SipUri
from sipline.storage import Database, open_database, prepare_schema
from sipline.storage.database import redact

log = logging.getLogger("sipline.proxy")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, UPDATE, INFO, MESSAGE, REFER, NOTIFY"
ACCEPT = "application/sdp"
SUPPORTED = "path"


class RegistrarLike(Protocol):
    def on_register(
        self, node: Node, request: Request, txn: ServerTransaction, source: Address
    ) -> None: ...


class PingerLike(Protocol):
    def owns(self, txn: Transaction | None) -> bool: ...

    def on_response(
        self, node: Node, response: Response, txn: ClientTransaction, source: Address
    ) -> None: ...

    def on_timeout(self, node: Node, txn: Transaction) -> None: ...


class RouterLike(Protocol):
    def trusts(self, source: Address) -> bool: ...

    def refuse_register(
        self, node: Node, request: Request, txn: ServerTransaction, source: Address
    ) -> bool: ...

    def on_request(
        self, node: Node, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None: ...

    def on_response(
        self, node: Node, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None: ...

    def on_timeout(self, node: Node, txn: Transaction) -> None: ...

    def on_terminated(self, node: Node, txn: Transaction) -> None: ...


class LocalNames:
    """Which Request-URIs name this proxy: one of its domains, or its own address.

    ``addresses`` are (host, port) pairs the proxy listens on; a URI without a
    port matches port 5060. Host names compare case-insensitively.
    """

    __slots__ = ("domains", "addresses")

    def __init__(self, domains: Iterable[str], addresses: Iterable[tuple[str, int]]) -> None:
        self.domains = frozenset(domain.lower() for domain in domains)
        self.addresses = frozenset((host.lower(), port) for host, port in addresses)

    def is_domain(self, uri: SipUri) -> bool:
        """The URI's host is one of our domains or our own address."""
        host = uri.host.lower()
        if host in self.domains:
            return True
        return (host, uri.port or DEFAULT_PORT["UDP"]) in self.addresses

    def is_us(self, uri: SipUri) -> bool:
        """The URI names the proxy itself (no user part), not a subscriber."""
        return uri.user is None and self.is_domain(uri)


class ProxyHandler(Handler):
    """Dispatches the node's callbacks: REGISTER and OPTIONS to us here, the rest to the router.

    The outcomes of the NAT keepalive OPTIONS the ``pinger`` sent go back to it.
    """

    def __init__(
        self,
        names: LocalNames,
        registrar: RegistrarLike,
        router: RouterLike,
        server_header: str,
        pinger: PingerLike | None = None,
        syncing: Syncing | None = None,
    ) -> None:
        self.names = names
        self.registrar = registrar
        self.router = router
        self.server_header = server_header
        self.pinger = pinger
        self.syncing = syncing

    def trusts(self, source: Address) -> bool:
        return self.router.trusts(source)

    def on_request(
        self, node: Node, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        if txn is not None:
            method = request.method
            if self.syncing is not None and self.syncing.refuses(node, request, txn):
                return
            if method == "REGISTER" and self._for_our_domain(request):
                if not self.router.refuse_register(node, request, txn, source):
                    self.registrar.on_register(node, request, txn, source)
                return
            if method == "OPTIONS" and self._for_us(request):
                # Anyone's keepalive: answered once, nothing kept (a retransmission
                # is answered again).
                node.respond_stateless(txn, self._capabilities(request))
                return
        self.router.on_request(node, request, txn, source)

    def on_response(
        self, node: Node, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        pinger = self.pinger
        if pinger is not None and txn is not None and pinger.owns(txn):
            pinger.on_response(node, response, txn, source)
            return
        self.router.on_response(node, response, txn, source)

    def on_timeout(self, node: Node, txn: Transaction) -> None:
        if self.pinger is not None and self.pinger.owns(txn):
            self.pinger.on_timeout(node, txn)
            return
        self.router.on_timeout(node, txn)

    def on_terminated(self, node: Node, txn: Transaction) -> None:
        if self.pinger is not None and self.pinger.owns(txn):
            return
        self.router.on_terminated(node, txn)

    def _for_our_domain(self, request: Request) -> bool:
        uri = _sip_uri(request)
        return uri is not None and self.names.is_domain(uri)

    def _for_us(self, request: Request) -> bool:
        # A pre-loaded Route to somewhere else makes it the router's business (§16.4).
        uri = _sip_uri(request)
        if uri is None or not self.names.is_us(uri):
            return False
        if "route" not in request.headers:
            return True
        try:
            routes = request.routes
        except ParseError:
            return False  # the router answers 400
        return all(isinstance(r.uri, SipUri) and self.names.is_domain(r.uri) for r in routes)

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

    def refuses(self, node: Node, request: Request, txn: ServerTransaction) -> bool:
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


async def serve_proxy(settings: Any) -> None:
    """Run the proxy until SIGTERM or SIGINT, then drain, write pending bindings and return.

    SchemaOutdated (a StorageError) if a MySQL database lacks migrations:
    there the schema is shared by every node and changed by an operator
    (``sipline db migrate``). A SQLite file belongs to this node alone and
    is migrated here.
    """
    db = await open_database(settings.database.url)
    try:
        await prepare_schema(db)
        await run_until_stopped(ProxyNode(settings, db), log)
    finally:
        await db.close()


class ProxyNode:
    """The node, the router and the registrar's service (caches, group commit, sweep, NAT)."""

    def __init__(self, settings: Any, db: Database) -> None:
        self.settings = settings
        check_cluster_node(settings)
        self.service = RegistrarService(settings, db)
        service = self.service
        self.router = Router(
            settings, service.location, service.directory, service.authenticator,
            cluster=service.cluster,
        )  # fmt: skip
        names = LocalNames(settings.proxy.domains, [(settings.sip.host, settings.sip.port)])
        self.syncing = syncing = Syncing(lambda: service.in_sync, settings.registrar.sync_retry_after)
        service.metrics.watch("syncing_refused", "Requests answered 503 while catching up",
                              lambda: syncing.refused)  # fmt: skip
        handler = ProxyHandler(
            names, service.registrar, self.router, settings.sip.server_header, service.nat,
            self.syncing,
        )  # fmt: skip
        self.node = Node(settings, handler, db=db)

    async def start(self) -> None:
        """Load subscribers and bindings, then listen; SIP traffic waits for the caches."""
        await self.service.start()
        try:
            await self.node.start()
        except BaseException:
            await self.service.close()
            raise
        self.service.start_nat(self.node)
        log_started(self.settings)

    async def stop(self) -> None:
        """Drain the node (REGISTERs in flight still get their commits), then write the rest."""
        await self.node.stop()
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
