"""OPTIONS probing of every carrier gateway and DID proxy, feeding ``acr.health``.

One round every ``probe_interval``: an OPTIONS to each address in its own
client transaction. Any answer but 503 (RFC 3261 §21.5.4: the peer is
overloaded or down for maintenance) is a success; no answer by the next round
is a failure (timer F's 32 s would be longer than most intervals). Health
applies the hysteresis (N failures mark down, M successes up). The rounds
run from the node's tick (the router's ``on_tick`` calls ``on_tick`` here):
the first at the node's first tick, the next ``interval`` later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sipline.logs import event
from sipline.sip.message import Response
from sipline.sip.transaction import ClientTransaction, Transaction
from sipline.sip.uac import out_of_dialog

from .calls import address_of

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike

log = logging.getLogger("sipline.acr.prober")


class Probe:
    """The context of one probe's client transaction."""

    __slots__ = ("address", "answered")

    def __init__(self, address: str) -> None:
        self.address = address
        self.answered = False


class Prober:
    """Probes ``targets`` (HOST:PORT) every ``interval`` seconds through the node
    that ticks it; ``clock`` is the wall-clock time of the health it feeds."""

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
        self._next_round: float | None = None  # monotonic; None: at the first tick

    def set_targets(self, addresses: Iterable[str]) -> None:
        self.targets = sorted(set(addresses))

    def on_tick(self, node: NodeLike, now: float) -> None:
        """A round when its time has come (``now``: the node's monotonic time)."""
        if self._next_round is not None and now < self._next_round:
            return
        self._next_round = now + self.interval
        self.probe_all(node)

    def probe_all(self, node: NodeLike) -> None:
        """Count last round's unanswered probes as failures, then send this round's."""
        now = self.clock()
        for probe in self._outstanding:
            if not probe.answered:
                self._result(probe, False, now)
        self._outstanding = []
        for address in self.targets:
            dest = address_of(address)
            try:
                local = node.local_address(dest.transport)
            except LookupError:
                continue  # no listener for its transport
            options = out_of_dialog(
                "OPTIONS", f"sip:{address}", local, "acr", user_agent=self.server_header
            )
            probe = Probe(address)
            txn = node.send_request(options, dest)
            txn.context = probe
            self._outstanding.append(probe)

    # -- what the router hands over ---------------------------------------------------------
    def owns(self, txn: Transaction | None) -> bool:
        return txn is not None and type(txn.context) is Probe

    def on_response(
        self, node: NodeLike, response: Response, txn: ClientTransaction, source: object
    ) -> None:
        probe = txn.context
        if type(probe) is not Probe or probe.answered or response.status < 200:
            return
        probe.answered = True
        self._result(probe, response.status != 503, self.clock())

    def on_timeout(self, node: NodeLike, txn: Transaction) -> None:
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
