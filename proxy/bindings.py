"""The registrar's rules (RFC 3261 §10.3, RFC 3327, RFC 5626) as plain functions.

``plan`` turns a REGISTER and the AOR's live bindings into an ``Update`` (the
bindings to write and to remove) or a ``Rejection``; ``ok`` builds the 200 that
lists the bindings. No I/O, no clock: ``now`` comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from proxy.location import Binding
from sipline.proxying.rules import Rejection
from sipline.sip.address import DEFAULT_PORT, Address
from sipline.sip.errors import ParseError
from sipline.sip.headers import Contact
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.uri import SipUri, parse_uri

SUPPORTED = frozenset({"path"})  # option tags a REGISTER may Require (RFC 3327)
# Widths of the locations columns (sipline/storage/migrations/001_initial.sql): a
# value that does not fit is refused here, before it could fail a whole batch.
MAX_AOR = MAX_CALL_ID = MAX_INSTANCE = MAX_USER_AGENT = 255
MAX_CONTACT = 2000


@dataclass(frozen=True, slots=True)
class Policy:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 10

    @classmethod
    def from_settings(cls, registrar: Any) -> Policy:
        return cls(
            registrar.min_expires,
            registrar.max_expires,
            registrar.default_expires,
            registrar.max_contacts,
        )


@dataclass(slots=True)
class Update:
    """What a REGISTER changes: bindings to write (new or refreshed) and to remove."""

    aor: str
    upserts: list[Binding]
    removals: list[Binding]

    @property
    def empty(self) -> bool:
        return not self.upserts and not self.removals


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the REGISTER really came from and which node took it."""

    source: Address
    node: str
    proxy: str | None = None  # HOST:PORT of this proxy, for the others to reach the flow


def check_require(request: Request) -> Rejection | None:
    """420 for an extension we do not support (RFC 3261 §10.3 step 2, §8.2.2.3)."""
    tags = [tag.lower() for tag in request.headers.values("require")]
    unsupported = ", ".join(tag for tag in tags if tag not in SUPPORTED)
    if unsupported:
        return Rejection(420, f"Bad Extension ({unsupported})", (("Unsupported", unsupported),))
    return None


def aor_of(request: Request, canonical: Any) -> str | Rejection:
    """``user@domain`` from the To header (§10.3 step 5); ``canonical`` maps a host to our domain."""
    try:
        uri = request.to.uri
    except ParseError as exc:
        return Rejection(400, f"Bad Request ({exc.reason})")
    if not isinstance(uri, SipUri):
        return Rejection(404, "Not Found (the To URI is not a SIP URI)")
    domain = canonical(uri.host)
    if domain is None:
        return Rejection(404, "Not Found (AOR domain not served here)")
    if not uri.user:
        return Rejection(404, "Not Found (the To URI has no user part)")
    aor = f"{uri.user}@{domain}"
    if len(aor) > MAX_AOR:
        return Rejection(400, f"Bad Request (AOR longer than {MAX_AOR} characters)")
    return aor


def plan(
    request: Request, aor: str, live: list[Binding], now: float, policy: Policy, origin: Origin
) -> Update | Rejection:
    """Steps 6 and 7 of RFC 3261 §10.3 for ``request`` against the AOR's ``live`` bindings."""
    try:
        contacts = request.contacts
        header_expires = request.expires
        call_id, cseq = request.call_id, request.cseq.number
        if not contacts:
            return Update(aor, [], [])  # a query: just list the bindings
        if any(contact.star for contact in contacts):
            return _unregister_all(request, aor, live, header_expires)
        wanted = [(c, _expires(c, header_expires, policy)) for c in contacts]
    except ParseError as exc:
        return Rejection(400, f"Bad Request ({exc.reason})")
    brief = [expires for _, expires in wanted if 0 < expires < policy.min_expires]
    if brief:
        return Rejection(
            423,
            f"Interval Too Brief ({min(brief)} s, at least {policy.min_expires} s)",
            (("Min-Expires", str(policy.min_expires)),),
        )
    if len(call_id) > MAX_CALL_ID:
        return Rejection(400, f"Bad Request (Call-ID longer than {MAX_CALL_ID} characters)")
    return _apply_contacts(request, aor, live, wanted, now, origin, policy, (call_id, cseq))


def _expires(contact: Contact, header: int | None, policy: Policy) -> int:
    """The Contact's expires, else the Expires header, else the default; capped (§10.3 step 7)."""
    value = contact.expires
    if value is None:
        value = header if header is not None else policy.default_expires
    return min(value, policy.max_expires)


def _unregister_all(
    request: Request, aor: str, live: list[Binding], header_expires: int | None
) -> Update | Rejection:
    """``Contact: *`` (§10.3 step 6): only alone and with ``Expires: 0``."""
    if len(request.contacts) > 1:
        return Rejection(400, "Bad Request (Contact: * with other contacts)")
    if header_expires != 0:
        return Rejection(400, "Bad Request (Contact: * without Expires: 0)")
    call_id, cseq = request.call_id, request.cseq.number
    for binding in live:
        if _out_of_order(binding, call_id, cseq):
            return _out_of_order_reject(binding, cseq)
    return Update(aor, [], list(live))


def _apply_contacts(
    request: Request,
    aor: str,
    live: list[Binding],
    wanted: list[tuple[Contact, int]],
    now: float,
    origin: Origin,
    policy: Policy,
    order: tuple[str, int],
) -> Update | Rejection:
    committed = {b.contact: b for b in live}
    kept = dict(committed)  # the AOR's bindings as they will be
    upserts: dict[str, Binding] = {}
    removals: dict[str, Binding] = {}
    for contact, expires in wanted:
        try:
            uri = _checked_uri(contact)
        except ParseError as exc:
            return Rejection(400, f"Bad Request ({exc.reason})")
        replaced = [b for b in kept.values() if _same_binding(b, contact, uri)]
        for old in replaced:
            if _out_of_order(old, *order):
                return _out_of_order_reject(old, order[1])
            del kept[old.contact]
            upserts.pop(old.contact, None)
            if committed.get(old.contact) is old:
                removals[old.contact] = old
        if expires:
            new = _new_binding(request, aor, contact, uri, now + expires, now, origin, order)
            kept[new.contact] = upserts[new.contact] = new
            removals.pop(new.contact, None)
    if len(kept) > policy.max_contacts:
        return Rejection(
            403, f"Forbidden (too many contacts: {len(kept)}, at most {policy.max_contacts})"
        )
    return Update(aor, list(upserts.values()), list(removals.values()))


def _checked_uri(contact: Contact) -> Any:
    text = contact.uri_text
    if not text.isascii() or len(text) > MAX_CONTACT:
        raise ParseError(f"Contact URI not ASCII or longer than {MAX_CONTACT} characters")
    instance = contact.instance
    if instance is not None and len(instance) > MAX_INSTANCE:
        raise ParseError(f"+sip.instance longer than {MAX_INSTANCE} characters")
    _ = contact.reg_id  # a bad value raises ParseError now, not while building the binding
    return contact.uri


def _same_binding(binding: Binding, contact: Contact, uri: Any) -> bool:
    """The Contact names ``binding``: the same URI (§19.1.4), or the same device (RFC 5626 §6)."""
    instance = contact.instance
    if instance is not None and binding.instance == instance and binding.reg_id == contact.reg_id:
        return True
    if binding.contact == contact.uri_text:
        return True
    try:
        return parse_uri(binding.contact) == uri
    except ParseError:
        return False


def _out_of_order(binding: Binding, call_id: str, cseq: int) -> bool:
    # §10.3 step 7: the same Call-ID must come with a higher CSeq.
    return binding.call_id == call_id and cseq <= binding.cseq


def _out_of_order_reject(binding: Binding, cseq: int) -> Rejection:
    return Rejection(
        500, f"Server Internal Error (out of order: CSeq {cseq}, binding has {binding.cseq})"
    )


def _new_binding(
    request: Request,
    aor: str,
    contact: Contact,
    uri: Any,
    expires_at: float,
    now: float,
    origin: Origin,
    order: tuple[str, int],
) -> Binding:
    user_agent = request.headers.get("user-agent")
    return Binding(
        aor=aor,
        contact=contact.uri_text,
        expires_at=expires_at,
        q=contact.q,
        call_id=order[0],
        cseq=order[1],
        source=origin.source,
        path=tuple(request.headers.values("path")),
        instance=contact.instance,
        reg_id=contact.reg_id,
        user_agent=user_agent[:MAX_USER_AGENT] if user_agent else None,
        node=origin.node,
        updated_at=now,
        nat=behind_nat(request, uri, origin.source),
        proxy=origin.proxy,
    )


def behind_nat(request: Request, contact_uri: Any, source: Address) -> bool:
    """The top Via or the Contact names another address than the one the REGISTER came from."""
    via = request.via
    if _elsewhere(via.host, via.port, source):
        return True
    return isinstance(contact_uri, SipUri) and _elsewhere(
        contact_uri.host, contact_uri.port, source
    )


def _elsewhere(host: str, port: int | None, source: Address) -> bool:
    if host.strip("[]").lower() != source.host.lower():
        return True
    # A stream's source port is ephemeral: only the host tells there.
    return source.transport == "UDP" and (port or DEFAULT_PORT["UDP"]) != source.port


def ok(request: Request, bindings: list[Binding], now: float) -> Response:
    """The 200 listing every current binding with its expires (§10.3 step 8)."""
    response = request.response(200, "OK", to_tag=new_tag())
    headers = response.headers
    for binding in bindings:
        headers.add("Contact", contact_value(binding, now))
    for path in request.headers.get_all("path"):
        headers.add("Path", path)  # RFC 3327 §5.3: the Path values go back in the 200
    headers.add("Supported", "path")
    headers.add("Date", formatdate(now, usegmt=True))
    return response


def contact_value(binding: Binding, now: float) -> str:
    value = f"<{binding.contact}>;expires={binding.expires_in(now)}"
    if binding.q != 1.0:
        value += ";q=" + f"{binding.q:.3f}".rstrip("0").rstrip(".")
    if binding.instance is not None:
        value += f';+sip.instance="{binding.instance}"'
    if binding.reg_id is not None:
        value += f";reg-id={binding.reg_id}"
    return value
