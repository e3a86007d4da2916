"""Quality of an RTP stream measured from its packets: loss, jitter and a MOS estimate.

``RtpStats.update`` is called for every relayed packet, so it reads the
header with one ``struct`` call and keeps plain attributes. Loss follows
RFC 3550 §A.1/§A.3 (extended highest sequence number, 16-bit wrap, resync
after a large jump); jitter is the interarrival jitter of RFC 3550 §6.4.1
and §A.8. ``mos`` turns loss, jitter and codec into a MOS with a simplified
ITU-T G.107 E-model.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["Codec", "RtpStats", "codec_for", "mos", "r_factor"]

_unpack = struct.Struct("!BBHII").unpack_from
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
_HALF_TS = 1 << 31
# RFC 3550 §A.1: a jump of up to MAX_DROPOUT is loss, one back of up to
# MAX_MISORDER is reordering; anything else is a restart (confirmed by the next packet).
MAX_DROPOUT = 3000
MAX_MISORDER = 100
DEFAULT_RATE = 8000

# RFC 3551 §6: clock rates of the static payload types (the rest come from a=rtpmap).
STATIC_PAYLOADS: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),  # RFC 3551 §4.5.2: 8000 Hz RTP clock although sampled at 16 kHz
    13: ("CN", 8000),
    18: ("G729", 8000),
    26: ("JPEG", 90000),
    31: ("H261", 90000),
    34: ("H263", 90000),
}
# Payloads that carry no voice: they neither pick the codec nor are timed for jitter.
_NOT_VOICE = frozenset(("TELEPHONE-EVENT", "CN"))


@dataclass(frozen=True, slots=True)
class Codec:
    """E-model parameters of a codec: equipment impairment Ie, loss robustness Bpl."""

    name: str
    ie: float
    bpl: float


# ITU-T G.113 Appendix I (random loss, with packet loss concealment).
_CODECS = {
    "PCMU": Codec("PCMU", 0.0, 25.1),
    "PCMA": Codec("PCMA", 0.0, 25.1),
    "G729": Codec("G729", 11.0, 19.0),
    "G723": Codec("G723", 15.0, 16.1),
}


def codec_for(name: str) -> Codec:
    """Parameters for an encoding name; codecs without published ones count as G.711."""
    return _CODECS.get(name.upper(), Codec(name.upper(), 0.0, 25.1))


def r_factor(codec: Codec, loss_percent: float, delay_ms: float) -> float:
    """G.107 transmission rating with default Ro - Is = 93.2, no echo, A = 0.

    Id uses the Cole–Rosenbluth fit of G.107's delay impairment; Ie-eff is
    G.107 §7.2 (eq. 7-29) with BurstR = 1, that is random loss.
    """
    extra = delay_ms - 177.3
    delay_impairment = 0.024 * delay_ms + (0.11 * extra if extra > 0 else 0.0)
    ppl = max(0.0, loss_percent)
    ie_eff = codec.ie + (95.0 - codec.ie) * ppl / (ppl + codec.bpl)
    return 93.2 - delay_impairment - ie_eff


def mos(codec: Codec, loss_percent: float, delay_ms: float) -> float:
    """MOS-CQE from R (G.107 Annex B, eq. B-4), between 1.0 and 4.5."""
    r = r_factor(codec, loss_percent, delay_ms)
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


class RtpStats:
    """Sequence, loss and jitter tracking for the packets of one relayed stream."""

    __slots__ = (
        "rates",
        "names",
        "voice_pt",
        "ssrc",
        "base_seq",
        "max_seq",
        "cycles",
        "bad_seq",
        "received",
        "received_before",
        "expected_before",
        "pt",
        "rate",
        "transit",
        "jitter",
        "ignored",
    )

    def __init__(
        self, rates: dict[int, int] | None = None, names: dict[int, str] | None = None
    ) -> None:
        """``rates`` and ``names`` of dynamic payload types, from the SDP's a=rtpmap."""
        self.rates = rates or {}
        self.names = names or {}
        self.voice_pt = -1
        self.ssrc: int | None = None
        self.base_seq = self.max_seq = self.cycles = 0
        self.bad_seq = _SEQ_MOD + 1
        self.received = self.received_before = self.expected_before = 0
        self.pt = -1
        self.rate = DEFAULT_RATE
        self.transit: float | None = None
        self.jitter = 0.0  # in RTP timestamp units, as in RFC 3550
        self.ignored = 0  # not RTP version 2, too short, or RTCP multiplexed on the port

    def update(self, data: bytes, now: float) -> None:
        """Account one packet that arrived at ``now`` (seconds, any monotonic origin)."""
        if len(data) < 12:
            self.ignored += 1
            return
        b0, b1, seq, ts, ssrc = _unpack(data)
        pt = b1 & 0x7F
        if b0 & 0xC0 != 0x80 or 72 <= pt <= 76:  # RFC 5761 §4: RTCP types 200-204
            self.ignored += 1
            return
        if ssrc != self.ssrc:
            self._restart(seq, ssrc)
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if delta < MAX_DROPOUT:
                if seq < self.max_seq:
                    self.cycles += _SEQ_MOD
                self.max_seq = seq
            elif delta <= _SEQ_MOD - MAX_MISORDER:
                if seq != self.bad_seq:
                    self.bad_seq = (seq + 1) & 0xFFFF  # wait for the next one to confirm
                    return
                self._restart(seq, ssrc)
        self.received += 1
        self._jitter(pt, ts, now)

    def _jitter(self, pt: int, ts: int, now: float) -> None:
        if pt != self.pt:
            self._switch(pt)
        rate = self.rate
        if not rate:
            return
        transit = now * rate - ts
        last = self.transit
        self.transit = transit
        if last is not None:
            d = transit - last
            if d < 0:
                d = -d
            if d > _HALF_TS:  # the 32-bit timestamp wrapped between the two packets
                d = _TS_MOD - d
            self.jitter += (d - self.jitter) / 16

    def _switch(self, pt: int) -> None:
        # Another payload may count time differently: jitter starts over. RFC 4733
        # events repeat their start timestamp, so they are not timed at all (rate 0).
        self.pt = pt
        self.transit = None
        if self._name(pt).upper() in _NOT_VOICE:
            self.rate = 0
            return
        self.voice_pt = pt
        self.rate = self._rate(pt)

    def _rate(self, pt: int) -> int:
        return self.rates.get(pt) or STATIC_PAYLOADS.get(pt, ("", DEFAULT_RATE))[1]

    def _restart(self, seq: int, ssrc: int) -> None:
        # RFC 3550 §A.1 init_seq; what the previous run lost stays in the totals.
        self.expected_before += self._expected_now()
        self.received_before += self.received
        self.ssrc = ssrc
        self.base_seq = self.max_seq = seq
        self.bad_seq = _SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.transit = None

    def _expected_now(self) -> int:
        if self.ssrc is None:
            return 0
        return self.cycles + self.max_seq - self.base_seq + 1

    @property
    def expected(self) -> int:
        """Packets the sequence numbers say were sent (RFC 3550 §A.3)."""
        return self.expected_before + self._expected_now()

    @property
    def lost(self) -> int:
        """Expected minus received; duplicates can make the difference negative, shown as 0."""
        return max(0, self.expected - self.received_before - self.received)

    @property
    def loss_percent(self) -> float:
        expected = self.expected
        return 100.0 * self.lost / expected if expected else 0.0

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter / self._rate(self.voice_pt)

    def _name(self, pt: int) -> str:
        return self.names.get(pt) or STATIC_PAYLOADS.get(pt, ("",))[0]

    @property
    def codec(self) -> Codec:
        """The codec of the voice payload type seen last (RFC 4733 events do not count)."""
        return codec_for(self._name(self.voice_pt))

    @property
    def encoding(self) -> str:
        """``name/clock-rate`` of the voice payload, as rtpengine reports a media's codec."""
        pt = self.voice_pt
        return f"{self._name(pt) or pt}/{self._rate(pt)}"

    def mos(self, base_delay_ms: float = 40.0) -> float:
        """MOS of what was received so far.

        Mouth-to-ear delay is not measurable from one side's RTP: it is taken
        as ``base_delay_ms`` (packetisation and a typical network) plus a
        jitter buffer twice the measured jitter.
        """
        delay = base_delay_ms + 2 * self.jitter_ms
        return mos(self.codec, self.loss_percent, delay)
