"""The portal's answers to the security review: no script a template could write
(CSP, data-* attributes), no customer squatting on a telephone number, login
limits per source and per user name, bounded CSV exports, customers' responses
without carrier data, and the smaller fail-closed rules."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from portal.users import Users
from sipline.storage import Database, Subscribers
from tests.portal.support import PASSWORD, client_of, login, portal_settings

HOSTILE = "x');alert(1);('@example.com"


@pytest.fixture
async def client(migrated: Database, tmp_path: Path) -> httpx.AsyncClient:
    users = Users(migrated)
    await users.add("op", PASSWORD, "admin", None)
    await users.add("acme-user", PASSWORD, "customer", "ACME")
    await users.add("globex-user", PASSWORD, "customer", "GLOBEX")
    await Subscribers(migrated).add("bob@example.com", "pw-b", account="GLOBEX")
    async with client_of(portal_settings(tmp_path, login_failures=3), migrated) as c:
        yield c


async def test_a_hostile_aor_renders_as_text_under_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    await login(client, "op")
    added = await client.post("/api/subscribers", json={"aor": HOSTILE, "password": "pw"})
    assert added.status_code == 201, added.text
    for path in ("/subscribers", "/calls", "/", "/carriers", "/login", "/cdrs", "/accounts"):
        answer = await client.get(path)
        assert answer.status_code == 200, path
        policy = answer.headers["content-security-policy"]
        for rule in ("script-src 'self'", "object-src 'none'", "frame-ancestors 'none'",
                     "base-uri 'none'"):  # fmt: skip
            assert rule in policy, (path, policy)
        html = answer.text
        assert not re.search(r"\son[a-z]+\s*=", html), path  # no inline handler
        assert not re.search(r"hx-on", html), path
        # Only external scripts, and data blocks the browser does not run.
        for tag in re.findall(r"<script[^>]*>", html):
            assert 'src="/static/' in tag or 'type="application/json"' in tag, (path, tag)
    rows = (await client.get("/subscribers")).text
    assert "alert(1)" in rows and "x&#39;);alert(1);(&#39;@example.com" in rows
    assert (await client.get("/api/me")).headers["content-security-policy"]
    script = await client.get("/static/portal.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    docs = await client.get("/api/docs")  # Swagger UI: its CDN and its own inline script only
    assert docs.status_code == 200 and "'sha256-" in docs.headers["content-security-policy"]
    assert "'unsafe-inline'" not in docs.headers["content-security-policy"]


async def test_a_customer_may_not_take_a_number_nor_learn_who_has_a_name(
    client: httpx.AsyncClient,
) -> None:
    await login(client, "acme-user")
    refusals = []
    for aor in ("442071234567@example.com", "+44 (20) 7123-4567".replace(" ", "") + "@example.com",
                "+44.20.7123.4567@example.com", "%34%34207@example.com",
                "bob@example.com"):  # fmt: skip
        answer = await client.post("/api/subscribers", json={"aor": aor, "password": "pw"})
        refusals.append((answer.status_code, answer.json()["detail"].split(" ", 1)[1]))
    # A number and another account's name get the very same answer.
    assert len(set(refusals)) == 1 and refusals[0][0] == 409, refusals
    mine = await client.post("/api/subscribers", json={"aor": "carol@example.com", "password": "pw"})
    assert mine.status_code == 201 and mine.json()["account"] == "ACME"
    again = await client.post("/api/subscribers", json={"aor": "carol@example.com", "password": "pw"})
    assert (again.status_code, again.json()["detail"].split(" ", 1)[1]) == refusals[0]
    await client.post("/api/logout")
    await login(client, "op")
    number = await client.post("/api/subscribers",
                               json={"aor": "442071234567@example.com", "password": "pw",
                                     "account": "ACME"})  # fmt: skip
    assert number.status_code == 201  # operators provision numbers
