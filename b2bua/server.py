"""The B2BUA node (``sipline b2bua``): its handler on a Node at [b2bua] host:port, and its life."""

from __future__ import annotations

import logging
from typing import Any

from sipline.config import listening_on
from sipline.logs import event
from sipline.net.node import Node, tune_gc
from sipline.net.signals import until_stopped

from .handler import B2buaHandler

log = logging.getLogger("sipline.b2bua")


class B2buaNode:
    """The node and the handler; ``accounts``, ``licences`` and ``media`` as for B2buaHandler."""

    def __init__(self, settings: Any, **parts: Any) -> None:
        b2bua = settings.b2bua
        self.settings = listening_on(settings, f"{b2bua.host}:{b2bua.port}")
        self.handler = B2buaHandler(self.settings, **parts)
        self.node = Node(self.settings, self.handler)

    async def start(self) -> None:
        await self.node.start()
        self.handler.start(self.node)
        b2bua = self.settings.b2bua
        event(
            log, "b2bua_started", node=self.settings.node.name,
            address=f"{b2bua.host}:{b2bua.port}", acr=",".join(b2bua.acr), routes=len(b2bua.routes),
        )  # fmt: skip

    async def stop(self) -> None:
        """Drain: calls up may still end (BYE is in-dialog), new ones get 503."""
        self.handler.probing = False
        await self.node.stop()
        self.handler.close()


async def serve_b2bua(settings: Any) -> None:
    """Run the B2BUA until SIGTERM or SIGINT, then drain and return."""
    b2bua = B2buaNode(settings)
    await b2bua.start()
    tune_gc()
    try:
        received = await until_stopped()
        event(log, "signal", signal=received.name if received else "stop")
    finally:
        await b2bua.stop()
