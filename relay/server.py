"""The relay node: ``serve_relay(settings)`` runs its services until SIGTERM or SIGINT.

A service is anything with ``async start()`` and ``async close()``; ``services``
lists them from the ``[relay]`` section, they start in that order and close in
the reverse one: the STUN server (relay.stun_server), then the RTP relay with
its ng control (relay.media).

Beside them the relay is a member of the cluster (sipline.cluster.member),
named ``relay@NG_HOST:NG_PORT`` by default: an admin endpoint (status,
metrics, drain: new calls get an ng error, calls up go on), its row in the
``nodes`` table and its heartbeat. Media never waits on the database: when
it cannot be opened, the relay runs without a row (``sipline status`` finds
it through Redis only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from relay.media import RtpRelay
from relay.stun_server import StunServer
from sipline.cluster.member import Drain, Figures, Member, node_settings
from sipline.cluster.state import Recent
from sipline.logs import event
from sipline.net.signals import until_stopped
from sipline.net.workers import one_process
from sipline.sip.headers import format_host_port
from sipline.storage import Database, StorageError, open_database, prepare_schema

log = logging.getLogger("relay.server")


class Service(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


def services(settings: Any) -> list[Service]:
    """The relay's services the settings ask for, in start order."""
    relay = settings.relay
    found: list[Service] = []
    if relay.stun_transports:
        found.append(StunServer.from_settings(relay))
    found.append(RtpRelay.from_settings(relay, settings.redis.url))
    return found


async def serve_relay(settings: Any, stop: asyncio.Event | None = None) -> None:
    """Start every service, wait for SIGTERM or SIGINT (or ``stop``), then close them."""
    address = format_host_port(settings.relay.ng_host, settings.relay.ng_port)
    settings = node_settings(settings, "relay", address)
    one_process(settings, "relay", log)
    db = await _database(settings)
    started: list[Service] = []
    member = Member(settings, "relay", address, db)
    try:
        await member.open()
        for service in services(settings):
            await service.start()
            started.append(service)
        relay = next((s for s in started if isinstance(s, RtpRelay)), None)
        if relay is not None:
            watch(member, relay)
        member.running()
        event(log, "started", node=settings.node.name, services=len(started))
        await until_stopped(stop)
        member.stopping()
    finally:
        for service in reversed(started):
            await service.close()
        await member.close()
        if db is not None:
            await db.close()
        event(log, "stopped", node=settings.node.name)


def watch(member: Member, relay: RtpRelay) -> None:
    """What the relay reports and how it drains."""
    table = relay.table
    refusals = Recent()

    def figures() -> Figures:
        full = refusals.moved(relay.metrics.values["offers_refused"], time.monotonic())
        return Figures(
            sessions=len(table),
            holding=len(table) > 0,
            capacity="session or port limits reached" if full else "",
        )

    def drain(retry_after: int) -> None:
        table.draining = True

    def resume() -> None:
        table.draining = False

    member.figures = figures
    member.drains.append(Drain(drain, resume))


async def _database(settings: Any) -> Database | None:
    """The database for the relay's row in ``nodes``; None (logged) when it cannot be had."""
    try:
        db = await open_database(settings.database.url)
    except StorageError as exc:
        event(log, "no_database", logging.WARNING, error=exc)
        return None
    try:
        await prepare_schema(db)
    except StorageError as exc:
        event(log, "no_database", logging.WARNING, error=exc)
        await db.close()
        return None
    return db
