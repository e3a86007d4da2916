"""What a proxy forwards without a transaction (RFC 3261 §16.11, RFC 6026 §8).

The ACK for a 2xx is a transaction of its own, end to end; a 2xx that comes
back after its client transaction ended is a stray response. Each function
changes the message as forwarding demands and returns where it goes, or
None when it is to be dropped.
"""

from __future__ import annotations

from sipline.sip.address import Address
from sipline.sip.message import Request, Response

from .flows import flow_toward
from .rules import (
    Local,
    decrement_max_forwards,
    next_hop,
    preprocess_routes,
    resolve,
    stateless_branch,
    strict_route,
)
from .rules import via_address as _via_address


def forward_ack(request: Request, local: Local) -> Address | None:
    """An ACK for a 2xx: along its Route set, else to the flow our Record-Route
    recorded for the dialog, else to its Request-URI."""
    max_forwards = request.max_forwards
    if max_forwards is not None and max_forwards <= 0:
        return None
    ours = preprocess_routes(request, local)
    if "route" in request.headers:
        dest = next_hop(request)
        strict_route(request)
    else:
        dest = flow_toward(request, ours) if ours else None
        if dest is None:
            dest = resolve(request.uri)
    if dest is None or local.is_self(dest) or dest.transport not in local.addresses:
        return None
    branch = stateless_branch(request)
    decrement_max_forwards(request)
    request.headers.prepend("Via", local.via(dest.transport, branch))
    return dest


def forward_stray(response: Response, local: Local) -> Address | None:
    """A 2xx to an INVITE forwarded by us whose client transaction is gone: our
    Via off, on to the next one. Anything else stray is dropped (RFC 6026 §8)."""
    if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
        return None
    vias = response.headers.values("via")
    if len(vias) < 2 or not local.sent_by_us(vias[0]):
        return None
    response.headers.pop_first_value("via")
    return _via_address(response.via)
