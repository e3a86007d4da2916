"""What a fault experiment counts, out of what its peers wrote: pure functions over text and rows.

- sipp's ``-trace_msg`` message log (``read_messages``): every message a sipp
  peer received or sent, with sipp's wall-clock time. At a carrier it tells
  the INVITEs that reached it (``ghost_invites``, by called number) and when each of its calls
  was up, from its 200 to the BYE (``answered_spans``, ``peak``,
  ``over_limit``).
- the caller's ``-trace_logs`` lines of bench/scenarios/faults_caller.xml
  (``read_outcomes``): which of its calls were answered or refused.
- the ACR's CDRs against the answered calls (``billing``): each call dials
  its own number (the caller's prefix followed by its call number), so a
  CDR's callee names the caller's call.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SEPARATOR = "-" * 47 + " "
# A CDR marked so is no bill to the customer: "ghost" is the answer to an INVITE
# the B2BUA had abandoned (cost 0), "late" an attempt the ACR gave up on before
# it answered (what the carrier bills us, not the caller's call).
NOT_BILLED = frozenset(("ghost", "late"))


@dataclass(frozen=True, slots=True)
class Message:
    """One SIP message in a sipp message log."""

    time: float  # seconds since the epoch
    received: bool  # False: sent by sipp
    first_line: str
    call_id: str
    cseq: int
    method: str  # the CSeq's
    to_tag: str | None

    @property
    def request(self) -> str | None:
        """The method of a request, None for a response."""
        return None if self.first_line.startswith("SIP/2.0 ") else self.first_line.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        if not self.first_line.startswith("SIP/2.0 "):
            return None
        return int(self.first_line.split(" ", 2)[1])


def read_messages(lines: Iterable[str]) -> Iterator[Message]:
    """The messages of a sipp ``-trace_msg`` file, read line by line (the file may be large)."""
    block: list[str] = []
    for line in lines:
        if line.startswith(SEPARATOR):
            if block:
                message = _message(block)
                if message is not None:
                    yield message
            block = [line]
        elif block:
            block.append(line)
    if block:
        message = _message(block)
        if message is not None:
            yield message


def _message(block: list[str]) -> Message | None:
    # "----- 2026-12-06 05:08:54.967341", "UDP message received [268] bytes :", "", start line, headers
    if len(block) < 4:
        return None
    try:
        when = datetime.strptime(block[0][len(SEPARATOR) :].strip(), "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return None
    received = "message received" in block[1]
    text = [line.rstrip("\r\n") for line in block[2:]]
    while text and not text[0]:
        text.pop(0)
    if not text:
        return None
    headers: dict[str, str] = {}
    for line in text[1:]:
        if not line:
            break
        name, colon, value = line.partition(":")
        if colon:
            headers.setdefault(name.strip().lower(), value.strip())
    cseq = headers.get("cseq", "0 ?").split()
    to = headers.get("to", "")
    tag = to.partition(";tag=")[2].split(";", 1)[0] or None
    try:
        number = int(cseq[0])
    except (ValueError, IndexError):
        return None
    return Message(
        when.timestamp(), received, text[0], headers.get("call-id", ""), number,
        cseq[1] if len(cseq) > 1 else "", tag,
    )  # fmt: skip


def ghost_invites(messages: Iterable[Message]) -> int:
    """INVITEs that reached the peer for an attempt the B2BUA had already given up:
    an initial INVITE (no To tag) whose CSeq is lower than one received before it
    for the same called number. Every call of an experiment dials its own number;
    the B2BUA gives each attempt (next hop) a fresh Call-ID and a higher CSeq, so
    an older CSeq of a number arriving later is an abandoned attempt. Each such
    (Call-ID, CSeq) counts once, however often it was retransmitted."""
    highest: dict[str, int] = {}
    ghosts: set[tuple[str, int]] = set()
    for m in messages:
        if not m.received or m.request != "INVITE" or m.to_tag is not None:
            continue
        number = _user(m.first_line) or m.call_id
        seen = highest.get(number)
        if seen is not None and m.cseq < seen:
            ghosts.add((m.call_id, m.cseq))
        else:
            highest[number] = m.cseq if seen is None else max(seen, m.cseq)
    return len(ghosts)


def invites(messages: Iterable[Message]) -> int:
    """Distinct initial INVITEs (Call-ID, CSeq) the peer received."""
    return len(
        {
            (m.call_id, m.cseq)
            for m in messages
            if m.received and m.request == "INVITE" and m.to_tag is None
        }
    )


@dataclass(frozen=True, slots=True)
class Span:
    """A call the peer answered: from its 200 to the BYE (``end`` None: never ended)."""

    start: float
    end: float | None
    call_id: str
    number: str = ""  # the Request-URI user of its INVITE


def answered_spans(messages: Iterable[Message], until: float | None = None) -> list[Span]:
    """The calls a UAS peer answered, by dialog (Call-ID and its To tag), in order of answer.

    ``until``: the end of a call never hung up (default: the last message's time)."""
    numbers: dict[str, str] = {}
    starts: dict[tuple[str, str], float] = {}
    ends: dict[tuple[str, str], float] = {}
    last = 0.0
    for m in messages:
        last = max(last, m.time)
        if m.received and m.request == "INVITE" and m.to_tag is None:
            numbers.setdefault(m.call_id, _user(m.first_line))
        elif (
            not m.received
            and m.method == "INVITE"
            and m.status is not None
            and 200 <= m.status < 300
        ):
            starts.setdefault((m.call_id, m.to_tag or ""), m.time)
        elif m.received and m.request == "BYE":
            ends.setdefault((m.call_id, m.to_tag or ""), m.time)
    stop = last if until is None else until
    spans = [
        Span(start, ends.get(key, stop), key[0], numbers.get(key[0], ""))
        for key, start in starts.items()
    ]
    return sorted(spans, key=lambda s: s.start)


def _user(first_line: str) -> str:
    # "INVITE sip:4420123@127.0.0.1:5090 SIP/2.0" -> "4420123"
    uri = first_line.split(" ", 2)[1] if " " in first_line else ""
    return uri.partition(":")[2].partition("@")[0] if "@" in uri else ""


def concurrency(spans: Sequence[Span], at: float) -> int:
    """Calls up at instant ``at`` (a call is up from its start, inclusive, to its end, exclusive)."""
    return sum(1 for s in spans if s.start <= at and (s.end is None or at < s.end))


def peak(spans: Sequence[Span]) -> int:
    """The most calls up at once."""
    # At the same instant an end (-1) sorts before a start: the call that ended freed its room.
    events = sorted(
        [(s.start, 1) for s in spans] + [(s.end, -1) for s in spans if s.end is not None]
    )
    up = top = 0
    for _, change in events:
        up += change
        top = max(top, up)
    return top


def over_limit(spans: Sequence[Span], limit: int, since: float, grace: float = 0.0) -> int:
    """Calls answered at or after ``since`` that found ``limit`` calls up already:
    admissions past the limit (the calls admitted before ``since`` may still
    hold it above the limit; only a new admission on top of them counts).
    A call whose BYE came at most ``grace`` seconds after the new call's
    answer counts as ended already: its node had freed the room on the BYE."""
    starts = [s.start for s in spans]
    ends = sorted(s.end - grace for s in spans if s.end is not None)
    over = 0
    for s in spans:
        if s.start < since:
            continue
        started = bisect.bisect_right(starts, s.start)  # this call and all before it
        ended = bisect.bisect_right(ends, s.start)  # ended at or before it started
        if started - ended > limit:
            over += 1
    return over


# -- the caller ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Outcomes:
    """The caller's calls by call number: answered, refused (with the code)."""

    answered: set[int] = field(default_factory=set)
    refused: dict[int, int] = field(default_factory=dict)


def read_outcomes(lines: Iterable[str]) -> Outcomes:
    """The lines "answered N" and "refused N CODE" of faults_caller.xml's log."""
    outcomes = Outcomes()
    for line in lines:
        words = line.split()
        try:
            if len(words) >= 2 and words[0] == "answered":
                outcomes.answered.add(int(words[1]))
            elif len(words) >= 3 and words[0] == "refused":
                outcomes.refused[int(words[1])] = int(words[2])
        except ValueError:
            continue
    return outcomes


# -- the CDRs -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Billing:
    """The CDRs of one caller's calls against the calls it had answered."""

    expected: int  # answered calls: each must have exactly one billed CDR
    written: int  # answered calls with a billed CDR
    duplicated: int  # billed CDRs beyond the first of a call
    unanswered: int  # billed CDRs of calls the caller never had answered
    ghosts: int  # CDRs marked {"answer": "ghost"}
    ghosts_charged: int  # of those, with a cost
    late: int  # CDRs marked {"answer": "late"}

    @property
    def lost(self) -> int:
        return self.expected - self.written


def billed(cdr: Any) -> bool:
    """A CDR the customer pays: answered, and not marked ghost or late."""
    return cdr.answer is not None and cdr.extra.get("answer") not in NOT_BILLED


def billing(cdrs: Iterable[Any], prefix: str, answered: set[int]) -> Billing:
    """Count the CDRs (sipline.carriers.model.Cdr) of the calls to ``prefix`` + call number."""
    per_call: dict[int, int] = {}
    ghosts = charged = late = 0
    for cdr in cdrs:
        number = _call_number(cdr.callee, prefix)
        if number is None:
            continue
        marker = cdr.extra.get("answer")
        if marker == "ghost":
            ghosts += 1
            charged += cdr.cost != 0
        elif marker == "late":
            late += 1
        if billed(cdr):
            per_call[number] = per_call.get(number, 0) + 1
    written = sum(1 for n in answered if n in per_call)
    duplicated = sum(count - 1 for count in per_call.values())
    unanswered = sum(1 for n in per_call if n not in answered)
    return Billing(len(answered), written, duplicated, unanswered, ghosts, charged, late)


def _call_number(callee: str, prefix: str) -> int | None:
    if not callee.startswith(prefix):
        return None
    rest = callee[len(prefix) :]
    return int(rest) if rest.isdigit() else None
