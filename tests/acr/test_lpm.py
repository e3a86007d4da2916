"""Longest-prefix match over digit prefixes (acr.lpm.PrefixTable)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acr.lpm import MAX_DIGITS, PrefixTable

DECK = ["1", "44", "4420", "442079", "0044", "00", "9"]


def matched(table: PrefixTable, number: str) -> str:
    return table.prefix(table.lookup(number))


def longest(prefixes: list[str], number: str) -> str:
    return max((p for p in prefixes if number.startswith(p)), key=len, default="")


@pytest.mark.parametrize(
    ("number", "prefix"),
    [
        ("442079460000", "442079"),
        ("442071234567", "4420"),
        ("441612345678", "44"),
        ("15551234567", "1"),
        ("99", "9"),
    ],
)
def test_the_longest_prefix_of_the_number_matches(number, prefix):
    assert matched(PrefixTable(DECK), number) == prefix


def test_a_number_no_prefix_starts_matches_the_empty_prefix_at_index_0():
    table = PrefixTable(DECK)
    assert table.lookup("7123") == 0
    assert table.prefix(0) == ""


def test_a_number_shorter_than_a_prefix_does_not_match_it():
    table = PrefixTable(DECK)
    assert matched(table, "4420") == "4420"
    assert matched(table, "44207") == "4420"
    assert matched(table, "442") == "44"
    assert matched(table, "4") == ""


def test_leading_zeros_are_digits_like_any_other():
    table = PrefixTable(DECK)
    assert matched(table, "0044207") == "0044"
    assert matched(table, "0033") == "00"
    assert matched(table, "0") == ""
    assert table.index("0044") != table.index("44")


def test_every_prefix_knows_its_longest_proper_prefix_in_the_table():
    table = PrefixTable(DECK)
    parents = {table.prefix(i): table.prefix(int(table.parent[i])) for i in range(1, len(table))}
    assert parents == {
        "1": "",
        "44": "",
        "4420": "44",
        "442079": "4420",
        "00": "",
        "0044": "00",
        "9": "",
    }
    assert table.parent[0] == -1


def test_levels_list_prefixes_by_length_so_parents_come_first():
    table = PrefixTable(DECK)
    seen = {0}
    for level, indices in enumerate(table.levels(), start=1):
        for i in indices.tolist():
            assert len(table.prefix(i)) == level
            assert int(table.parent[i]) in seen
        seen.update(indices.tolist())
    assert seen == set(range(len(table)))


def test_exact_indices_of_prefixes_and_minus_one_for_the_absent():
    table = PrefixTable(DECK)
    found = table.indices(["4420", "45", "", "x1", "123456789012345678"]).tolist()
    assert table.prefix(found[0]) == "4420"
    assert found[1:] == [-1, 0, -1, -1]


def test_duplicates_count_once():
    assert len(PrefixTable(["44", "44", "1"])) == 3  # with ""


@pytest.mark.parametrize("bad", ["+44", "44a", " 44", "4_4", "٤٤"])
def test_a_prefix_that_is_not_digits_is_refused(bad):
    with pytest.raises(ValueError, match="digits only"):
        PrefixTable([bad])


def test_a_prefix_too_long_to_encode_is_refused():
    with pytest.raises(ValueError, match="longer than"):
        PrefixTable(["1" * (MAX_DIGITS + 1)])


@pytest.mark.parametrize("bad", ["", "+44", "44 20", "4_4"])
def test_a_number_that_is_not_digits_is_refused(bad):
    with pytest.raises(ValueError, match="digits only"):
        PrefixTable(DECK).lookup(bad)


def test_an_empty_table_matches_every_number_with_the_empty_prefix():
    table = PrefixTable([])
    assert len(table) == 1
    assert table.lookup("4420") == 0


def test_numbers_longer_than_every_prefix_match_on_their_head():
    table = PrefixTable(["44"])
    assert matched(table, "44" + "1" * 30) == "44"


digits = st.text(alphabet="0123456789", min_size=0, max_size=6)


@given(st.lists(digits, max_size=40), st.lists(digits.filter(bool), min_size=1, max_size=20))
def test_lookup_agrees_with_the_obvious_scan(prefixes, numbers):
    table = PrefixTable(prefixes)
    for number in numbers:
        assert matched(table, number) == longest(prefixes, number)


def test_lookup_agrees_with_the_obvious_scan_on_a_dense_random_deck():
    rng = random.Random(7)
    prefixes = [str(rng.randrange(10 ** rng.randint(1, 6))) for _ in range(3000)]
    table = PrefixTable(prefixes)
    for _ in range(2000):
        number = str(rng.randrange(10**11))[: rng.randint(1, 11)]
        assert matched(table, number) == longest(prefixes, number)
