"""Prometheus metrics of the SIP shell, and the optional /metrics HTTP server.

The metric families live in the default registry, once per process; a node
binds every child it counts into ``NodeMetrics`` at start, so the hot path
does a dict lookup on constant keys and ``inc()``, never ``.labels()``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, start_http_server

TRANSPORTS = ("UDP", "TCP")
PARSE_ERROR_KINDS = ("request", "response", "garbage")
DROP_REASONS = ("parse_error", "oversize", "send_failed", "core_error")

MESSAGES = Counter(
    "sipline_sip_messages",
    "SIP messages received and sent",
    ["direction", "transport", "kind"],
)
PARSE_ERRORS = Counter(
    "sipline_sip_parse_errors",
    "Messages that failed to parse, by what they looked like",
    ["kind"],
)
DROPPED = Counter(
    "sipline_sip_dropped",
    "Messages dropped without an answer",
    ["reason"],
)
HANDLER_ERRORS = Counter(
    "sipline_handler_errors",
    "Exceptions raised by the role's handler (requests among them are answered 500)",
)
TRANSACTIONS = Gauge("sipline_sip_transactions", "Live SIP transactions")
TCP_CONNECTIONS = Gauge("sipline_tcp_connections", "Open TCP connections")


class NodeMetrics:
    """Children of every metric family a node counts, bound once.

    ``received[transport]`` and ``sent[transport]`` are (request, response)
    pairs, indexed by ``is_response``.
    """

    __slots__ = ("received", "sent", "parse_errors", "dropped", "handler_errors")

    def __init__(self) -> None:
        self.received = {t: _pair("in", t) for t in TRANSPORTS}
        self.sent = {t: _pair("out", t) for t in TRANSPORTS}
        self.parse_errors = {k: PARSE_ERRORS.labels(k) for k in PARSE_ERROR_KINDS}
        self.dropped = {r: DROPPED.labels(r) for r in DROP_REASONS}
        self.handler_errors = HANDLER_ERRORS

    @staticmethod
    def watch(transactions: Callable[[], float], connections: Callable[[], float]) -> None:
        """Gauges read at scrape time, so keeping them costs nothing per message."""
        TRANSACTIONS.set_function(transactions)
        TCP_CONNECTIONS.set_function(connections)


def _pair(direction: str, transport: str) -> tuple[Counter, Counter]:
    low = transport.lower()
    return MESSAGES.labels(direction, low, "request"), MESSAGES.labels(direction, low, "response")


def start_metrics_server(host: str, port: int) -> Callable[[], None]:
    """Serve /metrics on ``host:port`` from a daemon thread; returns what stops it."""
    server, thread = start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=1.0)

    return stop

