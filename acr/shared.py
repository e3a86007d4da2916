"""What the ACR's live state (stats, health, counters) shares about its Redis link.

A sync loop calls Redis about once a second; when Redis is away the call path
goes on with the local picture. The link is every node's
(``sipline.storage.live``); the ACR's parts log under ``sipline.acr.live``.
"""

from __future__ import annotations

import logging

import sipline.storage.live
from sipline.storage.live import TIMEOUT, open_redis, redis_errors

log = logging.getLogger("sipline.acr.live")


class Link(sipline.storage.live.Link):
    """A part's Redis link, logging under ``sipline.acr.live``."""

    __slots__ = ()

    def __init__(self, part: str) -> None:
        super().__init__(part, log)


__all__ = ["TIMEOUT", "Link", "open_redis", "redis_errors"]
