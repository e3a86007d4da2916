"""Gateway health (acr.health): probe hysteresis, passive back-off, two nodes sharing it through Redis."""

from __future__ import annotations

import pytest

from acr.health import Health, gateway_statuses, open_health

GW = "10.0.0.1:5060"
AT = 1_700_000_000.0


def health(**kwargs: object) -> Health:
    defaults: dict[str, object] = dict(failures=3, successes=2, backoff=30.0, max_backoff=120.0)
    defaults.update(kwargs)
    return Health(clock=lambda: AT, **defaults)  # type: ignore[arg-type]


def test_a_gateway_never_probed_is_unknown_and_gets_calls() -> None:
    h = health()
    assert h.status(GW, AT) == "unknown"
    assert h.gateway_up(GW, AT)


def test_n_consecutive_probe_failures_mark_it_down() -> None:
    h = health()
    assert not h.probe_result(GW, False, AT)
    assert not h.probe_result(GW, False, AT + 1)
    assert h.gateway_up(GW, AT + 1)
    assert h.probe_result(GW, False, AT + 2)
    assert not h.gateway_up(GW, AT + 2)
    assert h.status(GW, AT + 2) == "down"


def test_a_success_between_failures_starts_the_count_again() -> None:
    h = health()
    for ok in (False, False, True, False, False):
        h.probe_result(GW, ok, AT)
    assert h.gateway_up(GW, AT)


def test_m_consecutive_successes_bring_it_back_up() -> None:
    h = health()
    for _ in range(3):
        h.probe_result(GW, False, AT)
    assert not h.probe_result(GW, True, AT + 1)
    assert not h.gateway_up(GW, AT + 1)  # one success is not enough
    assert h.probe_result(GW, True, AT + 2)
    assert h.status(GW, AT + 2) == "up"


def test_a_408_or_503_passes_the_gateway_over_for_the_back_off() -> None:
    h = health()
    assert h.passive_failure(GW, 503, AT)
    assert h.status(GW, AT + 29) == "backoff"
    assert not h.gateway_up(GW, AT + 29)
    assert h.gateway_up(GW, AT + 30)


def test_other_codes_do_not_mark_a_gateway() -> None:
    h = health()
    for code in (486, 404, 500, 603):
        assert not h.passive_failure(GW, code, AT)
    assert h.gateway_up(GW, AT)


def test_the_back_off_doubles_on_each_repeat_up_to_the_maximum() -> None:
    h = health()
    now = AT
    lengths = []
    for _ in range(5):
        assert h.passive_failure(GW, 408, now)
        lengths.append(h.gateways[GW].until - now)
        now = h.gateways[GW].until  # retried when it ran out, and failed again
    assert lengths == [30, 60, 120, 120, 120]


def test_failures_while_passed_over_do_not_double_it() -> None:
    h = health()
    h.passive_failure(GW, 503, AT)
    assert not h.passive_failure(GW, 503, AT + 1)  # a call sent before the first failure
    assert h.gateways[GW].until == AT + 30


def test_an_answered_call_ends_the_doubling() -> None:
    h = health()
    h.passive_failure(GW, 503, AT)
    h.passive_failure(GW, 503, AT + 30)  # 60 s
    h.passive_success(GW, AT + 90)
    h.passive_failure(GW, 503, AT + 100)
    assert h.gateways[GW].until == AT + 130  # back to 30 s


def test_a_long_quiet_time_forgets_the_doubling() -> None:
    h = health()
    h.passive_failure(GW, 503, AT)
    h.passive_failure(GW, 503, AT + 1000)
    assert h.gateways[GW].until == AT + 1030


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Health(failures=0)
    with pytest.raises(ValueError):
        Health(backoff=60, max_backoff=30)


async def test_a_gateway_marked_down_by_one_node_is_down_for_the_other(redis_url: str) -> None:
    primary = open_health(redis_url, node="primary", failures=2)
    secondary = open_health(redis_url, node="secondary", failures=2)
    other = "10.0.0.2:5060"
    try:
        primary.probe_result(GW, False, AT)
        primary.probe_result(GW, False, AT + 1)
        secondary.passive_failure(other, 503, AT + 1)
        await primary.sync()
        await secondary.sync()
        await primary.sync()
        assert not secondary.gateway_up(GW, AT + 2)
        assert secondary.status(GW, AT + 2) == "down"
        assert primary.status(other, AT + 2) == "backoff"
        assert primary.gateway_up(other, AT + 31)
        # The secondary's own probes bring it back up, for both.
        secondary.probe_result(GW, True, AT + 10)
        secondary.probe_result(GW, True, AT + 11)
        await secondary.sync()
        await primary.sync()
        assert primary.status(GW, AT + 12) == "up"
        # And what the operator's command sees:
        statuses = await gateway_statuses(redis_url, [GW, other, "10.9.9.9:5060"], AT + 12)
        assert statuses == {GW: "up", other: "backoff", "10.9.9.9:5060": "unknown"}
    finally:
        await primary.close()
        await secondary.close()


async def test_without_redis_health_is_in_process() -> None:
    h = open_health(None)
    h.passive_failure(GW, 503, AT)
    await h.sync()
    assert h.status(GW, AT) == "backoff"
    assert await gateway_statuses(None, [GW]) == {GW: "unknown"}


async def test_redis_going_away_keeps_the_local_picture_and_retries(redis_url: str) -> None:
    h = open_health("redis://127.0.0.1:1/0", node="primary", failures=1)
    h.probe_result(GW, False, AT)
    await h.sync()  # logged, not raised
    assert not h.link.ok and h.dirty == {GW}
    assert not h.gateway_up(GW, AT)
    await h.close()
    from redis.asyncio import Redis

    h.redis = Redis.from_url(redis_url)
    await h.sync()
    assert h.link.ok and not h.dirty
    assert (await gateway_statuses(redis_url, [GW], AT)) == {GW: "down"}
    await h.redis.aclose()
