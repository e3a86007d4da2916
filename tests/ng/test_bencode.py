"""Bencode as the ng protocol uses it (sipline.ng.bencode): BEP 3, strict on input, never crashing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipline.ng.bencode import MAX_DEPTH, BencodeError, decode, encode

NG_PING = b"d7:command4:pinge"


def test_an_ng_ping_request_decodes_to_a_dictionary_of_text() -> None:
    assert decode(NG_PING) == {"command": "ping"}


def test_dictionary_keys_are_written_in_sorted_order() -> None:
    assert encode({"result": "ok", "calls": ["a", "b"]}) == b"d5:callsl1:a1:be6:result2:oke"


def test_integers_are_signed_decimals() -> None:
    assert encode([0, -7, 12345678901234567890]) == b"li0ei-7ei12345678901234567890ee"
    assert decode(b"li0ei-7ee") == [0, -7]


def test_bytes_that_are_not_utf8_survive_a_round_trip() -> None:
    raw = b"5:\xff\xfeab\x80"
    text = decode(raw)
    assert isinstance(text, str)
    assert encode(text) == raw


def test_text_is_written_as_utf8() -> None:
    assert encode("é") == b"2:\xc3\xa9"


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"i01e",  # leading zero
        b"i-0e",  # negative zero
        b"ie",
        b"i12",
        b"03:abc",  # leading zero in a length
        b"5:abc",  # truncated string
        b"l",
        b"d3:foo",
        b"di1e3:fooe",  # a key that is not a string
        b"x",
        b"i1ei2e",  # trailing data
        b"-1:a",
    ],
)
def test_malformed_input_raises_bencode_error(bad: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(bad)


def test_deep_nesting_is_refused_rather_than_exhausting_the_stack() -> None:
    with pytest.raises(BencodeError, match="deeply"):
        decode(b"l" * 100_000 + b"e" * 100_000)
    nested = b"l" * MAX_DEPTH + b"e" * MAX_DEPTH
    assert decode(nested) is not None


def test_values_bencode_has_no_type_for_are_refused() -> None:
    for value in (1.5, True, None, {1: "a"}):
        with pytest.raises(TypeError):
            encode(value)


values = st.recursive(
    st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_every_value_round_trips(value: object) -> None:
    assert decode(encode(value)) == value


@given(st.binary())
def test_every_byte_string_round_trips_through_text(raw: bytes) -> None:
    assert encode(decode(encode(raw))) == encode(raw)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_bencode_error_only(data: bytes) -> None:
    try:
        decode(data)
    except BencodeError:
        pass


@given(values)
def test_truncated_encodings_are_errors(value: object) -> None:
    data = encode(value)
    for end in range(len(data)):
        with pytest.raises(BencodeError):
            decode(data[:end])
