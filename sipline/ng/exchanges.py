"""ng requests in flight and their replies, matched by cookie: sans-IO.

An ng request is ``<cookie> <bencoded dictionary>`` in one UDP datagram and
its reply repeats the cookie. UDP loses datagrams, so a request with no reply
after ``timeout`` seconds is sent again, unchanged, up to ``retries`` times
(what Kamailio's and OpenSIPS's rtpengine modules do); the relay keeps its
replies by cookie and answers a repeat without running the command twice.
After the last try the request fails with ``NgTimeout``.

Every send of every request waits the same ``timeout``, so the order in which
requests fall due is the order in which they were (re)sent: a FIFO, where
``expire`` looks only at the front and a reply removes its request at once.

``Exchanges`` takes the current time and hands back what to send; it owns no
socket and no clock (``sipline.ng.client`` is its asyncio shell).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sipline.ng.bencode import BencodeError, decode, encode

__all__ = ["DEFAULT_RETRIES", "DEFAULT_TIMEOUT", "Exchanges", "NgError", "NgTimeout", "Pending"]

DEFAULT_TIMEOUT = 0.5  # seconds a send waits for its reply
DEFAULT_RETRIES = 3  # sends after the first: a dead relay is given up on after 2 s

Context = TypeVar("Context")
Reply = dict[str, Any]


class NgError(Exception):
    """An ng command failed: the relay said why (``reason``), or never answered."""

    def __init__(self, reason: str, command: str = "") -> None:
        super().__init__(f"ng {command or 'request'} failed: {reason}")
        self.reason = reason
        self.command = command


class NgTimeout(NgError):
    """No reply after every retransmission, or the relay cannot be reached at all."""


@dataclass(slots=True)
class Pending(Generic[Context]):
    """One request in flight; ``context`` is the caller's (a future, say)."""

    cookie: bytes
    datagram: bytes
    command: str
    context: Context
    due: float
    sends: int = 1


class Exchanges(Generic[Context]):
    """The requests of one client waiting for their replies.

    Cookies are ``<prefix>_<n>``: a random prefix per client, so a restarted
    client is never taken for its former self by the relay's reply cache.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        prefix: str | None = None,
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be > 0 and retries >= 0")
        self.timeout = timeout
        self.retries = retries
        self._prefix = (prefix or secrets.token_hex(4)).encode() + b"_"
        self._serial = 0
        self._pending: OrderedDict[bytes, Pending[Context]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def request(self, message: Mapping[str, Any], now: float, context: Context) -> bytes:
        """Take ``message`` (a dictionary with its ``command``) in; the datagram to send."""
        command = message.get("command")
        if not isinstance(command, str):
            raise ValueError("an ng message needs a command")
        self._serial += 1
        cookie = self._prefix + str(self._serial).encode()
        datagram = cookie + b" " + encode(dict(message))
        self._pending[cookie] = Pending(cookie, datagram, command, context, now + self.timeout)
        return datagram

    def receive(self, data: bytes) -> tuple[Pending[Context], Reply | NgError] | None:
        """The request a reply datagram answers and its outcome; None for a
        reply to nothing in flight (a late duplicate, another client's)."""
        cookie, _, body = data.partition(b" ")
        pending = self._pending.pop(cookie, None)
        if pending is None:
            return None
        return pending, outcome(pending.command, body)

    def next_due(self) -> float | None:
        """When ``expire`` next has something to do."""
        if not self._pending:
            return None
        return next(iter(self._pending.values())).due

    def expire(self, now: float) -> tuple[list[bytes], list[Pending[Context]]]:
        """The datagrams to send again at ``now``, and the requests that ran out of tries."""
        again: list[bytes] = []
        failed: list[Pending[Context]] = []
        pending = self._pending
        while pending:
            first = next(iter(pending.values()))
            if first.due > now:
                break
            if first.sends > self.retries:
                del pending[first.cookie]
                failed.append(first)
            else:
                first.sends += 1
                first.due = now + self.timeout
                pending.move_to_end(first.cookie)
                again.append(first.datagram)
        return again, failed

    def abandon(self) -> list[Pending[Context]]:
        """Every request in flight, forgotten (the client closes, the relay is unreachable)."""
        gone = list(self._pending.values())
        self._pending.clear()
        return gone


def outcome(command: str, body: bytes) -> Reply | NgError:
    """A reply's dictionary, or the NgError it stands for (``result`` "error", garbage)."""
    try:
        reply = decode(body)
    except BencodeError as exc:
        return NgError(f"undecodable reply ({exc})", command)
    if not isinstance(reply, dict):
        return NgError("reply is not a dictionary", command)
    result = reply.get("result")
    if result == "error":
        reason = reply.get("error-reason")
        return NgError(reason if isinstance(reason, str) else "no reason given", command)
    if not isinstance(result, str):
        return NgError("reply without a result", command)
    return reply
