"""The registrar on a real node: phones on UDP sockets, bindings in SQLite and MariaDB.

The registrar's clock is fake (expiry is moved by the test); the node, the
sockets and the database are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sipline.sip.address import Address
from sipline.storage import Database, Subscribers
from tests.proxy.phone import UdpPhone, request
from tests.proxy.support import Proxy, running, until, write_lock_held
from tests.support import FakeClock

AORS = [f"user{n}@example.com" for n in range(100)]


@pytest.fixture
async def provisioned(migrated: Database) -> Database:
    subscribers = Subscribers(migrated)
    for aor in ["alice@example.com", "bob@example.com", *AORS]:
        await subscribers.add(aor, "correct horse")
    return migrated


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
async def proxy(provisioned: Database, database_url: str, clock: FakeClock) -> AsyncIterator[Proxy]:
    async with running(provisioned, database_url, clock) as started:
        yield started


@pytest.fixture
async def phone() -> AsyncIterator[UdpPhone]:
    opened = await UdpPhone.open()
    yield opened
    opened.close()


async def rows(db: Database) -> list[tuple[Any, ...]]:
    """The rows of live bindings (a removed one stays a while as a tombstone, expires_at 0)."""
    return await db.fetchall(
        "SELECT aor, contact, received, transport, node, expires_at FROM locations"
        " WHERE expires_at > 0 ORDER BY aor, contact"
    )


# -- registering ----------------------------------------------------------------------------


async def test_a_phone_registers_with_digest_and_gets_its_bindings_back(
    proxy: Proxy, phone: UdpPhone
) -> None:
    response = await phone.register(proxy.address, expires=600)
    assert (response.status, response.reason) == (200, "OK")
    contact = f"sip:alice@127.0.0.1:{phone.port}"
    assert response.headers.get_all("Contact") == [f"<{contact}>;expires=600"]
    assert response.headers.get("Server") == "sipline-test" and response.headers.get("Date")
    # Where the REGISTER really came from, and the node that took it, are kept.
    assert await rows(proxy.db) == [
        (
            "alice@example.com",
            contact,
            f"127.0.0.1:{phone.port}",
            "UDP",
            "node-a",
            proxy.clock.now + 600,
        )
    ]
    (binding,) = proxy.service.location.lookup("alice@example.com", proxy.clock.now)
    assert binding.source == Address("UDP", "127.0.0.1", phone.port)


async def test_a_wrong_password_gets_a_fresh_challenge_and_nothing_is_stored(
    proxy: Proxy, phone: UdpPhone
) -> None:
    response = await phone.register(proxy.address, password="guess")
    assert (response.status, response.reason) == (401, "Unauthorized")
    assert response.headers.get("WWW-Authenticate")
    assert await rows(proxy.db) == []
    assert len(proxy.node.layer) == 0  # answered statelessly: no transaction kept


async def test_challenges_and_refusals_leave_no_transaction_behind(
    proxy: Proxy, phone: UdpPhone
) -> None:
    """One answer per REGISTER received, none retransmitted, nothing kept for 32 s."""
    for n, aor in enumerate(("alice@example.com", "eve@evil.org")):
        domain = aor.partition("@")[2]
        contact = ("Contact", f"<sip:x@127.0.0.1:{phone.port}>")
        req = request("REGISTER", f"sip:{domain}", from_=aor, to=aor, call_id=f"c{n}",
                      via=phone.via, headers=(contact,))  # fmt: skip
        response = await phone.send(req, proxy.address)
        assert response.status in (401, 404) and len(proxy.node.layer) == 0
    response = await phone.register(proxy.address, "nobody@example.com")
    assert response.status == 401 and len(proxy.node.layer) == 0
    sent = proxy.node.metrics.sent["UDP"][1].value
    await asyncio.sleep(1.2)  # timer G would have retransmitted twice by now
    assert proxy.node.metrics.sent["UDP"][1].value == sent


async def test_a_subscriber_added_while_the_proxy_runs_registers_at_the_first_try(
    proxy: Proxy, phone: UdpPhone
) -> None:
    subscribers = Subscribers(proxy.db)
    for n in range(3):
        await subscribers.add(f"new{n}@example.com", "correct horse")
        response = await phone.register(proxy.address, f"new{n}@example.com")
        assert (response.status, response.reason) == (200, "OK")


async def test_unregistering_removes_the_binding_leaving_a_tombstone(proxy: Proxy, phone: UdpPhone) -> None:
    await phone.register(proxy.address, cseq=1)
    response = await phone.register(proxy.address, expires=0, cseq=3)
    assert response.status == 200 and response.headers.get_all("Contact") == []
    assert await rows(proxy.db) == []
    # What other proxies read to drop it: the row with expires_at 0 and a later version.
    (tomb,) = await proxy.db.fetchall("SELECT expires_at, version FROM locations")
    assert tomb[0] == 0 and tomb[1] == 2


async def test_registrations_are_committed_in_groups(proxy: Proxy) -> None:
    phones = [await UdpPhone.open() for _ in AORS]
    try:
        responses = await asyncio.gather(
            *(p.register(proxy.address, aor) for p, aor in zip(phones, AORS, strict=True))
        )
    finally:
        for p in phones:
            p.close()
    assert [r.status for r in responses] == [200] * len(AORS)
    writer = proxy.service.writer
    assert writer.rows == len(AORS)
    assert writer.commits <= 10, "one transaction per REGISTER, or close to it"
    assert len(await rows(proxy.db)) == len(AORS)


async def test_the_200_waits_for_the_commit(
    proxy: Proxy, phone: UdpPhone, database_url: str
) -> None:
    async with write_lock_held(database_url):
        registering = asyncio.ensure_future(phone.register(proxy.address))
        await asyncio.sleep(0.4)
        assert not registering.done(), "a 200 went out before its binding was stored"
        assert proxy.service.location.lookup("alice@example.com", proxy.clock.now) == []
    response = await registering
    assert response.status == 200
    assert len(await rows(proxy.db)) == 1


async def test_a_failing_database_gets_503_with_retry_after_and_keeps_nothing(
    proxy: Proxy, phone: UdpPhone
) -> None:
    await proxy.db.execute("ALTER TABLE locations RENAME TO locations_away")
    try:
        response = await phone.register(proxy.address)
    finally:
        await proxy.db.execute("ALTER TABLE locations_away RENAME TO locations")
    assert response.status == 503  # a phone tries its next server (RFC 3261 §21.5.4)
    assert (
        response.reason == "Service Unavailable (binding not stored: location database unavailable)"
    )
    assert response.headers.get("Retry-After") == "5"
    assert proxy.service.location.lookup("alice@example.com", proxy.clock.now) == []
    assert (await phone.register(proxy.address, cseq=3)).status == 200  # and it recovers


async def test_registers_for_one_aor_are_decided_one_after_another(
    provisioned: Database, database_url: str, clock: FakeClock
) -> None:
    """Both would pass max_contacts if the second were decided before the first was stored."""
    async with running(
        provisioned, database_url, clock, registrar={"max_contacts": 1, "commit_ms": 100}
    ) as proxy:
        first, second = await UdpPhone.open(), await UdpPhone.open()
        try:
            responses = await asyncio.gather(
                first.register(proxy.address), second.register(proxy.address)
            )
        finally:
            first.close()
            second.close()
    assert sorted((r.status, r.reason) for r in responses) == [
        (200, "OK"),
        (403, "Forbidden (too many contacts: 2, at most 1)"),
    ]


# -- the cache and expiry -----------------------------------------------------------------------


async def test_the_bindings_are_loaded_at_start(
    provisioned: Database, database_url: str, clock: FakeClock, phone: UdpPhone
) -> None:
    async with running(provisioned, database_url, clock) as before:
        await phone.register(before.address, expires=600)
    async with running(provisioned, database_url, clock) as after:
        (binding,) = after.service.location.lookup("alice@example.com", clock.now)
        assert binding.source == Address("UDP", "127.0.0.1", phone.port)
        assert binding.expires_in(clock.now) == 600


async def test_expired_bindings_are_swept_from_memory_and_the_database(
    proxy: Proxy, phone: UdpPhone
) -> None:
    await phone.register(proxy.address, expires=60)
    await phone.register(proxy.address, "bob@example.com", expires=3600)
    proxy.clock.now += 60
    location = proxy.service.location
    await until(lambda: len(location) == 1)
    await until_rows(proxy.db, lambda found: [row[0] for row in found] == ["bob@example.com"])


async def until_rows(db: Database, condition: Callable[[list[tuple[Any, ...]]], bool]) -> None:
    for _ in range(200):
        if condition(await rows(db)):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(await rows(db))


async def test_the_node_s_tick_sweeps_expired_bindings_from_memory_and_the_database(
    proxy: Proxy, phone: UdpPhone
) -> None:
    assert (await phone.register(proxy.address, expires=600)).status == 200
    assert len(await rows(proxy.db)) == 1
    proxy.clock.now += 601  # past its expiry; the sweep (every 0.05 s here) takes it away
    await until(lambda: len(proxy.service.location) == 0)
    for _ in range(100):
        if not await rows(proxy.db):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the expired row is still stored")
