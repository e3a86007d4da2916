"""Digest authentication for the registrar (401) and the proxy (407), as a phone meets it."""

from __future__ import annotations

import logging

import pytest

from proxy.authn import Authenticator
from proxy.subscribers import ServedDomains, SubscriberDirectory
from sipline.config import AuthSection
from sipline.sip.message import Request, Response
from sipline.storage import Subscriber
from tests.proxy.phone import authorization, challenge_params, request, subscriber, with_header

NOW = 1_700_000_000.0
ALICE = subscriber("alice@example.com")
BOB = subscriber("bob@example.net", id_=2)


def authenticator(
    secret: str = "s3cret", algorithms: tuple[str, ...] = ("SHA-256", "MD5")
) -> Authenticator:
    auth = AuthSection(secret=secret, nonce_lifetime=300, algorithms=list(algorithms))
    directory = SubscriberDirectory(subscribers=[ALICE, BOB])
    return Authenticator(
        auth, directory, ServedDomains(["example.com", "example.net"], ["192.0.2.1"])
    )


def register(to: str = "alice@example.com", uri: str = "sip:example.com") -> Request:
    return request("REGISTER", uri, from_=to, to=to)


def invite(from_: str = "alice@example.com") -> Request:
    return request("INVITE", "sip:bob@example.net", from_=from_, to="bob@example.net")


def challenged(result: Subscriber | Response, status: int = 401) -> Response:
    assert isinstance(result, Response), result
    assert result.status == status, (result.status, result.reason)
    return result


def answered(auth: Authenticator, req: Request, user: str = "alice", *, proxy: bool = False,
             now: float = NOW, **options: object) -> Subscriber | Response:  # fmt: skip
    challenge = challenged(auth.authenticate(req, now, proxy=proxy), 407 if proxy else 401)
    header = "Proxy-Authorization" if proxy else "Authorization"
    value = authorization(challenge, req, user, proxy=proxy, **options)  # type: ignore[arg-type]
    return auth.authenticate(with_header(req, header, value), now, proxy=proxy)


# -- the registrar ---------------------------------------------------------------------


def test_a_register_without_credentials_is_challenged_with_each_algorithm_in_order() -> None:
    response = challenged(authenticator().authenticate(register(), NOW, proxy=False))
    assert response.reason == "Unauthorized"
    offers = challenge_params(response)
    assert [o["algorithm"] for o in offers] == ["SHA-256", "MD5"]
    assert {o["realm"] for o in offers} == {"example.com"}
    assert all(o["qop"] == "auth" and "stale" not in o for o in offers)
    assert len({o["nonce"] for o in offers}) == 1
    assert response.to.tag


def test_the_configured_algorithm_order_is_the_order_offered() -> None:
    response = challenged(
        authenticator(algorithms=("MD5",)).authenticate(register(), NOW, proxy=False)
    )
    assert [o["algorithm"] for o in challenge_params(response)] == ["MD5"]


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_the_right_password_gives_the_subscriber(algorithm: str) -> None:
    assert answered(authenticator(), register(), algorithm=algorithm) == ALICE


def test_the_realm_is_the_aor_domain_or_the_first_domain_for_our_own_address() -> None:
    auth = authenticator()
    assert answered(auth, register("bob@example.net", "sip:example.net"), "bob") == BOB
    to_ip = register("alice@192.0.2.1", "sip:192.0.2.1")
    offers = challenge_params(challenged(auth.authenticate(to_ip, NOW, proxy=False)))
    assert offers[0]["realm"] == "example.com"
    assert answered(auth, to_ip) == ALICE


def test_a_wrong_password_is_forbidden_with_the_reason() -> None:
    result = answered(authenticator(), register(), password="guess")
    assert challenged(result, 403).reason == "Forbidden (wrong password)"


def test_an_unknown_subscriber_is_forbidden() -> None:
    result = answered(authenticator(), register("carol@example.com"), "carol")
    assert challenged(result, 403).reason == "Forbidden (unknown subscriber)"


def test_credentials_of_another_user_than_the_aor_are_forbidden() -> None:
    auth = authenticator()
    auth.directory._by_key[("mallory", "example.com")] = subscriber("mallory@example.com", id_=3)
    result = answered(auth, register("alice@example.com"), "mallory")
    assert challenged(result, 403).reason == "Forbidden (Authorization user is not the To user)"


def test_an_expired_nonce_is_challenged_again_with_stale_true() -> None:
    auth = authenticator()
    req = register()
    challenge = challenged(auth.authenticate(req, NOW, proxy=False))
    retry = with_header(req, "Authorization", authorization(challenge, req, "alice"))
    response = challenged(auth.authenticate(retry, NOW + 301, proxy=False))
    assert response.reason == "Unauthorized (stale nonce)"
    assert all(o["stale"] == "true" for o in challenge_params(response))
    assert answered(auth, req, now=NOW + 301) == ALICE


def test_a_nonce_from_another_secret_is_challenged_again_without_stale() -> None:
    req = register()
    challenge = challenged(authenticator("other secret").authenticate(req, NOW, proxy=False))
    retry = with_header(req, "Authorization", authorization(challenge, req, "alice"))
    response = challenged(authenticator().authenticate(retry, NOW, proxy=False))
    assert response.reason == "Unauthorized (nonce not issued here or altered)"
    assert all("stale" not in o for o in challenge_params(response))


def test_nodes_sharing_the_secret_accept_each_others_nonces() -> None:
    req = register()
    challenge = challenged(authenticator().authenticate(req, NOW, proxy=False))
    retry = with_header(req, "Authorization", authorization(challenge, req, "alice"))
    assert authenticator().authenticate(retry, NOW, proxy=False) == ALICE
    assert isinstance(authenticator("").authenticate(retry, NOW, proxy=False), Response)


def test_credentials_for_another_realm_only_get_a_challenge() -> None:
    auth = authenticator()
    req = register()
    challenge = challenged(auth.authenticate(req, NOW, proxy=False))
    foreign = authorization(challenge, req, "alice").replace('realm="example.com"', 'realm="x.org"')
    assert challenged(
        auth.authenticate(with_header(req, "Authorization", foreign), NOW, proxy=False)
    )


def test_malformed_credentials_are_a_bad_request() -> None:
    req = with_header(register(), "Authorization", "Digest username=alice")
    response = challenged(authenticator().authenticate(req, NOW, proxy=False), 400)
    assert response.reason == "Bad Request (malformed Authorization header)"


def test_credentials_for_another_request_uri_are_a_bad_request() -> None:
    auth = authenticator()
    req = register()
    challenge = challenged(auth.authenticate(req, NOW, proxy=False))
    value = authorization(challenge, req, "alice").replace(
        'uri="sip:example.com"', 'uri="sip:evil.org"'
    )
    response = challenged(
        auth.authenticate(with_header(req, "Authorization", value), NOW, proxy=False), 400
    )
    assert response.reason == "Bad Request (digest uri is not the Request-URI)"


def test_a_register_for_a_domain_not_served_is_forbidden() -> None:
    response = challenged(
        authenticator().authenticate(register("eve@evil.org", "sip:evil.org"), NOW, proxy=False),
        403,
    )
    assert response.reason == "Forbidden (domain not served here)"


# -- the proxy ------------------------------------------------------------------------


def test_the_proxy_challenges_with_407_in_the_callers_realm() -> None:
    response = challenged(authenticator().authenticate(invite(), NOW, proxy=True), 407)
    assert response.headers.get_all("WWW-Authenticate") == []
    assert [o["realm"] for o in challenge_params(response, "Proxy-Authenticate")] == [
        "example.com"
    ] * 2
    assert answered(authenticator(), invite(), proxy=True) == ALICE


def test_a_caller_from_a_foreign_domain_is_challenged_in_the_first_domain() -> None:
    response = challenged(
        authenticator().authenticate(invite("alice@elsewhere.org"), NOW, proxy=True), 407
    )
    assert challenge_params(response, "Proxy-Authenticate")[0]["realm"] == "example.com"


def test_authorization_is_not_proxy_authorization() -> None:
    auth = authenticator()
    req = invite()
    challenge = challenged(auth.authenticate(req, NOW, proxy=True), 407)
    value = authorization(challenge, req, "alice", proxy=True)
    assert challenged(
        auth.authenticate(with_header(req, "Authorization", value), NOW, proxy=True), 407
    )


# -- secrets ----------------------------------------------------------------------------


def test_no_ha1_or_digest_in_answers_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth = authenticator()
    req = register()
    challenge = challenged(auth.authenticate(req, NOW, proxy=False))
    value = authorization(challenge, req, "alice", password="guess")
    response = auth.authenticate(with_header(req, "Authorization", value), NOW, proxy=False)
    digest = value.split('response="')[1].split('"')[0]
    texts = [repr(auth), repr(auth.directory.get("alice", "example.com")), caplog.text,
             bytes(response).decode()]  # type: ignore[arg-type]  # fmt: skip
    for text in texts:
        for secret in (ALICE.ha1_md5, ALICE.ha1_sha256, digest, "s3cret"):
            assert secret not in text
