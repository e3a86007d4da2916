"""Requests we start outside any dialog (RFC 3261 §8.1.1): the OPTIONS of every pinger.

The proxy's NAT keepalives, the B2BUA's probes of its next hops and the
ACR's probes of gateways and DID proxies all send one OPTIONS per check in
a client transaction of its own (§11): built here, one way.
"""

from __future__ import annotations

from .address import Address
from .ids import new_branch, new_call_id, new_tag
from .message import Headers, Request


def out_of_dialog(
    method: str,
    uri: str,
    local: Address,
    user: str,
    *,
    domain: str | None = None,
    user_agent: str | None = None,
) -> Request:
    """A ``method`` request to ``uri`` from ``local`` (where we listen, its
    transport that of the Via), in a new Call-ID with a From tag (§8.1.1):
    From is ``sip:<user>@<domain>`` (our own address when no ``domain``)."""
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{local.transport} {local.hostport};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{user}@{domain or local.hostport}>;tag={new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", new_call_id(local.host)),
            ("CSeq", f"1 {method}"),
        ]
    )
    if user_agent is not None:
        headers.add("User-Agent", user_agent)
    headers.add("Content-Length", "0")
    return Request(method, uri, headers)
