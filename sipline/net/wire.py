"""A node without sockets, for tests and in-process profiling of a role's handler.

``Wire`` offers a handler what ``sipline.net.node.Node`` offers it (``respond``,
``send_request``, ``send_stateless``, ``cancel``, ``local_address``) over the
real ``TransactionLayer`` and a clock the caller moves; it carries out the
layer's actions as the node does, except that a ``Send`` is kept in ``out``
(bytes and destination) instead of reaching a socket, and what the layer
refused is kept in ``refused``. A send to an address in ``unreachable``
fails as a node's does when its transport cannot reach it. The caller plays the peers: ``receive``
feeds a datagram in (one that does not parse or validate is answered as the
node answers it), ``take`` hands over what went out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sipline.net.guard import Guard
from sipline.net.handler import Handler
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.message import Request, Response, parse_message, salvage_request
from sipline.sip.transaction import (
    ClientTransaction,
    Deliver,
    DeliverResponse,
    Refused,
    Send,
    ServerTransaction,
    Terminated,
    TimedOut,
    TransactionLayer,
)


class Wire:
    def __init__(
        self, handler: Handler, clock: Callable[[], float], local: Address, tick: float = 0.01
    ) -> None:
        self.handler = handler
        self.local = local
        self.layer = TransactionLayer(clock, tick=tick, exempt=handler.trusts)
        self.out: list[tuple[bytes, Address]] = []
        self.refused: list[Refused] = []
        self.unreachable: set[Address] = set()
        self.guard = Guard(handler.trusts)
        node: Any = self
        self.dispatch: dict[type, Callable[[Any], None]] = {
            Send: self._send,
            Refused: self.refused.append,
            Deliver: lambda a: handler.on_request(node, a.request, a.txn, a.source),
            DeliverResponse: lambda a: handler.on_response(node, a.response, a.txn, a.source),
            TimedOut: lambda a: handler.on_timeout(node, a.txn),
            Terminated: lambda a: handler.on_terminated(node, a.txn),
        }

    # -- what the handler calls ----------------------------------------------------------
    def local_address(self, transport: str) -> Address:
        return self.local._replace(transport=transport.upper())

    def respond(self, txn: ServerTransaction, response: Response) -> None:
        self._carry_out(self.layer.respond(txn, response))

    def respond_stateless(self, txn: ServerTransaction, response: Response) -> None:
        self._carry_out(self.layer.respond_stateless(txn, response))

    def send_request(self, request: Request, dest: Address) -> ClientTransaction:
        txn, actions = self.layer.request(request, dest)
        self._carry_out(actions)
        return txn

    def send_stateless(self, message: Request | Response, dest: Address) -> None:
        self._carry_out(self.layer.send_stateless(message, dest))

    def cancel(self, txn: ClientTransaction) -> ClientTransaction | None:
        cancel, actions = self.layer.cancel(txn)
        self._carry_out(actions)
        return cancel

    # -- what the caller does ------------------------------------------------------------
    def receive(self, message: Request | Response | bytes, source: Address) -> None:
        data = message if isinstance(message, bytes) else message.serialise()
        try:
            actions = self.layer.receive(parse_message(data, stream=source.reliable), source)
        except ParseError as exc:
            actions = self.layer.answer_malformed(salvage_request(data), source, exc.status, exc.reason)
        self._carry_out(actions)

    def expire(self, now: float) -> None:
        """The layer's timers (retransmissions, timeouts) due at ``now``."""
        self._carry_out(self.layer.expire(now))

    def take(self) -> list[tuple[bytes, Address]]:
        out, self.out = self.out, []
        return out

    def _send(self, action: Send) -> None:
        if action.dest not in self.unreachable:
            self.out.append((action.data, action.dest))
        elif action.txn is not None:
            self.layer.transport_error(action.txn, "unreachable")

    def _carry_out(self, actions: Iterable[Any]) -> None:
        dispatch = self.dispatch
        for action in actions:
            dispatch[type(action)](action)
