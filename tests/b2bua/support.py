"""A B2BUA handler on a fake node: the real transaction layer, a fake clock, no sockets.

``FakeNode`` carries out the layer's actions as the real node does, but a
``Send`` is parsed and kept in ``sent`` (where it went, what it was) instead
of reaching a socket. Peers are played by the test: ``Peer`` builds the
requests and responses a caller, an ACR node or a gateway would send.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from b2bua.handler import B2buaHandler
from sipline.config import Settings
from sipline.net.wire import Wire
from sipline.sip.address import Address
from sipline.sip.message import Request, Response, parse_message
from tests.support import FakeClock

HOST = "127.0.0.1"
US = Address("UDP", HOST, 5070)
PROXY = Address("UDP", HOST, 5060)
ACR1 = Address("UDP", HOST, 5080)
ACR2 = Address("UDP", HOST, 5082)

_numbers = itertools.count(1)



class FakeNode(Wire):
    """``Wire`` for the B2BUA's tests: what went out comes back parsed, and time
    passes for the layer's timers and then the handler's."""

    def __init__(self, handler: B2buaHandler, clock: FakeClock) -> None:
        super().__init__(handler, clock, US)
        self.clock = clock

    def advance(self, seconds: float) -> None:
        """Let time pass: the layer's timers, then the handler's."""
        self.clock.now += seconds
        self.tick(self.clock.now)

    def take(self) -> list[tuple[Request | Response, Address]]:  # type: ignore[override]
        return [(parse_message(data), dest) for data, dest in super().take()]


def settings(**b2bua: Any) -> Settings:
    values = {"media_relay": "", "probe_interval": 5.0, **b2bua}
    return Settings(b2bua=values)  # type: ignore[arg-type]


def b2bua(clock: FakeClock | None = None, **kwargs: Any) -> tuple[B2buaHandler, FakeNode]:
    """A handler on a fake node; ``kwargs`` are [b2bua] settings or the handler's parts."""
    parts = {k: kwargs.pop(k) for k in ("accounts", "licences", "media") if k in kwargs}
    clock = clock or FakeClock()
    values = settings(**kwargs)
    handler = B2buaHandler(
        values.b2bua, server_header=values.sip.server_header, clock=clock, **parts
    )
    node = FakeNode(handler, clock)
    handler.probing = False  # probes only where a test runs them
    return handler, node


# -- peers -------------------------------------------------------------------------------------
SDP = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def invite(
    number: str = "+15551230000", *, extra: Iterable[tuple[str, str]] = (), body: bytes = SDP
) -> Request:
    """The proxy's INVITE for a call from alice to ``number``."""
    n = next(_numbers)
    request = Request("INVITE", f"sip:{number}@example.com")
    headers = request.headers
    headers.add("Via", f"SIP/2.0/UDP {HOST}:5060;branch=z9hG4bKproxy{n}")
    headers.add("Via", f"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKphone{n};received=10.0.0.1")
    headers.add("Record-Route", f"<sip:{HOST}:5060;lr;ftag=a{n}>")
    headers.add("Max-Forwards", "69")
    headers.add("From", f'"Alice" <sip:alice@example.com>;tag=alice{n}')
    headers.add("To", f"<sip:{number}@example.com>")
    headers.add("Call-ID", f"call-{n}@10.0.0.1")
    headers.add("CSeq", "10 INVITE")
    headers.add("Contact", "<sip:alice@10.0.0.1:5060>")
    headers.add("P-Asserted-Identity", "<sip:alice@example.com>")
    headers.add("Proxy-Authorization", 'Digest username="alice", realm="example.com"')
    for name, value in extra:
        headers.add(name, value)
    if body:
        headers.add("Content-Type", "application/sdp")
    request.body = body
    return request


def answer(
    request: Request,
    status: int,
    *,
    tag: str | None = "far",
    contact: str | None = "<sip:far@127.0.0.1:5080>",
    body: bytes = b"",
    extra: Iterable[tuple[str, str]] = (),
) -> Response:
    """The response a peer sends to ``request``."""
    response = request.response(status, to_tag=tag)
    if contact is not None and status < 300 and status > 100:
        response.headers.add("Contact", contact)
    for name, value in extra:
        response.headers.add(name, value)
    if body:
        response.set_body(body, "application/sdp")
    return response


def in_dialog(
    method: str,
    *,
    uri: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    via_host: str,
    body: bytes = b"",
    extra: Iterable[tuple[str, str]] = (),
) -> Request:
    n = next(_numbers)
    request = Request(method, uri)
    headers = request.headers
    headers.add("Via", f"SIP/2.0/UDP {via_host};branch=z9hG4bKpeer{n}")
    headers.add("Max-Forwards", "70")
    headers.add("From", from_)
    headers.add("To", to)
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"{cseq} {method}")
    headers.add("Contact", f"<sip:peer@{via_host}>")
    for name, value in extra:
        headers.add(name, value)
    if body:
        request.set_body(body, "application/sdp")
    return request


def ack_for_2xx(invite_request: Request, response: Response, via_host: str) -> Request:
    """The ACK a UAC sends for a 2xx (to the 2xx's Contact)."""
    return in_dialog(
        "ACK", uri=response.contacts[0].uri_text, from_=invite_request.headers.get("from") or "",
        to=response.headers.get("to") or "", call_id=invite_request.call_id,
        cseq=invite_request.cseq.number, via_host=via_host,
    )  # fmt: skip


def of(sent: list[tuple[Request | Response, Address]], kind: str) -> list[tuple[Any, Address]]:
    """The sent messages of one kind: a method ("INVITE") or a status ("200")."""
    found = []
    for message, dest in sent:
        if isinstance(message, Request) and message.method == kind:
            found.append((message, dest))
        elif isinstance(message, Response) and str(message.status) == kind:
            found.append((message, dest))
    return found
