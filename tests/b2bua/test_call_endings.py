"""Every way a call ends: the legs are ended as RFC 3261 wants, and nothing of
the call stays in the handler (its tables, its timers) nor in the transaction
layer once the lingering transactions are gone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from b2bua.handler import B2buaHandler
from sipline.sip.message import Request, Response
from tests.b2bua.support import (
    PROXY,
    SDP,
    FakeNode,
    answer,
    b2bua,
    in_dialog,
    invite,
    of,
)
from tests.b2bua.test_handler import FakeMedia, Up, call_up, from_caller, from_far_side, settle
from tests.support import on_uvloop


def cancel_of(a: Request) -> Request:
    cancel = Request("CANCEL", a.uri)
    cancel.headers.add("Via", a.headers.values("via")[0])
    cancel.headers.add("Via", a.headers.values("via")[1])
    for name in ("From", "To", "Call-ID"):
        cancel.headers.add(name, a.headers.get(name) or "")
    cancel.headers.add("CSeq", f"{a.cseq.number} CANCEL")
    cancel.headers.add("Max-Forwards", "70")
    return cancel


def assert_forgotten(handler: B2buaHandler, node: FakeNode) -> None:
    assert len(handler) == 0 and not handler.calls.legs
    assert len(handler.calls.failover) == 0 and len(handler.calls.duration) == 0
    assert len(handler.calls.sessions) == 0 and len(handler.calls.timer_c) == 0
    assert len(handler.calls.silence) == 0
    node.advance(40.0)  # timers L, M, H, D, J, K and B all ran out
    node.take()
    assert len(node.layer) == 0
    assert len(handler.calls.failover) == 0 and len(handler.calls.sessions) == 0


# -- the endings, each leaving the fake node with nothing of the call ----------------------------
def caller_bye(node: FakeNode) -> None:
    up = call_up(node)
    node.receive(from_caller(up, "BYE", 11), PROXY)
    for bye, dest in of(node.take(), "BYE"):
        node.receive(answer(bye, 200, tag=None), dest)


def far_bye(node: FakeNode) -> None:
    up = call_up(node)
    node.receive(from_far_side(up, "BYE", 2), up.far)
    for bye, dest in of(node.take(), "BYE"):
        node.receive(answer(bye, 200, tag=None), dest)


def cancel_before_any_provisional(node: FakeNode) -> None:
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(cancel_of(a), PROXY)
    node.receive(answer(b, 180), far)  # the CANCEL goes now (§9.1)
    ((cancel, dest),) = of(node.take(), "CANCEL")
    node.receive(answer(cancel, 200, tag=None), dest)
    node.receive(answer(b, 487), far)


def cancel_while_ringing(node: FakeNode) -> None:
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 180), far)
    node.receive(cancel_of(a), PROXY)
    ((cancel, dest),) = of(node.take(), "CANCEL")
    node.receive(answer(cancel, 200, tag=None), dest)
    node.receive(answer(b, 487), far)


def cancel_crossing_a_200(node: FakeNode) -> None:
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 180), far)
    node.receive(cancel_of(a), PROXY)
    node.receive(answer(b, 200, body=SDP), far)
    for bye, dest in of(node.take(), "BYE"):
        node.receive(answer(bye, 200, tag=None), dest)


def every_node_refuses(node: FakeNode) -> None:
    node.receive(invite(), PROXY)
    for _ in range(2):
        ((b, far),) = of(node.take(), "INVITE")
        node.receive(answer(b, 503), far)


def busy(node: FakeNode) -> None:
    node.receive(invite(), PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 486), far)


def nobody_answers(node: FakeNode) -> None:
    node.receive(invite(), PROXY)
    node.advance(2.1)
    node.advance(2.1)


def far_side_silent_after_ringing(node: FakeNode) -> None:
    node.receive(invite(), PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 180), far)
    node.advance(190.5)  # timer C
    node.receive(answer(b, 487), far)


def a_ghost_after_the_failover(node: FakeNode) -> None:
    node.receive(invite(), PROXY)
    ((first, far),) = of(node.take(), "INVITE")
    node.advance(2.1)
    node.receive(answer(first, 200, tag="ghost", body=SDP), far)  # ACKed and BYEd
    ((second, other),) = [(m, d) for m, d in of(node.take(), "INVITE") if d != far]
    node.receive(answer(second, 486), other)


def duration_limit(node: FakeNode) -> None:
    call_up(node)
    node.advance(14400.5)


def session_expired(node: FakeNode) -> None:
    call_up(node, a_extra=[("Supported", "timer"), ("Session-Expires", "120;refresher=uac")])
    node.advance(100.0)


def refresh_unanswered(node: FakeNode) -> None:
    call_up(node, b_extra=[("Session-Expires", "200;refresher=uac")])
    node.advance(100.5)  # our re-INVITE goes and is never answered: timer B ends the call
    node.advance(33.0)


def in_dialog_481(node: FakeNode) -> None:
    up = call_up(node)
    node.receive(from_caller(up, "INFO", 11), PROXY)
    ((info, dest),) = node.take()
    node.receive(answer(info, 481, tag=None), dest)


def in_dialog_timeout(node: FakeNode) -> None:
    up = call_up(node)
    node.receive(from_caller(up, "INFO", 11), PROXY)
    node.advance(33.0)


def caller_never_acks(node: FakeNode) -> None:
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 200, body=SDP), far)
    node.advance(33.0)


def caller_byes_before_its_ack(node: FakeNode) -> None:
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 200, body=SDP), far)
    ((a_ok, _),) = node.take()
    bye = in_dialog(
        "BYE", uri="sip:b2bua@127.0.0.1:5070", from_=a.headers.get("from") or "",
        to=a_ok.headers.get("to") or "", call_id=a.call_id, cseq=11, via_host="127.0.0.1:5060",
    )  # fmt: skip
    node.receive(bye, PROXY)


def bye_while_a_reinvite_is_pending(node: FakeNode) -> None:
    up = call_up(node)
    node.receive(from_caller(up, "INVITE", 11, body=SDP), PROXY)
    ((reinvite, dest),) = node.take()
    node.receive(from_caller(up, "BYE", 12), PROXY)
    node.receive(answer(reinvite, 200, body=SDP), dest)  # crossed our BYE


def bye_while_an_update_is_pending(node: FakeNode) -> None:
    up = call_up(node)
    node.receive(from_caller(up, "UPDATE", 11), PROXY)
    ((update, dest),) = node.take()
    node.receive(from_caller(up, "BYE", 12), PROXY)
    node.receive(answer(update, 200, tag=None), dest)  # crossed our BYE


ENDINGS: list[Callable[[FakeNode], None]] = [
    caller_bye, far_bye, cancel_before_any_provisional, cancel_while_ringing,
    cancel_crossing_a_200, every_node_refuses, busy, nobody_answers,
    far_side_silent_after_ringing, a_ghost_after_the_failover, duration_limit,
    session_expired, refresh_unanswered, in_dialog_481, in_dialog_timeout, caller_never_acks,
    caller_byes_before_its_ack, bye_while_a_reinvite_is_pending, bye_while_an_update_is_pending,
]  # fmt: skip


@pytest.mark.parametrize("ending", ENDINGS, ids=lambda f: f.__name__)
def test_a_call_is_forgotten_whichever_way_it_ends(ending: Callable[[FakeNode], None]) -> None:
    handler, node = b2bua()
    ending(node)
    assert_forgotten(handler, node)


# -- how the legs are ended ------------------------------------------------------------------------
def test_a_bye_from_the_caller_before_its_ack_acks_the_far_side_s_200_then_ends_it() -> None:
    _, node = b2bua()
    caller_byes_before_its_ack(node)
    sent = [(getattr(m, "method", None) or m.status, dest.port) for m, dest in node.take()]
    assert sent == [(200, 5060), ("ACK", 5080), ("BYE", 5080)]  # §13.2.2.4: every 2xx is ACKed


def test_a_caller_that_never_acks_the_200_has_both_legs_ended() -> None:
    handler, node = b2bua()
    a = invite()
    node.receive(a, PROXY)
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 200, body=SDP), far)
    node.take()
    node.advance(31.0)
    assert not of(node.take(), "BYE")
    node.advance(2.0)  # 64*T1 without an ACK: the session ends with BYE (§13.3.1.4)
    sent = [(m.method, dest.port) for m, dest in node.take() if isinstance(m, Request)]
    assert sorted(sent) == [("ACK", 5080), ("BYE", 5060), ("BYE", 5080)]
    assert not handler.calls.legs


def test_a_bye_crossing_a_reinvite_answers_the_reinvite_487_and_acks_its_late_200() -> None:
    _, node = b2bua()
    up = call_up(node)
    node.receive(from_caller(up, "INVITE", 11, body=SDP), PROXY)
    ((reinvite, dest),) = node.take()
    node.receive(from_caller(up, "BYE", 12), PROXY)
    sent = node.take()
    # §15.1.2: the pending request is answered (487) and the far side gets the BYE.
    assert sorted(
        (str(getattr(m, "status", "")) + getattr(m, "method", ""), m.cseq.number) for m, _ in sent
    ) == [("200", 12), ("487", 11), ("BYE", 3)]
    node.receive(answer(reinvite, 200, body=SDP), dest)  # it crossed the BYE
    ((ack, _),) = node.take()
    assert ack.method == "ACK" and ack.cseq.number == 2 and ack.call_id == up.b.call_id


# -- a BYE while the relay still rewrites the far side's 200: the caller has an early dialog only ----
async def answer_being_rewritten(
    node: FakeNode, media: FakeMedia
) -> tuple[Up, asyncio.Future[bytes], Response]:
    """A call whose far side answered (after a 180) while the relay works on its 200."""
    pending: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    media.answer = lambda *args: pending  # type: ignore[assignment,method-assign]
    a = invite()
    node.receive(a, PROXY)
    await settle()
    ((b, far),) = of(node.take(), "INVITE")
    node.receive(answer(b, 180), far)
    ((ringing, _),) = node.take()
    b_ok = answer(b, 200, body=SDP)
    node.receive(b_ok, far)
    assert node.take() == []  # the relay has not answered yet
    return Up(a, b, ringing, b_ok, far), pending, ringing


def what_went(node: FakeNode) -> list[tuple[str, int]]:
    return sorted(
        (str(getattr(m, "status", "")) + getattr(m, "method", ""), dest.port)
        for m, dest in node.take()
    )


@on_uvloop
async def test_a_far_bye_while_the_relay_rewrites_the_200_answers_the_caller_487_no_bye() -> None:
    media = FakeMedia()
    handler, node = b2bua(media=media)
    up, pending, _ = await answer_being_rewritten(node, media)
    node.receive(from_far_side(up, "BYE", 1), up.far)
    # No BYE into the caller's early dialog (RFC 3261 §15): its INVITE gets a final answer.
    assert what_went(node) == [("200", 5080), ("487", 5060), ("ACK", 5080)]
    pending.set_result(SDP)
    await settle()
    assert node.take() == []  # the rewritten 200 goes nowhere
    assert media.calls[-1][0] == "delete"
    node.receive(ack_for_non_2xx(up.a), PROXY)
    assert_forgotten(handler, node)


@on_uvloop
async def test_a_caller_bye_in_its_early_dialog_mid_rewrite_gets_its_invite_487() -> None:
    media = FakeMedia()
    handler, node = b2bua(media=media)
    up, pending, _ = await answer_being_rewritten(node, media)
    node.receive(from_caller(up, "BYE", 11), PROXY)  # §15: a caller may end an early dialog
    # §15.1.2: the BYE is answered 200, the INVITE 487; the far side's 200 is ACKed and BYEd.
    assert what_went(node) == [("200", 5060), ("487", 5060), ("ACK", 5080), ("BYE", 5080)]
    pending.set_result(SDP)
    await settle()
    assert node.take() == []
    node.receive(ack_for_non_2xx(up.a), PROXY)
    assert_forgotten(handler, node)


def ack_for_non_2xx(a: Request) -> Request:
    """The caller's ACK to a final failure: same branch as its INVITE (§17.1.1.3)."""
    ack = Request("ACK", a.uri)
    ack.headers.add("Via", a.headers.values("via")[0])
    ack.headers.add("Via", a.headers.values("via")[1])
    for name in ("From", "Call-ID"):
        ack.headers.add(name, a.headers.get(name) or "")
    ack.headers.add("To", f"{a.headers.get('to')};tag=whatever")
    ack.headers.add("CSeq", f"{a.cseq.number} ACK")
    ack.headers.add("Max-Forwards", "70")
    return ack
