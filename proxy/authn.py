"""Digest authentication of requests (RFC 3261 §22) for the registrar and the proxy.

The registrar challenges with 401 + WWW-Authenticate and reads Authorization;
the proxy with 407 + Proxy-Authenticate and Proxy-Authorization. The realm
is the served domain the request is about: the AOR's (To) for a REGISTER,
the caller's (From) for anything else, falling back to the first domain. The
digest algorithms are offered in ``auth.algorithms`` order (RFC 8760), the
nonces are stateless (sipline.sip.auth) under ``auth.secret``.

Every answer other than a challenge says in its reason phrase what went
wrong; no answer or log line carries an HA1 or a digest response.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from proxy.subscribers import ServedDomains, SubscriberDirectory
from sipline.sip.auth import AuthResult, Credentials, DigestAuth, NonceFactory
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.uri import SipUri, parse_uri
from sipline.storage import Subscriber

# (status, reason, challenge again, stale) for each verdict that is not OK.
_VERDICTS: dict[AuthResult, tuple[int, str, bool]] = {
    AuthResult.STALE: (0, "stale nonce", True),
    AuthResult.BAD_NONCE: (0, "nonce not issued here or altered", False),
    AuthResult.BAD_ALGORITHM: (0, "digest algorithm not offered", False),
    AuthResult.WRONG_REALM: (0, "credentials for another realm", False),
    AuthResult.BAD_RESPONSE: (403, "wrong password", False),
    AuthResult.UNKNOWN_USER: (403, "unknown subscriber", False),
    AuthResult.BAD_REQUEST: (400, "malformed credentials", False),
}


class Authenticator:
    """One for the registrar (``proxy=False``) and the proxy (``proxy=True``)."""

    def __init__(self, auth: Any, directory: SubscriberDirectory, domains: ServedDomains) -> None:
        # Any configured text becomes a 32-byte key; "" means a random one per start.
        key = (
            hashlib.sha256(auth.secret.encode()).digest()
            if auth.secret
            else secrets.token_bytes(32)
        )
        nonces = NonceFactory(key, auth.nonce_lifetime)
        algorithms = tuple(auth.algorithms)
        self.directory = directory
        self.domains = domains
        self._digests = {realm: DigestAuth(realm, nonces, algorithms) for realm in domains.domains}

    def __repr__(self) -> str:
        return f"Authenticator(realms={list(self._digests)})"

    def authenticate(self, request: Request, now: float, *, proxy: bool) -> Subscriber | Response:
        """The Subscriber the request is from, or the Response to send instead.

        ``now`` is wall-clock time (nonces are checked across nodes)."""
        try:
            realm = self.realm(request, proxy=proxy)
        except ParseError as exc:
            return _answer(request, 400, f"Bad Request ({exc.reason})")
        if realm is None:
            return _answer(request, 403, "Forbidden (domain not served here)")
        digest = self._digests[realm]
        header = "Proxy-Authorization" if proxy else "Authorization"
        try:
            creds = _credentials_for(request, header, realm)
        except ParseError:
            return _answer(request, 400, f"Bad Request (malformed {header} header)")
        if creds is None:
            self._prefetch(request, realm, proxy)
            return self._challenge(request, digest, now, proxy, "")
        return self._judge(request, digest, creds, now, proxy)

    def realm(self, request: Request, *, proxy: bool) -> str | None:
        """The served domain the request is about, or None (not ours)."""
        uri = (request.from_ if proxy else request.to).uri
        host = uri.host if isinstance(uri, SipUri) else ""
        domain = self.domains.canonical(host)
        if domain is None and proxy:
            return self.domains.domains[0]
        return domain

    def _prefetch(self, request: Request, realm: str, proxy: bool) -> None:
        # A subscriber provisioned a moment ago is fetched while the phone
        # computes its answer to the challenge.
        uri = (request.from_ if proxy else request.to).uri
        if isinstance(uri, SipUri) and uri.user:
            self.directory.get(uri.user, realm)

    def _judge(
        self, request: Request, digest: DigestAuth, creds: Credentials, now: float, proxy: bool
    ) -> Subscriber | Response:
        if not proxy and creds.username != _to_user(request):
            return _answer(request, 403, "Forbidden (Authorization user is not the To user)")
        if not _same_uri(creds.uri, request):
            return _answer(request, 400, "Bad Request (digest uri is not the Request-URI)")
        subscriber = self.directory.get(creds.username, digest.realm)
        ha1 = subscriber.ha1(creds.algorithm) if subscriber is not None else None
        verdict = digest.verify(creds, request.method, ha1, now)
        if verdict is AuthResult.OK:
            assert subscriber is not None
            return subscriber
        status, why, stale = _VERDICTS[verdict]
        if status == 0:
            return self._challenge(request, digest, now, proxy, why, stale=stale)
        return _answer(request, status, f"{_PHRASES[status]} ({why})")

    def _challenge(
        self,
        request: Request,
        digest: DigestAuth,
        now: float,
        proxy: bool,
        why: str,
        *,
        stale: bool = False,
    ) -> Response:
        status = 407 if proxy else 401
        reason = _PHRASES[status] + (f" ({why})" if why else "")
        response = _answer(request, status, reason)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for value in digest.challenge(now, stale=stale):
            response.headers.add(name, value)
        return response


_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    407: "Proxy Authentication Required",
}


def _answer(request: Request, status: int, reason: str) -> Response:
    return request.response(status, reason, to_tag=new_tag())


def _credentials_for(request: Request, header: str, realm: str) -> Credentials | None:
    """The request's credentials for ``realm`` (a UA may send some for several realms)."""
    for value in request.headers.get_all(header):
        creds = Credentials.from_header(value)
        if creds.realm == realm:
            return creds
    return None


def _to_user(request: Request) -> str | None:
    uri = request.to.uri
    return uri.user if isinstance(uri, SipUri) else None


def _same_uri(digest_uri: str, request: Request) -> bool:
    # RFC 2617 §3.2.2.5: the digest-uri names the Request-URI (compared as SIP URIs, §19.1.4).
    if digest_uri == request.uri:
        return True
    try:
        return parse_uri(digest_uri) == request.request_uri
    except ParseError:
        return False
