"""Prometheus metrics of the SIP shell (served by the node's admin endpoint, sipline.net.admin).

Counting sits on the per-message path, so a count is a plain integer the
event loop thread bumps (``Tally``), with no lock per increment as
prometheus_client's own counters take; a collector turns every live node's
tallies into metric families when /metrics is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

TRANSPORTS = ("UDP", "TCP", "TLS")
PARSE_ERROR_KINDS = ("request", "response", "garbage")
# flood: over its source's limit (sipline.net.guard); banned: from a banned source.
DROP_REASONS = (
    "parse_error", "oversize", "send_failed", "core_error", "not_started", "flood", "banned",
)  # fmt: skip
# Why the transaction layer turned a message away itself (sipline.sip.transaction.Refused).
REFUSAL_REASONS = ("draining", "transaction_limit", "source_transaction_limit", "wrong_source")
BAN_REASONS = ("flood", "auth")  # the bans a node makes (operators' come from `sipline ban`)
# Accepted TCP (and TLS) connections closed at once (over a limit) or later (a message
# too slow); TLS ones whose handshake failed (or timed out), or whose certificate
# proved no peer from a peer's address.
TCP_CLOSE_REASONS = ("max_connections", "per_ip", "read_timeout", "tls_handshake", "tls_peer")
TLS_RELOADS = ("ok", "failed")  # certificate reloads (SIGHUP or a changed file)
# A worker's CANCELs and ACKs for INVITEs it does not hold (sipline.net.workers):
# handed to the other workers, taken from one (it held the INVITE), unmatched
# (handed here, not held here either), forged (a handover not sealed by a worker).
HANDOVER_OUTCOMES = ("handed", "taken", "unmatched", "forged")


class Tally:
    """A counter bumped from one thread only (the node's event loop)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


# Methods counted by name; any other (a stranger may send any token) is "other".
METHODS = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO",
     "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH")
)  # fmt: skip


class Traffic:
    """Requests by method and responses by status code, in one direction. Each
    message is counted once, as the transaction layer hands it over or the
    role sends it: retransmissions are not counted again."""

    __slots__ = ("requests", "responses")

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.responses: dict[int, int] = {}  # 100..699: bounded by the parser

    def request(self, method: str) -> None:
        key = method if method in METHODS else "other"
        self.requests[key] = self.requests.get(key, 0) + 1

    def response(self, status: int) -> None:
        self.responses[status] = self.responses.get(status, 0) + 1


class NodeMetrics:
    """What a node counts. ``received[transport]`` and ``sent[transport]`` are
    (request, response) pairs, indexed by ``is_response``; ``inbound`` and
    ``outbound`` the messages by method and code; ``calls`` the new INVITEs
    (outside a dialog) handed to the role."""

    __slots__ = (
        "received",
        "sent",
        "parse_errors",
        "dropped",
        "refused",
        "handler_errors",
        "bans",
        "auth_failures",
        "untracked",
        "tcp_closed",
        "inbound",
        "outbound",
        "calls",
        "tls_reloads",
        "handovers",
        "_transactions",
        "_connections",
        "_banned",
        "_sources",
    )

    def __init__(self, register: bool = True) -> None:
        """``register``: exported at /metrics (False: private tallies, as a socketless Wire's)."""
        self.received = {t: (Tally(), Tally()) for t in TRANSPORTS}
        self.sent = {t: (Tally(), Tally()) for t in TRANSPORTS}
        self.parse_errors = {k: Tally() for k in PARSE_ERROR_KINDS}
        self.dropped = {r: Tally() for r in DROP_REASONS}
        self.refused = {r: Tally() for r in REFUSAL_REASONS}
        self.handler_errors = Tally()
        self.bans = {r: Tally() for r in BAN_REASONS}
        self.auth_failures = Tally()
        self.untracked = Tally()  # messages of sources the full table could not count
        self.tcp_closed = {r: Tally() for r in TCP_CLOSE_REASONS}
        self.inbound = Traffic()
        self.outbound = Traffic()
        self.calls = Tally()
        self.tls_reloads = {r: Tally() for r in TLS_RELOADS}
        self.handovers = {r: Tally() for r in HANDOVER_OUTCOMES}
        self._transactions: Callable[[], float] = _zero
        self._connections: Callable[[], float] = _zero
        self._banned: Callable[[], float] = _zero
        self._sources: Callable[[], float] = _zero
        if register:
            _NODES.append(self)

    def watch(self, transactions: Callable[[], float], connections: Callable[[], float]) -> None:
        """Gauges read at scrape time, so keeping them costs nothing per message."""
        self._transactions = transactions
        self._connections = connections

    def watch_guard(self, banned: Callable[[], float], sources: Callable[[], float]) -> None:
        """The guard's table sizes, read at scrape time."""
        self._banned = banned
        self._sources = sources

    def unwatch(self) -> None:
        """A stopped node's gauges read 0 (and no longer keep the node alive)."""
        self._transactions = self._connections = self._banned = self._sources = _zero


def _zero() -> float:
    return 0


# Every node's tallies in this process, kept after the node stops: counters
# must never go down (one node per process in production, many in tests).
_NODES: list[NodeMetrics] = []


# The node's counters by label: (name, documentation, label, NodeMetrics attribute, values).
_LABELLED = (
    ("sipline_sip_parse_errors", "Messages that failed to parse, by what they looked like",
     "kind", "parse_errors", PARSE_ERROR_KINDS),
    ("sipline_sip_dropped", "Messages dropped without an answer", "reason", "dropped", DROP_REASONS),
    ("sipline_sip_refused",
     "Messages the transaction layer turned away itself: requests answered 503 statelessly "
     "(draining, over a transaction limit), responses dropped (from an address their request "
     "was not sent to)", "reason", "refused", REFUSAL_REASONS),
    ("sipline_bans", "Sources this node banned, by why (flood: over its rate; auth: failed digests)",
     "reason", "bans", BAN_REASONS),
    ("sipline_tcp_closed",
     "Accepted TCP and TLS connections the node closed: over a connection limit, too slow,"
     " a failed TLS handshake, a certificate proving no peer from a peer's address",
     "reason", "tcp_closed", TCP_CLOSE_REASONS),
    ("sipline_tls_reloads", "TLS certificate reloads (SIGHUP or a changed file), by outcome",
     "outcome", "tls_reloads", TLS_RELOADS),
    ("sipline_worker_handovers",
     "CANCELs and ACKs for an INVITE another worker holds: handed to the other workers, taken"
     " (this worker held it), unmatched (nor here), forged (not sealed by a worker)",
     "outcome", "handovers", HANDOVER_OUTCOMES),
)  # fmt: skip
_COUNTERS = (
    ("sipline_handler_errors",
     "Exceptions raised by the role's handler (requests among them are answered 500)",
     "handler_errors"),
    ("sipline_auth_failures", "Failed digest authentications reported to the guard", "auth_failures"),
    ("sipline_flood_untracked",
     "Messages admitted uncounted: the table of sources was full (limits.max_sources)", "untracked"),
)  # fmt: skip
_GAUGES = (
    ("sipline_bans_active", "Sources banned now", "_banned"),
    ("sipline_flood_sources", "Sources whose rate is being counted", "_sources"),
    ("sipline_sip_transactions", "Live SIP transactions", "_transactions"),
    ("sipline_tcp_connections", "Open TCP connections", "_connections"),
)


class _NodeCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        nodes = list(_NODES)
        messages = CounterMetricFamily(
            "sipline_sip_messages",
            "SIP messages received and sent",
            labels=["direction", "transport", "kind"],
        )
        for direction, attr in (("in", "received"), ("out", "sent")):
            for transport in TRANSPORTS:
                for kind, index in (("request", 0), ("response", 1)):
                    total = sum(getattr(n, attr)[transport][index].value for n in nodes)
                    messages.add_metric([direction, transport.lower(), kind], total)
        yield messages
        for name, documentation, label, attr, keys in _LABELLED:
            values = {k: sum(getattr(n, attr)[k].value for n in nodes) for k in keys}
            yield _family(name, documentation, label, values)
        for name, documentation, attr in _COUNTERS:
            total = sum(getattr(n, attr).value for n in nodes)
            yield CounterMetricFamily(name, documentation, value=total)
        for name, documentation, attr in _GAUGES:
            yield GaugeMetricFamily(name, documentation, value=sum(getattr(n, attr)() for n in nodes))
        requests = CounterMetricFamily(
            "sipline_sip_requests",
            "SIP requests by method (in: handed to the role; out: sent by it), retransmissions aside",
            labels=["direction", "method"],
        )
        responses = CounterMetricFamily(
            "sipline_sip_responses",
            "SIP responses by code (in: to our requests; out: ours and those we forward)",
            labels=["direction", "code"],
        )
        for direction, attr in (("in", "inbound"), ("out", "outbound")):
            methods: dict[str, int] = {}
            codes: dict[int, int] = {}
            for n in nodes:
                traffic = getattr(n, attr)
                for method, count in list(traffic.requests.items()):
                    methods[method] = methods.get(method, 0) + count
                for code, count in list(traffic.responses.items()):
                    codes[code] = codes.get(code, 0) + count
            for method, count in sorted(methods.items()):
                requests.add_metric([direction, method], count)
            for code, count in sorted(codes.items()):
                responses.add_metric([direction, str(code)], count)
        yield requests
        yield responses
        calls = CounterMetricFamily("sipline_calls", "New calls (INVITEs outside a dialog)")
        calls.add_metric([], sum(n.calls.value for n in nodes))
        yield calls


def _family(
    name: str, documentation: str, label: str, values: dict[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


class RoleCounts:
    """A role's own counters (calls, failovers, refusals...): plain integers in
    ``values`` that the loop bumps, exported as ``sipline_<role>_<name>_total``
    with ``documentation[name]``; ``watch`` adds gauges read at scrape time.
    Kept after the role stops, like the node's tallies (counters never go down)."""

    __slots__ = ("role", "values", "documentation", "_gauges")

    def __init__(self, role: str, documentation: dict[str, str]) -> None:
        self.role = role
        self.documentation = documentation
        self.values = dict.fromkeys(documentation, 0)
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        _ROLES.append(self)

    def watch(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (documentation, read)

    def unwatch(self) -> None:
        """The gauges read 0 (and no longer keep the role alive)."""
        self._gauges = {name: (doc, _zero) for name, (doc, _) in self._gauges.items()}


_ROLES: list[RoleCounts] = []


class _RoleCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        counters: dict[str, tuple[str, int]] = {}
        gauges: dict[str, tuple[str, float]] = {}
        for counts in list(_ROLES):
            for name, value in counts.values.items():
                key = f"sipline_{counts.role}_{name}"
                _, total = counters.get(key, ("", 0))
                counters[key] = (counts.documentation.get(name, name), total + value)
            for name, (doc, read) in counts._gauges.items():
                key = f"sipline_{counts.role}_{name}"
                gauges[key] = (doc, gauges.get(key, ("", 0.0))[1] + read())
        for key, (doc, total) in counters.items():
            yield CounterMetricFamily(key, doc, value=total)
        for key, (doc, level) in gauges.items():
            yield GaugeMetricFamily(key, doc, value=level)


REGISTRY.register(_NodeCollector())
REGISTRY.register(_RoleCollector())

