"""What the ACR's live state (stats, health, counters) shares about its Redis link.

A sync loop calls Redis about once a second; when Redis is away the call path
goes on with the local picture. The link is ``sipline.redis``'s, shared with
every role; the ACR's parts log under ``sipline.acr.live``.
"""

from __future__ import annotations

import logging

import sipline.redis
from sipline.redis import TIMEOUT, open_redis, redis_errors

log = logging.getLogger("sipline.acr.live")


class Link(sipline.redis.Link):
    """A part's Redis link, logging under ``sipline.acr.live``."""

    __slots__ = ()

    def __init__(self, part: str) -> None:
        super().__init__(part, log)


__all__ = ["TIMEOUT", "Link", "open_redis", "redis_errors"]
