"""Login failures, rate limited per source address. No I/O: the caller passes ``now``.

``login_failures`` failures from one source within ``login_window`` seconds
shut it out for ``login_ban`` seconds (HTTP 429 with Retry-After). At most
``max_sources`` sources are remembered; the one failing longest ago is
forgotten first, so a flood from many addresses costs bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Source:
    failures: list[float] = field(default_factory=list)
    banned_until: float = 0.0


class LoginGuard:
    def __init__(self, failures: int, window: float, ban: float, max_sources: int) -> None:
        self.limit = failures
        self.window = window
        self.ban = ban
        self.max_sources = max_sources
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self.failed_total = 0  # failed logins seen
        self.refused_total = 0  # attempts refused while shut out

    def retry_after(self, source: str, now: float) -> float:
        """Seconds ``source`` must wait before it may try again (0: it may try now)."""
        entry = self._sources.get(source)
        wait = 0.0 if entry is None else entry.banned_until - now
        if wait > 0:
            self.refused_total += 1
            return wait
        return 0.0

    def failed(self, source: str, now: float) -> bool:
        """Count a failure; True when it shuts ``source`` out."""
        self.failed_total += 1
        entry = self._sources.pop(source, None) or _Source()
        self._sources[source] = entry  # most recent last
        entry.failures = [t for t in entry.failures if t > now - self.window]
        entry.failures.append(now)
        while len(self._sources) > self.max_sources:
            self._sources.popitem(last=False)
        if len(entry.failures) >= self.limit:
            entry.banned_until = now + self.ban
            entry.failures.clear()
            return True
        return False

    def succeeded(self, source: str) -> None:
        self._sources.pop(source, None)
