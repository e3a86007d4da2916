"""A member of the cluster over a real database (SQLite and MariaDB) and a real Redis:
its row, its status and actions on its admin endpoint, config changes pushed to it
(by its admin endpoint, by Redis pub/sub, caught up after a gap), its heartbeats."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from sipline.cluster import changes, client, heartbeat, registry
from sipline.cluster.commands import gather
from sipline.cluster.key import admin_key
from sipline.cluster.member import Drain, Figures, Member
from sipline.cluster.state import State
from sipline.config import Settings
from sipline.storage import Database, StorageError
from sipline.storage.live import open_redis

NAME = "proxy@127.0.0.1:5060"


def make_settings(tmp_path: Path, redis_url: str | None = None, **admin: Any) -> Settings:
    return Settings(
        node={"name": NAME, "data_dir": tmp_path},
        redis={"url": redis_url},
        admin={"config_poll": 60.0, **admin},
    )


@pytest.fixture
def opened(migrated: Database, tmp_path: Path) -> Callable[..., Any]:
    """Opens a member (each test closes it)."""

    async def open_member(redis_url: str | None = None, **admin: Any) -> Member:
        settings = make_settings(tmp_path, redis_url, **admin)
        member = Member(settings, "proxy", "127.0.0.1:5060", migrated)
        await member.open()
        return member

    return open_member


async def status(member: Member) -> dict[str, Any]:
    answer = await client.get(member.admin.address, "/status")
    assert answer is not None and answer.ok
    return answer.body


async def test_a_member_records_itself_and_shows_its_state(
    opened: Callable[..., Any], migrated: Database
) -> None:
    member = await opened()
    try:
        first = await status(member)
        assert (first["state"], first["detail"]) == ("syncing", "syncing start-up")
        (entry,) = await registry.entries(migrated)
        assert (entry.name, entry.role, entry.admin, entry.stopped) == (
            NAME, "proxy", member.admin.address, False,
        )  # fmt: skip
        member.figures = lambda: Figures(registrations=3, calls_total=0)
        member.running()
        now = await status(member)
        assert (now["state"], now["registrations"], now["config_version"]) == ("running", 3, 0)
    finally:
        await member.close()
    (entry,) = await registry.entries(migrated)
    assert entry.stopped
    [shown] = await gather(member.settings, migrated)
    assert (shown.state, shown.detail, shown.registrations) == ("stopped by admin", "exited", None)


async def test_drain_and_resume_by_admin(opened: Callable[..., Any]) -> None:
    member = await opened(secret="admin secret")
    holding = [True]
    drained: list[int] = []
    member.figures = lambda: Figures(holding=holding[0])
    member.drains.append(Drain(drained.append, lambda: drained.append(-1)))
    member.running()
    key = admin_key(member.settings)
    assert key is not None
    try:
        answer = await client.post(member.admin.address, "/drain", {"node": NAME}, key)
        assert answer is not None and answer.body["state"] == "draining"
        assert drained == [member.settings.node.drain_retry_after]
        holding[0] = False  # what it held has ended
        assert (await status(member))["state"] == "stopped by admin"
        elsewhere = await client.post(member.admin.address, "/drain", {"node": "other"}, key)
        assert elsewhere is not None and elsewhere.status == 403  # a token for another node
        answer = await client.post(member.admin.address, "/resume", {"node": NAME}, key)
        assert answer is not None and answer.body["state"] == "running"
        assert drained[-1] == -1
    finally:
        await member.close()


async def test_a_change_pushed_without_redis_is_applied_at_once_and_reported(
    opened: Callable[..., Any], migrated: Database
) -> None:
    member = await opened()
    reloaded: list[tuple[str, tuple[str, ...]]] = []

    async def subscribers(keys: tuple[str, ...]) -> None:
        reloaded.append(("subscribers", keys))

    async def accounts(keys: tuple[str, ...]) -> None:
        reloaded.append(("accounts", keys))

    assert member.feed is not None
    member.feed.on("subscribers", subscribers)
    member.feed.on("accounts", accounts)
    member.running()
    try:
        line = await changes.announce(member.settings, migrated, "subscribers", ("a@example.com",))
        assert line == "config version 1 (subscribers) applied by 1 of 1 node(s)"
        assert reloaded == [("subscribers", ("a@example.com",))]
        assert (await status(member))["config_version"] == 1
        # A version it did not hear of (announced while it was away): everything again.
        await changes.bump(migrated)
        await changes.announce(member.settings, migrated, "accounts", ("ACME",))
        assert reloaded[1:] == [("subscribers", ()), ("accounts", ())]
        assert member.feed.applied == 3
    finally:
        await member.close()


async def test_a_change_a_node_cannot_apply_is_its_last_error_and_queued(
    opened: Callable[..., Any], migrated: Database
) -> None:
    member = await opened()

    async def broken(keys: tuple[str, ...]) -> None:
        raise RuntimeError("table locked")

    assert member.feed is not None
    member.feed.on("acr", broken)
    member.running()
    try:
        line = await changes.announce(member.settings, migrated, "acr", ("cheap",))
        assert "applied by 0 of 1 node(s)" in line and "table locked" in line
        report = await status(member)
        assert report["config_version"] == 0 and "table locked" in report["last_error"]
        rows = await migrated.fetchall("SELECT source, reason, payload FROM error_queue")
        [(source, reason, payload)] = rows
        assert source == "config" and "table locked" in reason
        assert orjson.loads(payload) == {
            "node": NAME, "version": 1, "topics": ["acr"], "keys": ["cheap"]
        }  # fmt: skip
    finally:
        await member.close()


async def test_a_version_the_database_does_not_have_is_not_taken(
    opened: Callable[..., Any], migrated: Database
) -> None:
    member = await opened()
    member.running()
    try:
        error = await member.feed.apply(changes.Change(99, "acr"))  # type: ignore[union-attr]
        assert "not in the database" in error and member.feed.applied == 0  # type: ignore[union-attr]
    finally:
        await member.close()


async def test_with_redis_changes_come_by_pub_sub_and_status_by_heartbeat(
    opened: Callable[..., Any], migrated: Database, redis_url: str
) -> None:
    member = await opened(redis_url)
    seen = asyncio.Event()

    async def acr(keys: tuple[str, ...]) -> None:
        seen.set()

    assert member.feed is not None
    member.feed.on("acr", acr)
    member.running()
    try:
        await asyncio.sleep(0.3)  # subscribed
        started = time.monotonic()
        line = await changes.announce(member.settings, migrated, "acr", ("cheap",))
        assert line == "config version 1 (acr) published to 1 node(s)"
        await asyncio.wait_for(seen.wait(), 2)
        assert time.monotonic() - started < 2
        await asyncio.sleep(1.2)  # a heartbeat after applying
        [report] = await gather(member.settings, migrated)
        assert (report.name, report.state, report.config_version) == (NAME, "running", 1)
    finally:
        await member.close()
    [report] = await gather(member.settings, migrated)
    assert (report.state, report.detail) == (State.STOPPED_BY_ADMIN, heartbeat.STOPPED)


async def test_a_node_that_stops_beating_is_failed_after_three_seconds(redis_url: str) -> None:
    redis = open_redis(redis_url)
    report = Member(make_settings(Path("/nonexistent")), "acr", "127.0.0.1:5080", None).report()
    beat = heartbeat.Heartbeat(redis, report.name, lambda: report)
    try:
        await beat.beat()
        [alive] = await heartbeat.read(redis)
        assert alive.state == "syncing"
        await asyncio.sleep(heartbeat.SILENCE + 0.3)  # no beat since: a SIGKILL
        [dead] = await heartbeat.read(redis)
        assert (dead.state, dead.calls, dead.version) == ("stopped by failure", None, "")
    finally:
        await redis.aclose()


async def test_a_name_another_running_node_has_is_refused(
    opened: Callable[..., Any], migrated: Database, tmp_path: Path
) -> None:
    first = await opened()
    try:
        twin = Member(make_settings(tmp_path), "proxy", "127.0.0.1:5062", migrated)
        with pytest.raises(StorageError, match=f"node name {NAME} is taken by the node at"):
            await twin.open()
        (entry,) = await registry.entries(migrated)
        assert entry.address == "127.0.0.1:5060"  # the first one's row stands
    finally:
        await first.close()
    again = Member(make_settings(tmp_path), "proxy", "127.0.0.1:5062", migrated)
    await again.open()  # the name is free once its node stopped
    await again.close()
