"""The portal's answers to the security review: no script a template could write
(CSP, data-* attributes), no customer squatting on a telephone number, login
limits per source and per user name, bounded CSV exports, customers' responses
without carrier data, and the smaller fail-closed rules."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import HTTPException
from starlette.types import Message

from portal.app import build_app, session_key
from portal.cdrs import HeldStream
from portal.context import Slots, scope_account
from portal.guard import LoginGuard
from portal.server import uvicorn_server
from portal.users import Users
from sipline.cluster.calls import LiveCall
from sipline.config import ConfigError, Settings
from sipline.storage import Database, Subscribers
from tests.portal.support import PASSWORD, add_cdrs, client_of, login, portal_settings

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
        assert ' style="' not in html, path  # default-src 'self' refuses inline styles
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
    script_src = docs.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    assert "'unsafe-inline'" not in script_src


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


def test_a_success_clears_only_its_own_pair_and_names_are_counted_too() -> None:
    guard = LoginGuard(failures=3, window=60.0, ban=300.0, max_sources=16)
    for t in (1.0, 2.0):
        assert guard.attempt("10.0.0.1", "op", t) == 0
        guard.failed("10.0.0.1", "op")
    assert guard.attempt("10.0.0.1", "acme-user", 3.0) == 0
    guard.succeeded("10.0.0.1", "acme-user")  # its own good login: op's failures stay
    assert guard.attempt("10.0.0.1", "op", 4.0) == 0
    assert guard.attempt("10.0.0.1", "op", 5.0) == 300.0
    # Another source guessing the same name: the name is shut out too.
    names = LoginGuard(failures=2, window=60.0, ban=300.0, max_sources=16)
    assert names.attempt("10.0.0.2", "op", 1.0) == 0 and names.attempt("10.0.0.3", "op", 1.0) == 0
    assert names.attempt("10.0.0.4", "op", 2.0) == 300.0
    assert names.attempt("10.0.0.4", "other", 2.0) == 0
    # Attempts count as they start: parallel ones past the limit wait.
    busy = LoginGuard(failures=2, window=60.0, ban=300.0, max_sources=16)
    assert [busy.attempt("10.0.0.5", f"u{i}", 1.0) for i in range(3)] == [0, 0, 300.0]


def test_the_guard_forgets_the_oldest_sources_and_names_first() -> None:
    guard = LoginGuard(failures=2, window=60.0, ban=300.0, max_sources=16)
    for i in range(100):
        guard.attempt(f"10.0.1.{i}", f"name-{i}", 1.0)
    assert len(guard._sources.entries) == 16 and len(guard._names.entries) == 16
    assert "10.0.1.99" in guard._sources.entries and "name-0" not in guard._names.entries


async def test_parallel_guesses_and_a_customers_own_login_do_not_lift_the_limit(
    client: httpx.AsyncClient,
) -> None:
    token = (await client.get("/api/csrf")).json()["csrf"]
    headers = {"X-CSRF-Token": token}
    bad = {"username": "op", "password": "wrong password"}
    answers = await asyncio.gather(*(client.post("/api/login", json=bad, headers=headers)
                                     for _ in range(8)))  # fmt: skip
    codes = [a.status_code for a in answers]
    assert codes.count(401) <= 3 and set(codes) <= {401, 429, 503}, codes
    shut = await client.post("/api/login", json={"username": "op", "password": PASSWORD},
                             headers=headers)  # fmt: skip
    assert shut.status_code == 429


async def test_a_customer_login_between_guesses_keeps_the_count(client: httpx.AsyncClient) -> None:
    token = (await client.get("/api/csrf")).json()["csrf"]
    bad = {"username": "op", "password": "wrong password"}
    for _ in range(2):
        answer = await client.post("/api/login", json=bad, headers={"X-CSRF-Token": token})
        assert answer.status_code == 401
        token = await login(client, "acme-user")  # a good login of its own, same source
    assert (await client.post("/api/login", json=bad, headers={"X-CSRF-Token": token})).status_code == 401
    refused = await client.post("/api/login", json={"username": "op", "password": PASSWORD},
                                headers={"X-CSRF-Token": token})  # fmt: skip
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0


async def test_password_verifies_at_once_are_bounded(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    portal = client._transport.app.state.portal  # type: ignore[attr-defined]
    token = (await client.get("/api/csrf")).json()["csrf"]
    for _ in range(portal.settings.portal.login_verifies):
        await portal.verifies.acquire()  # as if that many verifies were running
    busy = await client.post("/api/login", json={"username": "op", "password": PASSWORD},
                             headers={"X-CSRF-Token": token})  # fmt: skip
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert (await client.get("/api/health")).json()["logins_busy"] == 1
    for _ in range(portal.settings.portal.login_verifies):
        portal.verifies.release()
    caplog.set_level(logging.INFO, "sipline.portal")
    await login(client, "op")
    wrong = await client.post("/api/login", json={"username": "x" * 64, "password": "no"})
    assert wrong.status_code == 401
    assert "source=127.0.0.9" in caplog.text


async def customer_id(migrated: Database, name: str = "acme-user") -> int:
    user = await Users(migrated).get(name)
    assert user is not None
    return user.id


async def test_customer_exports_need_a_bounded_range_and_slots(
    client: httpx.AsyncClient, migrated: Database
) -> None:
    now = time.time()
    await add_cdrs(migrated, [{"account": "ACME", "started_at": now - 60},
                              {"account": "ACME", "started_at": now - 3 * 86400}])  # fmt: skip
    await login(client, "acme-user")
    assert (await client.get("/api/cdrs.csv")).status_code == 400
    assert (await client.get("/api/cdrs.csv", params={"since": now - 3600})).status_code == 400
    wide = await client.get("/api/cdrs.csv", params={"since": now - 40 * 86400, "until": now})
    assert wide.status_code == 400 and "portal.customer_span" in wide.json()["detail"]
    when = {"since": now - 7 * 86400, "until": now}
    exported = await client.get("/api/cdrs.csv", params=when)
    assert exported.status_code == 200 and len(list(csv.DictReader(io.StringIO(exported.text)))) == 2
    # Without a range a customer's search and totals cover the last day; wider: refused.
    assert (await client.get("/api/cdrs/totals")).json()["calls"] == 1
    assert len((await client.get("/api/cdrs")).json()["cdrs"]) == 1
    assert (await client.get("/api/cdrs/totals", params={"since": 0, "until": now})).status_code == 400
    portal = client._transport.app.state.portal  # type: ignore[attr-defined]
    assert portal.exports.open == 0  # given back once sent
    uid = await customer_id(migrated)
    assert portal.exports.take(uid) == 0  # as if an export of this user were running
    mine = await client.get("/api/cdrs.csv", params=when)
    assert mine.status_code == 429 and mine.headers["Retry-After"]
    for other in range(1000, 1000 + portal.settings.portal.max_exports - 1):
        assert portal.exports.take(other) == 0
    await client.post("/api/logout")
    await login(client, "op")
    full = await client.get("/api/cdrs.csv")
    assert full.status_code == 503 and full.headers["Retry-After"]
    assert (await client.get("/api/health")).json()["exports_refused"] == 2


async def test_an_export_slot_is_given_back_when_cut_or_abandoned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x\n"
            await asyncio.sleep(0.01)

    slots = Slots(total=2, per_user=1)
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client says nothing
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    caplog.set_level(logging.INFO, "sipline.portal")
    scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "client": ("127.0.0.9", 1)}
    assert slots.take(1) == 0
    cut = HeldStream(endless(), media_type="text/csv")
    cut.hold(slots, 1, 0.3, "export")
    await asyncio.wait_for(cut(scope, receive, send), 30)
    assert slots.open == 0 and "event=response_cut" in caplog.text and "source=127.0.0.9" in caplog.text
    assert not any(m.get("more_body") is False for m in sent)  # no complete-looking end

    async def gone(message: Message) -> None:
        raise OSError("client gone")  # before the first byte

    assert slots.take(1) == 0
    abandoned = HeldStream(endless(), media_type="text/csv")
    abandoned.hold(slots, 1, 30.0, "export")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(abandoned(scope, receive, gone), 30)
    assert slots.open == 0 and slots.take(1) == 0


async def test_customers_see_no_carrier_data_but_its_name(
    client: httpx.AsyncClient, migrated: Database
) -> None:
    now = time.time()
    await add_cdrs(migrated, [{"account": "ACME", "started_at": now - 60}])
    portal = client._transport.app.state.portal  # type: ignore[attr-defined]
    live = LiveCall("c1", "acr-a", "ACME", "alice@example.com", "442071234567", "acme",
                    "192.0.2.9:5060", "4420", 0.01, 0.05, 60, 60, now - 30, now - 28)  # fmt: skip
    portal.shared._values["calls"] = (time.monotonic() + 3600, ([live], ""))  # as the nodes said
    hidden = {"gateway", "rate", "connect_fee", "prefix", "node", "first_increment", "id"}
    await login(client, "acme-user")
    (call,) = (await client.get("/api/calls")).json()["calls"]
    assert call["carrier"] == "acme" and call["cost"] > 0 and not hidden & call.keys()
    (cdr,) = (await client.get("/api/cdrs")).json()["cdrs"]
    assert cdr["carrier"] == "acme" and not hidden & cdr.keys()
    exported = await client.get("/api/cdrs.csv", params={"since": now - 3600, "until": now})
    assert not hidden & set(exported.text.splitlines()[0].split(","))
    for path in ("/calls", "/cdrs"):
        page = (await client.get(path)).text
        assert "192.0.2.9" not in page and "acr-a" not in page and "acr-test" not in page
    await client.post("/api/logout")
    await login(client, "op")
    (full,) = (await client.get("/api/calls")).json()["calls"]
    assert full["gateway"] == "192.0.2.9:5060" and full["rate"] == 0.01
    assert "gateway" in (await client.get("/api/cdrs")).json()["cdrs"][0]


async def test_a_customer_row_without_an_account_sees_nothing(
    client: httpx.AsyncClient, migrated: Database
) -> None:
    await login(client, "acme-user")
    await migrated.execute("UPDATE portal_users SET account = NULL WHERE username = ?", ("acme-user",))
    for path in ("/api/subscribers", "/api/cdrs", "/api/audit", "/api/dashboard", "/api/calls"):
        assert (await client.get(path)).status_code == 403, path
    user = await Users(migrated).get("acme-user")
    assert user is not None
    with pytest.raises(HTTPException):
        scope_account(user, None)


def test_the_session_key_is_never_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = portal_settings(tmp_path)
    monkeypatch.setattr("portal.app.node_secret", lambda _settings: None)
    with pytest.raises(ConfigError, match="auth.secret"):
        session_key(settings)


async def test_live_streams_count_at_once_per_user_and_stop_for_a_changed_user(
    client: httpx.AsyncClient, migrated: Database
) -> None:
    await login(client, "acme-user")
    portal = client._transport.app.state.portal  # type: ignore[attr-defined]
    uid = await customer_id(migrated)
    for _ in range(portal.settings.portal.streams_per_user):
        assert portal.streams.take(uid) == 0
    refused = await client.get("/api/live/dashboard", params={"frames": 1})
    assert refused.status_code == 429
    for _ in range(portal.settings.portal.streams_per_user):
        portal.streams.give(uid)
    # The user is made an operator while its stream runs: it stops before its next frame.
    stream = asyncio.create_task(client.get("/api/live/dashboard", params={"frames": 10}))
    deadline = time.monotonic() + 30
    while portal.streams.open == 0 and time.monotonic() < deadline and not stream.done():
        await asyncio.sleep(0.01)
    await migrated.execute("UPDATE portal_users SET role = 'admin', account = NULL WHERE id = ?",
                           (uid,))  # fmt: skip
    stopped = await asyncio.wait_for(stream, 60)
    assert stopped.status_code == 200 and stopped.text.count("event: dashboard") <= 3
    assert portal.streams.open == 0


async def test_the_csv_export_defuses_formulas(client: httpx.AsyncClient, migrated: Database) -> None:
    callers = ["=HYPERLINK(\"http://x\")", "@SUM(1)", "\tx", "-cmd", "+cmd", "+442071234567",
               "-5", "alice@example.com"]  # fmt: skip
    await add_cdrs(migrated, [{"account": "ACME", "caller": c, "started_at": 1_765_000_000.0 + i}
                              for i, c in enumerate(callers)])  # fmt: skip
    await login(client, "op")
    rows = list(csv.DictReader(io.StringIO((await client.get("/api/cdrs.csv")).text)))
    assert [r["caller"] for r in rows] == [
        "'=HYPERLINK(\"http://x\")", "'@SUM(1)", "'\tx", "'-cmd", "'+cmd", "+442071234567",
        "-5", "alice@example.com",
    ]  # fmt: skip


async def test_behind_a_trusted_proxy_the_login_limit_counts_the_client(
    migrated: Database, tmp_path: Path
) -> None:
    await Users(migrated).add("op", PASSWORD, "admin", None)

    async def failures(settings: Settings, clients: list[str]) -> list[int]:
        server = uvicorn_server(settings, build_app(settings, migrated))
        server.config.load()  # the app as uvicorn serves it (ProxyHeadersMiddleware or not)
        transport = httpx.ASGITransport(app=server.config.loaded_app, client=("127.0.0.9", 4321))
        codes = []
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
            token = (await c.get("/api/csrf")).json()["csrf"]
            for i, client in enumerate(clients):
                answer = await c.post("/api/login", json={"username": f"u{i}", "password": "no"},
                                      headers={"X-CSRF-Token": token,
                                               "X-Forwarded-For": client})  # fmt: skip
                codes.append(answer.status_code)
        return codes

    clients = ["203.0.113.5"] * 2 + ["203.0.113.6"]
    behind = portal_settings(tmp_path, login_failures=2, trusted_proxies=["127.0.0.0/8"])
    assert await failures(behind, clients) == [401, 401, 401]  # another client: not shut out
    alone = portal_settings(tmp_path, login_failures=2)
    assert await failures(alone, clients) == [401, 401, 429]  # the header is not believed
    with pytest.raises(ValueError, match="trusted_proxies"):
        portal_settings(tmp_path, trusted_proxies=["proxy.example.com"])
