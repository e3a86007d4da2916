"""What the router does so that no answered call goes unbilled and none is billed
twice (issue 12): the 2xx waits for the journal, the BYE for the CDR; calls taken
back after a restart end at their BYE or the sweep; a ghost (an answer the B2BUA had
given up on) costs nothing; an INVITE past the B2BUA's deadline reaches no carrier.
The fake node and stand-ins of tests.acr.test_router."""

from __future__ import annotations

from acr.router import MAX_CALL, PAST_DEADLINE
from sipline.carriers.model import Cdr
from sipline.sip.address import Address
from sipline.sip.message import Request
from sipline.sip.transaction import ServerTransaction, State
from tests.acr.test_router import B2BUA, Acr, acr, message

GHOST = 'Reason: SIP;cause=200;text="ghost"\r\n'
CARRIER = Address("UDP", "127.0.0.2", 5060)


def bye(a: Acr, source: Address = B2BUA, extra: str = "", call_id: str = "call-1") -> None:
    request = message(
        "BYE sip:carrier@127.0.0.2:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bKbye{source.port}\r\n"
        f"Route: {a.route(call_id)}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:+442071234567@127.0.0.1:5080>;tag=c1\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 2 BYE\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    assert isinstance(request, Request)
    server = ServerTransaction(("s", "bye"), request, "BYE", State.TRYING, source, source=source)
    a.router.on_request(a.node, request, server, source)  # type: ignore[arg-type]


def byes(a: Acr) -> list[Request]:
    return [t.request for t in a.node.sent if t.method == "BYE"]


# -- the answer and the hang-up wait for the disk --------------------------------------------
def test_the_2xx_goes_upstream_only_once_the_answer_is_on_disk() -> None:
    a = acr()
    a.cdrs.hold = True
    a.invite()
    [sent] = a.node.invites
    a.answer(sent, 200)
    [answer] = a.cdrs.answers
    assert (answer.call_id, answer.carrier, answer.answer) == ("call-1", "cheap", 1000.0)
    assert a.node.statuses == []  # not yet on disk: the caller hears nothing
    a.answer(sent, 200)  # the carrier retransmits meanwhile: still nothing goes up
    assert a.node.statuses == []
    a.cdrs.on_disk()
    assert a.node.statuses == [200]
    a.answer(sent, 200)  # retransmissions after that go up (the B2BUA's ACK stops them)
    assert a.node.statuses == [200, 200]


def test_the_bye_is_relayed_only_once_the_calls_cdr_is_on_disk() -> None:
    a = acr()
    a.invite()
    a.answer(a.node.invites[0], 200)
    a.cdrs.hold = True
    a.clock.now += 61
    bye(a)
    [cdr] = a.cdrs
    assert (cdr.final_code, cdr.billed_seconds, cdr.cost) == (200, 66, 0.011)
    assert byes(a) == []
    a.cdrs.on_disk()
    [relayed] = byes(a)
    assert relayed.call_id == "call-1"


def test_a_bye_for_no_call_of_ours_is_relayed_at_once() -> None:
    a = acr()
    a.cdrs.hold = True
    bye(a, call_id="someone-elses")
    assert len(byes(a)) == 1 and not a.cdrs


# -- calls taken back after a restart ----------------------------------------------------------
def answered(call_id: str, answer: float) -> Cdr:
    return Cdr(
        call_id=call_id, account="acme", caller="alice", callee="442071234567", prefix="44",
        carrier="cheap", gateway="127.0.0.2:5060", rate=0.01, start=answer - 5, end=answer,
        final_code=200, node="primary", answer=answer, first_increment=6, next_increment=6,
    )  # fmt: skip


def test_calls_answered_before_a_restart_are_billed_at_their_bye() -> None:
    a = acr()
    a.router.resume([(answered("call-1", 900.0), "media-1"), (answered("call-2", 950.0), None)])
    assert a.live.counters.active == {"cheap": 2}  # still up at the carrier
    assert a.router.metrics.values["calls_resumed"] == 2
    bye(a)
    [cdr] = a.cdrs
    assert (cdr.call_id, cdr.start, cdr.answer, cdr.end) == ("call-1", 895.0, 900.0, 1000.0)
    assert (cdr.billed_seconds, cdr.cost) == (102, round(102 * 0.01 / 60, 6))  # 6/6
    assert a.live.stats.media_calls == ["media-1"]
    assert a.live.counters.active == {"cheap": 1}
    assert len(byes(a)) == 1


def test_calls_taken_back_and_never_hung_up_are_swept_from_their_answer() -> None:
    a = acr()
    a.router.resume([(answered("call-1", 1000.0 - MAX_CALL + 60), None)])
    a.expire(59)
    assert not a.cdrs
    a.expire(2)
    [cdr] = a.cdrs
    assert cdr.extra == {"ended": "swept"}


# -- ghosts --------------------------------------------------------------------------------------
def test_a_ghost_hung_up_by_the_b2bua_gets_a_cdr_that_costs_nothing() -> None:
    a = acr()
    a.invite()
    a.answer(a.node.invites[0], 200)
    a.clock.now += 30
    bye(a, extra=GHOST)
    [cdr] = a.cdrs
    assert cdr.extra == {"answer": "ghost"}
    assert (cdr.final_code, cdr.answer, cdr.end) == (200, 1000.0, 1030.0)
    assert (cdr.billed_seconds, cdr.cost) == (0, 0.0)
    assert a.live.stats.ends == []  # no call duration for the statistics either
    assert a.live.counters.active == {"cheap": 0}
    assert a.router.metrics.values["ghost_calls"] == 1
    assert len(byes(a)) == 1


def test_only_the_b2bua_can_call_a_call_a_ghost() -> None:
    a = acr()
    a.invite()
    a.answer(a.node.invites[0], 200)
    a.clock.now += 30
    bye(a, source=CARRIER, extra=GHOST)  # the carrier hangs up, and would rather we not bill
    [cdr] = a.cdrs
    assert cdr.extra == {} and cdr.billed_seconds == 30


# -- the B2BUA's deadline --------------------------------------------------------------------------
def deadline(at: float) -> str:
    return f"X-Sipline-Account: acme\r\nX-Sipline-Deadline: {at:.3f}\r\n"


def test_an_invite_past_its_deadline_is_answered_408_and_routed_nowhere() -> None:
    a = acr()
    a.invite(extra=deadline(999.9))
    assert not a.node.sent
    [response] = a.node.upstream
    assert (response.status, response.reason) == (408, PAST_DEADLINE)
    assert a.router.metrics.values["invites_past_deadline"] == 1
    assert not a.cdrs and a.live.counters.active == {}


def test_an_invite_within_its_deadline_goes_on_without_the_header() -> None:
    a = acr()
    a.invite(extra=deadline(1000.5))
    [sent] = a.node.invites
    assert "x-sipline-deadline" not in sent.request.headers
    a.invite(extra="X-Sipline-Deadline: soon\r\n", call_id="call-2")  # not a time: no deadline
    assert len(a.node.invites) == 2
    assert "x-sipline-deadline" not in a.node.invites[1].request.headers


def test_a_call_that_would_reach_the_next_carrier_past_its_deadline_unheard_ends_408() -> None:
    a = acr()
    a.invite(extra=deadline(1001.0))
    a.clock.now += 2  # the first carrier took its time to refuse; we said nothing upstream
    a.answer(a.node.invites[0], 503)
    assert len(a.node.invites) == 1
    assert a.node.statuses == [408]
    [cdr] = a.cdrs  # the attempt that reached a carrier is on record, unbilled
    assert (cdr.final_code, cdr.cost) == (408, 0.0)
    assert a.live.counters.active == {"cheap": 0}


def test_once_the_b2bua_heard_from_us_the_deadline_no_longer_holds() -> None:
    a = acr()
    server = a.invite(extra=deadline(1001.0))
    a.answer(a.node.invites[0], 180)  # relayed upstream: the B2BUA waits for us now
    server.data = b"SIP/2.0 180 Ringing"  # what the transaction layer keeps of it
    a.clock.now += 2
    a.answer(a.node.invites[0], 503)
    assert len(a.node.invites) == 2  # the next carrier is tried


def test_a_carrier_cannot_set_a_deadline_on_an_inbound_call() -> None:
    a = acr()
    a.invite("sip:3312345678@127.0.0.1:5080", source=CARRIER, extra="X-Sipline-Deadline: 1.0\r\n")
    [sent] = a.node.invites  # not refused, and the header goes no further
    assert "x-sipline-deadline" not in sent.request.headers
