"""The Subscribers repository on SQLite and MariaDB: provisioning, lookups, secrecy of HA1."""

from __future__ import annotations

import pytest

from sipline.sip.auth import MD5, SHA256, SHA512_256, compute_ha1
from sipline.storage import (
    Database,
    DuplicateSubscriber,
    InvalidAor,
    InvalidValue,
    Subscriber,
    Subscribers,
    UnknownSubscriber,
    parse_aor,
)

PASSWORD = "correct horse battery staple"


@pytest.fixture
def subscribers(migrated: Database) -> Subscribers:
    return Subscribers(migrated)


async def test_add_stores_the_ha1_of_each_algorithm_with_the_domain_as_realm(
    subscribers: Subscribers,
) -> None:
    added = await subscribers.add("alice@example.com", PASSWORD, account="ACME")
    assert (added.username, added.domain, added.account) == ("alice", "example.com", "ACME")
    assert added.aor == "alice@example.com"
    assert added.ha1_md5 == compute_ha1("alice", "example.com", PASSWORD, MD5)
    assert added.ha1_sha256 == compute_ha1("alice", "example.com", PASSWORD, SHA256)
    assert await subscribers.get("alice", "example.com") == added


async def test_ha1_by_algorithm(subscribers: Subscribers) -> None:
    added = await subscribers.add("alice@example.com", PASSWORD)
    assert added.ha1("md5") == added.ha1_md5
    assert added.ha1(SHA256) == added.ha1_sha256
    assert added.ha1(SHA512_256) is None


async def test_the_password_is_never_stored(migrated: Database) -> None:
    await Subscribers(migrated).add("alice@example.com", PASSWORD)
    for row in await migrated.fetchall("SELECT * FROM subscribers"):
        assert all(PASSWORD not in str(value) for value in row)


async def test_ha1_is_not_in_the_repr(subscribers: Subscribers) -> None:
    added = await subscribers.add("alice@example.com", PASSWORD)
    for text in (repr(added), str(added), repr(await subscribers.list())):
        assert added.ha1_md5 not in text
        assert added.ha1_sha256 not in text
        assert "alice" in text


async def test_sip_prefix_and_domain_case_are_normalised(subscribers: Subscribers) -> None:
    added = await subscribers.add("sip:Alice@Example.COM", PASSWORD)
    assert added.aor == "Alice@example.com"
    assert added.ha1_md5 == compute_ha1("Alice", "example.com", PASSWORD)
    assert await subscribers.get("Alice", "EXAMPLE.com") == added
    assert await subscribers.get("alice", "example.com") is None


async def test_a_duplicate_is_refused(subscribers: Subscribers) -> None:
    await subscribers.add("alice@example.com", PASSWORD)
    with pytest.raises(DuplicateSubscriber, match="alice@example.com already exists"):
        await subscribers.add("sip:alice@EXAMPLE.com", "another")
    assert len(await subscribers.list()) == 1


async def test_list_is_sorted_by_domain_then_user(subscribers: Subscribers) -> None:
    for aor in ("bob@b.example", "carol@a.example", "alice@b.example"):
        await subscribers.add(aor, PASSWORD)
    assert [s.aor for s in await subscribers.list()] == [
        "carol@a.example",
        "alice@b.example",
        "bob@b.example",
    ]


async def test_list_of_none(subscribers: Subscribers) -> None:
    assert await subscribers.list() == []


async def test_remove(subscribers: Subscribers) -> None:
    await subscribers.add("alice@example.com", PASSWORD)
    await subscribers.add("bob@example.com", PASSWORD)
    await subscribers.remove("sip:alice@Example.com")
    assert await subscribers.get("alice", "example.com") is None
    assert [s.aor for s in await subscribers.list()] == ["bob@example.com"]


async def test_removing_an_unknown_subscriber_is_an_error(subscribers: Subscribers) -> None:
    with pytest.raises(UnknownSubscriber, match="no subscriber alice@example.com"):
        await subscribers.remove("alice@example.com")


async def test_empty_password_and_overlong_account_are_refused(subscribers: Subscribers) -> None:
    with pytest.raises(InvalidValue, match="password"):
        await subscribers.add("alice@example.com", "")
    with pytest.raises(InvalidValue, match="account"):
        await subscribers.add("alice@example.com", PASSWORD, account="x" * 65)
    assert await subscribers.list() == []


async def test_a_non_ascii_username_round_trips(subscribers: Subscribers) -> None:
    added = await subscribers.add("%C3%A9lodie@example.com", PASSWORD)
    assert await subscribers.get("%C3%A9lodie", "example.com") == added


def test_a_subscriber_from_a_row() -> None:
    row = (7, "alice", "example.com", "a" * 32, "b" * 64, None, 1700000000, "1555 a@b.org")
    assert Subscriber.from_row(row) == Subscriber(
        7, "alice", "example.com", "a" * 32, "b" * 64, None, 1700000000.0,
        frozenset({"1555", "a@b.org"}),
    )  # fmt: skip


async def test_aliases_are_replaced_as_a_whole_and_validated(subscribers: Subscribers) -> None:
    added = await subscribers.add("alice@example.com", PASSWORD)
    assert added.aliases == frozenset()
    changed = await subscribers.set_aliases("alice@example.com", ["15550100", "asmith@b.org"])
    assert changed.aliases == frozenset({"15550100", "asmith@b.org"})
    assert await subscribers.get("alice", "example.com") == changed
    assert (await subscribers.set_aliases("alice@example.com", [])).aliases == frozenset()
    for bad in ("a b", "x@Upper.org", "", "@b.org"):
        with pytest.raises(InvalidValue):
            await subscribers.set_aliases("alice@example.com", [bad])
    with pytest.raises(UnknownSubscriber):
        await subscribers.set_aliases("nobody@example.com", ["1"])


@pytest.mark.parametrize(
    ("aor", "expected"),
    [
        ("alice@example.com", ("alice", "example.com")),
        ("sip:alice@example.com", ("alice", "example.com")),
        ("SIP:alice@Example.Com", ("alice", "example.com")),
        (" +15551234567@sip.example.net ", ("+15551234567", "sip.example.net")),
        ("alice.smith-2@192.0.2.1", ("alice.smith-2", "192.0.2.1")),
        ("alice@localhost", ("alice", "localhost")),
    ],
)
def test_parse_aor(aor: str, expected: tuple[str, str]) -> None:
    assert parse_aor(aor) == expected


@pytest.mark.parametrize(
    "aor",
    [
        "",
        "alice",
        "example.com",
        "@example.com",
        "alice@",
        "alice smith@example.com",
        "alice@exa mple.com",
        "alice@example.com:5060",
        "alice@example.com;transport=tcp",
        "sips:alice@example.com",
        "tel:+15551234567",
        "alice@-example.com",
        "alice@999.1.1.1",
        "alice@example..com",
        "a" * 129 + "@example.com",
        "alice@" + "a" * 254,
    ],
)
def test_bad_aors_are_refused(aor: str) -> None:
    with pytest.raises(InvalidAor, match="bad AOR"):
        parse_aor(aor)
