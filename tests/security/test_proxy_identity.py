"""Identity follows authentication (issue 10): attacks on a real ``sipline
proxy`` from raw sockets. A stranger learns nothing of who is registered,
a subscriber cannot call as someone else, and what only our nodes may say
never reaches the B2BUA from a phone."""

from __future__ import annotations

import pytest

from sipline.sip.message import Request
from tests.security.proxy_wire import HOST, Wire, edge

__all__ = ["edge"]
pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("method", ["OPTIONS", "INVITE", "MESSAGE", "SUBSCRIBE"])
def test_a_stranger_cannot_tell_registered_unregistered_and_unknown_users_apart(
    edge: Wire, method: str
) -> None:
    bob = edge.registered("bob")  # carol is provisioned, never registered; nobody is no one
    stranger = edge.sock()
    answers = []
    for user in ("bob", "carol", "nobody"):
        stranger.send(stranger.request(method, f"sip:{user}@example.com"), edge.address)
        answer = stranger.response()
        challenge = answer.headers.get("proxy-authenticate") or ""
        answers.append((answer.status, answer.reason, challenge.partition("nonce=")[0]))
    assert answers[0][0] == 407 and answers[0] == answers[1] == answers[2]
    bob.nothing()


def test_a_from_that_is_not_the_authenticated_user_is_refused(edge: Wire) -> None:
    bob = edge.registered("bob")
    alice = edge.sock()
    invite = alice.request("INVITE", "sip:bob@example.com", user="carol")  # carol's name
    refused = alice.authenticated(invite, edge.address, user="alice")  # alice's password
    assert (refused.status, refused.reason) == (
        403, "Forbidden: the From is not alice@example.com's"
    )  # fmt: skip
    bob.nothing()
    assert "event=refused why=impersonations" in edge.log_text()


def test_internal_headers_from_a_stranger_do_not_reach_the_b2bua(edge: Wire) -> None:
    alice = edge.sock()
    invite = alice.request(
        "INVITE", "sip:+15551234567@example.com",
        headers=(
            "X-Sipline-Account: SOMEONE-ELSE", "X-Sipline-Media-Call: theirs",
            "P-Asserted-Identity: <sip:carol@example.com>", "Path: <sip:127.0.0.1:5080;lr>",
        ),
    )  # fmt: skip
    alice.send_authenticated(invite, edge.address)
    forwarded = edge.b2bua.receive()
    assert isinstance(forwarded, Request) and forwarded.method == "INVITE"
    headers = forwarded.headers
    assert headers.get_all("p-asserted-identity") == ["<sip:alice@example.com>"]
    assert not [name for name, _ in headers if name.lower().startswith("x-sipline-")]
    assert "path" not in headers and "proxy-authorization" not in headers
    [record_route] = headers.values("record-route")
    assert ";sg=" in record_route and f";ih={HOST}~{edge.b2bua.port}" in record_route
