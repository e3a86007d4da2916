"""Identity follows authentication (proxy.identity): the From a subscriber may
write, and the P-Asserted-Identity the proxy writes for it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from proxy.identity import assert_identity, from_is_theirs
from sipline.sip.message import Request, parse_message
from sipline.sip.uri import SipUri
from tests.proxy.phone import subscriber

ALICE = replace(subscriber("alice@example.com"), aliases=frozenset({"15550100", "al@other.org"}))


def domain_of(uri: SipUri) -> str | None:
    host = uri.host.lower()
    return "example.com" if host in ("example.com", "127.0.0.1") else None


def request(from_uri: str, *extra: str) -> Request:
    lines = [
        "INVITE sip:bob@example.com SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKx;rport",
        f'From: "Whoever" <{from_uri}>;tag=1',
        "To: <sip:bob@example.com>",
        "Call-ID: c",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        *extra,
        "Content-Length: 0",
    ]
    parsed = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(parsed, Request)
    return parsed


@pytest.mark.parametrize(
    "from_uri",
    [
        "sip:alice@example.com",
        "sip:alice@EXAMPLE.com;user=phone",
        "sip:alice@127.0.0.1",  # our own address stands for our first domain
        "sip:15550100@example.com",  # an alias in her domain
        "sip:al@other.org",  # an alias elsewhere
        "tel:15550100",
        "sip:anonymous@anonymous.invalid",  # RFC 3323: hidden from the callee, not from us
    ],
)
def test_her_own_name_her_aliases_and_anonymous_are_hers(from_uri: str) -> None:
    assert from_is_theirs(request(from_uri), ALICE, domain_of)


@pytest.mark.parametrize(
    "from_uri",
    [
        "sip:bob@example.com",
        "sip:Alice@example.com",  # user parts are case-sensitive
        "sip:alice@other.org",  # her name, another domain
        "sip:15550100@other.org",
        "tel:15550101",
        "sips:al@example.com",  # al is an alias at other.org only
    ],
)
def test_anyone_else_is_not(from_uri: str) -> None:
    assert not from_is_theirs(request(from_uri), ALICE, domain_of)


def test_without_aliases_only_her_own_name_is_hers() -> None:
    plain = subscriber("alice@example.com")
    assert from_is_theirs(request("sip:alice@example.com"), plain, domain_of)
    assert not from_is_theirs(request("sip:15550100@example.com"), plain, domain_of)


def test_the_asserted_identity_replaces_any_the_phone_wrote() -> None:
    forged = request(
        "sip:alice@example.com",
        "P-Asserted-Identity: <sip:carol@example.com>",
        "P-Asserted-Identity: <tel:+15551234567>",
        "P-Preferred-Identity: <sip:carol@example.com>",
    )
    assert_identity(forged, ALICE)
    assert forged.headers.get_all("p-asserted-identity") == ["<sip:alice@example.com>"]
    assert "p-preferred-identity" not in forged.headers
