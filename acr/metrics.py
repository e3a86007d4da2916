"""Per-carrier figures of an ACR node at /metrics, read when scraped (nothing per call).

- ``sipline_acr_carrier_asr``, ``_acd_seconds``, ``_pdd_seconds``: the decayed
  statistics (acr.stats) over every prefix the carrier was tried for;
- ``sipline_acr_carrier_attempts``: their weight (decayed attempts);
- ``sipline_acr_carrier_calls``: calls in progress through it (this node's view);
- ``sipline_acr_gateway_state``: 1 for each gateway's health (up, down, backoff,
  unknown: never probed), 0 for the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sipline.carriers.model import Carrier

STATES = ("up", "down", "backoff", "unknown")


class CarrierMetrics(Collector):
    """``carriers()`` the carriers loaded now, ``live`` the node's LiveState, ``clock``
    wall-clock time (the statistics decay by it)."""

    def __init__(
        self, carriers: Callable[[], Sequence[Carrier]], live: Any, clock: Callable[[], float]
    ) -> None:
        self.carriers = carriers
        self.live = live
        self.clock = clock
        self.registered = False

    def register(self) -> None:
        if not self.registered:
            REGISTRY.register(self)
            self.registered = True

    def unregister(self) -> None:
        if self.registered:
            REGISTRY.unregister(self)
            self.registered = False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        families = {
            name: GaugeMetricFamily(f"sipline_acr_carrier_{name}", doc, labels=["carrier"])
            for name, doc in (
                ("asr", "Answered share of attempts (decayed)"),
                ("acd_seconds", "Mean duration of answered calls (decayed)"),
                ("pdd_seconds", "Mean post-dial delay (decayed)"),
                ("attempts", "Attempts, decayed with acr.stats_half_life"),
                ("calls", "Calls in progress through the carrier"),
            )
        }
        health = GaugeMetricFamily(
            "sipline_acr_gateway_state", "1 for the gateway's health, 0 for the others",
            labels=["carrier", "gateway", "state"],
        )  # fmt: skip
        by_carrier = self.live.stats.by_carrier(now)
        counters = self.live.counters
        for carrier in self.carriers():
            f = by_carrier.get(carrier.name)
            if f is not None:
                families["asr"].add_metric([carrier.name], f.asr)
                families["attempts"].add_metric([carrier.name], f.attempts)
                if f.acd_mean is not None:
                    families["acd_seconds"].add_metric([carrier.name], f.acd_mean)
                if f.pdd_mean is not None:
                    families["pdd_seconds"].add_metric([carrier.name], f.pdd_mean)
            families["calls"].add_metric([carrier.name], counters.active(carrier.name))
            for gateway in carrier.gateways:
                status = self.live.health.status(gateway.address, now)
                for state in STATES:
                    health.add_metric(
                        [carrier.name, gateway.address, state], float(state == status)
                    )
        yield from families.values()
        yield health
