"""The ACR store on SQLite and MariaDB: carriers, gateways, rates, profiles, DIDs, CDRs, version."""

from __future__ import annotations

import pytest

from sipline.carriers.model import FINAL_CODES, Carrier, Cdr, Did, Gateway, Rate, RoutingProfile
from sipline.carriers.store import (
    CDR_COLUMNS,
    RATE_COLUMNS,
    AcrStore,
    DuplicateCarrier,
    DuplicateDid,
    UnknownCarrier,
    cdr_row,
    parse_host_port,
    parse_number,
)
from sipline.storage import Database, InvalidValue


@pytest.fixture
def store(migrated: Database) -> AcrStore:
    return AcrStore(migrated)


def carrier(name: str, *ports: int, **limits: int | None) -> Carrier:
    gateways = tuple(Gateway(name, "127.0.0.1", port) for port in ports or (5090,))
    return Carrier(name, gateways, **limits)  # type: ignore[arg-type]


async def test_a_carrier_comes_back_with_its_gateways_and_limits(store: AcrStore) -> None:
    gateways = (
        Gateway("cheap", "192.0.2.1", 5060, "udp", 1),
        Gateway("cheap", "gw.example.net", 5070, "tcp", 3),
    )
    await store.add_carrier(Carrier("cheap", gateways, capacity=100, cps=10))
    [loaded] = await store.carriers()
    assert loaded == Carrier("cheap", gateways[::-1], capacity=100, cps=10)  # heaviest first
    assert await store.carrier("cheap") == loaded


async def test_carriers_are_listed_by_name_unlimited_by_default(store: AcrStore) -> None:
    await store.add_carrier(carrier("zed", 5091))
    await store.add_carrier(carrier("acme", 5092))
    loaded = await store.carriers()
    assert [c.name for c in loaded] == ["acme", "zed"]
    assert (loaded[0].capacity, loaded[0].cps, loaded[0].enabled) == (None, None, True)


async def test_a_duplicate_carrier_is_refused(store: AcrStore) -> None:
    await store.add_carrier(carrier("acme", 5091))
    with pytest.raises(DuplicateCarrier, match="acme already exists"):
        await store.add_carrier(carrier("acme", 5092))
    assert len(await store.carriers()) == 1


async def test_a_gateway_address_belongs_to_one_carrier(store: AcrStore) -> None:
    await store.add_carrier(carrier("acme", 5091))
    with pytest.raises(DuplicateCarrier, match="127.0.0.1:5091 belongs to carrier acme"):
        await store.add_carrier(carrier("other", 5091))
    assert [c.name for c in await store.carriers()] == ["acme"]  # nothing half-added


@pytest.mark.parametrize(
    "bad",
    [
        Carrier("bad name", (Gateway("bad name", "127.0.0.1"),)),
        Carrier("nogw", ()),
        Carrier("x", (Gateway("x", "not a host!"),)),
        Carrier("x", (Gateway("x", "127.0.0.1", 0),)),
        Carrier("x", (Gateway("x", "127.0.0.1", 5060, "sctp"),)),
        Carrier("x", (Gateway("x", "127.0.0.1"),), capacity=0),
    ],
)
async def test_bad_carriers_are_refused(store: AcrStore, bad: Carrier) -> None:
    with pytest.raises(InvalidValue):
        await store.add_carrier(bad)


async def test_disable_and_enable(store: AcrStore) -> None:
    await store.add_carrier(carrier("acme"))
    await store.set_enabled("acme", False)
    assert not (await store.carrier("acme")).enabled
    await store.set_enabled("acme", False)  # again: no error
    await store.set_enabled("acme", True)
    assert (await store.carrier("acme")).enabled
    with pytest.raises(UnknownCarrier, match="no carrier nobody"):
        await store.set_enabled("nobody", True)


async def test_rates_are_those_effective_at_the_time_asked(
    store: AcrStore, migrated: Database
) -> None:
    rows = [
        Rate("acme", "44", 0.02),
        Rate("acme", "4420", 0.01, 0.05, 6, 6, effective_from=1000.0),
        Rate("acme", "4420", 0.03, 0.0, 1, 1, effective_to=1000.0),
        Rate("acme", "33", 0.04, effective_from=500.0, effective_to=600.0),
    ]
    await migrated.executemany(
        "INSERT INTO rates (carrier, prefix, rate, connect_fee, first_increment,"
        " next_increment, effective_from, effective_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(r.carrier, r.prefix, r.rate, r.connect_fee, r.first_increment, r.next_increment,
          r.effective_from, r.effective_to) for r in rows],
    )  # fmt: skip
    key = lambda r: (r.prefix, r.rate)  # noqa: E731
    assert sorted(await store.rates(999.0), key=key) == sorted([rows[0], rows[2]], key=key)
    assert sorted(await store.rates(1000.0), key=key) == sorted([rows[0], rows[1]], key=key)
    assert sorted(await store.rates(550.0), key=key) == sorted(rows[2:] + rows[:1], key=key)
    assert len(await store.deck("acme")) == 4
    assert await store.deck_sizes() == {"acme": 4}


async def test_profiles_are_set_replaced_and_read(store: AcrStore) -> None:
    assert await store.profiles() == []
    default = RoutingProfile()
    uk = RoutingProfile("44", 0.2, 0.6, 0.2, min_quality=0.5, max_price=0.1,
                        final_codes=frozenset({486, 603}), max_attempts=5)  # fmt: skip
    await store.set_profile(default)
    await store.set_profile(uk)
    assert await store.profiles() == [default, uk]
    assert (await store.profiles())[0].final_codes == FINAL_CODES
    cheaper = RoutingProfile("44", weight_price=0.9)
    await store.set_profile(cheaper)
    assert await store.profiles() == [default, cheaper]


async def test_bad_profiles_are_refused(store: AcrStore) -> None:
    with pytest.raises(InvalidValue):
        await store.set_profile(RoutingProfile("44x"))
    with pytest.raises(InvalidValue):
        await store.set_profile(RoutingProfile("44", 0, 0, 0))
    with pytest.raises(InvalidValue):
        await store.set_profile(RoutingProfile("44", max_attempts=0))


async def test_dids_are_stored_as_digits_with_their_backups(store: AcrStore) -> None:
    await store.add_did(Did("+442071234567", "127.0.0.1:5060", ("127.0.0.1:5062", "10.0.0.2:5060")))
    await store.add_did(Did("3312345678", "127.0.0.1:5060"))
    assert await store.dids() == [
        Did("3312345678", "127.0.0.1:5060"),
        Did("442071234567", "127.0.0.1:5060", ("127.0.0.1:5062", "10.0.0.2:5060")),
    ]
    with pytest.raises(DuplicateDid, match="442071234567 already exists"):
        await store.add_did(Did("442071234567", "127.0.0.1:5070"))
    with pytest.raises(InvalidValue):
        await store.add_did(Did("12345", "not an address!"))


async def test_every_routing_change_moves_the_version(store: AcrStore, migrated: Database) -> None:
    seen = [await store.version()]

    async def moved() -> None:
        seen.append(await store.version())
        assert seen[-1] > seen[-2]

    await store.add_carrier(carrier("acme"))
    await moved()
    await store.set_enabled("acme", False)
    await moved()
    await store.set_profile(RoutingProfile())
    await moved()
    await store.add_did(Did("123", "127.0.0.1:5060"))
    await moved()
    with pytest.raises(DuplicateCarrier):
        await store.add_carrier(carrier("acme"))
    assert await store.version() == seen[-1]  # a refused change is no change


def _cdr(n: int, **changes: object) -> Cdr:
    values: dict[str, object] = dict(
        call_id=f"call-{n}", account="ACME", caller="alice", callee="442071234567",
        prefix="4420", carrier="acme", gateway="127.0.0.1:5090", rate=0.6,
        start=1000.0 + n, end=1070.0 + n, final_code=200, node="primary",
        answer=1003.0 + n, connect_fee=0.01, first_increment=6, next_increment=6,
        billed_seconds=72, cost=0.73, extra={"pdd": "0.8"},
    )  # fmt: skip
    return Cdr(**(values | changes))  # type: ignore[arg-type]


async def test_cdrs_read_back_the_last_n_oldest_first(store: AcrStore, migrated: Database) -> None:
    cdrs = [_cdr(n) for n in range(5)] + [_cdr(5, answer=None, account=None, extra={})]
    await migrated.executemany(
        f"INSERT INTO cdrs ({CDR_COLUMNS}) VALUES ({', '.join('?' * 19)})",
        [cdr_row(c) for c in cdrs],
    )
    assert await store.cdrs(3) == cdrs[3:]
    assert await store.cdrs(100) == cdrs
    assert await store.cdrs(0) == []


@pytest.mark.parametrize(
    ("text", "digits"), [("+442071234567", "442071234567"), (" 33 1 ", "331"), ("1", "1")]
)
def test_numbers_are_digits_only(text: str, digits: str) -> None:
    assert parse_number(text) == digits


@pytest.mark.parametrize("text", ["", "+", "44a", "1" * 33, "++44"])
def test_bad_numbers_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue):
        parse_number(text)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:5080", ("127.0.0.1", 5080)),
        ("gw.example.net", ("gw.example.net", 5060)),
        ("[2001:db8::1]:5062", ("2001:db8::1", 5062)),
        ("2001:db8::1", ("2001:db8::1", 5060)),
    ],
)
def test_host_port(text: str, parsed: tuple[str, int]) -> None:
    assert parse_host_port(text) == parsed


@pytest.mark.parametrize("text", ["127.0.0.1:0", "127.0.0.1:x", "bad host:5060", "[::1", ""])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(InvalidValue):
        parse_host_port(text)


async def test_the_next_rate_change_is_the_next_start_or_end_of_a_row(
    store: AcrStore, migrated: Database
) -> None:
    assert await store.next_rate_change(0.0) is None  # no deck at all
    rows = [
        Rate("acme", "44", 0.02),
        Rate("acme", "4420", 0.01, effective_from=1000.0),
        Rate("acme", "4420", 0.03, effective_to=1000.0),
        Rate("acme", "33", 0.04, effective_from=500.0, effective_to=600.0),
    ]
    await migrated.executemany(
        "INSERT INTO rates (carrier, prefix, rate, connect_fee, first_increment,"
        " next_increment, effective_from, effective_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(r.carrier, r.prefix, r.rate, r.connect_fee, r.first_increment, r.next_increment,
          r.effective_from, r.effective_to) for r in rows],
    )  # fmt: skip
    assert await store.next_rate_change(0.0) == 500.0
    assert await store.next_rate_change(500.0) == 600.0  # "after": not the row starting now
    assert await store.next_rate_change(700.0) == 1000.0
    assert await store.next_rate_change(1000.0) is None


async def test_rates_come_back_exactly_whatever_their_number(
    store: AcrStore, migrated: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sipline.carriers.store.PACKED_ROWS", 7)  # MySQL reads them in packs: cross a few
    rows = [
        Rate("a" if n % 3 else "b", str(100 + n), n / 3, 0.1 + 0.2 * n, n % 61, 1 + n % 60,
             None if n % 2 else 1e9 + n / 7, None if n % 5 else 2e9 + 1 / 3)
        for n in range(40)
    ]  # fmt: skip
    await migrated.executemany(
        f"INSERT INTO rates ({RATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(r.carrier, r.prefix, r.rate, r.connect_fee, r.first_increment, r.next_increment,
          r.effective_from, r.effective_to) for r in rows],
    )  # fmt: skip
    assert sorted(await store.rates(1.5e9), key=lambda r: r.prefix) == rows
