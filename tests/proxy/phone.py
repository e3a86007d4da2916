"""What a phone does, for tests of the registrar and authentication: build requests, answer challenges."""

from __future__ import annotations

import itertools

from sipline.sip.auth import Credentials, compute_ha1, compute_response, parse_auth_header
from sipline.sip.message import Request, Response, parse_message
from sipline.storage import Subscriber

PASSWORD = "correct horse"
_cnonces = itertools.count(1)


def subscriber(aor: str, password: str = PASSWORD, id_: int = 1) -> Subscriber:
    username, _, domain = aor.partition("@")
    return Subscriber(
        id=id_,
        username=username,
        domain=domain,
        ha1_md5=compute_ha1(username, domain, password, "MD5"),
        ha1_sha256=compute_ha1(username, domain, password, "SHA-256"),
        account=None,
        created_at=0.0,
    )


def request(
    method: str,
    uri: str,
    *,
    from_: str,
    to: str,
    call_id: str = "call-1@phone",
    cseq: int = 1,
    via: str = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1;rport",
    headers: tuple[tuple[str, str], ...] = (),
) -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: <sip:{from_}>;tag=ph1",
        f"To: <sip:{to}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *(f"{name}: {value}" for name, value in headers),
        "Content-Length: 0",
    ]
    parsed = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(parsed, Request)
    return parsed


def challenge_params(response: Response, header: str = "WWW-Authenticate") -> list[dict[str, str]]:
    """The params of each challenge, in the order offered."""
    return [parse_auth_header(value)[1] for value in response.headers.get_all(header)]


def authorization(
    challenge: Response,
    req: Request,
    username: str,
    password: str = PASSWORD,
    *,
    algorithm: str | None = None,
    proxy: bool = False,
) -> str:
    """The Authorization (or Proxy-Authorization) value answering ``challenge`` for ``req``."""
    offers = challenge_params(challenge, "Proxy-Authenticate" if proxy else "WWW-Authenticate")
    offer = (
        offers[0] if algorithm is None else next(o for o in offers if o["algorithm"] == algorithm)
    )
    realm, nonce, chosen = offer["realm"], offer["nonce"], offer["algorithm"]
    ha1 = compute_ha1(username, realm, password, chosen)
    cnonce, nc = f"cn{next(_cnonces)}", "00000001"
    digest = compute_response(
        ha1, nonce, req.method, req.uri, algorithm=chosen, qop="auth", nc=nc, cnonce=cnonce
    )
    creds = Credentials(username, realm, nonce, req.uri, digest, chosen, cnonce, "auth", nc)
    return creds.to_header()


def with_header(req: Request, name: str, value: str) -> Request:
    """A copy of ``req`` with one more header (as the phone's next attempt)."""
    copy = parse_message(req.serialise())
    assert isinstance(copy, Request)
    copy.headers.add(name, value)
    return copy
