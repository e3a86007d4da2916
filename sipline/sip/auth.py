"""HTTP Digest authentication for SIP: RFC 3261 §22, RFC 7616, RFC 8760.

The registrar challenges with 401 + WWW-Authenticate and reads Authorization;
the proxy with 407 + Proxy-Authenticate and Proxy-Authorization. Both use
``DigestAuth``: ``challenge()`` gives the header values, ``verify()`` judges
the credentials against the stored HA1.

The store holds HA1 = H(username:realm:password) per algorithm, never
passwords; HA1 and responses never appear in reprs or error messages.

Nonces carry their own proof (docs/design.md): a timestamp, a random id and an
HMAC over them, the realm and optionally the client's address, so any node
holding the secret checks them without storage. What a nonce cannot carry is
how often it was used: ``NonceCounts`` remembers the highest nonce count
(nc) seen with each live nonce, and a request whose nc does not grow is a
replay (RFC 7616 §3.4, §5.5); credentials without qop have no nc, so
their nonce is good once. Entries die with their nonce's lifetime.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import os
import re
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
    digest: str = hash_new(text.encode("utf-8", "surrogateescape")).hexdigest()
    return digest


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


def is_digest(value: str) -> bool:
    """The Authorization or Proxy-Authorization value is in the Digest scheme.

    Credentials in a scheme we do not know are ignored: the request is
    challenged as if it had none (RFC 4475 §3.3.7)."""
    head = value.lstrip(" \t\r\n")[:7]
    return head[:6].lower() == "digest" and (len(head) == 6 or head[6] in " \t\r\n")


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

_STAMP_SIZE = 6  # milliseconds since the epoch of ``now``: 48 bits last until the year 10889
_ID_SIZE = 8  # random, so two challenges in one millisecond differ (each has its own count)
_MAC_SIZE = 16  # HMAC-SHA256 truncated to 128 bits (RFC 2104 §5)
_NONCE_SIZE = len(base64.urlsafe_b64encode(bytes(_STAMP_SIZE + _ID_SIZE + _MAC_SIZE)))


class NonceState(enum.Enum):
    VALID = "valid"
    STALE = "stale"  # ours, but older than the lifetime
    INVALID = "invalid"  # not ours: forged, altered, another realm or source, or garbage


class NonceFactory:
    """Stateless nonce: base64url(timestamp + id + HMAC-SHA256(secret, timestamp + id + realm + source)).

    Nodes that share the secret accept each other's nonces; for that, pass
    wall-clock time (``time.time()``) as ``now``, not a per-process clock.
    ``source`` binds a nonce to the client's address: checked with another
    source, it is not ours. "" binds it to nothing.
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

    def make(self, now: float, realm: str = "", source: str = "") -> str:
        head = int(now * 1000).to_bytes(_STAMP_SIZE, "big") + os.urandom(_ID_SIZE)
        return base64.urlsafe_b64encode(head + self._mac(head, realm, source)).decode("ascii")

    def issued(self, nonce: str, realm: str = "", source: str = "") -> float | None:
        """When we made ``nonce`` (wall-clock seconds), or None if we did not."""
        raw = _decode_nonce(nonce)
        if raw is None:
            return None
        head, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
        if not hmac.compare_digest(mac, self._mac(head, realm, source)):
            return None
        return int.from_bytes(head[:_STAMP_SIZE], "big") / 1000

    def check(self, nonce: str, now: float, realm: str = "", source: str = "") -> NonceState:
        issued = self.issued(nonce, realm, source)
        if issued is None:
            return NonceState.INVALID
        # abs(): a nonce from the future (clock stepped back, skew between
        # nodes) must not outlive its lifetime either.
        if abs(now - issued) > self.lifetime:
            return NonceState.STALE
        return NonceState.VALID

    def _mac(self, head: bytes, realm: str, source: str) -> bytes:
        # NUL: no realm and source can be split another way into the same bytes.
        message = head + f"{realm}\0{source}".encode("utf-8", "surrogateescape")
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

    OK: accept. STALE, REPLAYED: re-challenge with ``stale=True`` (RFC 7616
    §3.3): the nonce is spent but the response was right (or, for an expired
    nonce, never looked at), so the client retries with the new nonce without
    asking the user. BAD_REQUEST: answer 400. Any other (NONCES_FULL among
    them: a retry at once would meet the same full table): re-challenge; the
    distinct values are for logs and metrics, not for the peer.
    """

    OK = "ok"
    STALE = "stale"
    REPLAYED = "replayed"  # the nonce count did not grow
    NONCES_FULL = "nonces_full"  # no room to count a new nonce
    BAD_NONCE = "bad_nonce"
    BAD_RESPONSE = "bad_response"
    UNKNOWN_USER = "unknown_user"
    WRONG_REALM = "wrong_realm"
    BAD_ALGORITHM = "bad_algorithm"
    BAD_REQUEST = "bad_request"


_NONCE_RESULT = {NonceState.STALE: AuthResult.STALE, NonceState.INVALID: AuthResult.BAD_NONCE}


def nonce_count(creds: Credentials) -> int:
    """The credentials' nc as a number; 0 without qop, so such a nonce serves once."""
    return 0 if creds.qop is None or creds.nc is None else int(creds.nc, 16)


def issued_at(nonce: str) -> float:
    """When a nonce ``NonceFactory.check`` accepted was made (wall-clock seconds)."""
    raw = _decode_nonce(nonce)
    if raw is None:
        raise ValueError("not a nonce of ours")
    return int.from_bytes(raw[:_STAMP_SIZE], "big") / 1000


class NonceCounts:
    """The highest nonce count used with each live nonce: one that does not grow is a replay.

    Entries sit in buckets by their nonce's issue time, an eighth of the
    lifetime wide, and a bucket goes whole once every nonce in it is past its
    lifetime: no clock per entry, no sweep. ``limit`` caps the entries: a
    nonce new to a full table is refused (NONCES_FULL), never let through
    uncounted. Count only credentials whose response was right, or anyone
    could fill the table, or spend a phone's nonce, with guesses. A nonce is
    kept as its 64-bit ``hash`` (about 70 bytes an entry, not 130): nonces
    are ours and the hash seed is secret, so two live ones colliding is a
    2**-64 chance, and its cost a stale challenge.
    """

    __slots__ = ("lifetime", "limit", "_width", "_buckets", "_size", "_oldest")

    def __init__(self, lifetime: float, limit: int) -> None:
        if lifetime <= 0 or limit < 1:
            raise ValueError("nonce counts need a positive lifetime and limit")
        self.lifetime = lifetime
        self.limit = limit
        self._width = lifetime / 8
        self._buckets: dict[int, dict[int, int]] = {}
        self._size = 0
        self._oldest = 0

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"NonceCounts({self._size}/{self.limit})"

    def use(self, nonce: str, nc: int, issued: float, now: float) -> AuthResult:
        """Count ``nc`` for ``nonce`` (made at ``issued``): OK if above every count seen with it."""
        self._expire(now)
        index, key = int(issued // self._width), hash(nonce)
        bucket = self._buckets.get(index)
        if bucket is not None and (last := bucket.get(key)) is not None:
            if nc <= last:
                return AuthResult.REPLAYED
            bucket[key] = nc
            return AuthResult.OK
        if self._size >= self.limit:
            return AuthResult.NONCES_FULL
        if bucket is None:
            bucket = self._buckets[index] = {}
        bucket[key] = nc
        self._size += 1
        return AuthResult.OK

    def _expire(self, now: float) -> None:
        # Bucket i holds nonces made before (i + 1) * width: all stale once
        # that is a lifetime ago, i.e. once i is below ``oldest``.
        oldest = int((now - self.lifetime) // self._width)
        if oldest <= self._oldest:
            return
        self._oldest = oldest
        for index in [i for i in self._buckets if i < oldest]:
            self._size -= len(self._buckets.pop(index))


class DigestAuth:
    """Challenges and verifies Digest credentials for one realm.

    With ``counts``, every nonce count a right response uses is counted and
    a replay refused. ``source`` (the client's address, or "") must be the
    same when a nonce is made and when it is checked. The digest-uri is not
    compared with the Request-URI here: that needs SIP URI comparison (RFC
    3261 §19.1.4) and is the caller's check.
    """

    __slots__ = ("realm", "nonces", "algorithms", "counts", "_head")

    def __init__(
        self,
        realm: str,
        nonces: NonceFactory,
        algorithms: tuple[str, ...] = (SHA256, MD5),
        counts: NonceCounts | None = None,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one digest algorithm must be offered")
        for algorithm in algorithms:
            _hash_for(algorithm)
        self.realm = realm
        self.nonces = nonces
        self.algorithms = tuple(a.upper() for a in algorithms)
        self.counts = counts
        self._head = f"Digest realm={_quote(realm)}, nonce="

    def challenge(self, now: float, stale: bool = False, source: str = "") -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, one per algorithm.

        In order of preference, sharing one nonce: the UAC uses the topmost
        algorithm it supports (RFC 8760 §2.3, §2.4). qop="auth" always: it
        is what gives a nonce count to check (RFC 7616 §3.3).
        """
        nonce = self.nonces.make(now, self.realm, source)
        tail = ', qop="auth", stale=true' if stale else ', qop="auth"'
        return [f'{self._head}"{nonce}", algorithm={a}{tail}' for a in self.algorithms]

    def verify(
        self, creds: Credentials, method: str, ha1: str | None, now: float, source: str = ""
    ) -> AuthResult:
        """Judge ``creds`` for a request with ``method``: ``screen``, then ``prove``.

        ``ha1`` is the stored HA1 for (username, realm, algorithm) of the
        credentials, or None when there is none.
        """
        result = self.screen(creds, now, source)
        if result is AuthResult.OK:
            result = self.prove(creds, method, ha1, now)
        return result

    def screen(self, creds: Credentials, now: float, source: str = "") -> AuthResult:
        """What is judged before the user is looked up: realm, algorithm, qop, nonce."""
        if creds.realm != self.realm:
            return AuthResult.WRONG_REALM
        if creds.algorithm.upper() not in self.algorithms:
            return AuthResult.BAD_ALGORITHM
        if not _qop_well_formed(creds):
            return AuthResult.BAD_REQUEST
        state = self.nonces.check(creds.nonce, now, self.realm, source)
        if state is not NonceState.VALID:
            return _NONCE_RESULT[state]
        return AuthResult.OK

    def prove(self, creds: Credentials, method: str, ha1: str | None, now: float) -> AuthResult:
        """The response against ``ha1``, then the nonce count, of credentials ``screen`` passed."""
        if ha1 is None:
            return AuthResult.UNKNOWN_USER
        result = _check_response(creds, method, ha1, creds.algorithm.upper())
        if result is AuthResult.OK and self.counts is not None:
            result = self.counts.use(creds.nonce, nonce_count(creds), issued_at(creds.nonce), now)
        return result


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
