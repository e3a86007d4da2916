"""What a message must get right before anything acts on it.

``parse_message`` stays lazy: it checks the framing and the fields every
message needs. The transaction layer then checks, once per message and
before any transaction exists, every header that routing or identity reads
(RFC 3261 §8.2, §16.3 step 1; RFC 4475): each Via, From, To, the Route set,
each Contact and the URIs in them, the Request-URI of the schemes we route,
and that no single-valued header comes twice. What it parses stays cached
on the message, so the roles read it for free; the URIs in them, the
Request-URI and the Contact values are checked (``check_uri``,
``check_contact``: the verdict cached by text, as peers repeat their own)
and parsed when a role reads one.
"""

from __future__ import annotations

from functools import lru_cache

from .errors import ParseError
from .headers import Contact, canonical_name
from .message import Request, Response
from .uri import CHECKED, CHECKED_LENGTH, check_uri

# Headers a request carries once (RFC 3261 §7.3.1, §20; RFC 4475 §3.3.8);
# a second value is ambiguous (which Call-ID is the dialog's?), so refused.
SINGLE_VALUED = ("to", "from", "call-id", "cseq", "max-forwards")
_ROUTED_SCHEMES = ("sip:", "sips:", "tel:")


def validate_request(request: Request) -> None:
    """Raise ParseError (its reason fit for a 400) unless ``request`` may be acted on."""
    headers = request.headers
    multi = headers._multi
    if multi:
        for key in SINGLE_VALUED:
            if key in multi:
                raise ParseError(f"duplicated {canonical_name(key)}")
    index = headers._index
    name = "Via"
    try:
        _check_vias(request)
        name = "From"
        check_uri(request.from_.uri_text)
        name = "To"
        check_uri(request.to.uri_text)
        if "route" in index:
            name = "Route"
            for route in request.routes:
                check_uri(route.uri_text)
        if "contact" in index:
            name = "Contact"
            for value in headers.values("contact"):
                check_contact(value, True)
        uri = request.uri
        if uri[:5].lower().startswith(_ROUTED_SCHEMES):
            name = "Request-URI"
            check_uri(uri)
            if uri[:4].lower() != "tel:":
                # §19.1.1: no headers in a Request-URI (RFC 4475 §3.1.2.11); a
                # "?" after the userinfo starts them (it may occur in a user).
                rest = uri.partition(":")[2]
                if "?" in rest[rest.find("@") + 1 :]:
                    raise ParseError("headers in Request-URI")
    except ParseError as exc:
        raise _naming(name, exc) from None


def validate_response(response: Response) -> None:
    """Raise ParseError unless what a client transaction and its TU read parses."""
    index = response.headers._index
    name = "Via"
    try:
        response.via  # noqa: B018
        name = "From"
        response.from_  # noqa: B018
        name = "To"
        response.to  # noqa: B018
        if "contact" in index:
            name = "Contact"
            for value in response.headers.values("contact"):
                check_contact(value, False)
        if "record-route" in index:
            name = "Record-Route"
            response.record_routes  # noqa: B018
    except ParseError as exc:
        raise _naming(name, exc) from None


def check_contact(value: str, uri: bool) -> None:
    """Raise the ParseError reading Contact value ``value`` would (and, with
    ``uri``, its URI); the verdict is cached by text as ``check_uri``'s is (a
    UA writes the same Contact in message after message)."""
    if len(value) > CHECKED_LENGTH:
        _read_contact(value, uri)
        return
    error = _contact_error(value, uri)
    if error is not None:
        raise ParseError(*error)


def _read_contact(value: str, uri: bool) -> None:
    contact = Contact.parse(value)
    if uri and not contact.star:
        check_uri(contact.uri_text)


@lru_cache(maxsize=CHECKED)
def _contact_error(value: str, uri: bool) -> tuple[str, int] | None:
    try:
        _read_contact(value, uri)
    except ParseError as exc:
        return exc.reason, exc.status
    return None


def _naming(name: str, exc: ParseError) -> ParseError:
    """The error with the header it is about in its reason (for the 400)."""
    if name.lower() in exc.reason.lower():
        return exc
    return ParseError(f"bad {name}: {exc.reason}", exc.status)


def _check_vias(request: Request) -> None:
    parsed = request.headers._parsed
    vias = request.vias  # each value: ";;" or ",," in any of them is a 400 (RFC 4475 §3.1.2.1)
    if "via#top" not in parsed:
        parsed["via#top"] = vias[0]
