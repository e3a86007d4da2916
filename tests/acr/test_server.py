"""The ACR node's route table as built from the store (SQLite and MariaDB)."""

from __future__ import annotations

import pytest

from acr.deck import deck_text, parse_deck, write_deck
from acr.model import Carrier, Gateway
from acr.ranking import RouteTable
from acr.server import build_table
from acr.store import AcrStore
from sipline.config import Settings
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
