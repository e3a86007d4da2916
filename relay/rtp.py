"""One relayed stream: a local port, the party behind it, latching and counters.

A call party sends its RTP (or RTCP) to the ``local_port`` the relay gave it;
each packet goes out of the *peer* stream's socket to the peer's endpoint, so
both parties see the relay as the one address they talk to (symmetric RTP,
RFC 4961). The party's endpoint starts as the address its SDP advertised and
is replaced by the source of its first packet: that is latching, which is what
gets media through a NAT whose public port differs from the SDP.

Latching nobody can hijack: only a packet from a host the signalling named
may latch, the SDP's connection address or the address the party's SIP came
from (ng ``received-from``, which behind NAT is the public address its RTP
leaves from, on a port the NAT picks). Anyone else's packets are dropped and
counted, never relayed, and never get the other party's audio. A latched
stream may re-learn for ``window`` seconds after it latched (a NAT that
moves the port in the first packets, a spoofed packet that got in first); a
packet from the exact address and port the SDP advertises wins over one that
only shares its host. After the window only the latched source may send.
rtpengine learns during the first 3 s of a stream too (``--endpoint-learning``
``delayed``, or ``heuristic``, which prefers the SDP's address and port, then
its host, as here), but from any source, and afterwards still forwards other
sources' packets unless the offer asks for ``strict source``: here the hosts
are the signalling's and strict is the rule. New addresses in a re-offer or answer (the phone moved) undo a
latch whose host they no longer name, and learning starts again.

A stream whose party speaks SRTP that the relay terminates (relay.srtp) has
``unprotect``: a packet that does not authenticate is dropped before it can
latch, and ``protect``: what is relayed to that party is encrypted first.

``receive`` is the per-packet hot path: one tuple comparison for the source,
a few counters, the statistics update and one ``sendto`` on the peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from relay.srtp import Error as SrtpError
from relay.stats import RtpStats

__all__ = ["LEARN_WINDOW", "Endpoint", "Stream"]

Endpoint = tuple[str, int]
SendTo = Callable[[bytes, Any], None]
Refused = Callable[["Stream", Any], None]
Transform = Callable[[bytes], bytes]

LEARN_WINDOW = 3.0  # seconds after latching in which an allowed source may take over


def _unbound(data: bytes, dest: Any) -> None:
    """The send of a stream whose socket is not open (yet, or any more)."""


def _uncounted(stream: Stream, source: Any) -> None:
    """The refusal hook of a stream nobody watches."""


class Stream:
    """Relay state of one local port; ``rtcp`` streams count packets but keep no RTP stats."""

    __slots__ = (
        "local_port",
        "rtcp",
        "call_id",
        "window",
        "advertised",
        "signalled",
        "allowed",
        "endpoint",
        "source",
        "learn_until",
        "peer",
        "sendto",
        "refused",
        "packets",
        "bytes",
        "errors",
        "last_packet",
        "stats",
        "unprotect",
        "protect",
        "_update",
    )

    def __init__(
        self,
        local_port: int,
        *,
        rtcp: bool = False,
        call_id: str = "",
        window: float = LEARN_WINDOW,
        refused: Refused = _uncounted,
        stats: RtpStats | None = None,
    ) -> None:
        self.local_port = local_port
        self.rtcp = rtcp
        self.call_id = call_id
        self.window = window
        self.advertised: Endpoint | None = None
        """Where the party's SDP says it receives."""
        self.signalled: str | None = None
        """The host the party's signalling came from (ng ``received-from``), if known."""
        self.allowed: frozenset[str] = frozenset()
        """Hosts whose packets may latch: the SDP's and the signalling's."""
        self.endpoint: Endpoint | None = None
        """Where packets for the party go: the latched source, else ``advertised``."""
        self.source: Any = None
        """The latched source (the address as the socket gives it); None until then."""
        self.learn_until = 0.0
        """Until when (monotonic) another allowed source may take the latch over."""
        self.peer: Stream | None = None
        self.sendto: SendTo = _unbound
        """Sends out of this stream's socket; set by the shell that opens it."""
        self.refused = refused
        """Called with each packet dropped for its source (counting, logging)."""
        self.packets = 0
        self.bytes = 0
        self.errors = 0
        """Packets dropped: their source may not send on this stream."""
        self.last_packet: float | None = None
        self.stats = None if rtcp else (stats or RtpStats())
        self._update = None if self.stats is None else self.stats.update
        self.unprotect: Transform | None = None
        """Decrypts and authenticates the party's SRTP (relay.srtp); None: relayed as it is."""
        self.protect: Transform | None = None
        """Encrypts what is relayed to the party; None: sent as it is."""

    def advertise(self, endpoint: Endpoint | None, signalled: str | None = None) -> None:
        """The party's SDP address, and the host its signalling came from when the
        command said (else the last one known). A latch survives while its host is
        still named; an unspecified address (on hold, RFC 3264 §8.4) changes no one's
        right to send."""
        if signalled is not None:
            self.signalled = signalled
        self.advertised = endpoint
        if endpoint is not None:
            allowed = _hosts(endpoint[0], self.signalled)
            if allowed != self.allowed:
                self.allowed = allowed
                if self.source is not None and self.source[0] not in allowed:
                    self.source = None  # the party moved: learn where it sends from now
        elif self.signalled is not None and not self.allowed:
            self.allowed = _hosts(None, self.signalled)
        if self.source is None:
            self.endpoint = endpoint

    def set_payloads(self, rates: dict[int, int], names: dict[int, str]) -> None:
        if self.stats is not None:
            self.stats.rates = rates
            self.stats.names = names

    def receive(self, data: bytes, source: Any, now: float) -> bool:
        """Account a packet from ``source`` and relay it to the peer; False if dropped."""
        fresh = source != self.source
        if fresh and source[0] not in self.allowed:
            self.errors += 1
            self.refused(self, source)
            return False
        unprotect = self.unprotect
        if unprotect is not None:
            try:
                data = unprotect(data)
            except SrtpError:  # not keyed by the party, altered or replayed: no latch
                self.errors += 1
                self.refused(self, source)
                return False
        if fresh and not self._learn(source, now):
            self.errors += 1
            self.refused(self, source)
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
        protect = peer.protect
        if protect is not None:
            try:
                data = protect(data)
            except SrtpError:  # too short to be RTP
                return False
        peer.sendto(data, peer.endpoint)
        return True

    def _learn(self, source: Any, now: float) -> bool:
        """Whether ``source`` may latch (or take the latch over) now."""
        if source[0] not in self.allowed:
            return False
        current = self.source
        if current is not None:
            if now >= self.learn_until or self._exact(current) > self._exact(source):
                return False
        else:
            self.learn_until = now + self.window
        self.source = source
        self.endpoint = (source[0], source[1])
        return True

    def _exact(self, source: Any) -> bool:
        """The source sends from the port its SDP names (its host is allowed already)."""
        advertised = self.advertised
        return advertised is not None and source[1] == advertised[1]

    @property
    def latched(self) -> bool:
        return self.source is not None


def _hosts(sdp: str | None, signalled: str | None) -> frozenset[str]:
    """The hosts that may latch, written as a socket reports a source (an SDP may
    spell an IPv6 address otherwise), each IPv4 one also IPv4-mapped, as a
    dual-stack socket reports it."""
    hosts = {_canonical(host) for host in (sdp, signalled) if host}
    return frozenset(hosts | {f"::ffff:{host}" for host in hosts if ":" not in host})


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host  # a name: no packet comes from it, so it latches nothing
