"""Asking nodes over their admin endpoints, as the operator commands do.

``get(admin, path)`` reads a view (JSON); ``post(admin, path, body, key)`` asks
for an action with a fresh token. Both give up after ``timeout`` seconds and
return None rather than raise: a node that does not answer is a fact to
show, not an error. ``ask_all`` asks many nodes at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from sipline.cluster.token import sign
from sipline.config import split_host_port

TIMEOUT = 1.0
MAX_ANSWER = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any  # the JSON it sent (or bytes that are not JSON)

    @property
    def ok(self) -> bool:
        return self.status == 200


async def request(
    admin: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> Answer | None:  # fmt: skip
    """One HTTP/1.1 exchange with a node's admin endpoint; None if it did not answer."""
    try:
        return await asyncio.wait_for(_exchange(admin, method, path, body, headers or {}), timeout)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        return None


async def _exchange(
    admin: str, method: str, path: str, body: bytes, headers: dict[str, str]
) -> Answer:
    host, port = split_host_port(admin)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {admin}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        data = await reader.read(MAX_ANSWER)
        while chunk := await reader.read(MAX_ANSWER):
            data += chunk
            if len(data) > MAX_ANSWER:
                raise ValueError("answer too large")
    finally:
        writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return Answer(status, orjson.loads(payload) if payload else None)
    except orjson.JSONDecodeError:
        return Answer(status, payload)


async def get(admin: str, path: str, timeout: float = TIMEOUT) -> Answer | None:
    return await request(admin, "GET", path, timeout=timeout)


async def post(
    admin: str, path: str, body: dict[str, Any], key: bytes, timeout: float = TIMEOUT
) -> Answer | None:
    data = orjson.dumps(body)
    authorization = sign(key, "POST", path, data, time.time())
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    return await request(admin, "POST", path, data, headers, timeout)


async def ask_all(
    admins: Iterable[str], path: str, timeout: float = TIMEOUT
) -> list[Answer | None]:
    """GET ``path`` of every node at once, answers in the same order."""
    return list(await asyncio.gather(*(get(a, path, timeout) for a in admins)))
