"""The edge proxy's own routing values: targets and plans (RFC 3261 §16.5),
registered contacts as targets, telephone numbers, our credentials.

The generic request rules of §16.3 - §16.6 (validation, Route processing,
loops, resolving) live in ``sipline.proxying.rules``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sipline.proxying.rules import resolve
from sipline.sip.address import Address, as_flow
from sipline.sip.headers import NameAddr
from sipline.sip.message import Request
from sipline.sip.uri import SipUri, number_user


@dataclass(slots=True, frozen=True)
class Target:
    """One place a request is forwarded to (§16.5, §16.6).

    ``uri`` replaces the Request-URI (None keeps it); ``dest`` is the next
    hop; ``routes`` is a pre-loaded Route set (a binding's Path, RFC 3327);
    ``flow`` says ``dest`` is the UA's own registered flow, which the
    Record-Route then remembers for in-dialog requests; ``nat`` that the UA
    registered from behind NAT (its media may need the relay, proxy.media).
    """

    dest: Address
    uri: str | None = None
    routes: tuple[str, ...] = ()
    flow: bool = False
    nat: bool = False


@dataclass(slots=True, frozen=True)
class Plan:
    """Where a request goes: groups of targets tried in turn (see ``Fork``)."""

    groups: list[list[Target]]
    failover: frozenset[int] | None = None
    off_net: bool = False


def binding_target(binding: Any) -> Target | None:
    """A registered contact as a target (RFC 3261 §16.5, RFC 3327, RFC 5626):
    the Request-URI becomes the contact, the Path is a pre-loaded Route set,
    and the next hop is the first Path hop or else where the phone registered
    from (its flow: over NAT, and over the same TCP connection)."""
    if binding.path:
        dest = resolve(NameAddr.parse(binding.path[0]).uri_text)
        flow = False
    elif binding.source is not None:
        dest, flow = as_flow(binding.source), True
    else:
        dest, flow = resolve(binding.contact), False
    if dest is None:
        return None
    return Target(dest, binding.contact, tuple(binding.path), flow, binding.nat)


def telephone_number(user: str, uri: SipUri) -> bool:
    """A user part that dials a number (``user=phone``, RFC 3261 §19.1.1, or
    digits with an optional + and visual separators)."""
    if uri.user_param == "phone":
        return True
    return number_user(user)


def drop_own_credentials(request: Request, realms: list[str]) -> None:
    """Consume the Proxy-Authorization values for our realms (§22.3); others'
    travel on to the proxies that asked for them."""
    values = request.headers.get_all("proxy-authorization")
    if not values:
        return
    keep = [v for v in values if not any(f'realm="{r}"' in v for r in realms)]
    if len(keep) != len(values):
        request.headers.remove("proxy-authorization")
        for value in keep:
            request.headers.add("Proxy-Authorization", value)
