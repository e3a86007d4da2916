"""Dialogs (RFC 3261 §12): the state two UAs share from a dialog-creating
response to the end of the call, and the in-dialog requests built from it.

A ``Dialog`` is plain state plus the events that change it: a response
received (``update_from_response``), a response sent (``send_response``), a
request received (``receive_request``) and a request sent
(``create_request`` / ``create_ack``). Messages are matched to dialogs with
``Dialog.id_of`` and a dict keyed by ``DialogId``; transactions, timers and
what to answer stay with the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .errors import LocalProtocolError, ParseError
from .headers import CSeq, NameAddr
from .message import Headers, Message, Request, Response
from .uri import SipUri

DialogState = Literal["early", "confirmed", "terminated"]
Role = Literal["uac", "uas"]

MAX_FORWARDS = "70"  # RFC 3261 §8.1.1.6

# Requests whose Contact replaces the remote target: re-INVITE (RFC 3261
# §12.2), UPDATE (RFC 3311), SUBSCRIBE and NOTIFY (RFC 6665).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY"})


@dataclass(slots=True, frozen=True)
class DialogId:
    """Call-ID and the two tags, seen from one side: the peer's id has the tags swapped."""

    call_id: str
    local_tag: str
    remote_tag: str


def creates_dialog(response: Response) -> bool:
    """101-199 with a To tag creates an early dialog, 2xx a confirmed one (§12.1)."""
    status = response.status
    if 200 <= status < 300:
        return True
    return 100 < status < 200 and response.to.tag is not None


@dataclass(slots=True)
class Dialog:
    """One dialog as one UA sees it (§12).

    ``local_uri`` and ``remote_uri`` are the name-addr texts of our and the
    peer's From/To without tags; ``remote_target`` is a URI text; ``route_set``
    holds name-addr texts in the order requests carry them. ``role`` is "uac"
    if we sent the request that created the dialog, whose CSeq is
    ``initial_cseq``.
    """

    id: DialogId
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str]
    local_seq: int | None
    remote_seq: int | None
    secure: bool
    state: DialogState
    role: Role
    initial_cseq: CSeq

    # -- creation --------------------------------------------------------------
    @classmethod
    def uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a UAC creates from a response to its request (§12.1.2)."""
        _check_creates(request, response)
        from_ = request.from_
        if from_.tag is None:
            raise ParseError("From without tag")
        contact = _contact_uri(response)
        if contact is None:
            if not response.provisional:
                raise ParseError("missing Contact")
            # §12.1.1 demands a Contact here but many 18x lack one; the 2xx
            # that confirms the dialog will set the real target.
            contact = request.uri
        cseq = request.cseq
        return cls(
            id=DialogId(request.call_id, from_.tag, response.to.tag or ""),
            local_uri=_without_tag(from_),
            remote_uri=_without_tag(request.to),
            remote_target=contact,
            route_set=_record_route(response)[::-1],
            local_seq=cseq.number,
            remote_seq=None,
            secure=_is_sips(request.uri),
            state="early" if response.provisional else "confirmed",
            role="uac",
            initial_cseq=CSeq(cseq.number, cseq.method),
        )

    @classmethod
    def uas(cls, request: Request, response: Response) -> Dialog:
        """The dialog a UAS creates by answering ``request`` with ``response`` (§12.1.1)."""
        _check_creates(request, response)
        local_tag = response.to.tag
        if local_tag is None:
            raise ParseError("To without tag")
        contact = _contact_uri(request)
        if contact is None:
            raise ParseError("missing Contact")
        cseq = request.cseq
        return cls(
            id=DialogId(request.call_id, local_tag, request.from_.tag or ""),
            local_uri=_without_tag(request.to),
            remote_uri=_without_tag(request.from_),
            remote_target=contact,
            route_set=_record_route(request),
            local_seq=None,
            remote_seq=cseq.number,
            secure=_is_sips(request.uri),
            state="early" if response.provisional else "confirmed",
            role="uas",
            initial_cseq=CSeq(cseq.number, cseq.method),
        )

    @staticmethod
    def id_of(message: Request | Response, *, uas: bool) -> DialogId:
        """The id of the dialog ``message`` belongs to, seen from our side.

        ``uas`` is True when we are the UAS of its transaction (a request we
        received, a response we send) and False when we are the UAC (a
        request we send, a response we received). A missing tag (RFC 2543
        peers) counts as the empty tag.
        """
        from_tag = message.from_.tag or ""
        to_tag = message.to.tag or ""
        if uas:
            return DialogId(message.call_id, to_tag, from_tag)
        return DialogId(message.call_id, from_tag, to_tag)

    # -- events ----------------------------------------------------------------
    def update_from_response(self, response: Response) -> None:
        """A response we received to a request we sent in this dialog.

        A 2xx to the request that created an early dialog confirms it and
        recomputes the route set (§13.2.2.4); a 2xx to a target refresh
        request replaces the remote target (§12.2.1.2). The dialog ends on a
        non-2xx final response to the creating request (§12.3), a 481 or 408
        (§12.2.1.2) or a 2xx to BYE (§15.1.1).

        A 2xx with another To tag belongs to another dialog (a fork): make it
        with ``Dialog.uac``; giving it here raises ParseError.
        """
        if Dialog.id_of(response, uas=False) != self.id:
            raise ParseError("response is not in this dialog")
        status = response.status
        if status < 200:
            return
        cseq = response.cseq
        if status in (408, 481) or (status >= 300 and self._is_creating(cseq)):
            self.state = "terminated"
            return
        if status >= 300:
            return
        if cseq.method == "BYE":
            self.state = "terminated"
            return
        if self._is_creating(cseq):
            self.state = "confirmed"
            self.route_set = _record_route(response)[::-1]
        if cseq.method in TARGET_REFRESH_METHODS:
            contact = _contact_uri(response)
            if contact is not None:
                self.remote_target = contact

    def send_response(self, response: Response) -> None:
        """A final response we send to a request in this dialog.

        As UAS of the creating request, a 2xx confirms the early dialog and
        any other final response ends it (§12.3); a 2xx to BYE ends the
        dialog (§15.1.2).
        """
        status = response.status
        if status < 200:
            return
        cseq = response.cseq
        if self.state == "early" and self.role == "uas" and cseq == self.initial_cseq:
            self.state = "confirmed" if status < 300 else "terminated"
        elif status < 300 and cseq.method == "BYE":
            self.state = "terminated"

    def receive_request(self, request: Request) -> bool:
        """A request that arrived in this dialog (§12.2.2).

        False means its CSeq is below the remote sequence number: it is out of
        order and the caller answers 500 (nothing, for an ACK). A target
        refresh request with a Contact replaces the remote target.
        """
        method = request.method
        if method == "ACK" or method == "CANCEL":
            # They carry the number of the INVITE they go with (§13.2.2.4,
            # §9.1), which a later request may already have passed.
            return True
        number = request.cseq.number
        if self.remote_seq is not None and number < self.remote_seq:
            return False
        self.remote_seq = number
        if method in TARGET_REFRESH_METHODS:
            contact = _contact_uri(request)
            if contact is not None:
                self.remote_target = contact
        return True

    # -- requests within the dialog ---------------------------------------------
    def create_request(
        self,
        method: str,
        *,
        via: str,
        contact: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> tuple[Request, str]:
        """A new request in this dialog (§12.2.1.1) and the URI text of its next hop.

        ``via`` is the whole Via value, branch included. The CSeq number is
        the next local sequence number. The next hop is the first Route with
        loose routing, else the Request-URI (§8.1.2): resolve it per RFC 3263.
        """
        if method == "ACK":
            raise LocalProtocolError("the ACK for a 2xx is built with create_ack")
        if method == "CANCEL":
            raise LocalProtocolError("a CANCEL is built from the request it cancels (RFC 3261 §9.1)")
        # With no local sequence number yet (a UAS's first request) any start
        # below 2**31 will do (§8.1.1.5).
        self.local_seq = 1 if self.local_seq is None else self.local_seq + 1
        return self._build(method, self.local_seq, via, contact, body, content_type, extra)

    def create_ack(
        self,
        invite_cseq: int,
        *,
        via: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> tuple[Request, str]:
        """The ACK for a 2xx to the INVITE with CSeq number ``invite_cseq`` (§13.2.2.4).

        It is an in-dialog request that reuses the INVITE's CSeq number;
        credentials the INVITE carried go in ``extra``.
        """
        return self._build("ACK", invite_cseq, via, None, body, content_type, extra)

    def _build(
        self,
        method: str,
        number: int,
        via: str,
        contact: str | None,
        body: bytes,
        content_type: str | None,
        extra: Sequence[tuple[str, str]],
    ) -> tuple[Request, str]:
        request_uri, routes, next_hop = self._request_target()
        dialog_id = self.id
        items = [("Via", via), ("Max-Forwards", MAX_FORWARDS)]
        items.extend(("Route", route) for route in routes)
        items.append(("To", _with_tag(self.remote_uri, dialog_id.remote_tag)))
        items.append(("From", _with_tag(self.local_uri, dialog_id.local_tag)))
        items.append(("Call-ID", dialog_id.call_id))
        items.append(("CSeq", f"{number} {method}"))
        if contact is not None:
            items.append(("Contact", contact))
        items.extend(extra)
        if content_type is not None:
            items.append(("Content-Type", content_type))
        items.append(("Content-Length", str(len(body))))
        return Request(method, request_uri, Headers(items), body), next_hop

    def _request_target(self) -> tuple[str, list[str], str]:
        """Request-URI, Route values and next hop (§12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, [], self.remote_target
        first = NameAddr.parse(self.route_set[0])
        uri = first.uri
        if isinstance(uri, SipUri) and uri.lr:
            return self.remote_target, list(self.route_set), first.uri_text
        # A strict router (RFC 2543) wants itself as the Request-URI and the
        # real target as the last Route; it is also where the request goes.
        request_uri = _as_request_uri(first)
        return request_uri, [*self.route_set[1:], f"<{self.remote_target}>"], request_uri

    def _is_creating(self, cseq: CSeq) -> bool:
        return self.state == "early" and self.role == "uac" and cseq == self.initial_cseq


# -- helpers -----------------------------------------------------------------------
GHOST = 'SIP;cause=200;text="ghost"'  # RFC 3326: an answer nobody took, never billed


def answered_invite(response: Response) -> Request:
    """The INVITE a 2xx answers, as much of it as its dialog needs, when the
    INVITE is gone (a stray 2xx, RFC 6026 §8.4): a response carries its From,
    To, Call-ID and CSeq back; ``Dialog.uac`` of the two ACKs and BYEs it."""
    headers = Headers()
    for name in ("From", "To", "Call-ID", "CSeq"):
        headers.add(name, response.headers.get(name) or "")
    return Request("INVITE", "sip:invalid", headers)


def _check_creates(request: Request, response: Response) -> None:
    if not creates_dialog(response):
        raise ParseError("response does not create a dialog")
    if response.call_id != request.call_id or response.cseq != request.cseq:
        raise ParseError("response is not to this request")


def _contact_uri(message: Message) -> str | None:
    contacts = message.contacts
    if not contacts or contacts[0].star:
        return None
    return contacts[0].uri_text


def _record_route(message: Message) -> list[str]:
    """Record-Route values as written (their parameters go back unchanged)."""
    message.record_routes  # noqa: B018  (a bad value fails now, not in a later request)
    return message.headers.values("record-route")


def _without_tag(name_addr: NameAddr) -> str:
    params = {name: value for name, value in name_addr.params.items() if name != "tag"}
    return str(NameAddr(name_addr.uri_text, name_addr.display, params, angle=True))


def _with_tag(name_addr: str, tag: str) -> str:
    # Even in addr-spec form every ';' after the URI starts a header
    # parameter (§20.10), so appending is always right.
    return f"{name_addr};tag={tag}" if tag else name_addr


def _as_request_uri(route: NameAddr) -> str:
    """A route's URI without what a Request-URI may not carry: the ``method``
    parameter and headers (§19.1.1, table 1)."""
    uri = route.uri
    if isinstance(uri, SipUri) and ("method" in uri.params or uri.headers):
        params = {name: value for name, value in uri.params.items() if name != "method"}
        return str(uri.copy(params=params, headers={}))
    return route.uri_text


def _is_sips(uri_text: str) -> bool:
    # §12.1.1 also asks that the request came over TLS, which a sips
    # Request-URI already demands hop by hop (§26.2.2); the core sees no transport.
    return uri_text[:5].lower() == "sips:"
