"""RFC 4028 session timers, one per leg, as plain values and functions (no clock inside).

The B2BUA runs a timer on each leg on its own: on the A leg it is the UAS
of the INVITE (``negotiate_uas``), on the B leg the UAC (``offer_headers``,
``from_response``). Whoever is the refresher sends a re-INVITE or UPDATE
every half interval (§10); the other side ends the call with BYE when no
refresh came ``interval - min(32, interval / 3)`` after the last (§10).
Session-Expires and Min-SE are hop by hop for a B2BUA: never copied between
legs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipline.sip.errors import ParseError
from sipline.sip.headers import parse_params
from sipline.sip.message import Message, Request

TIMER = "timer"


@dataclass(slots=True)
class SessionTimer:
    """The negotiated interval on one leg and whether we are its refresher."""

    interval: int
    we_refresh: bool

    @property
    def due_in(self) -> float:
        """Seconds from a refresh to our next action: refresh (§10), or BYE if none came."""
        if self.we_refresh:
            return self.interval / 2
        return self.interval - min(32, self.interval / 3)

    def request_headers(self) -> list[tuple[str, str]]:
        """Session-Expires for a request we send on this leg (we are its UAC)."""
        refresher = "uac" if self.we_refresh else "uas"
        return [("Session-Expires", f"{self.interval};refresher={refresher}")]

    def response_headers(self) -> list[tuple[str, str]]:
        """Session-Expires (and Require: timer if the peer refreshes, §9) for a 2xx we send."""
        if self.we_refresh:
            return [("Session-Expires", f"{self.interval};refresher=uas")]
        return [("Session-Expires", f"{self.interval};refresher=uac"), ("Require", TIMER)]


@dataclass(slots=True, frozen=True)
class TooSmall:
    """The request's Session-Expires is below our Min-SE: answer 422 with ``min_se`` (§9)."""

    min_se: int


def session_expires(message: Message) -> tuple[int, str | None] | None:
    """(delta-seconds, refresher) of Session-Expires (compact form x), or None if absent."""
    value = message.headers.get("session-expires")
    if value is None:
        return None
    delta, _, params = value.partition(";")
    delta = delta.strip()
    if not delta.isdigit() or len(delta) > 10:
        raise ParseError("bad Session-Expires")
    refresher = parse_params(params).get("refresher") if params else None
    return int(delta), (refresher or "").lower() or None


def min_se(message: Message) -> int:
    value = message.headers.get("min-se")
    if value is None:
        return 0
    delta = value.partition(";")[0].strip()
    if not delta.isdigit() or len(delta) > 10:
        raise ParseError("bad Min-SE")
    return int(delta)


def supports_timer(message: Message) -> bool:
    for name in ("supported", "require"):
        value = message.headers.get(name)
        if value is not None and TIMER in (v.strip().lower() for v in value.split(",")):
            return True
    return False


def negotiate_uas(request: Request, ours: int, our_min_se: int) -> SessionTimer | TooSmall:
    """The A leg's timer from the INVITE we answer: ``ours`` is the interval we
    would like (session_expires), ``our_min_se`` the least we accept (§9)."""
    asked = session_expires(request)
    floor = max(min_se(request), our_min_se)
    supported = supports_timer(request)
    if asked is None:
        interval, refresher = max(ours, floor), None
    else:
        if asked[0] < our_min_se:
            return TooSmall(max(our_min_se, floor))
        interval, refresher = max(min(asked[0], ours), floor), asked[1]
    if not supported:
        refresher = "uas"  # a UAC without the extension cannot refresh (§9)
    elif refresher is None:
        refresher = "uac"  # the caller refreshes: a message less for us
    return SessionTimer(interval, we_refresh=refresher == "uas")


def offer_headers(interval: int, our_min_se: int) -> list[tuple[str, str]]:
    """What the B leg's INVITE asks for (§7.1): no refresher, the UAS chooses."""
    return [("Session-Expires", str(interval)), ("Min-SE", str(our_min_se))]


def from_response(response: Message) -> SessionTimer | None:
    """The B leg's timer from the 2xx to our INVITE (§7.2); None: no session timer."""
    answered = session_expires(response)
    if answered is None:
        return None
    interval, refresher = answered
    return SessionTimer(interval, we_refresh=refresher != "uas")
