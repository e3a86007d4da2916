"""The far side's answer reaching the caller, and the caller's ACK reaching the far side.

A 1xx or 2xx to the B leg's INVITE crosses to the caller in the A leg's own
dialog (our To tag and Contact, the caller's Record-Route: RFC 3261
§12.1.1), its SDP through the relay first if the call is anchored. The 2xx
starts the duration limit and both legs' session timers, and is sent again,
T1 doubling to T2, until the caller's ACK comes (§13.3.1.4, over TCP too:
the transaction layer's ``retransmit_2xx``); a 2xx the far side sends again
is ACKed again once ours went (§13.2.2.4). The caller's ACK confirms
the call and goes to the far side as the ACK of its 2xx, with the caller's
SDP if it carries one; an ACK for a re-INVITE's 2xx crosses the same way.
A caller that never ACKs has the call ended when its INVITE transaction
does (``no_ack``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipline.sip.address import Address
from sipline.sip.dialog import Dialog, answered_invite
from sipline.sip.message import Request, Response

from .anchoring import through_relay
from .call import Call, Media, Phase
from .calls import SUPPORTED, Calls, send_ack
from .legs import crossing_response
from .teardown import end, hang_up_stray

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike


def to_caller(calls: Calls, node: NodeLike, call: Call, response: Response) -> None:
    """A 1xx or 2xx of the B leg goes to the caller, its answer anchored first if need be."""
    media = calls.media
    if response.body and call.media.anchored and media is not None:
        if call.media is Media.ANSWERING:
            return  # a retransmission while the relay works on the first
        call.media = Media.ANSWERING
        future = media.answer(call.call_id, call.a_from_tag, call.a_tag, response.body)
        through_relay(calls, node, call, "answer", future, _anchored, response)
        return
    _send_to_caller(calls, node, call, response, response.body)


def _anchored(calls: Calls, node: NodeLike, call: Call, sdp: bytes | None, response: Response) -> None:
    if call.media is Media.ANSWERING:  # not deleted since
        call.media = Media.ANCHORED
    if call.phase is Phase.ENDED:
        return
    _send_to_caller(calls, node, call, response, response.body if sdp is None else sdp)


def _send_to_caller(calls: Calls, node: NodeLike, call: Call, response: Response, body: bytes) -> None:
    server = call.server
    if server is None:
        return
    status = response.status
    a = call.a
    extra = a.timer.response_headers() if status >= 200 and a.timer is not None else ()
    if status >= 200:
        extra = [*extra, ("Supported", SUPPORTED)]
    out = crossing_response(
        server.request, response, to_tag=call.a_tag, contact=a.contact,
        record_route=True, body=body, extra=extra,
    )  # fmt: skip
    if body:
        a.sdp = body
    if a.dialog is None:
        a.dialog = Dialog.uas(server.request, out)
    a.dialog.send_response(out)
    if status >= 200:
        call.answer = out
        now = calls.clock()
        calls.duration.arm(call, now, calls.max_duration)
        for leg in (a, call.b):
            if leg.timer is not None:
                calls.sessions.arm(leg, now, leg.timer.due_in)
    calls.respond(node, server, out)
    if status >= 200:
        node.retransmit_2xx(server)


def retransmitted_2xx(node: NodeLike, call: Call) -> None:
    """The B leg sends its 2xx again: our ACK was lost (while the caller's has not
    come, ours to the caller is sent again on its own timer)."""
    if call.phase is Phase.CONFIRMED:
        send_ack(node, call.b, call.cseq, None)


def on_stray(calls: Calls, node: NodeLike, response: Response, source: Address) -> None:
    """A 2xx whose transaction is gone (RFC 6026 §8.4): ACK it again if it is our
    B leg's dialog; any other from one of our next hops is a ghost (an INVITE
    failed over long ago): ACK and BYE it. A stranger's gets nothing."""
    if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
        return
    leg = calls.legs.get(response.call_id)
    if leg is not None and leg is leg.call.b:
        dialog = leg.dialog
        if dialog is not None and dialog.id.remote_tag == response.to.tag:
            if leg.call.phase is Phase.CONFIRMED:
                send_ack(node, leg, response.cseq.number, None)
            return
    if calls.hops.at(source) is not None:
        hang_up_stray(calls, node, answered_invite(response), response)


def on_ack(calls: Calls, node: NodeLike, request: Request) -> None:
    """An ACK for a 2xx of ours (the call's, or a re-INVITE's) goes on to the other leg."""
    leg = calls.legs.get(request.call_id)
    if leg is None:
        return
    call = leg.call
    relay = call.reinvite
    if (
        relay is not None
        and relay.source is leg
        and request.cseq.number == relay.server.request.cseq.number
    ):
        if not relay.acked:
            relay.acked = True
            node.stop_2xx(relay.server)
            send_ack(node, leg.peer, relay.cseq, request)
        return
    if leg is call.a and call.phase is Phase.ANSWERED:
        call.phase = Phase.CONFIRMED
        send_ack(node, call.b, call.cseq, request)
        # What only a retransmission would have needed goes now; the caller's
        # INVITE transaction lingers 32 s (RFC 6026 timer L) without the call.
        call.answer = None
        if call.server is not None:
            node.stop_2xx(call.server)
            call.server.context = None
        call.server = None
        call.b_invite = None


def no_ack(calls: Calls, node: NodeLike, call: Call) -> None:
    """The caller's INVITE transaction ended with our 2xx unACKed for 64*T1: the
    session ends (RFC 3261 §13.3.1.4)."""
    if call.phase is Phase.ANSWERED:
        end(calls, node, call, None, "no ACK from the caller")
