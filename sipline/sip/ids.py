"""Fresh branch ids, tags and Call-IDs, drawn from the operating system's CSPRNG.

They must be unguessable, not only unique (RFC 3261 §8.1.1.7, §19.3): a
guessable branch or tag lets a stranger forge a response or a request
inside a dialog. ``os.urandom`` is read in blocks and sliced, so an id costs
a slice and a hex encoding, not a system call. A forked child starts with
a fresh block: it must never hand out its parent's ids.
"""

from __future__ import annotations

import os

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7

BRANCH_BYTES = 10  # 80 random bits after the cookie
TAG_BYTES = 8  # 64 bits (§19.3 asks for at least 32)
CALL_ID_BYTES = 16  # 128 bits: unique across every node and restart
_BLOCK = 4096

_pool = b""
_used = 0


def _random_hex(size: int) -> str:
    global _pool, _used
    end = _used + size
    if end > len(_pool):
        _pool, end = os.urandom(_BLOCK), size
    start, _used = end - size, end
    return _pool[start:end].hex()


def _forget_pool() -> None:
    global _pool, _used
    _pool, _used = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def new_branch() -> str:
    return MAGIC_COOKIE + _random_hex(BRANCH_BYTES)


def new_tag() -> str:
    return _random_hex(TAG_BYTES)


def new_call_id(host: str | None = None) -> str:
    value = _random_hex(CALL_ID_BYTES)
    return f"{value}@{host}" if host else value
