"""Per-carrier concurrent-call and cps counters (acr.counters), alone and across two ACR nodes."""

from __future__ import annotations

import asyncio

import pytest

from acr.counters import Counters, open_counters
from sipline.carriers.model import Carrier, Gateway

AT = 1_700_000_000.25


def carrier(capacity: int | None = None, cps: int | None = None, name: str = "alpha") -> Carrier:
    return Carrier(name, (Gateway(name, "10.0.0.1"),), capacity=capacity, cps=cps)


def test_a_carrier_without_limits_takes_every_call() -> None:
    counters = Counters()
    assert all(counters.try_start(carrier(), AT) for _ in range(1000))
    assert counters.headroom("alpha", AT) == 1.0
    assert counters.headroom("never-seen", AT) == 1.0


def test_capacity_is_the_number_of_calls_in_progress() -> None:
    counters, limited = Counters(), carrier(capacity=2)
    assert counters.try_start(limited, AT)
    assert counters.try_start(limited, AT)
    assert not counters.try_start(limited, AT)
    counters.end("alpha")
    assert counters.try_start(limited, AT)


def test_cps_counts_new_calls_per_wall_clock_second() -> None:
    counters, limited = Counters(), carrier(cps=3)
    assert [counters.try_start(limited, AT) for _ in range(4)] == [True, True, True, False]
    for _ in range(3):
        counters.end("alpha")  # ending calls frees no cps room
    assert not counters.try_start(limited, AT + 0.5)
    assert counters.try_start(limited, AT + 1)


def test_headroom_is_the_smaller_spare_share_of_capacity_and_cps() -> None:
    counters, limited = Counters(), carrier(capacity=10, cps=4)
    counters.set_carriers([limited])
    assert counters.headroom("alpha", AT) == 1.0
    counters.try_start(limited, AT)
    assert counters.headroom("alpha", AT) == pytest.approx(0.75)  # 1 of 4 cps; 1 of 10 calls
    for _ in range(3):
        counters.try_start(limited, AT)
    assert counters.headroom("alpha", AT) == 0.0
    assert counters.headroom("alpha", AT + 1) == pytest.approx(0.0)  # the last second's rate
    assert counters.headroom("alpha", AT + 2) == pytest.approx(0.6)  # 4 calls of 10 still up


def test_ending_more_calls_than_started_never_goes_negative() -> None:
    counters, limited = Counters(), carrier(capacity=1)
    counters.end("alpha")
    counters.try_start(limited, AT)
    counters.end("alpha")
    counters.end("alpha")
    assert counters.active("alpha") == 0


async def test_without_redis_acquire_is_try_start() -> None:
    counters = open_counters(None)
    assert await counters.acquire(carrier(capacity=1), AT)
    assert not await counters.acquire(carrier(capacity=1), AT)
    await counters.sync()
    await counters.close()


async def test_capacity_is_shared_by_two_nodes_call_by_call(redis_url: str) -> None:
    primary = open_counters(redis_url, node="primary", clock=lambda: AT)
    secondary = open_counters(redis_url, node="secondary", clock=lambda: AT)
    limited = carrier(capacity=3)
    try:
        assert await primary.acquire(limited, AT)
        assert await primary.acquire(limited, AT)
        assert await secondary.acquire(limited, AT)  # the third of three
        assert not await secondary.acquire(limited, AT)
        assert not await primary.acquire(limited, AT)
        # A call ends on the primary: the room is the secondary's after the primary's sync.
        primary.end("alpha")
        await primary.sync()
        assert await secondary.acquire(limited, AT + 0.1)
    finally:
        await primary.close()
        await secondary.close()


async def test_cps_is_shared_by_two_nodes_call_by_call(redis_url: str) -> None:
    primary = open_counters(redis_url, node="primary", clock=lambda: AT)
    secondary = open_counters(redis_url, node="secondary", clock=lambda: AT)
    limited = carrier(cps=3)
    try:
        verdicts = [await n.acquire(limited, AT) for n in (primary, secondary) * 3]
        assert verdicts == [True, True, True, False, False, False]
        assert await secondary.acquire(limited, AT + 1)  # a new second
    finally:
        await primary.close()
        await secondary.close()


async def test_concurrent_acquires_never_pass_the_capacity(redis_url: str) -> None:
    primary = open_counters(redis_url, node="primary", clock=lambda: AT)
    secondary = open_counters(redis_url, node="secondary", clock=lambda: AT)
    limited = carrier(capacity=5)
    try:
        tries = [n.acquire(limited, AT) for n in (primary, secondary) * 10]
        assert sum(await asyncio.gather(*tries)) == 5
        for node in (primary, secondary, primary):
            await node.sync()
        assert primary.active("alpha") == secondary.active("alpha") == 5
    finally:
        await primary.close()
        await secondary.close()


async def test_try_start_shares_capacity_through_sync(redis_url: str) -> None:
    primary = open_counters(redis_url, node="primary", clock=lambda: AT)
    secondary = open_counters(redis_url, node="secondary", clock=lambda: AT)
    limited = carrier(capacity=3)
    secondary.set_carriers([limited])  # as the router does when it loads the carriers
    try:
        assert primary.try_start(limited, AT) and primary.try_start(limited, AT)
        await primary.sync()
        await secondary.sync()
        assert secondary.try_start(limited, AT)
        assert not secondary.try_start(limited, AT)
        assert secondary.headroom("alpha") == 0.0
    finally:
        await primary.close()
        await secondary.close()


async def test_try_start_shares_cps_through_sync(redis_url: str) -> None:
    clock = [AT]
    primary = open_counters(redis_url, node="primary", clock=lambda: clock[0])
    secondary = open_counters(redis_url, node="secondary", clock=lambda: clock[0])
    limited = carrier(cps=4)
    secondary.set_carriers([limited])
    try:
        for _ in range(3):
            assert primary.try_start(limited, AT)
        clock[0] = AT + 1  # the next second: the primary's 3 are the estimate of its rate
        await primary.sync()
        await secondary.sync()
        assert secondary.try_start(limited, AT + 1)
        assert not secondary.try_start(limited, AT + 1)
    finally:
        await primary.close()
        await secondary.close()


async def test_a_node_that_goes_away_drops_out_of_the_count(redis_url: str) -> None:
    primary = open_counters(redis_url, node="primary", clock=lambda: AT)
    secondary = open_counters(redis_url, node="secondary", clock=lambda: AT)
    limited = carrier(capacity=1)
    try:
        assert await primary.acquire(limited, AT)
        assert not await secondary.acquire(limited, AT)
        assert await secondary.acquire(limited, AT + 11)  # the primary's count has expired
    finally:
        await primary.close()
        await secondary.close()


async def test_redis_going_away_falls_back_to_the_local_count() -> None:
    counters = open_counters("redis://127.0.0.1:1/0", node="primary")
    limited = carrier(capacity=2)
    assert await counters.acquire(limited, AT)  # logged, not raised
    assert not counters.link.ok
    assert await counters.acquire(limited, AT)  # local only now, no Redis try per call
    assert not await counters.acquire(limited, AT)
    await counters.sync()
    await counters.close()


async def test_admissions_asked_for_together_go_in_one_round_trip(redis_url: str) -> None:
    counters = open_counters(redis_url, node="primary", clock=lambda: AT)
    limited = carrier(capacity=4)
    try:
        verdicts = [counters.admit(limited, AT) for _ in range(6)]
        assert not any(isinstance(v, bool) for v in verdicts[:4])  # futures: Redis decides
        assert verdicts[4:] == [False, False]  # full with this node's own calls: no need to ask
        assert await asyncio.gather(*verdicts[:4]) == [True] * 4
        assert counters.batches == 1
        assert counters.admit(carrier(), AT) is True  # no limits: at once, no Redis
    finally:
        await counters.close()


async def test_admission_survives_redis_forgetting_its_scripts(redis_url: str) -> None:
    counters = open_counters(redis_url, node="primary", clock=lambda: AT)
    limited = carrier(capacity=1)
    try:
        assert counters.redis is not None
        await counters.redis.script_flush()  # as after a Redis restart
        assert await counters.acquire(limited, AT)
        assert not await counters.acquire(limited, AT)
        assert counters.link.ok
    finally:
        await counters.close()
