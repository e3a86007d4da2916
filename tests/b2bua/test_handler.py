"""The B2BUA's call handling, message by message, on a fake node with a fake clock.

The caller's side is the proxy (127.0.0.1:5060), the far side an ACR node
(127.0.0.1:5080 or :5082) or a pattern route's gateway; every message the
B2BUA sends is parsed back and looked at.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY

from b2bua.call import Phase
from b2bua.handler import B2buaHandler
from sipline.sip.address import Address
from sipline.sip.message import Request, Response
from tests.b2bua.support import (
    ACR1,
    ACR2,
    PROXY,
    SDP,
    US,
    FakeNode,
    ack_for_2xx,
    answer,
    b2bua,
    in_dialog,
    invite,
    of,
)
from tests.support import on_uvloop


@dataclass
class Up:
    """A call both legs of which are confirmed."""

    a: Request  # the caller's INVITE
    b: Request  # the B leg's INVITE
    a_ok: Response  # the 200 the caller got
    b_ok: Response  # the 200 the far side sent
    far: Address


def call_up(node: FakeNode, *, a_extra: Any = (), b_extra: Any = ()) -> Up:
    a = invite(extra=a_extra)
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 180), far)
    b_ok = answer(b, 200, body=SDP, extra=b_extra)
    node.receive(b_ok, far)
    sent = node.take()
    assert [m.status for m, _ in sent] == [180, 200]
    a_ok = sent[1][0]
    node.receive(ack_for_2xx(a, a_ok, "127.0.0.1:5060"), PROXY)
    assert [m.method for m, _ in node.take()] == ["ACK"]
    return Up(a, b, a_ok, b_ok, far)


def from_caller(up: Up, method: str, cseq: int, **kwargs: Any) -> Request:
    return in_dialog(
        method, uri="sip:b2bua@127.0.0.1:5070", from_=up.a.headers.get("from") or "",
        to=up.a_ok.headers.get("to") or "", call_id=up.a.call_id, cseq=cseq,
        via_host="127.0.0.1:5060", **kwargs,
    )  # fmt: skip


def from_far_side(up: Up, method: str, cseq: int, **kwargs: Any) -> Request:
    return in_dialog(
        method, uri="sip:b2bua@127.0.0.1:5070", from_=up.b_ok.headers.get("to") or "",
        to=up.b.headers.get("from") or "", call_id=up.b.call_id, cseq=cseq,
        via_host="127.0.0.1:5080", **kwargs,
    )  # fmt: skip


# -- leg mapping -------------------------------------------------------------------------------
def test_the_b_leg_is_a_new_call_with_nothing_of_the_caller_s_topology() -> None:
    _, node = b2bua()
    a = invite()
    node.receive(a, PROXY)
    ((b, dest),) = of(node.take(), "INVITE")
    assert dest == ACR1
    assert b.call_id != a.call_id
    assert b.from_.tag != a.from_.tag and b.from_.uri_text == "sip:alice@example.com"
    assert b.headers.get("to") == a.headers.get("to")
    assert len(b.vias) == 1 and b.via.host == US.host and b.via.port == US.port
    assert b.contacts[0].uri_text == "sip:b2bua@127.0.0.1:5070"
    assert b.cseq.number == 1 and b.max_forwards == 68
    for name in ("record-route", "proxy-authorization", "route"):
        assert name not in b.headers
    assert b.headers.get("p-asserted-identity") == "<sip:alice@example.com>"
    assert b.body == SDP and b.uri == a.uri
    assert "timer" in (b.headers.get("supported") or "")


def test_responses_reach_the_caller_in_its_own_dialog_and_the_ack_crosses() -> None:
    _, node = b2bua()
    up = call_up(node)
    a_ok = up.a_ok
    assert a_ok.call_id == up.a.call_id
    assert a_ok.headers.values("via") == up.a.headers.values("via")
    assert a_ok.to.tag not in (None, "far")  # our tag, not the far side's
    assert a_ok.headers.get("record-route") == up.a.headers.get("record-route")
    assert a_ok.contacts[0].uri_text == "sip:b2bua@127.0.0.1:5070"
    assert a_ok.body == SDP


def test_the_caller_s_ack_goes_to_the_far_side_s_contact_in_the_b_dialog() -> None:
    _, node = b2bua()
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 200, body=SDP), far)
    ((a_ok, _),) = node.take()
    node.receive(ack_for_2xx(a, a_ok, "127.0.0.1:5060"), PROXY)
    ((ack, dest),) = node.take()
    assert ack.method == "ACK" and ack.uri == "sip:far@127.0.0.1:5080" and dest == ACR1
    assert ack.call_id == b.call_id and ack.to.tag == "far" and ack.cseq.number == 1


def test_our_2xx_goes_to_the_caller_again_t1_doubling_until_its_ack() -> None:
    _, node = b2bua()
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    ok = answer(b, 200, body=SDP)
    node.receive(ok, far)
    ((a_ok, _),) = node.take()
    resent = []
    for step in (0.5, 1.0, 2.0):  # RFC 3261 §13.3.1.4: T1, 2*T1, 4*T1 after the first
        node.advance(step)
        resent += [(m.serialise(), dest) for m, dest in node.take()]
    assert resent == [(a_ok.serialise(), PROXY)] * 3
    node.receive(ok, far)  # the far side's own retransmission: not sent on as well
    assert node.take() == []
    node.receive(ack_for_2xx(a, a_ok, "127.0.0.1:5060"), PROXY)
    assert [m.method for m, _ in node.take()] == ["ACK"]
    node.advance(8.0)
    assert node.take() == []  # the ACK stopped them
    node.receive(ok, far)  # again: our ACK was lost
    assert [m.method for m, _ in node.take()] == ["ACK"]


def test_our_2xx_goes_to_a_caller_over_tcp_again_too() -> None:
    _, node = b2bua()
    a = invite()
    caller = Address("TCP", "127.0.0.1", 5060, connection=4)
    a.headers.set("Via", a.headers.values("via")[0].replace("UDP", "TCP"))
    node.receive(a, caller)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 200, body=SDP), far)
    ((a_ok, dest),) = node.take()
    assert dest == caller
    node.advance(0.5)
    assert [(m.status, d) for m, d in node.take()] == [(200, caller)]


# -- ending calls ------------------------------------------------------------------------------
def test_a_bye_from_the_caller_ends_both_legs() -> None:
    handler, node = b2bua()
    up = call_up(node)
    node.receive(from_caller(up, "BYE", 11), PROXY)
    sent = node.take()
    assert [(type(m).__name__, getattr(m, "status", None) or m.method) for m, _ in sent] == [
        ("Response", 200), ("Request", "BYE"),
    ]  # fmt: skip
    bye, dest = sent[1]
    assert dest == up.far and bye.call_id == up.b.call_id and bye.to.tag == "far"
    assert bye.uri == "sip:far@127.0.0.1:5080"
    assert len(handler) == 0 and not handler.calls.legs


def test_a_bye_from_the_far_side_reaches_the_caller_through_its_record_route() -> None:
    handler, node = b2bua()
    up = call_up(node)
    node.receive(from_far_side(up, "BYE", 1), up.far)
    sent = node.take()
    assert sent[0][0].status == 200 and sent[0][1] == up.far
    bye, dest = sent[1]
    assert bye.method == "BYE" and dest == PROXY  # the Record-Route's host
    assert bye.uri == "sip:alice@10.0.0.1:5060"  # the caller's Contact
    assert bye.headers.get("route") == up.a.headers.get("record-route")
    assert bye.call_id == up.a.call_id and bye.from_.tag == up.a_ok.to.tag
    assert bye.to.tag == up.a.from_.tag
    assert not handler.calls.legs


def test_a_request_in_a_dialog_that_is_not_here_gets_481() -> None:
    _, node = b2bua()
    up = call_up(node)
    node.receive(from_caller(up, "BYE", 11), PROXY)
    node.take()
    node.receive(from_caller(up, "INFO", 12), PROXY)
    ((response, _),) = node.take()
    assert response.status == 481


def test_a_made_up_to_tag_does_not_reach_a_call() -> None:
    _, node = b2bua()
    up = call_up(node)
    forged = from_caller(up, "BYE", 11)
    forged.headers.set("To", f"{up.a.headers.get('to')};tag=guessed")
    node.receive(forged, PROXY)
    assert [m.status for m, _ in node.take()] == [481]


# -- re-INVITE, UPDATE, INFO, PRACK ------------------------------------------------------------------
def test_a_reinvite_from_the_caller_crosses_and_its_ack_follows() -> None:
    _, node = b2bua()
    up = call_up(node)
    node.receive(from_caller(up, "INVITE", 11, body=SDP), PROXY)
    ((reinvite, dest),) = node.take()
    assert reinvite.method == "INVITE" and dest == up.far
    assert reinvite.call_id == up.b.call_id and reinvite.cseq.number == 2 and reinvite.body == SDP
    node.receive(answer(reinvite, 200, body=SDP), up.far)
    ((ok, _),) = node.take()
    assert ok.status == 200 and ok.call_id == up.a.call_id and ok.cseq.number == 11
    node.advance(0.5)
    assert [(m.status, m.cseq.number) for m, _ in node.take()] == [(200, 11)]  # until its ACK
    ack = from_caller(up, "ACK", 11)
    node.receive(ack, PROXY)
    ((b_ack, _),) = node.take()
    assert b_ack.method == "ACK" and b_ack.cseq.number == 2 and b_ack.call_id == up.b.call_id
    node.advance(4.0)
    assert node.take() == []


def test_a_reinvite_from_the_far_side_reaches_the_caller() -> None:
    _, node = b2bua()
    up = call_up(node)
    node.receive(from_far_side(up, "INVITE", 2, body=SDP), up.far)
    ((reinvite, dest),) = node.take()
    assert dest == PROXY and reinvite.call_id == up.a.call_id
    assert reinvite.from_.tag == up.a_ok.to.tag and reinvite.to.tag == up.a.from_.tag
    node.receive(answer(reinvite, 200, tag=None, body=SDP), PROXY)
    ((ok, dest),) = node.take()
    assert ok.status == 200 and dest == up.far and ok.call_id == up.b.call_id
    node.receive(from_far_side(up, "ACK", 2), up.far)
    ((ack, _),) = node.take()
    assert ack.method == "ACK" and ack.call_id == up.a.call_id


def test_update_and_info_cross_and_their_answers_come_back() -> None:
    _, node = b2bua()
    up = call_up(node)
    for cseq, method in ((11, "UPDATE"), (12, "INFO")):
        node.receive(from_caller(up, method, cseq, extra=[("Info-Package", "dtmf")]), PROXY)
        ((request, dest),) = node.take()
        assert request.method == method and dest == up.far
        node.receive(answer(request, 200, tag=None), up.far)
        ((ok, dest),) = node.take()
        assert ok.status == 200 and dest == PROXY and ok.cseq.method == method


def test_a_far_side_we_cannot_reach_is_a_502_not_the_caller_s_400() -> None:
    _, node = b2bua()
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    unreachable = "<sip:far@gateway.example.net>"  # a host name: not one of our nodes
    node.receive(answer(b, 200, body=SDP, contact=unreachable), far)
    ((a_ok, _),) = node.take()
    node.receive(ack_for_2xx(a, a_ok, "127.0.0.1:5060"), PROXY)
    assert node.take() == []  # the ACK cannot go: the far side's 2xx will come again
    up = Up(a, b, a_ok, answer(b, 200, contact=unreachable), far)
    node.receive(from_caller(up, "INFO", 11), PROXY)
    ((response, dest),) = node.take()
    assert (response.status, dest) == (502, PROXY)
    assert response.reason == "Bad Gateway: cannot reach sip:far@gateway.example.net"


def test_a_prack_s_rack_names_the_b_leg_s_invite() -> None:
    _, node = b2bua()
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    reliable = [("Require", "100rel"), ("RSeq", "1")]
    node.receive(answer(b, 183, body=SDP, extra=reliable), far)
    ((progress, _),) = node.take()
    assert progress.status == 183 and progress.headers.get("rseq") == "1"
    assert progress.headers.get("require") == "100rel"
    prack = in_dialog(
        "PRACK", uri="sip:b2bua@127.0.0.1:5070", from_=a.headers.get("from") or "",
        to=progress.headers.get("to") or "", call_id=a.call_id, cseq=11,
        via_host="127.0.0.1:5060", extra=[("RAck", "1 10 INVITE")],
    )  # fmt: skip
    node.receive(prack, PROXY)
    ((out, _),) = node.take()
    assert out.method == "PRACK" and out.headers.get("rack") == "1 1 INVITE"


# -- CANCEL --------------------------------------------------------------------------------------
def test_a_cancel_while_it_rings_answers_487_and_cancels_the_b_leg() -> None:
    handler, node = b2bua()
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 180), far)
    node.take()
    cancel = Request("CANCEL", a.uri)
    for name in ("Via", "From", "To", "Call-ID"):
        for value in a.headers.get_all(name):
            cancel.headers.add(name, value)
    cancel.headers.add("CSeq", "10 CANCEL")
    cancel.headers.add("Max-Forwards", "70")
    node.receive(cancel, PROXY)
    sent = node.take()
    statuses = [(getattr(m, "status", None), getattr(m, "method", None)) for m, _ in sent]
    assert (200, None) in statuses and (487, None) in statuses and (None, "CANCEL") in statuses
    assert not handler.calls.legs
    b_cancel = next(m for m, _ in sent if getattr(m, "method", "") == "CANCEL")
    assert b_cancel.call_id == b.call_id and b_cancel.via.branch == b.via.branch
    node.receive(answer(b, 487), far)  # the far side's 487: ACKed by the layer
    assert [m.method for m, _ in node.take()] == ["ACK"]


def test_a_200_crossing_the_cancel_is_acked_and_ended_with_bye() -> None:
    _, node = b2bua()
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 180), far)
    node.take()
    cancel = Request("CANCEL", a.uri)
    for name in ("Via", "From", "To", "Call-ID"):
        cancel.headers.add(name, a.headers.get(name) or "")
    cancel.headers.set("Via", a.headers.values("via")[0])
    cancel.headers.add("CSeq", "10 CANCEL")
    cancel.headers.add("Max-Forwards", "70")
    node.receive(cancel, PROXY)
    node.take()
    node.receive(answer(b, 200, body=SDP), far)  # crossed our CANCEL
    sent = node.take()
    assert [m.method for m, _ in sent] == ["ACK", "BYE"]
    assert all(dest == far and m.call_id == b.call_id for m, dest in sent)


def test_a_cancel_for_nothing_gets_481() -> None:
    _, node = b2bua()
    cancel = invite()
    cancel.method = "CANCEL"
    cancel.headers.set("CSeq", "10 CANCEL")
    cancel.body = b""
    node.receive(cancel, PROXY)
    assert [m.status for m, _ in node.take()] == [481]


# -- next hops -----------------------------------------------------------------------------------
def test_calls_go_round_robin_over_the_acr_nodes() -> None:
    _, node = b2bua()
    dests = []
    for _ in range(4):
        node.receive(invite(), PROXY)
        dests += [dest for _, dest in of(node.take(), "INVITE")]
    assert dests == [ACR1, ACR2, ACR1, ACR2]


def test_a_503_sends_the_call_to_the_other_node_before_the_caller_sees_anything() -> None:
    handler, node = b2bua()
    node.receive(invite(), PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 503), far)
    sent = node.take()
    assert sorted(m.method for m, _ in sent) == ["ACK", "INVITE"]
    ((second, dest),) = of(sent, "INVITE")
    # Another attempt, another dialog (issue 12): a fresh Call-ID and From tag, the CSeq rising.
    assert dest == ACR2 and second.cseq.number == 2
    assert second.call_id != b.call_id and second.from_.tag != b.from_.tag
    node.receive(answer(second, 200, body=SDP), dest)
    assert [m.status for m, _ in node.take()] == [200]
    assert handler.calls.counts["failovers"] == 1


def test_silence_for_the_failover_timeout_sends_the_call_to_the_other_node() -> None:
    _, node = b2bua(failover_timeout=2.0)
    node.receive(invite(), PROXY)
    node.take()
    node.advance(1.0)
    assert not of(node.take(), "INVITE") or True  # a retransmission at most
    node.advance(1.05)
    invites = of(node.take(), "INVITE")
    assert invites[-1][1] == ACR2


def test_a_provisional_answer_stops_the_failover_timer() -> None:
    _, node = b2bua(failover_timeout=2.0)
    node.receive(invite(), PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 100, tag=None), far)
    node.advance(3.0)
    assert not [dest for _, dest in of(node.take(), "INVITE") if dest == ACR2]


def test_when_every_node_fails_the_caller_gets_one_final_answer() -> None:
    handler, node = b2bua()
    node.receive(invite(), PROXY)
    for _ in range(2):
        ((b, far),) = of(node.take(), "INVITE")
        node.receive(answer(b, 503), far)
    finals = [m for m, dest in node.take() if dest == PROXY]
    assert [m.status for m in finals] == [503]
    assert not handler.calls.legs


def test_a_busy_far_side_is_not_retried_and_its_answer_reaches_the_caller() -> None:
    _, node = b2bua()
    node.receive(invite(), PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 486, extra=[("Warning", '399 acr "busy"')]), far)
    sent = node.take()
    busy = [m for m, dest in sent if dest == PROXY]
    assert [m.status for m in busy] == [486] and busy[0].headers.get("warning")
    assert not of(sent, "INVITE")


def test_a_node_down_by_its_probes_is_tried_last_and_back_after_enough_answers() -> None:
    handler, node = b2bua(probe_failures=2, probe_successes=2, probe_interval=1.0)
    handler.probing = True
    for _ in range(3):  # rounds: the probes of ACR1 are never answered, ACR2's are
        node.advance(1.0)
        for probe, dest in of(node.take(), "OPTIONS"):
            if dest == ACR2:
                node.receive(answer(probe, 200, tag="x"), dest)
    node.take()
    for _ in range(2):
        node.receive(invite(), PROXY)
        ((b, dest),) = of(node.take(), "INVITE")
        assert dest == ACR2
        node.receive(answer(b, 180), dest)  # ACR2 takes its calls
    for _ in range(2):  # ACR1 answers again
        node.advance(1.0)
        for probe, dest in of(node.take(), "OPTIONS"):
            node.receive(answer(probe, 200, tag="x"), dest)
    dests = []
    for _ in range(2):
        node.receive(invite(), PROXY)
        dests += [dest for _, dest in of(node.take(), "INVITE")]
    assert sorted(dests) == [ACR1, ACR2]


def test_a_number_matching_a_pattern_route_goes_to_its_gateways_without_internal_headers() -> None:
    routes = [
        {"name": "partner", "pattern": "+4420", "gateways": ["127.0.0.1:5090", "127.0.0.1:5091"]},
        {"name": "emergency", "pattern": "^(112|911)$", "gateways": ["127.0.0.1:5092"]},
    ]
    _, node = b2bua(routes=routes)
    for number, gateway in (("+442071234567", 5090), ("112", 5092), ("1120", 5080)):
        node.receive(invite(number), PROXY)
        ((b, dest),) = of(node.take(), "INVITE")
        assert dest.port == gateway, number
        assert ("p-asserted-identity" in b.headers) is (gateway == 5080)
    node.receive(invite("+442071234567"), PROXY)
    ((b, dest),) = of(node.take(), "INVITE")
    node.receive(answer(b, 503), dest)
    assert [d.port for _, d in of(node.take(), "INVITE")] == [5091]  # the route's next gateway


# -- redirects -------------------------------------------------------------------------------------
REDIRECT = [("Contact", "<sip:+15559990001@192.0.2.6>;q=0.5, <sip:+15559990000@192.0.2.5>;q=0.9")]


def test_a_3xx_reaches_the_caller_with_its_contacts() -> None:
    handler, node = b2bua()
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 302, extra=REDIRECT), far)
    sent = node.take()
    ((moved, dest),) = [(m, d) for m, d in sent if d == PROXY]
    assert moved.status == 302 and moved.call_id == a.call_id
    assert [c.uri_text for c in moved.contacts] == [
        "sip:+15559990001@192.0.2.6", "sip:+15559990000@192.0.2.5",
    ]  # fmt: skip
    assert [m.method for m, d in sent if d == far] == ["ACK"]  # the layer's, for a non-2xx
    assert not of(sent, "INVITE") and len(handler) == 0


def test_a_3xx_is_followed_on_the_b_leg_to_its_best_contact_s_number_when_configured() -> None:
    handler, node = b2bua(follow_redirects=1)
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 302, extra=REDIRECT), far)
    sent = node.take()
    assert [m.method for m, d in sent if d == far] == ["ACK"]
    assert not [m for m, d in sent if d == PROXY]  # the caller sees nothing of it
    ((again, dest),) = of(sent, "INVITE")
    assert dest == ACR2  # routed again, like a new call: never to the Contact's host
    assert again.uri == "sip:+15559990000@192.0.2.5"  # the higher q
    assert again.call_id == b.call_id and again.cseq.number == b.cseq.number + 1
    assert again.headers.get("to") == b.headers.get("to")
    assert "x-sipline-deadline" in again.headers
    node.receive(answer(again, 302, extra=REDIRECT), dest)  # once only
    ((moved, _),) = [(m, d) for m, d in node.take() if d == PROXY]
    assert moved.status == 302 and handler.calls.counts["redirects"] == 1


def test_a_redirect_is_routed_by_its_number_to_a_pattern_route_s_gateway() -> None:
    routes = [{"name": "partner", "pattern": "+4420", "gateways": ["127.0.0.1:5090"]}]
    _, node = b2bua(follow_redirects=2, routes=routes)
    node.receive(invite(), PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 301, extra=[("Contact", "<tel:+442071234567>")]), far)
    ((again, dest),) = of(node.take(), "INVITE")
    assert dest.port == 5090 and again.uri == "tel:+442071234567"
    assert "p-asserted-identity" not in again.headers  # outside the network
    assert "x-sipline-deadline" not in again.headers


def test_a_3xx_whose_contacts_name_no_number_goes_to_the_caller() -> None:
    _, node = b2bua(follow_redirects=1)
    node.receive(invite(), PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 302, extra=[("Contact", "<sip:gw.example.com>")]), far)
    sent = node.take()
    assert not of(sent, "INVITE")
    assert [(m.status, m.contacts[0].uri_text) for m, d in sent if d == PROXY] == [
        (302, "sip:gw.example.com"),
    ]  # fmt: skip


# -- who may call --------------------------------------------------------------------------------------
def test_an_invite_from_an_untrusted_address_gets_403() -> None:
    _, node = b2bua(trusted=["127.0.0.1:5060"])
    node.receive(invite(), Address("UDP", "127.0.0.1", 5999))
    ((response, _),) = node.take()
    assert response.status == 403 and "trusted" in response.reason
    node.receive(invite(), PROXY)
    assert of(node.take(), "INVITE")


def test_an_invite_without_an_asserted_identity_gets_403_whatever_its_from_says() -> None:
    # The account is the proxy's word on who authenticated (RFC 3325), never the From.
    handler, node = b2bua(accounts=FakeAccounts())
    unasserted = invite()
    unasserted.headers.remove("p-asserted-identity")
    node.receive(unasserted, PROXY)
    ((response, _),) = node.take()
    assert (response.status, response.reason) == (
        403, "Forbidden: no P-Asserted-Identity from the proxy"
    )  # fmt: skip
    assert handler.calls.counts["unidentified"] == 1 and not handler.calls.legs
    asserted = invite()
    asserted.headers.set("P-Asserted-Identity", "<sip:bob@example.com>")
    node.receive(asserted, PROXY)
    assert of(node.take(), "INVITE")
    assert handler.calls.accounts.asked == ["bob@example.com"]  # type: ignore[union-attr]


def test_an_invite_without_contact_gets_400() -> None:
    _, node = b2bua()
    request = invite()
    request.headers.remove("contact")
    node.receive(request, PROXY)
    ((response, _),) = node.take()
    assert response.status == 400


# -- timers ----------------------------------------------------------------------------------------------
def test_a_call_reaching_the_duration_limit_is_ended_on_both_legs() -> None:
    handler, node = b2bua(max_call_duration=60.0)
    up = call_up(node)
    node.advance(59.0)
    assert not of(node.take(), "BYE")
    node.advance(1.1)
    byes = of(node.take(), "BYE")
    assert sorted(dest.port for _, dest in byes) == [5060, up.far.port]
    assert not handler.calls.legs


def test_timer_c_ends_a_call_whose_far_side_goes_silent_after_a_provisional() -> None:
    handler, node = b2bua(timer_c=10.0)
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 100, tag=None), far)
    node.advance(5.0)
    node.receive(answer(b, 180), far)
    node.take()
    node.advance(9.9)
    node.receive(answer(b, 183), far)  # each provisional starts it again
    node.take()
    node.advance(9.9)
    assert node.take() == [] and len(handler) == 1
    node.advance(0.2)
    sent = node.take()
    assert [(getattr(m, "status", None) or m.method, d) for m, d in sent] == [
        (408, PROXY), ("CANCEL", far),
    ]  # fmt: skip
    assert sent[0][0].call_id == a.call_id and sent[1][0].call_id == b.call_id
    assert len(handler) == 0 and handler.calls.counts["timer_c"] == 1
    node.receive(answer(b, 487), far)
    assert [m.method for m, _ in node.take()] == ["ACK"]


def test_timer_c_stops_at_the_answer() -> None:
    handler, node = b2bua(timer_c=10.0)
    up = call_up(node)
    node.advance(11.0)
    assert not of(node.take(), "BYE") and len(handler) == 1
    assert up.a_ok.status == 200 and handler.calls.counts["timer_c"] == 0


def test_the_caller_s_session_timer_is_negotiated_and_a_missed_refresh_ends_the_call() -> None:
    handler, node = b2bua(session_expires=1800, min_se=90)
    timer = [("Supported", "timer"), ("Session-Expires", "120;refresher=uac")]
    up = call_up(node, a_extra=timer)
    assert up.a_ok.headers.get("session-expires") == "120;refresher=uac"
    assert "timer" in up.a_ok.headers.get_all("require")
    node.advance(60.0)  # the caller refreshes with UPDATE: crosses, and restarts the timer
    node.receive(from_caller(up, "UPDATE", 11, extra=timer), PROXY)
    ((update, dest),) = node.take()
    node.receive(answer(update, 200, tag=None), dest)
    ((ok, _),) = node.take()
    assert ok.headers.get("session-expires") == "120;refresher=uac"
    node.advance(87.0)  # 120 - min(32, 120 / 3) after the refresh: still up
    assert not of(node.take(), "BYE")
    node.advance(1.5)
    assert len(of(node.take(), "BYE")) == 2  # RFC 4028 §10: no refresh came
    assert not handler.calls.legs


def test_we_refresh_a_leg_whose_peer_asked_us_to() -> None:
    _, node = b2bua()
    up = call_up(
        node, b_extra=[("Session-Expires", "200;refresher=uac"), ("Allow", "INVITE, UPDATE")]
    )
    node.advance(100.5)
    ((update, dest),) = of(node.take(), "UPDATE")
    assert dest == up.far and update.headers.get("session-expires") == "200;refresher=uac"
    node.receive(
        answer(update, 200, tag=None, extra=[("Session-Expires", "200;refresher=uac")]), dest
    )
    assert node.take() == []


def test_a_session_interval_below_min_se_gets_422() -> None:
    _, node = b2bua(min_se=120)
    node.receive(invite(extra=[("Supported", "timer"), ("Session-Expires", "90")]), PROXY)
    ((response, _),) = node.take()
    assert response.status == 422 and response.headers.get("min-se") == "120"


def test_a_422_from_the_far_side_is_retried_with_its_min_se() -> None:
    _, node = b2bua(session_expires=90)
    node.receive(invite(), PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 422, extra=[("Min-SE", "600")]), far)
    ((again, dest),) = of(node.take(), "INVITE")
    assert dest == far and again.headers.get("session-expires") == "600"
    assert again.headers.get("min-se") == "90"


# -- licences and media -------------------------------------------------------------------------------------
@dataclass
class Verdict:
    allowed: bool
    reason: str = ""


class FakeAccounts:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def account_of(self, aor: str) -> str | None:
        self.asked.append(aor)
        return "acme"


class FakeLicences:
    def __init__(self, allowed: bool, licensed: bool = True) -> None:
        self.allowed = allowed
        self.is_licensed = licensed
        self.admitted: list[str] = []
        self.released: list[str] = []

    def licensed(self, account: str | None) -> bool:
        return account is not None and self.is_licensed

    async def admit(self, account: str | None, call_id: str, now: float | None = None) -> Verdict:
        self.admitted.append(call_id)
        return Verdict(self.allowed, "" if self.allowed else "Licence Exceeded")

    async def release(self, account: str | None, call_id: str) -> None:
        self.released.append(call_id)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


@on_uvloop
async def test_a_call_over_the_licence_after_grace_gets_403_with_the_reason() -> None:
    licences = FakeLicences(allowed=False)
    _, node = b2bua(accounts=FakeAccounts(), licences=licences)
    node.receive(invite(), PROXY)
    await settle()
    ((response, _),) = node.take()
    assert (response.status, response.reason) == (403, "Licence Exceeded")
    assert licences.released == []


@on_uvloop
async def test_an_admitted_call_carries_its_account_to_the_acr_and_is_released_at_the_end() -> None:
    licences = FakeLicences(allowed=True)
    _, node = b2bua(accounts=FakeAccounts(), licences=licences)
    a = invite()
    node.receive(a, PROXY)
    assert node.take() == []  # waiting for the licence check
    await settle()
    ((b, far),) = of(node.take(), "INVITE")
    assert b.headers.get("x-sipline-account") == "acme"
    node.receive(answer(b, 200, body=SDP), far)
    ((ok, _),) = node.take()
    node.receive(ack_for_2xx(a, ok, "127.0.0.1:5060"), PROXY)
    node.receive(
        in_dialog("BYE", uri="sip:b2bua@127.0.0.1:5070", from_=a.headers.get("from") or "",
                  to=ok.headers.get("to") or "", call_id=a.call_id, cseq=11,
                  via_host="127.0.0.1:5060"),
        PROXY,
    )  # fmt: skip
    await settle()
    assert licences.released == [a.call_id]


def test_a_call_of_an_account_without_licence_goes_on_at_once_and_counts_nothing() -> None:
    licences = FakeLicences(allowed=False, licensed=False)
    _, node = b2bua(accounts=FakeAccounts(), licences=licences)
    node.receive(invite(), PROXY)
    ((b, _),) = of(node.take(), "INVITE")  # no licence check to wait for
    assert b.headers.get("x-sipline-account") == "acme"
    assert licences.admitted == [] and licences.released == []


def test_a_spoofed_account_header_from_the_caller_is_not_passed_on() -> None:
    _, node = b2bua()
    node.receive(invite(extra=[("X-Sipline-Account", "someone-else")]), PROXY)
    ((b, _),) = of(node.take(), "INVITE")
    assert "x-sipline-account" not in b.headers


class FakeMedia:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def wants(self, request: Request, source: Address) -> bool:
        return True

    def caller(self, request: Request, source: Address) -> Address:
        return source

    def offer(
        self,
        call_id: str,
        from_tag: str,
        sdp: bytes,
        source: Address | None,
        *,
        to_tag: str | None = None,
    ) -> asyncio.Future[bytes]:
        self.calls.append(("offer", call_id, from_tag, *([to_tag] if to_tag else [])))
        return _done(b"v=0\r\nc=IN IP4 192.0.2.1\r\n")

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: bytes) -> asyncio.Future[bytes]:
        self.calls.append(("answer", call_id, from_tag, to_tag))
        return _done(b"v=0\r\nc=IN IP4 192.0.2.2\r\n")

    def delete(self, call_id: str, from_tag: str) -> None:
        self.calls.append(("delete", call_id, from_tag))


def _done(value: bytes) -> asyncio.Future[bytes]:
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


@on_uvloop
async def test_anchored_media_rewrites_the_sdp_on_both_legs_and_is_deleted_at_the_end() -> None:
    media = FakeMedia()
    handler, node = b2bua(media=media)
    a = invite()
    node.receive(a, PROXY)
    await settle()
    ((b, far),) = of(node.take(), "INVITE")
    assert b"192.0.2.1" in b.body
    node.receive(answer(b, 200, body=SDP), far)
    await settle()
    ((ok, _),) = node.take()
    assert b"192.0.2.2" in ok.body
    node.receive(ack_for_2xx(a, ok, "127.0.0.1:5060"), PROXY)
    node.take()
    up = Up(a, b, ok, answer(b, 200, body=SDP), far)
    node.receive(from_far_side(up, "BYE", 1), far)
    tag = a.from_.tag
    assert media.calls == [
        ("offer", a.call_id, tag), ("answer", a.call_id, tag, ok.to.tag), ("delete", a.call_id, tag),
    ]  # fmt: skip
    assert isinstance(handler, B2buaHandler)


def test_the_call_state_is_released_when_the_call_ends() -> None:
    handler, node = b2bua()
    up = call_up(node)
    call = handler.calls.legs[up.a.call_id].call
    assert call.server is None and call.b_invite is None and call.answer is None  # after the ACK
    node.receive(from_caller(up, "BYE", 11), PROXY)
    assert call.phase is Phase.ENDED and not handler.calls.legs
    assert len(handler.calls.duration) == 0 and len(handler.calls.sessions) == 0


def test_an_ended_call_goes_with_its_last_transaction_and_leaves_no_cycle() -> None:
    # Call -> Leg is strong and Leg -> Call weak: reference counting frees a call,
    # not a collection of the cyclic GC (issue 14: ~85 us per call in GC).
    handler, node = b2bua()
    gc.disable()
    try:
        up = call_up(node)
        call = weakref.ref(handler.calls.legs[up.a.call_id].call)
        node.advance(60.0)  # its INVITE transactions are gone: the table holds it
        assert call() is not None and handler.calls.live == {call()}
        node.receive(from_caller(up, "BYE", 11), PROXY)
        node.receive(answer(of(node.take(), "BYE")[0][0], 200), up.far)
        assert call() is None and not handler.calls.live
    finally:
        gc.enable()


@on_uvloop
async def test_a_cancel_while_the_relay_rewrites_the_answer_acks_and_ends_the_far_side() -> None:
    media = FakeMedia()
    pending: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    media.answer = lambda *args: pending  # type: ignore[assignment,method-assign]
    _, node = b2bua(media=media)
    a = invite()
    node.receive(a, PROXY)
    await settle()
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 200, body=SDP), far)  # the relay has not answered yet
    cancel = Request("CANCEL", a.uri)
    cancel.headers.add("Via", a.headers.values("via")[0])
    for name in ("From", "To", "Call-ID"):
        cancel.headers.add(name, a.headers.get(name) or "")
    cancel.headers.add("CSeq", "10 CANCEL")
    cancel.headers.add("Max-Forwards", "70")
    node.receive(cancel, PROXY)
    sent = node.take()
    assert sorted(getattr(m, "method", "") or str(m.status) for m, _ in sent) == [
        "200", "487", "ACK", "BYE",
    ]  # fmt: skip
    pending.set_result(SDP)
    await settle()
    assert node.take() == []
    assert media.calls[-1][0] == "delete"


@on_uvloop
async def test_a_new_offer_in_an_anchored_call_is_anchored_again_from_either_side() -> None:
    media = FakeMedia()
    _, node = b2bua(media=media)
    a = invite()
    node.receive(a, PROXY)
    await settle()
    ((b, far),) = of(node.take(), "INVITE")
    b_ok = answer(b, 200, body=SDP)
    node.receive(b_ok, far)
    await settle()
    ((a_ok, _),) = node.take()
    node.receive(ack_for_2xx(a, a_ok, "127.0.0.1:5060"), PROXY)
    node.take()
    up = Up(a, b, a_ok, b_ok, far)
    node.receive(from_far_side(up, "INVITE", 2, body=SDP), far)
    await settle()
    ((reinvite, _),) = node.take()
    assert b"192.0.2.1" in reinvite.body
    node.receive(answer(reinvite, 200, tag=None, body=SDP), PROXY)
    await settle()
    ((ok, dest),) = node.take()
    assert dest == far and b"192.0.2.2" in ok.body
    tag, ours = a.from_.tag, a_ok.to.tag
    assert media.calls[2:] == [
        ("offer", a.call_id, ours, tag), ("answer", a.call_id, ours, tag),
    ]  # fmt: skip


class FailingMedia(FakeMedia):
    """A relay whose ng commands named in ``failing`` fail (an NgError, say)."""

    def __init__(self, *failing: str) -> None:
        super().__init__()
        self.failing = failing

    def offer(self, call_id: str, from_tag: str, sdp: bytes, *args: Any, **kw: Any) -> Any:
        done = super().offer(call_id, from_tag, sdp, *args, **kw)
        return _failed() if "offer" in self.failing else done

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: bytes) -> Any:
        done = super().answer(call_id, from_tag, to_tag, sdp)
        return _failed() if "answer" in self.failing else done


def _failed() -> asyncio.Future[bytes]:
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    future.set_exception(RuntimeError("no relay"))
    return future


async def _anchored_call_up(node: FakeNode) -> Up:
    a = invite()
    node.receive(a, PROXY)
    await settle()
    ((b, far),) = of(node.take(), "INVITE")
    b_ok = answer(b, 200, body=SDP.replace(b"10.0.0.1", b"10.9.9.9"))
    node.receive(b_ok, far)
    await settle()
    ((a_ok, _),) = node.take()
    node.receive(ack_for_2xx(a, a_ok, "127.0.0.1:5060"), PROXY)
    node.take()
    return Up(a, b, a_ok, b_ok, far)


@on_uvloop
async def test_a_relay_failing_the_offer_leaves_the_media_as_it_came_and_is_counted() -> None:
    media = FailingMedia("offer")
    handler, node = b2bua(media=media)
    up = await _anchored_call_up(node)
    assert up.b.body == SDP and "x-sipline-media-call" not in up.b.headers
    assert up.a_ok.body == up.b_ok.body  # no answer asked of a relay that has no offer
    node.receive(from_caller(up, "BYE", 11), PROXY)
    assert [c[0] for c in media.calls] == ["offer"]  # nothing to delete
    assert handler.calls.counts["media_errors"] == 1


@on_uvloop
async def test_a_relay_failing_the_answer_leaves_the_answer_as_it_came_and_is_counted() -> None:
    media = FailingMedia("answer")
    handler, node = b2bua(media=media)
    up = await _anchored_call_up(node)
    assert b"192.0.2.1" in up.b.body and up.a_ok.body == up.b_ok.body
    node.receive(from_caller(up, "BYE", 11), PROXY)
    assert [c[0] for c in media.calls] == ["offer", "answer", "delete"]
    assert handler.calls.counts["media_errors"] == 1


@on_uvloop
async def test_a_relay_failing_a_new_offer_lets_it_and_its_answer_cross_as_they_came() -> None:
    media = FailingMedia()
    handler, node = b2bua(media=media)
    up = await _anchored_call_up(node)
    media.failing = ("offer",)
    node.receive(from_caller(up, "INVITE", 11, body=SDP), PROXY)
    await settle()
    ((reinvite, far),) = node.take()
    assert reinvite.body == SDP
    far_sdp = SDP.replace(b"10.0.0.1", b"10.9.9.9")
    node.receive(answer(reinvite, 200, tag="far", body=far_sdp), far)
    await settle()
    ((ok, _),) = node.take()
    assert ok.status == 200 and ok.body == far_sdp
    assert [c[0] for c in media.calls] == ["offer", "answer", "offer"]  # no answer to it
    assert handler.calls.counts["media_errors"] == 1


def test_an_invite_with_a_bad_contact_gets_400_with_the_reason() -> None:
    _, node = b2bua()
    request = invite()
    request.headers.set("Contact", "<not a uri")
    node.receive(request, PROXY)
    ((response, _),) = node.take()  # the core refuses it, before the B2BUA sees it
    assert (response.status, response.reason) == (400, "bad Contact: unclosed <URI>")
    assert len(node.layer) == 0


@on_uvloop
async def test_an_anchored_call_names_its_relay_call_to_the_acr_but_not_to_a_pattern_route() -> None:
    routes = [{"name": "partner", "pattern": "+4420", "gateways": ["127.0.0.1:5090"]}]
    _, node = b2bua(media=FakeMedia(), routes=routes)
    a = invite()
    node.receive(a, PROXY)
    await settle()
    ((b, dest),) = of(node.take(), "INVITE")
    assert dest.port == 5080
    assert b.headers.get("x-sipline-media-call") == a.call_id  # the relay's ng call is the A leg's
    node.receive(invite("+442071234567"), PROXY)
    await settle()
    ((b, dest),) = of(node.take(), "INVITE")
    assert dest.port == 5090 and "x-sipline-media-call" not in b.headers


def test_a_call_not_anchored_names_no_relay_call() -> None:
    _, node = b2bua()
    node.receive(invite(extra=[("X-Sipline-Media-Call", "spoofed@10.0.0.1")]), PROXY)
    ((b, _),) = of(node.take(), "INVITE")
    assert "x-sipline-media-call" not in b.headers


# -- metrics ---------------------------------------------------------------------------------------------
def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_calls_failovers_and_refusals_are_counted_on_metrics() -> None:
    names = ("calls", "answered", "failovers", "failed", "untrusted", "unidentified")
    before = {n: _sample(f"sipline_b2bua_{n}_total") for n in names}
    handler, node = b2bua(trusted=["127.0.0.1:5060"])
    up = call_up(node)
    assert _sample("sipline_b2bua_calls_active") >= 1
    node.receive(from_caller(up, "BYE", 11), PROXY)
    node.take()
    node.receive(invite(), PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 503), far)  # to the other node
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 486), far)
    node.receive(invite(), Address("UDP", "127.0.0.1", 5999))
    unasserted = invite()
    unasserted.headers.remove("p-asserted-identity")
    node.receive(unasserted, PROXY)
    after = {n: _sample(f"sipline_b2bua_{n}_total") - before[n] for n in names}
    assert after == {
        "calls": 2, "answered": 1, "failovers": 1, "failed": 1, "untrusted": 1, "unidentified": 1
    }  # fmt: skip
    handler.close()
