"""Two real proxies (127.0.0.1 and 127.0.0.2) on one MariaDB and one Redis: a phone
registered through one is called through the other, over its own flow; when its
proxy is SIGKILLed, the phone moves to the other and is reached again within 5 s
(TCP) or within the UDP retransmission window (UDP)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.clusterstack import ClusterNode
from tests.cluster.conftest import ALICE, BOB
from tests.cluster.handset import Handset, reached

pytestmark = pytest.mark.e2e


def logs(proxies: list[ClusterNode]) -> str:
    return "\n".join(f"--- {p.name}\n{p.log_text()[-3000:]}" for p in proxies)


async def test_a_phone_is_called_through_the_proxy_holding_its_flow_and_fails_over(
    proxies: list[ClusterNode],
) -> None:
    one, two = proxies
    alice = await Handset.open(ALICE.user, ALICE.password, one.host, one.port)
    bob = await Handset.open(BOB.user, BOB.password, two.host, two.port)
    try:
        assert await alice.register() == 200, logs(proxies)
        assert await bob.register() == 200
        # bob's proxy (.2) sends the call to alice's (.1), which holds her TCP connection.
        assert await bob.call("alice") == 200, logs(proxies)
        (invite,) = alice.invites
        assert len(invite.headers.get_all("via")) == 3  # bob, proxy-2, proxy-1
        assert "fh=" not in str(invite)  # the flow token stays between the proxies
        assert await alice.call("bob") == 200, logs(proxies)

        one.kill()
        killed = time.monotonic()
        await asyncio.wait_for(alice.lost, 2)  # her connection died with proxy-1
        alice.close()
        # Like a phone with a second outbound proxy: register with proxy-2.
        alice = await Handset.open(ALICE.user, ALICE.password, two.host, two.port)
        assert await alice.register() == 200, (alice.reason, logs(proxies))
        await reached(bob, "alice", 5)
        took = time.monotonic() - killed
        assert took < 5, took
        print(f"SIGKILL of alice's proxy to her first call answered through the other: {took:.2f} s")
        assert await alice.call("bob") == 200
    finally:
        alice.close()
        bob.close()


async def test_a_udp_phone_of_a_dead_proxy_is_reached_from_the_others(
    proxies: list[ClusterNode],
) -> None:
    """Before the phone registers again: once proxy-1 is seen dead (3 s without a
    beat), proxy-2 reaches the phone at the address it registered from."""
    one, two = proxies
    alice = await Handset.open(ALICE.user, ALICE.password, one.host, one.port, "UDP")
    bob = await Handset.open(BOB.user, BOB.password, two.host, two.port, "UDP")
    try:
        assert await alice.register() == 200
        assert await bob.register() == 200
        assert await bob.call("alice") == 200, logs(proxies)
        one.kill()
        took = await reached(bob, "alice", 35)
        assert took < 10, took  # the liveness's 3 s, and a call or two that timed out
    finally:
        alice.close()
        bob.close()
