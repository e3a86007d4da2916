"""An ACR node: ``serve_acr(settings, "primary" | "secondary")``.

Opens the database (SQLite is migrated here, MySQL must be current), the
store, the live state (Redis when configured) and the CDR writer; builds the
route table from the store and listens on ``[acr] primary`` or ``secondary``.
Beside the calls: the live state syncs every second and the rankings are
recomputed from it in a thread (``rerank``); the store's version is polled
and a change (or a rate row starting or ending) reloads carriers, rates,
profiles and DIDs (the table is built off the event loop too); the prober sends OPTIONS to every gateway and DID proxy from the node's tick. SIGTERM or SIGINT
drains the node, then writes the CDRs still pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from sipline.config import listening_on
from sipline.logs import event
from sipline.net.node import Node
from sipline.net.serving import run_until_stopped
from sipline.storage import Database, open_database, prepare_schema
from sipline.storage.database import redact

from .cdrs import CdrWriter
from .live import LiveState, open_live_state
from .model import RoutingProfile
from .prober import Prober
from .ranking import RouteTable
from .router import AcrRouter
from .store import AcrStore

log = logging.getLogger("sipline.acr")

NodeName = Literal["primary", "secondary"]
REFRESH_INTERVAL = 1.0  # seconds between syncs of the live state and re-rankings
RELOAD_INTERVAL = 2.0  # seconds between looks at the store's version


def node_address(settings: Any, node: NodeName) -> str:
    return settings.acr.primary if node == "primary" else settings.acr.secondary


def default_profile(settings: Any) -> RoutingProfile:
    """The routing profile of numbers no stored profile covers, from ``[acr]``."""
    acr = settings.acr
    return RoutingProfile(
        "",
        acr.weight_availability,
        acr.weight_quality,
        acr.weight_price,
        final_codes=frozenset(acr.final_codes),
        max_attempts=acr.max_attempts,
    )


async def build_table(store: AcrStore, settings: Any, now: float) -> tuple[RouteTable, list, list]:
    """The route table, carriers and DIDs as stored now; the table is built in a thread.

    Every carrier goes into the table, disabled ones too: they are never
    candidates, and ``explain`` says why ("disabled"). Their gateways are
    still carrier sources (inbound) and still probed, so their health is
    known when they are enabled again.
    """
    carriers = await store.carriers()
    rates = await store.rates(now)
    change = await store.next_rate_change(now)
    profiles = await store.profiles()
    dids = await store.dids()
    table = await asyncio.to_thread(
        RouteTable,
        carriers,
        rates,
        profiles,
        default_profile(settings),
        settings.acr.exploration,
        None,
        now,
    )
    # The rows read are those effective now: the table knows when one of them
    # ends, the store when a row not read yet takes effect.
    if change is not None and (table.valid_until is None or change < table.valid_until):
        table.valid_until = change
    return table, carriers, dids


async def rerank(table: RouteTable, live: LiveState, now: float) -> None:
    """Re-rank ``table`` without holding up the event loop: the live state is read on
    the loop (a snapshot, milliseconds), the numpy ranking over the prefix x carrier
    table runs in a thread (up to about a second with a million deck rows), and the
    result is swapped in on the loop."""
    snapshot = table.snapshot(live.stats, live.view, now)
    table.install(await asyncio.to_thread(table.rank, snapshot))


class AcrNode:
    """The node, its router and prober, and the work beside the calls."""

    def __init__(
        self,
        settings: Any,
        node: NodeName,
        db: Database,
        live: LiveState,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name: NodeName = node
        self.clock = clock  # wall-clock time: rate rows take effect by it
        self.settings = listening_on(settings, node_address(settings, node))
        self.db = db
        self.store = AcrStore(db)
        self.live = live
        acr = settings.acr
        self.cdrs = CdrWriter(
            db,
            redis_url=settings.redis.url,
            journal_dir=settings.node.data_dir / f"acr-{node}-cdrs",
            batch_rows=acr.cdr_batch_rows,
            batch_ms=acr.cdr_batch_ms,
        )
        self.prober = Prober(
            live.health, acr.probe_interval, server_header=settings.sip.server_header
        )
        self.router: AcrRouter | None = None
        self.node: Node | None = None
        self.version: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        now = self.clock()
        self.version = await self.store.version()
        table, carriers, dids = await build_table(self.store, self.settings, now)
        self.live.counters.set_carriers(carriers)
        await rerank(table, self.live, now)
        await self.cdrs.start()
        self.router = AcrRouter(
            self.settings, self.name, table, self.live, self.cdrs, carriers, dids,
            prober=self.prober, clock=self.clock,
        )  # fmt: skip
        self._probe(carriers, dids)
        self.node = Node(self.settings, self.router, db=self.db)
        try:
            await self.node.start()
        except BaseException:
            await self.cdrs.close()
            raise
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._refresh()), loop.create_task(self._reload())]
        event(
            log,
            "acr_started",
            node=self.name,
            address=node_address(self.settings, self.name),
            carriers=len(carriers),
            prefixes=len(table),
            dids=len(dids),
            shared=self.live.shared,
            database=redact(self.settings.database.url),
        )

    def _probe(self, carriers: list, dids: list) -> None:
        addresses = [g.address for c in carriers for g in c.gateways]
        addresses += [p for d in dids for p in (d.proxy, *d.backups)]
        self.prober.set_targets(addresses)

    async def _refresh(self) -> None:
        """Sync the live state and re-rank, every second."""
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            try:
                await self.live.sync()
                assert self.router is not None
                await rerank(self.router.table, self.live, self.clock())  # type: ignore[arg-type]
            except Exception:
                log.exception("event=refresh_failed")

    async def _reload(self) -> None:
        """Reload from the store when its version changes or a rate row starts or ends
        (``RouteTable.valid_until``): at most RELOAD_INTERVAL late."""
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            try:
                await self.reload()
            except Exception as exc:  # the database away: keep routing on what we have
                event(log, "reload_failed", logging.WARNING, error=repr(exc))

    async def reload(self, force: bool = False) -> bool:
        assert self.router is not None
        version = await self.store.version()
        now = self.clock()
        if not force and version == self.version and not self.router.table.expired(now):  # type: ignore[attr-defined]
            return False
        table, carriers, dids = await build_table(self.store, self.settings, now)
        self.live.counters.set_carriers(carriers)
        await rerank(table, self.live, now)
        self.router.load(table, carriers, dids)
        self._probe(carriers, dids)
        self.version = version
        event(log, "routes_reloaded", carriers=len(carriers), prefixes=len(table), dids=len(dids))
        return True

    async def stop(self) -> None:
        """Drain the node, then write the CDRs still pending."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.node is not None:
            await self.node.stop()
        if self.router is not None:
            self.router.close()
        await self.cdrs.close()


async def serve_acr(settings: Any, node: NodeName = "primary") -> None:
    """Run ACR node ``node`` until SIGTERM or SIGINT, then drain and return."""
    db = await open_database(settings.database.url)
    try:
        await prepare_schema(db)
        live = await open_live_state(settings, node)
        try:
            await run_until_stopped(AcrNode(settings, node, db, live), log)
        finally:
            await live.close()
    finally:
        await db.close()
