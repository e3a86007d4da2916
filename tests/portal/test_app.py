"""The portal's server side on both backends (a private MariaDB, SQLite): sessions,
CSRF, the login rate limit, who sees what, the audit log, CDR search and export, SSE."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import pytest

from portal.users import Users
from sipline.storage import Database, Subscribers
from tests.portal.support import PASSWORD, add_cdrs, client_of, login, portal_settings


@pytest.fixture
async def client(migrated: Database, tmp_path: Path) -> httpx.AsyncClient:
    users = Users(migrated)
    await users.add("op", PASSWORD, "admin", None)
    await users.add("acme-user", PASSWORD, "customer", "ACME")
    await users.add("globex-user", PASSWORD, "customer", "GLOBEX")
    subscribers = Subscribers(migrated)
    await subscribers.add("alice@example.com", "pw-a", account="ACME")
    await subscribers.add("bob@example.com", "pw-b", account="GLOBEX")
    async with client_of(portal_settings(tmp_path, login_failures=3), migrated) as c:
        yield c


async def test_pages_and_api_need_a_login(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/subscribers")).status_code == 401
    page = await client.get("/subscribers")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert (await client.get("/login")).status_code == 200
    schema = (await client.get("/api/openapi.json")).json()
    assert "/api/subscribers" in schema["paths"] and "/api/cdrs.csv" in schema["paths"]


async def test_state_changes_need_the_sessions_csrf_token(client: httpx.AsyncClient) -> None:
    body = {"username": "op", "password": PASSWORD}
    assert (await client.post("/api/login", json=body)).status_code == 403
    wrong = await client.post("/api/login", json=body, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    await login(client, "op")
    new = {"aor": "carol@example.com", "password": "pw-c"}
    refused = await client.post("/api/subscribers", json=new, headers={"X-CSRF-Token": "x"})
    assert refused.status_code == 403
    assert (await client.post("/api/subscribers", json=new)).status_code == 201


async def test_failed_logins_are_rate_limited_per_source(client: httpx.AsyncClient) -> None:
    token = (await client.get("/api/csrf")).json()["csrf"]
    headers = {"X-CSRF-Token": token}
    bad = {"username": "op", "password": "wrong password"}
    for _ in range(3):
        assert (await client.post("/api/login", json=bad, headers=headers)).status_code == 401
    good = {"username": "op", "password": PASSWORD}
    shut = await client.post("/api/login", json=good, headers=headers)
    assert shut.status_code == 429 and int(shut.headers["Retry-After"]) > 0
    health = (await client.get("/api/health")).json()
    assert health["login_failures"] == 3 and health["logins_refused"] == 1


async def test_a_customer_sees_and_changes_only_its_account(client: httpx.AsyncClient) -> None:
    await login(client, "acme-user")
    listed = (await client.get("/api/subscribers", params={"account": "GLOBEX"})).json()
    assert [s["aor"] for s in listed] == ["alice@example.com"]
    assert (await client.delete("/api/subscribers/bob@example.com")).status_code == 404
    reset = await client.post("/api/subscribers/bob@example.com/password", json={"password": "x"})
    assert reset.status_code == 404
    regs = await client.get("/api/subscribers/bob@example.com/registrations")
    assert regs.status_code == 404
    added = await client.post(
        "/api/subscribers", json={"aor": "dave@example.com", "password": "pw", "account": "GLOBEX"}
    )
    assert added.status_code == 201 and added.json()["account"] == "ACME"
    assert (await client.get("/api/status")).status_code == 403
    page = await client.get("/subscribers")
    assert "alice@example.com" in page.text and "bob@example.com" not in page.text


async def test_every_change_is_audited_without_secrets(
    client: httpx.AsyncClient, migrated: Database
) -> None:
    await login(client, "op")
    await client.post("/api/subscribers",
                      json={"aor": "carol@example.com", "password": "s3cret-pw", "account": "ACME"})  # fmt: skip
    await client.post("/api/subscribers/carol@example.com/password", json={"password": "n3w-pw"})
    await client.delete("/api/subscribers/carol@example.com")
    audit = (await client.get("/api/audit")).json()
    assert [e["action"] for e in audit[:3]] == [
        "subscriber_remove", "subscriber_password", "subscriber_add"
    ]
    assert audit[2]["after"]["account"] == "ACME" and audit[0]["before"]["aor"] == "carol@example.com"
    assert all(e["username"] == "op" and e["source"] == "127.0.0.9" for e in audit[:3])
    assert "s3cret-pw" not in str(audit) and "n3w-pw" not in str(audit)
    await client.post("/api/logout")
    await login(client, "globex-user")
    assert (await client.get("/api/audit")).json() == []  # the changes were ACME's


async def test_cdr_search_totals_and_export(client: httpx.AsyncClient, migrated: Database) -> None:
    base = 1_765_000_000.0
    await add_cdrs(migrated, [
        {"account": "ACME", "started_at": base + i, "callee": f"4420{i:04d}", "cost": 0.5,
         "billed_seconds": 30}
        for i in range(120)
    ] + [{"account": "GLOBEX", "started_at": base + 5, "callee": "4420999", "cost": 9.0,
          "final_code": 486, "answered_at": None, "billed_seconds": 0}])  # fmt: skip
    await login(client, "acme-user")
    when = {"since": "2025-12-06T05:46:40Z", "until": str(base + 1000)}
    first = (await client.get("/api/cdrs", params={**when, "limit": 50, "account": "GLOBEX"})).json()
    assert len(first["cdrs"]) == 50 and {c["account"] for c in first["cdrs"]} == {"ACME"}
    assert first["cdrs"][0]["started_at"] == base + 119  # newest first
    seen = [c["call_id"] for c in first["cdrs"]]
    cursor = first["next"]
    while cursor:
        more = (await client.get("/api/cdrs", params={**when, "limit": 50, "before": cursor})).json()
        seen += [c["call_id"] for c in more["cdrs"]]
        cursor = more["next"]
    assert len(seen) == len(set(seen)) == 120
    totals = (await client.get("/api/cdrs/totals", params=when)).json()
    assert totals == {"calls": 120, "answered": 120, "billed_seconds": 3600, "cost": 60.0}
    exported = await client.get("/api/cdrs.csv", params={**when, "callee": "442001"})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert exported.headers["content-type"].startswith("text/csv")
    assert [r["callee"] for r in rows] == [f"4420{i:04d}" for i in range(100, 120)]
    await client.post("/api/logout")
    await login(client, "op")
    busy = (await client.get("/api/cdrs/totals", params={**when, "code": 486})).json()
    assert busy == {"calls": 1, "answered": 0, "billed_seconds": 0, "cost": 9.0}
    page = await client.get("/cdrs", params=when)
    assert page.status_code == 200 and 'id="older"' in page.text
    summed = await client.get("/cdrs/totals", params=when, headers={"HX-Request": "true"})
    assert "121 calls" in summed.text
    older = await client.get("/cdrs", params={**when, "before": f"{base + 70!r}:0"})
    assert older.status_code == 200 and "4420" + "0069" in older.text and "4420" + "0070" not in older.text


async def test_the_live_dashboard_streams_frames(client: httpx.AsyncClient, migrated: Database) -> None:
    await add_cdrs(migrated, [{"account": "ACME", "carrier": "acme"}, {"account": "ACME",
                   "carrier": "acme", "answered_at": None, "billed_seconds": 0, "cost": 0}])  # fmt: skip
    await login(client, "op")
    answer = await client.get("/api/live/dashboard", params={"frames": 2})
    frames = [line for line in answer.text.splitlines() if line.startswith("event: dashboard")]
    assert answer.status_code == 200 and len(frames) == 2
    data = (await client.get("/api/dashboard")).json()
    assert data["carriers"] == [{"carrier": "acme", "calls": 2, "asr": 0.5, "acd": 28.0}]
    assert data["nodes"] == [] and data["today"]["calls"] == 2
    assert (await client.get("/")).status_code == 200
    assert (await client.get("/audit")).status_code == 200


async def test_only_operators_hang_up_and_customers_see_their_calls(
    client: httpx.AsyncClient,
) -> None:
    await login(client, "acme-user")
    assert (await client.post("/api/calls/some-call/hangup")).status_code == 403
    listed = (await client.get("/api/calls")).json()
    assert listed == {"calls": [], "note": "no ACR node is running"}
    billing = (await client.get("/api/billing")).json()["accounts"]
    assert [r["account"] for r in billing] == ["ACME"]
    assert (await client.get("/calls")).status_code == 200
    assert (await client.get("/billing")).status_code == 200


async def test_the_csv_export_quotes_what_needs_it(client: httpx.AsyncClient, migrated: Database) -> None:
    odd = '"Bob, Jr" <sip:bob@example.com>'
    await add_cdrs(migrated, [{"account": "ACME", "caller": odd, "answered_at": None,
                               "started_at": 1_765_000_000.5, "cost": 0.125}])  # fmt: skip
    await login(client, "op")
    (row,) = list(csv.DictReader(io.StringIO((await client.get("/api/cdrs.csv")).text)))
    assert row["caller"] == odd and row["answered_at"] == "" and row["account"] == "ACME"
    assert float(row["started_at"]) == 1_765_000_000.5 and float(row["cost"]) == 0.125


async def test_live_streams_are_bounded_and_a_customer_sees_its_own_figures(
    client: httpx.AsyncClient, migrated: Database
) -> None:
    await add_cdrs(migrated, [{"account": "ACME", "cost": 0.5}, {"account": "GLOBEX", "cost": 9.0}])
    await login(client, "acme-user")
    data = (await client.get("/api/dashboard")).json()
    assert data["today"]["cost"] == 0.5 and data["calls"] == 0 and "nodes" not in data
    portal = client._transport.app.state.portal  # type: ignore[attr-defined]
    portal.streams.open = portal.settings.portal.max_streams  # as if that many were open
    refused = await client.get("/api/live/dashboard", params={"frames": 1})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert (await client.get("/api/health")).json()["streams_refused"] == 1


async def test_registrations_of_a_subscriber_and_on_the_dashboard(
    client: httpx.AsyncClient, migrated: Database
) -> None:
    import time

    from proxy.location import Binding
    from proxy.location_store import LocationStore
    from sipline.sip.address import Address

    now = time.time()
    phone = Binding("alice@example.com", "sip:alice@10.0.0.5:5060", now + 600,
                    source=Address("UDP", "192.0.2.7", 40000), user_agent="baresip",
                    node="proxy-a")  # fmt: skip
    gone = Binding("bob@example.com", "sip:bob@10.0.0.6:5060", now - 1)
    await LocationStore(migrated, "proxy-a").write([phone, gone], [], now)
    await login(client, "acme-user")
    (binding,) = (await client.get("/api/subscribers/alice@example.com/registrations")).json()
    assert (binding["contact"], binding["node"], binding["user_agent"]) == (
        "sip:alice@10.0.0.5:5060", "proxy-a", "baresip")
    assert 590 <= binding["expires_in"] <= 600
    assert (await client.get("/api/dashboard")).json()["registrations"] == 1
    page = await client.get("/subscribers/alice@example.com")
    assert "sip:alice@10.0.0.5:5060" in page.text
