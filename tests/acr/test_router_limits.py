"""Carrier limits across two ACR nodes, through the router: each node's router
admits calls to a carrier with a capacity or cps limit by the shared counters
in one real Redis (exact, call by call), and a CANCEL that arrives while the
admission is out gives the place back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from acr.counters import Counters, open_counters
from acr.ranking import RouteTable
from acr.router import AcrRouter
from sipline.carriers.model import Carrier, Gateway, Rate
from sipline.config import Settings
from sipline.sip.message import Request
from sipline.sip.transaction import ServerTransaction, State
from tests.acr.test_router import B2BUA, US, Acr, Cdrs, FakeNode, Health, Stats, message
from tests.support import FakeClock

AT = 1_700_000_000.25
LIMITED = Carrier("limited", (Gateway("limited", "127.0.0.3", 5060),), capacity=2)
FAST = Carrier("fast", (Gateway("fast", "127.0.0.5", 5060),), cps=2)
SPARE = Carrier("spare", (Gateway("spare", "127.0.0.4", 5060),))


@dataclass
class Live:
    counters: Counters
    stats: Stats = field(default_factory=Stats)
    health: Health = field(default_factory=Health)


def node(name: str, counters: Counters, carriers: list[Carrier]) -> Acr:
    settings = Settings(
        node={"name": name},
        sip={"host": US.host, "port": US.port},
        acr={"trusted": ["127.0.0.1:5070"], "exploration": 0},
    )
    # The limited carrier is the cheapest: every call tries it first.
    rates = [Rate(c.name, "44", 0.01 * (i + 1)) for i, c in enumerate(carriers)]
    table = RouteTable(carriers, rates, now=AT)
    clock = FakeClock()
    clock.now = AT
    counters.set_carriers(carriers)
    live = Live(counters)
    router = AcrRouter(settings, name, table, live, Cdrs(), carriers, clock=clock, monotonic=clock)
    return Acr(router, FakeNode(), live, router.cdrs, clock)  # type: ignore[arg-type]


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[Callable[[list[Carrier]], tuple[Acr, Acr]]]:
    opened: list[Counters] = []

    def make(carriers: list[Carrier]) -> tuple[Acr, Acr]:
        nodes = []
        for name in ("primary", "secondary"):
            counters = open_counters(redis_url, node=name, clock=lambda: AT)
            opened.append(counters)
            nodes.append(node(name, counters, carriers))
        return nodes[0], nodes[1]

    yield make
    for counters in opened:
        await counters.close()


def carriers_tried(acr: Acr) -> list[str]:
    return [t.request.uri.partition("@")[2] for t in acr.node.invites]


async def settled(*nodes: Acr) -> None:
    """Until no admission is out at any node (each is one Redis round trip; up to
    5 s, for a machine loaded by the rest of the suite)."""
    quiet = 0  # loop turns in a row with nothing out: a verdict's done callbacks (the
    # router going on, maybe asking again) run a turn after its batch has ended
    for _ in range(2000):
        if all(n.live.counters._batcher is None for n in nodes):  # type: ignore[attr-defined]
            quiet += 1
            if quiet == 3:
                return
            await asyncio.sleep(0)
            continue
        quiet = 0
        await asyncio.sleep(0.005)
    raise AssertionError("admissions still out")


def cancel(acr: Acr, server: ServerTransaction, call_id: str) -> None:
    request = message(
        "CANCEL sip:+442071234567@127.0.0.1:5080 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{call_id};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:+442071234567@127.0.0.1:5080>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(request, Request)
    txn = ServerTransaction(("c", call_id), request, "CANCEL", State.TRYING, B2BUA, source=B2BUA)
    txn.cancels = server
    acr.router.on_request(acr.node, request, txn, B2BUA)  # type: ignore[arg-type]


async def test_two_nodes_never_put_more_calls_on_a_carrier_than_its_capacity(pair) -> None:
    primary, secondary = pair([LIMITED, SPARE])
    # Interleaved, with no sync between the nodes: each admission is decided in Redis.
    for i in range(6):
        (primary, secondary)[i % 2].invite(call_id=f"call-{i}")
    await settled(primary, secondary)
    tried = carriers_tried(primary) + carriers_tried(secondary)
    assert tried.count("127.0.0.3:5060") == 2  # the capacity, across both nodes
    assert tried.count("127.0.0.4:5060") == 4  # the rest went on to the next carrier
    assert len(primary.node.invites) == len(secondary.node.invites) == 3


async def test_a_place_freed_on_one_node_is_taken_by_the_other_after_its_sync(pair) -> None:
    primary, secondary = pair([LIMITED, SPARE])
    primary.invite(call_id="call-1")
    secondary.invite(call_id="call-2")
    await settled(primary, secondary)
    primary.answer(primary.node.invites[0], 486)  # the callee is busy: the call is over
    assert primary.node.statuses == [486]
    await primary.live.counters.sync()
    secondary.invite(call_id="call-3")
    await settled(secondary)
    assert carriers_tried(secondary) == ["127.0.0.3:5060", "127.0.0.3:5060"]


async def test_the_cps_limit_holds_across_both_nodes(pair) -> None:
    primary, secondary = pair([FAST, SPARE])
    for i in range(4):
        (primary, secondary)[i % 2].invite(call_id=f"call-{i}")
    await settled(primary, secondary)
    tried = carriers_tried(primary) + carriers_tried(secondary)
    assert tried.count("127.0.0.5:5060") == 2 and tried.count("127.0.0.4:5060") == 2
    primary.clock.now += 1  # the next second: room again
    primary.invite(call_id="call-9")
    await settled(primary)
    assert carriers_tried(primary)[-1] == "127.0.0.5:5060"


async def test_a_cancel_while_the_admission_is_out_answers_487_and_frees_the_place(pair) -> None:
    primary, secondary = pair([LIMITED, SPARE])
    server = primary.invite(call_id="call-1")
    assert not primary.node.invites  # waiting for Redis
    cancel(primary, server, "call-1")
    assert primary.node.statuses == [200, 487]
    await settled(primary)
    assert not primary.node.invites  # never sent once cancelled
    assert primary.live.counters.active("limited") == 0
    assert not primary.cdrs  # it reached no carrier
    await primary.live.counters.sync()
    secondary.invite(call_id="call-2")
    secondary.invite(call_id="call-3")
    await settled(secondary)
    assert carriers_tried(secondary) == ["127.0.0.3:5060", "127.0.0.3:5060"]


async def test_a_carrier_without_limits_is_admitted_at_once_without_redis(pair) -> None:
    primary, _ = pair([SPARE, LIMITED])
    primary.invite()
    assert carriers_tried(primary) == ["127.0.0.4:5060"]  # sent within on_request
    assert primary.live.counters.batches == 0


async def test_a_refusal_after_a_failed_attempt_moves_on_to_the_next_carrier(pair) -> None:
    # The spare carrier fails with 503; the limited one, full by the other node's calls,
    # is passed over once Redis says so, and the best failure goes upstream.
    primary, secondary = pair([SPARE, LIMITED])
    secondary.router.table = RouteTable([LIMITED], [Rate("limited", "44", 0.01)], now=AT)
    secondary.invite(call_id="call-1")
    secondary.invite(call_id="call-2")
    await settled(secondary)
    assert len(secondary.node.invites) == 2
    primary.invite(call_id="call-3")
    primary.answer(primary.node.invites[0], 503)
    await settled(primary)
    assert carriers_tried(primary) == ["127.0.0.4:5060"]
    assert primary.node.statuses == [500]  # a 503 upstream would send the B2BUA to the other ACR
