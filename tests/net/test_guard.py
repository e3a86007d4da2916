"""The guard's pure logic on a fake clock: flood windows, bans and their expiry,
auth-failure windows, trusted peers, and the bounds on its tables."""

from __future__ import annotations

import logging

import pytest

from sipline.config import LimitsSection
from sipline.net.guard import FOREVER, Guard, NewBan, source_key
from sipline.net.metrics import NodeMetrics
from sipline.sip.address import Address
from tests.support import FakeClock

STRANGER = Address("UDP", "203.0.113.7", 5060)
OTHER = Address("UDP", "198.51.100.2", 5060)
PEER = Address("UDP", "192.0.2.10", 5070)



def guard(clock: FakeClock, trusted: tuple[Address, ...] = (), **limits: object) -> Guard:
    settings = LimitsSection(**{"flood_window": 2.0, "flood_density": 10, **limits})
    asked: list[Address] = []

    def trusts(source: Address) -> bool:
        asked.append(source)
        return source in trusted

    made = Guard(trusts, settings, metrics=NodeMetrics(register=False), clock=clock)
    made.asked = asked  # type: ignore[attr-defined]
    return made


def sends(g: Guard, source: Address, count: int) -> list[bool]:
    return [g.admit(source) for _ in range(count)]


def test_a_source_within_its_density_is_admitted_window_after_window() -> None:
    clock = FakeClock()
    g = guard(clock)
    for _ in range(5):
        assert all(sends(g, STRANGER, 10))
        clock.now += 2.0
    assert not g.banned and g.metrics.dropped["flood"].value == 0


def test_the_message_over_the_density_is_dropped_and_bans_the_source() -> None:
    clock = FakeClock()
    g = guard(clock, flood_ban=300.0)
    assert sends(g, STRANGER, 11) == [True] * 10 + [False]
    assert g.banned == {"203.0.113.7": 1300.0}
    assert g.made == [NewBan("203.0.113.7", 300.0, "flood")]
    assert g.metrics.bans["flood"].value == 1
    assert g.metrics.dropped["flood"].value == 1
    # Banned: every later message is dropped, counted as such, and bans nothing more.
    clock.now += 100
    assert not any(sends(g, STRANGER, 50))
    assert g.metrics.dropped["banned"].value == 50
    assert g.metrics.bans["flood"].value == 1
    assert sends(g, OTHER, 10) == [True] * 10  # others are counted apart


def test_a_ban_expires_and_the_source_starts_from_a_clean_count() -> None:
    clock = FakeClock()
    g = guard(clock, flood_ban=300.0)
    sends(g, STRANGER, 11)
    clock.now += 299.9
    assert not g.admit(STRANGER)
    clock.now += 0.1
    assert sends(g, STRANGER, 10) == [True] * 10
    assert "203.0.113.7" not in g.banned


def test_trusted_peers_are_never_dropped_and_asked_about_only_over_the_limit() -> None:
    clock = FakeClock()
    g = guard(clock, trusted=(PEER,))
    assert all(sends(g, PEER, 10))
    assert g.asked == []  # type: ignore[attr-defined]
    assert all(sends(g, PEER, 1000))
    assert not g.banned and g.metrics.dropped["flood"].value == 0
    assert g.asked == [PEER]  # type: ignore[attr-defined]  # remembered until the next prune


def test_a_trusted_peer_passes_even_from_a_banned_address() -> None:
    clock = FakeClock()
    phone = Address("UDP", PEER.host, 40000)  # a stranger on the peer's host
    g = guard(clock, trusted=(PEER,))
    assert not sends(g, phone, 11)[-1]
    assert PEER.host in g.banned
    assert g.admit(PEER)
    assert not g.admit(phone)


def test_no_density_means_no_flood_limit() -> None:
    g = guard(FakeClock(), flood_density=0)
    assert all(sends(g, STRANGER, 10_000))


def test_ipv6_sources_are_counted_and_banned_by_their_prefix() -> None:
    clock = FakeClock()
    g = guard(clock)
    hosts = [f"2001:db8:1:2::{n:x}" for n in range(1, 12)]
    admitted = [g.admit(Address("UDP", host, 5060)) for host in hosts]
    assert admitted == [True] * 10 + [False]
    assert list(g.banned) == ["2001:db8:1:2::/64"]
    assert g.admit(Address("UDP", "2001:db8:1:3::1", 5060))
    assert source_key("2001:db8:1:2:aaaa::1", 48) == "2001:db8:1::/48"
    assert source_key("192.0.2.1") == "192.0.2.1"


def test_the_table_of_sources_is_capped_and_pruned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sipline.guard")
    clock = FakeClock()
    g = guard(clock, max_sources=16)
    for n in range(16):
        assert g.admit(Address("UDP", f"10.0.0.{n}", 5060))
    # At the cap a new source goes uncounted (a prune is not due within the window) ...
    assert all(sends(g, STRANGER, 50))
    assert g.metrics.untracked.value == 50 and "203.0.113.7" not in g.banned
    assert [r.getMessage() for r in caplog.records] == ["event=flood_table_full sources=16"]
    # ... until the windows ran out and a prune freed the room.
    clock.now += 2.0
    assert sends(g, STRANGER, 11)[-1] is False
    assert len(g._windows) == 1


def test_prune_forgets_ended_windows_and_expired_bans() -> None:
    clock = FakeClock()
    g = guard(clock, flood_ban=10.0)
    sends(g, STRANGER, 11)
    sends(g, OTHER, 3)
    clock.now += 5
    g.prune()
    assert list(g._windows) == [] and list(g.banned) == ["203.0.113.7"]
    clock.now += 5
    g.prune()
    assert g.banned == {}


def test_the_bans_a_node_makes_are_capped() -> None:
    clock = FakeClock()
    g = guard(clock, max_bans=16, flood_density=1)
    for n in range(20):
        sends(g, Address("UDP", f"10.0.1.{n}", 5060), 2)
    assert len(g.banned) == 16 and len(g.made) == 16
    # Over the cap a flooding source is still dropped for the rest of its window.
    assert not g.admit(Address("UDP", "10.0.1.19", 5060))
    assert g.admit(Address("UDP", "10.0.1.19", 5061)) is False


def test_shared_bans_apply_and_lift() -> None:
    clock = FakeClock()
    g = guard(clock)
    g.apply(STRANGER.host, FOREVER)
    clock.now += 1e9
    assert not g.admit(STRANGER)
    g.lift(STRANGER.host)
    assert g.admit(STRANGER)
    g.apply(OTHER.host, clock.now + 5)
    assert not g.admit(OTHER)
    clock.now += 5
    assert g.admit(OTHER)


def test_auth_failures_within_the_window_ban_the_source(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sipline.guard")
    clock = FakeClock()
    g = guard(clock, auth_failures=3, auth_window=60.0, auth_ban=600.0)
    g.auth_failed(STRANGER, "alice")
    clock.now += 59
    g.auth_failed(STRANGER, "alice")
    assert not g.banned
    clock.now += 1  # the first failure's window is over: counting starts again
    g.auth_failed(STRANGER, "bob")
    g.auth_failed(STRANGER, "carol")
    assert not g.banned
    g.auth_failed(STRANGER, "dave")
    assert g.banned == {STRANGER.host: clock.now + 600.0}
    assert g.made == [NewBan(STRANGER.host, 600.0, "auth")]
    assert not g.admit(STRANGER)
    assert g.metrics.auth_failures.value == 5 and g.metrics.bans["auth"].value == 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "event=auth_failed ip=203.0.113.7 port=5060 transport=udp user=alice failures=1"
    )
    assert sum(line.startswith("event=auth_failed ip=203.0.113.7 ") for line in lines) == 5
    assert lines[-1] == (
        "event=banned ip=203.0.113.7 reason=auth seconds=600 source=udp:203.0.113.7:5060"
    )


def test_a_user_name_cannot_forge_the_address_fail2ban_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "sipline.guard")
    g = guard(FakeClock())
    g.auth_failed(STRANGER, "x ip=192.0.2.99 \nevent=auth_failed ip=192.0.2.98")
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("event=auth_failed ip=203.0.113.7 port=5060 ")
    assert "\n" not in line


def test_trusted_peers_are_not_banned_for_auth_failures() -> None:
    g = guard(FakeClock(), trusted=(PEER,), auth_failures=2)
    for _ in range(5):
        g.auth_failed(PEER, "alice")
    assert not g.banned


def test_no_auth_failure_limit_means_no_ban() -> None:
    g = guard(FakeClock(), auth_failures=0)
    for _ in range(50):
        g.auth_failed(STRANGER, "alice")
    assert not g.banned


def test_banned_sources_seen_sending_are_handed_on_for_the_kernel_to_drop() -> None:
    clock = FakeClock()
    phone = Address("UDP", PEER.host, 40000)
    g = guard(clock, trusted=(PEER,), flood_ban=10.0)
    told: list[int] = []
    g.on_dropping = lambda: told.append(len(g.dropping))
    sends(g, phone, 11)  # the 11th bans PEER's host; nothing was seen sending banned yet
    assert g.dropping == set() and told == []
    sends(g, phone, 5)
    g.admit(PEER)  # trusted: passes, never handed on
    other_port = phone._replace(port=40001)
    g.admit(other_port)
    assert g.dropping == {phone, other_port} and told == [1, 2]
    g.lift(PEER.host)
    assert g.dropping == set()
    sends(g, phone, 12)
    assert g.dropping == {phone}
    clock.now += 10
    g.prune()
    assert g.dropping == set()  # the ban ran out
