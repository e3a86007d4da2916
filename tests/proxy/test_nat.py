"""NAT keepalives on a real node: phones behind NAT are pinged, and removed when they stop answering.

The pinger's clock is fake and the node here does not tick it: the test moves
time and ticks it (``tick``) with the fake clock's time; pings and answers
cross real sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from proxy.location import Binding
from proxy.nat import NatPinger
from sipline.sip.address import Address
from sipline.storage import Database, Subscribers
from tests.proxy.phone import TcpPhone, UdpPhone
from tests.proxy.support import Proxy, running, until
from tests.support import FakeClock

INTERVAL = 30.0
PRIVATE = "<sip:alice@10.0.0.5:5060>"  # what a phone behind NAT puts in its Contact


@pytest.fixture
async def proxy(migrated: Database, database_url: str) -> AsyncIterator[Proxy]:
    await Subscribers(migrated).add("alice@example.com", "correct horse")
    async with running(migrated, database_url, FakeClock(1_700_000_000.0), nat={"ping_interval": INTERVAL}) as p:
        yield p


@pytest.fixture
async def phone() -> AsyncIterator[UdpPhone]:
    opened = await UdpPhone.open()
    yield opened
    opened.close()


def pinger_of(proxy: Proxy) -> NatPinger:
    """The service's pinger; the test moves the clock and ticks it (``tick``)."""
    return proxy.service.nat


def tick(proxy: Proxy, pinger: NatPinger) -> None:
    """The node's tick as the proxy's handler gives it to the pinger, at the fake clock's time."""
    pinger.on_tick(proxy.node, proxy.clock.now)


def alice(proxy: Proxy) -> list[Binding]:
    return proxy.service.location.lookup("alice@example.com", proxy.clock.now)


async def stored(proxy: Proxy) -> int:
    """Rows of live bindings (a removed one stays a while as a tombstone, expires_at 0)."""
    row = await proxy.db.fetchone("SELECT COUNT(*) FROM locations WHERE expires_at > 0")
    assert row is not None
    return int(row[0])


async def next_round(proxy: Proxy, pinger: NatPinger) -> None:
    proxy.clock.now += INTERVAL
    tick(proxy, pinger)


async def pinged(phone: UdpPhone, count: int) -> None:
    """Until the phone has received ``count`` pings (retransmissions aside)."""
    await until(lambda: len({r.call_id for r in phone.received}) == count)


async def test_a_phone_behind_nat_is_pinged_at_its_source_and_removed_once_silent(
    proxy: Proxy, phone: UdpPhone
) -> None:
    assert (await phone.register(proxy.address, contact=PRIVATE)).status == 200
    (binding,) = alice(proxy)
    assert binding.behind_nat
    pinger = pinger_of(proxy)

    tick(proxy, pinger)
    await until(lambda: pinger.answers == 1)
    (ping,) = phone.received  # it reached the public address the REGISTER came from
    assert (ping.method, ping.uri) == ("OPTIONS", "sip:alice@10.0.0.5:5060")

    phone.answer_options = False
    for count in (2, 3, 4):  # one answered ping, then three without an answer
        await next_round(proxy, pinger)
        await pinged(phone, count)
        assert alice(proxy) == [binding]
    await next_round(proxy, pinger)
    assert alice(proxy) == [] and pinger.removed == 1
    await until_stored(proxy, 0)


async def until_stored(proxy: Proxy, count: int) -> None:
    for _ in range(200):
        if await stored(proxy) == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{await stored(proxy)} rows, expected {count}")


async def test_an_answered_ping_resets_the_count(proxy: Proxy, phone: UdpPhone) -> None:
    await phone.register(proxy.address, contact=PRIVATE)
    pinger = pinger_of(proxy)
    phone.answer_options = False
    tick(proxy, pinger)
    await pinged(phone, 1)
    for count in (2, 3):  # three unanswered so far: the next round would remove it ...
        await next_round(proxy, pinger)
        await pinged(phone, count)
    phone.answer_options = True  # ... but the phone answers the retransmissions
    await until(lambda: pinger.answers >= 1)
    phone.answer_options = False
    for count in (4, 5, 6):
        await next_round(proxy, pinger)
        await pinged(phone, count)
    assert len(alice(proxy)) == 1


async def test_registering_again_counts_as_an_answer(proxy: Proxy, phone: UdpPhone) -> None:
    phone.answer_options = False
    await phone.register(proxy.address, contact=PRIVATE, cseq=1)
    pinger = pinger_of(proxy)
    tick(proxy, pinger)
    for cseq in (3, 5, 7, 9):
        await next_round(proxy, pinger)
        await phone.register(proxy.address, contact=PRIVATE, cseq=cseq)
    assert len(alice(proxy)) == 1 and pinger.removed == 0


async def test_a_phone_not_behind_nat_is_not_pinged(proxy: Proxy, phone: UdpPhone) -> None:
    await phone.register(proxy.address)  # Contact and Via name the address it sends from
    pinger = pinger_of(proxy)
    tick(proxy, pinger)
    await next_round(proxy, pinger)
    assert pinger.pings == 0 and phone.received == []


def natted(proxy: Proxy, sink: UdpPhone, n: int, **fields: object) -> Binding:
    values: dict[str, object] = {
        "aor": f"user{n}@example.com",
        "contact": f"sip:user{n}@10.0.0.{n % 250 + 1}:5060",
        "expires_at": proxy.clock.now + 3600,
        "source": Address("UDP", "127.0.0.1", sink.port),
        "node": "node-a",
        "nat": True,
    }
    values.update(fields)
    return Binding(**values)  # type: ignore[arg-type]


async def test_bindings_through_an_edge_proxy_or_of_another_node_are_not_pinged(
    proxy: Proxy, phone: UdpPhone
) -> None:
    proxy.service.location.apply(
        [
            natted(proxy, phone, 1, path=("<sip:edge.example.net;lr>",)),
            natted(proxy, phone, 2, node="node-b"),
        ]
    )
    pinger = pinger_of(proxy)
    tick(proxy, pinger)
    await next_round(proxy, pinger)
    assert pinger.pings == 0


async def test_pings_are_spread_over_the_interval(proxy: Proxy, phone: UdpPhone) -> None:
    proxy.service.location.apply([natted(proxy, phone, n) for n in range(40)])
    pinger = pinger_of(proxy)
    sent = []
    for _ in range(4):
        tick(proxy, pinger)
        sent.append(pinger.pings)
        proxy.clock.now += INTERVAL / 4
    assert sent == [1, 11, 21, 31]
    tick(proxy, pinger)  # the next round: the rest of this one, then the first of the next
    assert pinger.pings == 41
    await until(lambda: pinger.answers == 41)


async def test_a_tcp_phone_gets_crlf_keepalives_on_its_connection_and_is_removed_when_it_closes(
    proxy: Proxy,
) -> None:
    local = proxy.node.local_address("TCP")
    phone = await TcpPhone.connect(local.host, local.port)
    try:
        assert (await phone.register((local.host, local.port), contact=PRIVATE)).status == 200
        (binding,) = alice(proxy)
        assert binding.behind_nat and binding.source.connection is not None  # type: ignore[union-attr]
        pinger = pinger_of(proxy)
        tick(proxy, pinger)
        await until(lambda: phone.pings == 1)
        assert phone.received == []  # no OPTIONS on a stream
    finally:
        phone.close()
    await until(lambda: binding.source.connection not in proxy.node._tcp.by_id)  # type: ignore[union-attr]
    for _ in range(3):
        await next_round(proxy, pinger)
        assert len(alice(proxy)) == 1
    await next_round(proxy, pinger)
    assert alice(proxy) == []
    await until_stored(proxy, 0)
