"""An ng client on asyncio: drives one relay (ours or rtpengine) over UDP.

Every command returns an ``asyncio.Future`` at once, not a coroutine: a
coroutine awaits it (the B2BUA), a callback-driven role adds a done callback
(the proxy, which must not start a task per call). ``open`` needs no await
and can run from a callback: commands sent while the socket is being opened
go out as soon as it is. One timer handle, set for the earliest
retransmission, serves every request.

Failures are ``NgError``: the relay's ``error-reason``, or ``NgTimeout`` when
it never answered. A connected UDP socket learns from ICMP that nothing
listens on the relay's port; every request in flight then fails at once
instead of waiting out its retransmissions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from sipline.ng.exchanges import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Exchanges,
    NgError,
    NgTimeout,
    Pending,
    Reply,
)

__all__ = ["NgClient", "NgError", "NgTimeout"]

Parse = Callable[[Reply], Any]
Context = tuple["asyncio.Future[Any]", Parse]


class NgClient:
    """The ng client of one relay at ``host``:``port``.

    ``open()`` (needs a running loop; done by the first command if not
    before) and ``close()`` (fails what is still in flight), or
    ``async with NgClient(...)``. Flags are keyword arguments with ``_`` for
    ``-``: ``offer(..., received_from=["IP4", "192.0.2.1"], replace=["origin"])``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.address = (host, port)
        self.exchanges: Exchanges[Context] = Exchanges(timeout=timeout, retries=retries)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Task[None] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._unsent: list[bytes] = []
        self._broken: NgError | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -- commands ------------------------------------------------------------------------
    def ping(self) -> asyncio.Future[str]:
        """The relay's "pong", when it is alive."""
        return self.request({"command": "ping"}, _result)

    def offer(
        self, call_id: str, from_tag: str, sdp: bytes | str, **flags: Any
    ) -> asyncio.Future[bytes]:
        """The offer ``from_tag`` made, anchored: the SDP to send on to the peer."""
        message = {"command": "offer", "call-id": call_id, "from-tag": from_tag, "sdp": sdp}
        return self.request(_with_flags(message, flags), _sdp)

    def answer(
        self, call_id: str, from_tag: str, to_tag: str, sdp: bytes | str, **flags: Any
    ) -> asyncio.Future[bytes]:
        """``to_tag``'s answer to ``from_tag``'s offer, anchored: the SDP for the offerer."""
        message = {
            "command": "answer", "call-id": call_id, "from-tag": from_tag, "to-tag": to_tag,
            "sdp": sdp,
        }  # fmt: skip
        return self.request(_with_flags(message, flags), _sdp)

    def delete(
        self, call_id: str, from_tag: str, to_tag: str | None = None, **flags: Any
    ) -> asyncio.Future[Reply]:
        """End the call's media; the reply carries its statistics (``tags``, ``totals``)."""
        message = {"command": "delete", "call-id": call_id, "from-tag": from_tag, "to-tag": to_tag}
        return self.request(_with_flags(message, flags), _whole)

    def query(
        self, call_id: str, from_tag: str | None = None, to_tag: str | None = None
    ) -> asyncio.Future[Reply]:
        """The statistics of a call that is up."""
        message = {"command": "query", "call-id": call_id, "from-tag": from_tag, "to-tag": to_tag}
        return self.request(_with_flags(message, {}), _whole)

    def list_calls(self, limit: int = 32) -> asyncio.Future[list[str]]:
        """The Call-IDs the relay holds (at most ``limit``)."""
        return self.request({"command": "list", "limit": limit}, _calls)

    def request(
        self, message: Mapping[str, Any], parse: Parse | None = None
    ) -> asyncio.Future[Any]:
        """Send any ng ``message``; its future takes ``parse(reply)`` (the reply
        itself without ``parse``) or an NgError."""
        self.open()
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[Any] = loop.create_future()
        if self._broken is not None:
            future.set_exception(_for(self._broken, str(message.get("command", ""))))
            return future
        datagram = self.exchanges.request(message, loop.time(), (future, parse or _whole))
        self._send(datagram)
        if self._timer is None:
            self._schedule()
        return future

    # -- life ----------------------------------------------------------------------------
    def open(self) -> None:
        """Start opening the socket (on the running loop); commands may be sent at once."""
        if self._opening is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        self._opening = loop.create_task(self._open())

    async def start(self) -> None:
        """Open the socket and wait until it is open (NgError if it cannot be)."""
        self.open()
        assert self._opening is not None
        await self._opening
        if self._broken is not None:
            raise self._broken

    async def _open(self) -> None:
        assert self._loop is not None
        try:
            # Connected: the kernel drops datagrams from anyone but the relay, and
            # reports ICMP errors for it (RFC 1122 §4.1.3.3), which an unconnected socket hides.
            await self._loop.create_datagram_endpoint(
                lambda: _Endpoint(self), remote_addr=self.address
            )
        except OSError as exc:
            self._broken = NgError(f"cannot open a socket to {self.address}: {exc}")
            self._fail(self.exchanges.abandon(), self._broken)

    def close(self) -> None:
        """Fail every request in flight and release the socket."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        self._fail(self.exchanges.abandon(), NgError("client closed"))
        self._unsent.clear()
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    async def __aenter__(self) -> NgClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- the wire --------------------------------------------------------------------------
    def _connected(self, transport: asyncio.DatagramTransport) -> None:
        self._transport = transport
        unsent, self._unsent = self._unsent, []
        for datagram in unsent:
            transport.sendto(datagram)

    def _send(self, datagram: bytes) -> None:
        if self._transport is None:
            self._unsent.append(datagram)  # the socket is still being opened
        else:
            self._transport.sendto(datagram)

    def _deliver(self, data: bytes) -> None:
        matched = self.exchanges.receive(data)
        if matched is None:
            return
        pending, reply = matched
        future, parse = pending.context
        if future.done():
            return  # its caller gave up on it
        if isinstance(reply, NgError):
            future.set_exception(reply)
            return
        try:
            future.set_result(parse(reply))
        except NgError as exc:
            future.set_exception(_for(exc, pending.command))

    def _unreachable(self) -> None:
        """ICMP port unreachable: no relay listens there right now."""
        host, port = self.address
        self._fail(self.exchanges.abandon(), NgTimeout(f"relay {host}:{port} unreachable"))

    # -- retransmissions ---------------------------------------------------------------------
    def _schedule(self) -> None:
        due = self.exchanges.next_due()
        if due is None or self._loop is None:
            self._timer = None
            return
        self._timer_at = due
        self._timer = self._loop.call_at(due, self._expire)

    def _expire(self) -> None:
        assert self._loop is not None
        # call_at may run a little early (clock resolution): never before the due time.
        now = max(self._loop.time(), self._timer_at)
        again, failed = self.exchanges.expire(now)
        for datagram in again:
            self._send(datagram)
        host, port = self.address
        for pending in failed:
            reason = f"no reply from {host}:{port} after {pending.sends} tries"
            self._fail([pending], NgTimeout(reason, pending.command))
        self._schedule()

    @staticmethod
    def _fail(pending: list[Pending[Context]], error: NgError) -> None:
        for item in pending:
            future = item.context[0]
            if not future.done():
                future.set_exception(_for(error, item.command))


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, client: NgClient) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client._connected(transport)  # type: ignore[arg-type]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client._deliver(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.client._unreachable()


def _for(error: NgError, command: str) -> NgError:
    """A copy of ``error`` naming the command it failed (one exception per future)."""
    return type(error)(error.reason, error.command or command)


def _with_flags(message: dict[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: value for key, value in message.items() if value is not None}
    for name, value in flags.items():
        if value is not None:
            out[name.replace("_", "-")] = value
    return out


def _result(reply: Reply) -> str:
    return str(reply["result"])


def _whole(reply: Reply) -> Reply:
    return reply


def _sdp(reply: Reply) -> bytes:
    sdp = reply.get("sdp")
    if not isinstance(sdp, str):
        raise NgError("reply without sdp")
    return sdp.encode("utf-8", "surrogateescape")  # as bencode decoded it


def _calls(reply: Reply) -> list[str]:
    calls = reply.get("calls")
    if not isinstance(calls, list):
        raise NgError("reply without calls")
    return [str(call) for call in calls]
