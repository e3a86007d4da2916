"""Requests within a call: what crosses between the legs, and our own session refreshes.

A request with a To tag belongs to a leg's dialog when its tags are that
dialog's and its CSeq is in order (RFC 3261 §12.2.2). BYE ends the call
(``b2bua.teardown``); re-INVITE, UPDATE, INFO, PRACK and the other methods
of ``RELAYED`` are sent on in the other leg's dialog with its own CSeq,
Via and Contact and a short list of end-to-end headers (``b2bua.legs``),
and their response comes back the same way (a ``Relay`` on both
transactions); a 2xx to a re-INVITE is sent again until its ACK (RFC 3261
§13.3.1.4). A new offer in an anchored call goes through the relay
first, and so does its answer. Each leg has its own session timer (RFC 4028):
a 2xx to a re-INVITE or UPDATE re-arms it, and where we are the refresher we
send the refresh ourselves (an ``Own`` request, §10); a 408 or 481 to
anything in the dialog, or a refresh that fails, ends the call (§12.2.1.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipline.sip.address import Address
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction, Transaction

from .anchoring import through_relay
from .call import Call, Leg, Media, Own, Phase, Relay
from .calls import SUPPORTED, Calls, send_ack
from .legs import REQUEST_HEADERS, Unreachable, crossing_response, next_hop_address
from .sessiontimer import from_response, session_expires
from .teardown import end

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike

# In-dialog requests that cross to the other leg (BYE ends both instead).
RELAYED = frozenset(("INVITE", "UPDATE", "INFO", "PRACK", "MESSAGE", "NOTIFY", "REFER", "OPTIONS"))
OFFERS = ("INVITE", "UPDATE")  # what may carry a new offer and a session timer


def on_request(calls: Calls, node: NodeLike, request: Request, txn: ServerTransaction) -> None:
    """A request with a To tag: BYE ends its call, the others cross to the other leg."""
    leg = calls.legs.get(request.call_id)
    if leg is None or not _ours(leg, request):
        # Anyone may write a To tag: no dialog of ours, no state for it.
        calls.answer(node, txn, 481, "Call/Transaction Does Not Exist", stateless=True)
        return
    dialog = leg.dialog
    if dialog is not None and not dialog.receive_request(request):
        calls.answer(node, txn, 500, "Server Internal Error: CSeq out of order")
        return
    if request.method == "BYE":
        calls.respond(node, txn, request.response(200))
        end(calls, node, leg.call, leg, "bye")
    elif _crosses(calls, node, leg, request, txn):
        _send_on(calls, node, leg, request, txn)


def _ours(leg: Leg, request: Request) -> bool:
    """The request's tags are this leg's dialog (a made-up To tag is not enough)."""
    call = leg.call
    if leg is call.a:
        return request.to.tag == call.a_tag
    dialog = leg.dialog
    return dialog is not None and request.to.tag == dialog.id.local_tag


def _crosses(calls: Calls, node: NodeLike, leg: Leg, request: Request, txn: ServerTransaction) -> bool:
    """Whether ``request`` may go to the other leg; if not, it is answered here."""
    method, call = request.method, leg.call
    if method not in RELAYED:
        calls.answer(node, txn, 405, "Method Not Allowed")
    elif leg.peer.dialog is None or call.phase is Phase.ENDED:
        calls.answer(node, txn, 481, "Call/Transaction Does Not Exist: the other leg is not up")
    elif method == "INVITE" and call.reinvite is not None and not call.reinvite.acked:
        calls.answer(node, txn, 491, "Request Pending")
    elif method in OFFERS and leg.timer is not None and _below_min_se(calls, request):
        response = request.response(422)
        response.headers.add("Min-SE", str(calls.min_se))
        calls.respond(node, txn, response)
    else:
        return True
    return False


def _below_min_se(calls: Calls, request: Request) -> bool:
    asked = session_expires(request)
    return asked is not None and asked[0] < calls.min_se


def _send_on(calls: Calls, node: NodeLike, leg: Leg, request: Request, txn: ServerTransaction) -> None:
    """``request`` as the same method in the other leg's dialog."""
    call, peer = leg.call, leg.peer
    target = peer.dialog
    assert target is not None
    method, body = request.method, request.body
    extra = _crossing_headers(call, peer, request)
    if body and method in ("INVITE", "UPDATE", "PRACK", "ACK"):
        peer.sdp = body
    out, hop = target.create_request(
        method, via=peer.via(), contact=peer.contact, body=body,
        content_type=request.headers.get("content-type") if body else None, extra=extra,
    )  # fmt: skip
    relay = Relay(call, leg, txn, cseq=out.cseq.number)
    txn.context = relay
    if method == "INVITE":
        call.reinvite = relay
    try:
        dest = next_hop_address(hop)
    except Unreachable as exc:
        calls.answer(node, txn, 502, f"Bad Gateway: {exc.reason}")
        return
    media = calls.media
    if call.media.anchored and body and media is not None and method in OFFERS:
        # A new offer in an anchored call: anchored again (one ng call, the A leg's tags).
        relay.media = Media.OFFERING
        if leg is call.a:
            future = media.offer(call.call_id, call.a_from_tag, body, None)
        else:
            future = media.offer(call.call_id, call.a_tag, body, None, to_tag=call.a_from_tag)
        through_relay(calls, node, call, "offer", future, _reoffered, relay, out, dest)
        return
    client = node.send_request(out, dest)
    client.context = relay


def _crossing_headers(call: Call, peer: Leg, request: Request) -> list[tuple[str, str]]:
    """The headers ``request`` takes to ``peer``'s leg: its session timer, and the
    end-to-end ones of the request."""
    extra: list[tuple[str, str]] = []
    if request.method in OFFERS:
        if peer.timer is not None:
            extra += peer.timer.request_headers()
        extra.append(("Supported", SUPPORTED))
    headers = request.headers
    for name in REQUEST_HEADERS:
        for value in headers.get_all(name):
            if name == "RAck":
                value = _rack(call, peer, value)
            extra.append((name, value))
    return extra


def _rack(call: Call, peer: Leg, value: str) -> str:
    # RFC 3262 §7.2: "RSeq CSeq method"; the CSeq is the INVITE's on the other leg.
    parts = value.split()
    if len(parts) == 3 and parts[2].upper() == "INVITE":
        cseq = (
            call.cseq if peer is call.b else (call.server.request.cseq.number if call.server else 1)
        )
        return f"{parts[0]} {cseq} INVITE"
    return value


def _reoffered(
    calls: Calls,
    node: NodeLike,
    call: Call,
    sdp: bytes | None,
    relay: Relay,
    out: Request,
    dest: Address,
) -> None:
    if sdp is None:
        relay.media = Media.DIRECT  # on as it came
    else:
        out.body = relay.source.peer.sdp = sdp
        relay.media = Media.ANCHORED
    if call.phase is Phase.ENDED:
        calls.answer(node, relay.server, 481, "Call/Transaction Does Not Exist")
        return
    client = node.send_request(out, dest)
    client.context = relay


def on_response(
    calls: Calls, node: NodeLike, relay: Relay, response: Response, txn: ClientTransaction
) -> None:
    """A response to a request sent on: back to the leg the request came on."""
    status = response.status
    if status == 100:
        return
    call = relay.call
    peer = relay.source.peer
    if peer.dialog is not None and response.to.tag == peer.dialog.id.remote_tag:
        peer.dialog.update_from_response(response)
    if call.phase is Phase.ENDED and 200 <= status < 300 and txn.method == "INVITE":
        # A 2xx to a re-INVITE that crossed the BYE: ACKed (§13.2.2.4), not sent on.
        send_ack(node, peer, relay.cseq, None)
        return
    if 200 <= status < 300 and relay.answer is not None:
        # A 2xx to a re-INVITE again: our ACK was lost (ours goes again on its own timer).
        if relay.acked:
            send_ack(node, peer, relay.cseq, None)
        return
    media = calls.media
    if relay.media.anchored and response.body and status < 300 and media is not None:
        if relay.media is Media.ANSWERING:
            return  # a retransmission while the relay works on the first
        relay.media = Media.ANSWERING
        if relay.source is call.a:
            tags = (call.a_from_tag, call.a_tag)
        else:
            tags = (call.a_tag, call.a_from_tag)
        future = media.answer(call.call_id, *tags, response.body)
        through_relay(calls, node, call, "answer", future, _reanswered, relay, response)
        return
    _relay_on(calls, node, relay, response, response.body)


def _reanswered(
    calls: Calls, node: NodeLike, call: Call, sdp: bytes | None, relay: Relay, response: Response
) -> None:
    # Answered: a 2xx again is a retransmission, not an answer for the relay.
    relay.media = Media.DIRECT if response.status >= 200 else Media.ANCHORED
    _relay_on(calls, node, relay, response, response.body if sdp is None else sdp)


def _relay_on(calls: Calls, node: NodeLike, relay: Relay, response: Response, body: bytes) -> None:
    status = response.status
    call, source, server = relay.call, relay.source, relay.server
    method = server.method
    extra: list[tuple[str, str]] = []
    if 200 <= status < 300 and method in OFFERS:
        extra = _refreshed(calls, relay, response)
    contact = source.contact if method in OFFERS else None
    out = crossing_response(
        server.request, response, to_tag=None, contact=contact, record_route=False,
        body=body, extra=extra,
    )  # fmt: skip
    if out.body and method in ("INVITE", "UPDATE", "PRACK"):
        source.sdp = out.body
    if method == "INVITE" and status >= 200:
        if status < 300:
            relay.answer = out
        elif call.reinvite is relay:
            call.reinvite = None  # its ACK stays with the transactions
    calls.respond(node, server, out)
    if method == "INVITE" and 200 <= status < 300:
        node.retransmit_2xx(server)  # until its ACK (RFC 3261 §13.3.1.4)
    if status in (408, 481) and call.phase is not Phase.ENDED:
        end(calls, node, call, None, f"{status} in dialog")


def _refreshed(calls: Calls, relay: Relay, response: Response) -> list[tuple[str, str]]:
    """A 2xx to a re-INVITE or UPDATE refreshes both legs' sessions (RFC 4028 §10):
    the far leg's timer as its 2xx says; the headers of ours for the 2xx sent back."""
    call, source = relay.call, relay.source
    peer = source.peer
    timer = from_response(response)
    if timer is not None and peer.timer is not None:
        peer.timer = timer
    if peer.timer is not None and call.phase is not Phase.ENDED:
        calls.sessions.arm(peer, calls.clock(), peer.timer.due_in)
    if source.timer is None:
        return []
    if call.phase is not Phase.ENDED:
        calls.sessions.arm(source, calls.clock(), source.timer.due_in)
    return source.timer.response_headers()


def on_timeout(calls: Calls, node: NodeLike, relay: Relay, txn: Transaction) -> None:
    """No answer from the other side to a request sent on: 408 back, and the call ends."""
    if isinstance(txn, ClientTransaction):
        calls.answer(node, relay.server, 408, "Request Timeout: no answer from the other side")
        end(calls, node, relay.call, None, "timeout in dialog")


# -- our own requests: session refreshes (and BYEs, whose answers need nothing) -------------------
def sessions_due(calls: Calls, node: NodeLike, now: float) -> None:
    """Legs whose session timer fired: refresh it, or end the call if the peer should have."""
    for leg in calls.sessions.expire(now):
        _session_due(calls, node, leg, now)


def _session_due(calls: Calls, node: NodeLike, leg: Leg, now: float) -> None:
    call, timer, dialog = leg.call, leg.timer, leg.dialog
    if call.phase is Phase.ENDED or timer is None or dialog is None:
        return
    if not timer.we_refresh:
        end(calls, node, call, None, f"session expired on leg {leg.name}")  # RFC 4028 §10
        return
    calls.sessions.arm(leg, now, timer.due_in)
    extra = [*timer.request_headers(), ("Supported", SUPPORTED)]
    if leg.update_allowed:
        out, hop = dialog.create_request(
            "UPDATE", via=leg.via(), contact=leg.contact, extra=extra
        )
    else:
        out, hop = dialog.create_request(
            "INVITE", via=leg.via(), contact=leg.contact, body=leg.sdp,
            content_type="application/sdp" if leg.sdp else None, extra=extra,
        )  # fmt: skip
    try:
        dest = next_hop_address(hop)
    except Unreachable as exc:
        end(calls, node, call, None, f"refresh failed: {exc.reason}")
        return
    txn = node.send_request(out, dest)
    txn.context = Own(call, leg)


def on_own_response(
    calls: Calls, node: NodeLike, own: Own, response: Response, txn: ClientTransaction
) -> None:
    """The answer to a session refresh of ours (RFC 4028 §10); a BYE's needs nothing."""
    status = response.status
    if status < 200 or txn.method == "BYE":
        return
    leg, call = own.leg, own.call
    if leg.dialog is not None and response.to.tag == leg.dialog.id.remote_tag:
        leg.dialog.update_from_response(response)
    if status < 300:
        if txn.method == "INVITE":
            send_ack(node, leg, txn.request.cseq.number, None)
        timer = from_response(response)
        if timer is not None:
            leg.timer = timer
    elif status in (408, 481) and call.phase is not Phase.ENDED:
        end(calls, node, call, None, "refresh failed")


def on_own_timeout(calls: Calls, node: NodeLike, own: Own, txn: Transaction) -> None:
    if txn.method != "BYE" and own.call.phase is not Phase.ENDED:
        end(calls, node, own.call, None, "refresh timed out")
