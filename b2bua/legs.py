"""The messages of one leg built from the other's: what crosses and what does not.

The B leg's INVITE is built in one pass over the A leg's parsed headers
(no re-parse): a new Call-ID, From tag, CSeq, Via and Contact, and none of
the A side's topology (Via, Record-Route, Route, Contact, Call-ID) nor its
hop-by-hop headers. Responses and in-dialog requests cross with a short
list of end-to-end headers only. Toward a pattern route's gateways (outside
the network) the internal identity headers are stripped too.
"""

from __future__ import annotations

from collections.abc import Iterable

from sipline.proxying.rules import resolve
from sipline.sip.address import Address
from sipline.sip.headers import NameAddr, header_key
from sipline.sip.message import Headers, Request, Response

ACCOUNT_HEADER = "X-Sipline-Account"
# The Call-ID the relay anchored the call under (the A leg's): the ACR reads the
# relay's per-call quality by it (sipline:relay:call:<call-id>).
MEDIA_CALL_HEADER = "X-Sipline-Media-Call"
# Unix time (3 decimals) after which we have given up on the INVITE: the ACR
# refuses it 408 then, so a node that comes back never routes a call nobody waits for.
DEADLINE_HEADER = "X-Sipline-Deadline"

# Never copied from the A leg's INVITE to the B leg's: topology, what we set
# ourselves, credentials for the proxy, and hop-by-hop session timer values.
_NOT_COPIED = frozenset((
    "via", "route", "record-route", "contact", "call-id", "cseq", "from", "to",
    "max-forwards", "content-length", "session-expires", "min-se", "supported",
    "authorization", "proxy-authorization", "proxy-require", "path", "x-sipline-account",
))  # fmt: skip
# Also kept from gateways outside the network (RFC 3325 §5: identity stays in the trust domain).
_INTERNAL = frozenset((
    "p-asserted-identity", "p-preferred-identity", "remote-party-id", "privacy",
    "p-charging-vector", "user-agent", "subject",
))  # fmt: skip

# End to end: what responses and in-dialog requests take to the other leg.
RESPONSE_HEADERS = frozenset((
    "content-type", "allow", "require", "rseq", "unsupported", "retry-after", "warning",
    "reason", "accept", "content-disposition", "p-asserted-identity",
))  # fmt: skip
REQUEST_HEADERS = (
    "Allow", "Require", "Accept", "RAck", "Event", "Info-Package", "Reason",
    "Content-Disposition", "Subscription-State", "Refer-To", "Referred-By",
)  # fmt: skip


def b_invite(
    a: Request,
    *,
    via: str,
    contact: str,
    call_id: str,
    from_tag: str,
    cseq: int,
    body: bytes,
    supported: str,
    extra: Iterable[tuple[str, str]] = (),
    external: bool = False,
    uri: str | None = None,
) -> Request:
    """The B leg's INVITE from the A leg's, with our ``via`` and ``contact`` on
    the B leg: ``supported`` replaces Supported
    (our extensions added to the caller's), ``extra`` is added (session timer,
    account); ``external`` strips internal identity headers too; ``uri``
    replaces the Request-URI (a redirect followed)."""
    a_from = a.from_
    params = dict(a_from.params)
    params["tag"] = from_tag
    from_ = str(NameAddr(a_from.uri_text, a_from.display, params, angle=True))
    max_forwards = a.max_forwards
    headers = Headers()
    add = headers.add
    add("Via", via)
    add("Max-Forwards", str(max(0, (70 if max_forwards is None else max_forwards) - 1)))
    add("From", from_)
    add("To", a.headers.get("to") or "")
    add("Call-ID", call_id)
    add("CSeq", f"{cseq} INVITE")
    add("Contact", contact)
    add("Supported", supported)
    skip = _NOT_COPIED | _INTERNAL if external else _NOT_COPIED
    for name, value in a.headers:
        key = header_key(name)  # compact forms too (RFC 3261 §7.3.3)
        if key not in skip and not key.startswith("x-sipline-"):
            add(name, value)
    for name, value in extra:
        add(name, value)
    return Request("INVITE", a.uri if uri is None else uri, headers, body)


def crossing_response(
    request: Request,
    response: Response,
    *,
    to_tag: str | None,
    contact: str | None,
    record_route: bool,
    body: bytes | None = None,
    extra: Iterable[tuple[str, str]] = (),
) -> Response:
    """The response to ``request`` (ours to answer) carrying ``response``'s
    status, reason, body and end-to-end headers; ``record_route`` copies the
    request's Record-Route (a dialog-creating response, RFC 3261 §12.1.1).
    ``contact`` is ours, but a 3xx carries the far side's Contacts."""
    out = request.response(response.status, response.reason, to_tag=to_tag)
    headers = out.headers
    if record_route:
        for value in request.headers.get_all("record-route"):
            headers.add("Record-Route", value)
    if 300 <= response.status < 400:
        # A redirect's Contacts are where to try instead (RFC 3261 §21.3, §8.1.3.4).
        for value in response.headers.get_all("contact"):
            headers.add("Contact", value)
    elif contact is not None:
        headers.add("Contact", contact)
    for name, value in response.headers:  # one pass: most responses carry few of these
        key = header_key(name)
        if key in RESPONSE_HEADERS:
            if key == "require":  # timer is each leg's own (RFC 4028); 100rel crosses
                value = ", ".join(v for v in value.split(",") if v.strip().lower() != "timer")
                if not value:
                    continue
            headers.add(name, value)
    for name, value in extra:
        headers.add(name, value)
    out.body = response.body if body is None else body
    return out


class Unreachable(Exception):
    """A next hop we cannot send to (a host name, a transport we do not speak):
    the request fails as a transport error does (RFC 3261 §16.9), never 400."""

    def __init__(self, uri_text: str) -> None:
        super().__init__(f"cannot reach {uri_text}")
        self.reason = f"cannot reach {uri_text}"


def next_hop_address(uri_text: str) -> Address:
    """Where a request to ``uri_text`` goes (IP literals only between our nodes;
    resolved once per URI): Unreachable when it cannot be reached."""
    found = resolve(uri_text)
    if found is None:
        raise Unreachable(uri_text)
    return found


def with_supported(value: str | None, extension: str) -> str:
    """A Supported value with ``extension`` among the others."""
    if not value:
        return extension
    names = [v.strip() for v in value.split(",") if v.strip()]
    if extension not in (n.lower() for n in names):
        names.append(extension)
    return ", ".join(names)
