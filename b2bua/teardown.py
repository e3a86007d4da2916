"""How calls end: the caller's final answer or BYEs on the legs, then nothing left behind.

A call not yet answered is failed (``fail``): a final status to the caller's
INVITE and a CANCEL of the B leg's (RFC 3261 §9.1), which is sent no more
(``give_up``). A call in any phase is ended (``end``): every 2xx is ACKed
before its dialog is (§13.2.2.4, §15), a pending re-INVITE is answered 487
(§15.1.2), and each leg that is up but the one whose BYE ended it gets a BYE.
``forget`` then drops the call from the table and every timer, deletes its
media at the relay and releases its licence.

A 2xx nobody takes is a ghost: the answer to an INVITE given up on (failed
over, cancelled, another fork's), or one that never reached the caller. It
is ACKed and BYEd (``hang_up_stray``, §13.2.2.4), and the BYE says so with
``Reason: SIP;cause=200;text="ghost"`` (RFC 3326): the ACR that relays it
bills no such call (the call the caller got is the one billed).

Whatever a future's callback raises fails its call here (``guarded``),
never the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sipline.logs import event
from sipline.sip.dialog import GHOST, Dialog
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_branch
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, State

from .call import Call, Leg, Media, Phase
from .calls import Calls, send_ack
from .legs import Unreachable, crossing_response, next_hop_address

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike

log = logging.getLogger("sipline.b2bua")



def fail(
    calls: Calls, node: NodeLike, call: Call, status: int, reason: str, response: Response | None = None
) -> None:
    """End a call that was not answered: ``status`` (or the far side's ``response``)
    to the caller, CANCEL the B leg."""
    server = call.server
    if server is not None and server.state is State.PROCEEDING:
        calls.counts["failed"] += 1
        if response is not None:
            out = crossing_response(
                server.request, response, to_tag=call.a_tag, contact=None, record_route=False
            )
        else:
            out = server.request.response(status, reason, to_tag=call.a_tag)
        calls.respond(node, server, out)
    client = call.client
    if client is not None and client.state in (State.CALLING, State.PROCEEDING):
        give_up(node, client)
    elif call.phase is Phase.ANSWERED and call.b.dialog is not None:
        # The far side answered while the relay rewrote its answer: ACK and BYE it.
        send_ack(node, call.b, call.cseq, None)
        bye(node, call.b, GHOST)
        calls.counts["ghosts"] += 1
    forget(calls, node, call)


def give_up(node: NodeLike, client: ClientTransaction) -> None:
    """Wait no more for the B leg's INVITE: CANCEL it (it goes once a 1xx comes,
    §9.1) and send it no more, so a hop that comes back never routes a call
    nobody waits for."""
    node.cancel(client)
    node.abandon(client)


def end(calls: Calls, node: NodeLike, call: Call, origin: Leg | None, why: str) -> None:
    """End a call in any phase: BYE each leg that is up but ``origin``."""
    if call.phase is Phase.ENDED:
        return
    if call.phase in (Phase.ADMITTING, Phase.CALLING):
        if origin is call.b:
            fail(calls, node, call, 480, f"Temporarily Unavailable: {why}")
        else:
            fail(calls, node, call, 487, "Request Terminated")
        return
    relay = call.reinvite
    if relay is not None and not relay.acked:
        if relay.answer is not None:  # its 2xx went on, its ACK will not come now
            send_ack(node, relay.source.peer, relay.cseq, None)
        else:  # still pending: answered here (RFC 3261 §15.1.2)
            calls.respond(node, relay.server, relay.server.request.response(487))
    if call.phase is Phase.ANSWERED:
        # The caller's ACK has not come, so ours to the far side's 2xx has not gone:
        # every 2xx is ACKed before its dialog is ended (RFC 3261 §13.2.2.4, §15).
        send_ack(node, call.b, call.cseq, None)
    # Answered but no 2xx to the caller yet (the relay rewrites it): an early dialog at most.
    early = call.phase is Phase.ANSWERED and call.answer is None
    if early:
        _unanswered(calls, node, call, why)
    for leg in (call.a, call.b):
        if leg is origin or (early and leg is call.a):
            continue
        if leg.dialog is not None and leg.dialog.state != "terminated":
            if early:  # the caller never had this answer: never billed
                calls.counts["ghosts"] += 1
                bye(node, leg, GHOST)
            else:
                bye(node, leg)
    event(log, "call_ended", logging.DEBUG, call_id=call.call_id, why=why)
    forget(calls, node, call)


def _unanswered(calls: Calls, node: NodeLike, call: Call, why: str) -> None:
    """The call ends before its 2xx reached the caller (a BYE while the relay
    rewrote it): a BYE must not end the caller's early dialog (RFC 3261 §15),
    so its INVITE gets its final answer. 487, as §15.1.2 has a UAS answer an
    INVITE whose early dialog a BYE ended: the request was terminated, by a
    BYE; unlike a 5xx it invites no retry elsewhere of a call that was
    answered and hung up, and it ends the ACR's and proxies' hunts."""
    server = call.server
    if server is None or server.state is not State.PROCEEDING:
        return
    calls.counts["failed"] += 1
    reason = f"Request Terminated: {why} before the answer reached you"
    calls.respond(node, server, server.request.response(487, reason, to_tag=call.a_tag))


def bye(node: NodeLike, leg: Leg, reason: str | None = None) -> None:
    dialog = leg.dialog
    assert dialog is not None
    extra = () if reason is None else (("Reason", reason),)
    request, hop = dialog.create_request("BYE", via=leg.via(), extra=extra)
    try:
        dest = next_hop_address(hop)
    except Unreachable:
        return
    node.send_request(request, dest)  # its answer needs nothing of the call


def forget(calls: Calls, node: NodeLike, call: Call) -> None:
    """The call is over: out of the table and the timers, its media and licence let
    go, and no 2xx of it offered again to a peer that has not ACKed it."""
    call.phase = Phase.ENDED
    if call.server is not None:
        node.stop_2xx(call.server)
    if call.reinvite is not None:
        node.stop_2xx(call.reinvite.server)
    legs = calls.legs
    for leg in (call.a, call.b):
        if legs.get(leg.call_id) is leg:
            del legs[leg.call_id]
        calls.sessions.disarm(leg)
    calls.live.discard(call)  # what is still in flight holds it, then nothing
    calls.failover.disarm(call)
    calls.silence.disarm(call)
    calls.timer_c.disarm(call)
    calls.duration.disarm(call)
    client = call.client
    if client is not None and client.state is State.ACCEPTED:
        # Answered and ended: it lingers 32 s (timer M) for 2xx retransmissions,
        # which need no call (a fork's 2xx then goes unanswered: its UAS gives up).
        client.context = None
    call.answer = None
    call.b_invite = None
    call.server = None
    call.client = None
    call.reinvite = None
    if call.media.anchored:  # else its offer's callback deletes it
        delete_media(calls, call)
    if call.admitted:
        release(calls, call)


def delete_media(calls: Calls, call: Call) -> None:
    call.media = Media.DIRECT
    if calls.media is not None:
        try:
            calls.media.delete(call.call_id, call.a_from_tag)
        except Exception as exc:
            event(log, "media_delete_failed", logging.WARNING, call_id=call.call_id, error=exc)


def release(calls: Calls, call: Call) -> None:
    """Give back the call's place in its account's licence."""
    call.admitted = False
    if calls.licences is not None:
        calls.spawn(calls.licences.release(call.account, call.call_id), None)


def hang_up_stray(calls: Calls, node: NodeLike, request: Request, response: Response) -> None:
    """A 2xx to ``request`` that no call takes (see the module's doc): ACK it and
    BYE it as a ghost."""
    local = calls.local(node)
    try:
        dialog = Dialog.uac(request, response)
        ack, ack_hop = dialog.create_ack(request.cseq.number, via=local.via("UDP", new_branch(), rport=True))
        out, hop = dialog.create_request(
            "BYE", via=local.via("UDP", new_branch(), rport=True), extra=(("Reason", GHOST),)
        )
        ack_dest, dest = next_hop_address(ack_hop), next_hop_address(hop)
    except (ParseError, Unreachable) as exc:
        event(log, "ghost_not_hung_up", logging.WARNING, call_id=response.call_id, error=exc.reason)
        return
    node.send_stateless(ack, ack_dest)
    node.send_request(out, dest)
    calls.counts["ghosts"] += 1
    event(log, "ghost_hung_up", call_id=response.call_id, status=response.status)


def guarded(calls: Calls, node: NodeLike, call: Call, work: Callable[..., None], *args: Any) -> None:
    """Run a future's callback ``work(calls, node, call, *args)``: what it raises
    fails the call, not the loop."""
    try:
        work(calls, node, call, *args)
    except Exception:
        log.exception("event=b2bua_error where=%s call_id=%s", work.__name__, call.call_id)
        if call.phase is not Phase.ENDED:
            fail(calls, node, call, 500, "Server Internal Error")
