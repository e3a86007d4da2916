"""The node's admin endpoint: one small HTTP/1.1 server on ``[metrics] host:port``.

It serves, on the node's own event loop (so a handler reads the role's state
without locks):

- ``GET /metrics``: Prometheus text (sipline.net.metrics and the roles' counts);
- ``GET /status`` and the role's other views (``GET /live/...``): JSON;
- ``POST`` actions (drain, resume, config): JSON in and out, each authorised
  by an admin token (sipline.cluster.token) over the whole request.

Every input is hostile: at most ``max_connections`` at once, one request per
connection, a head of at most ``MAX_HEAD`` bytes and a body of ``MAX_BODY``,
each read within ``timeout`` seconds. Every refusal is counted
(``sipline_admin_refused_total{reason}``) and logged with its source, at most
one line a minute per reason and source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from sipline.cluster.token import Replays, verify
from sipline.logs import Throttle, event

log = logging.getLogger("sipline.admin")

MAX_HEAD = 8192  # bytes of request line and headers
MAX_BODY = 65536
MAX_CONNECTIONS = 32
TIMEOUT = 5.0  # seconds to read a request
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REASONS = (
    "connections", "malformed", "too_large", "timeout", "not_found", "method",
    "missing", "bad_mac", "stale", "replayed", "too_many", "wrong_node", "no_key",
)  # fmt: skip
_refused = dict.fromkeys(REASONS, 0)  # every admin server of this process


class _RefusalCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "sipline_admin_refused",
            "Requests the admin endpoint refused, by why (token reasons: missing, bad_mac,"
            " stale, replayed, too_many, wrong_node)",
            labels=["reason"],
        )
        for reason, count in _refused.items():
            family.add_metric([reason], count)
        yield family


REGISTRY.register(_RefusalCollector())


@dataclass(slots=True)
class AdminRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    source: str  # HOST:PORT

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return orjson.loads(self.body) if self.body else {}


class Refusal(Exception):
    """Raised by a handler: answer ``status`` with ``message``, counted under ``reason``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


Handler = Callable[[AdminRequest], Awaitable[Any]]


@dataclass(slots=True)
class Route:
    handle: Handler
    action: bool = False  # POST, authorised by a token


@dataclass
class AdminServer:
    """Serve ``routes`` (path -> Route) on ``host:port`` (0: any free port).

    ``key`` signs the actions' tokens (None: every action is refused);
    ``address`` is where it listens once started."""

    host: str
    port: int
    key: bytes | None = None
    routes: dict[str, Route] = field(default_factory=dict)
    max_connections: int = MAX_CONNECTIONS
    timeout: float = TIMEOUT
    clock: Callable[[], float] = time.time
    address: str = ""
    _server: asyncio.AbstractServer | None = None
    _open: set[asyncio.Task[None]] = field(default_factory=set)
    _replays: Replays = field(default_factory=Replays)
    _quiet: Throttle = field(default_factory=lambda: Throttle(60.0))

    def view(self, path: str, handle: Handler) -> None:
        self.routes[path] = Route(handle)

    def action(self, path: str, handle: Handler) -> None:
        self.routes[path] = Route(handle, action=True)

    async def start(self) -> str:
        self.view("/metrics", _metrics)
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=MAX_HEAD
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        event(log, "admin_listening", address=self.address)
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._open):
                task.cancel()
            await asyncio.gather(*self._open, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    # -- one connection, one request ---------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        source = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
        if len(self._open) >= self.max_connections:
            self._refuse("connections", source)
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)
        try:
            status, body, kind = await self._answer(reader, source)
            head = (
                f"HTTP/1.1 {status} {_PHRASES.get(status, 'Error')}\r\n"
                f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await asyncio.wait_for(writer.drain(), self.timeout)
        except (TimeoutError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._open.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, source: str) -> tuple[int, bytes, str]:
        try:
            request = await asyncio.wait_for(self._read(reader, source), self.timeout)
            route = self.routes.get(request.path)
            if route is None:
                raise Refusal(404, "not_found", f"no {request.path} here")
            if request.method != ("POST" if route.action else "GET"):
                raise Refusal(405, "method", f"{request.method} is not allowed on {request.path}")
            if route.action:
                self._authorise(request)
            result = await route.handle(request)
        except Refusal as refusal:
            if refusal.reason:  # "" for an action that was allowed but could not be done
                self._refuse(refusal.reason, source, error=str(refusal)[:120])
            return refusal.status, orjson.dumps({"error": str(refusal)}), "application/json"
        except TimeoutError:
            self._refuse("timeout", source)
            return 408, orjson.dumps({"error": "request not read in time"}), "application/json"
        except Exception as exc:  # a handler's bug: answered, logged, the server goes on
            log.exception("event=admin_error source=%s", source)
            return 500, orjson.dumps({"error": repr(exc)[:200]}), "application/json"
        if isinstance(result, bytes):
            return 200, result, METRICS_TYPE
        return 200, orjson.dumps(result), "application/json"

    async def _read(self, reader: asyncio.StreamReader, source: str) -> AdminRequest:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise Refusal(431, "too_large", "request head too large") from None
        except asyncio.IncompleteReadError:
            raise Refusal(400, "malformed", "connection closed mid-request") from None
        try:
            lines = head.decode("ascii").split("\r\n")
            method, target, version = lines[0].split(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
        except (UnicodeDecodeError, ValueError):
            raise Refusal(400, "malformed", "not an HTTP/1.x request") from None
        if not 0 <= length <= MAX_BODY:
            raise Refusal(413, "too_large", f"body over {MAX_BODY} bytes")
        try:
            body = await reader.readexactly(length) if length else b""
        except asyncio.IncompleteReadError:
            raise Refusal(400, "malformed", "body shorter than Content-Length") from None
        url = urlsplit(target)
        query = dict(parse_qsl(url.query)) if url.query else {}
        return AdminRequest(method, unquote(url.path), query, headers, body, source)

    def _authorise(self, request: AdminRequest) -> None:
        if self.key is None:
            raise Refusal(403, "no_key", "this node has no admin key: actions are off")
        reason = verify(
            self.key, request.headers.get("authorization", ""), request.method,
            request.path, request.body, self.clock(), self._replays,
        )  # fmt: skip
        if reason:
            raise Refusal(401 if reason != "too_many" else 429, reason, f"token refused: {reason}")

    def _refuse(self, reason: str, source: str, **fields: Any) -> None:
        _refused[reason] = _refused.get(reason, 0) + 1
        held = self._quiet.admit((reason, source.rpartition(":")[0]))
        if held is not None:
            event(log, "admin_refused", logging.WARNING, reason=reason, source=source,
                  **fields, unlogged=held)  # fmt: skip


async def _metrics(request: AdminRequest) -> bytes:
    return generate_latest(REGISTRY)


_PHRASES = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    503: "Service Unavailable",
}  # fmt: skip
