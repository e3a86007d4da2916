"""Wire: a handler meets the real transaction layer with no sockets, as on a node."""

from __future__ import annotations

from sipline.net.node import MinimalHandler
from sipline.net.wire import Wire
from sipline.sip.address import Address
from sipline.sip.message import parse_message
from tests.support import FakeClock

US = Address("UDP", "127.0.0.1", 5060)
PEER = Address("UDP", "127.0.0.1", 5999)
OPTIONS = (
    b"OPTIONS sip:node@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKwire1;rport\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:node@127.0.0.1>\r\n"
    b"Call-ID: wire-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)



def test_a_request_is_answered_and_a_retransmission_absorbed_by_the_layer() -> None:
    clock = FakeClock()
    wire = Wire(MinimalHandler("test"), clock, US)
    wire.receive(OPTIONS, PEER)
    ((data, dest),) = wire.take()
    assert parse_message(data).status == 200 and dest.port == 5999  # type: ignore[union-attr]
    wire.receive(OPTIONS, PEER)  # the layer resends its answer; the handler is not asked
    assert [d for d, _ in wire.take()] == [data]
    clock.now += 40  # timer J: the transaction is gone
    wire.tick(clock.now)
    assert len(wire.layer) == 0
    assert wire.local_address("tcp") == US._replace(transport="TCP")


def test_a_request_to_an_unreachable_address_ends_with_a_503_at_the_next_tick() -> None:
    from tests.net.test_node import Recording

    clock = FakeClock()
    handler = Recording()
    wire = Wire(handler, clock, US)
    far = Address("UDP", "2001:db8::9", 5060)
    wire.unreachable.add(far)
    request = parse_message(OPTIONS.replace(b"wire-1", b"wire-2"))
    request.headers.prepend("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKout1")
    txn = wire.send_request(request, far)  # type: ignore[arg-type]
    assert wire.take() == [] and handler.responses == []
    clock.now += 0.01
    wire.tick(clock.now)
    [(response, matched)] = handler.responses
    assert matched is txn and response.status == 503 and len(wire.layer) == 0


def test_a_malformed_request_is_answered_as_the_node_answers_it() -> None:
    wire = Wire(MinimalHandler("test"), FakeClock(), US)
    wire.receive(OPTIONS.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS"), PEER)
    ((data, dest),) = wire.take()
    answer = parse_message(data)
    assert (answer.status, answer.reason, dest) == (400, "duplicated CSeq", PEER)  # type: ignore[union-attr]
    assert len(wire.layer) == 0
