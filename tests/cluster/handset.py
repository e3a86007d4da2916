"""A phone on a raw socket (TCP or UDP) that registers with digest, answers calls
on its own flow and places calls: what a softphone does, enough to watch proxies
fail over. ``Handset.open(user, password, host, port, transport)``."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from sipline.sip.auth import Credentials, compute_ha1, compute_response, parse_auth_header
from sipline.sip.dialog import Dialog
from sipline.sip.ids import new_branch, new_call_id, new_tag
from sipline.sip.message import Headers, Request, Response, find_message_end, parse_message

DOMAIN = "example.com"
_cnonces = itertools.count(1)


def digest(challenge: Response, request: Request, user: str, password: str, header: str) -> str:
    _, offer = parse_auth_header(challenge.headers.get_all(header)[0])
    realm, nonce, algorithm = offer["realm"], offer["nonce"], offer.get("algorithm", "MD5")
    ha1 = compute_ha1(user, realm, password, algorithm)
    cnonce, nc = f"cn{next(_cnonces)}", "00000001"
    response = compute_response(ha1, nonce, request.method, request.uri, algorithm=algorithm,
                                qop="auth", nc=nc, cnonce=cnonce)  # fmt: skip
    return Credentials(user, realm, nonce, request.uri, response, algorithm, cnonce, "auth",
                       nc).to_header()  # fmt: skip


class Handset(asyncio.Protocol, asyncio.DatagramProtocol):
    """One flow to one proxy; ``close`` and ``open`` again to move to another."""

    def __init__(self, user: str, password: str, transport_name: str) -> None:
        self.user, self.password, self.transport_name = user, password, transport_name
        self.transport: Any = None
        self.local = ("127.0.0.1", 0)
        self.proxy = ("127.0.0.1", 0)
        self.lost = asyncio.get_running_loop().create_future()  # the connection closed
        self.invites: list[Request] = []  # calls received (answered 200)
        self.answer = True
        self.reason = ""  # of the last final response to a REGISTER
        self._buffer = b""
        self._waiting: dict[tuple[str, int, str], asyncio.Future[Response]] = {}

    @classmethod
    async def open(
        cls, user: str, password: str, host: str, port: int, transport: str = "TCP"
    ) -> Handset:
        loop = asyncio.get_running_loop()
        if transport == "TCP":
            _, phone = await loop.create_connection(
                lambda: cls(user, password, "TCP"), host, port, local_addr=("127.0.0.1", 0)
            )
        else:
            _, phone = await loop.create_datagram_endpoint(
                lambda: cls(user, password, "UDP"), local_addr=("127.0.0.1", 0)
            )
        phone.proxy = (host, port)
        return phone

    # -- the wire --------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.local = transport.get_extra_info("sockname")[:2]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")  # keepalives
            end = find_message_end(self._buffer)
            if end is None:
                return
            message, self._buffer = self._buffer[:end], self._buffer[end:]
            self._take(parse_message(message, stream=True))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.strip():
            self._take(parse_message(data), addr)

    def send(self, message: Request | Response, to: tuple[str, int] | None = None) -> None:
        if self.transport_name == "TCP":
            self.transport.write(bytes(message))
        else:  # a response goes back where its request came from (RFC 3261 §18.2.2)
            self.transport.sendto(bytes(message), to or self.proxy)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- what arrives ----------------------------------------------------------------------
    def _take(self, message: Request | Response, source: tuple[str, int] | None = None) -> None:
        if isinstance(message, Response):
            if message.status < 200:
                return
            key = (message.call_id, message.cseq.number, message.cseq.method)
            waiting = self._waiting.pop(key, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message)
            return
        if message.method == "INVITE":
            self.invites.append(message)
            status = 200 if self.answer else 486
            response = message.response(status, to_tag=new_tag())
            if status == 200:
                for value in message.headers.get_all("record-route"):
                    response.headers.add("Record-Route", value)
                response.headers.add("Contact", self.contact)
            self.send(response, source)
        elif message.method != "ACK":
            self.send(message.response(200, to_tag=new_tag()), source)

    async def _ask(self, request: Request, timeout: float) -> Response:
        key = (request.call_id, request.cseq.number, request.cseq.method)
        future = self._waiting[key] = asyncio.get_running_loop().create_future()
        self.send(request)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(key, None)

    # -- what it does ----------------------------------------------------------------------
    @property
    def contact(self) -> str:
        suffix = ";transport=tcp" if self.transport_name == "TCP" else ""
        return f"<sip:{self.user}@{self.local[0]}:{self.local[1]}{suffix}>"

    def _via(self) -> str:
        host, port = self.local
        return f"SIP/2.0/{self.transport_name} {host}:{port};branch={new_branch()};rport"

    def _request(self, method: str, uri: str, to: str, call_id: str, cseq: int,
                 from_tag: str) -> Request:  # fmt: skip
        headers = Headers([
            ("Via", self._via()), ("Max-Forwards", "70"),
            ("From", f"<sip:{self.user}@{DOMAIN}>;tag={from_tag}"), ("To", f"<{to}>"),
            ("Call-ID", call_id), ("CSeq", f"{cseq} {method}"), ("Contact", self.contact),
            ("Content-Length", "0"),
        ])  # fmt: skip
        return Request(method, uri, headers)

    async def register(self, timeout: float = 3.0, patience: float = 5.0) -> int:
        """REGISTER (and its digest); the final status. A 503 with Retry-After (a
        proxy catching up) is tried again, as phones do, for ``patience`` seconds."""
        deadline = time.monotonic() + patience
        while True:
            status = await self._register(timeout)
            if status != 503 or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.2)

    async def _register(self, timeout: float) -> int:
        call_id, tag = new_call_id("127.0.0.1"), new_tag()
        aor = f"sip:{self.user}@{DOMAIN}"
        first = self._request("REGISTER", f"sip:{DOMAIN}", aor, call_id, 1, tag)
        answer = await self._ask(first, timeout)
        if answer.status == 401:
            second = self._request("REGISTER", f"sip:{DOMAIN}", aor, call_id, 2, tag)
            second.headers.add("Authorization", digest(answer, second, self.user, self.password,
                                                       "WWW-Authenticate"))  # fmt: skip
            answer = await self._ask(second, timeout)
        self.reason = answer.reason
        return answer.status

    async def call(self, callee: str, timeout: float = 3.0) -> int:
        """INVITE ``callee`` (a user of the domain), answer the 407; on 200 ACK and BYE.
        The INVITE's final status."""
        call_id, tag, uri = new_call_id("127.0.0.1"), new_tag(), f"sip:{callee}@{DOMAIN}"
        first = self._request("INVITE", uri, uri, call_id, 1, tag)
        answer = await self._ask(first, timeout)
        if answer.status != 407:
            return answer.status
        self.send(_ack_failure(first, answer))
        invite = self._request("INVITE", uri, uri, call_id, 2, tag)
        invite.headers.add("Proxy-Authorization", digest(answer, invite, self.user, self.password,
                                                         "Proxy-Authenticate"))  # fmt: skip
        final = await self._ask(invite, timeout)
        if final.status != 200:
            self.send(_ack_failure(invite, final))
            return final.status
        dialog = Dialog.uac(invite, final)
        ack, _ = dialog.create_ack(invite.cseq.number, via=self._via())
        self.send(ack)
        bye, _ = dialog.create_request("BYE", via=self._via(), contact=self.contact)
        bye_answer = await self._ask(bye, timeout)
        assert bye_answer.status == 200, (bye_answer.status, bye_answer.reason)
        return 200


def _ack_failure(invite: Request, response: Response) -> Request:
    headers = Headers([
        ("Via", invite.headers.get_all("via")[0]), ("Max-Forwards", "70"),
        ("From", invite.headers.get("from") or ""), ("To", response.headers.get("to") or ""),
        ("Call-ID", invite.call_id), ("CSeq", f"{invite.cseq.number} ACK"),
        ("Content-Length", "0"),
    ])  # fmt: skip
    return Request("ACK", invite.uri, headers)


async def reached(caller: Handset, callee: str, deadline: float) -> float:
    """Call ``callee`` until the call is answered; the seconds it took (AssertionError
    after ``deadline`` seconds)."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        try:
            if await caller.call(callee, timeout=1.0) == 200:
                return time.monotonic() - started
        except TimeoutError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{callee} not reached through {caller.proxy} within {deadline} s")
