"""The portal's carriers, decks, DIDs, explain and error queue: operators only, the
CLI's checks (a deck with a bad row loads nothing, and the report is the CLI's)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from portal.users import Users
from sipline.carriers.deck import DeckError, parse_deck
from sipline.carriers.model import Carrier, Gateway
from sipline.carriers.store import AcrStore
from sipline.storage import Database
from sipline.storage.error_queue import queue_error
from tests.portal.support import PASSWORD, client_of, login, portal_settings

GOOD = "prefix,rate\n44,0.010\n4420,0.008\n1,0.005\n"
BAD = "prefix,rate\n44,0.010\n4420,cheap\n1,0.005\n"


@pytest.fixture
async def client(migrated: Database, tmp_path: Path) -> httpx.AsyncClient:
    await Users(migrated).add("op", PASSWORD, "admin", None)
    await Users(migrated).add("acme-user", PASSWORD, "customer", "ACME")
    await AcrStore(migrated).add_carrier(Carrier("acme", (Gateway("acme", "127.0.0.1", 5090),)))
    async with client_of(portal_settings(tmp_path, max_upload_bytes=4096), migrated) as c:
        yield c


async def test_a_deck_with_a_bad_row_loads_nothing_and_says_why_as_the_cli(
    client: httpx.AsyncClient, migrated: Database
) -> None:
    await login(client, "op")
    headers = {"Content-Type": "text/csv", "X-Filename": "acme.csv"}
    loaded = await client.post("/api/carriers/acme/deck", content=GOOD, headers=headers)
    assert loaded.json() == {"carrier": "acme", "rates": 3}
    refused = await client.post("/api/carriers/acme/deck", content=BAD, headers=headers)
    with pytest.raises(DeckError) as cli:
        parse_deck(BAD.splitlines(keepends=True), "acme", path="acme.csv")
    assert refused.status_code == 400 and refused.json()["detail"] == str(cli.value)
    assert refused.json()["errors"] == [[3, *cli.value.errors[0][1:]]]
    assert await AcrStore(migrated).deck_sizes() == {"acme": 3}  # the good deck stands
    rows = (await client.get("/api/carriers/acme/deck", params={"prefix": "44"})).json()
    assert [r["prefix"] for r in rows] == ["44", "4420"]
    too_big = await client.post("/api/carriers/acme/deck", content="1,0.1\n" * 1000, headers=headers)
    assert too_big.status_code == 413
    assert (await client.get("/api/health")).json()["uploads_refused"] == 1
    audit = (await client.get("/api/audit")).json()
    assert audit[0]["action"] == "deck_import" and audit[0]["after"]["rates"] == 3


async def test_carriers_enable_disable_dids_errors_and_explain(
    client: httpx.AsyncClient, migrated: Database
) -> None:
    await login(client, "op")
    listed = (await client.get("/api/carriers")).json()
    assert listed["carriers"][0]["gateways"][0]["state"] == "unknown"
    assert listed["note"] == "no live data (no ACR node is running)"
    assert (await client.post("/api/carriers/acme/disable")).json()["enabled"] is False
    assert not (await AcrStore(migrated).carrier("acme")).enabled
    assert (await client.post("/api/carriers/nope/enable")).status_code == 404
    did = {"number": "+44 20 7946 0000", "proxy": "127.0.0.1:5060", "backups": ["127.0.0.2:5060"]}
    assert (await client.post("/api/dids", json=did)).status_code == 201
    assert (await client.post("/api/dids", json=did)).status_code == 409
    assert (await client.get("/api/dids")).json()[0]["number"] == "442079460000"
    await queue_error(migrated, "cdrs", "Data too long for column 'caller'", '{"call_id": "x"}')
    assert (await client.get("/api/errors")).json() == [
        {"source": "cdrs", "reason": "Data too long for column 'caller'", "row": {"call_id": "x"}}
    ]
    explained = await client.get("/api/explain", params={"number": "+4420"})
    assert explained.status_code == 503 and "no ACR node" in explained.json()["detail"]
    for path in ("/carriers", "/carriers/acme/deck", "/dids", "/errors"):
        assert (await client.get(path)).status_code == 200, path


async def test_customers_may_not_touch_carriers(client: httpx.AsyncClient) -> None:
    await login(client, "acme-user")
    for method, path in (("GET", "/api/carriers"), ("POST", "/api/carriers/acme/disable"),
                         ("POST", "/api/carriers/acme/deck"), ("POST", "/api/dids"),
                         ("GET", "/api/errors"), ("GET", "/api/explain?number=44"),
                         ("GET", "/carriers")):  # fmt: skip
        assert (await client.request(method, path, content=GOOD)).status_code == 403, path


async def test_a_customer_sees_its_own_accounts_dids_only(client: httpx.AsyncClient) -> None:
    await login(client, "op")
    for number, account in (("442079460001", "ACME"), ("442079460002", "GLOBEX"), ("442079460003", "")):
        did = {"number": number, "proxy": "127.0.0.1:5060", "account": account}
        assert (await client.post("/api/dids", json=did)).status_code == 201
    assert len((await client.get("/api/dids")).json()) == 3
    await client.post("/api/logout")
    await login(client, "acme-user")
    mine = (await client.get("/api/dids")).json()
    assert [(d["number"], d["account"]) for d in mine] == [("442079460001", "ACME")]
    page = await client.get("/dids")
    assert page.status_code == 200 and "442079460001" in page.text and "442079460002" not in page.text
    assert 'id="add-did"' not in page.text  # operators provision numbers


async def test_licences_grace_state_and_who_sees_them(
    client: httpx.AsyncClient, migrated: Database
) -> None:
    from sipline.storage.accounts import Accounts, AuditRow

    await Accounts(migrated).set("GLOBEX", 5)
    await Accounts(migrated).add_audit([AuditRow("GLOBEX", 1000.0, 6, 5, True, "c1", "b2bua")])
    await login(client, "op")
    body = {"name": "ACME", "licence": 2, "grace_hours": 0}
    assert (await client.post("/api/accounts", json=body)).json()["state"] == "within"
    listed = (await client.get("/api/accounts")).json()
    assert [(a["name"], a["licence"], a["grace_hours"], a["calls"]) for a in listed["accounts"]] == [
        ("ACME", 2, 0, None), ("GLOBEX", 5, 48, None)]
    assert listed["note"] == "no live data (no B2BUA is running)"
    assert (await client.get("/api/accounts/GLOBEX/audit")).json()[0]["calls"] == 6
    assert (await client.get("/accounts")).status_code == 200
    await client.post("/api/logout")
    await login(client, "acme-user")
    assert [a["name"] for a in (await client.get("/api/accounts")).json()["accounts"]] == ["ACME"]
    assert (await client.get("/api/accounts/GLOBEX/audit")).status_code == 403
    assert (await client.post("/api/accounts", json=body)).status_code == 403
