"""The node's gate for untrusted sources: per-source flood limits and bans.

``Node.message_received`` asks ``admit`` for every datagram or framed
message before parsing it; handlers report failed authentications with
``auth_failed``. Trusted peers (``Handler.trusts``) are never limited.
"""

from __future__ import annotations

from collections.abc import Callable

from sipline.sip.address import Address


class Guard:
    """Admits everything until limits are configured."""

    def __init__(self, trusts: Callable[[Address], bool] = lambda source: False) -> None:
        self.trusts = trusts

    def admit(self, source: Address) -> bool:
        """False: drop what ``source`` sent, silently (it is over its limit or banned)."""
        return True

    def auth_failed(self, source: Address, user: str) -> None:
        """A request from ``source`` failed digest authentication as ``user``."""
