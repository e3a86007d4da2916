"""What the ACR's live state (stats, health, counters) shares about its Redis link.

A sync loop calls Redis about once a second; when Redis is away the call path
goes on with the local picture. ``Link`` logs the first failure and the
recovery, not every retry, and tells the call path whether to try Redis at all.
Opening a client and telling Redis's errors is every node's (sipline.storage.live).
"""

from __future__ import annotations

import logging

from sipline.logs import event
from sipline.storage.live import open_redis, redis_errors

__all__ = ["Link", "open_redis", "redis_errors"]

log = logging.getLogger("sipline.acr.live")


class Link:
    """Whether the last Redis exchange of one part worked; logs changes only."""

    __slots__ = ("part", "ok", "failures")

    def __init__(self, part: str) -> None:
        self.part = part
        self.ok = True
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.ok:
            self.ok = False
            event(log, "redis_unavailable", logging.WARNING, part=self.part, error=repr(exc))

    def succeeded(self) -> None:
        if not self.ok:
            self.ok = True
            event(log, "redis_recovered", part=self.part, failures=self.failures)
