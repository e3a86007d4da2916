"""SDES-SRTP at the relay (RFC 4568 ``a=crypto``, RFC 3711), the cipher work done by
libsrtp through pylibsrtp.

The relay bridges SRTP on one side to RTP or SRTP on the other when an ng
offer asks for a ``transport-protocol`` (rtpengine's flag): the offerer's
``a=crypto`` key decrypts what it sends, a key of ours (in the SDP it gets
back) encrypts what it receives, and the other side gets the protocol asked
for: plain RTP without ``a=crypto``, or SRTP with fresh keys of ours, one
per suite (``SDES`` flags ``no-<suite>``, ``only-<suite>``, ``off`` choose
them); its answer names the one it took and its own key. Without a
``transport-protocol`` the SDP and packets pass untouched, as before.

A packet that does not authenticate (wrong key, altered, replayed) is
dropped and counted, and never latches a stream.
"""

from __future__ import annotations

import secrets
from base64 import b64decode, b64encode
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pylibsrtp import Error, Policy, Session

if TYPE_CHECKING:
    from relay.sessions import MediaStreams
    from sipline.sip.sdp import Media, SessionDescription

__all__ = ["SECURE", "Crypto", "Error", "bridge_answer", "bridge_offer", "suites"]

# SDES suite -> (libsrtp profile, master key + salt bytes): RFC 4568 §6.2, RFC 7714 §12.
SUITES: dict[str, tuple[int, int]] = {
    "AES_CM_128_HMAC_SHA1_80": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    "AES_CM_128_HMAC_SHA1_32": (Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 30),
    "AEAD_AES_128_GCM": (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
    "AEAD_AES_256_GCM": (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
}
SECURE = frozenset(("RTP/SAVP", "RTP/SAVPF"))


@dataclass(slots=True, frozen=True)
class Crypto:
    """One ``a=crypto`` line: its tag, suite and inline master key and salt."""

    tag: int
    suite: str
    key: bytes

    @classmethod
    def parse(cls, value: str) -> Crypto | None:
        """``<tag> <suite> inline:<key||salt>[|lifetime]``; None for what we cannot
        use (another suite, a key of the wrong length, an MKI, several keys)."""
        fields = value.split()
        if len(fields) < 3 or not fields[0].isdigit() or fields[1] not in SUITES:
            return None
        params = fields[2]
        if not params.startswith("inline:") or ";" in params:
            return None
        inline = params[7:].split("|")
        if len(inline) > 2 or (len(inline) == 2 and ":" in inline[1]):  # an MKI
            return None
        try:
            key = b64decode(inline[0] + "=" * (-len(inline[0]) % 4), validate=True)
        except ValueError:
            return None
        if len(key) != SUITES[fields[1]][1]:
            return None
        return cls(int(fields[0]), fields[1], key)

    @classmethod
    def fresh(cls, suite: str, tag: int) -> Crypto:
        return cls(tag, suite, secrets.token_bytes(SUITES[suite][1]))

    def line(self) -> str:
        return f"{self.tag} {self.suite} inline:{b64encode(self.key).decode('ascii')}"


def offered(values: list[str]) -> list[Crypto]:
    """The usable ``a=crypto`` values of a media section, in their order."""
    return [c for c in (Crypto.parse(v) for v in values) if c is not None]


def suites(flags: object) -> list[str]:
    """The suites we offer, by the ng ``SDES`` flags (rtpengine's): ``off`` none,
    ``only-<suite>`` those named, ``no-<suite>`` all but those."""
    names = list(SUITES)
    if not isinstance(flags, list):
        return names
    words = [f for f in flags if isinstance(f, str)]
    if "off" in words:
        return []
    only = [w[5:] for w in words if w.startswith("only-") and w[5:] in SUITES]
    if only:
        names = [n for n in names if n in only]
    return [n for n in names if f"no-{n}" not in words]


def choose(theirs: list[Crypto], ours: list[Crypto]) -> tuple[Crypto, Crypto] | None:
    """The answerer's key and ours for the tag it took (RFC 4568 §7.1.2)."""
    by_tag = {c.tag: c for c in ours}
    for crypto in theirs:
        mine = by_tag.get(crypto.tag)
        if mine is not None and mine.suite == crypto.suite:
            return crypto, mine
    return None


Transform = Callable[[bytes], bytes]


def inbound(crypto: Crypto, rtcp: bool) -> Transform:
    """Decrypts (and authenticates) what the party keyed with ``crypto`` sends."""
    session = Session(Policy(crypto.key, Policy.SSRC_ANY_INBOUND, 0, SUITES[crypto.suite][0]))
    return session.unprotect_rtcp if rtcp else session.unprotect


def outbound(crypto: Crypto, rtcp: bool) -> Transform:
    """Encrypts what goes to the party with our key ``crypto``."""
    session = Session(Policy(crypto.key, Policy.SSRC_ANY_OUTBOUND, 0, SUITES[crypto.suite][0]))
    return session.protect_rtcp if rtcp else session.protect


def _withheld(data: bytes) -> bytes:
    raise Error("no key from this party yet")


def _key(media: MediaStreams, theirs: Crypto | None, ours: Crypto | None) -> None:
    """Key the party's streams: ``theirs`` decrypts what it sends, ``ours`` encrypts
    what it gets; both None: plain RTP."""
    media.ours = ours
    for stream, rtcp in ((media.rtp, False), (media.rtcp, True)):
        stream.unprotect = inbound(theirs, rtcp) if theirs is not None else None
        stream.protect = outbound(ours, rtcp) if ours is not None else None


def _set_crypto(media: Media, cryptos: list[Crypto]) -> None:
    media.set_attribute("crypto", None)
    media.lines.extend(("a", f"crypto:{c.line()}") for c in cryptos)


def bridge_offer(
    sdp: SessionDescription,
    offerer: list[MediaStreams],
    answerer: list[MediaStreams],
    message: dict[str, Any],
) -> None:
    """An offer that asks for a ``transport-protocol``: key the offerer's SRTP and
    rewrite ``sdp`` (the offerer's) for the answerer in that protocol."""
    target = message.get("transport-protocol")
    if not isinstance(target, str) or not target.startswith("RTP/"):
        return
    names = suites(message.get("SDES"))
    for media, mine, theirs in zip(sdp.media, offerer, answerer, strict=False):
        if media.port == 0:
            continue
        if media.proto in SECURE:
            keys = offered(media.attributes("crypto"))
            if not keys:
                continue  # no key we can use (DTLS, an MKI): relayed as it is
            key = keys[0]
            ours = mine.ours if mine.ours is not None and mine.ours.suite == key.suite else None
            _key(mine, key, ours or Crypto.fresh(key.suite, key.tag))
        else:
            _key(mine, None, None)
        mine.translated = True
        theirs.translated = True
        theirs.protocol = target
        if target in SECURE and names:
            theirs.offered = [Crypto.fresh(name, tag) for tag, name in enumerate(names, 1)]
            for stream in theirs.streams():
                stream.unprotect = _withheld  # until its answer gives its key
            _set_crypto(media, theirs.offered)
            media.proto = target
        else:
            theirs.offered = []
            _key(theirs, None, None)
            media.set_attribute("crypto", None)
            media.proto = target if target not in SECURE else "RTP/AVP"


def bridge_answer(
    sdp: SessionDescription, answerer: list[MediaStreams], offerer: list[MediaStreams]
) -> None:
    """The answer to a bridged offer: key the answerer's SRTP by the suite it took
    and rewrite ``sdp`` (the answerer's) for the offerer in its own protocol."""
    for media, mine, theirs in zip(sdp.media, answerer, offerer, strict=False):
        if not mine.translated:
            continue
        taken = choose(offered(media.attributes("crypto")), mine.offered) if mine.offered else None
        if taken is not None:
            _key(mine, *taken)
        else:
            _key(mine, None, None)  # it answered plain RTP (or nothing we offered)
        media.proto = theirs.protocol
        _set_crypto(media, [theirs.ours] if theirs.ours is not None else [])
