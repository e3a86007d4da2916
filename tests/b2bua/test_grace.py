"""The licence rules (sipline.grace), with a fake clock: within, in grace, enforced."""

from __future__ import annotations

from sipline.grace import EXCEEDED, HOUR, Licence, LocalCalls

T0 = 1_000_000.0


def admit(calls: LocalCalls, licence: Licence, call_id: str, now: float) -> tuple[Licence, bool]:
    """One call through the counter and the rules, as b2bua.licences does it."""
    counted = calls.admit(licence.account, call_id, licence.limit(now), now)
    verdict = licence.judge(counted.count, counted.admitted, now)
    if verdict.start_grace:
        licence = licence.started(now)
    return licence, verdict.allowed


def test_calls_within_the_licence_go_ahead_and_start_no_grace() -> None:
    licence = Licence("ACME", calls=2, grace_hours=48)
    verdict = licence.judge(count=2, admitted=True, now=T0)
    assert verdict.allowed and not verdict.over and not verdict.start_grace
    assert licence.state(T0) == "within"


def test_the_first_call_over_the_licence_starts_the_grace_period_and_goes_ahead() -> None:
    licence = Licence("ACME", calls=2, grace_hours=48)
    assert licence.limit(T0) is None  # the counter takes every call while grace is possible
    verdict = licence.judge(count=3, admitted=True, now=T0)
    assert verdict.allowed and verdict.over and verdict.start_grace
    started = licence.started(T0)
    assert started.state(T0) == "grace" and started.grace_ends_at == T0 + 48 * HOUR
    again = started.judge(count=4, admitted=True, now=T0 + 60)
    assert again.allowed and again.over and not again.start_grace  # one start per period


def test_after_the_grace_period_calls_over_the_licence_are_refused_and_within_it_go_ahead() -> None:
    licence = Licence("ACME", calls=1, grace_hours=48, grace_started_at=T0)
    end = T0 + 48 * HOUR
    assert licence.may_exceed(end - 1) and not licence.may_exceed(end)
    assert licence.state(end) == "enforced" and licence.limit(end) == 1
    refused = licence.judge(count=2, admitted=False, now=end)
    assert (refused.allowed, refused.over, refused.reason) == (False, True, EXCEEDED)
    assert licence.judge(count=1, admitted=True, now=end).allowed


def test_going_back_under_the_licence_does_not_restart_the_period() -> None:
    calls = LocalCalls(ttl=4 * HOUR)
    licence = Licence("ACME", calls=1, grace_hours=1)
    licence, allowed = admit(calls, licence, "a", T0)
    licence, allowed = admit(calls, licence, "b", T0 + 10)
    assert allowed and licence.grace_started_at == T0 + 10
    calls.release("ACME", "a")
    calls.release("ACME", "b")
    later = T0 + 10 + 24 * HOUR  # a whole day within the licence
    licence, allowed = admit(calls, licence, "c", later)
    assert allowed
    licence, allowed = admit(calls, licence, "d", later)
    assert not allowed and licence.grace_started_at == T0 + 10


def test_no_grace_hours_means_refused_at_once_and_no_period_recorded() -> None:
    calls = LocalCalls(ttl=HOUR)
    licence = Licence("STRICT", calls=1, grace_hours=0)
    licence, first = admit(calls, licence, "a", T0)
    licence, second = admit(calls, licence, "b", T0)
    assert (first, second) == (True, False)
    assert licence.grace_started_at is None and licence.state(T0) == "within"


def test_a_licence_of_zero_allows_calls_only_in_grace() -> None:
    calls = LocalCalls(ttl=HOUR)
    licence = Licence("TRIAL", calls=0, grace_hours=1)
    licence, allowed = admit(calls, licence, "a", T0)
    assert allowed and licence.grace_started_at == T0
    licence, allowed = admit(calls, licence, "b", T0 + HOUR)
    assert not allowed


def test_the_counter_counts_a_call_once_and_forgets_it_on_release() -> None:
    calls = LocalCalls(ttl=HOUR)
    assert calls.admit("ACME", "a", 1, T0) == (True, 1, True)
    assert calls.admit("ACME", "a", 1, T0) == (True, 1, False)  # the same call again
    assert calls.admit("ACME", "b", 1, T0) == (False, 2, True)  # would be the second
    assert calls.count("ACME", T0) == 1
    calls.release("ACME", "a")
    calls.release("ACME", "a")  # idempotent
    assert calls.count("ACME", T0) == 0
    assert calls.admit("ACME", "b", 1, T0) == (True, 1, True)


def test_a_call_never_released_is_forgotten_after_the_ttl() -> None:
    calls = LocalCalls(ttl=HOUR)
    calls.admit("ACME", "lost", None, T0)
    calls.admit("ACME", "later", None, T0 + 10)
    assert calls.count("ACME", T0 + HOUR - 1) == 2
    assert calls.count("ACME", T0 + HOUR) == 1
    assert calls.admit("ACME", "new", 1, T0 + HOUR + 10) == (True, 1, True)


def test_accounts_are_counted_apart() -> None:
    calls = LocalCalls(ttl=HOUR)
    assert calls.admit("A", "1", 1, T0).admitted
    assert calls.admit("B", "2", 1, T0).admitted
    assert not calls.admit("A", "3", 1, T0).admitted
