"""HTTP Digest authentication for SIP: RFC 3261 §22, RFC 7616, RFC 8760.

The registrar challenges with 401 + WWW-Authenticate and reads Authorization;
the proxy with 407 + Proxy-Authenticate and Proxy-Authorization. Both use
``DigestAuth``: ``challenge()`` gives the header values, ``verify()`` judges
the credentials against the stored HA1.

The store holds HA1 = H(username:realm:password) per algorithm, never
passwords; HA1 and responses never appear in reprs or error messages.

Nonces are stateless (DESIGN.md): a timestamp and an HMAC over it and the
realm, so any node holding the secret checks them without storage. The price
is that the nonce count is not tracked: a captured request can be replayed
while its nonce is fresh. Replay protection by nc (RFC 7616 §3.4) needs
per-nonce state and is out of scope; keep the lifetime short.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sipline.sip.errors import ParseError

MD5 = "MD5"
SHA256 = "SHA-256"
SHA512_256 = "SHA-512-256"

# Algorithm tokens are case-insensitive (ABNF literals, RFC 5234 §2.3): keys
# are upper case and lookups upper-case the token.
_HASHES: dict[str, Callable[[bytes], Any]] = {
    MD5: hashlib.md5,
    SHA256: hashlib.sha256,
    SHA512_256: functools.partial(hashlib.new, "sha512_256"),
}


def _hex(hash_new: Callable[[bytes], Any], text: str) -> str:
    # surrogateescape gives back the wire bytes of a message decoded with it.
    return hash_new(text.encode("utf-8", "surrogateescape")).hexdigest()


def _hash_for(algorithm: str) -> Callable[[bytes], Any]:
    hash_new = _HASHES.get(algorithm.upper())
    if hash_new is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return hash_new


def compute_ha1(username: str, realm: str, password: str, algorithm: str = MD5) -> str:
    """Hex H(username:realm:password), for provisioning the store only."""
    return _hex(_hash_for(algorithm), f"{username}:{realm}:{password}")


def compute_response(
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    *,
    algorithm: str = MD5,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """The request-digest (RFC 7616 §3.4.1), for a client answering a challenge.

    With qop: H(HA1:nonce:nc:cnonce:qop:H(method:uri)); without qop, the
    RFC 2069 form H(HA1:nonce:H(method:uri)). Only qop=auth is defined here:
    auth-int would need the body hash in A2.
    """
    hash_new = _hash_for(algorithm)
    ha2 = _hex(hash_new, f"{method}:{uri}")
    if qop is None:
        return _hex(hash_new, f"{ha1}:{nonce}:{ha2}")
    return _hex(hash_new, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- header syntax (RFC 3261 §25.1: challenge, credentials, auth-param) ----

_LWS = r"[ \t\r\n]*"
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_SCHEME = re.compile(rf"{_LWS}({_TOKEN})(?:[ \t\r\n]+|$)")
# A value is a quoted-string or, leniently, any run without space, comma or
# quote: the grammar says token, but a bare uri=sip:bob@example.com costs
# nothing to accept.
_PARAM = re.compile(rf'{_LWS}({_TOKEN}){_LWS}={_LWS}(?:"((?:[^"\\]|\\[^\r\n])*)"|([^\s",]+)){_LWS}')
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Split a challenge or credentials header value into scheme and params.

    Param names are lower-cased, quoted strings unquoted; the scheme is given
    as written (compare it case-insensitively). Raises ParseError on anything
    that does not fit ``scheme LWS param *(COMMA param)`` or on a repeated
    param.
    """
    match = _SCHEME.match(value)
    if match is None:
        raise ParseError("Malformed auth scheme")
    scheme, pos, end = match.group(1), match.end(), len(value)
    if pos == end:
        raise ParseError("Missing auth params")
    params: dict[str, str] = {}
    while True:
        match = _PARAM.match(value, pos)
        if match is None:
            raise ParseError("Malformed auth param")
        name, quoted, bare = match.group(1, 2, 3)
        name = name.lower()
        if name in params:
            raise ParseError("Duplicate auth param")
        params[name] = bare if quoted is None else _unquote(quoted)
        pos = match.end()
        if pos == end:
            return scheme, params
        if value[pos] != ",":
            raise ParseError("Malformed auth param")
        pos += 1


def _unquote(text: str) -> str:
    return _QUOTED_PAIR.sub(r"\1", text) if "\\" in text else text


def _quote(text: str) -> str:
    if "\r" in text or "\n" in text:
        raise ValueError("CR or LF cannot be sent in a quoted string")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- credentials -----------------------------------------------------------

_REQUIRED = ("username", "realm", "nonce", "uri", "response")
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(slots=True)
class Credentials:
    """A parsed Authorization or Proxy-Authorization header (RFC 3261 §22.2)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str = field(repr=False)
    algorithm: str = MD5
    cnonce: str | None = None
    qop: str | None = None
    nc: str | None = None
    opaque: str | None = None

    @classmethod
    def from_header(cls, value: str) -> Credentials:
        """Parse Digest credentials; ParseError if not Digest or incomplete.

        A missing algorithm means MD5 (RFC 7616 §3.3); it is upper-cased so
        that it names the HA1 to look up. qop needs cnonce and an 8-hex-digit
        nc (RFC 7616 §3.4).
        """
        scheme, params = parse_auth_header(value)
        if scheme.lower() != "digest":
            raise ParseError("Not Digest credentials")
        for name in _REQUIRED:
            if name not in params:
                raise ParseError(f"Missing {name} in credentials")
        qop, cnonce, nc = params.get("qop"), params.get("cnonce"), params.get("nc")
        if qop is not None:
            if cnonce is None:
                raise ParseError("Missing cnonce in credentials")
            if nc is None or len(nc) != 8 or not _HEXDIGITS.issuperset(nc):
                raise ParseError("Bad nonce count in credentials")
        return cls(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"],
            algorithm=params.get("algorithm", MD5).upper(),
            cnonce=cnonce,
            qop=qop,
            nc=nc,
            opaque=params.get("opaque"),
        )

    def to_header(self) -> str:
        """The header value a client sends; ValueError on CR/LF in a field."""
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={self.algorithm}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        return "Digest " + ", ".join(parts)


# --- nonces ----------------------------------------------------------------

_STAMP = struct.Struct(">q")  # milliseconds since the epoch of ``now``
_MAC_SIZE = 16  # HMAC-SHA256 truncated to 128 bits (RFC 2104 §5)
_NONCE_SIZE = len(base64.urlsafe_b64encode(bytes(_STAMP.size + _MAC_SIZE)))


class NonceState(enum.Enum):
    VALID = "valid"
    STALE = "stale"  # ours, but older than the lifetime
    INVALID = "invalid"  # not ours: forged, altered, another realm or garbage


class NonceFactory:
    """Stateless nonce: base64url(timestamp + HMAC-SHA256(secret, timestamp + realm)).

    Nodes that share the secret accept each other's nonces; for that, pass
    wall-clock time (``time.time()``) as ``now``, not a per-process clock.
    """

    __slots__ = ("_secret", "lifetime")

    def __init__(self, secret: bytes, lifetime: float = 300.0) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        if lifetime <= 0:
            raise ValueError("nonce lifetime must be positive")
        self._secret = secret
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return f"NonceFactory(lifetime={self.lifetime})"

    def make(self, now: float, realm: str = "") -> str:
        stamp = _STAMP.pack(int(now * 1000))
        return base64.urlsafe_b64encode(stamp + self._mac(stamp, realm)).decode("ascii")

    def check(self, nonce: str, now: float, realm: str = "") -> NonceState:
        raw = _decode_nonce(nonce)
        if raw is None:
            return NonceState.INVALID
        stamp, mac = raw[: _STAMP.size], raw[_STAMP.size :]
        if not hmac.compare_digest(mac, self._mac(stamp, realm)):
            return NonceState.INVALID
        age = now - _STAMP.unpack(stamp)[0] / 1000
        # abs(): a nonce from the future (clock stepped back, skew between
        # nodes) must not outlive its lifetime either.
        if abs(age) > self.lifetime:
            return NonceState.STALE
        return NonceState.VALID

    def _mac(self, stamp: bytes, realm: str) -> bytes:
        message = stamp + realm.encode("utf-8", "surrogateescape")
        return hmac.digest(self._secret, message, "sha256")[:_MAC_SIZE]


def _decode_nonce(nonce: str) -> bytes | None:
    if len(nonce) != _NONCE_SIZE or not nonce.isascii():
        return None
    encoded = nonce.encode("ascii")
    try:
        raw = base64.urlsafe_b64decode(encoded)
    except binascii.Error:
        return None
    # The decoder skips characters outside the alphabet: accept only the one
    # spelling we issue.
    if base64.urlsafe_b64encode(raw) != encoded:
        return None
    return raw


# --- the server side ---------------------------------------------------------


class AuthResult(enum.Enum):
    """Verdict of ``DigestAuth.verify``.

    OK: accept. STALE: re-challenge with ``stale=True`` (RFC 7616 §3.3), the
    client retries without asking the user. BAD_REQUEST: answer 400. Any
    other: re-challenge (or 403 by local policy); the distinct values are for
    logs and metrics, not for the peer.
    """

    OK = "ok"
    STALE = "stale"
    BAD_NONCE = "bad_nonce"
    BAD_RESPONSE = "bad_response"
    UNKNOWN_USER = "unknown_user"
    WRONG_REALM = "wrong_realm"
    BAD_ALGORITHM = "bad_algorithm"
    BAD_REQUEST = "bad_request"


_NONCE_RESULT = {NonceState.STALE: AuthResult.STALE, NonceState.INVALID: AuthResult.BAD_NONCE}


class DigestAuth:
    """Challenges and verifies Digest credentials for one realm.

    The digest-uri is not compared with the Request-URI here: that needs SIP
    URI comparison (RFC 3261 §19.1.4) and is the caller's check.
    """

    __slots__ = ("realm", "nonces", "algorithms", "_head")

    def __init__(
        self,
        realm: str,
        nonces: NonceFactory,
        algorithms: tuple[str, ...] = (SHA256, MD5),
    ) -> None:
        if not algorithms:
            raise ValueError("at least one digest algorithm must be offered")
        for algorithm in algorithms:
            _hash_for(algorithm)
        self.realm = realm
        self.nonces = nonces
        self.algorithms = tuple(a.upper() for a in algorithms)
        self._head = f"Digest realm={_quote(realm)}, nonce="

    def challenge(self, now: float, stale: bool = False) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, one per algorithm.

        In order of preference, sharing one nonce: the UAC uses the topmost
        algorithm it supports (RFC 8760 §2.3, §2.4).
        """
        nonce = self.nonces.make(now, self.realm)
        tail = ', qop="auth", stale=true' if stale else ', qop="auth"'
        return [f'{self._head}"{nonce}", algorithm={a}{tail}' for a in self.algorithms]

    def verify(self, creds: Credentials, method: str, ha1: str | None, now: float) -> AuthResult:
        """Judge ``creds`` for a request with ``method``.

        ``ha1`` is the stored HA1 for (username, realm, algorithm) of the
        credentials, or None when there is none.
        """
        if creds.realm != self.realm:
            return AuthResult.WRONG_REALM
        algorithm = creds.algorithm.upper()
        if algorithm not in self.algorithms:
            return AuthResult.BAD_ALGORITHM
        if not _qop_well_formed(creds):
            return AuthResult.BAD_REQUEST
        state = self.nonces.check(creds.nonce, now, self.realm)
        if state is not NonceState.VALID:
            return _NONCE_RESULT[state]
        if ha1 is None:
            return AuthResult.UNKNOWN_USER
        return _check_response(creds, method, ha1, algorithm)


def _qop_well_formed(creds: Credentials) -> bool:
    # Only qop=auth is offered; without qop is the RFC 2069 form.
    if creds.qop is None:
        return True
    return creds.qop.lower() == "auth" and creds.cnonce is not None and creds.nc is not None


def _check_response(creds: Credentials, method: str, ha1: str, algorithm: str) -> AuthResult:
    given = creds.response.lower()
    if not given.isascii():
        return AuthResult.BAD_RESPONSE
    try:
        expected = compute_response(
            ha1.lower(),
            creds.nonce,
            method,
            creds.uri,
            algorithm=algorithm,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
        )
    except UnicodeEncodeError:
        return AuthResult.BAD_REQUEST
    if hmac.compare_digest(expected, given):
        return AuthResult.OK
    return AuthResult.BAD_RESPONSE
