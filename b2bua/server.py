"""The B2BUA node (``sipline b2bua``): its handler on a Node at [b2bua] host:port, and its life.

``serve_b2bua`` opens the database (the accounts and their licences live
there: a SQLite file is migrated here, a MySQL schema must be current) and
runs a ``B2buaNode`` until SIGTERM or SIGINT; then it drains and closes it.
The node starts by loading the subscribers' accounts and the licences
(counters in Redis when ``redis.url`` is set; the node shows ``syncing``
meanwhile) and making the relay's ng client if media is anchored. Changes an
operator makes are pushed to it (sipline.cluster.changes: ``subscribers``
reloads the accounts of subscribers, ``accounts`` the licences); its admin
endpoint also answers ``/live/accounts``, the calls each licensed account
has up here, which ``sipline account list`` asks without Redis.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sipline.cluster.member import Drain, Figures, Member, node_settings
from sipline.cluster.state import Recent
from sipline.config import listening_on
from sipline.logs import event
from sipline.net.admin import AdminRequest, Refusal
from sipline.net.node import Node
from sipline.net.serving import run_until_stopped
from sipline.net.workers import one_process
from sipline.sip.headers import format_host_port
from sipline.storage import Database, open_database, prepare_schema

from . import teardown
from .accounts import AccountDirectory
from .handler import B2buaHandler
from .licences import Licences
from .media import LegMedia

log = logging.getLogger("sipline.b2bua")

SYNCING = "accounts and licences"  # what a B2BUA loads before it serves


def address(settings: Any) -> str:
    return format_host_port(settings.b2bua.host, settings.b2bua.port)


class B2buaNode:
    """Loads accounts and licences, then runs the node and the handler
    (``media`` as for B2buaHandler)."""

    def __init__(self, settings: Any, db: Database, media: LegMedia | None = None) -> None:
        self.settings = listening_on(settings, address(settings))
        self.db = db
        self.media = media
        self.directory = AccountDirectory(db, refresh=settings.admin.config_poll)
        self.licences: Licences | None = None
        self.handler: B2buaHandler | None = None
        self.node: Node | None = None
        self.member = Member(self.settings, "b2bua", address(settings), db)
        self.member.figures = self._figures
        self.member.drains.append(Drain.sip(lambda: self.node))
        self.member.admin.view("/live/accounts", self._accounts_view)
        self.member.admin.action("/hangup", self._hangup)
        if self.member.feed is not None:
            self.member.feed.on("subscribers", self._subscribers_changed)
            self.member.feed.on("accounts", self._accounts_changed)
        self._refusals = Recent()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()  # what was opened before the failure
            raise

    async def _start(self) -> None:
        self.member.syncing(SYNCING)
        await self.directory.load()
        self.licences = await Licences.open(self.settings, self.db)
        self.member.synced(SYNCING)
        self.handler = B2buaHandler(
            self.settings.b2bua, server_header=self.settings.sip.server_header,
            accounts=self.directory, licences=self.licences, media=self.media,
        )  # fmt: skip
        self.node = Node(self.settings, self.handler, db=self.db)
        await self.node.start()  # its tick drives the calls' timers and the probes
        b2bua = self.settings.b2bua
        event(
            log, "b2bua_started", node=self.settings.node.name,
            address=address(self.settings), acr=",".join(b2bua.acr), routes=len(b2bua.routes),
            media=b2bua.media_relay if self.media is not None else "-",
        )  # fmt: skip

    async def stop(self) -> None:
        """Drain: calls up may still end (BYE is in-dialog), new ones get 503."""
        if self.handler is not None:
            self.handler.probing = False
        if self.node is not None:
            await self.node.stop()
        if self.handler is not None:
            self.handler.close()
        if self.licences is not None:
            await self.licences.close()
        self.directory.close()

    # -- what the cluster sees (sipline.cluster.member) -------------------------------------
    def _figures(self) -> Figures:
        handler, node, licences = self.handler, self.node, self.licences
        if handler is None or node is None:
            return Figures()
        calls = len(handler)
        refused = licences.refused if licences is not None else 0
        full = self._refusals.moved(refused, time.monotonic())
        return Figures(
            calls=calls,
            calls_total=node.metrics.calls.value,
            holding=calls > 0 or not node.layer.idle,
            capacity="licence limits reached" if full else "",
        )

    async def _accounts_view(self, request: AdminRequest) -> dict[str, Any]:
        counts = await self.licences.counts() if self.licences is not None else {}
        return {"node": self.member.name, "calls": counts}

    async def _hangup(self, request: AdminRequest) -> dict[str, Any]:
        """End a call an operator names by either leg's Call-ID: BYE on both legs, as
        when a party hangs up (the ACR writes its CDR when the BYE passes it). An
        admin action: only a token signed with the admin key gets here."""
        body = self.member.addressed(request)
        call_id = body.get("call_id")
        if not isinstance(call_id, str) or not 0 < len(call_id) <= 256:
            raise Refusal(400, "malformed", "call_id: the Call-ID of either leg")
        leg = self.handler.calls.legs.get(call_id) if self.handler is not None else None
        if leg is None or self.node is None or self.handler is None:
            raise Refusal(404, "", f"no call {call_id} on node {self.member.name}")
        call = leg.call
        teardown.end(self.handler.calls, self.node, call, None, "hung up by an operator")
        event(log, "call_hung_up", call_id=call.call_id, b_leg=call.b.call_id if call.b else "-",
              source=request.source)  # fmt: skip
        return {"node": self.member.name, "hung_up": call.call_id}

    async def _subscribers_changed(self, keys: tuple[str, ...]) -> None:
        await self.directory.load()

    async def _accounts_changed(self, keys: tuple[str, ...]) -> None:
        if self.licences is not None:
            await self.licences.refresh()


async def serve_b2bua(settings: Any) -> None:
    """Run the B2BUA until SIGTERM or SIGINT, then drain and return.

    StorageError if the database cannot be opened or its schema is outdated,
    or Redis (``redis.url``) cannot be reached."""
    settings = node_settings(settings, "b2bua", address(settings))
    one_process(settings, "b2bua", log)
    db = await open_database(settings.database.url)
    media: LegMedia | None = None
    try:
        await prepare_schema(db)
        media = LegMedia.from_settings(settings.b2bua)
        await run_until_stopped(B2buaNode(settings, db, media), log)
    finally:
        if media is not None:
            media.close()
        await db.close()
