"""What a proxy forwards without a transaction (RFC 3261 §16.11, RFC 6026 §8).

The ACK for a 2xx is a transaction of its own, end to end; a 2xx that comes
back after its client transaction ended is a stray response. Each function
changes the message as forwarding demands and returns where it goes, or
None when it is to be dropped. Who may make us forward them is the
caller's question (``stateful.StatefulProxy``): an ACK routed by our signed
Record-Route or matching a transaction of ours, a 2xx whose branch we signed.
"""

from __future__ import annotations

from sipline.sip.address import Address, as_flow
from sipline.sip.message import Request, Response

from .flows import flow_toward
from .rules import (
    Local,
    decrement_max_forwards,
    next_hop,
    resolve,
    stateless_branch,
    strict_route,
)
from .rules import via_address as _via_address
from .signing import Signer


def forward_ack(request: Request, local: Local, ours: dict[str, str] | None) -> Address | None:
    """An ACK for a 2xx, our Route entries already off it (``ours``: their
    signed parameters): along its Route set, else to the flow our
    Record-Route recorded for the dialog, else to its Request-URI."""
    max_forwards = request.max_forwards
    if max_forwards is not None and max_forwards <= 0:
        return None
    if "route" in request.headers:
        dest = next_hop(request)
        strict_route(request)
    else:
        dest = flow_toward(request, ours) if ours else None
        dest = as_flow(dest) if dest is not None else None
        if dest is None:
            dest = resolve(request.uri)
    if dest is None or local.is_self(dest) or dest.transport not in local.addresses:
        return None
    branch = stateless_branch(request)
    decrement_max_forwards(request)
    request.headers.prepend("Via", local.via(dest.transport, branch))
    return dest


def forward_stray(response: Response, local: Local, signer: Signer) -> Address | None:
    """A 2xx to an INVITE forwarded by us whose client transaction is gone: our
    Via off, on to the next one, when the branch of ours says we sent the
    INVITE for that very hop. Anything else stray is dropped (RFC 6026 §8)."""
    if not stray_2xx(response):
        return None
    vias = response.headers.values("via")
    if len(vias) < 2 or not local.sent_by_us(vias[0]):
        return None
    branch = response.via.branch or ""
    response.headers.pop_first_value("via")
    upstream = _via_address(response.via)
    return upstream if signer.sent_branch(branch, upstream) else None


def stray_2xx(response: Response) -> bool:
    """What RFC 6026 has a proxy forward without a transaction."""
    return 200 <= response.status < 300 and response.cseq.method == "INVITE"
