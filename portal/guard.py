"""Login failures, rate limited per source address and per user name. No I/O: the
caller passes ``now``.

Each attempt is recorded (``attempt``) before the password is verified, as a
failure of its source and of its user name; a success clears only that pair
(``succeeded``), so a customer's good login does not wipe what its source
failed against another name. ``login_failures`` attempts of one source, or
against one user name, within ``login_window`` seconds shut it out for
``login_ban`` seconds (HTTP 429 with Retry-After): parallel requests count
as soon as they start, not once their verify returns. At most ``max_sources``
sources and as many user names are remembered; the one failing longest ago is
forgotten first, so a flood from many addresses or names costs bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

# What a log line keeps of a user name someone typed.
MAX_LOGGED_NAME = 64


@dataclass(slots=True)
class _Entry:
    # (when, the other half of the pair: the user name of a source, the source of a name)
    failures: list[tuple[float, str]] = field(default_factory=list)
    banned_until: float = 0.0


class _Table:
    """Failures by one key (sources, or user names), bounded."""

    def __init__(self, limit: int, window: float, ban: float, size: int) -> None:
        self.limit, self.window, self.ban, self.size = limit, window, ban, size
        self.entries: OrderedDict[str, _Entry] = OrderedDict()

    def wait(self, key: str, now: float) -> float:
        entry = self.entries.get(key)
        if entry is None:
            return 0.0
        entry.failures = [f for f in entry.failures if f[0] > now - self.window]
        if entry.banned_until <= now and len(entry.failures) >= self.limit:
            entry.banned_until = now + self.ban
            entry.failures.clear()
        return max(entry.banned_until - now, 0.0)

    def add(self, key: str, other: str, now: float) -> None:
        entry = self.entries.pop(key, None) or _Entry()
        self.entries[key] = entry  # most recent last
        entry.failures.append((now, other))
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def full(self, key: str) -> bool:
        entry = self.entries.get(key)
        return entry is not None and len(entry.failures) >= self.limit

    def clear(self, key: str, other: str) -> None:
        entry = self.entries.get(key)
        if entry is not None:
            entry.failures = [f for f in entry.failures if f[1] != other]


class LoginGuard:
    def __init__(self, failures: int, window: float, ban: float, max_sources: int) -> None:
        self.limit = failures
        self._sources = _Table(failures, window, ban, max_sources)
        self._names = _Table(failures, window, ban, max_sources)
        self.failed_total = 0  # failed logins seen
        self.refused_total = 0  # attempts refused while shut out

    def attempt(self, source: str, username: str, now: float) -> float:
        """Seconds ``source`` must wait before it may try ``username`` again (0: it may
        try now, and the attempt counts as a failure until ``succeeded``)."""
        wait = max(self._sources.wait(source, now), self._names.wait(username, now))
        if wait > 0:
            self.refused_total += 1
            return wait
        self._sources.add(source, username, now)
        self._names.add(username, source, now)
        return 0.0

    def failed(self, source: str, username: str) -> bool:
        """Count an attempt that failed; True when the next one will be refused."""
        self.failed_total += 1
        return self._sources.full(source) or self._names.full(username)

    def succeeded(self, source: str, username: str) -> None:
        self._sources.clear(source, username)
        self._names.clear(username, source)


def loggable(username: str) -> str:
    return username[:MAX_LOGGED_NAME]
