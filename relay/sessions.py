"""The session table: calls, their parties, the streams between them, limits and timeouts.

A call has two parties, each known by its SIP tag. An offer from party F
creates F and its peer (untagged until the answer names it) and, for every
accepted media section, a pair of relay ports on each side: F sends to its
own pair, the peer to the other one, and each stream relays to its twin on
the other side (``Stream.peer``). The answer fills in the peer's addresses.
Re-offers reuse the streams they already have, so a re-INVITE keeps its ports.

The table owns no sockets: ``MediaPlane`` opens and closes them (the asyncio
shell, or a fake in tests). Times come from the ``clock`` (monotonic, for
timeouts) and the ``wall`` clock (reported creation times) given to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from relay.anchor import MediaSpec
from relay.ports import PortPool
from relay.rtp import Stream

__all__ = ["Call", "MediaPlane", "MediaStreams", "Party", "RelayError", "SessionTable"]

OUT_OF_PORTS = "Ran out of ports"
TOO_MANY_SESSIONS = "Parallel session limit reached"
_BIND_ATTEMPTS = 16


class RelayError(Exception):
    """A command that cannot be carried out; the message is the ng error-reason."""


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
        strict: bool = False,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.ports = ports
        self.plane = plane
        self.max_sessions = max_sessions
        self.strict = strict
        self.timeout = timeout
        self.clock = clock
        self.wall = wall
        self.calls: dict[str, Call] = {}

    def __len__(self) -> int:
        return len(self.calls)

    def get(self, call_id: str) -> Call | None:
        return self.calls.get(call_id)

    def offer(
        self, call_id: str, from_tag: str, to_tag: str | None, specs: list[MediaSpec]
    ) -> list[int | None]:
        """Set up ``from_tag``'s media; the RTP ports the peer must send to (None: rejected)."""
        call = self.calls.get(call_id)
        new = call is None
        if call is None:
            if len(self.calls) >= self.max_sessions:
                raise RelayError(TOO_MANY_SESSIONS)
            call = self._new_call(call_id)
        party = call.party(from_tag) or self._add_party(call, from_tag)
        peer = (call.party(to_tag) if to_tag else None) or party.peer
        if peer is None:
            peer = self._add_party(call, to_tag or "")
        party.peer, peer.peer = peer, party
        try:
            self._ensure_media(party, peer, specs)
        except RelayError:
            if new:
                self._remove(call)
            raise
        self._signalled(call)
        return _exchange(party, peer, specs)

    def answer(
        self, call_id: str, from_tag: str, to_tag: str, specs: list[MediaSpec]
    ) -> list[int | None]:
        """The peer ``to_tag`` answered; the RTP ports ``from_tag`` must send to."""
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
        return _exchange(peer, party, specs)

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

    def _new_call(self, call_id: str) -> Call:
        now, wall = self.clock(), self.wall()
        call = Call(call_id, wall, now, wall, now)
        self.calls[call_id] = call
        return call

    def _add_party(self, call: Call, tag: str) -> Party:
        party = Party(tag, self.wall())
        call.parties.append(party)
        return party

    def _signalled(self, call: Call) -> None:
        call.last_signal = self.wall()
        call.last_signal_at = self.clock()

    def _ensure_media(self, party: Party, peer: Party, specs: list[MediaSpec]) -> None:
        added: list[MediaStreams] = []
        try:
            for index in range(len(party.media), len(specs)):
                spec = specs[index]
                mine = self._open_pair(index + 1, spec)
                added.append(mine)
                theirs = self._open_pair(index + 1, spec)
                added.append(theirs)
                _link(mine, theirs)
                party.media.append(mine)
                peer.media.append(theirs)
        except RelayError:
            del party.media[len(party.media) - len(added) // 2 :]
            del peer.media[len(peer.media) - len(added) // 2 :]
            for media in added:
                self._close(media)
            raise

    def _open_pair(self, index: int, spec: MediaSpec) -> MediaStreams:
        for _ in range(_BIND_ATTEMPTS):
            port = self.ports.allocate()
            if port is None:
                break
            rtp = Stream(port, strict=self.strict)
            rtcp = Stream(port + 1, rtcp=True, strict=self.strict)
            if self.plane.open(rtp, rtcp):
                return MediaStreams(index, spec.kind, spec.protocol, rtp, rtcp)
            self.ports.release(port)  # taken by someone else: to the back of the queue
        raise RelayError(OUT_OF_PORTS)

    def _close(self, media: MediaStreams) -> None:
        self.plane.close(media.rtp)
        self.plane.close(media.rtcp)
        self.ports.release(media.rtp.local_port)

    def _remove(self, call: Call) -> None:
        del self.calls[call.call_id]
        for party in call.parties:
            for media in party.media:
                self._close(media)


def _link(a: MediaStreams, b: MediaStreams) -> None:
    a.rtp.peer, b.rtp.peer = b.rtp, a.rtp
    a.rtcp.peer, b.rtcp.peer = b.rtcp, a.rtcp


def _exchange(sender: Party, other: Party, specs: list[MediaSpec]) -> list[int | None]:
    """Take ``sender``'s addresses from its SDP; the ports to put in the SDP ``other`` gets."""
    ports: list[int | None] = []
    for mine, theirs, spec in zip(sender.media, other.media, specs, strict=False):
        _advertise(mine, spec)
        ports.append(None if spec.rejected else theirs.rtp.local_port)
    return ports


def _advertise(media: MediaStreams, spec: MediaSpec) -> None:
    media.rtp.advertise(spec.rtp)
    media.rtcp.advertise(spec.rtcp)
    media.names = spec.names
    media.rtp.set_payloads(spec.rates, spec.names)
