"""bench.faults.counting: what the fault experiments count, from sipp's logs and the CDRs."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.faults.counting import (
    Span,
    answered_spans,
    billing,
    ghost_invites,
    invites,
    over_limit,
    peak,
    read_messages,
    read_outcomes,
)
from bench.faults.lab import Seen, retransmitted_after

LINE = "-" * 47


def block(when: str, direction: str, start: str, call_id: str, cseq: str, to_tag: str = "") -> str:
    verb = (
        "UDP message received [300] bytes :"
        if direction == "in"
        else "UDP message sent (300 bytes):"
    )
    to = "To: <sip:442071@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{LINE} 2026-12-06 05:00:{when}\n{verb}\n\n{start}\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n{to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n\n"
    )


INVITE = "INVITE sip:4401{n}@127.0.0.1:5090 SIP/2.0"


def test_messages_are_read_with_their_time_direction_and_dialog() -> None:
    text = block("01.250000", "in", INVITE.format(n=7), "c1", "1 INVITE")
    text += block("01.260000", "out", "SIP/2.0 200 OK", "c1", "1 INVITE", "t1")
    first, second = read_messages(text.splitlines(keepends=True))
    assert first.received and first.request == "INVITE" and first.to_tag is None
    assert (first.call_id, first.cseq, first.method) == ("c1", 1, "INVITE")
    assert not second.received and second.status == 200 and second.to_tag == "t1"
    assert round(second.time - first.time, 3) == 0.01


def test_an_older_attempt_of_a_number_arriving_after_a_newer_one_is_a_ghost() -> None:
    text = "".join([
        block("01.000000", "in", INVITE.format(n=1), "c1", "1 INVITE"),  # sent before the crash
        block("02.000000", "in", INVITE.format(n=1), "c1b", "2 INVITE"),  # the failover: a fresh Call-ID
        block("05.000000", "in", INVITE.format(n=1), "c1", "1 INVITE"),  # the old one, come back
        block("05.500000", "in", INVITE.format(n=1), "c1", "1 INVITE"),  # its retransmission
        block("06.000000", "in", INVITE.format(n=2), "c2", "2 INVITE"),  # a failover only
        block("06.100000", "in", "BYE sip:x@127.0.0.1 SIP/2.0", "c2", "3 BYE", "t2"),
        block("07.000000", "in", INVITE.format(n=3), "c3", "1 INVITE"),  # a B2BUA of old: one Call-ID
        block("07.100000", "in", INVITE.format(n=3), "c3", "2 INVITE"),
        block("07.200000", "in", INVITE.format(n=3), "c3", "1 INVITE"),
    ])  # fmt: skip
    messages = list(read_messages(text.splitlines(keepends=True)))
    assert ghost_invites(messages) == 2
    assert invites(messages) == 5


def span(start: float, end: float | None) -> Span:
    return Span(start, end, f"c{start}")


def test_the_peak_frees_the_room_of_a_call_ending_when_another_starts() -> None:
    assert peak([span(0, 2), span(1, 3), span(2, 4), span(2.5, 5)]) == 3
    assert peak([span(0, 1), span(1, 2), span(2, None)]) == 1


def test_only_admissions_since_convergence_on_top_of_the_limit_count() -> None:
    spans = [span(0, 10), span(1, 10), span(2, 10), span(6, 7), span(8, 9)]
    # limit 2: the third call (at 2) went over before convergence at 5; the calls at
    # 6 and 8 found 3 up already, so each went over again.
    assert over_limit(spans, 2, since=5) == 2
    assert over_limit(spans, 4, since=5) == 0
    assert over_limit([span(0, 3), span(3, 6), span(6, 9)], 1, since=0) == 0
    # A BYE that reaches the peer just after the next call's 200: past the limit
    # by a hair, unless within the grace.
    crossed = [span(0, 3.01), span(3, 6)]
    assert over_limit(crossed, 1, since=0) == 1
    assert over_limit(crossed, 1, since=0, grace=0.05) == 0


def test_answered_spans_run_from_the_200_to_the_bye_by_dialog() -> None:
    text = "".join([
        block("01.000000", "in", INVITE.format(n=1), "c1", "1 INVITE"),
        block("01.010000", "out", "SIP/2.0 200 OK", "c1", "1 INVITE", "t1"),
        block("03.000000", "in", "BYE sip:x@127.0.0.1 SIP/2.0", "c1", "2 BYE", "t1"),
        block("03.500000", "in", INVITE.format(n=2), "c2", "1 INVITE"),
        block("03.510000", "out", "SIP/2.0 200 OK", "c2", "1 INVITE", "t2"),
    ])  # fmt: skip
    one, two = answered_spans(list(read_messages(text.splitlines(keepends=True))), until=9e9)
    assert one.number == "44011" and round(one.end - one.start, 2) == 1.99
    assert two.number == "44012" and two.end == 9e9


def test_the_caller_log_gives_answered_and_refused_calls() -> None:
    outcomes = read_outcomes(["answered 1\n", "refused 2 503\n", "answered 3\n", "junk\n"])
    assert outcomes.answered == {1, 3} and outcomes.refused == {2: 503}


@dataclass
class Cdr:
    callee: str
    answer: float | None = 1.0
    cost: float = 0.01
    extra: dict[str, str] = field(default_factory=dict)


def test_billing_counts_one_bill_per_answered_call_and_sets_ghosts_and_late_answers_apart() -> None:
    cdrs = [
        Cdr("44011"), Cdr("44012"), Cdr("44012"),  # call 2 billed twice
        Cdr("44013", extra={"answer": "ghost"}, cost=0.0),
        Cdr("44014", extra={"answer": "ghost"}),  # a ghost charged
        Cdr("44015", extra={"answer": "late"}),
        Cdr("44016"),  # never answered for the caller
        Cdr("44017", answer=None, cost=0.0),  # a failed call's CDR
        Cdr("55011"),  # another caller's
    ]  # fmt: skip
    counted = billing(cdrs, "4401", answered={1, 2, 3, 4, 5})
    assert (counted.expected, counted.written, counted.lost) == (5, 2, 3)
    assert (counted.duplicated, counted.unanswered) == (1, 1)
    assert (counted.ghosts, counted.ghosts_charged, counted.late) == (2, 1, 1)


def test_a_retransmission_past_the_failover_counts_once_per_transaction() -> None:
    seen = [
        Seen(0.0, "INVITE", "a", 1), Seen(0.5, "INVITE", "a", 1), Seen(1.5, "INVITE", "a", 1),
        Seen(3.5, "INVITE", "a", 1), Seen(7.5, "INVITE", "a", 1),
        Seen(1.0, "INVITE", "b", 1), Seen(1.5, "INVITE", "b", 1),
    ]  # fmt: skip
    assert retransmitted_after(seen, after=2.25) == 1
