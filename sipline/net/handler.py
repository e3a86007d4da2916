"""What a role gives the node, and what the node gives the role.

Subclass ``Handler`` and override what the role needs; every default does
nothing. Callbacks run on the event loop, synchronously, straight from the
datagram, segment or tick that caused them: they must not block, and they
answer through the node (``NodeLike``: ``respond``, ``send_request`` ...),
not by returning values. An exception is logged and counted by the node,
and a request whose handler raised is answered 500.

``NodeLike`` is all a handler may call on a node. ``sipline.net.node.Node``
(sockets) and ``sipline.net.wire.Wire`` (tests, profiling) implement it
with one dispatcher of the transaction layer's actions
(``sipline.net.shell.Shell``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sipline.net.guard import Guard
    from sipline.sip.address import Address
    from sipline.sip.message import Request, Response
    from sipline.sip.transaction import ClientTransaction, ServerTransaction, Transaction


class NodeLike(Protocol):
    """What a handler may ask of the node it runs on."""

    @property
    def guard(self) -> Guard:
        """Flood limits and bans: report failed authentications to it."""
        ...

    def local_address(self, transport: str) -> Address:
        """Where the node listens on ``transport``, for Via and Contact;
        LookupError when it does not."""
        ...

    def via_address(self, transport: str) -> Address:
        """Where responses to the node's own requests on ``transport`` come back
        (its Via's sent-by): ``local_address``, but a worker's own UDP socket
        (sipline.net.workers); LookupError when it does not listen there."""
        ...

    def worker_ports(self) -> tuple[int, ...]:
        """Every worker's own UDP port (this one's among them); () for a node alone."""
        ...

    def respond(self, txn: ServerTransaction, response: Response) -> None: ...

    def respond_stateless(self, txn: ServerTransaction, response: Response) -> None:
        """Answer once and forget ``txn`` (TransactionLayer.respond_stateless)."""
        ...

    def send_request(self, request: Request, dest: Address) -> ClientTransaction: ...

    def send_stateless(self, message: Request | Response, dest: Address) -> None: ...

    def send_keepalive(self, dest: Address, data: bytes = b"\r\n\r\n") -> bool:
        """A keepalive on the stream connection ``dest.connection`` only; False when it is gone."""
        ...

    def cancel(self, txn: ClientTransaction) -> ClientTransaction | None: ...

    def abandon(self, txn: ClientTransaction) -> None:
        """Send ``txn``'s request no more (TransactionLayer.abandon)."""
        ...

    def retransmit_2xx(self, txn: ServerTransaction) -> None:
        """Send its 2xx again until ``stop_2xx`` (TransactionLayer.retransmit_2xx)."""
        ...

    def stop_2xx(self, txn: ServerTransaction) -> None: ...


class Handler:
    def trusts(self, source: Address) -> bool:
        """``source`` is a peer of ours (configured by address): exempt from the
        node's flood limits. Strangers are the default."""
        return False

    def on_request(
        self, node: NodeLike, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        """A new request. ``txn`` is its ServerTransaction; None for the ACK of a 2xx.

        For CANCEL, ``txn.cancels`` is the INVITE's transaction, or None if unknown."""

    def on_response(
        self, node: NodeLike, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        """A response to one of ``node.send_request``'s transactions (None: a stray one)."""

    def on_timeout(self, node: NodeLike, txn: Transaction) -> None:
        """Client Timer B/F fired (treat as 408), or server Timer H (no ACK came)."""

    def on_terminated(self, node: NodeLike, txn: Transaction) -> None:
        """The transaction is gone from the layer."""

    def on_tick(self, node: NodeLike, now: float) -> None:
        """The node's periodic tick (every ``sipline.net.node.TICK``, 10 ms), after
        the transaction timers: run the role's own timers due at ``now``
        (monotonic, the node's clock). The node's tick is the only timer a
        role has: it keeps no loop callback of its own. It must cost little
        when nothing is due (a deadline queue's front, a comparison)."""
