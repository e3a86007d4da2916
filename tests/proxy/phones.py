"""Phones for in-process proxy tests: raw UDP and TCP sockets on 127.0.0.1 that
build requests and answers by hand, and a stand-in registrar in front of the
router (REGISTER stores a binding with the source it came from)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from proxy.location import Binding, Location
from sipline.net.handler import Handler
from sipline.net.node import Node
from sipline.sip.address import Address
from sipline.sip.dialog import Dialog
from sipline.sip.ids import new_branch, new_call_id, new_tag
from sipline.sip.message import Headers, Request, Response, parse_message
from sipline.sip.transaction import ClientTransaction, ServerTransaction, Transaction

HOST = "127.0.0.1"
WAIT = 2.0  # how long a message that should come is waited for
QUIET = 0.3  # how long "nothing comes" is watched


class Phone:
    """A UA: sends to the proxy, queues what arrives, answers by hand."""

    transport_name = "UDP"

    def __init__(self, proxy_port: int) -> None:
        self.proxy_port = proxy_port
        self.inbox: asyncio.Queue[Request | Response] = asyncio.Queue()
        self.port = 0

    # -- the wire ------------------------------------------------------------------
    def send(self, message: Request | Response) -> None:
        raise NotImplementedError

    def _received(self, data: bytes) -> None:
        self.inbox.put_nowait(parse_message(data, stream=self.transport_name == "TCP"))

    async def receive(self, timeout: float = WAIT) -> Request | Response:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def request(self, method: str, timeout: float = WAIT) -> Request:
        message = await self.receive(timeout)
        assert isinstance(message, Request) and message.method == method, message
        return message

    async def response(self, status: int | None = None, timeout: float = WAIT) -> Response:
        """The next response; a 100 Trying (hop by hop, sent only when the proxy
        is silent for 200 ms, RFC 3261 §17.2.1) is passed over unless asked for."""
        message = await self.receive(timeout)
        while isinstance(message, Response) and message.status == 100 and status != 100:
            message = await self.receive(timeout)
        assert isinstance(message, Response), message
        if status is not None:
            assert message.status == status, (message.status, message.reason)
        return message

    async def silence(self, duration: float = QUIET) -> None:
        await asyncio.sleep(duration)
        assert self.inbox.empty(), self.inbox.get_nowait()

    # -- building messages ---------------------------------------------------------------
    @property
    def address(self) -> Address:
        return Address(self.transport_name, HOST, self.port)

    def via(self) -> str:
        return f"SIP/2.0/{self.transport_name} {HOST}:{self.port};branch={new_branch()};rport"

    def contact(self, user: str) -> str:
        transport = ";transport=tcp" if self.transport_name == "TCP" else ""
        return f"<sip:{user}@{HOST}:{self.port}{transport}>"

    def new_request(
        self,
        method: str,
        uri: str,
        *,
        user: str = "alice",
        to: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
        contact: str | None = None,
        max_forwards: int = 70,
    ) -> Request:
        headers = Headers(
            [
                ("Via", self.via()),
                ("Max-Forwards", str(max_forwards)),
                ("From", f"<sip:{user}@example.com>;tag={new_tag()}"),
                ("To", to or f"<{uri}>"),
                ("Call-ID", new_call_id(HOST)),
                ("CSeq", f"1 {method}"),
                ("Contact", contact or self.contact(user)),
                *extra,
                ("Content-Length", "0"),
            ]
        )
        return Request(method, uri, headers)

    def register(self, user: str, *, q: float | None = None, contact: str | None = None) -> Request:
        contact = contact or self.contact(user)
        if q is not None:
            contact += f";q={q}"
        return self.new_request(
            "REGISTER",
            "sip:example.com",
            user=user,
            to=f"<sip:{user}@example.com>",
            contact=contact,
        )

    def answer(
        self, request: Request, status: int, tag: str | None = None, contact: str | None = None
    ) -> Response:
        """The answer a UAS sends: a tag and a Contact on dialog-creating answers,
        the Record-Route copied (§12.1.1)."""
        response = request.response(status, to_tag=tag or new_tag())
        if request.method == "INVITE" and 100 < status < 300:
            for value in request.headers.get_all("record-route"):
                response.headers.add("Record-Route", value)
            response.headers.add("Contact", contact or self.contact("ua"))
        self.send(response)
        return response

    def cancel(self, invite: Request) -> Request:
        headers = Headers(
            [
                ("Via", invite.headers.get_all("via")[0]),
                ("Max-Forwards", "70"),
                ("From", invite.headers.get("from") or ""),
                ("To", invite.headers.get("to") or ""),
                ("Call-ID", invite.call_id),
                ("CSeq", f"{invite.cseq.number} CANCEL"),
                ("Content-Length", "0"),
            ]
        )
        cancel = Request("CANCEL", invite.uri, headers)
        self.send(cancel)
        return cancel

    def ack_failure(self, invite: Request, response: Response) -> None:
        """The ACK for a 3xx-6xx: same branch as the INVITE (§17.1.1.3)."""
        headers = Headers(
            [
                ("Via", invite.headers.get_all("via")[0]),
                ("Max-Forwards", "70"),
                ("From", invite.headers.get("from") or ""),
                ("To", response.headers.get("to") or ""),
                ("Call-ID", invite.call_id),
                ("CSeq", f"{invite.cseq.number} ACK"),
                ("Content-Length", "0"),
            ]
        )
        self.send(Request("ACK", invite.uri, headers))

    def ack(self, dialog: Dialog, invite: Request) -> Request:
        ack, _ = dialog.create_ack(invite.cseq.number, via=self.via())
        self.send(ack)
        return ack

    def in_dialog(self, dialog: Dialog, method: str) -> Request:
        request, _ = dialog.create_request(method, via=self.via(), contact=self.contact("ua"))
        self.send(request)
        return request


class UdpPhone(Phone, asyncio.DatagramProtocol):
    def __init__(self, proxy_port: int) -> None:
        Phone.__init__(self, proxy_port)
        self.transport: Any = None

    @classmethod
    async def open(cls, proxy_port: int) -> UdpPhone:
        loop = asyncio.get_running_loop()
        _, phone = await loop.create_datagram_endpoint(
            lambda: cls(proxy_port), local_addr=(HOST, 0)
        )
        return phone

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self._received(data)

    def send(self, message: Request | Response) -> None:
        self.transport.sendto(bytes(message), (HOST, self.proxy_port))

    def close(self) -> None:
        self.transport.close()


class TcpPhone(Phone):
    transport_name = "TCP"

    def __init__(
        self, proxy_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(proxy_port)
        self.reader, self.writer = reader, writer
        self.port = writer.get_extra_info("sockname")[1]
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, proxy_port: int) -> TcpPhone:
        return cls(proxy_port, *await asyncio.open_connection(HOST, proxy_port))

    async def _read(self) -> None:
        while True:
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = parse_message(head, stream=True).content_length or 0
            body = await self.reader.readexactly(length) if length else b""
            self._received(head + body)

    def send(self, message: Request | Response) -> None:
        self.writer.write(bytes(message))

    def close(self) -> None:
        self._task.cancel()
        self.writer.close()


class StandInRegistrar(Handler):
    """REGISTER -> a binding (with its real source) in the Location, 200; all else to the router."""

    def __init__(self, router: Any, location: Location) -> None:
        self.router = router
        self.location = location

    def on_request(
        self, node: Node, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        if request.method != "REGISTER" or txn is None:
            self.router.on_request(node, request, txn, source)
            return
        contact = request.contacts[0]
        uri = request.to.uri
        binding = Binding(
            aor=f"{uri.user}@example.com",  # type: ignore[union-attr]
            contact=contact.uri_text,
            expires_at=time.time() + 3600,
            q=contact.q,
            source=source,
            path=tuple(request.headers.values("path")),
        )
        self.location.apply([binding])
        node.respond(txn, request.response(200, to_tag=new_tag()))

    def on_response(
        self, node: Node, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        self.router.on_response(node, response, txn, source)

    def on_timeout(self, node: Node, txn: Transaction) -> None:
        self.router.on_timeout(node, txn)

    def on_terminated(self, node: Node, txn: Transaction) -> None:
        self.router.on_terminated(node, txn)

    def on_tick(self, node: Node, now: float) -> None:
        self.router.on_tick(node, now)
