"""Media anchoring at the B2BUA: a call's media through the relay when it needs it.

The relay is driven over rtpengine's ng protocol (``sipline.ng.client``), one
ng call per B2BUA call, named by the A leg's Call-ID and tags: the caller's
offer (the INVITE's SDP) goes to the relay as ng ``offer`` and the B leg
carries the relay's SDP; the callee's answer (in a 18x or 2xx) goes as ng
``answer`` and the A leg carries the relay's SDP; ``delete`` when the call
ends. The SDP origin (``o=``) is rewritten too, so the callee's side sees
nothing of the caller's network.

Which calls (``b2bua.anchor_media``): ``always``; ``nat``, those whose caller
is behind NAT: its own Via (the bottom one, which the proxy stamped with
``received``/``rport``, RFC 3581) or its SDP names another address than the
one it really sent from; ``never`` (or ``media_relay = ""``): none, and
``from_settings`` gives None. Calls come through the proxy, so the caller's
real address is read from that Via (``caller``), not from the packet source.
A caller offering SDES-SRTP (``RTP/SAVP`` with ``a=crypto``) is anchored
whatever its NAT, with the ng ``transport-protocol`` of ``carrier_srtp``: the
relay ends its SRTP and the B leg carries RTP (or SRTP under the relay's keys).

A relay that fails or does not answer fails the returned future (an
``NgError``): the call goes on un-anchored, which is the caller's choice to
make (``failures`` counts them).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sipline.config import split_host_port
from sipline.logs import event
from sipline.ng.anchoring import (
    has_sdp,
    offers_srtp,
    packets,
    received_from,
    sent_from_elsewhere,
    srtp_flags,
)
from sipline.ng.client import NgClient, NgError
from sipline.peers import TrustedPeers
from sipline.sip.address import DEFAULT_PORT, Address
from sipline.sip.message import Request

log = logging.getLogger("sipline.b2bua.media")

# The relay puts its own address in o= as well as in c= (topology hiding toward carriers).
REPLACE = ["origin"]


class LegMedia:
    """The B2BUA's side of the relay (see the module's doc)."""

    def __init__(
        self, client: NgClient, mode: str, trusted: Iterable[str] = (), srtp_toward: str = "RTP/AVP"
    ) -> None:
        self.client = client
        self.mode = mode
        # What the far side gets of a caller's SRTP, which the relay ends (b2bua.carrier_srtp).
        self.srtp_toward = srtp_toward
        # Peers (the proxies) whose packet source says nothing of the caller's address.
        self.trusted = TrustedPeers(trusted)
        self.commands: Counter[str] = Counter()  # ng commands sent, by name
        self.failures = 0  # ng commands that failed

    @classmethod
    def from_settings(cls, b2bua: Any) -> LegMedia | None:
        """The anchoring of a ``[b2bua]`` section; None when there is nothing to anchor."""
        if not b2bua.media_relay or b2bua.anchor_media == "never":
            return None
        client = NgClient(*split_host_port(b2bua.media_relay))
        toward = "RTP/SAVP" if b2bua.carrier_srtp else "RTP/AVP"
        return cls(client, b2bua.anchor_media, b2bua.trusted, toward)

    def close(self) -> None:
        self.client.close()

    # -- which calls ---------------------------------------------------------------------------
    def wants(self, request: Request, source: Address) -> bool:
        """Whether the media of this new call goes through the relay; an INVITE without
        SDP (its offer would come in the ACK) is never anchored."""
        if not has_sdp(request):
            return False
        if self.mode == "always" or offers_srtp(request.body):
            return True  # a caller's SRTP is ended at the relay, whatever its NAT
        return sent_from_elsewhere(request.vias[-1], request.body, caller(request, source))

    def caller(self, request: Request, source: Address) -> Address:
        """Where the caller really sent its INVITE from (see ``caller``)."""
        return caller(request, source)

    # -- ng ------------------------------------------------------------------------------------
    def offer(
        self,
        call_id: str,
        from_tag: str,
        sdp: bytes,
        source: Address | None = None,
        *,
        to_tag: str | None = None,
    ) -> asyncio.Future[bytes]:
        """``from_tag``'s offer anchored: the SDP for the other leg. ``source``: where the
        offerer really is (``caller(request, packet source)``); when that is not our
        peer's address and not the SDP's, the relay sends there until the offerer's RTP
        arrives. A re-offer from the callee's side passes the callee's tag as
        ``from_tag`` and the caller's as ``to_tag``."""
        flags: dict[str, Any] = {"replace": REPLACE, **srtp_flags(sdp, self.srtp_toward)}
        if source is not None and not self.trusted.trusts(source):
            flags |= received_from(sdp, source)
        if to_tag is not None:
            flags["to_tag"] = to_tag
        return self._count("offer", self.client.offer(call_id, from_tag, sdp, **flags), call_id)

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: bytes) -> asyncio.Future[bytes]:
        """``to_tag``'s answer to ``from_tag``'s offer anchored: the SDP for the offerer's leg."""
        future = self.client.answer(call_id, from_tag, to_tag, sdp, replace=REPLACE)
        return self._count("answer", future, call_id)

    def delete(self, call_id: str, from_tag: str) -> None:
        """End the call's media at the relay; its packet counts are logged when it replies."""
        future = self.client.delete(call_id, from_tag)
        self._count("delete", future, call_id)
        future.add_done_callback(lambda done: _deleted(call_id, done))

    def _count(
        self, command: str, future: asyncio.Future[Any], call_id: str
    ) -> asyncio.Future[Any]:
        self.commands[command] += 1
        future.add_done_callback(lambda done: self._failed(command, call_id, done))
        return future

    def _failed(self, command: str, call_id: str, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is None:
            return
        self.failures += 1
        error = future.exception()
        reason = error.reason if isinstance(error, NgError) else repr(error)
        event(log, "media_failed", logging.WARNING, command=command, call_id=call_id, error=reason)


def caller(request: Request, source: Address) -> Address:
    """Where the caller really sent ``request`` from: ``source`` when it came straight
    from the caller (one Via), else what the caller's own Via (the bottom one) says
    after the first proxy stamped it: ``received`` and ``rport`` (RFC 3581 §4)."""
    vias = request.vias
    if len(vias) == 1:
        return source
    via = vias[-1]
    port = via.rport or via.port or DEFAULT_PORT.get(via.transport, 5060)
    return Address(via.transport, via.received or via.host.strip("[]"), port)


def _deleted(call_id: str, future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        event(log, "media_ended", call_id=call_id, packets=packets(future.result()))
