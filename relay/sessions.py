"""The session table: calls, their parties, the streams between them, limits and timeouts.

A call has two parties, each known by its SIP tag. An offer from party F
creates F and its peer (untagged until the answer names it) and, for every
accepted media section, a pair of relay ports on each side: F sends to its
own pair, the peer to the other one, and each stream relays to its twin on
the other side (``Stream.peer``). The answer fills in the peer's addresses.
Re-offers reuse the streams they already have, so a re-INVITE keeps its ports.

Budgets, so that no one can take the port range for themselves: a call holds
at most ``max_call_ports`` ports, and the calls whose first offer came from
one signalling host (ng ``received-from``: a phone, or the NAT of a site) at
most ``max_source_ports`` together. An offer over a budget is refused whole,
before a port is taken. Calls from our own peers, which name no such host,
are bounded by the call budget, ``max_sessions`` and the range.

The table owns no sockets: ``MediaPlane`` opens and closes them (the asyncio
shell, or a fake in tests). Times come from the ``clock`` (monotonic, for
timeouts and latching) and the ``wall`` clock (reported creation times) given
to it. ``refused`` is told of every packet a stream drops for its source.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from relay.anchor import MediaSpec
from relay.ports import PortPool
from relay.rtp import LEARN_WINDOW, Refused, Stream, _uncounted
from relay.srtp import Crypto

__all__ = [
    "Call",
    "LimitReached",
    "MediaPlane",
    "MediaStreams",
    "Party",
    "RelayError",
    "SessionTable",
]

OUT_OF_PORTS = "Ran out of ports"
TOO_MANY_SESSIONS = "Parallel session limit reached"
DRAINING = "Draining: no new calls here"
CALL_PORTS = "Port budget of the call exhausted"
SOURCE_PORTS = "Port budget of the source exhausted"
PORTS_PER_MEDIA = 4  # a media section takes a pair on each side: RTP and RTCP twice
_BIND_ATTEMPTS = 16


class RelayError(Exception):
    """A command that cannot be carried out; the message is the ng error-reason."""


class LimitReached(RelayError):
    """A command refused by a limit (sessions, ports, budgets, media sections): counted."""


class MediaPlane(Protocol):
    def open(self, rtp: Stream, rtcp: Stream) -> bool:
        """Bind both ports of a pair and relay what they receive; False if one is taken."""

    def close(self, stream: Stream) -> None: ...


@dataclass(slots=True)
class MediaStreams:
    """One media section of one party: the RTP and RTCP streams it sends to."""

    index: int
    kind: str
    protocol: str
    rtp: Stream
    rtcp: Stream
    names: dict[int, str] = field(default_factory=dict)
    # SRTP the relay terminates for this party (relay.srtp): the keys we offered it,
    # the one it gets our media under, and whether its SDP's protocol was translated.
    offered: list[Crypto] = field(default_factory=list)
    ours: Crypto | None = None
    translated: bool = False

    def streams(self) -> tuple[Stream, Stream]:
        return self.rtp, self.rtcp


@dataclass(slots=True)
class Party:
    tag: str
    created: float
    media: list[MediaStreams] = field(default_factory=list)
    peer: Party | None = None


@dataclass(slots=True)
class Call:
    call_id: str
    created: float
    """Wall-clock time."""
    started: float
    """Monotonic time of creation."""
    last_signal: float
    last_signal_at: float
    """Monotonic time of the last offer or answer."""
    source: str | None = None
    """The signalling host of the first offer, whose port budget the call draws on."""
    ports: int = 0
    """Ports the call holds."""
    parties: list[Party] = field(default_factory=list)

    def party(self, tag: str) -> Party | None:
        return next((p for p in self.parties if p.tag == tag), None)

    def streams(self) -> Iterator[Stream]:
        for party in self.parties:
            for media in party.media:
                yield media.rtp
                yield media.rtcp

    def last_activity(self) -> float:
        """Monotonic time of the last signal or packet, whichever is later."""
        latest = self.last_signal_at
        for stream in self.streams():
            if stream.last_packet is not None and stream.last_packet > latest:
                latest = stream.last_packet
        return latest


class SessionTable:
    """Calls by Call-ID, with port allocation, limits and media timeouts."""

    def __init__(
        self,
        ports: PortPool,
        plane: MediaPlane,
        *,
        max_sessions: int = 10_000,
        max_call_ports: int = 64,
        max_source_ports: int = 2000,
        window: float = LEARN_WINDOW,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        refused: Refused = _uncounted,
    ) -> None:
        self.ports = ports
        self.plane = plane
        self.max_sessions = max_sessions
        self.max_call_ports = max_call_ports
        self.max_source_ports = max_source_ports
        self.window = window
        self.timeout = timeout
        self.clock = clock
        self.wall = wall
        self.refused = refused
        self.draining = False  # an admin's drain: calls in progress go on, new ones are refused
        self.calls: dict[str, Call] = {}
        self.by_source: Counter[str] = Counter()
        """Ports held by the calls of each signalling host."""

    def __len__(self) -> int:
        return len(self.calls)

    def get(self, call_id: str) -> Call | None:
        return self.calls.get(call_id)

    def offer(
        self,
        call_id: str,
        from_tag: str,
        to_tag: str | None,
        specs: list[MediaSpec],
        source: str | None = None,
    ) -> list[int | None]:
        """Set up ``from_tag``'s media; the RTP ports the peer must send to (None: rejected).
        ``source``: the host the offer's signalling came from (ng ``received-from``)."""
        call = self.calls.get(call_id)
        new = call is None
        if call is None:
            if self.draining:
                raise LimitReached(DRAINING)
            if len(self.calls) >= self.max_sessions:
                raise LimitReached(TOO_MANY_SESSIONS)
            call = self._new_call(call_id, source)
        party = call.party(from_tag) or self._add_party(call, from_tag)
        peer = (call.party(to_tag) if to_tag else None) or party.peer
        if peer is None:
            peer = self._add_party(call, to_tag or "")
        party.peer, peer.peer = peer, party
        try:
            self._ensure_media(call, party, peer, specs)
        except RelayError:
            if new:
                self._remove(call)
            raise
        self._signalled(call)
        return _exchange(party, peer, specs, source)

    def answer(
        self,
        call_id: str,
        from_tag: str,
        to_tag: str,
        specs: list[MediaSpec],
        source: str | None = None,
    ) -> list[int | None]:
        """The peer ``to_tag`` answered; the RTP ports ``from_tag`` must send to.
        ``source``: the host the answer's signalling came from, if known."""
        call = self.calls.get(call_id)
        if call is None:
            raise RelayError("Unknown call-id")
        party = call.party(from_tag)
        if party is None or party.peer is None:
            raise RelayError("Unknown from-tag")
        peer = party.peer
        peer.tag = to_tag  # the untagged peer gets its tag; a later fork's answer takes over
        if len(specs) > len(peer.media):
            raise RelayError("Answer has more media than the offer")
        self._signalled(call)
        return _exchange(peer, party, specs, source)

    def delete(self, call_id: str, from_tag: str | None = None) -> Call | None:
        """Remove the call and free its ports now; None if no such call (or tag)."""
        call = self.calls.get(call_id)
        if call is None or (from_tag and call.party(from_tag) is None):
            return None
        self._remove(call)
        return call

    def expire(self, now: float) -> list[Call]:
        """Remove and return the calls without signal or media for ``timeout`` seconds."""
        deadline = now - self.timeout
        idle = [call for call in self.calls.values() if call.last_activity() <= deadline]
        for call in idle:
            self._remove(call)
        return idle

    def _new_call(self, call_id: str, source: str | None) -> Call:
        now, wall = self.clock(), self.wall()
        call = Call(call_id, wall, now, wall, now, source)
        self.calls[call_id] = call
        return call

    def _add_party(self, call: Call, tag: str) -> Party:
        party = Party(tag, self.wall())
        call.parties.append(party)
        return party

    def _signalled(self, call: Call) -> None:
        call.last_signal = self.wall()
        call.last_signal_at = self.clock()

    def _ensure_media(self, call: Call, party: Party, peer: Party, specs: list[MediaSpec]) -> None:
        self._budget(call, PORTS_PER_MEDIA * max(0, len(specs) - len(party.media)))
        added: list[MediaStreams] = []
        try:
            for index in range(len(party.media), len(specs)):
                spec = specs[index]
                mine = self._open_pair(call, index + 1, spec)
                added.append(mine)
                theirs = self._open_pair(call, index + 1, spec)
                added.append(theirs)
                _link(mine, theirs)
                party.media.append(mine)
                peer.media.append(theirs)
        except RelayError:
            del party.media[len(party.media) - len(added) // 2 :]
            del peer.media[len(peer.media) - len(added) // 2 :]
            for media in added:
                self._close(call, media)
            raise

    def _budget(self, call: Call, wanted: int) -> None:
        """Refuse ``wanted`` more ports for ``call`` beyond its or its source's budget."""
        if not wanted:
            return
        if call.ports + wanted > self.max_call_ports:
            raise LimitReached(CALL_PORTS)
        source = call.source
        if source is not None and self.by_source[source] + wanted > self.max_source_ports:
            raise LimitReached(SOURCE_PORTS)

    def _open_pair(self, call: Call, index: int, spec: MediaSpec) -> MediaStreams:
        for _ in range(_BIND_ATTEMPTS):
            port = self.ports.allocate()
            if port is None:
                break
            rtp = self._stream(call, port, rtcp=False)
            rtcp = self._stream(call, port + 1, rtcp=True)
            if self.plane.open(rtp, rtcp):
                self._held(call, 2)
                return MediaStreams(index, spec.kind, spec.protocol, rtp, rtcp)
            self.ports.release(port)  # taken by someone else: back to the free ones
        raise LimitReached(OUT_OF_PORTS)

    def _stream(self, call: Call, port: int, *, rtcp: bool) -> Stream:
        return Stream(
            port, rtcp=rtcp, call_id=call.call_id, window=self.window, refused=self.refused
        )

    def _held(self, call: Call, ports: int) -> None:
        call.ports += ports
        source = call.source
        if source is not None:
            held = self.by_source[source] + ports
            if held:
                self.by_source[source] = held
            else:
                del self.by_source[source]

    def _close(self, call: Call, media: MediaStreams) -> None:
        self.plane.close(media.rtp)
        self.plane.close(media.rtcp)
        self.ports.release(media.rtp.local_port)
        self._held(call, -2)

    def _remove(self, call: Call) -> None:
        del self.calls[call.call_id]
        for party in call.parties:
            for media in party.media:
                self._close(call, media)


def _link(a: MediaStreams, b: MediaStreams) -> None:
    a.rtp.peer, b.rtp.peer = b.rtp, a.rtp
    a.rtcp.peer, b.rtcp.peer = b.rtcp, a.rtcp


def _exchange(
    sender: Party, other: Party, specs: list[MediaSpec], source: str | None
) -> list[int | None]:
    """Take ``sender``'s addresses from its SDP (and ``source``, where its signalling
    came from); the ports to put in the SDP ``other`` gets."""
    ports: list[int | None] = []
    for mine, theirs, spec in zip(sender.media, other.media, specs, strict=False):
        _advertise(mine, spec, source)
        ports.append(None if spec.rejected else theirs.rtp.local_port)
    return ports


def _advertise(media: MediaStreams, spec: MediaSpec, source: str | None) -> None:
    media.rtp.advertise(spec.rtp, source)
    media.rtcp.advertise(spec.rtcp, source)
    media.names = spec.names
    media.rtp.set_payloads(spec.rates, spec.names)
