"""Media anchoring in SDP: read where a party receives, rewrite the body to point at the relay.

The relay puts itself between the parties by rewriting each SDP it relays:
the connection address becomes the relay's (session and media ``c=``), each
accepted ``m=`` line gets the local RTP port, and ``a=rtcp`` names the RTCP
port next to it (RFC 3605). ICE attributes go: the relay does not take part in
ICE, and candidates would let the parties bypass it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.rtp import Endpoint
from sipline.sip.sdp import Media, SessionDescription

__all__ = ["MediaSpec", "anchor", "describe"]

_ICE_ATTRIBUTES = (
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
)
_UNSPECIFIED = frozenset(("0.0.0.0", "::"))


@dataclass(slots=True)
class MediaSpec:
    """One ``m=`` section as the relay needs it."""

    kind: str
    protocol: str
    rtp: Endpoint | None
    """Where the party receives RTP; None for a rejected stream or an unspecified address."""
    rtcp: Endpoint | None
    rejected: bool = False
    rates: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    """Clock rates and encoding names of the a=rtpmap payload types."""


def describe(sdp: SessionDescription) -> list[MediaSpec]:
    """What each media section of ``sdp`` says about where its party receives."""
    return [_spec(sdp, m) for m in sdp.media]


def _spec(sdp: SessionDescription, media: Media) -> MediaSpec:
    rates, names = _rtpmap(media)
    address = sdp.media_address(media)
    rejected = media.port == 0
    if rejected or address is None or address in _UNSPECIFIED:
        # RFC 3264 §8.4: c=0.0.0.0 put a stream on hold in old offers; only latching
        # (to the host the signalling came from, relay.rtp) can find the party then.
        return MediaSpec(media.kind, media.proto, None, None, rejected, rates, names)
    rtcp = media.rtcp
    if rtcp is None:
        rtcp_endpoint = (address, media.port + 1)  # RFC 3550 §11: the next port up
    else:
        port, connection = rtcp
        rtcp_endpoint = (connection.address if connection else address, port)
    return MediaSpec(
        media.kind, media.proto, (address, media.port), rtcp_endpoint, False, rates, names
    )


def _rtpmap(media: Media) -> tuple[dict[int, int], dict[int, str]]:
    rates: dict[int, int] = {}
    names: dict[int, str] = {}
    for value in media.attributes("rtpmap"):
        # a=rtpmap:<payload type> <encoding name>/<clock rate>[/<parameters>] (RFC 4566 §6)
        pt, _, encoding = value.partition(" ")
        parts = encoding.strip().split("/")
        if pt.isdigit() and len(parts) >= 2 and parts[1].isdigit():
            rates[int(pt)] = int(parts[1])
            names[int(pt)] = parts[0]
    return rates, names


def anchor(
    sdp: SessionDescription,
    address: str,
    ports: list[int | None],
    *,
    replace_origin: bool = False,
) -> bytes:
    """``sdp`` rewritten so that media ``i`` goes to ``address:ports[i]`` (None: left rejected)."""
    addrtype = "IP6" if ":" in address else "IP4"
    sdp.rewrite_connection(address, addrtype)
    if replace_origin:
        sdp.origin.addrtype = addrtype
        sdp.origin.address = address
    _strip_ice(sdp)
    for media, port in zip(sdp.media, ports, strict=True):
        _strip_ice(media)
        if port is None:
            continue
        media.port = port
        media.set_rtcp(port + 1)
    return sdp.serialise()


def _strip_ice(section: SessionDescription | Media) -> None:
    for name in _ICE_ATTRIBUTES:
        section.set_attribute(name, None)
