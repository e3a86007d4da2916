"""RTP/RTCP port pairs drawn at random from a range (relay.ports)."""

from __future__ import annotations

import itertools

import pytest

from relay.ports import PortPool


def test_pairs_are_an_even_rtp_port_and_the_odd_one_above_inside_the_range() -> None:
    pool = PortPool(30001, 30008)
    ports = {pool.allocate() for _ in range(3)}
    assert ports == {30002, 30004, 30006}
    assert pool.allocate() is None  # 30008 has no 30009 inside the range
    assert pool.size == 3


def test_an_exhausted_pool_answers_none_until_a_pair_is_released() -> None:
    pool = PortPool(40000, 40003)
    assert {pool.allocate(), pool.allocate()} == {40000, 40002}
    assert pool.allocate() is None
    pool.release(40000)
    assert pool.available == 1
    assert pool.allocate() == 40000


def test_pairs_are_drawn_at_random_not_in_order() -> None:
    # 200 draws from 5,000 pairs: in order (or nearly), or all from a narrow band,
    # the next port could be guessed from the last ones.
    pool = PortPool(30000, 39999)
    ports = [port for port in (pool.allocate() for _ in range(200)) if port is not None]
    assert len(ports) == 200 and all(port % 2 == 0 for port in ports)
    steps = {b - a for a, b in itertools.pairwise(ports)}
    assert len(steps) > 150
    assert max(ports) - min(ports) > 5000
    assert len(set(ports)) == 200


def test_the_draw_is_the_pick_function_s() -> None:
    pool = PortPool(30000, 30007, pick=lambda n: n - 1)  # always the last free pair
    assert [pool.allocate() for _ in range(4)] == [30006, 30004, 30002, 30000]


def test_every_pair_is_drawn_once_before_the_pool_is_empty() -> None:
    pool = PortPool(30000, 30199)
    drawn = [pool.allocate() for _ in range(100)]
    assert sorted(drawn) == list(range(30000, 30200, 2))  # type: ignore[type-var]
    assert pool.allocate() is None


def test_a_released_pair_is_no_longer_taken_and_cannot_be_released_twice() -> None:
    pool = PortPool(30000, 30001)
    port = pool.allocate()
    assert port in pool
    pool.release(port)
    assert port not in pool
    with pytest.raises(KeyError):
        pool.release(port)


@pytest.mark.parametrize("low,high", [(30000, 30000), (30001, 30002), (0, 10), (40000, 30000)])
def test_a_range_without_a_pair_is_refused(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="no even/odd pair"):
        PortPool(low, high)
