"""Two ACR nodes' live state on one Redis (acr.live): what one learns, the other uses.

The "Redis goes away" test runs its own redis-server, stops it and starts it
again on the same port.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from acr.live import LiveState, open_live_state
from acr.stats import Attempt
from sipline.carriers.model import Carrier, Gateway
from sipline.config import Settings
from sipline.net.ports import free_port

GW = "10.0.0.1:5060"
ALPHA = Carrier("alpha", (Gateway("alpha", "10.0.0.1"),), capacity=3)


def settings(redis_url: str | None) -> Settings:
    return Settings(redis={"url": redis_url}, acr={"probe_failures": 2})


async def pair(redis_url: str) -> tuple[LiveState, LiveState]:
    return (
        await open_live_state(settings(redis_url), "primary"),
        await open_live_state(settings(redis_url), "secondary"),
    )


async def test_statistics_recorded_by_one_node_are_used_by_the_other(redis_url: str) -> None:
    primary, secondary = await pair(redis_url)
    try:
        now = time.time()
        for code in (200, 503):
            primary.stats.record_attempt(Attempt("alpha", "44", GW, now, code, 1.5, code == 200))
        primary.stats.record_call_end("alpha", "44", 42.0)
        await primary.sync()
        await secondary.sync()
        figures = secondary.stats.quality("alpha", "44")
        assert figures.attempts == pytest.approx(2, rel=1e-3)
        assert figures.asr == pytest.approx(0.5)
        assert (figures.pdd_mean, figures.acd_mean) == pytest.approx((1.5, 42.0))
    finally:
        await primary.close()
        await secondary.close()


async def test_a_gateway_marked_down_by_one_node_is_down_for_the_other(redis_url: str) -> None:
    primary, secondary = await pair(redis_url)
    try:
        now = time.time()
        primary.health.probe_result(GW, False, now)
        primary.health.probe_result(GW, False, now)
        await primary.sync()
        await secondary.sync()
        assert not secondary.view.gateway_up(GW, now)
        assert secondary.health.status(GW) == "down"
    finally:
        await primary.close()
        await secondary.close()


async def test_capacity_is_shared(redis_url: str) -> None:
    primary, secondary = await pair(redis_url)
    try:
        now = time.time()
        assert await primary.counters.acquire(ALPHA, now)
        assert await primary.counters.acquire(ALPHA, now)
        assert await secondary.counters.acquire(ALPHA, now)
        assert not await secondary.counters.acquire(ALPHA, now)
        await secondary.sync()
        assert secondary.view.headroom("alpha") == 0.0
    finally:
        await primary.close()
        await secondary.close()


async def test_without_redis_the_state_is_in_process() -> None:
    state = await open_live_state(settings(None))
    assert not state.shared
    state.stats.record_attempt(Attempt("alpha", "44", GW, time.time(), 200, 0.5, True))
    assert state.stats.quality("alpha", "44").answered == pytest.approx(1, rel=1e-3)
    assert await state.counters.acquire(ALPHA, time.time())
    assert state.view.headroom("alpha") == pytest.approx(2 / 3)
    assert state.view.gateway_up(GW, time.time())
    state.start(0.01)
    await state.close()


def start_redis(binary: str, port: int) -> subprocess.Popen[bytes]:
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"redis-server did not start on port {port}", pytrace=False)
            time.sleep(0.05)


@pytest.fixture
def own_redis(redis_server_bin: str) -> Iterator[tuple[str, int, list[subprocess.Popen[bytes]]]]:
    port = free_port()
    processes = [start_redis(redis_server_bin, port)]
    yield redis_server_bin, port, processes
    for process in processes:
        process.kill()
        process.wait(5)


async def test_redis_going_away_never_reaches_the_call_path(own_redis, caplog) -> None:
    caplog.set_level(logging.INFO, "sipline.acr.live")
    binary, port, processes = own_redis
    url = f"redis://127.0.0.1:{port}/0"
    primary, secondary = await pair(url)
    try:
        processes[0].terminate()
        processes[0].wait(5)
        now = time.time()
        # The call path goes on with the local picture ...
        primary.stats.record_attempt(Attempt("alpha", "44", GW, now, 200, 0.5, True))
        assert await primary.counters.acquire(ALPHA, now)
        primary.health.passive_failure(GW, 503, now)
        assert not primary.view.gateway_up(GW, now)
        # ... and syncing logs once and retries.
        await primary.sync()
        await primary.sync()
        assert not primary.stats.link.ok
        warnings = [r for r in caplog.records if "redis_unavailable" in r.message]
        assert len(warnings) == 3  # once per part, not once per retry
        # Redis is back: what waited is pushed, and the other node sees it.
        processes.append(start_redis(binary, port))
        await primary.sync()
        assert primary.stats.link.ok
        await secondary.sync()
        assert secondary.stats.quality("alpha", "44").answered == pytest.approx(1, rel=1e-3)
        assert secondary.health.status(GW) == "backoff"
        assert any("redis_recovered" in r.message for r in caplog.records)
    finally:
        await primary.close()
        await secondary.close()


async def test_a_redis_restarted_empty_holds_both_nodes_picture_again_after_one_sync_each(
    own_redis,
) -> None:
    binary, port, processes = own_redis
    url = f"redis://127.0.0.1:{port}/0"
    primary, secondary = await pair(url)
    primary.counters.set_carriers([ALPHA])
    secondary.counters.set_carriers([ALPHA])
    try:
        now = time.time()
        for code in (200, 200, 503):
            primary.stats.record_attempt(Attempt("alpha", "44", GW, now, code, 1.0, code == 200))
        secondary.stats.record_attempt(Attempt("alpha", "44", GW, now, 486, 1.0))
        assert await primary.counters.acquire(ALPHA, now)
        assert await primary.counters.acquire(ALPHA, now)
        primary.health.probe_result(GW, False, now)
        primary.health.probe_result(GW, False, now)
        await primary.sync()
        await secondary.sync()
        assert secondary.stats.quality("alpha", "44").attempts == pytest.approx(4, rel=1e-3)

        processes[0].kill()  # SIGKILL, no persistence: it comes back empty
        processes[0].wait(5)
        processes.append(start_redis(binary, port))
        await primary.sync()  # one sync each (a second apart in a node) ...
        await secondary.sync()

        # ... and a node that starts now (or reads for `sipline carrier list`) sees it all:
        reader = await open_live_state(settings(url), "reader")
        try:
            assert reader.stats.quality("alpha", "44").attempts == pytest.approx(4, rel=1e-3)
            assert reader.health.status(GW) == "down"
        finally:
            await reader.close()
        # The carrier's capacity (3) counts the primary's two calls again, not -2 or 0.
        assert await secondary.counters.acquire(ALPHA, now)
        assert not await secondary.counters.acquire(ALPHA, now)
    finally:
        await primary.close()
        await secondary.close()


async def test_a_restarted_node_takes_its_statistics_back_before_it_writes_any(
    redis_url: str,
) -> None:
    first = await open_live_state(settings(redis_url), "primary")
    now = time.time()
    for _ in range(3):
        first.stats.record_attempt(Attempt("alpha", "44", GW, now, 200, 1.0, True))
    await first.close()
    again = await open_live_state(settings(redis_url), "primary")  # the same node, restarted
    try:
        again.stats.record_attempt(Attempt("alpha", "44", GW, now, 503, 1.0))
        await again.sync()
        assert again.stats.quality("alpha", "44").attempts == pytest.approx(4, rel=1e-3)
        other = await open_live_state(settings(redis_url), "secondary")
        assert other.stats.quality("alpha", "44").attempts == pytest.approx(4, rel=1e-3)
        await other.close()
    finally:
        await again.close()


async def test_the_first_node_back_after_a_redis_restart_keeps_counting_the_others_calls(
    redis_url: str,
) -> None:
    import redis.asyncio

    primary, secondary = await pair(redis_url)
    primary.counters.set_carriers([ALPHA])
    secondary.counters.set_carriers([ALPHA])
    try:
        now = time.time()
        assert await primary.counters.acquire(ALPHA, now)
        assert await primary.counters.acquire(ALPHA, now)
        await primary.sync()
        await secondary.sync()  # it has read the primary's two calls
        async with redis.asyncio.Redis.from_url(redis_url) as client:
            await client.flushall()  # Redis restarted empty; the primary has not synced yet
        await secondary.sync()
        # What Redis holds says 0 calls elsewhere; the secondary still counts the two.
        assert await secondary.counters.acquire(ALPHA, now)
        assert not await secondary.counters.acquire(ALPHA, now)  # capacity 3
        await primary.sync()  # the primary writes its count again ...
        await secondary.sync()
        assert secondary.counters.counts["alpha"].seen.assumed == 0  # ... and it is read
    finally:
        await primary.close()
        await secondary.close()
