"""OPTIONS probes of the next hops, and hops marked down by the calls they fail.

Each distinct hop (ACR node or gateway) gets an OPTIONS out of any dialog
(RFC 3261 §11) every ``probe_interval``, or every ``probe_down_interval``
while it is down, so that it is back as soon as it answers (each of those
sent once: the next is its retransmission). An answer other than 503 counts
as up; a 503 (draining, overloaded) or no answer by the next probe as a
failure (the unanswered probe is sent no more), and ``b2bua.nexthop`` turns
the runs of them into up and down. A hop that fails a call (``failed``:
silence, a 503, no answer in ``failover_timeout``) is down at once and
probed at the next tick: new calls skip it from then on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sipline.logs import event
from sipline.sip.transaction import ClientTransaction
from sipline.sip.uac import out_of_dialog

from .calls import Calls
from .nexthop import Hop

if TYPE_CHECKING:
    from sipline.net.handler import NodeLike

log = logging.getLogger("sipline.b2bua")


def due(calls: Calls, node: NodeLike, now: float) -> None:
    """Probe every hop whose turn it is."""
    for hop in calls.hops.hops.values():
        if now >= hop.next_probe:
            _probe(calls, node, hop, now)


def _probe(calls: Calls, node: NodeLike, hop: Hop, now: float) -> None:
    hops = calls.hops
    last = hop.probe
    if last is not None:  # unanswered since the last one: failed
        hop.probe = None
        last.context = None
        node.abandon(last)
        _outcome(calls, hop, False, now)
    hop.next_probe = now + (hops.probe_interval if hop.up else hops.probe_down_interval)
    request = out_of_dialog(
        "OPTIONS", f"sip:{hop.address.hostport}",
        node.local_address(hop.address.transport), "b2bua",
    )  # fmt: skip
    txn = node.send_request(request, hop.address)
    txn.context = hop
    hop.probe = txn
    if not hop.up:
        node.abandon(txn)  # sent once: the next probe, soon, is its retransmission


def probed(calls: Calls, hop: Hop, txn: ClientTransaction, answered: bool) -> None:
    """The final answer to a probe (``answered``: not a 503)."""
    if txn is not hop.probe:
        return  # a late answer to a probe counted as failed already
    hop.probe = None
    now = calls.clock()
    hop.heard = now
    _outcome(calls, hop, answered, now)


def _outcome(calls: Calls, hop: Hop, answered: bool, now: float) -> None:
    if not calls.hops.probed(hop, answered):
        return
    if hop.up:
        event(log, "next_hop_up", hop=str(hop))
    else:
        _went_down(calls, hop, "probes unanswered")
        hop.next_probe = min(hop.next_probe, now + calls.hops.probe_down_interval)


def failed(calls: Calls, hop: Hop, why: str) -> None:
    """``hop`` failed a call: down at once (if it was up), probed at the next tick."""
    if calls.hops.mark_down(hop):
        hop.next_probe = 0.0
        _went_down(calls, hop, why)


def _went_down(calls: Calls, hop: Hop, why: str) -> None:
    calls.counts["hops_down"] += 1
    event(log, "next_hop_down", logging.WARNING, hop=str(hop), why=why)
