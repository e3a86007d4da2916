"""An ACR node: ``serve_acr(settings, "primary" | "secondary")``.

Opens the database (SQLite is migrated here, MySQL must be current), the
store, the live state (Redis when configured), the journal (its calls still
up from before a restart go back to the router) and the CDR writer; builds
the route table from the store and listens on ``[acr] primary`` or ``secondary``.
Beside the calls: the live state syncs every second and the rankings are
recomputed from it in a thread (``rerank``); a change pushed by an operator
command (sipline.cluster.changes, topic ``acr``), a rate row starting or
ending, and a look at the store's version every ``admin.config_poll``
seconds (the safety net) reload carriers, rates, profiles and DIDs (the
table is built off the event loop too); the prober sends OPTIONS to every
gateway and DID proxy from the node's tick. Its admin endpoint also answers ``/live/gateways``
(what its probes say) and ``/explain?number=N`` (how it would route N now),
which the operator commands ask without Redis. SIGTERM or SIGINT drains the
node, then writes the CDRs still pending (what the database does
not take waits in the journal for the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from sipline.carriers.model import RoutingProfile
from sipline.carriers.store import AcrStore
from sipline.cluster.member import Drain, Figures, Member, node_settings
from sipline.cluster.state import Recent
from sipline.config import listening_on
from sipline.logs import event
from sipline.net.admin import AdminRequest, Refusal
from sipline.net.node import Node
from sipline.net.serving import run_until_stopped
from sipline.net.workers import one_process
from sipline.storage import Database, open_database, prepare_schema
from sipline.storage.database import redact

from .cdrs import CdrWriter
from .journal import Journal
from .live import LiveState, open_live_state
from .metrics import CarrierMetrics
from .prober import Prober
from .ranking import RouteTable
from .router import AcrRouter

log = logging.getLogger("sipline.acr")

NodeName = Literal["primary", "secondary"]
REFRESH_INTERVAL = 1.0  # seconds between syncs of the live state and re-rankings
MIN_RELOAD_WAIT = 0.5  # seconds at least between two reloads for a rate row's time
SYNCING = "route table"  # what an ACR builds before it serves
LIVE_CALLS = 10_000  # calls one /live/calls answer lists at most (its total says how many)


def journal_dir(settings: Any, node: str) -> Any:
    """Where ACR node ``node`` keeps its journal: its own, under ``[node] data_dir``."""
    return settings.node.data_dir / f"acr-{node}-journal"


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
        self.journal = Journal(journal_dir(settings, node), commit_ms=acr.journal_commit_ms)
        self.cdrs = CdrWriter(
            db, self.journal, batch_rows=acr.cdr_batch_rows, batch_ms=acr.cdr_batch_ms
        )
        self.prober = Prober(
            live.health, acr.probe_interval, server_header=settings.sip.server_header
        )
        self.router: AcrRouter | None = None
        self.node: Node | None = None
        self.version: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._table_changed = asyncio.Event()
        self.member = Member(self.settings, "acr", node_address(settings, node), db)
        self.member.figures = self._figures
        self.member.drains.append(Drain.sip(lambda: self.node))
        self.member.admin.view("/live/gateways", self._gateways_view)
        self.member.admin.view("/explain", self._explain_view)
        self.member.admin.view("/live/calls", self._calls_view)
        if self.member.feed is not None:
            self.member.feed.on("acr", self._changed)
        self._refusals = Recent()
        self.gateways: list[str] = []  # every carrier gateway, HOST:PORT
        self.carriers: list = []
        self._metrics = CarrierMetrics(lambda: self.carriers, live, clock)

    async def start(self) -> None:
        now = self.clock()
        self.member.syncing(SYNCING)
        self.version = await self.store.version()
        table, carriers, dids = await build_table(self.store, self.settings, now)
        self.live.counters.set_carriers(carriers)
        await rerank(table, self.live, now)
        calls = await self.journal.open()
        await self.cdrs.start()
        self.router = AcrRouter(
            self.settings, self.name, table, self.live, self.journal, carriers, dids,
            prober=self.prober, clock=self.clock,
        )  # fmt: skip
        self.router.resume(calls)
        self._watch(self.router)
        self._probe(carriers, dids)
        self.node = Node(self.settings, self.router, db=self.db)
        try:
            await self.node.start()
        except BaseException:
            await self._close_cdrs()
            raise
        self._metrics.register()
        self.member.synced(SYNCING)
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
            calls_resumed=len(calls),
            shared=self.live.shared,
            database=redact(self.settings.database.url),
        )

    def _watch(self, router: AcrRouter) -> None:
        """Gauges of the calls up and of the CDRs' way to the database (since the start)."""
        journal, cdrs = self.journal, self.cdrs
        gauges = (
            ("calls_up", "Answered calls through this node", lambda: len(router.dialogs)),
            ("cdrs_unwritten", "CDRs on disk waiting for the database", lambda: journal.unread),
            ("cdrs_written", "CDRs the database took", lambda: cdrs.written),
            ("cdrs_rejected", "CDRs the database refused (error_queue)", lambda: cdrs.rejected),
            ("journal_commits", "Journal group commits (fdatasyncs)", lambda: journal.commits),
            ("journal_failures", "Journal writes the disk refused", lambda: journal.failures),
        )
        for name, documentation, read in gauges:
            router.metrics.watch(name, documentation, read)

    async def _close_cdrs(self) -> None:
        try:
            await self.cdrs.close()
        finally:
            await self.journal.close()

    def _probe(self, carriers: list, dids: list) -> None:
        addresses = [g.address for c in carriers for g in c.gateways]
        self.gateways = sorted(set(addresses))
        self.carriers = carriers
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
        """Reload when a rate row starts or ends (``RouteTable.valid_until``), and
        when the store's version moved (looked at every ``admin.config_poll``
        seconds: changes made through the commands are pushed, ``_changed``)."""
        while True:
            self._table_changed.clear()
            # asyncio.wait, not wait_for: on 3.11 wait_for swallows a cancel that
            # comes as the event is set, and stop() would wait for this loop for ever.
            changed = asyncio.ensure_future(self._table_changed.wait())
            try:
                await asyncio.wait((changed,), timeout=self._until_reload())
            finally:
                changed.cancel()
            if self._table_changed.is_set():
                continue  # a new table, with its own valid_until
            try:
                await self.reload()
            except Exception as exc:  # the database away: keep routing on what we have
                event(log, "reload_failed", logging.WARNING, error=repr(exc))

    def _until_reload(self) -> float:
        wait = self.settings.admin.config_poll
        table = self.router.table if self.router is not None else None
        valid_until = getattr(table, "valid_until", None)
        if valid_until is not None:
            wait = min(wait, valid_until - self.clock())
        return max(wait, MIN_RELOAD_WAIT)

    async def _changed(self, keys: tuple[str, ...]) -> None:
        """A pushed change (sipline.cluster.feed): raises if the reload fails."""
        await self.reload()

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
        self._table_changed.set()
        event(log, "routes_reloaded", carriers=len(carriers), prefixes=len(table), dids=len(dids))
        return True

    # -- what the cluster sees (sipline.cluster.member) -------------------------------------
    def _figures(self) -> Figures:
        router, node = self.router, self.node
        counts = self.live.counters.counts
        calls = sum(c.active for c in counts.values())
        refused = sum(c.refused for c in counts.values())
        full = self._refusals.moved(refused, time.monotonic())
        if router is None or node is None:
            return Figures(calls=calls, holding=calls > 0)
        states = self._gateway_states()
        return Figures(
            calls=calls,
            calls_total=node.metrics.calls.value,
            # A gateway never probed yet (unknown) is neither.
            gateways_up=sum(1 for s in states.values() if s == "up"),
            gateways_down=sum(1 for s in states.values() if s in ("down", "backoff")),
            holding=calls > 0 or not node.layer.idle,
            capacity="carrier capacity or cps reached" if full else "",
        )

    def _gateway_states(self) -> dict[str, str]:
        """Every carrier gateway's live status as this node knows it (up, down,
        backoff, unknown: never probed yet)."""
        health = self.live.health
        now = self.clock()
        return {a: health.status(a, now) for a in self.gateways}

    async def _gateways_view(self, request: AdminRequest) -> dict[str, Any]:
        health = self.live.health
        states = {}
        for address, status in self._gateway_states().items():
            h = health.gateways.get(address)
            states[address] = {"status": status, "changed": h.changed if h else 0.0}
        return {"node": self.member.name, "gateways": states}

    async def _calls_view(self, request: AdminRequest) -> dict[str, Any]:
        """The answered calls to carriers this node holds (its CDR so far each), for
        ``sipline calls`` and the portal: who, to whom, whose account, which carrier
        and rate, since when. At most LIVE_CALLS, the oldest first."""
        dialogs = self.router.dialogs if self.router is not None else {}
        calls = []
        for call_id, answered in itertools.islice(dialogs.items(), LIVE_CALLS):
            cdr = answered.cdr
            calls.append({
                "call_id": call_id, "account": cdr.account, "caller": cdr.caller,
                "callee": cdr.callee, "prefix": cdr.prefix, "carrier": cdr.carrier,
                "gateway": cdr.gateway, "rate": cdr.rate, "connect_fee": cdr.connect_fee,
                "first_increment": cdr.first_increment, "next_increment": cdr.next_increment,
                "started_at": cdr.start, "answered_at": cdr.answer,
            })  # fmt: skip
        return {"node": self.member.name, "calls": calls, "total": len(dialogs)}

    async def _explain_view(self, request: AdminRequest) -> dict[str, Any]:
        number = request.query.get("number", "").removeprefix("+")
        if not number.isdigit() or len(number) > 32:
            raise Refusal(400, "malformed", "number: digits, with an optional +")
        if self.router is None:
            raise Refusal(503, "", "the route table is not built yet")
        decision = self.router.table.decide(number, self.clock())
        return {"node": self.member.name, "text": decision.explain(), "json": decision.as_json()}

    async def stop(self) -> None:
        """Drain the node, then write the CDRs still pending."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._metrics.unregister()
        if self.node is not None:
            await self.node.stop()
        if self.router is not None:
            self.router.close()
            self.router.metrics.unwatch()
        await self._close_cdrs()


async def serve_acr(settings: Any, node: NodeName = "primary") -> None:
    """Run ACR node ``node`` until SIGTERM or SIGINT, then drain and return."""
    settings = node_settings(settings, "acr", node_address(settings, node))
    one_process(settings, "acr", log)
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
