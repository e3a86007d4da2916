"""Where a request goes (RFC 3261 §16.5): the decision alone, over this
proxy's identity, the Location and the subscriber directory.

``Targets.plan`` gives a ``Plan`` (groups of targets) or the ``Rejection``
that says why there is none: a subscriber's registered contacts in q-ordered
groups; the B2BUAs, in failover order, for a number that is no subscriber
or another domain; the dialog's recorded flow, the next Route or the
Request-URI for everything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sipline.proxying.flows import HELD, decode_flow, flow_toward
from sipline.proxying.rules import Local, Rejection, next_hop, resolve, sip_host_port
from sipline.sip.address import Address, as_flow
from sipline.sip.message import Request
from sipline.sip.uri import SipUri

from .forking import q_groups
from .routing import Plan, Target, binding_target, telephone_number

FAILOVER_STATUSES = frozenset((408, 503))  # a B2BUA answering these is skipped


class Targets:
    """§16.5 for this proxy. ``location`` and ``directory`` are piece A's
    ``Location`` and ``SubscriberDirectory``; ``clock`` is wall-clock time."""

    __slots__ = ("location", "directory", "b2bua", "clock", "cluster")

    def __init__(
        self,
        location: Any,
        directory: Any,
        b2bua: list[Address],
        clock: Callable[[], float],
        cluster: Any = None,
    ) -> None:
        self.location = location
        self.directory = directory
        self.b2bua = b2bua
        self.clock = clock
        self.cluster = cluster  # proxy.cluster.Cluster: flows other proxies hold

    def plan(
        self,
        request: Request,
        local: Local,
        ours: dict[str, str] | None,
        *,
        trusted: bool,
    ) -> Plan | Rejection:
        """The targets of ``request`` once our Route entries (``ours``) are off it.

        Only our subscribers' new requests go off-net: a trusted peer's would
        bounce between the B2BUA and us, and a request with a To tag is in a
        dialog whose far end its Request-URI names (an unauthenticated one must
        not reach the B2BUA by writing a To tag).
        """
        if "route" in request.headers:  # a Route set beyond us: loose routing (§16.12)
            dest = next_hop(request)
            if dest is None:
                return unresolvable(request.routes[0].uri_text)
            return Plan([[Target(dest)]])
        if ours:
            if HELD in ours:  # another proxy of ours sends it to the flow we hold
                held = decode_flow(ours[HELD])
                if held is None:
                    return Rejection(400, "Bad Request: unreadable flow token")
                return Plan([[Target(as_flow(held), flow=True)]])
            flow = flow_toward(request, ours)
            if flow is not None:
                return Plan([[Target(as_flow(flow))]])
        mid_dialog = request.to.tag is not None
        off_net = not (trusted or mid_dialog)
        # Whose domain: from the Request-URI's host and port alone (cached by
        # text); the whole URI is parsed for a subscriber only.
        found = sip_host_port(request.uri)
        domain = None if found is None else local.domain_at(*found)
        if domain is not None:
            return self.subscriber(
                request.request_uri, domain, off_net=off_net, call_id=request.call_id  # type: ignore[arg-type]
            )
        if off_net:
            return self.off_net()
        dest = resolve(request.uri)
        if dest is not None:
            return Plan([[Target(dest)]])
        if mid_dialog:
            return unresolvable(request.uri)
        return Rejection(404, f"Not Found: {request.uri} is not served here")

    def subscriber(
        self, uri: SipUri, domain: str, *, off_net: bool, call_id: str = ""
    ) -> Plan | Rejection:
        """A Request-URI in one of our domains: the user's registered contacts."""
        user = uri.user
        if not user:
            return Rejection(404, f"Not Found: no user part in {uri}")
        aor = f"{user}@{domain}"
        bindings = self.location.lookup(aor, self.clock())
        if bindings:
            reach = self._reach(call_id)
            groups = [
                [t for t in map(reach, group) if t is not None] for group in q_groups(bindings)
            ]
            groups = [group for group in groups if group]
            if groups:
                return Plan(groups)
            return Rejection(480, f"Temporarily Unavailable: no reachable contact for {aor}")
        if self.directory.known(aor):
            return Rejection(480, f"Temporarily Unavailable: {aor} is not registered")
        if off_net and telephone_number(user, uri):
            return self.off_net()
        return Rejection(404, f"Not Found: no subscriber {aor}")

    def _reach(self, call_id: str) -> Callable[[Any], Target | None]:
        """A binding as a target: through the proxy that holds its flow, else from here."""
        cluster = self.cluster
        if cluster is None:
            return binding_target
        return lambda b: cluster.target(b, call_id) or binding_target(b)

    def off_net(self) -> Plan | Rejection:
        """The B2BUAs, one after the other on 408, 503 or silence."""
        if not self.b2bua:
            return Rejection(404, "Not Found: off-net calls are not routed (no proxy.b2bua)")
        groups = [[Target(b2bua)] for b2bua in self.b2bua]
        return Plan(groups, FAILOVER_STATUSES, off_net=True)


def unresolvable(uri_text: str) -> Rejection:
    return Rejection(502, f"Bad Gateway: cannot resolve {uri_text} (only IP addresses are routed)")
