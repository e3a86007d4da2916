"""What a phone does, for tests of the registrar and authentication: build requests, answer challenges."""

from __future__ import annotations

import asyncio
import itertools

from sipline.sip.auth import Credentials, compute_ha1, compute_response, parse_auth_header
from sipline.sip.ids import new_branch
from sipline.sip.message import Request, Response, find_message_end, parse_message
from sipline.storage import Subscriber

PASSWORD = "correct horse"
_cnonces = itertools.count(1)


def subscriber(aor: str, password: str = PASSWORD, id_: int = 1) -> Subscriber:
    username, _, domain = aor.partition("@")
    return Subscriber(
        id=id_,
        username=username,
        domain=domain,
        ha1_md5=compute_ha1(username, domain, password, "MD5"),
        ha1_sha256=compute_ha1(username, domain, password, "SHA-256"),
        account=None,
        created_at=0.0,
    )


def request(
    method: str,
    uri: str,
    *,
    from_: str,
    to: str,
    call_id: str = "call-1@phone",
    cseq: int = 1,
    via: str = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1;rport",
    headers: tuple[tuple[str, str], ...] = (),
) -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: <sip:{from_}>;tag=ph1",
        f"To: <sip:{to}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *(f"{name}: {value}" for name, value in headers),
        "Content-Length: 0",
    ]
    parsed = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(parsed, Request)
    return parsed


def challenge_params(response: Response, header: str = "WWW-Authenticate") -> list[dict[str, str]]:
    """The params of each challenge, in the order offered."""
    return [parse_auth_header(value)[1] for value in response.headers.get_all(header)]


def authorization(
    challenge: Response,
    req: Request,
    username: str,
    password: str = PASSWORD,
    *,
    algorithm: str | None = None,
    proxy: bool = False,
) -> str:
    """The Authorization (or Proxy-Authorization) value answering ``challenge`` for ``req``."""
    offers = challenge_params(challenge, "Proxy-Authenticate" if proxy else "WWW-Authenticate")
    offer = (
        offers[0] if algorithm is None else next(o for o in offers if o["algorithm"] == algorithm)
    )
    realm, nonce, chosen = offer["realm"], offer["nonce"], offer["algorithm"]
    ha1 = compute_ha1(username, realm, password, chosen)
    cnonce, nc = f"cn{next(_cnonces)}", "00000001"
    digest = compute_response(
        ha1, nonce, req.method, req.uri, algorithm=chosen, qop="auth", nc=nc, cnonce=cnonce
    )
    creds = Credentials(username, realm, nonce, req.uri, digest, chosen, cnonce, "auth", nc)
    return creds.to_header()


def with_header(req: Request, name: str, value: str) -> Request:
    """A copy of ``req`` with one more header (as the phone's next attempt)."""
    copy = parse_message(req.serialise())
    assert isinstance(copy, Request)
    copy.headers.add(name, value)
    return copy


class Phone:
    """A phone's socket on 127.0.0.1: sends requests, collects their final responses.

    With ``answer_options`` it answers OPTIONS (NAT keepalives) with 200; it
    records every request it receives in ``received``."""

    transport_name = "UDP"

    def __init__(self) -> None:
        self.port = 0
        self.answer_options = True
        self.received: list[Request] = []
        self._waiting: dict[tuple[str, int], asyncio.Future[Response]] = {}

    def write(self, data: bytes, dest: tuple[str, int]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def deliver(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        if isinstance(message, Request):
            self.received.append(message)
            if message.method == "OPTIONS" and self.answer_options:
                self.write(bytes(message.response(200)), addr)
            return
        waiting = self._waiting.get((message.call_id, message.cseq.number))
        if waiting is not None and not waiting.done() and message.status >= 200:
            waiting.set_result(message)

    @property
    def via(self) -> str:
        return f"SIP/2.0/{self.transport_name} 127.0.0.1:{self.port};branch={new_branch()};rport"

    async def send(self, req: Request, dest: tuple[str, int], timeout: float = 5.0) -> Response:
        """Send ``req`` and wait for its final response."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[(req.call_id, req.cseq.number)] = future
        self.write(bytes(req), dest)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            del self._waiting[(req.call_id, req.cseq.number)]

    async def register(
        self,
        dest: tuple[str, int],
        aor: str = "alice@example.com",
        *,
        contact: str | None = None,
        expires: int | None = None,
        call_id: str | None = None,
        cseq: int = 1,
        password: str = PASSWORD,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Response:
        """REGISTER, answer the challenge, give the final response (uses CSeq ``cseq``, ``cseq``+1)."""
        user, _, domain = aor.partition("@")
        extra = list(headers)
        extra.append(("Contact", contact or f"<sip:{user}@127.0.0.1:{self.port}>"))
        if expires is not None:
            extra.append(("Expires", str(expires)))
        call_id = call_id or f"reg-{user}-{self.port}"

        def build(number: int) -> Request:
            return request("REGISTER", f"sip:{domain}", from_=aor, to=aor, call_id=call_id,
                           cseq=number, via=self.via, headers=tuple(extra))  # fmt: skip

        first = build(cseq)
        challenge = await self.send(first, dest)
        if challenge.status != 401:
            return challenge
        second = build(cseq + 1)
        answer = authorization(challenge, second, user, password)
        return await self.send(with_header(second, "Authorization", answer), dest)


class UdpPhone(Phone, asyncio.DatagramProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls) -> UdpPhone:
        loop = asyncio.get_running_loop()
        _, phone = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return phone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.deliver(data, addr)

    def write(self, data: bytes, dest: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, dest)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpPhone(Phone, asyncio.Protocol):
    """A phone on one TCP connection; counts the CRLF CRLF keepalives it receives in ``pings``."""

    transport_name = "TCP"

    def __init__(self) -> None:
        super().__init__()
        self.transport: asyncio.Transport | None = None
        self.pings = 0
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, host: str, port: int) -> TcpPhone:
        loop = asyncio.get_running_loop()
        _, phone = await loop.create_connection(cls, host, port)
        return phone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while buffer:
            if buffer.startswith(b"\r\n\r\n"):
                self.pings += 1
                del buffer[:4]
                continue
            end = find_message_end(buffer)
            if end is None:
                return
            message = bytes(buffer[:end])
            del buffer[:end]
            self.deliver(message, ("", 0))

    def write(self, data: bytes, dest: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
