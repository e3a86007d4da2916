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

TRANSPORTS = ("UDP", "TCP")
PARSE_ERROR_KINDS = ("request", "response", "garbage")
DROP_REASONS = ("parse_error", "oversize", "send_failed", "core_error", "not_started")


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
        "handler_errors",
        "inbound",
        "outbound",
        "calls",
        "_transactions",
        "_connections",
    )

    def __init__(self) -> None:
        self.received = {t: (Tally(), Tally()) for t in TRANSPORTS}
        self.sent = {t: (Tally(), Tally()) for t in TRANSPORTS}
        self.parse_errors = {k: Tally() for k in PARSE_ERROR_KINDS}
        self.dropped = {r: Tally() for r in DROP_REASONS}
        self.handler_errors = Tally()
        self.inbound = Traffic()
        self.outbound = Traffic()
        self.calls = Tally()
        self._transactions: Callable[[], float] = _zero
        self._connections: Callable[[], float] = _zero
        _NODES.append(self)

    def watch(self, transactions: Callable[[], float], connections: Callable[[], float]) -> None:
        """Gauges read at scrape time, so keeping them costs nothing per message."""
        self._transactions = transactions
        self._connections = connections

    def unwatch(self) -> None:
        """A stopped node's gauges read 0 (and no longer keep the node alive)."""
        self._transactions = self._connections = _zero


def _zero() -> float:
    return 0


# Every node's tallies in this process, kept after the node stops: counters
# must never go down (one node per process in production, many in tests).
_NODES: list[NodeMetrics] = []


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
        yield _family(
            "sipline_sip_parse_errors",
            "Messages that failed to parse, by what they looked like",
            "kind",
            {k: sum(n.parse_errors[k].value for n in nodes) for k in PARSE_ERROR_KINDS},
        )
        yield _family(
            "sipline_sip_dropped",
            "Messages dropped without an answer",
            "reason",
            {r: sum(n.dropped[r].value for n in nodes) for r in DROP_REASONS},
        )
        errors = CounterMetricFamily(
            "sipline_handler_errors",
            "Exceptions raised by the role's handler (requests among them are answered 500)",
        )
        errors.add_metric([], sum(n.handler_errors.value for n in nodes))
        yield errors
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
        yield GaugeMetricFamily(
            "sipline_sip_transactions",
            "Live SIP transactions",
            value=sum(n._transactions() for n in nodes),
        )
        yield GaugeMetricFamily(
            "sipline_tcp_connections",
            "Open TCP connections",
            value=sum(n._connections() for n in nodes),
        )


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
        for key, (doc, value) in gauges.items():
            yield GaugeMetricFamily(key, doc, value=value)


REGISTRY.register(_NodeCollector())
REGISTRY.register(_RoleCollector())

