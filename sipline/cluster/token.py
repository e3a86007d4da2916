"""The token that authenticates an admin action (drain, resume, a config change)
on a node's admin endpoint. No I/O: the caller gives the time.

The sender puts ``Authorization: SiplineAdmin ts=T,nonce=N,mac=M`` on the
request, where M is HMAC-SHA256 (hex) under the admin key of

    METHOD SP PATH LF T LF N LF BODY

so the token covers what is asked and of whom (the body names the node), is
good for ``WINDOW`` seconds either side of the node's clock, and is taken
once (``Replays`` remembers the nonces seen within the window).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCHEME = "SiplineAdmin"
WINDOW = 30.0  # seconds a token is good for, either side of the node's clock
MAX_NONCES = 4096  # tokens remembered within the window; past that, more are refused


def derive_key(secret: str, purpose: bytes = b"sipline admin") -> bytes:
    """A key for admin tokens from a shared secret used for other things too
    (``auth.secret``): a digest nonce never doubles as an admin token."""
    return hmac.new(secret.encode(), purpose, hashlib.sha256).digest()


def _mac(key: bytes, method: str, path: str, ts: str, nonce: str, body: bytes) -> str:
    head = f"{method} {path}\n{ts}\n{nonce}\n".encode()
    return hmac.new(key, head + body, hashlib.sha256).hexdigest()


def sign(key: bytes, method: str, path: str, body: bytes, now: float) -> str:
    """The Authorization header value for this request."""
    ts, nonce = str(int(now)), secrets.token_hex(12)
    return f"{SCHEME} ts={ts},nonce={nonce},mac={_mac(key, method, path, ts, nonce, body)}"


class Replays:
    """Nonces taken within the window, bounded: a flood of valid tokens (only a
    key holder can make one) is refused rather than remembered without end."""

    __slots__ = ("window", "capacity", "_seen")

    def __init__(self, window: float = WINDOW, capacity: int = MAX_NONCES) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: dict[str, float] = {}  # nonce -> when it may be forgotten

    def take(self, nonce: str, now: float) -> str:
        """ "" when ``nonce`` is new (now remembered), else why it is refused."""
        if nonce in self._seen:
            return "replayed"
        if len(self._seen) >= self.capacity:
            self._seen = {n: t for n, t in self._seen.items() if t > now}
            if len(self._seen) >= self.capacity:
                return "too_many"
        self._seen[nonce] = now + 2 * self.window
        return ""


def verify(
    key: bytes, header: str, method: str, path: str, body: bytes, now: float, replays: Replays
) -> str:
    """ "" when ``header`` authorises this request now, else the reason it does not:
    missing, malformed, bad_mac, stale, replayed, too_many."""
    if not header:
        return "missing"
    scheme, _, params = header.partition(" ")
    if scheme != SCHEME:
        return "malformed"
    fields = dict(part.partition("=")[::2] for part in params.split(","))
    ts, nonce, mac = fields.get("ts", ""), fields.get("nonce", ""), fields.get("mac", "")
    if not ts.isdigit() or not 8 <= len(nonce) <= 64 or len(mac) != 64:
        return "malformed"
    if not hmac.compare_digest(mac, _mac(key, method, path, ts, nonce, body)):
        return "bad_mac"
    if abs(now - int(ts)) > replays.window:
        return "stale"
    return replays.take(nonce, now)
