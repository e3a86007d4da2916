"""Media anchoring (docs/design.md "Flows that work"): the SDP of a call with a party behind NAT
goes through the RTP relay, which latches to where each party's RTP really
comes from.

The relay is driven over rtpengine's ng protocol (``sipline.ng.client``): the
INVITE's offer is sent as ng ``offer`` and forwarded rewritten, the answer in
a 18x or 2xx as ng ``answer``; the call's media is deleted when its BYE is
answered, or when the INVITE ends without a 2xx (CANCEL, failure, timer C).
Which calls: ``anchor_media = "nat"`` anchors those with a party behind NAT
(the callee's binding, or a caller whose Via or SDP names another address
than the one its INVITE came from), ``"always"`` every call, ``"never"`` none.
Calls to the B2BUA are left to it: it anchors off-net media itself.

An anchored offer of SDES-SRTP (``RTP/SAVP`` with ``a=crypto``) asks the relay
for ``transport-protocol`` RTP/SAVP: it ends each phone's SRTP under keys of
its own, so each side has its own keys and only authentic packets latch.

Our Record-Route says the dialog is anchored (``;ma``), so a re-INVITE or
UPDATE with SDP is anchored again and the BYE deletes, with no state kept
here beyond the forwarded request's. Offers in the ACK (an INVITE without
SDP) and multipart bodies are not anchored.

A relay that does not answer lets the call go ahead un-anchored, with a
warning: a NATed party may then hear nothing, but refusing every call while
the relay is down would be worse, and phones that use STUN or symmetric RTP
still get through.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sipline.config import split_host_port
from sipline.logs import event
from sipline.ng.anchoring import (
    has_sdp,
    packets,
    sent_from_elsewhere,
    source_flags,
    srtp_flags,
)
from sipline.ng.client import NgClient, NgError
from sipline.sip.address import Address
from sipline.sip.message import Request, Response

from .routing import Plan

log = logging.getLogger("sipline.proxy.media")

ANCHORED = "ma"  # our Record-Route parameter: this dialog's media goes through the relay
OFFER_METHODS = frozenset(("INVITE", "UPDATE"))  # their SDP is an offer (RFC 3264, RFC 3311)


class Kind(Enum):
    CALL = "call"  # a dialog-creating INVITE: offer now, delete unless it is answered
    REOFFER = "reoffer"  # a re-INVITE or UPDATE in an anchored dialog: offer, never delete
    BYE = "bye"  # the end of an anchored dialog: delete once answered


@dataclass(slots=True)
class CallMedia:
    """The anchoring of one forwarded request (``Fork.media``)."""

    kind: Kind
    call_id: str
    from_tag: str
    to_tag: str | None = None
    direct: bool = False  # the offerer sent the request itself, no proxy between us
    offering: bool = False  # the ng offer is in flight
    anchored: bool = False  # the relay took the offer: answers go to it too
    answers: dict[tuple[str, bytes], asyncio.Future[bytes]] = field(default_factory=dict)


class MediaAnchor:
    """The proxy's side of the relay: which calls, and the ng commands for them."""

    def __init__(self, client: NgClient, mode: str) -> None:
        self.client = client
        self.mode = mode
        self.commands: Counter[str] = Counter()  # ng commands sent, by name
        self.failures = 0  # ng commands that failed (the call went on un-anchored)

    @classmethod
    def from_settings(cls, proxy: Any) -> MediaAnchor | None:
        """The anchor of a ``[proxy]`` section; None when there is nothing to anchor."""
        if not proxy.media_relay or proxy.anchor_media == "never":
            return None
        return cls(NgClient(*split_host_port(proxy.media_relay)), proxy.anchor_media)

    def close(self) -> None:
        self.client.close()

    # -- what a request needs ----------------------------------------------------------------
    def plan(
        self,
        request: Request,
        source: Address,
        plan: Plan,
        ours: dict[str, str] | None,
        *,
        trusted: bool,
    ) -> CallMedia | None:
        """The anchoring ``request`` calls for, if any; cheap when none (no SDP is parsed)."""
        method = request.method
        to_tag = request.to.tag
        if to_tag is not None:
            if ours is None or ANCHORED not in ours:
                return None
            if method == "BYE":
                return _call_media(Kind.BYE, request, trusted)
            if method in OFFER_METHODS and has_sdp(request):
                return _call_media(Kind.REOFFER, request, trusted)
            return None
        if method != "INVITE" or not has_sdp(request):
            return None
        if not wants_anchoring(self.mode, request, source, plan, trusted=trusted):
            return None
        return _call_media(Kind.CALL, request, trusted)

    # -- ng ---------------------------------------------------------------------------------
    def offer(self, media: CallMedia, request: Request, source: Address) -> asyncio.Future[bytes]:
        """The request's SDP to the relay; its anchored SDP comes back."""
        media.offering = True
        self.commands["offer"] += 1
        flags = source_flags(request, source, direct=media.direct)
        # A phone's SRTP is ended at the relay and the callee offered SRTP of its own:
        # each side has its own keys, and only authentic packets latch.
        flags |= srtp_flags(request.body, "RTP/SAVP")
        return self.client.offer(
            media.call_id, media.from_tag, request.body, to_tag=media.to_tag, **flags
        )

    def offered(self, media: CallMedia, request: Request, future: asyncio.Future[bytes]) -> bool:
        """Put the anchored offer in ``request``; False (and a warning) if the relay failed."""
        media.offering = False
        body = self._result(future, media)
        if body is None:
            return False
        request.body = body
        media.anchored = True
        return True

    def answer(
        self, media: CallMedia, response: Response, source: Address, *, direct: bool
    ) -> asyncio.Future[bytes]:
        """The answer in ``response`` to the relay, once per distinct answer: a 18x's
        SDP repeated in the 200, and every 2xx retransmission, reuse the first's.
        ``direct``: the response came on the answerer's own registered flow."""
        to_tag = response.to.tag or ""
        key = (to_tag, response.body)
        future = media.answers.get(key)
        if future is None:
            flags = source_flags(response, source, direct=direct)
            self.commands["answer"] += 1
            future = self.client.answer(
                media.call_id, media.from_tag, to_tag, response.body, **flags
            )
            media.answers[key] = future
        return future

    def answered(self, media: CallMedia, response: Response, future: asyncio.Future[bytes]) -> None:
        """Put the anchored answer in ``response`` (left as it is if the relay failed)."""
        body = self._result(future, media)
        if body is not None:
            response.body = body

    def delete(self, media: CallMedia) -> None:
        """End the call's media at the relay; its figures are logged when the reply comes."""
        self.commands["delete"] += 1
        future = self.client.delete(media.call_id, media.from_tag)
        future.add_done_callback(lambda done: self._deleted(media, done))

    def _deleted(self, media: CallMedia, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self.failures += 1
            event(log, "media_delete_failed", logging.WARNING, call_id=media.call_id, error=error)
            return
        event(log, "media_ended", call_id=media.call_id, packets=packets(future.result()))

    def _result(self, future: asyncio.Future[bytes], media: CallMedia) -> bytes | None:
        if future.cancelled():
            return None
        error = future.exception()
        if error is None:
            return future.result()
        self.failures += 1
        reason = error.reason if isinstance(error, NgError) else repr(error)
        event(log, "media_not_anchored", logging.WARNING, call_id=media.call_id, error=reason)
        return None


def _call_media(kind: Kind, request: Request, trusted: bool) -> CallMedia:
    direct = not trusted and _one_via(request)
    return CallMedia(kind, request.call_id, request.from_.tag or "", request.to.tag, direct)


def _one_via(request: Request) -> bool:
    vias = request.headers.get_all("via")
    return len(vias) == 1 and "," not in vias[0]


# -- the policy ------------------------------------------------------------------------------
def wants_anchoring(
    mode: str, request: Request, source: Address, plan: Plan, *, trusted: bool
) -> bool:
    """Whether a new call's media goes through the relay (see the module's doc)."""
    if mode == "never" or plan.off_net:
        return False
    if mode == "always":
        return True
    if any(target.nat for group in plan.groups for target in group):
        return True
    return not trusted and caller_behind_nat(request, source)


def caller_behind_nat(request: Request, source: Address) -> bool:
    """A UA that sent its request itself (one Via) from another address than its
    Via or its SDP names: a NAT rewrote the source (RFC 3581 §1)."""
    if not _one_via(request):
        return False  # through another proxy: the source is that proxy
    return sent_from_elsewhere(request.via, request.body, source)
