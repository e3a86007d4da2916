"""The relay node: ``serve_relay(settings)`` runs its services until SIGTERM or SIGINT.

A service is anything with ``async start()`` and ``async close()``; ``services``
lists them from the ``[relay]`` section, they start in that order and close in
the reverse one: the STUN server (relay.stun_server), then the RTP relay with
its ng control (relay.media).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from relay.media import RtpRelay
from relay.stun_server import StunServer
from sipline.logs import event
from sipline.net.metrics import start_metrics_server
from sipline.net.signals import until_stopped

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
    started: list[Service] = []
    stop_metrics = None
    try:
        for service in services(settings):
            await service.start()
            started.append(service)
        if settings.metrics.port:
            stop_metrics = start_metrics_server(settings.metrics.host, settings.metrics.port)
        event(log, "started", node=settings.node.name, services=len(started))
        await until_stopped(stop)
    finally:
        for service in reversed(started):
            await service.close()
        if stop_metrics is not None:
            stop_metrics()
        event(log, "stopped", node=settings.node.name)
