"""Fresh branch ids, tags and Call-IDs.

A random prefix per process plus a counter: unique, unguessable enough for
loop detection and matching (RFC 3261 §8.1.1.7 asks for uniqueness over
space and time), and far cheaper per message than a random token each.
"""

from __future__ import annotations

import itertools
import secrets

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7

_prefix = secrets.token_hex(6)
_counter = itertools.count(1)


def new_branch() -> str:
    return f"{MAGIC_COOKIE}{_prefix}{next(_counter):x}"


def new_tag() -> str:
    return f"{_prefix[:8]}{next(_counter):x}"


def new_call_id(host: str | None = None) -> str:
    value = f"{_prefix}-{next(_counter):x}-{secrets.token_hex(4)}"
    return f"{value}@{host}" if host else value
