"""StatefulProxy: what the edge proxy's and the ACR's routers share (RFC 3261 §16),
on a node that records what it is asked and no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from sipline.config import Settings
from sipline.net.wire import Wire
from sipline.proxying.rules import Rejection
from sipline.proxying.stateful import StatefulProxy
from sipline.sip.address import Address, as_flow
from sipline.sip.errors import LocalProtocolError, ParseError
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ServerTransaction, State, server_key
from tests.proxying.test_rules import invite

SOURCE = Address("UDP", "192.0.2.7", 40000)
CALL_ID = "c1@192.0.2.7"  # invite()'s


class Node:
    def __init__(self, listening: tuple[str, ...] = ("UDP", "TCP")) -> None:
        self.listening = set(listening)
        self.answers: list[Response] = []
        self.stateless: list[Response] = []
        self.sent: list[tuple[Request | Response, Address]] = []

    def local_address(self, transport: str) -> Address:
        if transport not in self.listening:
            raise LookupError(transport)
        return Address(transport, "10.0.0.1", 5060)

    def via_address(self, transport: str) -> Address:
        return self.local_address(transport)

    def worker_ports(self) -> tuple[int, ...]:
        return ()

    def respond(self, txn: ServerTransaction, response: Response) -> None:
        self.answers.append(response)

    def respond_stateless(self, txn: ServerTransaction, response: Response) -> None:
        self.answers.append(response)
        self.stateless.append(response)

    def send_stateless(self, message: Request | Response, dest: Address) -> None:
        self.sent.append((message, dest))


class Proxy(StatefulProxy):
    """Routes nothing: records what the base hands it."""

    def __init__(self, fail: Exception | None = None) -> None:
        settings = Settings()
        super().__init__(settings.sip, settings.auth, ["example.com"])
        self.fail = fail
        self.routed: list[Any] = []
        self.cancelled: list[Any] = []
        self.ticks: list[float] = []
        self.trusted_sources: set[Address] = set()

    def trusts(self, source: Address) -> bool:
        return source in self.trusted_sources

    def _route(self, node: Any, request: Request, txn: ServerTransaction, source: Address) -> None:
        if self.fail is not None:
            raise self.fail
        refused = Rejection(403, "Forbidden: no") if request.method == "MESSAGE" else None
        self.routed.append(self._preprocess(node, request, txn, refused))

    def _cancel_context(self, node: Any, context: Any) -> None:
        self.cancelled.append(context)

    def on_tick(self, node: Any, now: float) -> None:
        self.ticks.append(now)


def server(request: Request) -> ServerTransaction:
    state = State.PROCEEDING if request.method == "INVITE" else State.TRYING
    key = server_key(request, request.method)
    return ServerTransaction(key, request, request.method, state, SOURCE, source=SOURCE)


def receive(proxy: Proxy, node: Node, request: Request) -> ServerTransaction:
    txn = server(request)
    proxy.on_request(node, request, txn, SOURCE)  # type: ignore[arg-type]
    return txn


def test_its_addresses_are_kept_only_once_the_node_listens_on_every_transport() -> None:
    proxy, node = Proxy(), Node(("UDP",))
    assert set(proxy.local(node).addresses) == {"UDP"}  # type: ignore[arg-type]
    node.listening.add("TCP")
    local = proxy.local(node)  # type: ignore[arg-type]
    assert set(local.addresses) == {"UDP", "TCP"} and local.domains == ["example.com"]
    node.listening.clear()
    assert proxy.local(node) is local  # type: ignore[arg-type]


def test_a_request_is_validated_then_taken_off_our_routes_with_its_loop_key() -> None:
    proxy, node = Proxy(), Node()
    receive(proxy, node, invite(routes=("<sip:10.0.0.1:5060;lr;ftag=a1>",)))
    [(local, ours, key)] = proxy.routed
    # A new request's Route naming us (an outbound-proxy setting) says nothing to believe.
    assert ours is None and key and local.is_self(Address("UDP", "10.0.0.1", 5060))
    assert not node.answers


def signed_route(proxy: Proxy, params: str = ";ftag=a1;fb=203.0.113.5~5060~u") -> str:
    return f"<sip:10.0.0.1:5060;lr{proxy.signer.sign(params, CALL_ID)}>"


def test_in_a_dialog_the_parameters_of_our_signed_route_are_believed() -> None:
    proxy, node = Proxy(), Node()
    receive(proxy, node, invite(to_tag="b1", routes=(signed_route(proxy),)))
    [(_, ours, _)] = proxy.routed
    assert ours is not None and ours["fb"] == "203.0.113.5~5060~u"
    assert not node.answers


def test_a_route_naming_us_unsigned_in_a_dialog_or_forged_is_refused_403_statelessly() -> None:
    proxy, node = Proxy(), Node()
    forged = signed_route(proxy).replace("203.0.113.5", "198.51.100.66")
    receive(proxy, node, invite(to_tag="b1", routes=("<sip:10.0.0.1:5060;lr;fb=1.2.3.4~5~u>",)))
    receive(proxy, node, invite(to_tag="b1", routes=(forged,)))
    receive(proxy, node, invite(routes=(forged,)))  # a forgery is one in a new request too
    assert proxy.routed == [None, None, None]
    assert [(r.status, r.reason) for r in node.stateless] == [
        (403, "Forbidden: a Route names us without our signature"),
        (403, "Forbidden: a Route names us with a signature that is not ours"),
        (403, "Forbidden: a Route names us with a signature that is not ours"),
    ]
    assert proxy.counts["forged_routes"] == 3


def test_without_record_routing_an_unsigned_route_in_a_dialog_is_an_outbound_proxy_route() -> None:
    proxy, node = Proxy(), Node()
    proxy.record_route = False
    receive(proxy, node, invite(to_tag="b1", routes=("<sip:10.0.0.1:5060;lr>",)))
    [(_, ours, _)] = proxy.routed
    assert ours is None and not node.answers


# -- what is forwarded without a transaction --------------------------------------------
def test_an_ack_is_forwarded_along_our_signed_route_or_from_a_trusted_peer_only() -> None:
    proxy, node = Proxy(), Node()
    signed = invite("sip:bob@192.168.1.9", method="ACK", to_tag="b1", routes=(signed_route(proxy),))
    proxy.on_request(node, signed, None, SOURCE)  # type: ignore[arg-type]
    [(ack, dest)] = node.sent
    assert dest == as_flow(Address("UDP", "203.0.113.5", 5060)) and "route" not in ack.headers
    for unsigned in (
        invite("sip:bob@198.51.100.66", method="ACK", to_tag="b1"),  # no Route at all
        invite("sip:bob@198.51.100.66", method="ACK", to_tag="b1", routes=("<sip:10.0.0.1;lr>",)),
        invite(
            "sip:bob@198.51.100.66", method="ACK", to_tag="b1",
            routes=(signed_route(proxy).replace("a1", "x1"),),
        ),  # fmt: skip
    ):
        proxy.on_request(node, unsigned, None, SOURCE)  # type: ignore[arg-type]
    assert len(node.sent) == 1 and proxy.counts["acks_dropped"] == 3
    proxy.trusted_sources.add(SOURCE)
    proxy.on_request(node, invite("sip:bob@192.0.2.9", method="ACK", to_tag="b1"), None, SOURCE)  # type: ignore[arg-type]
    assert node.sent[-1][1] == Address("UDP", "192.0.2.9", 5060)


def test_a_stray_2xx_goes_upstream_only_through_a_branch_we_made_for_that_hop() -> None:
    proxy, node = Proxy(), Node()
    caller = Address("UDP", "203.0.113.7", 4000)
    branch = proxy.branch("k1", caller)
    ours = f"SIP/2.0/UDP 10.0.0.1:5060;branch={branch}"
    below = "SIP/2.0/UDP 192.168.1.7;branch=z9hG4bKa;received=203.0.113.7;rport=4000"
    victim = "SIP/2.0/UDP 198.51.100.66:5060;branch=z9hG4bKv"
    for vias in ((ours, below), (ours, victim)):
        ok = invite(vias=vias).response(200, to_tag="b1")
        proxy.on_response(node, ok, None, SOURCE)  # type: ignore[arg-type]
    assert [dest for _, dest in node.sent] == [caller]
    assert proxy.counts["strays_dropped"] == 1


def test_invalid_refused_or_looped_requests_are_answered_not_routed() -> None:
    proxy, node = Proxy(), Node()
    receive(proxy, node, invite(max_forwards=0))
    receive(proxy, node, invite(method="MESSAGE"))
    looped = invite()
    receive(proxy, node, looped)  # routed: its key is what our Via would carry
    [(_, _, key)] = [r for r in proxy.routed if r is not None]
    our_via = f"SIP/2.0/UDP 10.0.0.1:5060;branch={proxy.branch(key, SOURCE)}"
    receive(proxy, node, invite(vias=(our_via,)))
    assert [r.status for r in node.answers] == [483, 403, 482]
    assert {r.headers.get("server") for r in node.answers} == {proxy.server_header}


def test_a_header_that_does_not_parse_is_answered_400_with_the_reason() -> None:
    proxy, node = Proxy(ParseError("bad To")), Node()
    receive(proxy, node, invite())
    [answer] = node.answers
    assert (answer.status, answer.reason) == (400, "Bad Request: bad To")


def test_a_local_protocol_error_is_our_bug_not_the_senders_400() -> None:
    proxy, node = Proxy(LocalProtocolError("Via branch already in use")), Node()
    with pytest.raises(LocalProtocolError):  # the node logs it and answers 500
        receive(proxy, node, invite())
    assert node.answers == []


def test_a_cancel_is_answered_here_and_cancels_its_invites_context() -> None:
    proxy, node = Proxy(), Node()
    invite_txn = server(invite())
    invite_txn.context = "the call"
    cancel = server(invite(method="CANCEL"))
    cancel.cancels = invite_txn
    proxy.on_request(node, cancel.request, cancel, SOURCE)  # type: ignore[arg-type]
    unmatched = receive(proxy, node, invite(method="CANCEL"))
    assert unmatched.cancels is None
    assert [r.status for r in node.answers] == [200, 481]
    assert proxy.cancelled == ["the call"]


def test_its_timers_run_from_the_node_s_tick_and_no_callback_of_its_own() -> None:
    proxy = Proxy()
    wire = Wire(proxy, lambda: 0.0, Address("UDP", "10.0.0.1", 5060))
    wire.tick(0.01)
    wire.tick(0.02)
    assert proxy.ticks == [0.01, 0.02]
