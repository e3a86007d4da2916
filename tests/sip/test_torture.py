"""Torture suites for the message parser and validation: RFC 4475 and RFC 5118
message by message, then our own in their spirit.

Each RFC message gets the outcome the RFC expects, checked twice: at the
core (``parse_message`` then ``validate_request``/``validate_response``,
what the transaction layer runs before anything acts on a message) and on a
node (``Wire`` with the minimal handler ``sipline run`` serves): a valid
request is handled, an invalid one gets one stateless 400 (505) and leaves no
transaction, an invalid response is dropped. For our own rows: the values
read from the parsed message, or the ParseError whose reason contains the
given text (what a UAS would put in its ``400 <reason>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from sipline.net.node import MinimalHandler
from sipline.net.wire import Wire
from sipline.proxying.rules import validate
from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.message import Request, Response, parse_message
from sipline.sip.uri import SipUri, TelUri
from sipline.sip.validation import validate_request, validate_response

from . import rfc4475, rfc5118
from .rfc4475 import DROP, crlf
from .rfc4475 import VALID as TAKEN


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expect: dict[str, Any] = field(default_factory=dict)  # path -> value
    error: str | None = None  # a ParseError reason contains this
    stream: bool = False


def read(message: Request | Response, path: str) -> Any:
    """``"vias[1].host"`` -> message.vias[1].host; ``"h:Subject"`` -> a header's raw value."""
    if path.startswith("h:"):
        return message.headers.get(path[2:])
    value: Any = message
    for part in path.split("."):
        name, _, index = part.partition("[")
        value = getattr(value, name)
        if index:
            value = value[int(index.rstrip("]"))]
    return value


REQUIRED = (
    "Max-Forwards: 70\n"
    "To: <sip:bob@biloxi.example>\n"
    "From: <sip:alice@atlanta.example>;tag=t1\n"
    "Call-ID: torture@atlanta.example\n"
)

VALID = [
    Case(
        "lws_around_every_separator",
        crlf(
            "OPTIONS sip:bob@biloxi.example SIP/2.0\n"
            "Via  :  SIP / 2.0 / UDP   host.atlanta.example : 5070 ; branch = z9hG4bKlws ; rport\n"
            "Max-Forwards :\t 70 \n"
            "To:<sip:bob@biloxi.example>\n"
            'From   :\t"Alice A."   <sip:alice@atlanta.example> ; tag = 99\n'
            "Call-ID:   lws@atlanta.example\n"
            "CSeq :  7 \t  OPTIONS\n"
            "\n"
        ),
        {
            "via.host": "host.atlanta.example",
            "via.port": 5070,
            "via.branch": "z9hG4bKlws",
            "via.wants_rport": True,
            "from_.display": "Alice A.",
            "from_.tag": "99",
            "to.uri_text": "sip:bob@biloxi.example",
            "cseq.number": 7,
            "max_forwards": 70,
        },
    ),
    Case(
        "folding_in_via_to_and_subject",
        crlf(
            "INVITE sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;\n"
            "   branch=z9hG4bKfold,\n"
            "\tSIP/2.0/TCP second.example\n"
            "Max-Forwards: 70\n"
            "To:\n"
            " <sip:bob@biloxi.example>\n"
            "From: <sip:alice@atlanta.example>;tag=t1\n"
            "Call-ID: fold@atlanta.example\n"
            "CSeq: 1\n"
            "  INVITE\n"
            "Subject: first line\n"
            "      second line\n"
            "Content-Length: 0\n"
            "\n"
        ),
        {
            "via.branch": "z9hG4bKfold",
            "vias[1].transport": "TCP",
            "to.uri_text": "sip:bob@biloxi.example",
            "cseq.method": "INVITE",
            "h:Subject": "first line second line",
        },
    ),
    Case(
        "compact_forms_for_everything",
        crlf(
            "INVITE sip:bob@biloxi.example SIP/2.0\n"
            "v: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKcmp\n"
            "Max-Forwards: 70\n"
            "t: <sip:bob@biloxi.example>\n"
            "f: <sip:alice@atlanta.example>;tag=c1\n"
            "i: compact@atlanta.example\n"
            "CSeq: 2 INVITE\n"
            "m: <sip:alice@192.0.2.5>\n"
            "k: 100rel\n"
            "c: application/sdp\n"
            "l: 5\n"
            "\n"
            "v=0\n"
        ),
        {
            "via.branch": "z9hG4bKcmp",
            "to.uri_text": "sip:bob@biloxi.example",
            "from_.tag": "c1",
            "call_id": "compact@atlanta.example",
            "contacts[0].uri_text": "sip:alice@192.0.2.5",
            "h:Supported": "100rel",
            "content_type": "application/sdp",
            "body": b"v=0\r\n",
        },
    ),
    Case(
        "header_names_in_any_case",
        crlf(
            "BYE sip:bob@biloxi.example SIP/2.0\n"
            "vIA: SIP/2.0/UDP pc.atlanta.example;BRANCH=z9hG4bKcase\n"
            "max-FORWARDS: 69\n"
            "TO: <sip:bob@biloxi.example>;TAG=b2\n"
            "from: <sip:alice@atlanta.example>;Tag=a1\n"
            "CALL-id: case@atlanta.example\n"
            "cseq: 3 BYE\n"
            "\n"
        ),
        {"via.branch": "z9hG4bKcase", "max_forwards": 69, "to.tag": "b2", "from_.tag": "a1", "call_id": "case@atlanta.example"},
    ),
    Case(
        "quoted_display_name_with_commas_and_escapes",
        crlf(
            "INVITE sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKq\n"
            "Max-Forwards: 70\n"
            'To: "Bob \\"The Builder\\", Esq. \\\\ <boss>" <sip:bob@biloxi.example>\n'
            'From: "Smith, Alice" <sip:alice@atlanta.example>;tag=q1\n'
            "Call-ID: quoted@atlanta.example\n"
            "CSeq: 1 INVITE\n"
            'Contact: "Desk, 2nd floor" <sip:alice@192.0.2.5>, "Mobile" <sip:alice@192.0.2.6>\n'
            "\n"
        ),
        {
            "to.display": 'Bob "The Builder", Esq. \\ <boss>',
            "from_.display": "Smith, Alice",
            "contacts[0].display": "Desk, 2nd floor",
            "contacts[1].uri_text": "sip:alice@192.0.2.6",
        },
    ),
    Case(
        "uris_in_angle_brackets_holding_commas_semicolons_and_question_marks",
        crlf(
            "REGISTER sip:registrar.biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.biloxi.example;branch=z9hG4bKang\n"
            f"{REQUIRED}"
            "CSeq: 9 REGISTER\n"
            "Contact: <sip:bob,desk;x=1@192.0.2.4;lr?Subject=hi%2C%20there&X=1>;expires=60, <sip:bob@192.0.2.9>;q=0.1\n"
            "\n"
        ),
        {
            "contacts[0].uri_text": "sip:bob,desk;x=1@192.0.2.4;lr?Subject=hi%2C%20there&X=1",
            "contacts[0].expires": 60,
            "contacts[0].uri.user": "bob,desk;x=1",
            "contacts[0].uri.params": {"lr": None},
            "contacts[0].uri.headers": {"Subject": "hi, there", "X": "1"},
            "contacts[1].q": 0.1,
        },
    ),
    Case(
        "three_vias_on_one_line",
        crlf(
            "ACK sip:bob@192.0.2.4 SIP/2.0\n"
            "Via: SIP/2.0/UDP p3.example;branch=z9hG4bK3 , SIP/2.0/TCP p2.example:5080;branch=z9hG4bK2,SIP/2.0/UDP p1.example;branch=z9hG4bK1\n"
            f"{REQUIRED}"
            "CSeq: 1 ACK\n"
            "\n"
        ),
        {"via.host": "p3.example", "vias[1].port": 5080, "vias[2].branch": "z9hG4bK1"},
    ),
    Case(
        "vias_across_lines_with_other_headers_between",
        crlf(
            "MESSAGE sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP p2.example;branch=z9hG4bK2\n"
            "X-Between: yes\n"
            "v: SIP/2.0/UDP p1.example;branch=z9hG4bK1\n"
            f"{REQUIRED}"
            "CSeq: 4 MESSAGE\n"
            "Content-Type: text/plain\n"
            "Content-Length: 2\n"
            "\n"
            "hi"
        ),
        {"vias[0].host": "p2.example", "vias[1].host": "p1.example", "body": b"hi"},
    ),
    Case(
        "unknown_headers_with_odd_spacing_survive",
        crlf(
            "OPTIONS sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKunk\n"
            f"{REQUIRED}"
            "CSeq: 5 OPTIONS\n"
            "X-Weird   :value   with   spaces   \n"
            "x-empty:\n"
            "X-Quoted: \"a,b\" ; c = \"d;e\"\n"
            "NewFangledHeader: newfangled value\n"
            "\n"
        ),
        {"h:X-Weird": "value   with   spaces", "h:X-Empty": "", "h:newfangledheader": "newfangled value"},
    ),
    Case(
        "empty_reason_phrase",
        crlf(
            "SIP/2.0 100 \n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKe\n"
            "To: <sip:bob@biloxi.example>\n"
            "From: <sip:alice@atlanta.example>;tag=t1\n"
            "Call-ID: empty@atlanta.example\n"
            "CSeq: 1 INVITE\n"
            "\n"
        ),
        {"status": 100, "reason": "", "provisional": True},
    ),
    Case(
        "utf8_reason_phrase",
        crlf(
            "SIP/2.0 486 Très occupé, désolé\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKu\n"
            "To: <sip:bob@biloxi.example>;tag=x\n"
            "From: <sip:alice@atlanta.example>;tag=t1\n"
            "Call-ID: utf8@atlanta.example\n"
            "CSeq: 1 INVITE\n"
            "\n"
        ),
        {"status": 486, "reason": "Très occupé, désolé"},
    ),
    Case(
        "largest_cseq",
        crlf(
            "OPTIONS sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKbig\n"
            f"{REQUIRED}"
            "CSeq: 2147483647 OPTIONS\n"
            "\n"
        ),
        {"cseq.number": 2**31 - 1},
    ),
    Case(
        "content_length_with_leading_zeros_and_trailing_space",
        crlf(
            "MESSAGE sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKz\n"
            f"{REQUIRED}"
            "CSeq: 1 MESSAGE\n"
            "Content-Length: 0005  \n"
            "\n"
            "hello"
        ),
        {"body": b"hello", "content_length": 5},
    ),
    Case(
        "two_equal_content_lengths",
        crlf(
            "MESSAGE sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKeq\n"
            f"{REQUIRED}"
            "CSeq: 1 MESSAGE\n"
            "Content-Length: 5\n"
            "l: 05\n"
            "\n"
            "hello"
        ),
        {"body": b"hello"},
    ),
    Case(
        "udp_body_longer_than_content_length_is_truncated",
        crlf(
            "MESSAGE sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKtr\n"
            f"{REQUIRED}"
            "CSeq: 1 MESSAGE\n"
            "Content-Length: 4\n"
            "\n"
            "hello, and some trailing junk"
        ),
        {"body": b"hell"},
    ),
    Case(
        "udp_without_content_length_takes_the_rest",
        crlf(
            "MESSAGE sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKnl\n"
            f"{REQUIRED}"
            "CSeq: 1 MESSAGE\n"
            "\n"
            "all of it"
        ),
        {"body": b"all of it", "content_length": None},
    ),
    Case(
        "response_after_extra_crlfs",
        b"\r\n\r\n\r\n"
        + crlf(
            "SIP/2.0 200 OK\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKk\n"
            "To: <sip:bob@biloxi.example>;tag=x\n"
            "From: <sip:alice@atlanta.example>;tag=t1\n"
            "Call-ID: crlf@atlanta.example\n"
            "CSeq: 1 OPTIONS\n"
            "Content-Length: 0\n"
            "\n"
        ),
        {"status": 200, "to.tag": "x"},
    ),
    Case(
        "tel_request_uri",
        crlf(
            "INVITE tel:+1-201-555-0123;phone-context=+1 SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKtel\n"
            f"{REQUIRED}"
            "CSeq: 1 INVITE\n"
            "\n"
        ),
        {"request_uri.number": "+1-201-555-0123", "request_uri.is_global": True},
    ),
    Case(
        "ipv6_everywhere",
        crlf(
            "INVITE sip:[2001:db8::10]:5070;transport=udp SIP/2.0\n"
            "Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKv6;received=2001:db8::9:255\n"
            "Max-Forwards: 70\n"
            "To: <sip:[2001:db8::10]:5070>\n"
            "From: <sip:alice@[2001:db8::9:1]>;tag=v6\n"
            "Call-ID: v6@[2001:db8::9:1]\n"
            "CSeq: 1 INVITE\n"
            "\n"
        ),
        {
            "via.sent_by": ("[2001:db8::9:1]", 6050),
            "via.received": "2001:db8::9:255",
            "request_uri.host": "[2001:db8::10]",
            "request_uri.port": 5070,
            "from_.uri.host": "[2001:db8::9:1]",
        },
    ),
    Case(
        "contact_star_to_remove_all_bindings",
        crlf(
            "REGISTER sip:biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.biloxi.example;branch=z9hG4bKstar\n"
            f"{REQUIRED}"
            "CSeq: 10 REGISTER\n"
            "Contact: *\n"
            "Expires: 0\n"
            "\n"
        ),
        {"contacts[0].star": True, "expires": 0},
    ),
    Case(
        "extension_method_and_lowercase_method",
        crlf(
            "frobnicate.v2 sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKext\n"
            f"{REQUIRED}"
            "CSeq: 1 frobnicate.v2\n"
            "\n"
        ),
        {"method": "frobnicate.v2", "cseq.method": "frobnicate.v2"},
    ),
    Case(
        "escaped_request_uri_and_unknown_uri_scheme_in_to",
        crlf(
            "INVITE sip:%61lice;day=tue@atlanta.example;transport=TCP SIP/2.0\n"
            "Via: SIP/2.0/TCP pc.atlanta.example;branch=z9hG4bKesc\n"
            "Max-Forwards: 70\n"
            "To: <urn:service:sos>\n"
            "From: <sip:bob@biloxi.example>;tag=esc\n"
            "Call-ID: esc@atlanta.example\n"
            "CSeq: 1 INVITE\n"
            "\n"
        ),
        {"request_uri.user": "alice;day=tue", "request_uri.transport": "tcp", "to.uri_text": "urn:service:sos"},
    ),
    Case(
        "token_display_names_and_addr_spec_with_header_params",
        crlf(
            "OPTIONS sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKtok\n"
            "Max-Forwards: 70\n"
            "To: Bob  Builder <sip:bob@biloxi.example>\n"
            "From: sip:alice@atlanta.example;tag=addr\n"
            "Call-ID: tok@atlanta.example\n"
            "CSeq: 1 OPTIONS\n"
            "\n"
        ),
        {"to.display": "Bob  Builder", "from_.tag": "addr", "from_.uri_text": "sip:alice@atlanta.example"},
    ),
    Case(
        "quoted_via_parameter_with_semicolon_and_slash",
        crlf(
            "OPTIONS sip:bob@biloxi.example SIP/2.0\n"
            'Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKqp;x-note="a;b/c, d"\n'
            f"{REQUIRED}"
            "CSeq: 1 OPTIONS\n"
            "\n"
        ),
        {"via.branch": "z9hG4bKqp", "via.params": {"branch": "z9hG4bKqp", "x-note": '"a;b/c, d"'}},
    ),
    Case(
        "a_very_long_header_and_many_headers",
        crlf(
            "OPTIONS sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKlong\n"
            f"{REQUIRED}"
            "CSeq: 1 OPTIONS\n"
            f"X-Long: {'x' * 20000}\n"
            + "".join(f"X-Many-{i}: {i}\n" for i in range(300))
            + "\n"
        ),
        {"h:X-Long": "x" * 20000, "h:x-many-299": "299"},
    ),
    Case(
        "max_forwards_zero_and_tab_in_values",
        crlf(
            "OPTIONS sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP\tpc.atlanta.example;branch=z9hG4bKtab\n"
            "Max-Forwards: 0\n"
            "To: <sip:bob@biloxi.example>\n"
            "From: <sip:alice@atlanta.example>;tag=t1\n"
            "Call-ID: tab@atlanta.example\n"
            "CSeq:\t1\tOPTIONS\n"
            "\n"
        ),
        {"max_forwards": 0, "via.host": "pc.atlanta.example", "cseq.method": "OPTIONS"},
    ),
    Case(
        "no_max_forwards_a_proxy_adds_one",
        crlf(
            "OPTIONS sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKnomf\n"
            "To: <sip:bob@biloxi.example>\n"
            "From: <sip:alice@atlanta.example>;tag=t1\n"
            "Call-ID: nomf@atlanta.example\n"
            "CSeq: 1 OPTIONS\n"
            "\n"
        ),
        {"max_forwards": None},
    ),
    Case(
        "no_blank_line_after_the_last_header",
        crlf(
            "OPTIONS sip:bob@biloxi.example SIP/2.0\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKnb\n"
            f"{REQUIRED}"
            "CSeq: 1 OPTIONS\n"
        ),
        {"body": b""},
    ),
]

_BASE = crlf(
    "INVITE sip:bob@biloxi.example SIP/2.0\n"
    "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKbad\n"
    f"{REQUIRED}"
    "CSeq: 1 INVITE\n"
    "Content-Length: 0\n"
    "\n"
)


def broken(old: bytes, new: bytes) -> bytes:
    assert old in _BASE
    return _BASE.replace(old, new, 1)


INVALID = [
    Case("cseq_too_large", broken(b"CSeq: 1 INVITE", b"CSeq: 2147483648 INVITE"), error="bad CSeq"),
    Case("cseq_without_method", broken(b"CSeq: 1 INVITE", b"CSeq: 1"), error="bad CSeq"),
    Case("cseq_method_mismatch", broken(b"CSeq: 1 INVITE", b"CSeq: 1 ACK"), error="CSeq method does not match"),
    Case("negative_content_length", broken(b"Content-Length: 0", b"Content-Length: -3"), error="bad Content-Length"),
    Case("content_length_beyond_body", broken(b"Content-Length: 0", b"Content-Length: 10") + b"short", error="beyond"),
    Case(
        "conflicting_content_lengths",
        broken(b"Content-Length: 0", b"Content-Length: 2\r\nl: 3") + b"abc",
        error="conflicting Content-Length",
    ),
    Case("missing_call_id", broken(b"Call-ID: torture@atlanta.example\r\n", b""), error="missing Call-ID"),
    Case("missing_via", broken(b"Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKbad\r\n", b""), error="missing Via"),
    Case("max_forwards_abc", broken(b"Max-Forwards: 70", b"Max-Forwards: abc"), error="bad Max-Forwards"),
    Case("bad_sip_version", broken(b" SIP/2.0\r\n", b" SIP/7.0\r\n"), error="Version Not Supported"),
    Case("not_sip_at_all", broken(b" SIP/2.0\r\n", b" HTTP/1.1\r\n"), error="bad request line"),
    Case("request_uri_without_scheme", broken(b"sip:bob@biloxi.example SIP", b"bob@biloxi.example SIP"), error="bad Request-URI"),
    Case("extra_space_in_request_line", broken(b"INVITE sip", b"INVITE  sip"), error="bad request line"),
    Case("tab_in_request_line", broken(b"INVITE sip", b"INVITE\tsip"), error="bad request line"),
    Case(
        "status_099",
        crlf("SIP/2.0 099 Too Early\n") + _BASE.split(b"\r\n", 1)[1],
        error="bad status code",
    ),
    Case("status_700", crlf("SIP/2.0 700 Beyond\n") + _BASE.split(b"\r\n", 1)[1], error="bad status code"),
    Case("non_utf8_header_bytes", broken(b"From: <sip:alice", b"From: \xe9\xe9 <sip:alice"), error="UTF-8"),
    Case("nul_in_a_header", broken(b"Call-ID: torture", b"Call-ID: tor\x00ture"), error="control character"),
    Case("bare_lf_smuggling_a_header", broken(b"Call-ID: torture", b"X-A: b\nX-Injected: 1\r\nCall-ID: torture"), error="control character"),
    Case("bare_cr_in_a_header", broken(b"Call-ID: torture", b"Call-ID: tort\rure"), error="control character"),
    Case("header_without_colon", broken(b"Max-Forwards: 70", b"Max-Forwards 70"), error="without colon"),
    Case("space_in_header_name", broken(b"Call-ID:", b"Call ID:"), error="bad header name"),
    Case("only_line_endings_no_blank_line", b"INVITE sip:bob@biloxi.example SIP/2.0\r\nVia: x", error="no end of headers"),
    Case("empty_datagram", b"", error="no end of headers"),
    Case("empty_call_id", broken(b"Call-ID: torture@atlanta.example", b"Call-ID:"), error="bad Call-ID"),
    Case(
        "response_without_to",
        crlf(
            "SIP/2.0 200 OK\n"
            "Via: SIP/2.0/UDP pc.atlanta.example;branch=z9hG4bKr\n"
            "From: <sip:alice@atlanta.example>;tag=t1\n"
            "Call-ID: r@atlanta.example\n"
            "CSeq: 1 INVITE\n"
            "\n"
        ),
        error="missing To",
    ),
    Case(
        "stream_message_shorter_than_content_length",
        broken(b"Content-Length: 0", b"Content-Length: 100") + b"partial",
        error="beyond",
        stream=True,
    ),
]


def ids(cases: list[Case]) -> list[str]:
    return [case.name for case in cases]


def test_the_suite_has_at_least_thirty_messages_with_unique_names():
    names = ids(VALID + INVALID)
    assert len(names) >= 30
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in names)


@pytest.mark.parametrize("case", VALID, ids=ids(VALID))
def test_odd_but_valid_messages_give_the_expected_values(case: Case):
    message = parse_message(case.raw, stream=case.stream)
    for path, expected in case.expect.items():
        assert read(message, path) == expected, path


@pytest.mark.parametrize("case", VALID, ids=ids(VALID))
def test_odd_but_valid_messages_survive_serialising(case: Case):
    message = parse_message(case.raw, stream=case.stream)
    again = parse_message(message.serialise())
    assert again == message
    for path, expected in case.expect.items():
        if path not in ("content_length",):
            assert read(again, path) == expected, path


@pytest.mark.parametrize("case", VALID, ids=ids(VALID))
def test_lines_nobody_changed_go_out_byte_for_byte(case: Case):
    # Folded lines go out unfolded and Content-Length is made to fit the body;
    # every other line is forwarded exactly as it came.
    head = case.raw.lstrip(b"\r\n").split(b"\r\n\r\n")[0].split(b"\r\n")
    out = parse_message(case.raw).serialise().split(b"\r\n\r\n")[0].split(b"\r\n")
    folded = {i for i, line in enumerate(head) if line[:1] in (b" ", b"\t")}
    for i, line in enumerate(head):
        if not line or i in folded or i + 1 in folded or line.lower().startswith((b"content-length", b"l:")):
            continue
        assert line in out


@pytest.mark.parametrize("case", INVALID, ids=ids(INVALID))
def test_invalid_messages_are_refused_with_a_reason(case: Case):
    with pytest.raises(ParseError) as caught:
        parse_message(case.raw, stream=case.stream)
    assert case.error is not None
    assert case.error in caught.value.reason
    assert len(caught.value.reason) < 60


def test_the_request_uri_type_follows_its_scheme():
    tel = next(case for case in VALID if case.name == "tel_request_uri")
    v6 = next(case for case in VALID if case.name == "ipv6_everywhere")
    assert isinstance(parse_message(tel.raw).request_uri, TelUri)
    assert isinstance(parse_message(v6.raw).request_uri, SipUri)


# -- RFC 4475 and RFC 5118, message by message ----------------------------------------------
RFC_MESSAGES = rfc4475.MESSAGES + rfc5118.MESSAGES
SOURCE = Address("UDP", "192.0.2.99", 5099)
US = Address("UDP", "192.0.2.1", 5060)


def rfc_ids(messages: list[rfc4475.Message]) -> list[str]:
    return [f"{m.section}-{m.name}" for m in messages]


def checked(raw: bytes) -> Request | Response:
    """What the transaction layer runs on a datagram before anything acts on it."""
    message = parse_message(raw)
    if isinstance(message, Request):
        validate_request(message)
    else:
        validate_response(message)
    return message


def test_every_message_of_both_rfcs_is_here_once():
    sections = [m.section for m in rfc4475.MESSAGES]
    assert len([s for s in sections if s.startswith("3.1.1.")]) == 13
    assert len([s for s in sections if s.startswith("3.1.2.")]) == 19
    assert len([s for s in sections if s.startswith("3.3.")]) == 15
    assert {"3.2.1", "3.4.1"} <= set(sections)
    assert len(set(sections)) == len(sections)
    assert [m.section for m in rfc5118.MESSAGES] == [
        "4.1", "4.2", "4.3", "4.4", "4.5", "4.5", "4.6", "4.7", "4.8", "4.9", "4.10", "4.10",
    ]


@pytest.mark.parametrize("message", RFC_MESSAGES, ids=rfc_ids(RFC_MESSAGES))
def test_the_core_takes_or_refuses_each_rfc_message_as_the_rfc_says(message: rfc4475.Message):
    if message.outcome == TAKEN:
        parsed = checked(message.raw)
        for path, expected in message.expect.items():
            assert read(parsed, path) == expected, path
        return
    with pytest.raises(ParseError) as caught:
        checked(message.raw)
    if message.outcome != DROP:
        status, reason = message.outcome
        assert caught.value.status == status
        assert reason in caught.value.reason
        assert len(caught.value.reason) < 80 and "\r" not in caught.value.reason


@pytest.mark.parametrize("message", RFC_MESSAGES, ids=rfc_ids(RFC_MESSAGES))
def test_a_node_answers_each_rfc_message_as_the_rfc_says(message: rfc4475.Message):
    wire = Wire(MinimalHandler("sipline-test"), lambda: 0.0, US)
    wire.receive(message.raw, SOURCE)
    sent = wire.take()
    assert all(dest == SOURCE for _, dest in sent)  # back to where it came from
    if message.outcome == DROP or message.raw.startswith(b"SIP/"):
        assert sent == [] and len(wire.layer) == 0
        return
    [(answer, _)] = sent
    # The status line only: an answer to a broken request echoes its broken headers.
    status, reason = answer.split(b"\r\n", 1)[0].decode().split(" ", 2)[1:]
    if message.outcome == TAKEN:
        assert int(status) == message.answer
        assert len(wire.layer) == 1  # the request's own server transaction
    else:
        expected, text = message.outcome
        assert (int(status), text in reason) == (expected, True)
        assert len(wire.layer) == 0  # answered statelessly: nothing left behind


PROXIED = [m for m in RFC_MESSAGES if m.proxy is not None]


@pytest.mark.parametrize("message", PROXIED, ids=rfc_ids(PROXIED))
def test_a_proxy_refuses_what_rfc_4475_says_a_proxy_refuses(message: rfc4475.Message):
    # Unknown Request-URI schemes 416, Proxy-Require 420, Max-Forwards 0 483 (RFC 3261 §16.3).
    request = checked(message.raw)
    assert isinstance(request, Request)
    rejection = validate(request)
    assert rejection is not None and rejection.status == message.proxy


def test_the_uas_420_lists_what_require_asked_for():
    [bext01] = [m for m in rfc4475.MESSAGES if m.name == "bext01"]
    wire = Wire(MinimalHandler("sipline-test"), lambda: 0.0, US)
    wire.receive(bext01.raw, SOURCE)
    [(data, _)] = wire.take()
    assert parse_message(data).headers.get("Unsupported") == "nothingSupportsThis, nothingSupportsThisEither"
