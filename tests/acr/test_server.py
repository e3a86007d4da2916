"""The ACR node's route table as built from the store (SQLite and MariaDB)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from acr.live import open_live_state
from acr.ranking import RouteTable
from acr.server import AcrNode, build_table
from sipline.carriers.deck import deck_text, parse_deck, write_deck
from sipline.carriers.model import Carrier, Gateway
from sipline.carriers.store import AcrStore
from sipline.config import Settings
from sipline.net.ports import free_port
from sipline.storage import Database

NUMBER = "442071234567"


@pytest.fixture
def store(migrated: Database) -> AcrStore:
    return AcrStore(migrated)


async def add(store: AcrStore, name: str, port: int, rows: list[tuple]) -> None:
    await store.add_carrier(Carrier(name, (Gateway(name, "127.0.0.1", port),)))
    header = ["prefix", "rate", "connect_fee", "first_increment", "next_increment",
              "effective_from", "effective_to"][: len(rows[0])]  # fmt: skip
    await write_deck(store.db, parse_deck(deck_text(rows, header).splitlines(), name))


class Up:
    """Every gateway up, no limits reached, no figures."""

    def gateway_up(self, address: str, now: float) -> bool:
        return True

    def headroom(self, carrier: str) -> float:
        return 1.0

    def quality(self, carrier: str, prefix: str):
        from acr.scoring import NO_FIGURES

        return NO_FIGURES


def decide(table: RouteTable, now: float):
    table.refresh(Up(), Up(), now)
    return table.decide(NUMBER, now)


async def test_a_disabled_carrier_is_in_the_table_and_explained_as_disabled(
    store: AcrStore,
) -> None:
    await add(store, "cheap", 5091, [("44", "0.01")])
    await add(store, "dear", 5092, [("44", "0.05")])
    await store.set_enabled("cheap", False)
    table, carriers, _ = await build_table(store, Settings(), 1000.0)
    assert [c.name for c in carriers] == ["cheap", "dear"]
    decision = decide(table, 1000.0)
    assert [c.carrier.name for c in decision.candidates] == ["dear"]
    [excluded] = decision.as_json()["excluded"]
    assert excluded["carrier"] == "cheap" and excluded["reasons"] == ["disabled"]
    assert "cheap" in decision.explain() and "disabled" in decision.explain()


async def test_a_rate_row_effective_later_bounds_the_table_built_now(store: AcrStore) -> None:
    await add(store, "cheap", 5091, [("44", "0.05", "0", "60", "60", "", ""),
                                     ("44", "0.01", "0", "60", "60", "2000", "")])  # fmt: skip
    table, _, _ = await build_table(store, Settings(), 1000.0)
    assert [r.rate for r in table.rates] == [0.05]
    assert table.valid_until == 2000.0
    assert not table.expired(1999.9) and table.expired(2000.0)
    later, _, _ = await build_table(store, Settings(), 2000.0)
    assert [r.rate for r in later.rates] == [0.01] and later.valid_until is None


async def test_a_node_switches_to_a_deck_row_when_it_takes_effect(
    migrated: Database, tmp_path: Path
) -> None:
    store = AcrStore(migrated)
    now = [time.time()]
    start = now[0] + 30  # the new, cheaper row for 4420 takes over in 30 s
    await add(store, "cheap", 5091, [("44", "0.05", "0", "60", "60", "", ""),
                                     ("4420", "0.01", "0", "60", "60", str(start), "")])  # fmt: skip
    await add(store, "dear", 5092, [("44", "0.03")])
    settings = Settings(
        node={"data_dir": tmp_path, "drain_timeout": 0.2},
        acr={"primary": f"127.0.0.1:{free_port('127.0.0.1')}", "probe_interval": 60,
             "exploration": 0},
    )  # fmt: skip
    live = await open_live_state(settings, "primary")
    node = AcrNode(settings, "primary", migrated, live, clock=lambda: now[0])
    await node.start()
    try:
        assert node.router is not None
        decision = node.router.table.decide(NUMBER, now[0])
        assert [(c.carrier.name, c.prefix) for c in decision.candidates] == [
            ("dear", "44"), ("cheap", "44")
        ]  # fmt: skip
        assert not await node.reload()  # nothing changed yet
        now[0] = start
        await node.reload()  # what the node's reload loop does every RELOAD_INTERVAL
        decision = node.router.table.decide(NUMBER, now[0])
        assert [(c.carrier.name, c.prefix) for c in decision.candidates] == [
            ("cheap", "4420"), ("dear", "44")
        ]  # fmt: skip
        assert decision.candidates[0].rate.rate == 0.01
    finally:
        await node.stop()
        await live.close()


async def test_a_second_node_on_the_same_journal_does_not_start(
    migrated: Database, tmp_path: Path
) -> None:
    from acr.journal import Journal
    from acr.server import journal_dir
    from sipline.storage import StorageError

    settings = Settings(
        node={"data_dir": tmp_path, "drain_timeout": 0.2},
        acr={"primary": f"127.0.0.1:{free_port('127.0.0.1')}", "probe_interval": 60},
    )
    await add(AcrStore(migrated), "cheap", 5091, [("44", "0.05")])
    running = Journal(journal_dir(settings, "primary"))  # the node already running
    await running.open()
    live = await open_live_state(settings, "primary")
    try:
        with pytest.raises(StorageError, match="acr-primary-journal is in use by another process"):
            await AcrNode(settings, "primary", migrated, live).start()
    finally:
        await live.close()
        await running.close()
