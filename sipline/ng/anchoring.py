"""What roles that anchor media through a relay share (the proxy's ``proxy.media``,
the B2BUA's ``b2bua.media``): is a party behind NAT, the ng flags that tell the
relay where a party's signalling came from (whose RTP it may latch to), and the
packet counts of a call for the log.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sipline.sip.address import DEFAULT_PORT, Address
from sipline.sip.headers import Via
from sipline.sip.message import Message

SDP = "application/sdp"


def has_sdp(message: Message) -> bool:
    return bool(message.body) and message.content_type == SDP


def connection_address(body: bytes) -> str | None:
    """The address of the first ``c=`` line (RFC 4566 §5.7), without parsing the rest."""
    at = body.find(b"\nc=")
    if at < 0:
        return None
    line = body[at + 3 : body.find(b"\n", at + 3)].decode("ascii", "replace").split()
    return line[2].partition("/")[0] if len(line) >= 3 else None


def sent_from_elsewhere(via: Via, body: bytes, source: Address) -> bool:
    """Whether a UA's own Via or SDP names another address than ``source``, where its
    message really came from: a NAT rewrote the source (RFC 3581 §1)."""
    if via.host.strip("[]").lower() != source.host.lower():
        return True
    # A stream's source port is ephemeral; a datagram's is where the UA listens.
    if source.transport == "UDP" and (via.port or DEFAULT_PORT["UDP"]) != source.port:
        return True
    address = connection_address(body)
    return address is not None and not unspecified(address) and address != source.host


def source_flags(message: Message, source: Address, *, direct: bool) -> dict[str, Any]:
    """``received_from`` for a message the party sent itself (``direct``), else none."""
    return received_from(message.body, source) if direct else {}


def received_from(sdp: bytes, source: Address) -> dict[str, Any]:
    """ng flags naming ``source``, where the party's message came from: the relay lets
    RTP from that host latch the party's streams (behind NAT its RTP comes from there,
    not from the SDP's address), and when its SDP names another address the relay
    sends there (flag SIP-source-address) until the party's RTP is latched."""
    family = "IP6" if ":" in source.host else "IP4"
    flags: dict[str, Any] = {"received_from": [family, source.host]}
    if connection_address(sdp) not in (None, source.host):
        flags["flags"] = ["SIP-source-address"]
    return flags


def offers_srtp(sdp: bytes) -> bool:
    """The SDP offers SDES-SRTP (an ``RTP/SAVP`` or ``RTP/SAVPF`` stream with ``a=crypto``)."""
    return b" RTP/SAVP" in sdp and b"\na=crypto:" in sdp


def srtp_flags(sdp: bytes, toward: str) -> dict[str, Any]:
    """ng flags asking the relay to take the offer's SRTP (RFC 4568) and give the
    other side ``toward`` ("RTP/SAVP": SRTP under keys of its own; "RTP/AVP": RTP);
    none for an offer without SRTP."""
    return {"transport_protocol": toward} if offers_srtp(sdp) else {}


def packets(stats: dict[str, Any]) -> str:
    """``tag:packets`` of each party's RTP in a delete or query reply, for the log."""
    out = []
    for tag, party in sorted((stats.get("tags") or {}).items()):
        count = sum(
            stream.get("stats", {}).get("packets", 0)
            for media in party.get("medias", [])
            for stream in media.get("streams", [])
            if "RTCP" not in stream.get("flags", [])
        )
        out.append(f"{tag}:{count}")
    return ",".join(out)


def unspecified(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified  # 0.0.0.0: on hold (RFC 3264 §8.4)
    except ValueError:
        return False  # a host name: leave it to the Via
