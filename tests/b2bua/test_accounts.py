"""Accounts (sipline.storage.accounts, b2bua.accounts) on both databases: the accounts and audit tables, and which
account a call counts against (AccountDirectory)."""

from __future__ import annotations

import asyncio

import pytest

from b2bua.accounts import AccountDirectory, asserted_aor
from sipline.sip.message import Request, parse_message
from sipline.storage import Database, InvalidValue, Subscribers
from sipline.storage.accounts import KEEP, Accounts, AuditRow, UnknownAccount


def invite(*headers: str, from_uri: str = "sip:alice@example.com") -> Request:
    lines = [
        "INVITE sip:+441234567@b2bua.example.com SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1",
        f"From: <{from_uri}>;tag=a1",
        "To: <sip:+441234567@example.com>",
        "Call-ID: c1",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        *headers,
        "Content-Length: 0",
    ]
    request = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(request, Request)
    return request


async def test_set_creates_then_updates_keeping_what_is_not_given(migrated: Database) -> None:
    accounts = Accounts(migrated)
    created = await accounts.set("ACME", 10, now=1000.0)
    assert (created.licence, created.grace_hours, created.created_at) == (10, None, 1000.0)
    assert (await accounts.set("ACME", grace_hours=0)).grace_hours == 0
    updated = await accounts.set("ACME", 12)
    assert (updated.licence, updated.grace_hours) == (12, 0)  # grace hours kept
    assert (await accounts.set("ACME", grace_hours=None)).grace_hours is None  # the config's
    assert [a.name for a in await accounts.list()] == ["ACME"]


async def test_set_refuses_what_cannot_be_a_licence(migrated: Database) -> None:
    accounts = Accounts(migrated)
    with pytest.raises(InvalidValue, match="give it a --licence"):
        await accounts.set("NEW")
    with pytest.raises(InvalidValue):
        await accounts.set("NEW", -1)
    with pytest.raises(InvalidValue):
        await accounts.set("x" * 65, 1)
    with pytest.raises(InvalidValue):
        await accounts.set("NEW", 1, grace_hours=-5)
    assert await accounts.list() == []


async def test_the_first_grace_start_recorded_wins(migrated: Database) -> None:
    accounts = Accounts(migrated)
    await accounts.set("ACME", 1)
    assert await accounts.start_grace("ACME", 500.0) == 500.0
    assert await accounts.start_grace("ACME", 600.0) == 500.0  # another node, later
    assert await accounts.start_grace("NOBODY", 600.0) is None
    assert (await accounts.set("ACME", 1, keep_grace=True)).grace_started_at == 500.0
    assert (await accounts.set("ACME", 1, grace_hours=KEEP)).grace_started_at is None


async def test_concurrent_sets_of_a_new_account_make_one_row(migrated: Database) -> None:
    accounts = Accounts(migrated)
    done = await asyncio.gather(*(accounts.set("ACME", n) for n in range(1, 6)))
    assert {a.name for a in done} == {"ACME"}
    assert len(await accounts.list()) == 1


async def test_audit_rows_come_back_newest_first_per_account(migrated: Database) -> None:
    accounts = Accounts(migrated)
    rows = [
        AuditRow("ACME", 1.0, 3, 2, True, "c1", "n1"),
        AuditRow("BETA", 2.0, 2, 1, True, None, "n1"),
        AuditRow("ACME", 3.0, 4, 2, False, "c3", "n2"),
    ]
    assert await accounts.add_audit(rows) == 3
    assert await accounts.audit("ACME") == [rows[2], rows[0]]
    assert await accounts.audit(limit=1) == [rows[2]]


async def test_remove(migrated: Database) -> None:
    accounts = Accounts(migrated)
    await accounts.set("ACME", 1)
    await accounts.remove("ACME")
    with pytest.raises(UnknownAccount):
        await accounts.remove("ACME")


# -- which account a call counts against --------------------------------------------------------
@pytest.fixture
async def directory(migrated: Database) -> AccountDirectory:
    subscribers = Subscribers(migrated)
    await subscribers.add("alice@example.com", "pw", account="ACME")
    await subscribers.add("bob@Example.com", "pw", account="BETA")
    await subscribers.add("carol@example.com", "pw")
    found = AccountDirectory(migrated, refresh=0)
    await found.load()
    return found


async def test_the_asserted_identity_names_the_account(directory: AccountDirectory) -> None:
    # The proxy asserts who authenticated (RFC 3325); From is whatever the phone wrote.
    request = invite("P-Asserted-Identity: <sip:bob@example.com>", from_uri="sip:alice@example.com")
    assert asserted_aor(request) == "bob@example.com"
    assert directory.account_of("bob@example.com") == "BETA"
    assert directory.account_of("bob@EXAMPLE.com") == "BETA"


def test_without_an_asserted_identity_nobody_is_named_whatever_the_from_says() -> None:
    assert asserted_aor(invite()) is None
    assert asserted_aor(invite("P-Asserted-Identity: <garbage")) is None
    assert asserted_aor(invite("P-Asserted-Identity: <tel:+441234>")) is None


def test_a_tel_identity_is_passed_over_for_the_sip_one() -> None:
    request = invite('P-Asserted-Identity: <tel:+441234>, "Bob" <sip:bob@Example.com>')
    assert asserted_aor(request) == "bob@example.com"


async def test_no_account_for_strangers_or_subscribers_without_one(
    directory: AccountDirectory,
) -> None:
    assert directory.account_of("carol@example.com") is None
    assert directory.account_of("mallory@example.com") is None


async def test_the_directory_reloads_on_its_own(migrated: Database) -> None:
    found = AccountDirectory(migrated, refresh=0.05)
    await found.load()
    try:
        assert found.account_of("alice@example.com") is None
        await Subscribers(migrated).add("alice@example.com", "pw", account="ACME")
        for _ in range(100):
            if found.account_of("alice@example.com") == "ACME":
                break
            await asyncio.sleep(0.02)
        assert found.account_of("alice@example.com") == "ACME"
    finally:
        found.close()
