"""Replayed digest credentials, on the wire against a real ``sipline proxy``.

The attack of issue 10: a REGISTER's Authorization captured on the way and
sent again later, from elsewhere, with the attacker's Contact and Call-ID,
to the same proxy or to another one sharing ``auth.secret`` (and Redis).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.proxystack import RunningProxy, metric
from sipline.cluster import client
from sipline.sip.message import Request, Response
from tests.proxy.phone import authorization, challenge_params, request, with_header
from tests.security.digest_proxy import ALICE, PhoneAt, running_proxy

pytestmark = pytest.mark.e2e

SECRET = "one secret for every proxy of the test"


@pytest.fixture
async def two_proxies(
    tmp_path: Path, redis_url: str
) -> AsyncIterator[tuple[RunningProxy, RunningProxy]]:
    """Two proxies sharing ``auth.secret`` and Redis, as nodes of one service do."""
    shared = {"AUTH__SECRET": SECRET, "REDIS__URL": redis_url}
    async with (
        running_proxy(tmp_path, **shared) as first,
        running_proxy(tmp_path, **shared) as second,
    ):
        yield first, second


def register_request(phone: PhoneAt, call_id: str, cseq: int) -> Request:
    contact = ("Contact", f"<sip:alice@{phone.host}:{phone.port}>")
    return request("REGISTER", "sip:example.com", from_=ALICE.aor, to=ALICE.aor,
                   call_id=call_id, cseq=cseq, via=phone.via, headers=(contact,))  # fmt: skip


async def register(phone: PhoneAt, proxy: RunningProxy) -> tuple[Response, str]:
    """Alice registers as her phone does; the final answer and the Authorization she sent."""
    challenge = await phone.send(register_request(phone, "alice-reg@phone", 1), proxy.address)
    assert challenge.status == 401, challenge
    second = register_request(phone, "alice-reg@phone", 2)
    value = authorization(challenge, second, ALICE.user, ALICE.password)
    return await phone.send(with_header(second, "Authorization", value), proxy.address), value


async def replay(attacker: PhoneAt, proxy: RunningProxy, stolen: str) -> Response:
    """The captured Authorization on the attacker's own REGISTER."""
    forged = register_request(attacker, "attacker-reg@evil", 7)
    return await attacker.send(with_header(forged, "Authorization", stolen), proxy.address)


def stale_challenge(response: Response) -> bool:
    offers = challenge_params(response)
    return response.status == 401 and bool(offers) and all(o["stale"] == "true" for o in offers)


async def test_a_captured_register_replayed_later_with_another_contact_binds_nothing(
    tmp_path: Path,
) -> None:
    async with running_proxy(tmp_path) as proxy:
        alice, attacker = await PhoneAt.bound("127.0.0.1"), await PhoneAt.bound("127.0.0.2")
        try:
            ok, stolen = await register(alice, proxy)
            assert ok.status == 200
            await asyncio.sleep(2)  # later, well within the nonce's lifetime
            refused = await replay(attacker, proxy, stolen)
        finally:
            alice.close()
            attacker.close()
        assert stale_challenge(refused), refused
        assert await proxy.bindings() == [(ALICE.aor, f"sip:alice@127.0.0.1:{alice.port}")]
        assert proxy.metric("sipline_auth_replayed_total") == 1
        assert "event=auth_refused reason=replayed user=alice" in proxy.log_text()


async def test_a_replay_to_another_proxy_sharing_the_secret_and_redis_binds_nothing(
    two_proxies: tuple[RunningProxy, RunningProxy],
) -> None:
    first, second = two_proxies
    alice, attacker = await PhoneAt.bound("127.0.0.1"), await PhoneAt.bound("127.0.0.3")
    try:
        ok, stolen = await register(alice, first)
        assert ok.status == 200
        refused = await replay(attacker, second, stolen)
        again = await replay(attacker, first, stolen)
    finally:
        alice.close()
        attacker.close()
    assert stale_challenge(refused), refused
    assert stale_challenge(again), again
    assert await second.bindings() == []
    assert await first.bindings() == [(ALICE.aor, f"sip:alice@127.0.0.1:{alice.port}")]


async def test_the_nonce_bound_to_the_source_serves_no_other_address(tmp_path: Path) -> None:
    """With ``auth.bind_nonce_to_source`` even the first use from elsewhere fails."""
    async with running_proxy(tmp_path, AUTH__BIND_NONCE_TO_SOURCE="true") as proxy:
        alice, attacker = await PhoneAt.bound("127.0.0.1"), await PhoneAt.bound("127.0.0.4")
        try:
            challenge = await alice.send(register_request(alice, "a@phone", 1), proxy.address)
            # Alice's answer, caught on its way and raced to the proxy from the
            # attacker's address: the digest covers method and URI only, so it
            # is the same on the attacker's REGISTER.
            forged = register_request(attacker, "attacker-reg@evil", 2)
            stolen = authorization(challenge, forged, ALICE.user, ALICE.password)
            refused = await attacker.send(
                with_header(forged, "Authorization", stolen), proxy.address
            )
            ok, _ = await register(alice, proxy)
        finally:
            alice.close()
            attacker.close()
        assert (
            refused.status == 401
            and refused.reason == "Unauthorized (nonce not issued here or altered)"
        )
        assert ok.status == 200
        assert await proxy.bindings() == [(ALICE.aor, f"sip:alice@127.0.0.1:{alice.port}")]


def invite_request(phone: PhoneAt, call_id: str, cseq: int) -> Request:
    return request("INVITE", "sip:bob@example.com", from_=ALICE.aor, to="bob@example.com",
                   call_id=call_id, cseq=cseq, via=phone.via)  # fmt: skip


async def test_a_replayed_invite_is_challenged_at_every_proxy_sharing_redis(
    two_proxies: tuple[RunningProxy, RunningProxy],
) -> None:
    first, second = two_proxies
    alice, attacker = await PhoneAt.bound("127.0.0.1"), await PhoneAt.bound("127.0.0.5")
    try:
        challenge = await alice.send(invite_request(alice, "call@alice", 1), first.address)
        call = invite_request(alice, "call@alice", 2)
        stolen = authorization(challenge, call, ALICE.user, ALICE.password, proxy=True)
        routed = await alice.send(with_header(call, "Proxy-Authorization", stolen), first.address)
        answers = []
        for proxy in (second, first):
            toll_fraud = invite_request(attacker, f"fraud@evil-{proxy.port}", 1)
            forged = with_header(toll_fraud, "Proxy-Authorization", stolen)
            answers.append(await attacker.send(forged, proxy.address))
    finally:
        alice.close()
        attacker.close()
    assert routed.status == 480, routed  # authenticated (Redis asked) and routed: bob is away
    for answer in answers:
        offers = challenge_params(answer, "Proxy-Authenticate")
        assert answer.status == 407 and all(o["stale"] == "true" for o in offers), answer


async def test_a_replay_to_another_worker_of_the_proxy_binds_nothing(
    tmp_path: Path, redis_url: str
) -> None:
    """Workers of one proxy count nonces in Redis as nodes do: replays from many
    sources (the kernel spreads them over both workers) all get a stale challenge."""
    shared = {"AUTH__SECRET": SECRET, "REDIS__URL": redis_url, "NODE__WORKERS": "2"}
    async with running_proxy(tmp_path, **shared) as proxy:
        await both_workers_running(proxy)
        alice = await PhoneAt.bound("127.0.0.1")
        attackers = [await PhoneAt.bound("127.0.0.6") for _ in range(16)]
        try:
            ok, stolen = await register(alice, proxy)
            assert ok.status == 200
            refused = [await replay(attacker, proxy, stolen) for attacker in attackers]
        finally:
            alice.close()
            for attacker in attackers:
                attacker.close()
        assert all(stale_challenge(r) for r in refused), refused
        assert await proxy.bindings() == [(ALICE.aor, f"sip:alice@127.0.0.1:{alice.port}")]
        by_worker = [
            metric(proxy.metrics_port, f'sipline_auth_replayed_total{{worker="{w}"}}')
            for w in ("0", "1")
        ]
        assert sum(by_worker) == len(attackers) and all(by_worker), by_worker
        assert proxy.metric("sipline_auth_replayed_total") == len(attackers)  # the sum


async def both_workers_running(proxy: RunningProxy, timeout: float = 30) -> None:
    """The supervisor's /status says both workers run (the first may answer OPTIONS
    before the second has bound its socket, and then takes every source)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await client.get(f"127.0.0.1:{proxy.metrics_port}", "/status")
        if status is not None and status.ok and status.body["healthy"] == 2:
            return
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.1)
