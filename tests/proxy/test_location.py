"""The location service: bindings in memory, as rows (SQLite and MariaDB), and their group commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from proxy.location import Binding, Location
from proxy.location_store import ORPHAN_GRACE, LocationStore, Removal
from proxy.writer import BindingWriter, Change, coalesce
from sipline.sip.address import Address
from sipline.storage import Database, StorageError
from tests.proxy.support import until, write_lock_held

T0 = 1_700_000_000.0
ALICE = "alice@example.com"


def binding(contact: str = "sip:alice@192.0.2.1:5060", **fields: object) -> Binding:
    values: dict[str, object] = {
        "aor": ALICE,
        "contact": contact,
        "expires_at": T0 + 3600,
        "call_id": "c1@phone",
        "cseq": 1,
        "source": Address("UDP", "198.51.100.7", 40312),
        "node": "node-a",
        "updated_at": T0,
    }
    values.update(fields)
    return Binding(**values)  # type: ignore[arg-type]


class Forgotten(list[Binding]):
    def forget(self, b: Binding) -> None:
        self.append(b)


# -- in memory ---------------------------------------------------------------------


def test_lookup_gives_live_bindings_highest_q_first_then_most_recent() -> None:
    location = Location()
    low = binding("sip:a@192.0.2.1", q=0.5)
    old = binding("sip:b@192.0.2.2", updated_at=T0 - 10)
    new = binding("sip:c@192.0.2.3", updated_at=T0)
    gone = binding("sip:d@192.0.2.4", expires_at=T0 - 1)
    location.apply([low, old, new, gone])
    assert location.lookup(ALICE, T0) == [new, old, low]
    assert location.lookup("bob@example.com", T0) == []


def test_an_expired_binding_is_not_found_even_before_the_sweep() -> None:
    location = Location()
    location.apply([binding(expires_at=T0 + 60)])
    assert len(location.lookup(ALICE, T0 + 59.9)) == 1
    assert location.lookup(ALICE, T0 + 60) == []
    assert len(location) == 1


def test_expire_drops_due_bindings_but_not_one_refreshed_since() -> None:
    location = Location()
    stays, goes = (
        binding("sip:a@192.0.2.1", expires_at=T0 + 60),
        binding("sip:b@192.0.2.2", expires_at=T0 + 60),
    )
    location.apply([stays, goes])
    refreshed = binding("sip:a@192.0.2.1", expires_at=T0 + 3660)
    location.apply([refreshed])
    assert location.expire(T0 + 61) == [goes]
    assert location.lookup(ALICE, T0 + 61) == [refreshed]
    assert location.expire(T0 + 3660) == [refreshed]
    assert len(location) == 0


def test_apply_removes_then_adds() -> None:
    location = Location()
    first = binding("sip:a@192.0.2.1")
    location.apply([first])
    replacement = binding("sip:a@192.0.2.9")
    location.apply([replacement], [first.key])
    assert location.lookup(ALICE, T0) == [replacement]
    assert location.get(ALICE, first.contact) is None


def test_remove_takes_the_binding_given_and_tells_the_database() -> None:
    forgotten = Forgotten()
    location = Location(forgotten)
    stale = binding()
    location.apply([stale])
    location.apply([binding(expires_at=T0 + 7200)])  # refreshed after the pinger picked it
    location.remove(stale)
    assert len(location.lookup(ALICE, T0)) == 1 and forgotten == []
    current = location.lookup(ALICE, T0)[0]
    location.remove(current)
    assert location.lookup(ALICE, T0) == [] and forgotten == [current]


# -- coalescing a batch --------------------------------------------------------------


def _change(upserts: list[Binding] = [], removals: list[Removal] = []) -> Change:  # noqa: B006
    return Change(upserts, removals, lambda error: None)


def test_in_a_batch_the_last_operation_on_a_key_wins() -> None:
    first, second = binding(cseq=1), binding(cseq=2)
    assert coalesce([_change([first]), _change([second])]) == ([second], [])
    assert coalesce([_change([first]), _change([], [Removal(*first.key)])]) == (
        [],
        [Removal(*first.key)],
    )
    assert coalesce([_change([], [Removal(*first.key)]), _change([second])]) == ([second], [])


def test_a_conditional_removal_does_not_undo_a_refresh_in_the_same_batch() -> None:
    pinged = binding(expires_at=T0 + 60)
    refreshed = binding(expires_at=T0 + 3660)
    nat_failed = Removal(ALICE, pinged.contact, pinged.expires_at)
    assert coalesce([_change([refreshed]), _change([], [nat_failed])]) == ([refreshed], [])
    # ... but applies to the very binding it meant, written earlier in the batch.
    assert coalesce([_change([pinged]), _change([], [nat_failed])]) == ([], [Removal(*pinged.key)])
    assert coalesce([_change([], [nat_failed])]) == ([], [nat_failed])


# -- as rows, on SQLite and MariaDB ------------------------------------------------------


@pytest.fixture
def store(migrated: Database) -> LocationStore:
    return LocationStore(migrated, "node-a")


async def test_bindings_are_stored_and_loaded_back(store: LocationStore) -> None:
    full = binding(
        "sip:alice@10.0.0.2:5062;transport=tcp",
        q=0.7,
        source=Address("TCP", "2001:db8::7", 40312, 17),
        path=("<sip:edge1.example.net;lr>", '"edge, two" <sip:edge2.example.net;lr>'),
        instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
        reg_id=1,
        user_agent="Yealink T46U",
        nat=True,
    )
    plain = binding("sip:alice@192.0.2.1", source=None)
    await store.write([full, plain], [])
    loaded = sorted(await store.load(T0), key=lambda b: b.contact)
    # The TCP connection id belongs to the process that stored it: not restored.
    assert loaded == [binding("sip:alice@10.0.0.2:5062;transport=tcp", q=0.7,
                              source=Address("TCP", "2001:db8::7", 40312), path=full.path,
                              instance=full.instance, reg_id=1, user_agent="Yealink T46U",
                              nat=True), plain]  # fmt: skip


async def test_load_skips_expired_rows(store: LocationStore) -> None:
    await store.write([binding("sip:a@192.0.2.1", expires_at=T0 - 1), binding()], [])
    assert [b.contact for b in await store.load(T0)] == [binding().contact]


async def test_a_refresh_overwrites_the_row(store: LocationStore) -> None:
    await store.write([binding()], [])
    refreshed = binding(expires_at=T0 + 7200, cseq=2, source=Address("UDP", "203.0.113.5", 5060))
    await store.write([refreshed], [])
    assert await store.load(T0) == [refreshed]


async def test_removals_plain_and_conditional(store: LocationStore) -> None:
    a, b, c = binding("sip:a@192.0.2.1"), binding("sip:b@192.0.2.2"), binding("sip:c@192.0.2.3")
    await store.write([a, b, c], [])
    await store.write(
        [],
        [Removal(*a.key), Removal(*b.key, b.expires_at), Removal(*c.key, c.expires_at - 1)],
    )
    assert await store.load(T0) == [c]


async def test_the_sweep_deletes_this_nodes_expired_rows(store: LocationStore) -> None:
    mine = binding("sip:a@192.0.2.1", expires_at=T0 + 10)
    live = binding("sip:b@192.0.2.2", expires_at=T0 + 2 * ORPHAN_GRACE)
    theirs = binding("sip:c@192.0.2.3", expires_at=T0 + 10, node="node-b")
    await store.write([mine, live, theirs], [])
    assert await store.sweep(T0 + 10) == 1
    assert sorted(b.contact for b in await store.load(0)) == [live.contact, theirs.contact]
    # A node that is gone for good: its rows go once they are long expired.
    assert await store.sweep(T0 + 10 + ORPHAN_GRACE) == 1
    assert [b.contact for b in await store.load(0)] == [live.contact]


async def test_a_sweep_never_deletes_a_binding_refreshed_after_it_was_seen_expired(
    migrated: Database,
) -> None:
    """The write-back race of Kamailio and OpenSIPS: expiry seen, refresh lands, delete runs."""
    store = LocationStore(migrated, "node-a")
    location = Location()
    expiring = binding(expires_at=T0 + 60)
    await store.write([expiring], [])
    location.apply([expiring])

    assert location.expire(T0 + 61) == [expiring]  # the sweep picks it ...
    refreshed = binding(expires_at=T0 + 3661, cseq=2)
    await store.write([refreshed], [])  # ... the phone's refresh commits ...
    location.apply([refreshed])
    await store.sweep(T0 + 61)  # ... then the sweep's DELETE runs

    assert await store.load(T0 + 61) == [refreshed]
    assert location.lookup(ALICE, T0 + 61) == [refreshed]


async def test_a_sweep_leaves_a_binding_another_node_refreshed(migrated: Database) -> None:
    a, b = LocationStore(migrated, "node-a"), LocationStore(migrated, "node-b")
    await a.write([binding(expires_at=T0 + 60)], [])
    moved = binding(expires_at=T0 + 3661, node="node-b", cseq=2)
    await b.write([moved], [])  # the phone now registers through node-b
    await a.sweep(T0 + 61)
    assert await a.load(T0) == [moved]


# -- group commit ------------------------------------------------------------------------


class Outcomes(list[StorageError | None]):
    def __call__(self, error: StorageError | None) -> None:
        self.append(error)


@asynccontextmanager
async def running_writer(
    store: LocationStore, rows: int = 500, ms: float = 20.0
) -> AsyncIterator[BindingWriter]:
    writer = BindingWriter(store, rows, ms)
    writer.start()
    try:
        yield writer
    finally:
        await writer.close()


async def test_many_changes_go_in_few_transactions(store: LocationStore) -> None:
    outcomes = Outcomes()
    async with running_writer(store, ms=50) as writer:
        for n in range(300):
            writer.submit(
                Change([binding(f"sip:{n}@192.0.2.1", aor=f"u{n}@example.com")], (), outcomes)
            )
        await until(lambda: len(outcomes) == 300)
    assert outcomes == [None] * 300
    assert writer.commits <= 2 and writer.rows == 300
    assert len(await store.load(T0)) == 300


async def test_a_batch_holds_at_most_commit_rows_rows(store: LocationStore) -> None:
    outcomes = Outcomes()
    async with running_writer(store, rows=4, ms=50) as writer:
        for n in range(10):
            writer.submit(Change([binding(f"sip:{n}@192.0.2.1")], (), outcomes))
        await until(lambda: len(outcomes) == 10)
    assert writer.commits == 3  # 4 + 4 + 2


async def test_done_is_called_only_once_the_batch_is_committed(
    database_url: str, store: LocationStore
) -> None:
    outcomes = Outcomes()
    async with running_writer(store, ms=1) as writer:
        async with write_lock_held(database_url):
            writer.submit(Change([binding()], (), outcomes))
            await asyncio.sleep(0.3)
            assert outcomes == []  # the database has not taken it: no word yet
        await until(lambda: outcomes == [None])
    assert await store.load(T0) == [binding()]


async def test_a_failed_batch_reports_its_error_to_every_change(
    migrated: Database, store: LocationStore
) -> None:
    outcomes = Outcomes()
    async with running_writer(store, ms=30) as writer:
        await migrated.execute("ALTER TABLE locations RENAME TO locations_away")
        for n in range(3):
            writer.submit(Change([binding(f"sip:{n}@192.0.2.1")], (), outcomes))
        await until(lambda: len(outcomes) == 3)
        await migrated.execute("ALTER TABLE locations_away RENAME TO locations")
        writer.submit(Change([binding()], (), outcomes))
        await until(lambda: len(outcomes) == 4)
    assert all(isinstance(error, StorageError) for error in outcomes[:3])
    assert outcomes[3] is None and writer.failures == 1
    assert await store.load(T0) == [binding()]


async def test_close_writes_what_is_queued(store: LocationStore) -> None:
    outcomes = Outcomes()
    writer = BindingWriter(store, 500, 10_000)
    writer.start()
    writer.submit(Change([binding()], (), outcomes))
    await writer.close()
    assert outcomes == [None]
    writer.submit(Change([binding("sip:late@192.0.2.1")], (), outcomes))
    assert isinstance(outcomes[1], StorageError)
    assert await store.load(T0) == [binding()]


async def test_the_sweep_and_removals_run_in_the_writer(store: LocationStore) -> None:
    gone, kept = binding("sip:a@192.0.2.1", expires_at=T0 + 5), binding("sip:b@192.0.2.2")
    async with running_writer(store, ms=1) as writer:
        location = Location(writer)
        outcomes = Outcomes()
        writer.submit(Change([gone, kept], (), outcomes))
        await until(lambda: outcomes == [None])
        location.apply([gone, kept])
        writer.sweep(T0 + 5)
        location.remove(kept)
    assert await store.load(0) == []
