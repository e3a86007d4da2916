"""Digest authentication of requests (RFC 3261 §22) for the registrar and the proxy.

The registrar challenges with 401 + WWW-Authenticate and reads Authorization;
the proxy with 407 + Proxy-Authenticate and Proxy-Authorization. The realm
is the served domain the request is about: the AOR's (To) for a REGISTER,
the caller's (From) for anything else, falling back to the first domain. The
digest algorithms are offered in ``auth.algorithms`` order (RFC 8760), with
qop="auth"; the nonces are stateless (sipline.sip.auth) under ``auth.secret``,
bound to the client's address with ``auth.bind_nonce_to_source``.

Replays: every nonce count a right response uses is counted in process (at
most ``auth.max_nonces`` nonces), and with ``[redis] url`` on Redis too
(sipline.net.nonces), so that no proxy sharing the secret takes a count any
of them saw. A replay gets a fresh challenge with stale=true.

No enumeration: an unknown user and a wrong password get the same fresh
challenge as a request without credentials, as Kamailio's default
configuration answers a failed auth_check; what went wrong goes in the log
line, with the source address, and to the node's guard
(``guard.auth_failed``), which bans a source that fails too often.
Credentials in a scheme other than Digest are ignored (RFC 4475 §3.3.7).

``authenticate`` answers at once when it can: the subscriber, or the
response to send (statelessly: nobody has authenticated the request). When
it must wait, for the database (the directory does not hold the user: one
provisioned a moment ago registers at its first try; ``auth.lookup_timeout``
at most) or for Redis's count, it returns a future of either, resolved from
done callbacks; at most ``auth.max_pending`` wait at once, more get a fresh
challenge. No answer or log line carries an HA1 or a digest response.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from proxy.subscribers import ServedDomains, SubscriberDirectory
from sipline.logs import event
from sipline.net.metrics import RoleCounts
from sipline.net.nonces import SharedNonceCounts
from sipline.sip.address import Address
from sipline.sip.auth import (
    AuthResult,
    Credentials,
    DigestAuth,
    NonceCounts,
    NonceFactory,
    is_digest,
    issued_at,
    nonce_count,
)
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.uri import SipUri, parse_uri
from sipline.storage import Subscriber

log = logging.getLogger("sipline.auth")

Verdict = Subscriber | Response
Outcome = Verdict | asyncio.Future[Verdict]
T = TypeVar("T")


class Guard(Protocol):
    def auth_failed(self, source: Address, user: str, reason: str = "") -> None: ...


COUNTED = {
    "challenges": "401/407 challenges to requests without credentials for our realm",
    "authenticated": "Requests whose credentials proved their subscriber",
    "failed": "Credentials of an unknown user or with a wrong password: a fresh challenge",
    "replayed": "Credentials whose nonce count did not grow (replays): a stale challenge",
    "stale": "Credentials with a nonce past its lifetime: a stale challenge",
    "bad_nonce": "Credentials with a nonce not made here, altered, or made for another address",
    "refused": "Credentials refused unjudged: another realm, algorithm or user, or malformed",
    "nonces_full": "Right credentials refused because the nonce-count table was full",
    "busy": "Credentials left unjudged: auth.max_pending requests were waiting already",
    "lookups": "Requests that waited for the database to find their user",
    "lookup_failures": "Waits for the database that ended without an answer: a fresh challenge",
    "shared_errors": "Nonce counts Redis did not answer (the node's own count stood)",
}

# For each verdict but OK: (status, reason, stale, counter); status 0 is a fresh
# challenge, whose reason says why only when it tells a stranger nothing about
# our subscribers. A full nonce table gets no stale=true: the phone would retry
# at once into the same full table.
_VERDICTS: dict[AuthResult, tuple[int, str, bool, str]] = {
    AuthResult.STALE: (0, "stale nonce", True, "stale"),
    AuthResult.REPLAYED: (0, "stale nonce", True, "replayed"),
    AuthResult.NONCES_FULL: (0, "", False, "nonces_full"),
    AuthResult.BAD_NONCE: (0, "nonce not issued here or altered", False, "bad_nonce"),
    AuthResult.BAD_ALGORITHM: (0, "digest algorithm not offered", False, "refused"),
    AuthResult.WRONG_REALM: (0, "credentials for another realm", False, "refused"),
    AuthResult.BAD_RESPONSE: (0, "", False, "failed"),
    AuthResult.UNKNOWN_USER: (0, "", False, "failed"),
    AuthResult.BAD_REQUEST: (400, "malformed credentials", False, "refused"),
}
_WHY = {AuthResult.BAD_RESPONSE: "wrong password", AuthResult.UNKNOWN_USER: "unknown subscriber"}
_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    407: "Proxy Authentication Required",
}


@dataclass(slots=True)
class Attempt:
    """One request's way through authentication."""

    request: Request
    source: Address
    guard: Guard
    digest: DigestAuth
    now: float
    proxy: bool
    bound: str  # the source the nonces are bound to, or ""

    def challenge(self, why: str = "", *, stale: bool = False) -> Response:
        status = 407 if self.proxy else 401
        response = _answer(self.request, status, _PHRASES[status] + (f" ({why})" if why else ""))
        name = "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"
        for value in self.digest.challenge(self.now, stale, self.bound):
            response.headers.add(name, value)
        return response


class Authenticator:
    """One for the registrar (``proxy=False``) and the proxy (``proxy=True``).

    ``shared``: the nonce counts on Redis, when nodes share them.
    """

    def __init__(
        self,
        auth: Any,
        directory: SubscriberDirectory,
        domains: ServedDomains,
        shared: SharedNonceCounts | None = None,
        *,
        secret: str | None = None,
    ) -> None:
        # The node's secret (sipline.secret; ``auth.secret`` unless given) becomes a
        # 32-byte key; none at all means a random one for this instance alone.
        secret = auth.secret if secret is None else secret
        key = hashlib.sha256(secret.encode()).digest() if secret else secrets.token_bytes(32)
        nonces = NonceFactory(key, auth.nonce_lifetime)
        counts = NonceCounts(auth.nonce_lifetime, auth.max_nonces)
        algorithms = tuple(auth.algorithms)
        self.directory = directory
        self.domains = domains
        self.shared = shared
        self.counts = counts
        self.bind_to_source: bool = auth.bind_nonce_to_source
        self.max_pending: int = auth.max_pending
        self.pending = 0  # lookups and shared counts being waited for
        self.metrics = RoleCounts("auth", COUNTED)
        self.metrics.watch("nonces", "Nonces whose counts are remembered", counts.__len__)
        self._counted = self.metrics.values
        self._digests = {
            realm: DigestAuth(realm, nonces, algorithms, counts) for realm in domains.domains
        }

    def __repr__(self) -> str:
        return f"Authenticator(realms={list(self._digests)})"

    def close(self) -> None:
        """Its gauge reads 0 (and no longer keeps it alive); its counters stay."""
        self.metrics.unwatch()

    def authenticate(
        self, request: Request, source: Address, now: float, *, proxy: bool, guard: Guard
    ) -> Outcome:
        """The Subscriber the request is from, the Response to send instead, or a
        future of either. ``now`` is wall-clock time (nonces are checked across
        nodes); ``guard`` is told of every failed authentication."""
        try:
            realm = self.realm(request, proxy=proxy)
        except ParseError as exc:
            return self._refuse(request, source, 400, f"Bad Request ({exc.reason})")
        if realm is None:
            return self._refuse(request, source, 403, "Forbidden (domain not served here)")
        digest = self._digests[realm]
        header = "Proxy-Authorization" if proxy else "Authorization"
        try:
            creds = _credentials_for(request, header, realm)
        except ParseError:
            return self._refuse(request, source, 400, f"Bad Request (malformed {header} header)")
        bound = source.host if self.bind_to_source else ""
        attempt = Attempt(request, source, guard, digest, now, proxy, bound)
        if creds is None:
            self._prefetch(request, realm, proxy)
            self._counted["challenges"] += 1
            return attempt.challenge()
        return self._judge(attempt, creds)

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

    # -- judging credentials ------------------------------------------------------------
    def _judge(self, a: Attempt, creds: Credentials) -> Outcome:
        request = a.request
        if not a.proxy and creds.username != _to_user(request):
            why = "Forbidden (Authorization user is not the To user)"
            return self._refuse(request, a.source, 403, why)
        if not _same_uri(creds.uri, request):
            why = "Bad Request (digest uri is not the Request-URI)"
            return self._refuse(request, a.source, 400, why)
        # The nonce first: forged or stale credentials cost no lookup.
        verdict = a.digest.screen(creds, a.now, a.bound)
        if verdict is not AuthResult.OK:
            return self._refused(a, creds, verdict)
        found = self.directory.lookup(creds.username, a.digest.realm)
        if isinstance(found, asyncio.Future):
            self._counted["lookups"] += 1
            return self._after(found, a, partial(self._looked_up, a, creds))
        return self._prove(a, creds, found)

    def _looked_up(
        self, a: Attempt, creds: Credentials, found: asyncio.Future[Subscriber | None]
    ) -> Outcome:
        if found.cancelled() or found.exception() is not None:
            # No answer is no verdict: challenged again, not counted as a failure.
            self._counted["lookup_failures"] += 1
            event(log, "auth_lookup_failed", logging.WARNING, user=creds.username,
                  realm=a.digest.realm, source=a.source)  # fmt: skip
            return a.challenge()
        return self._prove(a, creds, found.result())

    def _prove(self, a: Attempt, creds: Credentials, subscriber: Subscriber | None) -> Outcome:
        ha1 = subscriber.ha1(creds.algorithm) if subscriber is not None else None
        verdict = a.digest.prove(creds, a.request.method, ha1, a.now)
        if verdict is not AuthResult.OK or subscriber is None:
            return self._refused(a, creds, verdict)
        if self.shared is None:
            return self._accepted(subscriber)
        # A lifetime more than the nonce's own: nodes whose clocks differ by up
        # to that much still agree that a count was seen while it is fresh to them.
        ttl = issued_at(creds.nonce) + 2 * self.counts.lifetime - a.now
        answer = self.shared.use(creds.nonce, nonce_count(creds), ttl)
        return self._after(answer, a, partial(self._counted_everywhere, a, creds, subscriber))

    def _counted_everywhere(
        self,
        a: Attempt,
        creds: Credentials,
        subscriber: Subscriber,
        answer: asyncio.Future[bool | None],
    ) -> Outcome:
        fresh = None if answer.cancelled() else answer.result()
        if fresh is False:
            return self._refused(a, creds, AuthResult.REPLAYED)
        if fresh is None:
            self._counted["shared_errors"] += 1
        return self._accepted(subscriber)

    def _accepted(self, subscriber: Subscriber) -> Subscriber:
        self._counted["authenticated"] += 1
        return subscriber

    def _after(
        self, step: asyncio.Future[T], a: Attempt, then: Callable[[asyncio.Future[T]], Outcome]
    ) -> Outcome:
        """A future of ``then(step)``, run when ``step`` is done; at once a fresh
        challenge if ``auth.max_pending`` steps are under way already."""
        if self.pending >= self.max_pending:
            self._counted["busy"] += 1
            event(log, "auth_busy", logging.WARNING, source=a.source, pending=self.pending)
            return a.challenge()
        self.pending += 1
        result: asyncio.Future[Verdict] = step.get_loop().create_future()

        def done(step: asyncio.Future[T]) -> None:
            self.pending -= 1
            try:
                outcome = then(step)
            except Exception as exc:  # a bug: the caller logs it and answers 500
                result.set_exception(exc)
                return
            if isinstance(outcome, asyncio.Future):
                outcome.add_done_callback(partial(_pass_on, result))
            else:
                result.set_result(outcome)

        step.add_done_callback(done)
        return result

    # -- refusals -------------------------------------------------------------------------
    def _refused(self, a: Attempt, creds: Credentials, verdict: AuthResult) -> Response:
        status, why, stale, counter = _VERDICTS[verdict]
        self._counted[counter] += 1
        user = creds.username
        if verdict in _WHY:
            # The guard writes the one log line of a failure (what fail2ban matches).
            a.guard.auth_failed(a.source, user, _WHY[verdict])
        else:
            level = logging.WARNING if verdict is AuthResult.NONCES_FULL else logging.INFO
            event(log, "auth_refused", level, reason=verdict.value, user=user,
                  realm=a.digest.realm, method=a.request.method, source=a.source,
                  call_id=a.request.call_id)  # fmt: skip
        if status == 0:
            return a.challenge(why, stale=stale)
        return _answer(a.request, status, f"{_PHRASES[status]} ({why})")

    def _refuse(self, request: Request, source: Address, status: int, reason: str) -> Response:
        self._counted["refused"] += 1
        event(log, "auth_refused", logging.INFO, status=status, reason=reason,
              method=request.method, source=source, call_id=request.call_id)  # fmt: skip
        return _answer(request, status, reason)


def _pass_on(result: asyncio.Future[Verdict], outcome: asyncio.Future[Verdict]) -> None:
    if outcome.cancelled():
        result.cancel()
    elif (error := outcome.exception()) is not None:
        result.set_exception(error)
    else:
        result.set_result(outcome.result())


def _answer(request: Request, status: int, reason: str) -> Response:
    return request.response(status, reason, to_tag=new_tag())


def _credentials_for(request: Request, header: str, realm: str) -> Credentials | None:
    """The request's Digest credentials for ``realm`` (a UA may send some for
    several realms; other schemes are ignored)."""
    for value in request.headers.get_all(header):
        if is_digest(value):
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
