"""Account licences at the B2BUA (b2bua.licences) on both databases, with counters
in process and in a real Redis shared by two nodes (each writing its own count, so a
Redis that restarts empty has them again at their next sync); time is passed in (a
fake clock)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from b2bua.licences import (
    _ADMIT,
    NODE_TTL,
    Admission,
    InProcess,
    Licences,
    SharedCalls,
    open_redis,
)
from sipline.config import Settings
from sipline.grace import EXCEEDED, HOUR
from sipline.storage import Database, StorageError
from sipline.storage.accounts import Accounts

T0 = 1_700_000_000.0


def settings(redis_url: str | None = None, **b2bua: object) -> Settings:
    return Settings(redis={"url": redis_url}, b2bua=b2bua, node={"name": "b2bua-test"})


@pytest.fixture
async def licences(migrated: Database) -> AsyncIterator[Licences]:
    await Accounts(migrated).set("ACME", 2)
    opened = await Licences.open(settings(grace_hours=48), migrated)
    yield opened
    await opened.close()


async def over(licences: Licences, account: str, calls: int, now: float) -> list[Admission]:
    return [await licences.admit(account, f"{account}-{now}-{n}", now) for n in range(calls)]


async def test_a_call_without_an_account_or_licence_is_allowed_and_not_counted(
    licences: Licences,
) -> None:
    assert not licences.licensed(None) and not licences.licensed("NOBODY")
    assert licences.licensed("ACME")
    assert await licences.admit(None, "c1", T0) == Admission(True)
    assert await licences.admit("NOBODY", "c2", T0) == Admission(True)
    await licences.release("NOBODY", "c2")
    assert await licences.counts(T0) == {"ACME": 0}


async def test_calls_within_the_licence_are_allowed_and_released(licences: Licences) -> None:
    assert await over(licences, "ACME", 2, T0) == [Admission(True)] * 2
    assert await licences.counts(T0) == {"ACME": 2}
    await licences.release("ACME", f"ACME-{T0}-0")
    await licences.release("ACME", f"ACME-{T0}-0")  # idempotent
    assert await licences.counts(T0) == {"ACME": 1}


async def test_over_the_licence_grace_then_403_and_every_over_use_audited(
    licences: Licences, migrated: Database
) -> None:
    admitted = await over(licences, "ACME", 3, T0)
    assert admitted[2] == Admission(True, over=True)
    # The start is in the database, for other nodes and the next start.
    account = await Accounts(migrated).get("ACME")
    assert account is not None and account.grace_started_at == T0

    # Calls of T0 are long over (forgotten after the longest call): three more, one over.
    assert (await over(licences, "ACME", 3, T0 + 47 * HOUR))[2] == Admission(True, over=True)
    late = T0 + 48 * HOUR
    refused = await licences.admit("ACME", "late", late)
    assert refused == Admission(False, EXCEEDED, over=True)
    await licences.release("ACME", "late")  # a refused call was never counted
    assert await licences.counts(late) == {"ACME": 3}

    await licences.flush()
    audit = await Accounts(migrated).audit("ACME")
    assert [(r.at, r.count, r.licence, r.allowed) for r in audit] == [
        (late, 4, 2, False),
        (T0 + 47 * HOUR, 3, 2, True),
        (T0, 3, 2, True),
    ]
    assert {(r.node, r.call_id) for r in audit} >= {("b2bua-test", "late")}


async def test_the_account_s_own_grace_hours_win_over_the_config(
    licences: Licences, migrated: Database
) -> None:
    await Accounts(migrated).set("SHORT", 1, grace_hours=1)
    await Accounts(migrated).set("STRICT", 1, grace_hours=0)
    await licences.refresh()
    await over(licences, "SHORT", 2, T0)
    assert not (await licences.admit("SHORT", "late", T0 + HOUR)).allowed
    assert [a.allowed for a in await over(licences, "STRICT", 2, T0)] == [True, False]


async def test_a_grace_period_survives_a_restart(migrated: Database) -> None:
    await Accounts(migrated).set("ACME", 1)
    first = await Licences.open(settings(grace_hours=2), migrated)
    await over(first, "ACME", 2, T0)
    await first.close()

    second = await Licences.open(settings(grace_hours=2), migrated)
    try:
        assert second.licences["ACME"].grace_started_at == T0
        await over(second, "ACME", 1, T0 + 2 * HOUR)  # within: the first node's calls are gone
        assert not (await second.admit("ACME", "late", T0 + 2 * HOUR)).allowed
    finally:
        await second.close()


async def test_account_set_starts_a_fresh_grace_period_unless_told_to_keep_it(
    licences: Licences, migrated: Database
) -> None:
    await over(licences, "ACME", 3, T0)
    await Accounts(migrated).set("ACME", grace_hours=72, keep_grace=True)
    await licences.refresh()
    assert licences.licences["ACME"].grace_ends_at == T0 + 72 * HOUR
    await Accounts(migrated).set("ACME", 3)
    await licences.refresh()
    assert licences.licences["ACME"].grace_started_at is None


async def test_a_database_that_fails_keeps_the_audit_for_the_next_flush(
    licences: Licences,
) -> None:
    await over(licences, "ACME", 3, T0)
    real = licences.accounts.add_audit

    async def refuse(rows: object) -> int:
        from sipline.storage import StorageError

        raise StorageError("INSERT audit failed: gone")

    licences.accounts.add_audit = refuse  # type: ignore[method-assign]
    await licences.flush()
    assert len(licences._audit) == 1
    licences.accounts.add_audit = real  # type: ignore[method-assign]
    await licences.flush()
    assert len(await licences.accounts.audit()) == 1


async def test_with_no_redis_the_counters_are_in_process(migrated: Database) -> None:
    opened = await Licences.open(settings(), migrated)
    try:
        assert isinstance(opened.counter, InProcess)
    finally:
        await opened.close()


# -- Redis: counters shared by several B2BUA nodes ----------------------------------------------
@pytest.fixture
async def two_nodes(migrated: Database, redis_url: str) -> AsyncIterator[tuple[Licences, Licences]]:
    await Accounts(migrated).set("ACME", 3, grace_hours=0)
    nodes = [await Licences.open(settings(redis_url, grace_hours=48), migrated) for _ in range(2)]
    yield nodes[0], nodes[1]
    for node in nodes:
        await node.close()


async def test_two_nodes_on_one_redis_share_the_count(two_nodes: tuple[Licences, Licences]) -> None:
    one, two = two_nodes
    assert isinstance(one.counter, SharedCalls)
    assert (await one.admit("ACME", "a", T0)).allowed
    assert (await two.admit("ACME", "b", T0)).allowed
    assert (await one.admit("ACME", "c", T0)).allowed
    assert not (await two.admit("ACME", "d", T0)).allowed
    assert await two.counts(T0) == {"ACME": 3}
    await one.release("ACME", "a")
    assert (await two.admit("ACME", "d", T0)).allowed


async def test_nodes_racing_for_the_last_licences_never_take_more(
    two_nodes: tuple[Licences, Licences],
) -> None:
    one, two = two_nodes
    tries = [
        node.admit("ACME", f"call-{n}-{i}", T0)
        for n in range(20)
        for i, node in enumerate((one, two))
    ]
    admitted = await asyncio.gather(*tries)
    assert sum(a.allowed for a in admitted) == 3
    assert await one.counts(T0) == {"ACME": 3}


async def test_the_first_node_over_starts_the_grace_the_other_adopts_it(
    migrated: Database, redis_url: str
) -> None:
    await Accounts(migrated).set("ACME", 1, grace_hours=1)
    one, two = [await Licences.open(settings(redis_url), migrated) for _ in range(2)]
    try:
        await one.admit("ACME", "a", T0)
        await one.admit("ACME", "b", T0 + 5)  # over: grace from T0 + 5
        await two.admit("ACME", "c", T0 + 9)  # over too, on a node that had not heard
        assert two.licences["ACME"].grace_started_at == T0 + 5
        assert not (await two.admit("ACME", "d", T0 + 5 + HOUR)).allowed
    finally:
        await one.close()
        await two.close()


async def died(node: Licences) -> None:
    """As SIGKILL would leave it: its count stays in Redis, nobody writes it again."""
    for task in node._tasks:
        task.cancel()
    await asyncio.gather(*node._tasks, return_exceptions=True)
    assert isinstance(node.counter, SharedCalls)
    await node.counter.client.aclose()


async def test_calls_of_a_node_that_died_are_forgotten_once_its_count_expires(
    migrated: Database, redis_url: str
) -> None:
    await Accounts(migrated).set("ACME", 1, grace_hours=0)
    config = settings(redis_url)
    dead = await Licences.open(config, migrated)
    await dead.admit("ACME", "stuck", T0)
    await died(dead)
    alive = await Licences.open(config, migrated)
    try:
        assert not (await alive.admit("ACME", "x", T0 + NODE_TTL - 1)).allowed
        assert (await alive.admit("ACME", "x", T0 + NODE_TTL + 1)).allowed
    finally:
        await alive.close()


async def test_a_redis_that_restarted_empty_counts_every_node_s_calls_again_after_a_sync(
    two_nodes: tuple[Licences, Licences], redis_url: str
) -> None:
    import redis.asyncio

    one, two = two_nodes
    now = time.time()
    assert (await one.admit("ACME", "a", now)).allowed
    assert (await two.admit("ACME", "b", now)).allowed
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        await client.flushall()  # what a restart without persistence leaves
    assert await one.counts(now) == {"ACME": 0}
    await one.counter.sync()
    await two.counter.sync()
    assert await one.counts(now) == {"ACME": 2}
    assert (await one.admit("ACME", "c", now)).allowed
    assert not (await two.admit("ACME", "d", now)).allowed  # licence 3: full again


async def test_a_redis_that_cannot_be_reached_fails_at_start_naming_the_key(
    migrated: Database,
) -> None:
    from sipline.net.ports import free_port

    with pytest.raises(StorageError, match="redis.url redis://127.0.0.1"):
        await Licences.open(settings(f"redis://127.0.0.1:{free_port()}/0"), migrated)


async def test_while_redis_is_away_calls_are_judged_by_what_this_node_saw_last(
    two_nodes: tuple[Licences, Licences],
) -> None:
    from sipline.net.ports import free_port

    one, two = two_nodes
    assert (await one.admit("ACME", "a", T0)).allowed
    assert (await two.admit("ACME", "b", T0)).allowed  # two has seen one's call
    assert isinstance(two.counter, SharedCalls)
    good = two.counter.client
    two.counter.client = open_redis(f"redis://127.0.0.1:{free_port()}/0")  # nobody there
    two.counter._admit = two.counter.client.register_script("return 0")
    try:
        assert (await two.admit("ACME", "c", T0)).allowed  # 3 of 3 as far as it knows
        assert not (await two.admit("ACME", "d", T0)).allowed
        assert two.counter.failures == 2 and not two.counter.ok
    finally:
        await two.counter.client.aclose()
        two.counter.client = good
        two.counter._admit = good.register_script(_ADMIT)
    await two.counter.sync()  # Redis is back: two's calls are written again
    assert two.counter.ok and await one.counts(T0) == {"ACME": 3}


async def test_the_first_node_back_after_a_redis_restart_keeps_counting_the_others_calls(
    two_nodes: tuple[Licences, Licences], redis_url: str
) -> None:
    import redis.asyncio

    one, two = two_nodes
    now = time.time()
    assert (await two.admit("ACME", "x", now)).allowed  # an account both nodes serve
    await two.release("ACME", "x")
    assert (await one.admit("ACME", "a", now)).allowed
    assert (await one.admit("ACME", "b", now)).allowed
    await one.counter.sync()
    await two.counter.sync()  # two has read one's two calls
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        await client.flushall()  # Redis restarted empty; one has not written again yet
    await two.counter.sync()
    assert (await two.admit("ACME", "c", now)).allowed
    assert not (await two.admit("ACME", "d", now)).allowed  # licence 3: one's calls count
