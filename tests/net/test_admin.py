"""The admin endpoint on the wire: views, token-guarded actions, and what it refuses
(counted in sipline_admin_refused_total and logged with the source)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from sipline.cluster import client
from sipline.cluster.token import derive_key, sign
from sipline.net.admin import MAX_BODY, AdminRequest, AdminServer

HOST = "127.0.0.1"
KEY = derive_key("test secret")


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("sipline_admin_refused_total", {"reason": reason}) or 0.0


@pytest.fixture
async def server() -> AsyncIterator[AdminServer]:
    admin = AdminServer(HOST, 0, key=KEY, max_connections=4, timeout=0.5)
    done: list[Any] = []

    async def status(request: AdminRequest) -> dict[str, Any]:
        return {"ok": True, "query": request.query}

    async def drain(request: AdminRequest) -> dict[str, Any]:
        done.append(request.json())
        return {"drained": True}

    admin.view("/status", status)
    admin.action("/drain", drain)
    admin.done = done  # type: ignore[attr-defined]
    await admin.start()
    yield admin
    await admin.close()


async def raw(admin: AdminServer, data: bytes, wait: float = 2.0) -> bytes:
    host, port = admin.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), wait)
    finally:
        writer.close()


async def test_views_answer_json_and_metrics_answer_prometheus_text(server: AdminServer) -> None:
    answer = await client.get(server.address, "/status?number=44")
    assert answer is not None and answer.ok
    assert answer.body == {"ok": True, "query": {"number": "44"}}
    metrics = await client.get(server.address, "/metrics")
    assert metrics is not None and b"sipline_admin_refused_total" in metrics.body


async def test_an_action_needs_a_token_over_the_request(
    server: AdminServer, caplog: pytest.LogCaptureFixture
) -> None:
    missing, bad = refused("missing"), refused("bad_mac")
    body = {"node": "n"}
    with caplog.at_level(logging.WARNING, logger="sipline.admin"):
        assert (await client.request(server.address, "POST", "/drain", b"{}")).status == 401
        forged = await client.post(server.address, "/drain", body, derive_key("guess"))
        assert forged is not None and forged.status == 401
    assert server.done == []  # type: ignore[attr-defined]
    assert (refused("missing"), refused("bad_mac")) == (missing + 1, bad + 1)
    lines = [r.getMessage() for r in caplog.records]
    assert any("reason=missing source=127.0.0.1:" in line for line in lines)
    ok = await client.post(server.address, "/drain", body, KEY)
    assert ok is not None and ok.ok and ok.body == {"drained": True}
    assert server.done == [body]  # type: ignore[attr-defined]


async def test_a_token_is_taken_once(server: AdminServer) -> None:
    data = b'{"node":"n"}'
    header = sign(KEY, "POST", "/drain", data, time.time())
    headers = {"Authorization": header}
    first = await client.request(server.address, "POST", "/drain", data, headers)
    again = await client.request(server.address, "POST", "/drain", data, headers)
    assert first is not None and first.ok
    assert again is not None and again.status == 401 and "replayed" in again.body["error"]


async def test_an_action_refuses_gets_and_a_view_refuses_posts(server: AdminServer) -> None:
    before = refused("method")
    assert (await client.get(server.address, "/drain")).status == 405
    assert (await client.request(server.address, "POST", "/status")).status == 405
    assert (await client.get(server.address, "/nothing")).status == 404
    assert refused("method") == before + 2


async def test_no_key_no_actions() -> None:
    admin = AdminServer(HOST, 0)
    admin.action("/drain", lambda request: asyncio.sleep(0))
    await admin.start()
    try:
        answer = await client.post(admin.address, "/drain", {"node": "n"}, KEY)
        assert answer is not None and answer.status == 403
    finally:
        await admin.close()


async def test_oversized_garbage_and_slow_requests_are_refused(server: AdminServer) -> None:
    counts = {r: refused(r) for r in ("too_large", "malformed", "timeout")}
    big = b"POST /drain HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    assert (await raw(server, big)).startswith(b"HTTP/1.1 413")
    assert (
        await raw(server, b"GET /status HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
    ).startswith(b"HTTP/1.1 431")
    assert (await raw(server, b"\x16\x03\x01 hello\r\n\r\n")).startswith(b"HTTP/1.1 400")
    # A head that never ends is cut off at the read timeout (0.5 s here).
    assert (await raw(server, b"GET /status HTTP/1.1\r\n")).startswith(b"HTTP/1.1 408")
    assert refused("too_large") == counts["too_large"] + 2
    assert refused("malformed") == counts["malformed"] + 1
    assert refused("timeout") == counts["timeout"] + 1


async def test_connections_over_the_limit_are_closed_at_once(server: AdminServer) -> None:
    before = refused("connections")
    host, port = server.address.rsplit(":", 1)
    held = [await asyncio.open_connection(host, int(port)) for _ in range(4)]
    await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection(host, int(port))
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed unanswered
    writer.close()
    assert refused("connections") == before + 1
    for _, w in held:
        w.close()
