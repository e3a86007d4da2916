"""What only we can have written: our Record-Route parameters and our branches,
under a MAC keyed from the node's secret (the approach of RFC 5626 §5.2 flow tokens).

A Record-Route we write carries the dialog's flows and marks (``ftag``,
``fa``, ``fb``, media ``ma`` ...) and ``sg``, an HMAC-SHA256 (96 bits) of
them and of the dialog's Call-ID. An in-dialog request that names us in its
Route is routed by those parameters only when ``sg`` checks: a stranger can
neither write flows of his own nor carry another dialog's token into his
(RFC 3261 §16.4 leaves what a Route parameter means to its author).

A branch we put in a Via is ``<fresh branch>.<mac>.<loop key>``: the MAC (72
bits) covers the fresh part, the loop key (§16.3 step 4 still reads the
suffix) and the previous hop the response goes back to. A stray 2xx is
forwarded statelessly (RFC 6026 §8) only when its top Via carries such a
branch for the Via below it: no one can make us reflect a response to an
address of his choice.

The key is derived from the node's secret (``sipline.secret``: ``auth.secret``,
else a key file per data directory): nodes that share dialogs must share it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from base64 import urlsafe_b64encode

from sipline.sip.address import Address

SIGNATURE = "sg"  # our Record-Route parameter holding the MAC
# Not signed: how the URI reaches us (lr, transport) and the signature itself.
_UNSIGNED = frozenset(("lr", "transport", SIGNATURE))
_ROUTE_MAC = 12  # bytes: 16 characters in the URI
_BRANCH_MAC = 9  # bytes: 12 characters in the branch


class Signer:
    """Signs and checks what this node writes for itself (one per node: with a
    random key, what one instance signs only it can check)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        # HMAC (RFC 2104) with the keyed pads hashed once: a copy of each state
        # per MAC costs a quarter of hmac.digest's set-up.
        key = key.ljust(64, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    @classmethod
    def from_secret(cls, secret: str) -> Signer:
        if not secret:
            return cls(secrets.token_bytes(32))
        # Its own key, not the nonces': one MAC can never stand for the other.
        return cls(hashlib.sha256(b"sipline routing\x00" + secret.encode()).digest())

    def _mac(self, text: str, size: int) -> str:
        inner = self._inner.copy()
        inner.update(text.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return urlsafe_b64encode(outer.digest()[:size]).decode("ascii")

    # -- Record-Route -----------------------------------------------------------------
    def sign(self, params: str, call_id: str) -> str:
        """``params`` as our Record-Route writes them (``;ftag=..;fa=..``), signed
        for the dialog of ``call_id``: the same with ``;sg=<mac>`` at the end."""
        parts = [part if "=" in part else f"{part}=" for part in params.split(";") if part]
        mac = self._mac(_route_text(parts, call_id), _ROUTE_MAC)
        return f"{params};{SIGNATURE}={mac}"

    def verify(self, params: dict[str, str], call_id: str) -> bool | None:
        """The parameters of one of our Route entries (``rules.route_params``):
        True when we signed them for this Call-ID, False when their signature
        is not ours (forged, altered, another dialog's, another key), None
        when they carry none."""
        mac = params.get(SIGNATURE)
        if mac is None:
            return None
        parts = [f"{k}={v}" for k, v in params.items() if k not in _UNSIGNED]
        expected = self._mac(_route_text(parts, call_id), _ROUTE_MAC)
        return hmac.compare_digest(mac, expected)

    # -- branches -----------------------------------------------------------------------
    def branch(self, fresh: str, key: str, upstream: Address | None) -> str:
        """The branch of a request we forward: ``fresh`` (a new branch id), its
        MAC and the loop ``key``; ``upstream`` is where its responses go back
        to (``rules.via_address`` of the Via below ours), None for a request
        of our own."""
        mac = self._mac(_branch_text(fresh, key, upstream), _BRANCH_MAC)
        return f"{fresh}.{mac}.{key}"

    def sent_branch(self, branch: str, upstream: Address | None) -> bool:
        """``branch`` (of a Via with our sent-by) is one we made for a request
        whose responses go back to ``upstream``."""
        parts = branch.rsplit(".", 2)
        if len(parts) != 3 or len(parts[1]) != _BRANCH_MAC * 4 // 3:
            return False
        fresh, mac, key = parts
        return hmac.compare_digest(mac, self._mac(_branch_text(fresh, key, upstream), _BRANCH_MAC))

    def believe(
        self, found: list[dict[str, str]], call_id: str
    ) -> tuple[dict[str, str] | None, bool]:
        """What our Route entries (``rules.preprocess_routes``) say, believed:
        the parameters of those we signed for this Call-ID (merged; None when
        none is), and whether any carried a signature that is not ours."""
        believed: dict[str, str] | None = None
        for params in found:
            verdict = self.verify(params, call_id)
            if verdict is False:
                return None, True
            if verdict:
                believed = params if believed is None else {**believed, **params}
        return believed, False


def _route_text(parts: list[str], call_id: str) -> str:
    # Sorted: a UA that copies our Record-Route with its parameters in
    # another order (they are a set, RFC 3261 §19.1.4) still routes by it.
    parts.sort()
    parts.insert(0, call_id)
    return "\n".join(parts)


def _branch_text(fresh: str, key: str, upstream: Address | None) -> str:
    if upstream is None:
        return f"{fresh}\n{key}"
    return f"{fresh}\n{key}\n{upstream.transport}\n{upstream.host}\n{upstream.port}"
