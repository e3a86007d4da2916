"""The node's gate for untrusted sources: per-source flood limits and bans.

``Node.message_received`` asks ``admit`` for every datagram or framed
message before parsing it (and the TCP endpoint for every connection it
accepts); handlers report failed authentications with ``auth_failed``.

Flood limit, in the manner of Kamailio's pike: each source IP (an IPv6 source
by its ``ipv6_prefix``) may send ``flood_density`` messages per
``flood_window`` seconds; the message over it is dropped silently and the
source banned for ``flood_ban`` seconds (Kamailio's ipban). ``auth_failures``
failed digests within ``auth_window`` ban it for ``auth_ban`` (fail2ban's SIP
jails). Trusted peers (``Handler.trusts``) are never dropped nor banned: their
trust is asked only of a source over its limit or banned, so the common path
is one clock read, two dict lookups and integer arithmetic, with no
allocation but for a source's first message in a window.

Sans-IO: the clock is injected (monotonic seconds); ``sipline.net.bans``
shares the bans ``made`` here with other nodes and ``apply``s theirs, and
calls ``prune`` now and then. Memory is bounded: at most ``max_sources``
sources are counted (at the cap a new one goes uncounted until a prune frees
room: a flood from that many addresses at once is beyond a per-source limit,
and refusing every new source would lock out phones instead), and at most
``max_bans`` bans are made (over it the flooding source is still dropped for
the rest of its window).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sipline.config import LimitsSection
from sipline.logs import event
from sipline.net.metrics import NodeMetrics
from sipline.sip.address import Address

log = logging.getLogger("sipline.guard")

FOREVER = math.inf
FLOOD = "flood"
AUTH = "auth"
TRUST_CACHE = 4096  # sources whose trust is remembered between prunes
MAX_DROPPING = 2048  # banned sources seen sending, for the kernel to drop (socket_filter)


@dataclass(slots=True)
class Window:
    """``count`` events in the window that ends at ``end``."""

    end: float
    count: int


@dataclass(frozen=True, slots=True)
class NewBan:
    """A ban this node made, for the shell to share: ``key`` for ``seconds``."""

    key: str
    seconds: float
    reason: str


def source_key(host: str, ipv6_prefix: int = 64) -> str:
    """What limits and bans count by: an IPv4 address as it is, an IPv6 one as
    its prefix (``2001:db8:1:2::/64``)."""
    if ":" not in host:
        return host
    try:
        return str(ipaddress.IPv6Network((host, ipv6_prefix), strict=False))
    except ValueError:  # a scoped link-local address: by itself
        return host


class Guard:
    """Flood limits, auth-failure counts and the bans in force on one node."""

    def __init__(
        self,
        trusts: Callable[[Address], bool] = lambda source: False,
        limits: LimitsSection | None = None,
        *,
        metrics: NodeMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trusts = trusts
        self.limits = limits = limits if limits is not None else LimitsSection()
        self.metrics = metrics = metrics if metrics is not None else NodeMetrics(register=False)
        self.clock = clock
        self._window = limits.flood_window
        self._density = limits.flood_density or sys.maxsize
        self._prefix = limits.ipv6_prefix
        self._windows: dict[str, Window] = {}
        self._failures: dict[str, Window] = {}
        # Bans in force: key -> when it ends on ``clock`` (FOREVER: until lifted).
        self.banned: dict[str, float] = {}
        self.made: list[NewBan] = []  # not yet shared (sipline.net.bans takes them)
        # Untrusted UDP sources seen sending while banned: the shell has the kernel
        # drop them, told by ``on_dropping`` when one is new.
        self.dropping: set[Address] = set()
        self.on_dropping: Callable[[], None] | None = None
        self._v6_keys: dict[str, str] = {}
        self._trusted: dict[Address, bool] = {}
        self._pruned = 0.0
        self._untracked_since_prune = 0  # the untracked count at the last prune
        self._flood = metrics.dropped["flood"]
        self._banned_drop = metrics.dropped["banned"]
        metrics.watch_guard(lambda: len(self.banned), lambda: len(self._windows))

    # -- the per-message path ------------------------------------------------------
    def admit(self, source: Address) -> bool:
        """False: drop what ``source`` sent, silently (it is over its limit or banned)."""
        host = source.host
        key = host if ":" not in host else self._v6_key(host)
        now = self.clock()
        if key in self.banned and self._still_banned(key, now):
            return self._from_banned(source)
        window = self._windows.get(key)
        if window is None:
            return self._first(key, now)
        if now >= window.end:
            window.end = now + self._window
            window.count = 1
            return True
        window.count += 1
        if window.count <= self._density:
            return True
        return self._over(source, key, window, now)

    def _first(self, key: str, now: float) -> bool:
        if len(self._windows) >= self.limits.max_sources:
            if now - self._pruned >= self._window:
                self.prune(now)
            if len(self._windows) >= self.limits.max_sources:
                untracked = self.metrics.untracked
                if self._untracked_since_prune == untracked.value:  # once between prunes
                    event(log, "flood_table_full", logging.WARNING, sources=len(self._windows))
                untracked.value += 1
                return True
        self._windows[key] = Window(now + self._window, 1)
        return True

    def _over(self, source: Address, key: str, window: Window, now: float) -> bool:
        if self.trusted(source):
            return True
        self._flood.value += 1
        if window.count == self._density + 1:  # the first one over: ban once
            self.ban(key, self.limits.flood_ban, FLOOD, source, now)
        return False

    def _from_banned(self, source: Address) -> bool:
        if self.trusted(source):
            return True
        self._banned_drop.value += 1
        dropping = self.dropping
        if source not in dropping and len(dropping) < MAX_DROPPING and source.transport == "UDP":
            dropping.add(source)
            if self.on_dropping is not None:
                self.on_dropping()
        return False

    def _still_banned(self, key: str, now: float) -> bool:
        if now < self.banned[key]:
            return True
        del self.banned[key]
        return False

    def _v6_key(self, host: str) -> str:
        key = self._v6_keys.get(host)
        if key is None:
            if len(self._v6_keys) >= self.limits.max_sources:
                self._v6_keys.clear()
            key = self._v6_keys[host] = source_key(host, self._prefix)
        return key

    def key(self, host: str) -> str:
        """The key ``host`` is counted and banned by."""
        return host if ":" not in host else self._v6_key(host)

    def trusted(self, source: Address) -> bool:
        """``trusts(source)``, remembered until the next prune."""
        trusted = self._trusted.get(source)
        if trusted is None:
            if len(self._trusted) >= TRUST_CACHE:
                self._trusted.clear()
            trusted = self._trusted[source] = bool(self.trusts(source))
        return trusted

    # -- authentication failures -----------------------------------------------------
    def auth_failed(self, source: Address, user: str, reason: str = "") -> None:
        """A request from ``source`` failed digest authentication as ``user``
        (``reason``: why, for the operator only: never sent to the peer).

        Logged as the one line fail2ban matches (the address first, before
        anything the sender chose): ``event=auth_failed ip=<address> ...``."""
        limits = self.limits
        key = self.key(source.host)
        now = self.clock()
        self.metrics.auth_failures.value += 1
        failures = self._failures.get(key)
        if failures is None or now >= failures.end:
            failures = Window(now + limits.auth_window, 0)
            if len(self._failures) >= limits.max_sources:
                self._failures = _live(self._failures, now)
            if len(self._failures) < limits.max_sources:  # else counted alone, as one
                self._failures[key] = failures
        failures.count += 1
        why = {"reason": reason} if reason else {}
        event(
            log, "auth_failed", logging.WARNING, ip=source.host, port=source.port,
            transport=source.transport.lower(), user=user, failures=failures.count, **why,
        )  # fmt: skip
        if limits.auth_failures and failures.count >= limits.auth_failures:
            if not self.trusted(source):
                self._failures.pop(key, None)
                self.ban(key, limits.auth_ban, AUTH, source, now)

    # -- bans --------------------------------------------------------------------------
    def ban(
        self, key: str, seconds: float, reason: str, source: Address | None, now: float
    ) -> None:
        """Ban ``key`` for ``seconds`` on this node's own finding, and queue it to be shared."""
        banned = self.banned
        max_bans = self.limits.max_bans
        if key not in banned and len(banned) >= max_bans:
            self.banned = banned = _unexpired(banned, now)
            if len(banned) >= max_bans:
                event(log, "ban_table_full", logging.WARNING, ip=key, reason=reason)
                return
        banned[key] = now + seconds
        if len(self.made) < max_bans:
            self.made.append(NewBan(key, seconds, reason))
        self.metrics.bans[reason].value += 1
        event(
            log, "banned", logging.WARNING, ip=key, reason=reason, seconds=f"{seconds:g}",
            source=source if source is not None else "-",
        )  # fmt: skip

    def apply(self, key: str, until: float) -> None:
        """A ban shared by another node or an operator: ``key`` until ``until`` (clock time)."""
        self.banned[key] = until

    def lift(self, key: str) -> None:
        """End ``key``'s ban; it starts again from a clean count."""
        self.banned.pop(key, None)
        self._windows.pop(key, None)
        self._failures.pop(key, None)
        self.dropping = {s for s in self.dropping if self.key(s.host) != key}

    def take_made(self) -> list[NewBan]:
        made, self.made = self.made, []
        return made

    # -- upkeep --------------------------------------------------------------------------
    def prune(self, now: float | None = None) -> None:
        """Forget what has run out (ended windows, expired bans) and the trust remembered.

        The tables are rebuilt, not emptied in place: a dict never shrinks, and
        the memory a flood from many addresses took must come back."""
        now = self.clock() if now is None else now
        self._pruned = now
        self._untracked_since_prune = self.metrics.untracked.value
        self._windows = _live(self._windows, now)
        self._failures = _live(self._failures, now)
        self.banned = _unexpired(self.banned, now)
        self.dropping = {s for s in self.dropping if self.key(s.host) in self.banned}
        self._trusted = {}
        if len(self._v6_keys) > len(self._windows):
            self._v6_keys = {}


def _live(windows: dict[str, Window], now: float) -> dict[str, Window]:
    return {key: window for key, window in windows.items() if window.end > now}


def _unexpired(bans: dict[str, float], now: float) -> dict[str, float]:
    return {key: until for key, until in bans.items() if until > now}
