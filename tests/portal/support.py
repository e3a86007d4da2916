"""The portal's ASGI app on a migrated database, driven by httpx, as a browser would
(session cookie) or a script (the same, plus the CSRF header)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from portal.app import build_app
from sipline.config import Settings
from sipline.storage import Database

PASSWORD = "correct horse battery"


def portal_settings(tmp_path: Path, **portal: Any) -> Settings:
    return Settings(node={"data_dir": str(tmp_path / "data")}, portal=portal)


def client_of(settings: Settings, db: Database) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app(settings, db), client=("127.0.0.9", 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://portal.test")


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    """Log in; the CSRF token of the new session (set as the client's default header)."""
    token = (await client.get("/api/csrf")).json()["csrf"]
    answer = await client.post("/api/login", json={"username": username, "password": password},
                               headers={"X-CSRF-Token": token})  # fmt: skip
    assert answer.status_code == 200, answer.text
    csrf = answer.json()["csrf"]
    client.headers["X-CSRF-Token"] = csrf
    return str(csrf)


CDR_COLUMNS = (
    "call_id, account, caller, callee, prefix, carrier, gateway, rate, connect_fee,"
    " first_increment, next_increment, started_at, answered_at, ended_at, billed_seconds,"
    " cost, final_code, node, extra"
)


async def add_cdrs(db: Database, rows: list[dict[str, Any]]) -> None:
    """CDRs as the ACR writes them (the columns of migration 003)."""
    now = time.time()
    values = []
    for i, r in enumerate(rows):
        started = r.get("started_at", now - 60)
        answered = r.get("answered_at", started + 2)
        values.append((
            r.get("call_id", f"call-{i}"), r.get("account"), r.get("caller", "alice@example.com"),
            r.get("callee", "15557654321"), "1", r.get("carrier", "acme"), "127.0.0.1:5090",
            0.01, 0.0, 60, 60, started, answered, r.get("ended_at", started + 30),
            r.get("billed_seconds", 60), r.get("cost", 0.01), r.get("final_code", 200),
            "acr-test", None,
        ))  # fmt: skip
    marks = ", ".join("?" * 19)
    await db.executemany(f"INSERT INTO cdrs ({CDR_COLUMNS}) VALUES ({marks})", values)
