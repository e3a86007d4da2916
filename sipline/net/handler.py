"""What a role gives the node: the callbacks that make its decisions.

Subclass ``Handler`` and override what the role needs; every default does
nothing. Callbacks run on the event loop, synchronously, straight from the
datagram or segment that caused them: they must not block, and they answer
through the node (``node.respond``, ``node.send_request`` ...), not by
returning values. An exception is logged and counted by the node, and a
request whose handler raised is answered 500.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sipline.net.node import Node
    from sipline.sip.address import Address
    from sipline.sip.message import Request, Response
    from sipline.sip.transaction import ClientTransaction, ServerTransaction, Transaction


class Handler:
    def trusts(self, source: Address) -> bool:
        """``source`` is a peer of ours (configured by address): exempt from the
        node's flood limits. Strangers are the default."""
        return False

    def on_request(
        self, node: Node, request: Request, txn: ServerTransaction | None, source: Address
    ) -> None:
        """A new request. ``txn`` is its ServerTransaction; None for the ACK of a 2xx.

        For CANCEL, ``txn.cancels`` is the INVITE's transaction, or None if unknown."""

    def on_response(
        self, node: Node, response: Response, txn: ClientTransaction | None, source: Address
    ) -> None:
        """A response to one of ``node.send_request``'s transactions (None: a stray one)."""

    def on_timeout(self, node: Node, txn: Transaction) -> None:
        """Client Timer B/F fired (treat as 408), or server Timer H (no ACK came)."""

    def on_terminated(self, node: Node, txn: Transaction) -> None:
        """The transaction is gone from the layer."""
