"""OPTIONS probes of the next hops, so that a hop that went down is tried last.

Every ``probe_interval`` each distinct hop (ACR node or gateway) gets an
OPTIONS out of any dialog (RFC 3261 §11); an answer other than 503 counts
as up, a 503 (draining, overloaded) or no answer by the next round as a
failure, and ``b2bua.nexthop`` turns the runs of them into up and down.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sipline.logs import event
from sipline.sip.ids import new_call_id, new_tag
from sipline.sip.message import Request

from .calls import Calls
from .nexthop import Hop, NextHops

if TYPE_CHECKING:
    from sipline.net.node import Node

log = logging.getLogger("sipline.b2bua")


def probe(calls: Calls, node: Node) -> None:
    """One round: an OPTIONS to every hop; one still unanswered since the last failed."""
    local = calls.local(node)
    for hop in calls.hops.hops.values():
        if hop.probing:  # unanswered since the last round
            probed(calls.hops, hop, False)
        uri = f"sip:{hop.address.host}:{hop.address.port}"
        request = Request("OPTIONS", uri)
        headers = request.headers
        headers.add("Via", local.via())
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:b2bua@{local.host}:{local.port}>;tag={new_tag()}")
        headers.add("To", f"<{uri}>")
        headers.add("Call-ID", new_call_id(local.host))
        headers.add("CSeq", "1 OPTIONS")
        headers.add("Content-Length", "0")
        hop.probing = True
        txn = node.send_request(request, hop.address)
        txn.context = hop


def probed(hops: NextHops, hop: Hop, answered: bool) -> None:
    if not hop.probing:
        return  # a late answer, counted as failed already
    if hops.probed(hop, answered):
        event(log, "next_hop_up" if hop.up else "next_hop_down", hop=str(hop))
