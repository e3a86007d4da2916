"""A node without sockets, for tests and in-process profiling of a role's handler.

``Wire`` offers a handler what ``sipline.net.node.Node`` offers it (the
``NodeLike`` interface) over the real ``TransactionLayer`` and a clock the
caller moves, through the same dispatcher of the layer's actions
(``sipline.net.shell.Shell``), except that a ``Send`` is kept in ``out``
(bytes and destination) instead of reaching a socket, what the layer refused
is kept in ``refused``, and a handler's exception reaches the caller instead
of being logged. A send to an address in ``unreachable`` fails as a node's
does when its transport cannot reach it. The caller plays the peers:
``receive`` feeds a datagram in (one that does not parse or validate is
answered as the node answers it), ``tick`` lets time pass (the layer's
timers, then the handler's ``on_tick``), ``take`` hands over what went out.
"""

from __future__ import annotations

from collections.abc import Callable

from sipline.net.guard import Guard
from sipline.net.handler import Handler
from sipline.net.shell import Shell
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.message import Request, Response, parse_message, salvage_request
from sipline.sip.transaction import Action, Refused, Send, TransactionLayer


class Wire(Shell):
    def __init__(
        self, handler: Handler, clock: Callable[[], float], local: Address, tick: float = 0.01
    ) -> None:
        layer = TransactionLayer(clock, tick=tick, exempt=handler.trusts)
        super().__init__(handler, layer, Guard(handler.trusts))
        self.local = local
        self.out: list[tuple[bytes, Address]] = []
        self.refused: list[Refused] = []
        self.unreachable: set[Address] = set()

    # -- what the handler calls beside the shell's ---------------------------------------
    def local_address(self, transport: str) -> Address:
        return self.local._replace(transport=transport.upper())

    def send_keepalive(self, dest: Address, data: bytes = b"\r\n\r\n") -> bool:
        """Kept in ``out`` when ``dest`` names a connection (a node writes it there)."""
        if dest.connection is None or dest in self.unreachable:
            return False
        self.out.append((data, dest))
        return True

    # -- what the caller does ------------------------------------------------------------
    def receive(self, message: Request | Response | bytes, source: Address) -> None:
        data = message if isinstance(message, bytes) else message.serialise()
        actions: list[Action]
        try:
            actions = self.layer.receive(parse_message(data, stream=source.reliable), source)
        except ParseError as exc:
            actions = self.layer.answer_malformed(salvage_request(data), source, exc.status, exc.reason)
        self._carry_out(actions)

    def take(self) -> list[tuple[bytes, Address]]:
        out, self.out = self.out, []
        return out

    # -- the shell's hooks ---------------------------------------------------------------
    def _send(self, action: Send) -> None:
        if action.dest not in self.unreachable:
            self.out.append((action.data, action.dest))
        elif action.txn is not None:
            self.layer.transport_error(action.txn, "unreachable")

    def _refused(self, action: Refused) -> None:
        self.refused.append(action)

    def _handler_error(self, callback: str, call_id: str | None = None) -> None:
        raise  # the test sees the handler's exception
