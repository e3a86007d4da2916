"""A real softphone with two outbound proxies (issue 13): baresip configured with
``outbound`` 127.0.0.1 and ``outbound2`` 127.0.0.2 (two proxies of one cluster,
one port, sharing MariaDB and Redis) and ``sipnat=outbound`` (RFC 5626: one
registration per proxy, each its own flow and reg-id) registers over TCP
through both; its first proxy is SIGKILLed; calls to it work through the other
within 5 s. The location keeps one binding per Contact URI, and baresip
registers the same URI through both proxies: the binding is the flow of
whichever REGISTER came last. Through the live proxy, the phone is reached at
once; through the dead one, once the others see it dead (3 s without a
heartbeat), at its Contact (a TCP phone not behind NAT listens there).

Calls *from* it do not, and cannot with the baresip of this machine (1.0.0):
it sends every new request to its first outbound proxy (``ua_outbound()``
returns ``outboundv[0]``, "we pick the first outbound server, should be
rotated?"), so once that proxy is dead each call ends at once with "session
closed: Connection refused" until the operator changes its account. Without
``sipnat=outbound`` it registers through the first proxy only, and is not
reached either. The calls from a phone that turns to its second proxy are
tested with the Python handset (tests/cluster/test_failover.py).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.clusterstack import ClusterNode
from tests.cluster.conftest import ALICE, BOB
from tests.e2e.test_proxy_baresip import Baresip

pytestmark = pytest.mark.e2e

FAILOVER = 5.0  # seconds from the SIGKILL to a call answered through the other proxy


@pytest.fixture
def phones(
    baresip_bin: str, proxies: list[ClusterNode], tmp_path: Path
) -> Iterator[tuple[Baresip, Baresip]]:
    """alice with both proxies (outbound, outbound2), bob with the second only."""
    one, two = (f"{p.host}:{p.port}" for p in proxies)
    started: list[Baresip] = []
    try:
        started.append(Baresip(
            baresip_bin, ALICE, 0, tmp_path, "tcp", proxies=[one, two],
            config="module_tmp\tuuid.so\n", account=";sipnat=outbound",
        ))  # fmt: skip
        started.append(Baresip(baresip_bin, BOB, 0, tmp_path, "tcp", proxies=[two]))
        yield started[0], started[1]
    finally:
        for phone in started:
            phone.stop()


def drain(phone: Baresip) -> None:
    while True:
        try:
            phone.events.get_nowait()
        except queue.Empty:
            return


def call(caller: Baresip, callee: Baresip, within: float) -> bool:
    """``caller`` dials ``callee``, who answers; True once both have the call up
    (then hung up), False if ``callee`` does not ring within ``within`` seconds."""
    drain(caller)
    drain(callee)
    assert caller.command("dial", f"sip:{callee.phone.aor}")["ok"] is True
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = callee.events.get(timeout=left)
        except queue.Empty:
            break
        if event.get("type") == "CALL_INCOMING":
            assert callee.command("accept")["ok"] is True
            for phone in (caller, callee):
                phone.wait_event("CALL_ESTABLISHED")
            assert caller.command("hangup")["ok"] is True
            for phone in (caller, callee):
                phone.wait_event("CALL_CLOSED")
            return True
    caller.command("hangup")
    return False


def test_a_baresip_with_two_outbound_proxies_calls_and_is_called_through_the_second(
    proxies: list[ClusterNode], phones: tuple[Baresip, Baresip]
) -> None:
    alice, bob = phones
    for phone in phones:
        phone.wait_registered()
    assert call(bob, alice, 10), alice.log_text()
    assert call(alice, bob, 10), alice.log_text()

    proxies[0].kill()
    killed = time.monotonic()
    while not call(bob, alice, 1.0):
        assert time.monotonic() - killed < 30, (alice.log_text(), proxies[1].log_text()[-3000:])
    reached = time.monotonic() - killed
    print(f"baresip: SIGKILL of its first proxy to a call answered by it: {reached:.2f} s")
    assert reached < FAILOVER, reached
