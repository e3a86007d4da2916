"""Bencode, the encoding of rtpengine's ng control protocol.

One implementation for both ends: the relay's ng server (relay.ng) and the
ng client the proxy and the B2BUA drive a relay with (sipline.ng.client).

Four types (BEP 3): integers ``i42e``, byte strings ``4:spam``, lists
``l...e`` and dictionaries ``d...e`` with byte-string keys in sorted order.
Strings decode to ``str`` through UTF-8 with ``surrogateescape``, so any bytes
survive a round trip (SDP is text; a stray byte must not break a call) and
``encode`` accepts ``str`` or ``bytes``. Decoding is bounded: nesting deeper
than ``MAX_DEPTH`` or any malformed input raises ``BencodeError``, never a
RecursionError or an IndexError.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BencodeError", "decode", "encode", "MAX_DEPTH"]

MAX_DEPTH = 32
_DIGITS = frozenset(b"0123456789")


class BencodeError(ValueError):
    """The bytes are not one well-formed bencoded value."""


def encode(value: Any) -> bytes:
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Any, out: list[bytes]) -> None:
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes | bytearray):
        out.append(b"%d:" % len(value))
        out.append(bytes(value))
    elif isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    elif isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        keys = {_key(k): v for k, v in value.items()}
        for key in sorted(keys):  # BEP 3: keys sorted as raw strings
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(keys[key], out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


def _key(key: Any) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8", "surrogateescape")
    if isinstance(key, bytes):
        return key
    raise TypeError(f"bencode dictionary keys are strings, not {type(key).__name__}")


def decode(data: bytes) -> Any:
    """The one value ``data`` holds; trailing bytes are an error."""
    if not isinstance(data, bytes):
        data = bytes(data)
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError(f"trailing data at offset {end}")
    return value


def _decode(data: bytes, at: int, depth: int) -> tuple[Any, int]:
    if at >= len(data):
        raise BencodeError("truncated")
    lead = data[at]
    if lead in _DIGITS:
        return _string(data, at)
    if lead == 0x69:  # i
        return _integer(data, at + 1)
    if depth >= MAX_DEPTH:
        raise BencodeError("nested too deeply")
    if lead == 0x6C:  # l
        return _list(data, at + 1, depth + 1)
    if lead == 0x64:  # d
        return _dict(data, at + 1, depth + 1)
    raise BencodeError(f"unexpected byte {lead:#04x} at offset {at}")


def _string(data: bytes, at: int) -> tuple[str, int]:
    colon = data.find(b":", at)
    if colon < 0:
        raise BencodeError("string length without ':'")
    length = _digits(data[at:colon])
    end = colon + 1 + length
    if end > len(data):
        raise BencodeError("truncated string")
    return data[colon + 1 : end].decode("utf-8", "surrogateescape"), end


def _integer(data: bytes, at: int) -> tuple[int, int]:
    end = data.find(b"e", at)
    if end < 0:
        raise BencodeError("integer without 'e'")
    text = data[at:end]
    negative = text.startswith(b"-")
    value = _digits(text[1:] if negative else text)
    if negative and value == 0:
        raise BencodeError("negative zero")
    return -value if negative else value, end + 1


def _digits(text: bytes) -> int:
    # Canonical decimal only: no sign, no spaces, no leading zeros (BEP 3).
    if not text or not all(c in _DIGITS for c in text) or (text[0] == 0x30 and len(text) > 1):
        raise BencodeError(f"bad number {text[:20]!r}")
    return int(text)


def _list(data: bytes, at: int, depth: int) -> tuple[list[Any], int]:
    items = []
    while True:
        if at >= len(data):
            raise BencodeError("truncated list")
        if data[at] == 0x65:  # e
            return items, at + 1
        item, at = _decode(data, at, depth)
        items.append(item)


def _dict(data: bytes, at: int, depth: int) -> tuple[dict[str, Any], int]:
    items: dict[str, Any] = {}
    while True:
        if at >= len(data):
            raise BencodeError("truncated dictionary")
        if data[at] == 0x65:  # e
            return items, at + 1
        if data[at] not in _DIGITS:
            raise BencodeError(f"dictionary key is not a string at offset {at}")
        key, at = _string(data, at)
        items[key], at = _decode(data, at, depth)
