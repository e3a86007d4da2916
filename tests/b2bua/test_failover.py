"""Failing a call over to the next hop leaves nothing behind that could come back
as a second call (issue 12, point 2): the INVITE given up on is sent no more,
it carries the instant we gave up on it, and its late answer is hung up as a ghost."""

from __future__ import annotations

import time

from sipline.sip.address import Address
from sipline.sip.message import Request
from tests.b2bua.support import (
    ACR1,
    ACR2,
    PROXY,
    SDP,
    ack_for_2xx,
    answer,
    b2bua,
    in_dialog,
    invite,
    of,
)  # fmt: skip
from tests.b2bua.test_call_endings import cancel_of

GHOST = 'SIP;cause=200;text="ghost"'


def _failed_over(node, failover_timeout: float = 2.0):  # type: ignore[no-untyped-def]
    """A call whose INVITE to ACR1 met silence and went to ACR2: (caller's INVITE, both B INVITEs)."""
    a = invite()
    node.receive(a, PROXY)
    ((first, dest),) = of(node.take(), "INVITE")
    assert dest == ACR1
    node.advance(failover_timeout + 0.05)
    invites = of(node.take(), "INVITE")
    second = [m for m, d in invites if d == ACR2]
    assert len(second) == 1
    return a, first, second[0]


def test_an_invite_failed_over_is_sent_no_more_to_the_hop_given_up_on() -> None:
    _, node = b2bua(failover_timeout=2.0)
    node.receive(invite(), PROXY)
    node.take()
    node.advance(1.0)  # timer A: sent again at 0.5
    assert [d for _, d in of(node.take(), "INVITE")] == [ACR1]
    node.advance(1.05)  # again at 1.5, then the failover timeout
    assert [d for _, d in of(node.take(), "INVITE")] == [ACR1, ACR2]
    sent = []
    for _ in range(40):  # timer A would have sent it again at 3.5, 7.5, 15.5 and 31.5
        node.advance(1.0)
        sent += node.take()
    assert ACR1 not in [d for m, d in sent if isinstance(m, Request) and m.method == "INVITE"]


def test_an_invite_to_an_acr_node_carries_the_wall_clock_instant_we_give_up_on_it() -> None:
    _, node = b2bua(failover_timeout=2.0)
    before = time.time()
    node.receive(invite(extra=[("X-Sipline-Deadline", "9999999999.000")]), PROXY)  # not ours
    after = time.time()
    ((b, _),) = of(node.take(), "INVITE")
    (deadline,) = b.headers.get_all("x-sipline-deadline")
    assert deadline.count(".") == 1 and len(deadline.split(".")[1]) == 3
    assert before + 2.0 - 0.001 <= float(deadline) <= after + 2.0 + 0.001


def test_an_invite_to_a_pattern_route_s_gateway_carries_no_deadline() -> None:
    routes = [{"name": "partner", "pattern": "+4420", "gateways": ["127.0.0.1:5090"]}]
    _, node = b2bua(routes=routes)
    node.receive(invite("+442071234567"), PROXY)
    ((b, dest),) = of(node.take(), "INVITE")
    assert dest.port == 5090 and "x-sipline-deadline" not in b.headers


def test_each_attempt_carries_its_own_deadline() -> None:
    _, node = b2bua(failover_timeout=2.0)
    a = invite()
    node.receive(a, PROXY)
    ((first, _),) = of(node.take(), "INVITE")
    time.sleep(0.01)
    node.receive(answer(first, 503), ACR1)
    ((second, _),) = of(node.take(), "INVITE")
    deadlines = [float(b.headers.get("x-sipline-deadline") or 0) for b in (first, second)]
    assert 0 < deadlines[0] < deadlines[1]


def test_each_failover_attempt_is_a_dialog_of_its_own() -> None:
    """A fresh Call-ID and From tag per hop: a ghost of the attempt given up on (a
    BYE from the node that comes back, a 2xx) cannot touch the live call."""
    handler, node = b2bua(failover_timeout=2.0)
    a, first, second = _failed_over(node)
    assert second.call_id != first.call_id and second.from_.tag != first.from_.tag
    assert second.cseq.number > first.cseq.number  # attempts stay in order at a carrier
    assert first.call_id not in handler.calls.legs
    node.receive(answer(second, 200, body=SDP, contact="<sip:far@127.0.0.1:5081>"), ACR2)
    ((ok, _),) = node.take()
    node.receive(ack_for_2xx(a, ok, "127.0.0.1:5060"), PROXY)
    node.take()
    ghost_bye = in_dialog(
        "BYE", uri="sip:b2bua@127.0.0.1:5070", from_=f"{first.headers.get('to')};tag=far",
        to=first.headers.get("from") or "", call_id=first.call_id, cseq=1, via_host="127.0.0.1:5080",
    )  # fmt: skip
    node.receive(ghost_bye, ACR1)
    assert [m.status for m, _ in node.take()] == [481]
    assert len(handler.calls) == 1  # the live call is still up


def test_a_late_2xx_from_the_hop_given_up_on_is_acked_and_byed_as_a_ghost() -> None:
    handler, node = b2bua(failover_timeout=2.0)
    a, first, second = _failed_over(node)
    node.receive(answer(first, 200, tag="ghost1", body=SDP), ACR1)  # the primary came back
    sent = node.take()
    assert [(m.method, d) for m, d in sent] == [("ACK", ACR1), ("BYE", ACR1)]
    bye = sent[1][0]
    assert bye.headers.get("reason") == GHOST and bye.to.tag == "ghost1"
    assert bye.call_id == first.call_id and bye.cseq.method == "BYE"
    assert handler.calls.counts["ghosts"] == 1
    node.receive(answer(second, 200, body=SDP, contact="<sip:far@127.0.0.1:5082>"), ACR2)
    ((ok, dest),) = node.take()
    assert ok.status == 200 and dest == PROXY
    node.receive(ack_for_2xx(a, ok, "127.0.0.1:5060"), PROXY)
    ((ack, dest),) = node.take()
    assert ack.method == "ACK" and dest == ACR2 and "reason" not in ack.headers


def test_a_2xx_after_the_transaction_given_up_on_is_gone_is_still_a_ghost() -> None:
    handler, node = b2bua(failover_timeout=2.0)
    a, first, second = _failed_over(node)
    node.receive(answer(second, 200, body=SDP), ACR2)
    ((ok, _),) = node.take()
    node.receive(ack_for_2xx(a, ok, "127.0.0.1:5060"), PROXY)
    node.take()
    node.advance(33.0)  # timer B ended the transaction given up on
    node.take()
    node.receive(answer(first, 200, tag="ghost1", body=SDP), ACR1)
    sent = node.take()
    assert [(m.method, d) for m, d in sent] == [("ACK", ACR1), ("BYE", ACR1)]
    assert sent[1][0].headers.get("reason") == GHOST and sent[1][0].to.tag == "ghost1"
    node.receive(answer(second, 200, body=SDP), ACR2)  # the call's own 2xx again: ACK only
    assert [m.method for m, _ in node.take()] == ["ACK"]
    assert handler.calls.counts["ghosts"] == 1


def test_a_stray_2xx_from_no_next_hop_of_ours_gets_nothing() -> None:
    handler, node = b2bua()
    stranger = Address("UDP", "127.0.0.1", 5999)
    node.receive(answer(invite(), 200, tag="x", contact="<sip:victim@192.0.2.1>"), stranger)
    assert node.take() == [] and handler.calls.counts["ghosts"] == 0


def test_the_answer_to_an_invite_the_caller_cancelled_is_byed_as_a_ghost() -> None:
    handler, node = b2bua()
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(cancel_of(a), PROXY)
    assert sorted(m.status for m, _ in node.take()) == [200, 487]  # no CANCEL before a 1xx
    node.advance(1.0)
    assert of(node.take(), "INVITE") == []  # and the INVITE is sent no more
    node.receive(answer(b, 200, body=SDP), far)
    sent = node.take()
    assert [m.method for m, _ in sent] == ["ACK", "BYE"]
    assert sent[1][0].headers.get("reason") == GHOST
    assert handler.calls.counts["ghosts"] == 1
