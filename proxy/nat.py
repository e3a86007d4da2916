"""NAT keepalives: keep the pinholes of phones behind NAT open, and notice the dead ones.

Every binding this node took from a phone behind NAT (proxy/bindings.py's
``behind_nat``) is pinged once per ``nat.ping_interval``: a SIP OPTIONS on UDP
(any response counts as an answer), a CRLF CRLF keepalive (RFC 5626 §3.5.1)
on its TCP connection. A binding whose last ``nat.ping_failures`` pings went
unanswered (or whose connection is gone) is removed, from memory and the
database. A REGISTER from the phone counts as an answer too.

Pings are spread evenly over the interval, driven by the node's tick
(``on_tick``, from the proxy's handler): each round lists the bindings to
ping, and every tick sends the ones whose turn has come. No task or timer per
binding, and no loop callback of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from proxy.location import Binding, BindingKey, Location
from sipline.config import NatSection
from sipline.logs import event
from sipline.net.handler import NodeLike
from sipline.sip.address import Address, as_flow
from sipline.sip.message import Request, Response
from sipline.sip.transaction import ClientTransaction, Transaction
from sipline.sip.uac import out_of_dialog

log = logging.getLogger("sipline.proxy.nat")

CRLF_PING = b"\r\n\r\n"


@dataclass(slots=True)
class _State:
    sent_at: float = 0.0
    unanswered: bool = False
    failures: int = 0


@dataclass(slots=True)
class _Ping:
    """The ``context`` of a ping's client transaction."""

    pinger: NatPinger
    key: BindingKey


class NatPinger:
    """Pings the NAT bindings a node took; ``on_response``/``on_timeout`` take the pings' outcomes.

    ``on_tick(node, now)`` pings, through that node, the bindings whose
    ``node`` is ``node_name``, or that ``keeps`` says are ours (a dead node's,
    taken over: proxy.cluster); the node's handler passes it the ticks and the
    callbacks of the transactions this pinger ``owns`` (see ProxyHandler).
    ``now`` paces the rounds; ``clock`` is the wall-clock time bindings are
    stamped with. Counters: ``pings`` sent, ``answers`` received, bindings ``removed``.
    """

    def __init__(
        self,
        nat: NatSection,
        location: Location,
        *,
        node_name: str = "",
        clock: Callable[[], float] = time.time,
        keeps: Callable[[str], bool] | None = None,
    ) -> None:
        self.interval: float = nat.ping_interval
        self.allowed_failures: int = nat.ping_failures
        self.location = location
        self._node_name = node_name
        self._keeps = keeps  # which nodes' bindings are ours to ping (proxy.cluster)
        self._clock = clock
        self._round: list[BindingKey] = []
        self._round_start: float | None = None
        self._next = 0  # index in _round of the next binding to ping
        self._state: dict[BindingKey, _State] = {}
        self.pings = self.answers = self.removed = 0

    # -- the schedule -------------------------------------------------------------
    def on_tick(self, node: NodeLike, now: float) -> None:
        """Ping the bindings whose turn has come; start a new round when one is over."""
        wall = self._clock()
        start = self._round_start
        if start is None or now >= start + self.interval:
            self._ping_through(node, len(self._round), wall)  # what a late tick left of it
            self._new_round(now, wall)
            start = now
        elapsed = now - start
        self._ping_through(node, int(len(self._round) * elapsed / self.interval) + 1, wall)

    def _new_round(self, now: float, wall: float) -> None:
        self._round = [b.key for b in self.location.bindings() if self._watched(b, wall)]
        self._state = {key: self._state.get(key) or _State() for key in self._round}
        self._round_start = now
        self._next = 0

    def _watched(self, binding: Binding, now: float) -> bool:
        # A binding with a Path is reached through the edge proxy that handles its NAT.
        return (
            binding.nat
            and self._keeps_node(binding.node)
            and binding.source is not None
            and not binding.path
            and binding.expires_at > now
        )

    def _keeps_node(self, node: str) -> bool:
        return self._keeps(node) if self._keeps is not None else node == self._node_name

    def _ping_through(self, node: NodeLike, end: int, now: float) -> None:
        end = min(end, len(self._round))
        while self._next < end:
            key = self._round[self._next]
            self._next += 1
            binding = self.location.get(*key)
            if binding is not None and self._watched(binding, now):
                self._ping(node, binding, self._state[key], now)

    # -- one binding ----------------------------------------------------------------
    def _ping(self, node: NodeLike, binding: Binding, state: _State, now: float) -> None:
        if state.unanswered and binding.updated_at < state.sent_at:
            state.failures += 1
        else:
            state.failures = 0  # answered, or registered again since
        if state.failures >= self.allowed_failures:
            self._remove(binding, state)
            return
        state.sent_at, state.unanswered = now, True
        self.pings += 1
        source = binding.source
        assert source is not None
        if source.transport == "UDP":
            txn = node.send_request(_options(binding, node.via_address("UDP")), as_flow(source))
            txn.context = _Ping(self, binding.key)
        elif node.send_keepalive(source, CRLF_PING):
            state.unanswered = False  # the pong is not reported; the connection is alive

    def _remove(self, binding: Binding, state: _State) -> None:
        self.removed += 1
        self._state.pop(binding.key, None)
        event(log, "nat_binding_removed", aor=binding.aor, contact=binding.contact,
              source=binding.source, failures=state.failures)  # fmt: skip
        self.location.remove(binding)

    # -- outcomes ---------------------------------------------------------------------
    def owns(self, txn: Transaction | None) -> bool:
        return txn is not None and isinstance(txn.context, _Ping) and txn.context.pinger is self

    def on_response(
        self, node: NodeLike, response: Response, txn: ClientTransaction, source: Address
    ) -> None:
        """Any response, even an error, shows the path to the phone works."""
        self.answers += 1
        state = self._state.get(txn.context.key)  # type: ignore[union-attr]
        if state is not None:
            state.unanswered = False
            state.failures = 0

    def on_timeout(self, node: NodeLike, txn: Transaction) -> None:
        """Nothing to do: the next ping of the binding counts the missing answer."""


def _options(binding: Binding, local: Address) -> Request:
    domain = binding.aor.rpartition("@")[2]
    return out_of_dialog("OPTIONS", binding.contact, local, "keepalive", domain=domain)
