"""Digest authentication for the registrar (401) and the proxy (407), as a phone meets it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.authn import Authenticator, Outcome
from proxy.subscribers import ServedDomains, SubscriberDirectory
from sipline.config import AuthSection
from sipline.net.nonces import SharedNonceCounts
from sipline.sip.address import Address
from sipline.sip.auth import Credentials, compute_ha1, compute_response
from sipline.sip.message import Request, Response
from sipline.storage import Database, Subscriber, Subscribers
from tests.proxy.phone import authorization, challenge_params, request, subscriber, with_header

NOW = 1_700_000_000.0
ALICE = subscriber("alice@example.com")
BOB = subscriber("bob@example.net", id_=2)
PHONE = Address("UDP", "192.0.2.10", 5060)
ELSEWHERE = Address("UDP", "198.51.100.7", 5060)


class Guard:
    """Records what the node's guard is told."""

    def __init__(self) -> None:
        self.failures: list[tuple[Address, str]] = []
        self.reasons: list[str] = []

    def auth_failed(self, source: Address, user: str, reason: str = "") -> None:
        self.failures.append((source, user))
        self.reasons.append(reason)


def authenticator(
    secret: str = "s3cret",
    algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    directory: SubscriberDirectory | None = None,
    shared: SharedNonceCounts | None = None,
    **options: Any,
) -> Authenticator:
    auth = AuthSection(secret=secret, nonce_lifetime=300, algorithms=list(algorithms), **options)
    if directory is None:
        directory = SubscriberDirectory(subscribers=[ALICE, BOB])
    domains = ServedDomains(["example.com", "example.net"], ["192.0.2.1"])
    return Authenticator(auth, directory, domains, shared)


def register(to: str = "alice@example.com", uri: str = "sip:example.com") -> Request:
    return request("REGISTER", uri, from_=to, to=to)


def invite(from_: str = "alice@example.com") -> Request:
    return request("INVITE", "sip:bob@example.net", from_=from_, to="bob@example.net")


def ask(
    auth: Authenticator,
    req: Request,
    now: float = NOW,
    *,
    proxy: bool = False,
    source: Address = PHONE,
    guard: Guard | None = None,
) -> Outcome:
    return auth.authenticate(req, source, now, proxy=proxy, guard=guard or Guard())


def challenged(result: Outcome, status: int = 401) -> Response:
    assert isinstance(result, Response), result
    assert result.status == status, (result.status, result.reason)
    return result


def credentials(
    auth: Authenticator, req: Request, user: str = "alice", *, proxy: bool = False,
    now: float = NOW, source: Address = PHONE, **options: Any,
) -> Request:  # fmt: skip
    """``req`` again with the credentials a phone answers our challenge with."""
    challenge = challenged(ask(auth, req, now, proxy=proxy, source=source), 407 if proxy else 401)
    header = "Proxy-Authorization" if proxy else "Authorization"
    return with_header(req, header, authorization(challenge, req, user, proxy=proxy, **options))


def answered(
    auth: Authenticator, req: Request, user: str = "alice", *, proxy: bool = False,
    now: float = NOW, guard: Guard | None = None, **options: Any,
) -> Outcome:  # fmt: skip
    retry = credentials(auth, req, user, proxy=proxy, now=now, **options)
    return ask(auth, retry, now, proxy=proxy, guard=guard)


def comparable(response: Response) -> bytes:
    """The response without what differs between any two answers: tags, nonces, users."""
    text = bytes(response).decode()
    for offer in challenge_params(response) + challenge_params(response, "Proxy-Authenticate"):
        text = text.replace(offer["nonce"], "NONCE")
    assert response.to.tag is not None
    for name in ("alice", "carol", response.to.tag):
        text = text.replace(name, "X")
    return text.encode()


# -- the registrar ---------------------------------------------------------------------


def test_a_register_without_credentials_is_challenged_with_each_algorithm_in_order() -> None:
    response = challenged(ask(authenticator(), register()))
    assert response.reason == "Unauthorized"
    offers = challenge_params(response)
    assert [o["algorithm"] for o in offers] == ["SHA-256", "MD5"]
    assert {o["realm"] for o in offers} == {"example.com"}
    assert all(o["qop"] == "auth" and "stale" not in o for o in offers)
    assert len({o["nonce"] for o in offers}) == 1
    assert response.to.tag


def test_the_configured_algorithm_order_is_the_order_offered() -> None:
    response = challenged(ask(authenticator(algorithms=("MD5",)), register()))
    assert [o["algorithm"] for o in challenge_params(response)] == ["MD5"]


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_the_right_password_gives_the_subscriber(algorithm: str) -> None:
    assert answered(authenticator(), register(), algorithm=algorithm) == ALICE


def test_the_realm_is_the_aor_domain_or_the_first_domain_for_our_own_address() -> None:
    auth = authenticator()
    assert answered(auth, register("bob@example.net", "sip:example.net"), "bob") == BOB
    to_ip = register("alice@192.0.2.1", "sip:192.0.2.1")
    offers = challenge_params(challenged(ask(auth, to_ip)))
    assert offers[0]["realm"] == "example.com"
    assert answered(auth, to_ip) == ALICE


def test_a_wrong_password_gets_a_fresh_challenge_and_is_told_to_the_guard() -> None:
    guard = Guard()
    response = challenged(answered(authenticator(), register(), password="guess", guard=guard))
    assert response.reason == "Unauthorized"
    assert all("stale" not in o for o in challenge_params(response))
    assert guard.failures == [(PHONE, "alice")]


def test_an_unknown_user_gets_the_same_answer_as_a_wrong_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "sipline.auth")
    auth, guard = authenticator(), Guard()
    unknown = challenged(answered(auth, register("carol@example.com"), "carol", guard=guard))
    wrong = challenged(answered(auth, register(), password="guess", guard=guard))
    assert comparable(unknown) == comparable(wrong)
    assert guard.failures == [(PHONE, "carol"), (PHONE, "alice")]
    # Why goes to the guard, whose log line (with the source address) is the only one.
    assert guard.reasons == ["unknown subscriber", "wrong password"]
    assert not [r for r in caplog.records if "event=auth_failed" in r.getMessage()]
    for text in (bytes(unknown), bytes(wrong)):
        assert b"unknown" not in text and b"wrong" not in text


def test_an_unknown_caller_at_the_proxy_gets_the_same_answer_as_a_wrong_password() -> None:
    auth = authenticator()
    unknown = challenged(answered(auth, invite("carol@example.com"), "carol", proxy=True), 407)
    wrong = challenged(answered(auth, invite(), proxy=True, password="guess"), 407)
    assert comparable(unknown) == comparable(wrong)


def test_credentials_of_another_user_than_the_aor_are_forbidden() -> None:
    auth = authenticator()
    auth.directory._by_key[("mallory", "example.com")] = subscriber("mallory@example.com", id_=3)
    result = answered(auth, register("alice@example.com"), "mallory")
    assert challenged(result, 403).reason == "Forbidden (Authorization user is not the To user)"


def test_an_expired_nonce_is_challenged_again_with_stale_true() -> None:
    auth, guard = authenticator(), Guard()
    retry = credentials(auth, register())
    response = challenged(ask(auth, retry, NOW + 301, guard=guard))
    assert response.reason == "Unauthorized (stale nonce)"
    assert all(o["stale"] == "true" for o in challenge_params(response))
    assert answered(auth, register(), now=NOW + 301) == ALICE
    assert guard.failures == []


def test_a_nonce_from_another_secret_is_challenged_again_without_stale() -> None:
    retry = credentials(authenticator("other secret"), register())
    response = challenged(ask(authenticator(), retry))
    assert response.reason == "Unauthorized (nonce not issued here or altered)"
    assert all("stale" not in o for o in challenge_params(response))


def test_nodes_sharing_the_secret_accept_each_others_nonces() -> None:
    retry = credentials(authenticator(), register())
    assert ask(authenticator(), retry) == ALICE
    assert isinstance(ask(authenticator(""), retry), Response)


def test_credentials_for_another_realm_only_get_a_challenge() -> None:
    auth = authenticator()
    req = register()
    challenge = challenged(ask(auth, req))
    foreign = authorization(challenge, req, "alice").replace('realm="example.com"', 'realm="x.org"')
    challenged(ask(auth, with_header(req, "Authorization", foreign)))


def test_malformed_credentials_are_a_bad_request() -> None:
    req = with_header(register(), "Authorization", "Digest username=alice")
    response = challenged(ask(authenticator(), req), 400)
    assert response.reason == "Bad Request (malformed Authorization header)"


@pytest.mark.parametrize(
    "value", ["NoOneKnowsThisScheme opaque-data=here", "Basic YWxpY2U6cGFzcw==", "Bearer x.y.z"]
)
def test_credentials_in_an_unknown_scheme_are_ignored(value: str) -> None:
    """RFC 4475 §3.3.7: challenged as if the request had none."""
    auth = authenticator()
    response = challenged(ask(auth, with_header(register(), "Authorization", value)))
    assert response.reason == "Unauthorized"
    req = with_header(register(), "Authorization", value)
    assert answered(auth, req) == ALICE  # Digest beside it is still read


def test_credentials_for_another_request_uri_are_a_bad_request() -> None:
    auth = authenticator()
    req = register()
    challenge = challenged(ask(auth, req))
    value = authorization(challenge, req, "alice").replace(
        'uri="sip:example.com"', 'uri="sip:evil.org"'
    )
    response = challenged(ask(auth, with_header(req, "Authorization", value)), 400)
    assert response.reason == "Bad Request (digest uri is not the Request-URI)"


def test_a_register_for_a_domain_not_served_is_forbidden() -> None:
    response = challenged(ask(authenticator(), register("eve@evil.org", "sip:evil.org")), 403)
    assert response.reason == "Forbidden (domain not served here)"


# -- replays ------------------------------------------------------------------------------


def test_credentials_replayed_later_with_another_contact_and_call_id_get_a_stale_challenge() -> (
    None
):
    auth, guard = authenticator(), Guard()
    retry = credentials(auth, register())
    assert ask(auth, retry) == ALICE
    replay = request("REGISTER", "sip:example.com", from_="alice@example.com",
                     to="alice@example.com", call_id="attacker@evil",
                     headers=(("Contact", "<sip:alice@203.0.113.66>"),
                              ("Authorization", retry.headers.get("Authorization") or "")))  # fmt: skip
    response = challenged(ask(auth, replay, NOW + 240, source=ELSEWHERE, guard=guard))
    assert response.reason == "Unauthorized (stale nonce)"
    assert all(o["stale"] == "true" for o in challenge_params(response))
    assert auth.metrics.values["replayed"] == 1


def test_a_nonce_answered_without_qop_serves_once() -> None:
    auth = authenticator()
    req = register()
    offer = challenge_params(challenged(ask(auth, req)))[0]
    ha1 = compute_ha1("alice", "example.com", "correct horse", offer["algorithm"])
    digest = compute_response(
        ha1, offer["nonce"], "REGISTER", req.uri, algorithm=offer["algorithm"]
    )
    creds = Credentials("alice", "example.com", offer["nonce"], req.uri, digest, offer["algorithm"])
    retry = with_header(req, "Authorization", creds.to_header())
    assert ask(auth, retry) == ALICE
    assert challenged(ask(auth, retry)).reason == "Unauthorized (stale nonce)"


def test_a_full_nonce_table_refuses_new_nonces_with_a_fresh_challenge() -> None:
    auth = authenticator(max_nonces=1000)
    for _ in range(1000):
        assert answered(auth, register()) == ALICE
    response = challenged(answered(auth, register()))
    assert response.reason == "Unauthorized"  # no stale=true: no retry loop into a full table
    assert all("stale" not in offer for offer in challenge_params(response))
    assert auth.metrics.values["nonces_full"] == 1


def test_a_nonce_bound_to_the_source_is_refused_from_another_address() -> None:
    auth = authenticator(bind_nonce_to_source=True)
    retry = credentials(auth, register())
    response = challenged(ask(auth, retry, source=ELSEWHERE))
    assert response.reason == "Unauthorized (nonce not issued here or altered)"
    assert ask(auth, retry, source=PHONE._replace(port=5099)) == ALICE  # the IP is what counts


def test_unbound_nonces_may_come_back_from_another_address() -> None:
    auth = authenticator()
    assert ask(auth, credentials(auth, register()), source=ELSEWHERE) == ALICE


# -- the proxy ------------------------------------------------------------------------


def test_the_proxy_challenges_with_407_in_the_callers_realm() -> None:
    response = challenged(ask(authenticator(), invite(), proxy=True), 407)
    assert response.headers.get_all("WWW-Authenticate") == []
    assert [o["realm"] for o in challenge_params(response, "Proxy-Authenticate")] == [
        "example.com"
    ] * 2
    assert answered(authenticator(), invite(), proxy=True) == ALICE


def test_a_caller_from_a_foreign_domain_is_challenged_in_the_first_domain() -> None:
    response = challenged(ask(authenticator(), invite("alice@elsewhere.org"), proxy=True), 407)
    assert challenge_params(response, "Proxy-Authenticate")[0]["realm"] == "example.com"


def test_authorization_is_not_proxy_authorization() -> None:
    auth = authenticator()
    req = invite()
    challenge = challenged(ask(auth, req, proxy=True), 407)
    value = authorization(challenge, req, "alice", proxy=True)
    challenged(ask(auth, with_header(req, "Authorization", value), proxy=True), 407)


# -- waiting for the database ---------------------------------------------------------------


@pytest.fixture
async def table(migrated: Database) -> Subscribers:
    return Subscribers(migrated)


@pytest.fixture
async def live(table: Subscribers) -> AsyncIterator[SubscriberDirectory]:
    """A directory loaded before anyone was provisioned, fetching what it misses."""
    directory = SubscriberDirectory(table, refresh_interval=3600, wait=2.0)
    await directory.load()
    directory.start()
    yield directory
    await directory.close()


async def settled(result: Outcome) -> Subscriber | Response:
    assert isinstance(result, asyncio.Future), result
    return await asyncio.wait_for(result, 5)


async def test_a_subscriber_added_after_the_load_is_found_on_the_first_try(
    table: Subscribers, live: SubscriberDirectory
) -> None:
    await table.add("alice@example.com", "correct horse")
    auth = authenticator(directory=live)
    # The challenge's prefetch has not run yet (nothing awaited since): the race
    # the phone used to lose with "403 unknown subscriber".
    retry = credentials(auth, register())
    result = await settled(ask(auth, retry))
    assert isinstance(result, Subscriber) and result.aor == "alice@example.com"
    assert auth.pending == 0 and auth.metrics.values["lookups"] == 1


async def test_a_user_the_table_lacks_gets_the_fresh_challenge_after_the_lookup(
    live: SubscriberDirectory,
) -> None:
    auth, guard = authenticator(directory=live), Guard()
    retry = credentials(auth, register("carol@example.com"), "carol")
    response = challenged(await settled(ask(auth, retry, guard=guard)))
    assert response.reason == "Unauthorized"
    assert guard.failures == [(PHONE, "carol")]


async def test_a_lookup_without_an_answer_in_time_is_a_fresh_challenge_not_a_failure(
    table: Subscribers,
) -> None:
    directory = SubscriberDirectory(table, wait=0.05)  # never started: nothing is fetched
    auth, guard = authenticator(directory=directory), Guard()
    retry = credentials(auth, register("carol@example.com"), "carol")
    response = challenged(await settled(ask(auth, retry, guard=guard)))
    assert response.reason == "Unauthorized"
    assert guard.failures == [] and auth.metrics.values["lookup_failures"] == 1


async def test_requests_over_max_pending_are_challenged_at_once(table: Subscribers) -> None:
    directory = SubscriberDirectory(table, wait=0.05)  # never started: nothing is fetched
    auth = authenticator(directory=directory, max_pending=1)
    first = credentials(auth, register("carol@example.com"), "carol")
    second = credentials(auth, register("dave@example.com"), "dave")
    waiting = ask(auth, first)
    assert isinstance(waiting, asyncio.Future)
    assert challenged(ask(auth, second)).reason == "Unauthorized"
    assert auth.metrics.values["busy"] == 1
    await settled(waiting)
    assert auth.pending == 0


# -- nonce counts shared on Redis -----------------------------------------------------------


@pytest.fixture
async def shared(redis_url: str) -> AsyncIterator[list[SharedNonceCounts]]:
    stores: list[SharedNonceCounts] = []
    yield stores
    for store in stores:
        await store.close()


async def test_a_replay_to_another_proxy_sharing_the_secret_and_redis_fails(
    redis_url: str, shared: list[SharedNonceCounts]
) -> None:
    shared += [SharedNonceCounts.from_url(redis_url), SharedNonceCounts.from_url(redis_url)]
    first, second = authenticator(shared=shared[0]), authenticator(shared=shared[1])
    retry = credentials(first, register())
    assert await settled(ask(first, retry)) == ALICE
    response = challenged(await settled(ask(second, retry, NOW + 240, source=ELSEWHERE)))
    assert response.reason == "Unauthorized (stale nonce)"
    # Without Redis the second proxy would have taken it.
    assert ask(authenticator(), retry) == ALICE


async def test_growing_counts_pass_every_proxy_in_turn(
    redis_url: str, shared: list[SharedNonceCounts]
) -> None:
    shared += [SharedNonceCounts.from_url(redis_url), SharedNonceCounts.from_url(redis_url)]
    nodes = [authenticator(shared=store) for store in shared]
    req = register()
    challenge = challenged(ask(nodes[0], req))
    offer = challenge_params(challenge)[0]
    ha1 = compute_ha1("alice", "example.com", "correct horse", offer["algorithm"])

    def with_nc(nc: int) -> Request:
        count = f"{nc:08x}"
        digest = compute_response(ha1, offer["nonce"], "REGISTER", req.uri,
                                  algorithm=offer["algorithm"], qop="auth", nc=count, cnonce="c")  # fmt: skip
        creds = Credentials("alice", "example.com", offer["nonce"], req.uri, digest,
                            offer["algorithm"], "c", "auth", count)  # fmt: skip
        return with_header(req, "Authorization", creds.to_header())

    for nc in (1, 2, 3):  # one phone's requests, each after the last one's answer
        assert await settled(ask(nodes[nc % 2], with_nc(nc))) == ALICE
    # Node 0 itself saw nc 2 only: nc 3 it refuses through what Redis saw at node 1.
    replay = await settled(ask(nodes[0], with_nc(3)))
    assert challenged(replay).reason == "Unauthorized (stale nonce)"


async def test_without_redis_the_local_count_stands(shared: list[SharedNonceCounts]) -> None:
    shared.append(SharedNonceCounts.from_url("redis://127.0.0.1:1/0"))
    auth = authenticator(shared=shared[0])
    retry = credentials(auth, register())
    assert await settled(ask(auth, retry)) == ALICE
    assert auth.metrics.values["shared_errors"] == 1
    assert challenged(ask(auth, retry)).reason == "Unauthorized (stale nonce)"  # counted here


# -- secrets ----------------------------------------------------------------------------


def test_no_ha1_or_digest_in_answers_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth = authenticator()
    req = register()
    challenge = challenged(ask(auth, req))
    value = authorization(challenge, req, "alice", password="guess")
    response = ask(auth, with_header(req, "Authorization", value))
    digest = value.split('response="')[1].split('"')[0]
    texts = [repr(auth), repr(auth.directory.get("alice", "example.com")), caplog.text,
             bytes(response).decode()]  # type: ignore[arg-type]  # fmt: skip
    for text in texts:
        for secret in (ALICE.ha1_md5, ALICE.ha1_sha256, digest, "s3cret"):
            assert secret not in text
