"""Longest-prefix match over digit prefixes, for millions of rate-deck rows.

A prefix of length L stands for the interval of numbers
``[lo, lo + 10**(M - L))`` once every number is padded with zeros to M
digits (M: the longest prefix). The intervals of a prefix set are nested or
disjoint, so after sorting by ``(lo, L)`` -- which is plain lexicographic order
of the digit strings -- the last prefix starting at or before a number is
either its longest match or a descendant of an interval that ended before the
number, whose nearest containing ancestor is the match. Each prefix keeps its
parent (its longest proper prefix in the set), so a lookup is one binary
search plus a short walk up, and bulk tables over the prefixes (see
``acr.ranking``) inherit values from parents level by level in numpy.

The empty prefix "" is always in the table (index 0): every number matches it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

MAX_DIGITS = 17  # (lo * 20 + L) must fit an int64; E.164 numbers have at most 15 digits
_LENGTHS = 20  # the key packs the length in base 20


class PrefixTable:
    """The longest of a set of digit prefixes that starts a number.

    ``lookup(number)`` gives the index of that prefix; indices are in
    lexicographic order of the prefixes, so a parent's index is always smaller
    than its children's.
    """

    __slots__ = ("_keys", "_hi", "parent", "length", "digits", "_scale")

    def __init__(self, prefixes: Iterable[str]) -> None:
        unique = {""}
        unique.update(prefixes)
        texts = list(unique)
        if not _all_digits(texts):
            bad = next(t for t in texts if not _all_digits([t]))
            raise ValueError(f"prefix {bad!r}: digits only")
        longest = max(map(len, texts))
        if longest > MAX_DIGITS:
            bad = next(t for t in texts if len(t) > MAX_DIGITS)
            raise ValueError(f"prefix {bad!r}: longer than {MAX_DIGITS} digits")
        self.digits = longest
        self._scale = 10 ** np.arange(self.digits, -1, -1, dtype=np.int64)  # by length
        keys = self._encode(texts)
        keys.sort()
        self._keys = keys
        length = (keys % _LENGTHS).astype(np.int8)
        lo = keys // _LENGTHS
        self._hi = lo + self._scale[length]
        self.length = length
        self.parent = self._parents(lo, length)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        """Sortable int64 keys ``lo * 20 + L`` of digit strings (validated by the caller)."""
        length = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        try:
            value = np.fromiter(map(int, texts), dtype=np.int64, count=len(texts))
        except ValueError:  # "" is among them
            value = np.fromiter((int(t or 0) for t in texts), dtype=np.int64, count=len(texts))
        return value * self._scale[length] * _LENGTHS + length

    def _parents(self, lo: np.ndarray, length: np.ndarray) -> np.ndarray:
        """For every prefix, the index of its longest proper prefix in the table (-1 for "")."""
        parent = np.zeros(len(lo), dtype=np.int32)
        parent[0] = -1
        for level in range(1, self.digits):
            deeper = np.flatnonzero(length > level)
            if not len(deeper):
                break
            cut = lo[deeper] - lo[deeper] % self._scale[level]
            key = cut * _LENGTHS + level
            at = np.minimum(self._keys.searchsorted(key), len(self._keys) - 1)
            found = self._keys[at] == key
            # Ascending levels: the last level found is the longest proper prefix.
            parent[deeper[found]] = at[found]
        return parent

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, number: str) -> int:
        """The index of the longest prefix of ``number`` (digits only; 0: only "" matches)."""
        if not (number.isdigit() and number.isascii()):
            raise ValueError(f"number {number!r}: digits only")
        m = self.digits
        if m == 0:
            return 0
        head = number[:m]
        short = len(head) < m
        if short:
            head = head.ljust(m, "0")
        lo = int(head)
        i = int(self._keys.searchsorted(lo * _LENGTHS + _LENGTHS - 1, "right")) - 1
        hi, parent = self._hi, self.parent
        if short:
            n = len(number)
            length = self.length
            while i > 0 and (lo >= hi[i] or length[i] > n):
                i = int(parent[i])
        else:
            while i > 0 and lo >= hi[i]:
                i = int(parent[i])
        return i

    def index(self, prefix: str) -> int:
        """The index of exactly ``prefix``, -1 if it is not in the table."""
        found = self.indices([prefix])[0]
        return int(found)

    def indices(self, prefixes: Sequence[str]) -> np.ndarray:
        """Exact indices (int32, -1 where absent) of many prefixes at once."""
        texts = list(prefixes)
        if _all_digits(texts) and max(map(len, texts), default=0) <= self.digits:
            keys = self._encode(texts)
        else:
            keys = np.full(len(texts), -1, dtype=np.int64)
            good = [i for i, t in enumerate(texts) if len(t) <= self.digits and _all_digits([t])]
            keys[good] = self._encode([texts[i] for i in good])
        at = np.minimum(self._keys.searchsorted(keys), len(self._keys) - 1)
        return np.where(self._keys[at] == keys, at, -1).astype(np.int32)

    def span(self, index: int) -> tuple[int, int]:
        """The index range of the prefix at ``index`` and every prefix it starts."""
        end = int(self._keys.searchsorted(int(self._hi[index]) * _LENGTHS))
        return index, end

    def prefix(self, index: int) -> str:
        """The digit string at ``index``."""
        key = int(self._keys[index])
        length = key % _LENGTHS
        if not length:
            return ""
        value = key // _LENGTHS // int(self._scale[length])
        return str(value).zfill(length)

    def levels(self) -> list[np.ndarray]:
        """Indices of the prefixes of each length, shortest first: parents come before children."""
        order = np.argsort(self.length, kind="stable")
        bounds = np.searchsorted(self.length[order], np.arange(1, self.digits + 2))
        return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _all_digits(texts: Sequence[str]) -> bool:
    """Whether every string is ASCII digits ("" counts): one pass in C over them all."""
    joined = "".join(texts)
    return not joined or (joined.isdigit() and joined.isascii())
