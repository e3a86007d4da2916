"""The rtpengine "ng" control protocol over the session table.

A request is ``<cookie> <bencoded dictionary>`` in one UDP datagram; the reply
repeats the cookie. Clients retransmit over UDP, so replies are kept per
cookie for ``COOKIE_TTL`` seconds and a repeated cookie gets the same reply
without running the command twice (what rtpengine does). Commands: ping,
offer, answer, delete, query, list. Replies carry ``result`` ("ok", "pong" or
"error" with ``error-reason``) and, for query and delete, the call statistics
in the shape rtpengine gives them (``tags`` → ``medias`` → ``streams`` with
``stats``, and ``totals``), plus per-SSRC quality (loss, jitter, MOS) that the
relay measures from the RTP itself.

An offer or answer whose SDP has more than ``max_media`` media sections is
refused before its SDP is parsed: nothing is allocated (one offer of 2,400
m-lines took 4,800 port pairs). ``received-from`` names the host the party's
SIP came from, and that host may latch the party's streams beside the SDP's
(relay.rtp); with the flag ``SIP-source-address`` it also replaces the SDP's
address as where to send until the party's RTP is latched (rtpengine's
meaning of both). ``transport-protocol`` (with ``SDES``) bridges SDES-SRTP on
one side to RTP or SRTP on the other (relay.srtp).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from relay.anchor import MediaSpec, anchor, describe
from relay.refusals import Refusals
from relay.rtp import Endpoint, Stream
from relay.sessions import (
    Call,
    LimitReached,
    MediaStreams,
    Party,
    RelayError,
    SessionTable,
)
from relay.srtp import bridge_answer, bridge_offer
from sipline.logs import event
from sipline.ng.bencode import BencodeError, decode, encode
from sipline.sip.errors import ParseError
from sipline.sip.sdp import SessionDescription

__all__ = ["COOKIE_TTL", "MAX_MEDIA", "NgHandler"]

log = logging.getLogger("sipline.relay.ng")

COOKIE_TTL = 30.0
MAX_COOKIES = 50_000
LIST_LIMIT = 32
NOT_FOUND = "Call-ID not found or tags didn't match"
MAX_MEDIA = 8
TOO_MANY_MEDIA = "Too many media sections"

Reply = dict[str, Any]
CallEnded = Callable[[Call, str], None]


class NgHandler:
    """Turns ng datagrams into replies, driving ``table``; ``address`` goes into rewritten SDP."""

    def __init__(
        self,
        table: SessionTable,
        address: str,
        *,
        on_end: CallEnded | None = None,
        cookie_ttl: float = COOKIE_TTL,
        max_media: int = MAX_MEDIA,
        refusals: Refusals | None = None,
    ) -> None:
        self.table = table
        self.address = address
        self.on_end = on_end
        self.cookie_ttl = cookie_ttl
        self.max_media = max_media
        self.refusals = refusals or Refusals()
        self._replies: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self._commands: dict[str, Callable[[dict[str, Any]], Reply]] = {
            "ping": self._ping,
            "offer": self._offer,
            "answer": self._answer,
            "delete": self._delete,
            "query": self._query,
            "list": self._list,
        }

    def datagram(self, data: bytes, peer: Any = None) -> bytes | None:
        """The reply to one request datagram from ``peer``; None for one without a
        cookie (dropped)."""
        cookie, space, body = data.partition(b" ")
        if not space or not cookie:
            return None
        now = self.table.clock()
        self._forget_cookies(now)
        cached = self._replies.get(cookie)
        if cached is not None:
            return cached[1]
        try:
            message = decode(body)
        except BencodeError:
            reply = _error("Could not decode bencode dictionary")
        else:
            reply = self.command(message, peer)
        out = cookie + b" " + encode(reply)
        self._replies[cookie] = (now + self.cookie_ttl, out)
        if len(self._replies) > MAX_COOKIES:
            self._replies.popitem(last=False)
        return out

    def _forget_cookies(self, now: float) -> None:
        replies = self._replies
        while replies:
            expiry, _ = next(iter(replies.values()))
            if expiry > now:
                break
            replies.popitem(last=False)

    def command(self, message: Any, peer: Any = None) -> Reply:
        """The reply dictionary for one decoded request (from ``peer``, for the log);
        never raises for bad input."""
        if not isinstance(message, dict):
            return _error("Could not decode bencode dictionary")
        name = message.get("command")
        if not isinstance(name, str):
            return _error('Dictionary contains no key "command"')
        handler = self._commands.get(name)
        if handler is None:
            return _error("Unrecognized command")
        try:
            return handler(message)
        except LimitReached as exc:
            source = _received_from(message) or peer or "-"
            call_id = message.get("call-id")
            self.refusals.refuse("offers_refused", source, call_id=call_id, reason=str(exc))
            return _error(str(exc))
        except RelayError as exc:
            return _error(str(exc))

    # -- commands ------------------------------------------------------------------------

    def _ping(self, message: dict[str, Any]) -> Reply:
        return {"result": "pong"}

    def _offer(self, message: dict[str, Any]) -> Reply:
        call_id, from_tag = _field(message, "call-id"), _field(message, "from-tag")
        sdp = _sdp(message, self.max_media)
        specs = _specs(sdp, message)
        to_tag = _optional(message, "to-tag")
        source = _received_from(message)
        ports = self.table.offer(call_id, from_tag, to_tag, specs, source)
        party = self.table.calls[call_id].party(from_tag)
        if party is not None and party.peer is not None:
            bridge_offer(sdp, party.media, party.peer.media, message)
        event(log, "ng_offer", logging.DEBUG, call_id=call_id, from_tag=from_tag, ports=ports)
        return {"result": "ok", "sdp": self._anchor(sdp, ports, message)}

    def _answer(self, message: dict[str, Any]) -> Reply:
        call_id, from_tag = _field(message, "call-id"), _field(message, "from-tag")
        to_tag = _field(message, "to-tag")
        sdp = _sdp(message, self.max_media)
        specs, source = _specs(sdp, message), _received_from(message)
        ports = self.table.answer(call_id, from_tag, to_tag, specs, source)
        party = self.table.calls[call_id].party(from_tag)
        if party is not None and party.peer is not None:
            bridge_answer(sdp, party.peer.media, party.media)
        event(log, "ng_answer", logging.DEBUG, call_id=call_id, to_tag=to_tag, ports=ports)
        return {"result": "ok", "sdp": self._anchor(sdp, ports, message)}

    def _delete(self, message: dict[str, Any]) -> Reply:
        call_id = _field(message, "call-id")
        call = self.table.delete(call_id, _optional(message, "from-tag"))
        if call is None:
            # rtpengine answers ok with a warning: the call may already be gone (timeout).
            return {"result": "ok", "warning": NOT_FOUND}
        event(log, "call_deleted", call_id=call_id)
        if self.on_end is not None:
            self.on_end(call, "deleted")
        return {"result": "ok", **self.call_stats(call)}

    def _query(self, message: dict[str, Any]) -> Reply:
        call = self.table.get(_field(message, "call-id"))
        if call is None:
            raise RelayError("Unknown call-id")
        return {"result": "ok", **self.call_stats(call)}

    def _list(self, message: dict[str, Any]) -> Reply:
        limit = message.get("limit", LIST_LIMIT)
        if isinstance(limit, str) and limit.isdigit():
            limit = int(limit)
        if not isinstance(limit, int) or limit < 0:
            raise RelayError("invalid limit, must be >= 0")
        return {"result": "ok", "calls": list(self.table.calls)[:limit]}

    def _anchor(self, sdp: SessionDescription, ports: list[int | None], message: dict) -> str:
        replace = message.get("replace")
        origin = isinstance(replace, list) and "origin" in replace
        body = anchor(sdp, self.address, ports, replace_origin=origin)
        return body.decode("utf-8", "surrogateescape")

    # -- statistics ----------------------------------------------------------------------

    def call_stats(self, call: Call) -> Reply:
        """``created`` … ``totals`` of a query reply for ``call``."""
        to_wall = self.table.wall() - self.table.clock()
        totals = {"RTP": _counters(), "RTCP": _counters()}
        ssrc: dict[str, Any] = {}
        tags = {}
        for number, party in enumerate(call.parties, 1):
            name = party.tag or f"<untagged {number}>"
            tags[name] = self._party(party, to_wall, totals, ssrc)
        return {
            "created": int(call.created),
            "created_us": int(call.created % 1 * 1_000_000),
            "last signal": int(call.last_signal),
            "SSRC": ssrc,
            "tags": tags,
            "totals": totals,
        }

    def _party(self, party: Party, to_wall: float, totals: dict, ssrc: dict) -> Reply:
        links = [{"tag": party.peer.tag, "type": "offer/answer"}] if party.peer else []
        return {
            "tag": party.tag,
            "created": int(party.created),
            "medias": [self._media(m, to_wall, totals, ssrc) for m in party.media],
            "subscriptions": links,
            "subscribers": links,
        }

    def _media(self, media: MediaStreams, to_wall: float, totals: dict, ssrc: dict) -> Reply:
        out: Reply = {
            "index": media.index,
            "type": media.kind,
            "protocol": media.protocol,
            "flags": ["initialized", "send", "recv"],
            "streams": [self._stream(s, to_wall, totals) for s in media.streams()],
        }
        stats = media.rtp.stats
        if stats is not None and stats.ssrc is not None:
            out["codec"] = stats.encoding
            ssrc[str(stats.ssrc)] = _quality(media.rtp)
        return out

    def _stream(self, stream: Stream, to_wall: float, totals: dict) -> Reply:
        flags = ["RTCP" if stream.rtcp else "RTP"]
        if stream.endpoint is not None:
            flags.append("filled")
        if stream.latched:
            flags.append("confirmed")
        last = stream.last_packet
        out: Reply = {
            "local address": self.address,
            "local port": stream.local_port,
            "family": _family(self.address),
            "last packet": int(to_wall + last) if last is not None else int(self.table.wall()),
            "flags": flags,
            "stats": {"packets": stream.packets, "bytes": stream.bytes, "errors": stream.errors},
        }
        if stream.endpoint is not None:
            out["endpoint"] = _endpoint(stream.endpoint)
        if stream.advertised is not None:
            out["advertised endpoint"] = _endpoint(stream.advertised)
        rtp = stream.stats
        if rtp is not None and rtp.ssrc is not None:
            out["SSRC"] = rtp.ssrc
            out["stats"].update(_rtp_figures(stream))
        total = totals["RTCP" if stream.rtcp else "RTP"]
        total["packets"] += stream.packets
        total["bytes"] += stream.bytes
        total["errors"] += stream.errors
        return out


def _rtp_figures(stream: Stream) -> Reply:
    """Our additions to a stream's ``stats``; bencode has no floats, so ms and MOS x 10."""
    stats = stream.stats
    assert stats is not None
    return {
        "lost": stats.lost,
        "expected": stats.expected,
        "jitter": round(stats.jitter_ms),
        "MOS": round(stats.mos() * 10),
    }


def _quality(stream: Stream) -> Reply:
    """An rtpengine SSRC entry, its figures measured from the RTP rather than RTCP reports."""
    stats = stream.stats
    assert stats is not None
    figures = {
        "MOS": round(stats.mos() * 10),
        "round-trip time": 0,
        "round-trip time leg": 0,
        "jitter": round(stats.jitter_ms),
        "packet loss": round(stats.loss_percent),
    }
    return {"cumulative loss": stats.lost, "average MOS": {**figures, "samples": 1}}


def _counters() -> dict[str, int]:
    return {"packets": 0, "bytes": 0, "errors": 0}


def _family(address: str) -> str:
    return "IPv6" if ":" in address else "IPv4"


def _endpoint(endpoint: Endpoint) -> Reply:
    return {"family": _family(endpoint[0]), "address": endpoint[0], "port": endpoint[1]}


def _error(reason: str) -> Reply:
    return {"result": "error", "error-reason": reason}


def _field(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value:
        raise RelayError(f"No {key} in message")
    return value


def _optional(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    return value if isinstance(value, str) and value else None


def _sdp(message: dict[str, Any], max_media: int) -> SessionDescription:
    body = message.get("sdp")
    if not isinstance(body, str) or not body:
        raise RelayError("No SDP body in message")
    # Counted before parsing: an SDP starts with v= (RFC 4566 §5), so every m= follows a newline.
    if body.count("\nm=") > max_media:
        raise LimitReached(TOO_MANY_MEDIA)
    try:
        return SessionDescription.parse(body.encode("utf-8", "surrogateescape"))
    except ParseError:
        raise RelayError("Failed to parse SDP") from None


def _specs(sdp: SessionDescription, message: dict[str, Any]) -> list[MediaSpec]:
    specs = describe(sdp)
    source = _received_from(message)
    flags = message.get("flags")
    if source is not None and isinstance(flags, list) and any(f in _SIP_SOURCE for f in flags):
        # The address the SIP came from replaces the SDP's (with its ports).
        for spec in specs:
            if spec.rtp is not None and spec.rtcp is not None:
                spec.rtp = (source, spec.rtp[1])
                spec.rtcp = (source, spec.rtcp[1])
    return specs


_SIP_SOURCE = frozenset(("SIP-source-address", "SIP source address", "sip-source-address"))


def _received_from(message: dict[str, Any]) -> str | None:
    """The host of ``received-from`` ([family, address]): where the party's SIP came from."""
    received = message.get("received-from")
    if isinstance(received, list) and len(received) == 2:
        address = received[1]
        if isinstance(address, str) and address:
            return address
    return None
