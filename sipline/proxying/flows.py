"""The flows of a dialog, kept in our Record-Route (the RFC 5626 idea of a
flow token, in URI parameters).

In-dialog requests must reach phones behind NAT where their messages really
come from, not at the Contact they wrote. Our Record-Route remembers the
From tag of the dialog-creating request (``ftag``) and the flows the request
arrived on (``fa``, the caller's) and left on (``fb``, the callee's
registered flow). A later request whose From tag is ``ftag`` comes from the
caller and goes to ``fb``; any other comes from the callee and goes to
``fa``.

Between proxies that share a location, a new request for a phone registered
through another proxy carries a Route naming that proxy with ``fh``, the
flow it holds for the phone (proxy/cluster.py); signed like our
Record-Routes, and followed only from a trusted peer.
"""

from __future__ import annotations

from urllib.parse import quote

from sipline.sip.address import Address
from sipline.sip.message import Request

HELD = "fh"  # a Route parameter: the flow the named proxy holds for a phone


def record_route_params(request: Request, source: Address) -> str:
    """``;ftag=..;fa=..`` for our Record-Route (each branch may add its ``fb``).

    ``fa`` only when the request came straight from the UA (one Via): behind
    another proxy, the caller is reached through that proxy's own routing.
    """
    tag = request.from_.tag
    if tag is None:
        return ""
    params = f";ftag={escape_param(tag)}"
    vias = request.headers.get_all("via")
    if len(vias) == 1 and "," not in vias[0]:
        params += f";fa={encode_flow(source)}"
    return params


def flow_toward(request: Request, params: dict[str, str]) -> Address | None:
    """For an in-dialog request routed by our Record-Route, the flow of the
    UA it goes to (None: route it by its Request-URI)."""
    ftag = params.get("ftag")
    if ftag is None:
        return None
    tag = request.from_.tag
    from_caller = tag is not None and escape_param(tag) == ftag
    flow = params.get("fb" if from_caller else "fa")
    return None if flow is None else decode_flow(flow)


def encode_flow(address: Address) -> str:
    text = f"{address.host}~{address.port}~{_LETTERS[address.transport]}"
    return text if address.connection is None else f"{text}~{address.connection}"


_TRANSPORTS = {"u": "UDP", "t": "TCP", "s": "TLS"}
_LETTERS = {name: letter for letter, name in _TRANSPORTS.items()}


def decode_flow(text: str) -> Address | None:
    parts = text.split("~")
    if len(parts) not in (3, 4) or not parts[1].isdigit() or parts[2] not in _TRANSPORTS:
        return None
    connection = int(parts[3]) if len(parts) == 4 and parts[3].isdigit() else None
    return Address(_TRANSPORTS[parts[2]], parts[0], int(parts[1]), connection)


_PARAM_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()")


def escape_param(text: str) -> str:
    """A tag (any token) as a URI parameter value (§25.1 escaping where needed)."""
    return text if _PARAM_SAFE.issuperset(text) else quote(text, safe="-_.!~*'()")
