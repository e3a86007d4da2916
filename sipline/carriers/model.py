"""What the ACR's parts talk about: carriers, gateways, rates, routing profiles, DIDs, CDRs.

Plain values, shared by the store (``acr.store``), the routing table
(``acr.ranking``), the SIP router (``acr.router``) and the CDR writer
(``acr.cdrs``). Numbers are digits only (E.164 without the ``+``); money is
in the deck's currency per minute; times are Unix epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# RFC 3261 §21 answers that end the hunt by default: the callee (busy,
# declined, gone) or the number (not found, incomplete), never the carrier.
FINAL_CODES = frozenset((486, 487, 600, 603, 404, 484))


@dataclass(frozen=True, slots=True)
class Gateway:
    """One SIP address of a carrier's termination (or origination) service."""

    carrier: str
    host: str
    port: int = 5060
    transport: str = "udp"
    weight: int = 1

    @property
    def address(self) -> str:
        """HOST:PORT, the key probes, health and CDRs use."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Carrier:
    name: str
    gateways: tuple[Gateway, ...]
    capacity: int | None = None  # concurrent calls across both ACR nodes; None: no limit
    cps: int | None = None  # new calls per second across both ACR nodes; None: no limit
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate deck row: calls to numbers starting with ``prefix`` through ``carrier``."""

    carrier: str
    prefix: str
    rate: float  # per minute
    connect_fee: float = 0.0
    first_increment: int = 60  # seconds billed at least (e.g. 60/60, 6/6, 1/1)
    next_increment: int = 60  # then in steps of this many seconds
    effective_from: float | None = None  # None: always
    effective_to: float | None = None  # None: open-ended; exclusive

    def effective(self, now: float) -> bool:
        start, end = self.effective_from, self.effective_to
        return (start is None or start <= now) and (end is None or now < end)


@dataclass(frozen=True, slots=True)
class RoutingProfile:
    """How calls to numbers starting with ``prefix`` are routed ("" = every number)."""

    prefix: str = ""
    weight_availability: float = 0.4
    weight_quality: float = 0.3
    weight_price: float = 0.3
    min_quality: float | None = None  # candidates scoring lower on quality are left out
    max_price: float | None = None  # per minute; dearer candidates are left out
    final_codes: frozenset[int] = FINAL_CODES
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class Did:
    """An inbound number and the proxies that serve it, home first."""

    number: str
    proxy: str  # HOST:PORT
    backups: tuple[str, ...] = ()
    account: str = ""  # whose number it is ("" none: operators' only)


@dataclass(slots=True)
class Cdr:
    """One call that reached a carrier (the last attempt's carrier and outcome)."""

    call_id: str
    account: str | None
    caller: str
    callee: str
    prefix: str
    carrier: str
    gateway: str  # HOST:PORT
    rate: float
    start: float  # the INVITE arrived
    end: float  # the call ended (BYE, or the final failure)
    final_code: int  # 200 for an answered call
    node: str  # the ACR node's name (primary, secondary)
    answer: float | None = None  # None: never answered
    connect_fee: float = 0.0
    first_increment: int = 60
    next_increment: int = 60
    billed_seconds: int = 0
    cost: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)
