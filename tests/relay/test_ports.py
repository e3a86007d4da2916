"""RTP/RTCP port pairs from a range (relay.ports)."""

from __future__ import annotations

import pytest

from relay.ports import PortPool


def test_pairs_are_an_even_rtp_port_and_the_odd_one_above_inside_the_range() -> None:
    pool = PortPool(30001, 30008)
    ports = [pool.allocate() for _ in range(3)]
    assert ports == [30002, 30004, 30006]
    assert pool.allocate() is None  # 30008 has no 30009 inside the range
    assert pool.size == 3


def test_an_exhausted_pool_answers_none_until_a_pair_is_released() -> None:
    pool = PortPool(40000, 40003)
    assert [pool.allocate(), pool.allocate(), pool.allocate()] == [40000, 40002, None]
    pool.release(40000)
    assert pool.available == 1
    assert pool.allocate() == 40000


def test_released_pairs_are_reused_last() -> None:
    pool = PortPool(30000, 30007)
    first = pool.allocate()
    assert first == 30000
    pool.release(first)
    assert [pool.allocate() for _ in range(4)] == [30002, 30004, 30006, 30000]


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
