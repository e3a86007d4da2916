"""Proxies sharing one location: who keeps a binding, and how the others reach it.

A binding is kept (NAT keepalives, expiry of its row) by the node that took
its REGISTER while that node is alive (its heartbeat, ``sipline.cluster.heartbeat``:
the one liveness of the cluster, 3 s without a beat is dead); when it dies,
every one of its bindings passes to one live proxy, the same for every
observer: the highest rendezvous hash of (dead node, live node) (RFC 2992's
idea, as in HRW hashing), so a second death moves only the dead one's share.

A phone's flow (its TCP connection, its NAT binding) is held by the proxy it
registered through, recorded with the binding (``Binding.proxy``). Another
proxy sends a request for it to that proxy, with a Route naming it and
carrying the flow (``fh``) signed for the request's Call-ID with the shared
``auth.secret`` (sipline.proxying.signing): the holder forwards onto the
phone's own flow (a Path, RFC 3327, in spirit; the flow token of RFC 5626
§5.2). A holder that is dead is skipped: the phone is tried from here, at the
address it registered from, or, for a TCP or TLS phone not behind NAT (its flow
died with its holder), at its Contact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sipline.config import ConfigError
from sipline.proxying.flows import HELD, encode_flow
from sipline.proxying.rules import resolve
from sipline.proxying.signing import Signer
from sipline.sip.address import Address

from .location import Binding
from .routing import Target


def keeper(node: str, alive: Iterable[str]) -> str | None:
    """The live node that keeps the bindings ``node`` took: itself while alive,
    else the live node with the highest hash of (node, it); None if none is alive."""
    alive = list(alive)
    if node in alive:
        return node
    return max(alive, key=lambda other: _weight(node, other), default=None)


def _weight(node: str, other: str) -> bytes:
    return hashlib.blake2b(f"{node}\n{other}".encode(), digest_size=8).digest()


class Cluster:
    """This proxy among the others: ``name`` (its node name), ``address`` (HOST:PORT
    other proxies reach it at, set once it listens), ``liveness`` (a
    ``sipline.cluster.heartbeat.Liveness``, None: a proxy alone) and the ``signer``."""

    __slots__ = ("name", "address", "siblings", "_sibling_ports", "liveness", "signer")

    def __init__(self, name: str, liveness: Any, signer: Signer) -> None:
        self.name = name
        self.address: str | None = None
        # HOST:PORT of the other workers of this proxy (sipline.net.workers): they
        # share its address, so a UDP flow one holds is reached from any.
        self.siblings: frozenset[str] = frozenset()
        self._sibling_ports: dict[int, str] = {}  # port -> host, for is_sibling
        self.liveness = liveness
        self.signer = signer

    def set_siblings(self, siblings: list[Address]) -> None:
        """The own sockets of the other workers of this proxy."""
        self.siblings = frozenset(a.hostport for a in siblings)
        self._sibling_ports = {a.port: a.host for a in siblings}

    def is_sibling(self, source: Address) -> bool:
        """``source`` is another worker of this proxy (its own socket, on our host:
        the kernel drops a datagram from outside claiming a local source)."""
        host = self._sibling_ports.get(source.port)
        return host is not None and host == source.host and source.transport == "UDP"

    def dead(self, node: str) -> bool:
        """``node`` beat once and has been silent since. One never seen is taken for
        alive: it may have started after our last look."""
        live = self.liveness
        return live is not None and node in live.members and node not in live.alive

    def keeps(self, node: str) -> bool:
        """This proxy keeps the bindings ``node`` took (pings them, sweeps their rows)."""
        if not self.dead(node):
            return node == self.name
        return keeper(node, self.liveness.alive) == self.name

    def adopted(self, nodes: Iterable[str]) -> list[str]:
        """Which of ``nodes`` (others, dead) this proxy keeps the bindings of."""
        return sorted(n for n in set(nodes) if n != self.name and self.keeps(n))

    def holder(self, binding: Binding) -> str | None:
        """HOST:PORT of the live proxy that holds ``binding``'s flow, when it is not
        this one (None: reach the phone from here)."""
        if self.liveness is None or not binding.proxy or binding.proxy == self.address:
            return None
        source = binding.source
        if binding.proxy in self.siblings and source is not None and source.transport == "UDP":
            return None  # the NAT lets in what comes from our shared address, from any worker
        if binding.node == self.name or self.dead(binding.node):
            return None
        return binding.proxy

    def target(self, binding: Binding, call_id: str) -> Target | None:
        """The way to ``binding`` through the proxy holding its flow, or None."""
        holder = self.holder(binding)
        if holder is None:
            return self._orphan(binding)
        if binding.source is None or binding.path:
            return None
        host, _, port = holder.rpartition(":")
        params = self.signer.sign(f";{HELD}={encode_flow(binding.source)}", call_id)
        route = f"<sip:{holder};lr{params}>"
        dest = Address("UDP", host.strip("[]"), int(port))
        return Target(dest, binding.contact, (route,), False, binding.nat)


    def _orphan(self, binding: Binding) -> Target | None:
        """A TCP or TLS flow that died with the dead proxy holding it: the phone's own
        address, its Contact, when it is not behind NAT (what a proxy does without a
        flow, RFC 3261 §16.5; the flow's source port was the connection's, ephemeral).
        None otherwise: a NATed phone is reached again once it registers anew."""
        source = binding.source
        if (
            source is None or source.transport == "UDP" or binding.nat or binding.path
            or binding.node == self.name or not self.dead(binding.node)
        ):  # fmt: skip
            return None
        dest = resolve(binding.contact)
        if dest is None:
            return None
        return Target(dest, binding.contact, (), False, False)


def check_cluster_node(settings: Any) -> None:
    """ConfigError naming ``auth.secret`` when a cluster node has none.

    A proxy is a cluster node when ``[redis] url`` is set: it shares bindings,
    nonce counts and liveness with the other proxies, which accept its nonces
    and follow its signed routes only under the same secret."""
    if settings.redis.url and not settings.auth.secret:
        raise ConfigError(
            "auth.secret: must be set (the same on every proxy) on a cluster node, a proxy"
            " with [redis] url set: the proxies accept each other's nonces and signed routes"
        )
