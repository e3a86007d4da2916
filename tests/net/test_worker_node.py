"""A node that is one worker of two (sipline.net.workers), on real sockets in one
process: which socket each message leaves from, what it hands to its sibling,
and what it takes from one."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sipline.config import Settings
from sipline.net.node import MinimalHandler, Node
from sipline.net.ports import free_port
from sipline.net.workers import Workers, handover_key, seal
from sipline.sip.address import UDP_FLOW, Address
from sipline.sip.message import parse_message
from tests.support import on_uvloop

HOST = "127.0.0.1"
SECRET = "worker node test"
PHONE = Address("UDP", "127.0.0.9", 5062)
TRUSTED = Address("UDP", "127.0.0.8", 5070)


class Handler(MinimalHandler):
    def trusts(self, source: Address) -> bool:
        return source.host == TRUSTED.host


class Worker:
    """Worker 0's node, the socket of its sibling (worker 1) and what left each socket."""

    def __init__(self, node: Node, sibling: socket.socket) -> None:
        self.node = node
        self.sibling = sibling
        self.shared: list[tuple[bytes, Address]] = []
        self.own: list[tuple[bytes, Address]] = []
        assert node._udp is not None and node._own is not None
        node._udp.send = self._record(self.shared)  # type: ignore[method-assign]
        node._own.send = self._record(self.own)  # type: ignore[method-assign]

    @staticmethod
    def _record(into: list[tuple[bytes, Address]]) -> Any:
        def send(data: bytes, dest: Address, waiter: object = None) -> bool:
            into.append((data, dest))
            return True

        return send

    @property
    def sibling_address(self) -> Address:
        return Address("UDP", HOST, self.sibling.getsockname()[1])


@asynccontextmanager
async def worker() -> AsyncIterator[Worker]:
    own, sibling = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    own.bind((HOST, 0))
    sibling.bind((HOST, 0))
    ports = (own.getsockname()[1], sibling.getsockname()[1])
    settings = Settings(
        node={"name": "w/0", "drain_timeout": 0.1},
        sip={"host": HOST, "port": free_port(), "transports": ["udp"]},
        auth={"secret": SECRET},
    )
    node = Node(settings, Handler("test"), workers=Workers(0, ports, own.detach()))
    await node.start()
    try:
        yield Worker(node, sibling)
    finally:
        await node.stop()
        sibling.close()


def invite(method: str = "INVITE", branch: str = "z9hG4bK-1", route: str = "") -> bytes:
    return (
        f"{method} sip:bob@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PHONE.host}:{PHONE.port};branch={branch}\r\n"
        f"From: <sip:alice@{HOST}>;tag=a\r\nTo: <sip:bob@{HOST}>\r\n{route}"
        f"Call-ID: c1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def response(via_port: int) -> bytes:
    return (
        f"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP {HOST}:{via_port};branch=z9hG4bK-ours\r\n"
        f"From: <sip:alice@{HOST}>;tag=a\r\nTo: <sip:bob@{HOST}>;tag=b\r\n"
        "Call-ID: c2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def handovers(w: Worker, outcome: str) -> int:
    return w.node.metrics.handovers[outcome].value


# -- which socket -------------------------------------------------------------------------
@on_uvloop
async def test_own_requests_leave_from_the_own_socket_the_rest_from_the_shared_one() -> None:
    async with worker() as w:
        send = w.node._send_udp
        request, answer = invite(), response(5062)
        send(request, Address("UDP", "127.0.0.7", 5060))  # a next hop: its answers come back here
        send(request, PHONE._replace(connection=UDP_FLOW))  # a phone's flow: its NAT knows 5060
        send(request, TRUSTED)  # a trusted peer knows us by our address and port
        send(answer, PHONE)  # an answer leaves from where its request came
        send(request, w.sibling_address)  # between workers: own to own
        send(answer, w.sibling_address)
        assert [d for _, d in w.own] == [
            Address("UDP", "127.0.0.7", 5060), w.sibling_address, w.sibling_address,
        ]  # fmt: skip
        assert [d for _, d in w.shared] == [PHONE._replace(connection=UDP_FLOW), TRUSTED, PHONE]


@on_uvloop
async def test_the_via_names_the_own_port_and_the_listener_stays_shared() -> None:
    async with worker() as w:
        own = w.node.via_address("UDP")
        assert own.port == w.node.worker_ports()[0] != w.node.local_address("UDP").port


# -- what it hands over -------------------------------------------------------------------
@on_uvloop
async def test_a_cancel_for_an_invite_held_elsewhere_goes_to_the_sibling_sealed() -> None:
    async with worker() as w:
        cancel = invite("CANCEL")
        assert w.node._hand_over(parse_message(cancel), cancel, PHONE) is True
        [(sealed, dest)] = w.own
        assert dest == w.sibling_address and cancel in sealed and b"127.0.0.9 5062" in sealed
        assert handovers(w, "handed") == 1


@on_uvloop
async def test_a_cancel_for_an_invite_held_here_stays() -> None:
    async with worker() as w:
        w.node.layer.receive(parse_message(invite()), PHONE)
        cancel = invite("CANCEL")
        assert w.node._hand_over(parse_message(cancel), cancel, PHONE) is False
        assert w.own == [] and handovers(w, "handed") == 0


@on_uvloop
async def test_an_ack_without_route_is_handed_over_only_after_a_change_of_workers() -> None:
    async with worker() as w:
        ack = invite("ACK")
        w.node._changed_until = 0.0  # the start's window has passed
        assert w.node._hand_over(parse_message(ack), ack, PHONE) is False
        assert w.own == []
        w.node.workers_changed()  # SIGUSR1: a worker restarted
        assert w.node._hand_over(parse_message(ack), ack, PHONE) is False  # the role's too
        assert len(w.own) == 1
        routed = invite("ACK", route=f"Route: <sip:{HOST};lr>\r\n")
        assert w.node._hand_over(parse_message(routed), routed, PHONE) is False
        assert len(w.own) == 1  # the ACK of a 2xx, along our Record-Route: the role's


@on_uvloop
async def test_a_response_whose_via_is_the_siblings_goes_to_it() -> None:
    async with worker() as w:
        theirs, ours = response(w.sibling_address.port), response(w.node.worker_ports()[0])
        assert w.node._hand_over(parse_message(theirs), theirs, TRUSTED) is True
        assert w.node._hand_over(parse_message(ours), ours, TRUSTED) is False
        assert [d for _, d in w.own] == [w.sibling_address]


# -- what it takes ------------------------------------------------------------------------
@on_uvloop
async def test_a_sealed_cancel_from_the_sibling_is_taken_when_its_invite_is_here() -> None:
    async with worker() as w:
        w.node.layer.receive(parse_message(invite()), PHONE)
        key = handover_key(SECRET)
        w.node._from_sibling(seal(key, PHONE, invite("CANCEL"), time.time()), w.sibling_address)
        assert handovers(w, "taken") == 1
        assert w.node.layer.holds(parse_message(invite("CANCEL")), "CANCEL")  # type: ignore[arg-type]
        w.node._from_sibling(
            seal(key, PHONE, invite("CANCEL", branch="z9hG4bK-2"), time.time()), w.sibling_address
        )
        assert handovers(w, "unmatched") == 1


@on_uvloop
async def test_a_handover_not_sealed_under_our_secret_is_forged() -> None:
    async with worker() as w:
        forged = seal(handover_key("another"), PHONE, invite("CANCEL"), time.time())
        w.node._from_sibling(forged, w.sibling_address)
        assert handovers(w, "forged") == 1 and handovers(w, "taken") == 0
