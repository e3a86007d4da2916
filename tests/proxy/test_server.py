"""ProxyHandler: REGISTER for our domains to the registrar, OPTIONS to us answered, the rest routed."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.server import ProxyHandler, Syncing
from sipline.proxying.rules import Local
from sipline.sip.address import Address
from sipline.sip.message import Request, Response, parse_message

SOURCE = Address("UDP", "127.0.0.1", 40000)
LOCAL = Local({"UDP": Address("UDP", "127.0.0.1", 5060)}, ["example.com", "Example.NET"])


def request(method: str, uri: str, *extra: str) -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKtest;rport",
        "From: <sip:alice@example.com>;tag=a",
        "To: <sip:alice@example.com>",
        "Call-ID: test-call",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
        *extra,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


class Recorder:
    """Stands for the node, the registrar and the router: records what reaches it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def respond(self, txn: object, response: Response) -> None:
        self.calls.append(("respond", response))

    def respond_stateless(self, txn: object, response: Response) -> None:
        self.calls.append(("respond statelessly", response))

    def on_register(self, node: object, request: Request, txn: object, source: Address) -> None:
        self.calls.append(("registrar", request.method))

    def on_tick(self, node: object, now: float) -> None:
        self.calls.append(("tick", now))  # the registrar's sweep, the router's timers

    def refuse_register(self, node: object, request: Request, txn: object, source: Address) -> bool:
        return "internal" in request.headers.get("contact", "")  # type: ignore[operator]

    def trusts(self, source: Address) -> bool:
        return False

    def local(self, node: object) -> Local:
        return LOCAL

    def on_request(self, node: object, request: Request, txn: object, source: Address) -> None:
        self.calls.append(("router", request.method))

    def on_response(self, node: object, response: Response, txn: object, source: Address) -> None:
        self.calls.append(("router response", response.status))

    def on_timeout(self, node: object, txn: object) -> None:
        self.calls.append(("router timeout", txn))

    def on_terminated(self, node: object, txn: object) -> None:
        self.calls.append(("router terminated", txn))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def handler(recorder: Recorder) -> ProxyHandler:
    return ProxyHandler(recorder, recorder, "sipline/test")


def dispatch(handler: ProxyHandler, recorder: Recorder, message: Request, txn: object = "txn") -> Any:
    handler.on_request(recorder, message, txn, SOURCE)  # type: ignore[arg-type]
    [(where, what)] = recorder.calls
    return where, what


@pytest.mark.parametrize(
    "uri",
    ["sip:example.com", "sip:EXAMPLE.com;transport=tcp", "sip:example.net", "sip:127.0.0.1:5060",
     "sip:127.0.0.1", "sip:alice@example.com"],
)  # fmt: skip
def test_register_for_our_domain_or_address_goes_to_the_registrar(
    handler: ProxyHandler, recorder: Recorder, uri: str
) -> None:
    assert dispatch(handler, recorder, request("REGISTER", uri)) == ("registrar", "REGISTER")


def test_a_register_the_router_refuses_never_reaches_the_registrar(
    handler: ProxyHandler, recorder: Recorder
) -> None:
    handler.on_request(
        recorder, request("REGISTER", "sip:example.com", "Contact: <sip:internal@h>"), "txn", SOURCE  # type: ignore[arg-type]
    )
    assert recorder.calls == []


@pytest.mark.parametrize("uri", ["sip:other.org", "sip:127.0.0.1:5070", "tel:+15551234"])
def test_register_for_another_domain_is_routed(
    handler: ProxyHandler, recorder: Recorder, uri: str
) -> None:
    assert dispatch(handler, recorder, request("REGISTER", uri)) == ("router", "REGISTER")


@pytest.mark.parametrize("uri", ["sip:example.com", "sip:127.0.0.1:5060", "sip:example.net"])
def test_options_to_the_proxy_itself_is_answered_with_capabilities(
    handler: ProxyHandler, recorder: Recorder, uri: str
) -> None:
    where, response = dispatch(handler, recorder, request("OPTIONS", uri))
    assert where == "respond statelessly"  # anyone's keepalive leaves nothing behind
    assert response.status == 200
    assert response.to.tag
    assert "INVITE" in response.headers.get("Allow")
    assert "REGISTER" in response.headers.get("Allow")
    assert response.headers.get("Accept") == "application/sdp"
    assert response.headers.get("Supported") is not None
    assert response.headers.get("Server") == "sipline/test"


def test_options_with_a_route_through_us_is_still_for_us(
    handler: ProxyHandler, recorder: Recorder
) -> None:
    message = request("OPTIONS", "sip:example.com", "Route: <sip:127.0.0.1:5060;lr>")
    assert dispatch(handler, recorder, message)[0] == "respond statelessly"


@pytest.mark.parametrize(
    ("uri", "extra"),
    [
        ("sip:bob@example.com", ()),  # to a subscriber: forwarded to the phone
        ("sip:other.org", ()),  # to another domain
        ("sip:example.com", ("Route: <sip:10.0.0.9:5060;lr>",)),  # pre-loaded route elsewhere
    ],
)
def test_other_options_are_routed(
    handler: ProxyHandler, recorder: Recorder, uri: str, extra: tuple[str, ...]
) -> None:
    assert dispatch(handler, recorder, request("OPTIONS", uri, *extra)) == ("router", "OPTIONS")


@pytest.mark.parametrize("method", ["INVITE", "BYE", "CANCEL", "MESSAGE", "SUBSCRIBE"])
def test_everything_else_is_routed(handler: ProxyHandler, recorder: Recorder, method: str) -> None:
    assert dispatch(handler, recorder, request(method, "sip:bob@example.com")) == ("router", method)


def test_an_ack_without_transaction_is_routed(handler: ProxyHandler, recorder: Recorder) -> None:
    assert dispatch(handler, recorder, request("ACK", "sip:bob@10.0.0.2"), None) == ("router", "ACK")


def test_responses_timeouts_and_terminations_go_to_the_router(
    handler: ProxyHandler, recorder: Recorder
) -> None:
    response = request("INVITE", "sip:bob@example.com").response(180)
    handler.on_response(recorder, response, None, SOURCE)  # type: ignore[arg-type]
    handler.on_timeout(recorder, "t1")  # type: ignore[arg-type]
    handler.on_terminated(recorder, "t2")  # type: ignore[arg-type]
    assert recorder.calls == [
        ("router response", 180),
        ("router timeout", "t1"),
        ("router terminated", "t2"),
    ]


class Pinger:
    """Owns the transactions named "ping"."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def owns(self, txn: object) -> bool:
        return txn == "ping"

    def on_response(self, node: object, response: Response, txn: object, source: Address) -> None:
        self.calls.append(("pinger response", response.status))

    def on_timeout(self, node: object, txn: object) -> None:
        self.calls.append(("pinger timeout", txn))

    def on_tick(self, node: object, now: float) -> None:
        self.calls.append(("pinger tick", now))


def test_outcomes_of_nat_pings_go_to_the_pinger_and_the_rest_to_the_router(
    recorder: Recorder,
) -> None:
    pinger = Pinger()
    handler = ProxyHandler(recorder, recorder, "sipline/test", pinger)
    response = request("OPTIONS", "sip:alice@10.0.0.7").response(200)
    for txn in ("ping", "call"):
        handler.on_response(recorder, response, txn, SOURCE)  # type: ignore[arg-type]
        handler.on_timeout(recorder, txn)  # type: ignore[arg-type]
        handler.on_terminated(recorder, txn)  # type: ignore[arg-type]
    assert pinger.calls == [("pinger response", 200), ("pinger timeout", "ping")]
    assert recorder.calls == [
        ("router response", 200),
        ("router timeout", "call"),
        ("router terminated", "call"),
    ]


def test_the_node_s_tick_runs_the_router_s_and_registrar_s_timers_and_the_nat_pings(
    recorder: Recorder,
) -> None:
    pinger = Pinger()
    ProxyHandler(recorder, recorder, "sipline/test", pinger).on_tick(recorder, 1.5)  # type: ignore[arg-type]
    assert recorder.calls == [("tick", 1.5), ("tick", 1.5)]
    assert pinger.calls == [("pinger tick", 1.5)]
class Txn:
    source = SOURCE


def syncing_handler(recorder: Recorder, ready: list[bool]) -> tuple[ProxyHandler, Syncing]:
    syncing = Syncing(lambda: ready[0], 7)
    return ProxyHandler(recorder, recorder, "sipline/test", None, syncing), syncing


@pytest.mark.parametrize(
    "message",
    [request("REGISTER", "sip:example.com"), request("INVITE", "sip:bob@example.com"),
     request("MESSAGE", "sip:bob@example.com")],
    ids=["REGISTER", "INVITE", "MESSAGE"],
)  # fmt: skip
def test_while_the_location_catches_up_new_work_gets_503_with_retry_after(
    recorder: Recorder, message: Request
) -> None:
    ready = [False]
    handler, syncing = syncing_handler(recorder, ready)
    where, response = dispatch(handler, recorder, message, Txn())
    assert where == "respond statelessly" and response.status == 503
    assert response.headers.get("retry-after") == "7" and syncing.refused == 1
    ready[0] = True
    recorder.calls.clear()
    assert dispatch(handler, recorder, message, Txn())[0] in ("registrar", "router")


def in_dialog(method: str) -> Request:
    message = parse_message(bytes(request(method, "sip:bob@192.0.2.1")).replace(
        b"To: <sip:alice@example.com>", b"To: <sip:alice@example.com>;tag=b"))  # fmt: skip
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(
    "message",
    [in_dialog("BYE"), request("CANCEL", "sip:bob@example.com"),
     request("OPTIONS", "sip:example.com")],
    ids=["in-dialog", "CANCEL", "OPTIONS-keepalive"],
)  # fmt: skip
def test_while_catching_up_dialogs_cancels_and_keepalives_go_on(
    recorder: Recorder, message: Request
) -> None:
    handler, syncing = syncing_handler(recorder, [False])
    where, _ = dispatch(handler, recorder, message, Txn())
    assert where in ("router", "respond statelessly") and syncing.refused == 0
