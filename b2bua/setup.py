"""Setting a call up: the caller's INVITE in, the B leg's INVITE out, failover.

The INVITE of a trusted peer (the handler checked) is the A leg of a call:
we are its UAS (RFC 3261 §8.2), and it needs hops left (483), a Contact, a
Call-ID that is no call here yet (482) and a session interval we accept
(422, RFC 4028 §9). The call waits for its licence check (only an account
with a licence has one) and for the relay to anchor the caller's offer
(only calls that need it), then walks its plan (``b2bua.nexthop``): the B
leg's INVITE, a UAC's (§8.1), goes to each hop in turn on a 503 or 408, or
on silence for ``failover_timeout`` (the last attempt is CANCELled, §9.1,
and sent no more: the hop may come back); a 422 is retried once with the
far side's Min-SE (RFC 4028 §7.3). Each hop after the first gets the
B leg under a fresh Call-ID and From tag (``_new_b_leg``), so an attempt
given up on can never pass for the live one. An ACR node's INVITE carries
``X-Sipline-Deadline``, the wall-clock time we give up on it, after which
the ACR routes it nowhere. After a provisional, our own timer C
(``timer_c``, reset by each) ends a call whose far side goes silent: 408 to
the caller, CANCEL on the B leg.

A hop that fails a call (silent for ``silence_timeout`` while the INVITE
waits, a 503, no answer in ``failover_timeout``) is marked down at once
(``b2bua.probes.failed``): the next calls skip it; the calls already waiting
for it still wait their failover timeout, as their deadline says. A call
that rang goes to the next hop only if its hop dies: down, and silent for
``failover_timeout`` to calls and probes alike.

The B leg's 1xx and 2xx go to the caller through ``b2bua.answering``; a
final error ends the call (``b2bua.teardown``), a 3xx reaching the caller
with its Contacts unless ``follow_redirects`` has it followed on the B leg.
A CANCEL from the caller fails the call with 487 (§9.2).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

from sipline.logs import event
from sipline.sip.address import Address
from sipline.sip.dialog import Dialog
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_call_id, new_tag
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, ServerTransaction, State, Transaction
from sipline.sip.uri import parse_uri

from . import probes
from .anchoring import through_relay
from .answering import retransmitted_2xx, to_caller
from .call import Call, Leg, Media, Phase
from .calls import SUPPORTED, Calls
from .legs import ACCOUNT_HEADER, DEADLINE_HEADER, MEDIA_CALL_HEADER, b_invite, with_supported
from .nexthop import Hop, dialled_number, number_of
from .sessiontimer import (
    SessionTimer,
    TooSmall,
    from_response,
    min_se,
    negotiate_uas,
    offer_headers,
)
from .teardown import delete_media, fail, give_up, guarded, hang_up_stray, release

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike

log = logging.getLogger("sipline.b2bua")

FAILOVER_STATUS = frozenset((503, 408))


def on_invite(
    calls: Calls,
    node: NodeLike,
    request: Request,
    txn: ServerTransaction,
    source: Address,
    caller: str,
) -> None:
    """A new INVITE from a trusted peer, placed by ``caller`` (the AOR the proxy
    asserted): a call, unless it cannot be one."""
    max_forwards = request.max_forwards
    if max_forwards is not None and max_forwards <= 0:
        calls.answer(node, txn, 483, "Too Many Hops")
        return
    if not request.contacts:  # parsed once: the dialog reuses it
        calls.answer(node, txn, 400, "Bad Request: INVITE without Contact")
        return
    if request.call_id in calls.legs:
        calls.answer(node, txn, 482, "Loop Detected: this Call-ID is a call here already")
        return
    timer = negotiate_uas(request, calls.session_expires, calls.min_se)
    if isinstance(timer, TooSmall):
        response = request.response(422, to_tag=new_tag())
        response.headers.add("Min-SE", str(timer.min_se))
        calls.respond(node, txn, response)
        return
    call = _new_call(calls, node, request, txn, source, timer)
    if calls.accounts is not None:
        call.account = calls.accounts.account_of(caller)
    licences = calls.licences
    if licences is not None and licences.licensed(call.account):
        # A task only for calls that count against a licence (the others go straight on).
        calls.spawn(
            licences.admit(call.account, call.call_id),
            lambda done: guarded(calls, node, call, _admitted, done),
        )
        return
    _offer(calls, node, call, source)


def _new_call(
    calls: Calls,
    node: NodeLike,
    request: Request,
    txn: ServerTransaction,
    source: Address,
    timer: SessionTimer,
) -> Call:
    """The call of ``request``, in the table by both its legs' Call-IDs."""
    local = calls.local(node)
    call = Call(new_tag(), request.from_.tag or "", new_tag(), txn, calls.clock())
    owner = weakref.ref(call)
    call.a = Leg(owner, "A", request.call_id, local, source.transport, timer=timer)
    call.b = Leg(owner, "B", new_call_id(local.addresses["UDP"].host), local, "UDP")
    call.a.update_allowed = _allows_update(request)
    call.b_sdp = request.body
    txn.context = call
    calls.legs[call.a.call_id] = call.a
    calls.legs[call.b.call_id] = call.b
    calls.live.add(call)
    calls.counts["calls"] += 1
    return call


def _admitted(calls: Calls, node: NodeLike, call: Call, done: asyncio.Future[Any]) -> None:
    if call.phase is Phase.ENDED:
        if not done.cancelled() and done.exception() is None and done.result().allowed:
            call.admitted = True
            release(calls, call)
        return
    try:
        admission = done.result()
    except Exception as exc:
        # Counters unreachable: let the call through rather than fail every call.
        calls.counts["admission_errors"] += 1
        event(log, "admission_failed", logging.WARNING, call_id=call.call_id, error=exc)
        admission = None
    if admission is not None and not admission.allowed:
        calls.counts["refused"] += 1
        reason = admission.reason or "Licence Exceeded"
        event(log, "call_refused", call_id=call.call_id, account=call.account, reason=reason)
        fail(calls, node, call, 403, reason)
        return
    call.admitted = admission is not None
    server = call.server
    _offer(calls, node, call, server.source if server is not None else None)


def _offer(calls: Calls, node: NodeLike, call: Call, source: Address | None) -> None:
    """Anchor the caller's offer at the relay if the call needs it, then call out."""
    media, server = calls.media, call.server
    if media is not None and server is not None and source is not None and call.b_sdp:
        if media.wants(server.request, source):
            call.media = Media.OFFERING
            caller = media.caller(server.request, source)
            future = media.offer(call.call_id, call.a_from_tag, call.b_sdp, caller)
            through_relay(calls, node, call, "offer", future, _offered)
            return
    _call_out(calls, node, call)


def _offered(calls: Calls, node: NodeLike, call: Call, sdp: bytes | None) -> None:
    if sdp is None:
        call.media = Media.DIRECT  # through as it came
    else:
        call.b_sdp, call.media = sdp, Media.ANCHORED
    if call.phase is Phase.ENDED:
        if call.media is Media.ANCHORED:
            delete_media(calls, call)
        return
    _call_out(calls, node, call)


def _call_out(calls: Calls, node: NodeLike, call: Call) -> None:
    server = call.server
    assert server is not None
    call.phase = Phase.CALLING
    call.plan = calls.hops.plan(dialled_number(server.request))
    try_next(calls, node, call)


def try_next(calls: Calls, node: NodeLike, call: Call) -> None:
    """Send the B leg's INVITE to the plan's next hop; with none left, fail upstream."""
    plan = call.plan
    assert plan is not None
    hop = plan.next()
    if hop is None:
        last = call.last_failure
        if last is not None and last.status not in FAILOVER_STATUS:
            fail(calls, node, call, last.status, last.reason)
        elif last is not None and last.status == 503:
            fail(calls, node, call, 503, "Service Unavailable: no next hop took the call")
        else:
            fail(calls, node, call, 408, "Request Timeout: no next hop answered")
        return
    if plan.tried > 1:
        calls.counts["failovers"] += 1
        _new_b_leg(calls, call)
    _send_invite(calls, node, call, hop)


def _new_b_leg(calls: Calls, call: Call) -> None:
    """A fresh Call-ID and From tag for a failover attempt (issue 12): an attempt
    given up on, answered late or routed by a node that comes back, is another
    dialog, never mistaken for the live one. Its Call-ID leaves the table, so
    its in-dialog requests get 481; its CSeq keeps rising (any start will do,
    RFC 3261 §8.1.1.5), so attempts stay in order at a carrier. A retry of the
    same attempt (422, a 3xx followed) keeps them (§8.1.3.5)."""
    b = call.b
    legs = calls.legs
    if legs.get(b.call_id) is b:
        del legs[b.call_id]
    b.call_id = new_call_id(b.local.addresses["UDP"].host)
    b.dialog = None
    call.b_tag = new_tag()
    legs[b.call_id] = b


def _send_invite(calls: Calls, node: NodeLike, call: Call, hop: Hop) -> None:
    server = call.server
    assert server is not None
    a = server.request
    call.hop = hop
    call.cseq += 1
    call.b.transport = hop.address.transport  # its Via and Contact: the hop's transport
    external = call.plan is not None and call.plan.route is not None
    extra = offer_headers(_b_interval(calls, call), calls.min_se)
    if not external:  # internal headers only toward our own ACR nodes
        if call.account is not None:
            extra.append((ACCOUNT_HEADER, call.account))
        if call.media.anchored:
            extra.append((MEDIA_CALL_HEADER, call.call_id))
        # When we give up on it (wall clock: the ACR compares): it routes nothing later.
        extra.append((DEADLINE_HEADER, f"{time.time() + calls.failover_timeout:.3f}"))
    request = b_invite(
        a, via=call.b.via(), contact=call.b.contact, call_id=call.b.call_id, from_tag=call.b_tag, cseq=call.cseq,
        body=call.b_sdp, supported=with_supported(a.headers.get("supported"), SUPPORTED),
        extra=extra, external=external, uri=call.target,
    )  # fmt: skip
    call.b_invite = request
    call.b.sdp = call.b_sdp
    txn = node.send_request(request, hop.address)
    txn.context = call
    call.client = txn
    call.sent = now = calls.clock()
    calls.failover.arm(call, now, calls.failover_timeout)
    calls.silence.arm(call, now)


def _b_interval(calls: Calls, call: Call) -> int:
    timer = call.b.timer
    return timer.interval if timer is not None and call.refreshed_se else calls.session_expires


def on_response(
    calls: Calls, node: NodeLike, call: Call, response: Response, txn: ClientTransaction
) -> None:
    """A response to the B leg's INVITE: to the caller, to the next hop, or the end."""
    status = response.status
    if txn is not call.client or call.phase is Phase.ENDED:
        if 200 <= status < 300 and not _ours_already(call, response):
            hang_up_stray(calls, node, txn.request, response)
        return
    calls.failover.disarm(call)
    calls.silence.disarm(call)
    now = calls.clock()
    if call.hop is not None:
        call.hop.heard = now
    if status < 200:
        calls.timer_c.arm(call, now)  # (re)started by every provisional
        # From now on it fails over only if its hop dies (failover_due).
        calls.failover.arm(call, now, calls.failover_timeout)
        if status > 100:
            _b_dialog(call, txn.request, response)
            to_caller(calls, node, call, response)
        return
    calls.timer_c.disarm(call)
    if status < 300:
        _accepted(calls, node, call, response, txn)
    elif status in FAILOVER_STATUS:
        if status == 503 and call.hop is not None:
            probes.failed(calls, call.hop, "503")  # RFC 3261 §21.5.4: send it no more
        call.last_failure = response
        try_next(calls, node, call)
    elif status == 422 and not call.refreshed_se and (floor := min_se(response)) > 0:
        call.refreshed_se = True
        call.b.timer = SessionTimer(floor, True)
        assert call.hop is not None
        _send_invite(calls, node, call, call.hop)
    elif status < 400 and call.redirects < calls.follow_redirects and _follow(calls, call, response):
        try_next(calls, node, call)
    else:  # a 3xx goes to the caller with its Contacts
        fail(calls, node, call, status, response.reason, response)


def _follow(calls: Calls, call: Call, response: Response) -> bool:
    """Follow a 3xx on the B leg (RFC 3261 §8.1.3.4): its first Contact (by q)
    that names a number becomes the Request-URI, and the call is routed again
    as one to that number, through our own next hops (never to the Contact's
    host: a redirect chooses the number, not where the call goes)."""
    try:
        contacts = sorted(
            (c for c in response.contacts if not c.star), key=lambda c: c.q, reverse=True
        )
        for contact in contacts:
            number = number_of(parse_uri(contact.uri_text))
            if number and contact.uri_text != call.target:
                break
        else:
            return False
    except ParseError:
        return False
    call.redirects += 1
    calls.counts["redirects"] += 1
    call.target = contact.uri_text
    call.plan = calls.hops.plan(number)
    call.last_failure = response
    event(log, "redirect_followed", call_id=call.call_id, number=number)
    return True


def _accepted(
    calls: Calls, node: NodeLike, call: Call, response: Response, txn: ClientTransaction
) -> None:
    """A 2xx on the B leg: the first answers the call; another fork's is hung up."""
    if call.phase is not Phase.CALLING:
        dialog = call.b.dialog
        if dialog is not None and dialog.id.remote_tag == response.to.tag:
            retransmitted_2xx(node, call)
        else:
            hang_up_stray(calls, node, txn.request, response)  # another fork's
        return
    _b_dialog(call, txn.request, response)
    call.b.timer = from_response(response)
    call.b.update_allowed = _allows_update(response)
    call.phase = Phase.ANSWERED
    calls.counts["answered"] += 1
    to_caller(calls, node, call, response)


def _ours_already(call: Call, response: Response) -> bool:
    """A 2xx of the B leg's dialog once confirmed (the call may have ended since)."""
    dialog = call.b.dialog
    return (
        dialog is not None
        and dialog.state != "early"
        and dialog.id.remote_tag == response.to.tag
        and call.answer is None
        and call.phase is not Phase.CALLING
    )


def _b_dialog(call: Call, request: Request, response: Response) -> None:
    if response.to.tag is None:
        return
    dialog = call.b.dialog
    if dialog is None or dialog.id.remote_tag != response.to.tag:
        call.b.dialog = Dialog.uac(request, response)
    else:
        dialog.update_from_response(response)


def on_timeout(calls: Calls, node: NodeLike, call: Call, txn: Transaction) -> None:
    """No final answer to the B leg's INVITE (timer B, RFC 3261 §17.1.1.2): the next hop."""
    if txn is call.client and call.phase is Phase.CALLING:
        calls.failover.disarm(call)
        call.last_failure = None
        try_next(calls, node, call)


def failover_due(calls: Calls, node: NodeLike, now: float) -> None:
    """Calls whose hop has said nothing for ``failover_timeout``: CANCEL, the next hop;
    new calls skip that hop from now on. A call that rang waits on (timer C) while
    its hop lives, and goes to the next hop once the hop is down and has said
    nothing to anything of ours for ``failover_timeout`` (it died after the
    provisional: nothing else would end the call before timer C)."""
    for call in calls.failover.expire(now):
        if call.phase is not Phase.CALLING or call.client is None:
            continue
        hop = call.hop
        why = "no answer to an INVITE"
        if call in calls.timer_c:  # it rang
            if hop is None or hop.up or now - hop.heard < calls.failover_timeout:
                calls.failover.arm(call, now, calls.failover_timeout)  # look again then
                continue
            why = "down and silent after a provisional"
            calls.timer_c.disarm(call)
        give_up(node, call.client)  # no retransmission; CANCEL once it answers 1xx (§9.1)
        call.last_failure = None
        event(log, "failover", logging.INFO, call_id=call.call_id, hop=str(hop), why=why)
        if hop is not None:
            probes.failed(calls, hop, why)
        try_next(calls, node, call)


def timer_c_due(calls: Calls, node: NodeLike, now: float) -> None:
    """Calls whose far side said nothing for ``timer_c`` since its last provisional
    (our own timer C, RFC 3261 §16.6 step 11 and §16.8 in spirit): the B leg is
    CANCELled and the caller gets 408, instead of ringing for ever."""
    for call in calls.timer_c.expire(now):
        if call.phase is Phase.CALLING:
            calls.counts["timer_c"] += 1
            event(log, "timer_c", call_id=call.call_id, hop=str(call.hop))
            fail(calls, node, call, 408, "Request Timeout: the far side went silent")


def silence_due(calls: Calls, now: float) -> None:
    """Calls whose hop has said nothing at all, to them or to anything else of ours,
    for ``silence_timeout``: new calls skip that hop, these still wait for it."""
    for call in calls.silence.expire(now):
        hop = call.hop
        if call.phase is Phase.CALLING and hop is not None and hop.heard < call.sent:
            probes.failed(calls, hop, "silent")


def on_cancel(calls: Calls, node: NodeLike, request: Request, txn: ServerTransaction) -> None:
    """The caller's CANCEL: 200, and 487 to its INVITE if still unanswered (RFC 3261 §9.2)."""
    invite = txn.cancels
    if invite is None:
        calls.answer(node, txn, 481, "Call/Transaction Does Not Exist")
        return
    calls.respond(node, txn, request.response(200))
    call = invite.context
    if type(call) is not Call or invite.state is not State.PROCEEDING:
        return  # answered already: the CANCEL changes nothing (RFC 3261 §9.2)
    fail(calls, node, call, 487, "Request Terminated")


def _allows_update(message: Request | Response) -> bool:
    """The peer's Allow names UPDATE: our session refreshes on its leg go without SDP."""
    allow = message.headers.get("allow")
    return allow is not None and "UPDATE" in allow.upper()
