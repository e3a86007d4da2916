"""OPTIONS probing of every carrier gateway and DID proxy, feeding ``acr.health``.

One round every ``probe_interval``: an OPTIONS to each address in its own
client transaction. Any answer but 503 (RFC 3261 §21.5.4: the peer is
overloaded or down for maintenance) is a success; no answer by the next round
is a failure (timer F's 32 s would be longer than most intervals). Health
applies the hysteresis (N failures mark down, M successes up).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sipline.logs import event
from sipline.proxying.rules import Local
from sipline.sip.ids import new_branch, new_call_id, new_tag
from sipline.sip.message import Headers, Request, Response
from sipline.sip.transaction import ClientTransaction, Transaction

from .calls import address_of

if TYPE_CHECKING:
    from sipline.net.node import Node

log = logging.getLogger("sipline.acr.prober")


class Probe:
    """The context of one probe's client transaction."""

    __slots__ = ("address", "answered")

    def __init__(self, address: str) -> None:
        self.address = address
        self.answered = False


class Prober:
    """Probes ``targets`` (HOST:PORT) every ``interval`` seconds through ``node``."""

    def __init__(
        self,
        health: Any,
        interval: float,
        *,
        clock: Callable[[], float] = time.time,
        server_header: str = "sipline",
    ) -> None:
        self.health = health
        self.interval = interval
        self.clock = clock
        self.server_header = server_header
        self.targets: list[str] = []
        self._outstanding: list[Probe] = []
        self._node: Node | None = None
        self._local: Local | None = None
        self._handle: asyncio.TimerHandle | None = None

    def set_targets(self, addresses: Iterable[str]) -> None:
        self.targets = sorted(set(addresses))

    def start(self, node: Node, local: Local) -> None:
        self._node, self._local = node, local
        self._handle = asyncio.get_running_loop().call_soon(self._round)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _round(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._round)
        try:
            self.probe_all()
        except Exception:
            log.exception("event=prober_error")

    def probe_all(self) -> None:
        """Count last round's unanswered probes as failures, then send this round's."""
        now = self.clock()
        for probe in self._outstanding:
            if not probe.answered:
                self._result(probe, False, now)
        node, local = self._node, self._local
        assert node is not None and local is not None
        self._outstanding = []
        for address in self.targets:
            dest = address_of(address)
            if dest.transport not in local.addresses:
                continue
            probe = Probe(address)
            txn = node.send_request(self._options(local, address, dest.transport), dest)
            txn.context = probe
            self._outstanding.append(probe)

    def _options(self, local: Local, address: str, transport: str) -> Request:
        here = local.addresses[transport]
        headers = Headers(
            [
                ("Via", local.via(transport, new_branch())),
                ("Max-Forwards", "70"),
                ("From", f"<sip:acr@{here.host}:{here.port}>;tag={new_tag()}"),
                ("To", f"<sip:{address}>"),
                ("Call-ID", new_call_id()),
                ("CSeq", "1 OPTIONS"),
                ("User-Agent", self.server_header),
                ("Content-Length", "0"),
            ]
        )
        return Request("OPTIONS", f"sip:{address}", headers)

    # -- what the router hands over ---------------------------------------------------------
    def owns(self, txn: Transaction | None) -> bool:
        return txn is not None and type(txn.context) is Probe

    def on_response(
        self, node: Node, response: Response, txn: ClientTransaction, source: object
    ) -> None:
        probe = txn.context
        if type(probe) is not Probe or probe.answered or response.status < 200:
            return
        probe.answered = True
        self._result(probe, response.status != 503, self.clock())

    def on_timeout(self, node: Node, txn: Transaction) -> None:
        probe = txn.context
        if type(probe) is Probe and not probe.answered:
            probe.answered = True
            self._result(probe, False, self.clock())

    def _result(self, probe: Probe, ok: bool, now: float) -> None:
        before = self.health.status(probe.address, now)
        self.health.probe_result(probe.address, ok, now)
        after = self.health.status(probe.address, now)
        if after != before:
            event(log, "gateway_status", address=probe.address, status=after, was=before)
