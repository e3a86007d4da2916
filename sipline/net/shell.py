"""What ``Node`` and ``Wire`` share: the node interface a handler calls, and the
one dispatcher that carries out the transaction layer's actions.

Each handler call (``respond``, ``send_request`` ...) goes to the sans-IO
``TransactionLayer`` and the actions that come back are carried out here:
``Deliver``, ``DeliverResponse``, ``TimedOut`` and ``Terminated`` become the
handler's callbacks, ``Send`` and ``Refused`` go to the subclass (a socket,
or a list a test reads). ``tick`` runs the layer's timers, then the
handler's ``on_tick``: the only clock a role is driven by.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from sipline.logs import event
from sipline.net.guard import Guard
from sipline.net.handler import Handler
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.ids import new_tag
from sipline.sip.message import Request, Response
from sipline.sip.transaction import (
    Action,
    ClientTransaction,
    Deliver,
    DeliverResponse,
    Refused,
    Send,
    ServerTransaction,
    State,
    Terminated,
    TimedOut,
    TransactionLayer,
)

log = logging.getLogger("sipline.node")

_UNANSWERED = frozenset((State.TRYING, State.PROCEEDING))


class Shell:
    """The handler's node over ``layer``; a subclass sends (``_send``), counts what
    the layer refused (``_refused``), says where it listens (``local_address``)
    and what a handler's exception becomes (``_handler_error``). What goes in and
out is counted in the guard's metrics (the node's, or a Wire's own): requests
by method, responses by code, new calls (INVITEs outside a dialog)."""

    server_header = "sipline"  # in the 500 answering a request whose handler raised

    def __init__(self, handler: Handler, layer: TransactionLayer, guard: Guard) -> None:
        self.handler = handler
        self.layer = layer
        self.guard = guard
        self.metrics = guard.metrics
        self._dispatch: dict[type, Callable[[Any], None]] = {
            Send: self._send,
            Deliver: self._deliver,
            DeliverResponse: self._deliver_response,
            Refused: self._refused,
            TimedOut: self._timed_out,
            Terminated: self._terminated,
        }

    # -- what the handler calls (sipline.net.handler.NodeLike) -----------------------
    def local_address(self, transport: str) -> Address:
        raise NotImplementedError

    def via_address(self, transport: str) -> Address:
        return self.local_address(transport)

    def worker_ports(self) -> tuple[int, ...]:
        return ()

    def respond(self, txn: ServerTransaction, response: Response) -> None:
        status = response.status
        self.metrics.outbound.response(status)
        if 200 <= status < 300 and txn.method == "INVITE":
            _answered(txn, response)
        self._carry_out(self.layer.respond(txn, response))

    def respond_stateless(self, txn: ServerTransaction, response: Response) -> None:
        """Answer and forget ``txn`` at once (see TransactionLayer.respond_stateless)."""
        self.metrics.outbound.response(response.status)
        self._carry_out(self.layer.respond_stateless(txn, response))

    def send_request(self, request: Request, dest: Address) -> ClientTransaction:
        self.metrics.outbound.request(request.method)
        txn, actions = self.layer.request(request, dest)
        self._carry_out(actions)
        return txn

    def send_stateless(self, message: Request | Response, dest: Address) -> None:
        outbound = self.metrics.outbound
        if isinstance(message, Response):
            outbound.response(message.status)
        else:
            outbound.request(message.method)
        self._carry_out(self.layer.send_stateless(message, dest))

    def send_keepalive(self, dest: Address, data: bytes = b"\r\n\r\n") -> bool:
        raise NotImplementedError

    def cancel(self, txn: ClientTransaction) -> ClientTransaction | None:
        cancel, actions = self.layer.cancel(txn)
        self._carry_out(actions)
        return cancel

    def abandon(self, txn: ClientTransaction) -> None:
        self.layer.abandon(txn)

    def retransmit_2xx(self, txn: ServerTransaction) -> None:
        self.layer.retransmit_2xx(txn)

    def stop_2xx(self, txn: ServerTransaction) -> None:
        self.layer.stop_2xx(txn)

    # -- time ------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """The layer's timers due at ``now`` (retransmissions, timeouts), then the handler's."""
        self._carry_out(self.layer.expire(now))
        try:
            self.handler.on_tick(self, now)
        except Exception:
            self._handler_error("on_tick")

    # -- carrying out the layer's actions --------------------------------------------
    def _carry_out(self, actions: Iterable[Action]) -> None:
        dispatch = self._dispatch
        for action in actions:
            dispatch[type(action)](action)

    def _send(self, action: Send) -> None:
        raise NotImplementedError

    def _refused(self, action: Refused) -> None:
        raise NotImplementedError

    def _handler_error(self, callback: str, call_id: str | None = None) -> None:
        """Called while the handler's exception is being handled."""
        raise NotImplementedError

    def _deliver(self, action: Deliver) -> None:
        request, txn = action.request, action.txn
        method = request.method
        self.metrics.inbound.request(method)
        try:
            self.handler.on_request(self, request, txn, action.source)
        except Exception:
            self._handler_error("on_request", request.call_id)
            if txn is not None and txn.state in _UNANSWERED:
                self._answer_500(txn, request)
        if method == "INVITE" and txn is not None:
            self._count_call(request)

    def _count_call(self, request: Request) -> None:
        # After the handler: it has parsed To (cached) and answered a bad one.
        try:
            if request.to.tag is None:
                self.metrics.calls.inc()
        except ParseError:
            pass

    def _deliver_response(self, action: DeliverResponse) -> None:
        self.metrics.inbound.response(action.response.status)
        try:
            self.handler.on_response(self, action.response, action.txn, action.source)
        except Exception:
            self._handler_error("on_response", action.response.call_id)

    def _timed_out(self, action: TimedOut) -> None:
        try:
            self.handler.on_timeout(self, action.txn)
        except Exception:
            self._handler_error("on_timeout")

    def _terminated(self, action: Terminated) -> None:
        try:
            self.handler.on_terminated(self, action.txn)
        except Exception:
            self._handler_error("on_terminated")

    def _answer_500(self, txn: ServerTransaction, request: Request) -> None:
        """The handler raised before answering: a stateless 500 ends the
        transaction (§21.5.1), and if even that fails it is dropped, never left open."""
        try:
            response = request.response(500, to_tag=new_tag())
            response.headers.add("Server", self.server_header)
            self.respond_stateless(txn, response)
        except Exception:
            self._carry_out(self.layer.forget(txn))


def _answered(txn: ServerTransaction, response: Response) -> None:
    """A call answered through this node, at info (a re-INVITE's 2xx is no new call)."""
    if not log.isEnabledFor(logging.INFO):
        return
    try:
        if txn.request.to.tag is None:
            event(log, "call_answered", call_id=response.call_id, status=response.status,
                  source=txn.source)  # fmt: skip
    except ParseError:
        pass
