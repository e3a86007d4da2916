"""The state of one call while it lasts: two legs and what is in flight between them.

Plain objects (no I/O, no timers of their own): the steps of a call
(``b2bua.setup``, ``answering``, ``indialog``, ``teardown``) change them as
messages arrive, and ``b2bua.calls.Calls`` finds them by Call-ID, one entry
per leg. Nothing outlives the call: no call record is kept (accounting is
the ACR's job).
"""

from __future__ import annotations

import enum
import weakref
from dataclasses import dataclass

from sipline.proxying.rules import Local
from sipline.sip.dialog import Dialog
from sipline.sip.ids import new_branch
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction

from .nexthop import Hop, Plan
from .sessiontimer import SessionTimer


class Media(enum.Enum):
    """Where a call's media (or a relayed request's offer) stands with the RTP relay."""

    DIRECT = "direct"  # not through the relay: not wanted, or the relay failed
    OFFERING = "offering"  # the relay works on an offer
    ANCHORED = "anchored"  # through the relay: answers go through it too
    ANSWERING = "answering"  # the relay rewrites an answer (in a 1xx or 2xx)

    @property
    def anchored(self) -> bool:
        """The relay holds the media (an ng ``delete`` ends it)."""
        return self is Media.ANCHORED or self is Media.ANSWERING


class Phase(enum.Enum):
    ADMITTING = "admitting"  # waiting for the licence check or the relay's offer
    CALLING = "calling"  # the B leg's INVITE is out
    ANSWERED = "answered"  # a 2xx went to the caller, its ACK not yet here
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass(slots=True, eq=False)
class Leg:
    """One side of the call: A (we are its UAS) or B (we are its UAC).

    The call holds its legs and a leg names its call weakly (``call``): no
    reference cycle, so an ended call goes with reference counting, not a
    collection of the cyclic GC (``Calls.live`` holds the call meanwhile)."""

    owner: weakref.ReferenceType[Call]
    name: str  # "A" or "B"
    call_id: str
    local: Local  # where we listen (the node's)
    transport: str  # this leg's: our Via and Contact on it
    dialog: Dialog | None = None
    timer: SessionTimer | None = None
    sdp: bytes = b""  # the last session description we sent on this leg
    update_allowed: bool = False  # the peer's Allow names UPDATE (refreshes without SDP)

    def via(self) -> str:
        """Our Via on this leg, a new branch each time (RFC 3261 §8.1.1.7)."""
        return self.local.via(self.transport, new_branch(), rport=True)

    @property
    def contact(self) -> str:
        return self.local.contact(self.transport, "b2bua")

    @property
    def call(self) -> Call:
        call = self.owner()
        if call is None:  # a leg outlived its call: a bug, not a peer's doing
            raise LookupError(f"leg {self.name} of {self.call_id}: its call is gone")
        return call

    @property
    def peer(self) -> Leg:
        call = self.call
        return call.b if self is call.a else call.a

    def __hash__(self) -> int:
        return id(self)


@dataclass(slots=True, eq=False)
class Relay:
    """A request from one leg sent on to the other: ``server`` is where its answer goes."""

    call: Call
    source: Leg  # the leg the request came on
    server: ServerTransaction
    answer: Response | None = None  # a 2xx to a re-INVITE, sent again until its ACK
    cseq: int = 0  # our request's CSeq number on the other leg (its ACK reuses it)
    acked: bool = False
    media: Media = Media.DIRECT  # its offer through the relay: so goes the answer


@dataclass(slots=True, eq=False)
class Own:
    """A request the B2BUA sends itself on ``leg``: a BYE or a session refresh."""

    call: Call
    leg: Leg


@dataclass(slots=True, eq=False, weakref_slot=True)
class Call:
    a_tag: str  # our To tag on the A leg
    a_from_tag: str  # the caller's tag
    b_tag: str  # our From tag on the B leg
    server: ServerTransaction | None  # the caller's INVITE, until its ACK
    started: float  # monotonic
    phase: Phase = Phase.ADMITTING
    plan: Plan | None = None
    hop: Hop | None = None
    b_sdp: bytes = b""  # the offer the B leg's INVITE carries
    b_invite: Request | None = None  # until the 2xx is ACKed
    client: ClientTransaction | None = None  # the B leg's current INVITE
    cseq: int = 0  # the B leg's INVITE CSeq
    sent: float = 0.0  # when the B leg's INVITE went (monotonic)
    target: str | None = None  # the B leg's Request-URI once a 3xx was followed
    redirects: int = 0  # 3xx followed
    last_failure: Response | None = None
    answer: Response | None = None  # the 2xx sent to the caller, sent again until its ACK
    refreshed_se: bool = False  # the B leg's INVITE was sent again after a 422
    account: str | None = None
    admitted: bool = False
    media: Media = Media.DIRECT
    reinvite: Relay | None = None  # the re-INVITE whose 2xx awaits its ACK
    a: Leg = None  # type: ignore[assignment]  # set right after the call is made
    b: Leg = None  # type: ignore[assignment]

    def __hash__(self) -> int:
        return id(self)

    @property
    def call_id(self) -> str:
        return self.a.call_id
