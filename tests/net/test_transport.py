"""UDP and TCP endpoints over real sockets on 127.0.0.1, run on uvloop."""

from __future__ import annotations

import asyncio

from sipline.net.metrics import NodeMetrics
from sipline.net.ports import free_port
from sipline.net.transport import TcpConnection, TcpEndpoint, TcpLimits, UdpEndpoint
from sipline.sip.address import Address
from tests.support import on_uvloop, until

HOST = "127.0.0.1"




def message(branch: str = "z9hG4bK1", body: bytes = b"", method: str = "OPTIONS") -> bytes:
    head = (
        f"{method} sip:node@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP {HOST}:5999;branch={branch}\r\n"
        f"From: <sip:a@{HOST}>;tag=1\r\nTo: <sip:node@{HOST}>\r\n"
        f"Call-ID: {branch}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Recorder:
    """A sink that keeps what endpoints hand it."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Address]] = []
        self.refused: list[tuple[bytes, Address, int, str]] = []
        self.unsent_waiters: list[tuple[list[object], str]] = []

    def message_received(self, data: bytes, source: Address) -> None:
        self.received.append((data, source))

    def message_refused(self, data: bytes, source: Address, status: int, reason: str) -> None:
        self.refused.append((data, source, status, reason))

    def unsent(self, waiters: list[object], error: str) -> None:
        self.unsent_waiters.append((waiters, error))


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.transport: asyncio.DatagramTransport

    @classmethod
    async def open(cls) -> UdpClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_datagram_endpoint(cls, local_addr=(HOST, 0))
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.datagrams.append(data)

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]


async def tcp_endpoint(sink: Recorder, max_bytes: int = 65535, idle: float = 300.0) -> TcpEndpoint:
    endpoint = TcpEndpoint(sink, max_bytes, idle)
    await endpoint.listen(HOST, 0)
    return endpoint


async def connect(endpoint: TcpEndpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert endpoint.address is not None
    return await asyncio.open_connection(HOST, endpoint.address.port)


# -- UDP ----------------------------------------------------------------------
@on_uvloop
async def test_udp_datagram_in_and_reply_out_to_its_source() -> None:
    sink = Recorder()
    endpoint = await UdpEndpoint.bind(sink, HOST, 0, 65535)
    client = await UdpClient.open()
    assert endpoint.address is not None and endpoint.address.port != 0

    client.transport.sendto(message(), (HOST, endpoint.address.port))
    await until(lambda: sink.received)
    data, source = sink.received[0]
    assert data == message()
    assert source == Address("UDP", HOST, client.port)

    assert endpoint.send(b"SIP/2.0 200 OK\r\n\r\n", source)
    await until(lambda: client.datagrams)
    assert client.datagrams == [b"SIP/2.0 200 OK\r\n\r\n"]
    await endpoint.close()
    client.transport.close()


@on_uvloop
async def test_udp_datagram_over_the_limit_is_refused_with_513() -> None:
    sink = Recorder()
    endpoint = await UdpEndpoint.bind(sink, HOST, 0, 1024)
    client = await UdpClient.open()
    big = message(body=b"x" * 2000)
    client.transport.sendto(big, (HOST, endpoint.address.port))  # type: ignore[union-attr]
    await until(lambda: sink.refused)
    assert sink.received == []
    data, source, status, reason = sink.refused[0]
    assert (data, status, reason) == (big, 513, "Message Too Large")
    assert source.port == client.port
    await endpoint.close()
    client.transport.close()


# -- TCP framing ----------------------------------------------------------------
@on_uvloop
async def test_tcp_two_messages_in_one_segment_are_framed_apart() -> None:
    sink = Recorder()
    endpoint = await tcp_endpoint(sink)
    _, writer = await connect(endpoint)
    writer.write(message("z9hG4bKa") + message("z9hG4bKb"))
    await until(lambda: len(sink.received) == 2)
    assert [data for data, _ in sink.received] == [message("z9hG4bKa"), message("z9hG4bKb")]
    source = sink.received[0][1]
    assert source.transport == "TCP" and source.connection is not None
    assert source == sink.received[1][1]
    writer.close()
    await endpoint.close()


@on_uvloop
async def test_tcp_message_split_over_several_writes_is_reassembled() -> None:
    sink = Recorder()
    endpoint = await tcp_endpoint(sink)
    _, writer = await connect(endpoint)
    whole = message(body=b"v=0\r\n")
    for at in range(0, len(whole), 17):
        writer.write(whole[at : at + 17])
        await writer.drain()
        await asyncio.sleep(0.002)
    await until(lambda: sink.received)
    assert [data for data, _ in sink.received] == [whole]
    writer.close()
    await endpoint.close()


@on_uvloop
async def test_tcp_body_is_framed_by_content_length_even_if_it_holds_blank_lines() -> None:
    sink = Recorder()
    endpoint = await tcp_endpoint(sink)
    _, writer = await connect(endpoint)
    tricky = message("z9hG4bKa", body=b"a\r\n\r\nINVITE x")
    writer.write(tricky + message("z9hG4bKb")[:40])
    await until(lambda: sink.received)
    writer.write(message("z9hG4bKb")[40:])
    await until(lambda: len(sink.received) == 2)
    assert [data for data, _ in sink.received] == [tricky, message("z9hG4bKb")]
    writer.close()
    await endpoint.close()


@on_uvloop
async def test_tcp_double_crlf_ping_gets_a_single_crlf_pong() -> None:
    sink = Recorder()
    endpoint = await tcp_endpoint(sink)
    reader, writer = await connect(endpoint)
    writer.write(b"\r\n\r\n")
    assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
    # A ping split over two writes, then a message after a stray CRLF (RFC 3261 §7.5).
    writer.write(b"\r\n")
    await writer.drain()
    await asyncio.sleep(0.02)
    writer.write(b"\r\n")
    assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
    writer.write(b"\r\n" + message())
    await until(lambda: sink.received)
    assert [data for data, _ in sink.received] == [message()]
    writer.close()
    await endpoint.close()


# -- TCP connections --------------------------------------------------------------
@on_uvloop
async def test_tcp_request_goes_back_over_the_connection_the_peer_opened() -> None:
    sink = Recorder()
    endpoint = await tcp_endpoint(sink)
    reader, writer = await connect(endpoint)
    writer.write(message())
    await until(lambda: sink.received)
    source = sink.received[0][1]
    # As a registrar would: the phone is reachable only on the connection it came on.
    endpoint.send(message("z9hG4bKback", method="NOTIFY"), source)
    assert await asyncio.wait_for(reader.readexactly(len(message("z9hG4bKback", method="NOTIFY"))), 2)
    # A connection id reaches only the peer it belongs to (ids may come from a flow token).
    endpoint.send(message("z9hG4bKelse", method="NOTIFY"), source._replace(port=5999))
    await asyncio.sleep(0.1)
    assert not reader._buffer  # type: ignore[attr-defined]
    # Without a connection id, the connection to the same peer address is used.
    endpoint.send(b"SIP/2.0 200 OK\r\n\r\n", source._replace(connection=None))
    assert await asyncio.wait_for(reader.readexactly(18), 2) == b"SIP/2.0 200 OK\r\n\r\n"
    assert len(endpoint.by_id) == 1  # the attempt at 5999 was refused and is gone
    writer.close()
    await endpoint.close()


@on_uvloop
async def test_tcp_send_opens_a_connection_when_there_is_none_and_reuses_it() -> None:
    far_sink, near_sink = Recorder(), Recorder()
    far = await tcp_endpoint(far_sink)
    near = await tcp_endpoint(near_sink)
    assert far.address is not None
    near.send(message("z9hG4bK1"), far.address)  # queued until connected
    near.send(message("z9hG4bK2"), far.address)
    await until(lambda: len(far_sink.received) == 2)
    near.send(message("z9hG4bK3"), far.address)
    await until(lambda: len(far_sink.received) == 3)
    sources = {source for _, source in far_sink.received}
    assert len(sources) == 1 and len(near.by_id) == 1
    # The far end answers on the connection it was reached on.
    far.send(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", sources.pop())
    await until(lambda: near_sink.received)
    assert near_sink.received[0][1].connection in near.by_id
    await near.close()
    await far.close()


@on_uvloop
async def test_tcp_send_to_a_closed_port_is_dropped_without_harm() -> None:
    sink = Recorder()
    endpoint = await tcp_endpoint(sink)
    other = await tcp_endpoint(Recorder())
    assert other.address is not None
    port = other.address.port
    await other.close()
    endpoint.send(message(), Address("TCP", HOST, port))
    await until(lambda: not endpoint.by_id)
    assert not endpoint.by_peer
    await endpoint.close()


@on_uvloop
async def test_tcp_idle_connection_is_closed_by_the_sweep() -> None:
    sink = Recorder()
    endpoint = await tcp_endpoint(sink, idle=0.2)
    reader, writer = await connect(endpoint)
    busy_reader, busy_writer = await connect(endpoint)
    loop = asyncio.get_running_loop()
    await until(lambda: len(endpoint.by_id) == 2)
    for _ in range(100):  # 1 s of 10 ms ticks; the busy one pings every tick
        endpoint.sweep(loop.time())
        busy_writer.write(b"\r\n\r\n")
        await asyncio.sleep(0.01)
    assert await asyncio.wait_for(reader.read(), 1) == b""  # EOF: closed by the node
    assert len(endpoint.by_id) == 1
    writer.close()
    busy_writer.close()
    await endpoint.close()


@on_uvloop
async def test_tcp_message_over_the_limit_is_refused_and_the_connection_closed() -> None:
    sink = Recorder()
    endpoint = await tcp_endpoint(sink, max_bytes=1024)
    reader, writer = await connect(endpoint)
    big = message(body=b"x" * 3000)
    writer.write(big)
    await until(lambda: sink.refused)
    head, source, status, reason = sink.refused[0]
    assert (status, reason) == (513, "Message Too Large")
    assert head == big[: big.index(b"\r\n\r\n") + 4] and source.connection is not None
    assert await asyncio.wait_for(reader.read(), 2) == b""
    assert sink.received == [] and not endpoint.by_id
    await endpoint.close()


@on_uvloop
async def test_tcp_header_block_that_never_ends_is_refused_at_the_limit() -> None:
    sink = Recorder()
    endpoint = await tcp_endpoint(sink, max_bytes=1024)
    reader, writer = await connect(endpoint)
    writer.write(b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Junk: yyyyyyyy\r\n" * 100)
    await until(lambda: sink.refused)
    assert sink.refused[0][2] == 513
    assert await asyncio.wait_for(reader.read(), 2) == b""
    await endpoint.close()


@on_uvloop
async def test_tcp_unframeable_content_length_is_refused_with_400() -> None:
    sink = Recorder()
    endpoint = await tcp_endpoint(sink)
    reader, writer = await connect(endpoint)
    writer.write(message().replace(b"Content-Length: 0", b"Content-Length: lots"))
    await until(lambda: sink.refused)
    assert sink.refused[0][2:] == (400, "bad Content-Length")
    assert await asyncio.wait_for(reader.read(), 2) == b""
    await endpoint.close()


# -- TCP limits (issue 10) ----------------------------------------------------------
class CountingBuffer(bytearray):
    """A connection's buffer that counts the bytes searched for the end of a head."""

    searched = 0

    def find(self, sub, start=0, end=None):  # type: ignore[no-untyped-def,override]
        CountingBuffer.searched += len(self) - start
        return super().find(sub, start) if end is None else super().find(sub, start, end)


class FakeTransport:
    def __init__(self, peer: tuple[str, int] = (HOST, 40000)) -> None:
        self.peer = peer
        self.written: list[bytes] = []
        self.closed = self.aborted = False

    def get_extra_info(self, name: str) -> tuple[str, int]:
        return self.peer

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def test_tcp_framing_searches_each_byte_once_however_the_message_is_dripped() -> None:
    sink = Recorder()
    endpoint = TcpEndpoint(sink, 65535, 300.0)
    conn = TcpConnection(endpoint, 1)
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    conn._buffer = CountingBuffer()
    CountingBuffer.searched = 0
    # 30 KB of headers, then a 30 KB body, in 2-byte segments (the drip).
    junk = "".join(f"X-Junk-{n}: {'y' * 40}\r\n" for n in range(600))
    whole = message(body=b"v" * 30000).replace(b"Max-Forwards", junk.encode() + b"Max-Forwards")
    for at in range(0, len(whole), 2):
        conn.data_received(whole[at : at + 2])
    assert [data for data, _ in sink.received] == [whole]
    # Rescanning the buffer on every segment searched ~len(head)^2/4 bytes (over 200 MB).
    assert CountingBuffer.searched < 4 * len(whole)


def test_tcp_framing_of_pipelined_messages_split_anywhere_is_unchanged() -> None:
    sink = Recorder()
    endpoint = TcpEndpoint(sink, 65535, 300.0)
    conn = TcpConnection(endpoint, 1)
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    stream = b"\r\n\r\n" + message("z9hG4bKa", b"a\r\n\r\nb") + b"\r\n" + message("z9hG4bKb")
    for size in (1, 2, 3, 5, 7, 64, len(stream)):
        sink.received.clear()
        for at in range(0, len(stream), size):
            conn.data_received(stream[at : at + size])
        assert [d for d, _ in sink.received] == [message("z9hG4bKa", b"a\r\n\r\nb"), message("z9hG4bKb")]
        assert conn.partial_since is None and not conn._buffer


@on_uvloop
async def test_tcp_bytes_short_of_a_message_do_not_keep_a_connection_alive() -> None:
    sink = Recorder()
    endpoint = TcpEndpoint(sink, 65535, 0.2, TcpLimits(read_timeout=30.0))
    await endpoint.listen(HOST, 0)
    reader, writer = await connect(endpoint)
    busy_reader, busy_writer = await connect(endpoint)
    loop = asyncio.get_running_loop()
    head = message()
    for n in range(100):  # 1 s of 10 ms ticks: one drips a head, the other sends messages
        endpoint.sweep(loop.time())
        if not writer.is_closing():
            writer.write(head[n : n + 1])
        busy_writer.write(message(f"z9hG4bK{n}"))
        await asyncio.sleep(0.01)
    assert await closed_at_once(reader)
    assert len(endpoint.by_id) == 1 and len(sink.received) == 100
    writer.close()
    busy_writer.close()
    await endpoint.close()


@on_uvloop
async def test_tcp_a_message_that_does_not_arrive_whole_in_time_closes_the_connection() -> None:
    sink = Recorder()
    metrics = NodeMetrics(register=False)
    endpoint = TcpEndpoint(sink, 65535, 300.0, TcpLimits(read_timeout=0.3), metrics=metrics)
    await endpoint.listen(HOST, 0)
    dripper_reader, dripper = await connect(endpoint)
    silent_reader, silent = await connect(endpoint)
    talker_reader, talker = await connect(endpoint)
    loop = asyncio.get_running_loop()
    started = loop.time()
    head = message()
    for n in range(60):  # 0.6 s of 10 ms ticks
        endpoint.sweep(loop.time())
        if not dripper.is_closing():
            dripper.write(head[n : n + 1])  # a byte a tick: 600 ms for the head
        if n % 10 == 0:
            talker.write(message(f"z9hG4bK{n}"))  # whole messages keep their connection
        await asyncio.sleep(0.01)
    assert await closed_at_once(dripper_reader)
    assert await closed_at_once(silent_reader)  # its first message never came
    assert loop.time() - started < 1.0
    assert len(endpoint.by_id) == 1 and len(sink.received) == 6
    assert metrics.tcp_closed["read_timeout"].value == 2
    for writer in (dripper, silent, talker):
        writer.close()
    await endpoint.close()


class Gate:
    def __init__(self, banned: set[str] = frozenset(), trusted: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.banned = banned
        self.trusted_ports = trusted
        self.admitted: list[Address] = []

    def admit(self, source: Address) -> bool:
        self.admitted.append(source)
        return source.host not in self.banned

    def trusted(self, source: Address) -> bool:
        return source.port in self.trusted_ports

    def key(self, host: str) -> str:
        return host


async def open_from(endpoint: TcpEndpoint, host: str, port: int = 0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert endpoint.address is not None
    return await asyncio.open_connection(HOST, endpoint.address.port, local_addr=(host, port))


async def closed_at_once(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 1) == b""
    except ConnectionResetError:
        return True


@on_uvloop
async def test_tcp_connections_over_the_per_ip_limit_are_closed_at_once() -> None:
    sink = Recorder()
    metrics = NodeMetrics(register=False)
    endpoint = TcpEndpoint(sink, 65535, 300.0, TcpLimits(max_per_ip=2), Gate(), metrics)
    await endpoint.listen(HOST, 0)
    kept = [await open_from(endpoint, HOST) for _ in range(2)]
    await until(lambda: len(endpoint.by_id) == 2)
    reader, writer = await open_from(endpoint, HOST)
    assert await closed_at_once(reader)
    assert metrics.tcp_closed["per_ip"].value == 1 and len(endpoint.by_id) == 2
    other_reader, other = await open_from(endpoint, "127.0.0.2")  # another address still may
    other.write(message())
    await until(lambda: sink.received)
    assert sink.received[0][1].host == "127.0.0.2"
    kept[0][1].close()  # a connection that closes frees its place
    await until(lambda: endpoint.accepted == 2)
    again_reader, again = await open_from(endpoint, HOST)
    again.write(message("z9hG4bKagain"))
    await until(lambda: len(sink.received) == 2)
    for _, w in (kept[1], (reader, writer), (other_reader, other), (again_reader, again)):
        w.close()
    await endpoint.close()


@on_uvloop
async def test_tcp_total_limit_closes_any_new_connection_and_trusted_peers_skip_the_per_ip_one() -> None:
    sink = Recorder()
    metrics = NodeMetrics(register=False)
    peer_port = free_port()
    gate = Gate(trusted={peer_port})
    endpoint = TcpEndpoint(sink, 65535, 300.0, TcpLimits(max_connections=3, max_per_ip=1), gate, metrics)
    await endpoint.listen(HOST, 0)
    phone = await open_from(endpoint, HOST)
    peer = await open_from(endpoint, HOST, peer_port)  # over the per-IP limit, but trusted
    await until(lambda: endpoint.accepted == 2)
    third = await open_from(endpoint, "127.0.0.3")
    await until(lambda: endpoint.accepted == 3)
    fourth = await open_from(endpoint, "127.0.0.4")
    assert await closed_at_once(fourth[0])
    assert metrics.tcp_closed["max_connections"].value == 1
    assert metrics.tcp_closed["per_ip"].value == 0
    for _, w in (phone, peer, third, fourth):
        w.close()
    await endpoint.close()


@on_uvloop
async def test_tcp_a_connection_the_gate_refuses_is_closed_at_once() -> None:
    sink = Recorder()
    gate = Gate(banned={"127.0.0.5"})
    endpoint = TcpEndpoint(sink, 65535, 300.0, TcpLimits(), gate)
    await endpoint.listen(HOST, 0)
    reader, writer = await open_from(endpoint, "127.0.0.5")
    assert await closed_at_once(reader)
    assert [source.host for source in gate.admitted] == ["127.0.0.5"]
    assert not endpoint.by_id and endpoint.accepted == 0
    writer.close()
    await endpoint.close()


# -- a wildcard IPv6 host takes IPv4 peers ----------------------------------------------
@on_uvloop
async def test_udp_on_ipv6_wildcard_sees_and_answers_ipv4_peers_as_ipv4() -> None:
    sink = Recorder()
    endpoint = await UdpEndpoint.bind(sink, "::", 0, 65535)
    client = await UdpClient.open()
    assert endpoint.address is not None
    client.transport.sendto(message(), (HOST, endpoint.address.port))
    await until(lambda: sink.received)
    source = sink.received[0][1]
    assert source == Address("UDP", HOST, client.port)
    assert endpoint.send(b"SIP/2.0 200 OK\r\n\r\n", source)
    await until(lambda: client.datagrams)
    # An IPv6 peer is itself.
    loop = asyncio.get_running_loop()
    v6, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("::1", 0))
    v6.sendto(message("z9hG4bKv6"), ("::1", endpoint.address.port))
    await until(lambda: len(sink.received) == 2)
    assert sink.received[1][1].host == "::1"
    v6.close()
    client.transport.close()
    await endpoint.close()


@on_uvloop
async def test_tcp_on_ipv6_wildcard_accepts_ipv4_peers_as_ipv4() -> None:
    sink = Recorder()
    gate = Gate()
    endpoint = TcpEndpoint(sink, 65535, 300.0, TcpLimits(), gate)
    await endpoint.listen("::", 0)
    reader, writer = await connect(endpoint)  # to 127.0.0.1
    writer.write(message())
    await until(lambda: sink.received)
    source = sink.received[0][1]
    assert source.host == HOST and gate.admitted == [source]
    assert (HOST, source.port) in endpoint.by_peer
    endpoint.send(b"SIP/2.0 200 OK\r\n\r\n", source._replace(connection=None))
    assert await asyncio.wait_for(reader.readexactly(18), 2) == b"SIP/2.0 200 OK\r\n\r\n"
    writer.close()
    await endpoint.close()
