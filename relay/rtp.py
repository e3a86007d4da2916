"""One relayed stream: a local port, the party behind it, latching and counters.

A call party sends its RTP (or RTCP) to the ``local_port`` the relay gave it;
each packet goes out of the *peer* stream's socket to the peer's endpoint, so
both parties see the relay as the one address they talk to (symmetric RTP,
RFC 4961). The party's endpoint starts as the address its SDP advertised and
is replaced by the source of its first packet: that is latching, which is what
gets media through a NAT whose public port differs from the SDP. Once
latched, a strict stream drops packets from any other source; a lenient one
relays them but keeps sending to the latched address (no hijacking by a
stray sender).

``receive`` is the per-packet hot path: one tuple comparison for the source,
a few counters, the statistics update and one ``sendto`` on the peer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relay.stats import RtpStats

__all__ = ["Endpoint", "Stream"]

Endpoint = tuple[str, int]
SendTo = Callable[[bytes, Any], None]


def _unbound(data: bytes, dest: Any) -> None:
    """The send of a stream whose socket is not open (yet, or any more)."""


class Stream:
    """Relay state of one local port; ``rtcp`` streams count packets but keep no RTP stats."""

    __slots__ = (
        "local_port",
        "rtcp",
        "strict",
        "advertised",
        "endpoint",
        "source",
        "peer",
        "sendto",
        "packets",
        "bytes",
        "errors",
        "last_packet",
        "stats",
        "_update",
    )

    def __init__(
        self,
        local_port: int,
        *,
        rtcp: bool = False,
        strict: bool = False,
        stats: RtpStats | None = None,
    ) -> None:
        self.local_port = local_port
        self.rtcp = rtcp
        self.strict = strict
        self.advertised: Endpoint | None = None
        """Where the party's SDP says it receives."""
        self.endpoint: Endpoint | None = None
        """Where packets for the party go: the latched source, else ``advertised``."""
        self.source: Endpoint | None = None
        """The latched source; None until the first packet."""
        self.peer: Stream | None = None
        self.sendto: SendTo = _unbound
        """Sends out of this stream's socket; set by the shell that opens it."""
        self.packets = 0
        self.bytes = 0
        self.errors = 0
        self.last_packet: float | None = None
        self.stats = None if rtcp else (stats or RtpStats())
        self._update = None if self.stats is None else self.stats.update

    def advertise(self, endpoint: Endpoint | None) -> None:
        """The party's SDP address changed; a latched source still wins."""
        self.advertised = endpoint
        if self.source is None:
            self.endpoint = endpoint

    def set_payloads(self, rates: dict[int, int], names: dict[int, str]) -> None:
        if self.stats is not None:
            self.stats.rates = rates
            self.stats.names = names

    def receive(self, data: bytes, source: Endpoint, now: float) -> bool:
        """Account a packet from ``source`` and relay it to the peer; False if dropped."""
        if source != self.source and not self._learn(source):
            self.errors += 1
            return False
        self.packets += 1
        self.bytes += len(data)
        self.last_packet = now
        update = self._update
        if update is not None:
            update(data, now)
        peer = self.peer
        if peer is None or peer.endpoint is None:
            return False
        peer.sendto(data, peer.endpoint)
        return True

    def _learn(self, source: Endpoint) -> bool:
        if self.source is None:
            self.source = self.endpoint = source
            return True
        return not self.strict

    @property
    def latched(self) -> bool:
        return self.source is not None
