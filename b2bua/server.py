"""The B2BUA node (``sipline b2bua``): its handler on a Node at [b2bua] host:port, and its life.

``serve_b2bua`` opens the database (the accounts and their licences live
there: a SQLite file is migrated here, a MySQL schema must be current), loads
the subscribers' accounts and the licences (counters in Redis when
``redis.url`` is set), makes the relay's ng client if media is anchored, and
runs the node until SIGTERM or SIGINT; then it drains and closes them all.
"""

from __future__ import annotations

import logging
from typing import Any

from sipline.config import listening_on
from sipline.logs import event
from sipline.net.node import Node
from sipline.net.serving import run_until_stopped
from sipline.storage import Database, open_database, prepare_schema

from .accounts import AccountDirectory
from .handler import B2buaHandler
from .licences import Licences
from .media import LegMedia

log = logging.getLogger("sipline.b2bua")


class B2buaNode:
    """The node and the handler; ``accounts``, ``licences`` and ``media`` as for
    B2buaHandler; ``db`` keeps the node's shared bans (sipline.net.bans)."""

    def __init__(self, settings: Any, db: Database | None = None, **parts: Any) -> None:
        b2bua = settings.b2bua
        self.settings = listening_on(settings, f"{b2bua.host}:{b2bua.port}")
        self.handler = B2buaHandler(
            b2bua, server_header=self.settings.sip.server_header, **parts
        )
        self.node = Node(self.settings, self.handler, db=db)

    async def start(self) -> None:
        await self.node.start()  # its tick drives the calls' timers and the probes
        b2bua = self.settings.b2bua
        event(
            log, "b2bua_started", node=self.settings.node.name,
            address=f"{b2bua.host}:{b2bua.port}", acr=",".join(b2bua.acr), routes=len(b2bua.routes),
            media=b2bua.media_relay if self.handler.calls.media is not None else "-",
        )  # fmt: skip

    async def stop(self) -> None:
        """Drain: calls up may still end (BYE is in-dialog), new ones get 503."""
        self.handler.probing = False
        await self.node.stop()
        self.handler.close()


async def serve_b2bua(settings: Any) -> None:
    """Run the B2BUA until SIGTERM or SIGINT, then drain and return.

    StorageError if the database cannot be opened or its schema is outdated,
    or Redis (``redis.url``) cannot be reached."""
    db = await open_database(settings.database.url)
    directory: AccountDirectory | None = None
    licences: Licences | None = None
    media: LegMedia | None = None
    try:
        await prepare_schema(db)
        directory = AccountDirectory(db)
        await directory.load()
        licences = await Licences.open(settings, db)
        media = LegMedia.from_settings(settings.b2bua)
        b2bua = B2buaNode(settings, db, accounts=directory, licences=licences, media=media)
        await run_until_stopped(b2bua, log)
    finally:
        if media is not None:
            media.close()
        if licences is not None:
            await licences.close()
        if directory is not None:
            directory.close()
        await db.close()
