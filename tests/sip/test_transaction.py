"""The transaction layer: RFC 3261 §17 with RFC 6026, driven by a fake clock."""


import pytest

from sipline.sip.address import Address
from sipline.sip.errors import LocalProtocolError
from sipline.sip.message import Request, Response, parse_message
from sipline.sip.transaction import (
    ClientTransaction,
    Deliver,
    DeliverResponse,
    Refused,
    Send,
    ServerTransaction,
    State,
    Terminated,
    TimedOut,
    TransactionLayer,
    same_peer,
)
from tests.support import FakeClock

PHONE = Address("UDP", "192.0.2.10", 5060)
PHONE_TCP = Address("TCP", "192.0.2.10", 49152, connection=7)
NEXT_HOP = Address("UDP", "198.51.100.20", 5060)
NEXT_HOP_TCP = Address("TCP", "198.51.100.20", 5060)



@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(0.0)


@pytest.fixture
def layer(clock: FakeClock) -> TransactionLayer:
    return TransactionLayer(clock)


def sip(text: str, **values: object) -> Request | Response:
    """Parse a literal SIP text written with plain newlines."""
    return parse_message(text.format(**values).lstrip("\n").replace("\n", "\r\n").encode())


def wire(message: Request | Response) -> Request | Response:
    """The message as the far end receives it."""
    return parse_message(message.serialise())


INVITE = """
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/{transport} 192.0.2.10:5060;branch={branch}
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:alice@192.0.2.10>
Content-Length: 0

"""

# What a proxy sends on: its own Via on top of the phone's, and a route set.
OUR_INVITE = """
INVITE sip:bob@192.0.2.99 SIP/2.0
Via: SIP/2.0/{transport} 198.51.100.1:5060;branch={branch}
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;received=192.0.2.10
Route: <sip:p1.example.com;lr>
Route: <sip:p2.example.com;lr>
Max-Forwards: 69
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:alice@192.0.2.10>
Content-Length: 0

"""

OPTIONS = """
OPTIONS sip:carrier.example.net SIP/2.0
Via: SIP/2.0/{transport} 198.51.100.1:5060;branch={branch}
Max-Forwards: 70
To: <sip:carrier.example.net>
From: <sip:ping@198.51.100.1>;tag=77
Call-ID: opt-1
CSeq: 1 OPTIONS
Content-Length: 0

"""

REGISTER = """
REGISTER sip:registrar.example.com SIP/2.0
Via: SIP/2.0/{transport} 192.0.2.10:5060;branch={branch}
Max-Forwards: 70
To: <sip:alice@example.com>
From: <sip:alice@example.com>;tag=456248
Call-ID: reg-1
CSeq: 1826 REGISTER
Contact: <sip:alice@192.0.2.10>
Content-Length: 0

"""

BYE = """
BYE sip:alice@192.0.2.10 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}
Max-Forwards: 70
To: <sip:alice@example.com>;tag=a6c85cf
From: <sip:bob@example.com>;tag=1928301774
Call-ID: call-2
CSeq: 231 BYE
Content-Length: 0

"""


def invite(branch: str = "z9hG4bKnashds8", transport: str = "UDP") -> Request:
    return sip(INVITE, branch=branch, transport=transport)


def our_invite(branch: str = "z9hG4bKout1", transport: str = "UDP") -> Request:
    return sip(OUR_INVITE, branch=branch, transport=transport)


def options(branch: str = "z9hG4bKopt1", transport: str = "UDP") -> Request:
    return sip(OPTIONS, branch=branch, transport=transport)


def register(branch: str = "z9hG4bKreg1", transport: str = "UDP") -> Request:
    return sip(REGISTER, branch=branch, transport=transport)


def ack_for_invite(request: Request, response: Response, branch: str | None = None) -> Request:
    """The ACK the phone sends for ``response``: for a non-2xx the INVITE's branch."""
    via = request.headers.get("via") or ""
    if branch is not None:
        via = via.replace(request.via.branch or "", branch)
    return sip(
        """
ACK {uri} SIP/2.0
Via: {via}
Max-Forwards: 70
To: {to}
From: {from_}
Call-ID: {call_id}
CSeq: {number} ACK
Content-Length: 0

""",
        uri=request.uri,
        via=via,
        to=response.headers.get("to"),
        from_=request.headers.get("from"),
        call_id=request.call_id,
        number=request.cseq.number,
    )


def cancel_of(request: Request) -> Request:
    return sip(
        """
CANCEL {uri} SIP/2.0
Via: {via}
Max-Forwards: 70
To: {to}
From: {from_}
Call-ID: {call_id}
CSeq: {number} CANCEL
Content-Length: 0

""",
        uri=request.uri,
        via=request.headers.get("via"),
        to=request.headers.get("to"),
        from_=request.headers.get("from"),
        call_id=request.call_id,
        number=request.cseq.number,
    )


def of_type(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def sent(actions: list) -> list:
    """The messages of the Send actions, parsed."""
    return [parse_message(a.data) for a in of_type(actions, Send)]


def run(layer: TransactionLayer, clock: FakeClock, until: float, step: float = 0.01):
    """Advance the clock tick by tick to ``until``; (time, action) for every action."""
    timeline = []
    ticks = round((until - clock.now) / step)
    start = clock.now
    for i in range(1, ticks + 1):
        clock.now = round(start + i * step, 6)
        timeline.extend((clock.now, action) for action in layer.expire(clock.now))
    return timeline


def times(timeline: list, kind: type) -> list[float]:
    return [at for at, action in timeline if isinstance(action, kind)]


def only_txn(layer: TransactionLayer, request: Request, source: Address = PHONE):
    actions = layer.receive(request, source)
    (deliver,) = of_type(actions, Deliver)
    return deliver.txn, actions


RETRANSMIT_A = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
RETRANSMIT_E = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


# --- INVITE client transaction (§17.1.1) --------------------------------------


def test_invite_client_sends_the_request_once_serialised(layer):
    request = our_invite()
    txn, actions = layer.request(request, NEXT_HOP)
    assert actions == [Send(request.serialise(), NEXT_HOP, txn)]  # txn: for transport errors
    assert isinstance(txn, ClientTransaction)
    assert (txn.method, txn.state, txn.dest) == ("INVITE", State.CALLING, NEXT_HOP)
    assert len(layer) == 1


def test_timer_a_retransmits_the_invite_doubling_and_timer_b_times_it_out_at_64_t1(layer, clock):
    txn, first = layer.request(our_invite(), NEXT_HOP)
    timeline = run(layer, clock, 40.0)
    assert times(timeline, Send) == RETRANSMIT_A
    assert all(action.data == first[0].data for _, action in timeline if isinstance(action, Send))
    assert [(at, type(action)) for at, action in timeline if not isinstance(action, Send)] == [
        (32.0, TimedOut),
        (32.0, Terminated),
    ]
    assert txn.state is State.TERMINATED
    assert layer.idle and len(layer) == 0


def test_a_late_tick_past_timer_b_times_out_without_a_last_retransmission(layer, clock):
    txn, _ = layer.request(our_invite(), NEXT_HOP)
    clock.now = 50.0
    assert layer.expire(50.0) == [TimedOut(txn), Terminated(txn)]


def test_a_late_tick_sends_one_retransmission_not_a_burst_to_catch_up(layer, clock):
    layer.request(our_invite(), NEXT_HOP)
    clock.now = 10.0
    assert len(layer.expire(10.0)) == 1
    assert times(run(layer, clock, 12.0), Send) == [11.0]  # timer A goes on from now


def test_an_invite_over_tcp_is_never_retransmitted_and_times_out_at_64_t1(layer, clock):
    layer.request(our_invite(transport="TCP"), NEXT_HOP_TCP)
    timeline = run(layer, clock, 40.0)
    assert times(timeline, Send) == []
    assert times(timeline, TimedOut) == [32.0]


def test_a_provisional_response_stops_invite_retransmissions_and_timer_b(layer, clock):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    run(layer, clock, 0.6)
    ringing = wire(request.response(180, to_tag="bob1"))
    actions = layer.receive(ringing, NEXT_HOP)
    assert actions == [DeliverResponse(ringing, txn, NEXT_HOP)]
    assert txn.state is State.PROCEEDING
    assert run(layer, clock, 100.0) == []
    assert len(layer) == 1  # the TU's timer C ends it, not the transaction


def test_a_non_2xx_final_is_acked_by_the_transaction_per_17_1_1_3(layer, clock):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    busy = wire(request.response(486, to_tag="bob1"))
    actions = layer.receive(busy, NEXT_HOP)
    assert of_type(actions, DeliverResponse) == [DeliverResponse(busy, txn, NEXT_HOP)]
    assert txn.state is State.COMPLETED
    (send,) = of_type(actions, Send)
    assert actions.index(send) == 0  # on the wire before anything the TU sends in answer
    assert send.dest == NEXT_HOP
    ack = parse_message(send.data)
    assert isinstance(ack, Request)
    assert (ack.method, ack.uri) == ("ACK", "sip:bob@192.0.2.99")
    assert ack.headers.get_all("via") == ["SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKout1"]
    assert ack.headers.get("to") == "Bob <sip:bob@biloxi.example.com>;tag=bob1"
    assert ack.headers.get("from") == request.headers.get("from")
    assert ack.call_id == request.call_id
    assert ack.headers.get("cseq") == "314159 ACK"
    assert ack.headers.get_all("route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert ack.max_forwards is not None
    assert ack.body == b""


def test_a_retransmitted_non_2xx_final_is_absorbed_and_acked_again(layer, clock):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    busy = request.response(486, to_tag="bob1")
    ack = of_type(layer.receive(wire(busy), NEXT_HOP), Send)[0]
    assert layer.receive(wire(busy), NEXT_HOP) == [ack]


def test_timer_d_keeps_a_completed_invite_client_32_s_on_udp(layer, clock):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    clock.now = 1.0
    layer.receive(wire(request.response(404)), NEXT_HOP)
    timeline = run(layer, clock, 40.0)
    assert timeline == [(33.0, Terminated(txn))]
    assert len(layer) == 0


def test_a_completed_invite_client_over_tcp_ends_at_once(layer):
    request = our_invite(transport="TCP")
    txn, _ = layer.request(request, NEXT_HOP_TCP)
    actions = layer.receive(wire(request.response(404)), NEXT_HOP_TCP)
    assert [type(a) for a in actions] == [Send, DeliverResponse, Terminated]
    assert len(layer) == 0


def test_a_2xx_moves_the_invite_client_to_accepted_and_every_2xx_reaches_the_tu(layer, clock):
    # RFC 6026 §7.2: 2xx retransmissions (and 2xx from other forks) go to the TU,
    # which ACKs them end to end; the transaction sends no ACK for a 2xx.
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    ok = request.response(200, to_tag="bob1")
    first = layer.receive(wire(ok), NEXT_HOP)
    assert [type(a) for a in first] == [DeliverResponse]
    assert txn.state is State.ACCEPTED
    again = layer.receive(wire(ok), NEXT_HOP)
    assert [(type(a), a.txn) for a in again] == [(DeliverResponse, txn)]
    other_fork = layer.receive(wire(request.response(200, to_tag="bob2")), NEXT_HOP)
    assert [(type(a), a.txn) for a in other_fork] == [(DeliverResponse, txn)]
    assert run(layer, clock, 0.6) == []  # no retransmission of the INVITE either


def test_timer_m_ends_the_accepted_invite_client_after_64_t1(layer, clock):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    clock.now = 2.0
    layer.receive(wire(request.response(200, to_tag="bob1")), NEXT_HOP)
    assert run(layer, clock, 40.0) == [(34.0, Terminated(txn))]


def test_an_abandoned_invite_is_sent_no_more_but_still_delivers_a_late_2xx(layer, clock):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    run(layer, clock, 0.6)  # retransmitted once, at 0.5
    layer.abandon(txn)
    assert times(run(layer, clock, 10.0), Send) == []
    ok = wire(request.response(200, to_tag="bob1"))
    assert layer.receive(ok, NEXT_HOP) == [DeliverResponse(ok, txn, NEXT_HOP)]
    assert txn.state is State.ACCEPTED


def test_an_abandoned_invite_times_out_at_timer_b_and_leaves_the_table(layer, clock):
    txn, _ = layer.request(our_invite(), NEXT_HOP)
    layer.abandon(txn)
    timeline = run(layer, clock, 40.0)
    assert timeline == [(32.0, TimedOut(txn)), (32.0, Terminated(txn))]
    assert len(layer) == 0


def test_an_abandoned_invite_still_sends_a_cancel_asked_for_once_a_1xx_comes(layer, clock):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    layer.cancel(txn)
    layer.abandon(txn)
    assert run(layer, clock, 5.0) == []
    actions = layer.receive(wire(request.response(100)), NEXT_HOP)
    assert [m.method for m in sent(actions)] == ["CANCEL"]


def test_abandoning_an_answered_invite_changes_nothing(layer, clock):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    layer.receive(wire(request.response(486, to_tag="bob1")), NEXT_HOP)
    layer.abandon(txn)
    assert run(layer, clock, 40.0) == [(32.0, Terminated(txn))]  # timer D as before


# --- non-INVITE client transaction (§17.1.2) ------------------------------------


def test_timer_e_doubles_up_to_t2_and_timer_f_times_out_at_64_t1(layer, clock):
    txn, _ = layer.request(options(), NEXT_HOP)
    assert txn.state is State.TRYING
    timeline = run(layer, clock, 40.0)
    assert times(timeline, Send) == RETRANSMIT_E
    assert times(timeline, TimedOut) == [32.0]
    assert times(timeline, Terminated) == [32.0]
    assert len(layer) == 0


def test_an_abandoned_probe_is_sent_no_more_and_times_out_at_timer_f(layer, clock):
    txn, _ = layer.request(options(), NEXT_HOP)
    run(layer, clock, 2.0)
    layer.abandon(txn)
    timeline = run(layer, clock, 40.0)
    assert timeline == [(32.0, TimedOut(txn)), (32.0, Terminated(txn))]


def test_timer_e_fires_every_t2_once_a_provisional_response_came(layer, clock):
    request = options()
    txn, _ = layer.request(request, NEXT_HOP)
    run(layer, clock, 0.7)  # retransmitted at 0.5; the next is due at 1.5
    layer.receive(wire(request.response(100)), NEXT_HOP)
    assert txn.state is State.PROCEEDING
    timeline = run(layer, clock, 40.0)
    assert times(timeline, Send) == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert times(timeline, TimedOut) == [32.0]


def test_a_non_invite_over_tcp_is_never_retransmitted(layer, clock):
    layer.request(options(transport="TCP"), NEXT_HOP_TCP)
    timeline = run(layer, clock, 40.0)
    assert times(timeline, Send) == []
    assert times(timeline, TimedOut) == [32.0]


def test_a_non_invite_final_is_delivered_once_and_timer_k_ends_the_transaction(layer, clock):
    request = options()
    txn, _ = layer.request(request, NEXT_HOP)
    clock.now = 0.2
    ok = request.response(200, to_tag="c1")
    assert layer.receive(wire(ok), NEXT_HOP) == [DeliverResponse(wire(ok), txn, NEXT_HOP)]
    assert txn.state is State.COMPLETED
    assert layer.receive(wire(ok), NEXT_HOP) == []  # absorbed
    timeline = run(layer, clock, 10.0)
    assert timeline == [(5.2, Terminated(txn))]  # T4 later; no retransmission at 0.5
    assert len(layer) == 0


def test_a_non_invite_final_over_tcp_ends_the_transaction_at_once(layer):
    request = options(transport="TCP")
    txn, _ = layer.request(request, NEXT_HOP_TCP)
    actions = layer.receive(wire(request.response(200)), NEXT_HOP_TCP)
    assert [type(a) for a in actions] == [DeliverResponse, Terminated]
    assert len(layer) == 0


def test_responses_match_client_transactions_by_branch_and_cseq_method(layer):
    invite_txn, _ = layer.request(our_invite(branch="z9hG4bKsame"), NEXT_HOP)
    options_txn, _ = layer.request(options(branch="z9hG4bKsame"), NEXT_HOP)
    (got,) = layer.receive(wire(options(branch="z9hG4bKsame").response(200)), NEXT_HOP)
    assert got.txn is options_txn
    assert invite_txn.state is State.CALLING


def test_a_request_needs_a_via_branch_of_its_own(layer):
    layer.request(options(), NEXT_HOP)
    with pytest.raises(LocalProtocolError):
        layer.request(options(), NEXT_HOP)
    no_branch = options()
    no_branch.headers.set("Via", "SIP/2.0/UDP 198.51.100.1:5060")
    with pytest.raises(LocalProtocolError):
        layer.request(no_branch, NEXT_HOP)


def test_an_ack_is_not_sent_in_a_client_transaction(layer):
    request = our_invite()
    ack = ack_for_invite(request, request.response(200, to_tag="x"), branch="z9hG4bKack")
    with pytest.raises(LocalProtocolError):
        layer.request(ack, NEXT_HOP)
    assert layer.send_stateless(ack, NEXT_HOP) == [Send(ack.serialise(), NEXT_HOP)]
    assert len(layer) == 0


def test_a_response_matching_no_client_transaction_is_delivered_as_stray(layer):
    # A proxy forwards such 2xx retransmissions statelessly (RFC 6026 §7.2).
    stray = wire(our_invite().response(200, to_tag="late"))
    assert layer.receive(stray, NEXT_HOP) == [DeliverResponse(stray, None, NEXT_HOP)]


# --- CANCEL (§9.1) --------------------------------------------------------------


def test_cancel_after_a_provisional_response_goes_out_at_once_in_its_own_transaction(layer):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    layer.receive(wire(request.response(180, to_tag="bob1")), NEXT_HOP)
    cancel_txn, actions = layer.cancel(txn)
    assert isinstance(cancel_txn, ClientTransaction)
    assert (cancel_txn.method, cancel_txn.cancels, txn.cancel) == ("CANCEL", txn, cancel_txn)
    (cancel,) = sent(actions)
    assert actions[0].dest == NEXT_HOP
    assert (cancel.method, cancel.uri) == ("CANCEL", request.uri)
    assert cancel.headers.get_all("via") == [request.headers.values("via")[0]]
    assert cancel.headers.get("to") == request.headers.get("to")  # no tag of the 180
    assert cancel.headers.get("from") == request.headers.get("from")
    assert cancel.call_id == request.call_id
    assert cancel.headers.get("cseq") == "314159 CANCEL"
    assert cancel.headers.get_all("route") == request.headers.get_all("route")
    assert len(layer) == 2


def test_cancel_before_any_provisional_response_waits_for_one(layer):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    assert layer.cancel(txn) == (None, [])
    assert len(layer) == 1
    ringing = wire(request.response(180, to_tag="bob1"))
    actions = layer.receive(ringing, NEXT_HOP)
    assert of_type(actions, DeliverResponse) == [DeliverResponse(ringing, txn, NEXT_HOP)]
    (cancel,) = sent(actions)
    assert cancel.method == "CANCEL"
    assert txn.cancel is not None and txn.cancel.cancels is txn


def test_responses_to_the_cancel_and_the_487_reach_their_own_transactions(layer):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    layer.receive(wire(request.response(180, to_tag="bob1")), NEXT_HOP)
    cancel_txn, actions = layer.cancel(txn)
    cancel = sent(actions)[0]
    (ok,) = layer.receive(wire(cancel.response(200, to_tag="bob1")), NEXT_HOP)
    assert ok.txn is cancel_txn
    terminated = layer.receive(wire(request.response(487, to_tag="bob1")), NEXT_HOP)
    assert of_type(terminated, DeliverResponse)[0].txn is txn
    assert sent(terminated)[0].method == "ACK"


def test_cancel_after_a_final_response_does_nothing(layer):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    layer.receive(wire(request.response(603, to_tag="bob1")), NEXT_HOP)
    assert layer.cancel(txn) == (None, [])


def test_a_pending_cancel_is_dropped_when_a_final_response_comes_first(layer):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    layer.cancel(txn)
    actions = layer.receive(wire(request.response(486, to_tag="bob1")), NEXT_HOP)
    assert [m.method for m in sent(actions)] == ["ACK"]
    assert txn.cancel is None


def test_cancelling_twice_sends_one_cancel(layer):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    layer.receive(wire(request.response(180, to_tag="bob1")), NEXT_HOP)
    cancel_txn, _ = layer.cancel(txn)
    assert layer.cancel(txn) == (cancel_txn, [])


def test_an_invite_with_no_final_64_t1_after_its_cancel_is_given_up(layer, clock):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    layer.receive(wire(request.response(180, to_tag="bob1")), NEXT_HOP)
    clock.now = 10.0
    cancel_txn, _ = layer.cancel(txn)
    layer.receive(wire(cancel_of(request).response(200)), NEXT_HOP)
    timeline = run(layer, clock, 50.0)
    assert (42.0, TimedOut(txn)) in timeline
    assert txn.state is State.TERMINATED and cancel_txn.state is State.TERMINATED
    assert len(layer) == 0


# --- INVITE server transaction (§17.2.1) --------------------------------------------


def test_a_new_invite_is_delivered_and_gets_100_trying_if_the_tu_is_silent_200_ms(layer, clock):
    request = invite()
    actions = layer.receive(request, PHONE)
    assert [type(a) for a in actions] == [Deliver]
    txn = actions[0].txn
    assert isinstance(txn, ServerTransaction)
    assert (txn.method, txn.state, txn.request, txn.source) == (
        "INVITE",
        State.PROCEEDING,
        request,
        PHONE,
    )
    assert layer.expire(0.19) == []
    (send,) = layer.expire(0.2)
    (trying,) = sent([send])
    assert isinstance(trying, Response) and trying.status == 100
    assert send.dest == PHONE
    assert run(layer, clock, 10.0) == []  # one 100, no retransmission of it


def test_no_100_trying_when_the_tu_answers_within_200_ms(layer, clock):
    txn, _ = only_txn(layer, invite())
    layer.respond(txn, txn.request.response(407, to_tag="p1"))
    timeline = run(layer, clock, 0.4)
    assert all(parse_message(action.data).status == 407 for _, action in timeline)


def test_a_retransmitted_invite_before_any_response_gets_100_at_once(layer):
    only_txn(layer, invite())
    (send,) = layer.receive(invite(), PHONE)
    assert parse_message(send.data).status == 100


def test_with_no_trying_delay_the_100_goes_out_at_once(clock):
    layer = TransactionLayer(clock, trying_delay=0)
    actions = layer.receive(invite(), PHONE)
    assert [type(a) for a in actions] == [Send, Deliver]
    assert parse_message(actions[0].data).status == 100


def test_without_auto_trying_the_tu_sends_the_first_response(clock):
    layer = TransactionLayer(clock, auto_trying=False)
    actions = layer.receive(invite(), PHONE)
    assert [type(a) for a in actions] == [Deliver]
    assert layer.receive(invite(), PHONE) == []  # nothing to resend yet


def test_a_retransmitted_invite_gets_the_last_provisional_and_is_not_delivered(layer):
    txn, _ = only_txn(layer, invite())
    (trying,) = layer.receive(invite(), PHONE)
    assert parse_message(trying.data).status == 100
    assert layer.receive(invite(), PHONE) == [trying]
    ringing = txn.request.response(180, to_tag="bob1")
    layer.respond(txn, ringing)
    (again,) = layer.receive(invite(), PHONE)
    assert again == Send(ringing.serialise(), PHONE)


def test_responses_go_where_18_2_2_and_rport_say(layer):
    request = invite()
    request.headers.set("Via", "SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKnat;rport")
    behind_nat = Address("UDP", "203.0.113.5", 40000)
    (deliver,) = layer.receive(request, behind_nat)
    assert deliver.txn.dest == behind_nat
    assert request.via.received == "203.0.113.5" and request.via.rport == 40000


def test_responses_over_tcp_go_back_on_the_connection_the_request_came_on(layer):
    txn, _ = only_txn(layer, invite(transport="TCP"), PHONE_TCP)
    (trying,) = layer.expire(0.2)
    assert txn.dest == PHONE_TCP and trying.dest == PHONE_TCP


def test_timer_g_retransmits_a_non_2xx_final_until_the_ack_comes(layer, clock):
    txn, _ = only_txn(layer, invite())
    final = txn.request.response(486, to_tag="bob1")
    assert layer.respond(txn, final) == [Send(final.serialise(), PHONE)]
    assert txn.state is State.COMPLETED
    timeline = run(layer, clock, 4.0)
    assert times(timeline, Send) == [0.5, 1.5, 3.5]
    assert all(a.data == final.serialise() for _, a in timeline)
    assert layer.receive(ack_for_invite(txn.request, final), PHONE) == []  # absorbed
    assert txn.state is State.CONFIRMED
    assert layer.receive(ack_for_invite(txn.request, final), PHONE) == []
    assert run(layer, clock, 20.0) == [(9.0, Terminated(txn))]  # timer I: T4
    assert len(layer) == 0


def test_a_stateless_answer_goes_out_once_and_leaves_no_transaction(layer, clock):
    txn, _ = only_txn(layer, invite())
    challenge = txn.request.response(407, to_tag="p1")
    actions = layer.respond_stateless(txn, challenge)
    assert actions == [Send(challenge.serialise(), PHONE), Terminated(txn)]
    assert len(layer) == 0 and txn.state is State.TERMINATED
    assert run(layer, clock, 40.0) == []  # no timer G, no 100 Trying, no timer H
    # A retransmission is a new request to the layer: one answer per request received.
    (deliver,) = of_type(layer.receive(invite(), PHONE), Deliver)
    assert deliver.txn is not txn


def test_a_retransmitted_invite_in_completed_gets_the_final_again(layer):
    txn, _ = only_txn(layer, invite())
    final = txn.request.response(480, to_tag="bob1")
    layer.respond(txn, final)
    assert layer.receive(invite(), PHONE) == [Send(final.serialise(), PHONE)]


def test_timer_h_gives_up_waiting_for_the_ack_after_64_t1(layer, clock):
    txn, _ = only_txn(layer, invite())
    layer.respond(txn, txn.request.response(503))
    timeline = run(layer, clock, 40.0)
    assert times(timeline, Send) == RETRANSMIT_E  # G doubles up to T2, like E
    assert [a for _, a in timeline if not isinstance(a, Send)] == [TimedOut(txn), Terminated(txn)]
    assert times(timeline, TimedOut) == [32.0]
    assert len(layer) == 0


def test_an_invite_server_over_tcp_never_retransmits_its_final_and_ends_on_the_ack(layer, clock):
    txn, _ = only_txn(layer, invite(transport="TCP"), PHONE_TCP)
    final = txn.request.response(486, to_tag="bob1")
    layer.respond(txn, final)
    assert run(layer, clock, 10.0) == []
    actions = layer.receive(ack_for_invite(txn.request, final), PHONE_TCP)
    assert actions == [Terminated(txn)]  # timer I is 0 on a reliable transport


def test_an_invite_server_over_tcp_still_times_out_on_timer_h(layer, clock):
    txn, _ = only_txn(layer, invite(transport="TCP"), PHONE_TCP)
    layer.respond(txn, txn.request.response(486, to_tag="bob1"))
    assert run(layer, clock, 40.0) == [(32.0, TimedOut(txn)), (32.0, Terminated(txn))]


def test_after_a_2xx_the_invite_server_absorbs_invite_retransmissions(layer, clock):
    # RFC 6026 §7.1: Accepted; the TU (UAS core or proxy) retransmits the 2xx.
    txn, _ = only_txn(layer, invite())
    ok = txn.request.response(200, to_tag="bob1")
    assert layer.respond(txn, ok) == [Send(ok.serialise(), PHONE)]
    assert txn.state is State.ACCEPTED
    assert layer.receive(invite(), PHONE) == []
    assert run(layer, clock, 5.0) == []  # no timer G for a 2xx


def test_in_accepted_2xx_from_the_tu_still_go_out(layer):
    txn, _ = only_txn(layer, invite())
    ok = txn.request.response(200, to_tag="bob1")
    layer.respond(txn, ok)
    assert layer.respond(txn, ok) == [Send(ok.serialise(), PHONE)]
    assert layer.respond(txn, txn.request.response(180)) == []


RETRANSMIT_2XX = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def test_a_2xx_retransmitted_for_the_uas_core_goes_t1_doubling_to_t2_until_64_t1(layer, clock):
    # RFC 3261 §13.3.1.4: the UAS core sends its 2xx again until the ACK comes.
    txn, _ = only_txn(layer, invite())
    ok = txn.request.response(200, to_tag="bob1")
    layer.respond(txn, ok)
    layer.retransmit_2xx(txn)
    assert not layer.idle  # a draining node waits for the ACK
    timeline = run(layer, clock, 40.0)
    assert times(timeline, Send) == RETRANSMIT_2XX
    assert all(a.data == ok.serialise() for _, a in timeline if isinstance(a, Send))
    assert [a for _, a in timeline if not isinstance(a, Send)] == [TimedOut(txn), Terminated(txn)]
    assert times(timeline, TimedOut) == [32.0]


def test_a_2xx_is_retransmitted_over_tcp_too(layer, clock):
    # §13.3.1.4: hops beyond a reliable one may be UDP.
    txn, _ = only_txn(layer, invite(transport="TCP"), PHONE_TCP)
    layer.respond(txn, txn.request.response(200, to_tag="bob1"))
    layer.retransmit_2xx(txn)
    timeline = run(layer, clock, 4.0)
    assert times(timeline, Send) == [0.5, 1.5, 3.5]
    assert {a.dest for _, a in timeline} == {PHONE_TCP}


def test_the_ack_stops_the_2xx_and_timer_l_still_ends_the_transaction(layer, clock):
    txn, _ = only_txn(layer, invite())
    layer.respond(txn, txn.request.response(200, to_tag="bob1"))
    layer.retransmit_2xx(txn)
    assert times(run(layer, clock, 2.0), Send) == [0.5, 1.5]
    layer.stop_2xx(txn)
    assert layer.idle
    assert run(layer, clock, 40.0) == [(32.0, Terminated(txn))]  # no TimedOut: it was ACKed
    layer.stop_2xx(txn)  # once ended, nothing
    assert len(layer) == 0


def test_only_an_accepted_invite_server_retransmits_a_2xx(layer, clock):
    txn, _ = only_txn(layer, invite())
    layer.retransmit_2xx(txn)  # nothing answered yet
    layer.respond(txn, txn.request.response(486, to_tag="bob1"))
    layer.retransmit_2xx(txn)
    assert times(run(layer, clock, 2.0), Send) == [0.5, 1.5]  # timer G only, once each


def test_the_ack_for_a_2xx_is_passed_to_the_tu_without_a_transaction(layer):
    txn, _ = only_txn(layer, invite())
    ok = txn.request.response(200, to_tag="bob1")
    layer.respond(txn, ok)
    end_to_end = ack_for_invite(txn.request, ok, branch="z9hG4bKack2xx")
    assert layer.receive(end_to_end, PHONE) == [Deliver(end_to_end, None, PHONE)]
    same_branch = ack_for_invite(txn.request, ok)  # matches the Accepted transaction
    assert layer.receive(same_branch, PHONE) == [Deliver(same_branch, None, PHONE)]


def test_timer_l_ends_the_accepted_invite_server_after_64_t1(layer, clock):
    txn, _ = only_txn(layer, invite())
    clock.now = 3.0
    layer.respond(txn, txn.request.response(200, to_tag="bob1"))
    assert run(layer, clock, 40.0) == [(35.0, Terminated(txn))]
    assert len(layer) == 0


def test_a_stray_ack_is_delivered_without_a_transaction(layer):
    request = invite()
    ack = ack_for_invite(request, request.response(200, to_tag="x"), branch="z9hG4bKstray")
    assert layer.receive(ack, PHONE) == [Deliver(ack, None, PHONE)]
    assert len(layer) == 0


def test_a_late_final_from_the_tu_after_completed_is_discarded(layer):
    txn, _ = only_txn(layer, invite())
    layer.respond(txn, txn.request.response(486, to_tag="bob1"))
    assert layer.respond(txn, txn.request.response(200, to_tag="bob1")) == []


# --- non-INVITE server transaction (§17.2.2) -----------------------------------------


def test_a_non_invite_request_is_delivered_once_and_retransmissions_are_absorbed(layer):
    txn, actions = only_txn(layer, register())
    assert actions == [Deliver(txn.request, txn, PHONE)]
    assert txn.state is State.TRYING
    assert layer.receive(register(), PHONE) == []  # no response yet to resend


def test_a_retransmitted_non_invite_request_gets_the_last_response_again(layer):
    txn, _ = only_txn(layer, register())
    trying = txn.request.response(100)
    layer.respond(txn, trying)
    assert txn.state is State.PROCEEDING
    assert layer.receive(register(), PHONE) == [Send(trying.serialise(), PHONE)]
    ok = txn.request.response(200, to_tag="r1")
    layer.respond(txn, ok)
    assert txn.state is State.COMPLETED
    assert layer.receive(register(), PHONE) == [Send(ok.serialise(), PHONE)]
    assert layer.respond(txn, txn.request.response(500)) == []  # later finals discarded


def test_timer_j_keeps_a_completed_non_invite_server_64_t1_on_udp(layer, clock):
    txn, _ = only_txn(layer, register())
    clock.now = 0.1
    layer.respond(txn, txn.request.response(200, to_tag="r1"))
    assert run(layer, clock, 40.0) == [(32.1, Terminated(txn))]
    assert len(layer) == 0


def test_a_lingering_transaction_keeps_its_request_as_text_and_still_answers(layer, clock):
    # Timers J, L and M keep a transaction up to 32 s: its key and its bytes
    # do the work, the typed views of its request are let go (parsed again if read).
    txn, _ = only_txn(layer, register())
    ok = txn.request.response(200, to_tag="r1")
    layer.respond(txn, ok)
    assert txn.request.headers._parsed == {} and txn.request._uri is None
    assert layer.receive(register(), PHONE) == [Send(ok.serialise(), PHONE)]
    assert txn.request.cseq.number == 1826 and txn.request.via.branch == "z9hG4bKreg1"
    server, _ = only_txn(layer, invite())
    layer.respond(server, server.request.response(200, to_tag="bob1"))
    assert server.state is State.ACCEPTED and server.request.headers._parsed == {}
    request = our_invite()
    client, _ = layer.request(request, NEXT_HOP)
    layer.receive(wire(request.response(200, to_tag="bob1")), NEXT_HOP)
    assert client.state is State.ACCEPTED and request.headers._parsed == {}
    assert request.to.display == "Bob"


def test_a_completed_non_invite_server_over_tcp_ends_at_once(layer):
    txn, _ = only_txn(layer, register(transport="TCP"), PHONE_TCP)
    ok = txn.request.response(200, to_tag="r1")
    assert layer.respond(txn, ok) == [Send(ok.serialise(), PHONE_TCP), Terminated(txn)]
    assert len(layer) == 0


# --- CANCEL on the server side (§9.2) ----------------------------------------------------


def test_a_cancel_is_matched_to_its_invite_server_transaction(layer):
    invite_txn, _ = only_txn(layer, invite())
    cancel_txn, actions = only_txn(layer, cancel_of(invite()))
    assert actions == [Deliver(cancel_txn.request, cancel_txn, PHONE)]
    assert cancel_txn is not invite_txn
    assert (cancel_txn.method, cancel_txn.cancels) == ("CANCEL", invite_txn)
    ok = cancel_txn.request.response(200, to_tag="bob1")
    layer.respond(cancel_txn, ok)
    assert layer.receive(cancel_of(invite()), PHONE) == [Send(ok.serialise(), PHONE)]


def test_a_cancel_matching_no_invite_is_delivered_for_the_tu_to_answer_481(layer):
    cancel_txn, _ = only_txn(layer, cancel_of(invite(branch="z9hG4bKunknown")))
    assert cancel_txn.cancels is None


# --- RFC 2543 peers (§17.2.3) ----------------------------------------------------------


def test_requests_without_the_magic_cookie_match_by_call_id_from_tag_cseq_and_sent_by(layer):
    old = invite(branch="1")
    txn, _ = only_txn(layer, old)
    assert len(layer.receive(invite(branch="1"), PHONE)) == 1  # 100 again, not delivered
    final = old.response(486, to_tag="bob1")
    layer.respond(txn, final)
    assert layer.receive(ack_for_invite(old, final), PHONE) == []
    assert txn.state is State.CONFIRMED
    other_call = invite(branch="1")
    other_call.headers.set("Call-ID", "another-call")
    assert of_type(layer.receive(other_call, PHONE), Deliver)[0].txn is not txn


def test_the_same_branch_from_another_sent_by_is_another_transaction(layer):
    txn, _ = only_txn(layer, invite())
    other = invite()
    other.headers.set("Via", "SIP/2.0/UDP 192.0.2.11:5060;branch=z9hG4bKnashds8")
    other_txn, _ = only_txn(layer, other, Address("UDP", "192.0.2.11", 5060))
    assert other_txn is not txn


# --- drain ----------------------------------------------------------------------------


def test_a_draining_layer_answers_new_requests_503_with_retry_after(layer):
    layer.drain(retry_after=30)
    send, refused = layer.receive(invite(), PHONE)
    response = parse_message(send.data)
    assert isinstance(response, Response)
    assert (response.status, response.headers.get("retry-after")) == (503, "30")
    assert send.dest == PHONE
    assert refused == Refused("draining", PHONE)  # for the shell's counters
    assert layer.idle and len(layer) == 0


def test_a_draining_layer_still_serves_its_live_transactions(layer):
    txn, _ = only_txn(layer, invite())
    layer.drain()
    (resent,) = layer.receive(invite(), PHONE)  # the 100 Trying again
    assert isinstance(resent, Send) and parse_message(resent.data).status == 100
    cancel_txn, _ = only_txn(layer, cancel_of(invite()))
    assert cancel_txn.cancels is txn
    bye = sip(BYE, branch="z9hG4bKbye1")
    assert of_type(layer.receive(bye, PHONE), Deliver)  # in-dialog: lets calls end


def test_a_strict_drain_refuses_in_dialog_requests_too(layer):
    layer.drain(admit_in_dialog=False)
    send, _ = layer.receive(sip(BYE, branch="z9hG4bKbye1"), PHONE)
    assert parse_message(send.data).status == 503


# --- the table and the timers at scale --------------------------------------------------


def test_transactions_leave_the_table_after_their_final_timers(layer, clock):
    server_invite, _ = only_txn(layer, invite())
    server_register, _ = only_txn(layer, register())
    options_request = options()
    client_options, _ = layer.request(options_request, NEXT_HOP)
    client_invite, _ = layer.request(our_invite(), NEXT_HOP)
    assert len(layer) == 4 and not layer.idle
    layer.respond(server_invite, server_invite.request.response(200, to_tag="t"))
    layer.respond(server_register, server_register.request.response(200, to_tag="t"))
    layer.receive(wire(options_request.response(200)), NEXT_HOP)
    timeline = run(layer, clock, 64.0)
    ended = {action.txn for _, action in timeline if isinstance(action, Terminated)}
    assert ended == {server_invite, server_register, client_options, client_invite}
    assert len(layer) == 0 and layer.idle


def test_10000_concurrent_transactions_keep_one_wheel_entry_each(clock):
    layer = TransactionLayer(clock)
    count = 10_000
    template = our_invite()
    for i in range(count):
        request = Request("INVITE", template.uri, template.headers.copy())
        request.headers.set("Via", f"SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKload{i}")
        layer.request(request, NEXT_HOP)
    assert len(layer) == count and layer.timers == count
    for due in (0.5, 1.5, 3.5):
        clock.now = due
        actions = layer.expire(due)
        assert len(actions) == count and all(isinstance(a, Send) for a in actions)
        # each retransmission replaced its own entry: no per-retransmission objects
        assert layer.timers == count
    for step in range(1, 400):
        assert layer.expire(3.5 + step * 0.01) == []
    clock.now = 32.0
    assert len(of_type(layer.expire(32.0), TimedOut)) == count
    assert layer.idle


def test_a_layer_whose_transactions_only_linger_is_idle(layer):
    txn, _ = only_txn(layer, register())
    assert not layer.idle
    layer.respond(txn, txn.request.response(200, to_tag="t"))
    assert len(layer) == 1 and layer.idle  # timer J keeps it, nobody waits on it


# --- bounded server transactions: per source IP and in total ------------------------------------
STRANGER = Address("UDP", "203.0.113.66", 5060)
STRANGER_OTHER_PORT = Address("UDP", "203.0.113.66", 40000)
PEER = Address("UDP", "198.51.100.1", 5060)


def test_over_the_per_source_limit_a_request_gets_a_stateless_503_with_retry_after(clock):
    layer = TransactionLayer(clock, max_per_source=3)
    for i in range(3):
        assert of_type(layer.receive(register(f"z9hG4bKcap{i}"), STRANGER), Deliver)
    actions = layer.receive(register("z9hG4bKcap3"), STRANGER_OTHER_PORT)  # another port, same IP
    [busy] = sent(actions)
    assert (busy.status, busy.headers.get("Retry-After")) == (503, "5")
    assert busy.to.tag  # answered as a UAS answers (§8.2.6.2)
    assert of_type(actions, Refused) == [Refused("source_transaction_limit", STRANGER_OTHER_PORT)]
    assert not of_type(actions, Deliver)
    assert len(layer) == 3 and layer.from_source(STRANGER.host) == 3


def test_other_sources_are_not_held_back_by_one_over_its_limit(clock):
    layer = TransactionLayer(clock, max_per_source=2)
    for i in range(5):
        layer.receive(register(f"z9hG4bKcap{i}"), STRANGER)
    assert of_type(layer.receive(register("z9hG4bKpeer"), PEER), Deliver)
    assert layer.from_source(STRANGER.host) == 2 and layer.from_source(PEER.host) == 1


def test_a_trusted_peer_is_held_only_to_the_total(clock):
    layer = TransactionLayer(clock, max_per_source=1, max_transactions=3, exempt=lambda s: s.host == PEER.host)
    for i in range(3):
        assert of_type(layer.receive(register(f"z9hG4bKpeer{i}"), PEER), Deliver)
    assert of_type(layer.receive(register("z9hG4bKpeer3"), PEER), Refused) == [
        Refused("transaction_limit", PEER)
    ]


def test_over_the_total_limit_everyone_gets_503(clock):
    layer = TransactionLayer(clock, max_transactions=2)
    layer.receive(register("z9hG4bKt1"), STRANGER)
    layer.receive(register("z9hG4bKt2"), PEER)
    actions = layer.receive(invite("z9hG4bKt3"), PHONE)
    assert sent(actions)[0].status == 503 and of_type(actions, Refused)[0].reason == "transaction_limit"
    assert len(layer) == 2


def test_a_retransmission_of_a_held_request_is_absorbed_not_refused(clock):
    layer = TransactionLayer(clock, max_per_source=1)
    txn, _ = only_txn(layer, invite())
    assert not of_type(layer.receive(invite(), PHONE), Refused)  # matched, not new
    assert layer.from_source(PHONE.host) == 1


def test_the_count_of_a_source_is_freed_as_its_transactions_end(clock):
    layer = TransactionLayer(clock, max_per_source=2)
    first, _ = only_txn(layer, register("z9hG4bKf1"))
    second, _ = only_txn(layer, register("z9hG4bKf2"))
    layer.respond(first, first.request.response(200, to_tag="a"))  # lingers for timer J
    layer.respond_stateless(second, second.request.response(401, to_tag="b"))  # gone at once
    assert layer.from_source(PHONE.host) == 1
    assert of_type(layer.receive(register("z9hG4bKf3"), PHONE), Deliver)
    run(layer, clock, 64.0)  # timer J ends the first; the third times out its linger too
    assert layer.from_source(PHONE.host) == 1  # the third, still unanswered
    assert layer._sources == {PHONE.host: 1}


def test_a_source_whose_transactions_all_ended_is_forgotten(clock):
    layer = TransactionLayer(clock)
    txn, _ = only_txn(layer, options())
    layer.respond_stateless(txn, txn.request.response(200, to_tag="x"))
    assert layer._sources == {}


# --- a response is taken only from where its request went ----------------------------------------


def test_a_udp_response_from_another_address_is_dropped_and_refused(layer):
    request = our_invite()
    txn, _ = layer.request(request, NEXT_HOP)
    forged = wire(request.response(200, to_tag="evil"))
    for elsewhere in (NEXT_HOP._replace(port=5061), NEXT_HOP._replace(host="203.0.113.66")):
        assert layer.receive(forged, elsewhere) == [Refused("wrong_source", elsewhere)]
    assert txn.state is State.CALLING  # untouched: the real answer may still come
    [deliver] = of_type(layer.receive(forged, NEXT_HOP), DeliverResponse)
    assert deliver.txn is txn and txn.state is State.ACCEPTED


def test_over_tcp_only_a_connection_to_the_peer_may_answer(layer):
    request = our_invite(transport="TCP")
    txn, _ = layer.request(request, NEXT_HOP_TCP)
    answer = wire(request.response(180, to_tag="b"))
    other = Address("TCP", "203.0.113.66", 40000, connection=9)
    assert of_type(layer.receive(answer, other), Refused)
    peer = NEXT_HOP_TCP._replace(connection=3)  # the connection we opened to it
    assert of_type(layer.receive(answer, peer), DeliverResponse)[0].txn is txn


def test_a_response_on_another_transport_is_refused(layer):
    request = our_invite()
    layer.request(request, NEXT_HOP)
    assert of_type(layer.receive(wire(request.response(180)), NEXT_HOP._replace(transport="TCP")), Refused)


def test_the_peer_is_the_same_however_its_address_is_written():
    v6 = Address("UDP", "2001:db8::1", 5060)
    assert same_peer(v6, Address("UDP", "2001:0db8:0:0::1", 5060))
    assert same_peer(Address("UDP", "::ffff:192.0.2.7", 5060), Address("UDP", "192.0.2.7", 5060))
    assert not same_peer(v6, Address("UDP", "2001:db8::2", 5060))
    assert not same_peer(Address("UDP", "host.example", 5060), Address("UDP", "other.example", 5060))


def test_a_stray_response_is_still_delivered_as_stray(layer):
    # Matching no transaction it is the TU's (RFC 6026 §8.4: a 2xx from a fork).
    response = wire(our_invite("z9hG4bKnone").response(200, to_tag="x"))
    [deliver] = layer.receive(response, Address("UDP", "203.0.113.66", 5060))
    assert isinstance(deliver, DeliverResponse) and deliver.txn is None


# --- a transport error is a 503 at once (RFC 3261 §16.9, §17.1.4) --------------------------------


def test_a_request_the_transport_could_not_send_ends_with_a_503_at_the_next_tick(layer, clock):
    txn, [send] = layer.request(our_invite(), NEXT_HOP)
    assert send.txn is txn
    layer.transport_error(txn, "family mismatch")
    assert txn.state is State.CALLING  # not while the TU is still sending it
    clock.now += 0.01
    actions = layer.expire()
    [deliver] = of_type(actions, DeliverResponse)
    assert deliver.txn is txn and deliver.source == NEXT_HOP
    assert (deliver.response.status, deliver.response.reason) == (503, "Service Unavailable: transport error")
    assert deliver.response.via.branch == "z9hG4bKout1"  # as if the next hop had answered
    assert of_type(actions, Terminated) == [Terminated(txn)] and not of_type(actions, Send)
    assert not of_type(actions, TimedOut) and len(layer) == 0


def test_a_retransmission_that_fails_ends_the_transaction_too(layer, clock):
    txn, _ = layer.request(options(), NEXT_HOP)
    clock.now = 0.5
    [resend] = of_type(layer.expire(), Send)  # timer E
    assert resend.txn is txn
    layer.transport_error(txn, "gone")
    clock.now = 0.52
    assert of_type(layer.expire(), DeliverResponse)[0].response.status == 503
    assert txn.state is State.TERMINATED


def test_a_transport_error_after_the_final_response_changes_nothing(layer, clock):
    request = options()
    txn, _ = layer.request(request, NEXT_HOP)
    layer.receive(wire(request.response(200, to_tag="t")), NEXT_HOP)
    layer.transport_error(txn, "late")
    clock.now += 0.02
    assert not of_type(layer.expire(), DeliverResponse)


def test_responses_and_stateless_sends_carry_no_transaction(layer):
    txn, _ = only_txn(layer, invite())
    [send] = of_type(layer.respond(txn, txn.request.response(180, to_tag="r")), Send)
    assert send.txn is None
