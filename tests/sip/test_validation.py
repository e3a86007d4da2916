"""Validation before acting: every header routing or identity reads, checked once
per message before the transaction layer matches it or makes a transaction for it
(RFC 3261 §8.2, §16.3 step 1; RFC 4475)."""

from __future__ import annotations

import pytest

from sipline.sip.address import Address
from sipline.sip.errors import ParseError
from sipline.sip.message import Request, Response, parse_message, salvage_request
from sipline.sip.transaction import Send, TransactionLayer
from sipline.sip.validation import validate_request, validate_response

PHONE = Address("UDP", "192.0.2.10", 5060)

HEAD = [
    "INVITE sip:bob@biloxi.example SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example;branch=z9hG4bK776asdhds;rport",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example>",
    'From: "Alice" <sip:alice@atlanta.example>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example>",
    "Content-Length: 0",
]


def raw(*changes: tuple[str, str | None], extra: tuple[str, ...] = ()) -> bytes:
    """HEAD with the line starting with each name replaced (None: removed), plus ``extra``."""
    lines = []
    for line in HEAD:
        for name, new in changes:
            if line.startswith(name):
                line = new
                break
        if line is not None:
            lines.append(line)
    return ("\r\n".join(lines[:-1] + list(extra) + lines[-1:]) + "\r\n\r\n").encode()


def request(*changes: tuple[str, str | None], extra: tuple[str, ...] = ()) -> Request:
    message = parse_message(raw(*changes, extra=extra))
    assert isinstance(message, Request)
    return message


def refused(*changes: tuple[str, str | None], extra: tuple[str, ...] = ()) -> str:
    with pytest.raises(ParseError) as caught:
        validate_request(request(*changes, extra=extra))
    return caught.value.reason


def test_a_well_formed_request_passes_and_what_was_read_stays_parsed():
    req = request()
    validate_request(req)
    parsed = req.headers._parsed
    assert {"via", "via#top", "from", "to"} <= parsed.keys()
    assert req.via is req.vias[0]  # the top Via is parsed once, not twice
    # The URIs in them are checked, not kept: one is parsed when a role reads it.
    assert req.from_._uri is None and req.from_.uri is req.from_.uri


def test_a_bad_uri_is_refused_the_same_every_time_its_verdict_is_cached():
    bad = ("From", "From: <sip:alice@exa%mple.com>;tag=1")
    first, again = refused(bad), refused(bad)
    assert first == again and first.startswith("bad From")


def test_a_long_uri_is_checked_without_the_cache():
    user = "a" * 300
    validate_request(request(("To", f"To: <sip:{user}@biloxi.example>")))
    assert refused(("To", f"To: <sip:{user}@exa%mple.com>")) == "bad To: Bad URI host"


# -- single-valued headers (RFC 3261 §7.3.1; RFC 4475 §3.3.8) ----------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "To: <sip:carol@chicago.example>",
        "From: <sip:mallory@evil.example>;tag=2",
        "Call-ID: other@evil.example",
        "CSeq: 1 INVITE",
        "Max-Forwards: 5",
        "t: <sip:carol@chicago.example>",  # the compact form is the same header
    ],
)
def test_a_second_to_from_call_id_cseq_or_max_forwards_is_refused(line):
    # Which one would identity follow? The first, today's choice, is a guess.
    assert refused(extra=(line,)).startswith("duplicated ")


def test_several_vias_routes_and_contacts_are_fine():
    req = request(
        extra=(
            "Via: SIP/2.0/UDP proxy.example:5070;branch=z9hG4bK2",
            "Route: <sip:p1.example;lr>",
            "Route: <sip:p2.example;lr>",
            "Contact: <sip:alice@192.0.2.10>",
        )
    )
    validate_request(req)
    assert [v.host for v in req.vias] == ["pc33.atlanta.example", "proxy.example"]
    assert len(req.routes) == 2 and len(req.contacts) == 2


# -- Max-Forwards (RFC 3261 §16.6 step 3) ----------------------------------------------------------


def test_a_request_without_max_forwards_is_valid():
    req = request(("Max-Forwards", None))
    validate_request(req)
    assert req.max_forwards is None


# -- From and To: identity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("To", '"Bob <sip:bob@biloxi.example>', "bad To: unterminated quoted string"),
        ("To", "Bob <sip:bob@biloxi.example", "bad To: unclosed <URI>"),
        ("From", '"Alice <sip:alice@atlanta.example>;tag=1', "bad From: unterminated quoted string"),
        ("From", "<sip:alice@atlanta.example;tag=1", "bad From: unclosed <URI>"),
        ("From", "Alice, the boss <sip:alice@atlanta.example>;tag=1", "display name must be quoted"),
        ("To", "< sip:bob@biloxi.example >", "LWS inside <URI>"),
        ("To", "<sip:bob@biloxi.example>;;tag=2", "empty parameter"),
        ("From", "<sip:alice@[2001:db8::1>;tag=1", "bad From"),
        ("From", "<sip:alice@exa mple.com>;tag=1", "bad From"),
    ],
)
def test_an_unreadable_from_or_to_is_refused_with_the_reason(header, value, reason):
    assert reason in refused((header, f"{header}: {value}"))


def test_escaped_control_characters_in_a_quoted_display_name_are_legal():
    # quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F) (RFC 3261 §25.1, RFC 4475 §3.1.1.2)
    req = request(("To", 'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:bob@biloxi.example>'))
    validate_request(req)
    assert req.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    again = parse_message(req.serialise())  # and they go out as they came
    assert again.to.display == req.to.display  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "line",
    [
        'To: "BEL:\x07" <sip:bob@biloxi.example>',  # not escaped
        "To: <sip:bob@biloxi.example>\x00",  # outside a quoted string
        'To: "a\\\rb" <sip:bob@biloxi.example>',  # CR can never be escaped
    ],
)
def test_other_control_characters_are_still_refused(line):
    with pytest.raises(ParseError, match="control character"):
        parse_message(raw(("To", line)))


# -- Via and Contact: no empty parameters (RFC 4475 §3.1.2.1) --------------------------------------


@pytest.mark.parametrize(
    ("header", "line"),
    [
        ("Via", "Via: SIP/2.0/UDP 192.0.2.15;;,;,,"),
        ("Via", "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bK1;"),
        ("Via", "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bK1,"),
        ("Contact", 'Contact: "Joe" <sip:joe@example.org>;;;;'),
        ("Contact", "Contact: <sip:joe@example.org>;expires=60;"),
        ("Contact", "Contact: <sip:joe@example.org>,,<sip:joe@example.net>"),
    ],
)
def test_empty_parameters_or_values_in_via_or_contact_are_refused(header, line):
    assert refused((header, line)).startswith(f"bad {header}")


def test_every_via_is_read_not_only_the_top_one():
    reason = refused(extra=("Via: SIP/2.0/UDP ;branch=z9hG4bK2",))
    assert "Via" in reason


def test_a_contact_uri_with_headers_must_be_in_angle_brackets():
    # RFC 3261 §20.10, RFC 4475 §3.1.2.13; inside <> it is fine (§3.3.14).
    assert "outside <>" in refused(("Contact", "Contact: sip:user@example.com?Route=%3Csip:x%3E"))
    validate_request(request(("Contact", "Contact: <sip:user@example.com?Route=%3Csip:x%3E>")))


def test_a_star_contact_is_valid():
    validate_request(request(("Contact", "Contact: *")))


# -- Route and the Request-URI -------------------------------------------------------------------------


def test_an_unreadable_route_is_refused():
    assert refused(extra=("Route: <sip:p1.example;lr",)).startswith("bad Route")
    assert refused(extra=("Route: <sip:p1.ex ample;lr>",)).startswith("bad Route")


def test_headers_in_the_request_uri_are_refused():
    # RFC 3261 §19.1.1: not allowed there (RFC 4475 §3.1.2.11).
    line = "INVITE sip:bob@biloxi.example?Route=%3Csip:evil.example%3E SIP/2.0"
    assert refused(("INVITE", line)) == "headers in Request-URI"


@pytest.mark.parametrize(
    "uri",
    [
        "sips:bob@biloxi.example?subject=hi",
        "SIP:bob@biloxi.example;transport=tcp?subject=hi",
        "sip:biloxi.example?subject=hi",  # no userinfo: the "?" after the host
        "sip:a?b@biloxi.example?subject=hi",
    ],
)
def test_headers_in_any_sip_request_uri_are_refused(uri):
    assert refused(("INVITE", f"INVITE {uri} SIP/2.0")) == "headers in Request-URI"


def test_a_question_mark_in_the_user_part_is_no_header():
    # user = ... "?" ... (RFC 3261 §25.1): a user part may hold one.
    validate_request(request(("INVITE", "INVITE sip:a?b@biloxi.example SIP/2.0")))
    validate_request(request(("INVITE", "INVITE tel:+15551234567;phone-context=x SIP/2.0")))


def test_a_contact_is_checked_the_same_each_time_its_verdict_is_cached_and_a_long_one_too():
    bad = ("Contact", "Contact: <sip:alice@exa%mple.com>")
    assert refused(bad) == refused(bad) == "bad Contact: Bad URI host"
    user = "a" * 300
    validate_request(request(("Contact", f"Contact: <sip:{user}@pc33.atlanta.example>")))
    assert refused(("Contact", f"Contact: <sip:{user}@exa%mple.com>")) == "bad Contact: Bad URI host"
    response = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
        b"To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        b"Contact: <sip:alice@exa%mple.com>\r\nContent-Length: 0\r\n\r\n"
    )
    validate_response(response)  # a response's Contact URI is its reader's to parse


def test_a_request_uri_of_another_scheme_is_left_to_the_role():
    # 416 is a UAS's or proxy's answer (RFC 4475 §3.3.2), not a parse error.
    validate_request(request(("INVITE", "INVITE urn:service:sos SIP/2.0")))


def test_a_bad_sip_request_uri_is_refused():
    assert refused(("INVITE", "INVITE sip:2001:db8::10 SIP/2.0")).startswith("bad Request-URI")


def test_an_authorization_of_an_unknown_scheme_is_not_the_cores_business():
    # RFC 4475 §3.3.7: ignored (and challenged) by the authenticator, never a 400 here.
    validate_request(request(extra=("Authorization: NoOneKnowsThisScheme opaque-data=here",)))


# -- responses ---------------------------------------------------------------------------------------


def response(to: str = "To: Bob <sip:bob@biloxi.example>;tag=a6c85cf") -> Response:
    text = (
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP pc33.atlanta.example;branch=z9hG4bK776asdhds\r\n"
        f"{to}\r\nFrom: <sip:alice@atlanta.example>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Response)
    return message


def test_a_response_with_an_unreadable_to_is_refused():
    validate_response(response())
    with pytest.raises(ParseError, match="bad To"):
        validate_response(response('To: "Bob <sip:bob@biloxi.example>;tag=a6c85cf'))


# -- in the transaction layer: nothing is done with an invalid message -----------------------------


def test_the_layer_validates_before_it_makes_a_transaction():
    layer = TransactionLayer(lambda: 0.0)
    with pytest.raises(ParseError):
        layer.receive(request(("To", 'To: "Bob <sip:bob@biloxi.example>')), PHONE)
    assert len(layer) == 0 and layer.timers == 0


def test_the_answer_to_an_invalid_request_is_one_stateless_400_to_its_source():
    layer = TransactionLayer(lambda: 0.0)
    data = raw(("To", 'To: "Bob <sip:bob@biloxi.example>'))
    try:
        layer.receive(parse_message(data), PHONE)
    except ParseError as exc:
        actions = layer.answer_malformed(salvage_request(data), PHONE, exc.status, exc.reason, "sipline")
    [send] = actions
    assert isinstance(send, Send) and send.dest == PHONE
    answer = parse_message(send.data)
    assert isinstance(answer, Response)
    assert (answer.status, answer.reason) == (400, "bad To: unterminated quoted string")
    assert answer.headers.get("Server") == "sipline"
    assert answer.via.received == PHONE.host and answer.via.rport == PHONE.port
    assert len(layer) == 0 and layer.timers == 0


def test_an_invalid_ack_or_a_request_whose_via_names_nobody_gets_nothing():
    layer = TransactionLayer(lambda: 0.0)
    ack = raw(("INVITE", "ACK sip:bob@biloxi.example SIP/2.0"), ("CSeq", "CSeq: 314159 ACK"))
    assert layer.answer_malformed(salvage_request(ack), PHONE, 400, "x") == []
    nobody = raw(("Via", "Via: nonsense"))
    assert layer.answer_malformed(salvage_request(nobody), PHONE, 400, "x") == []
    assert layer.answer_malformed(salvage_request(b"\x00\xff garbage"), PHONE, 400, "x") == []


def test_a_duplicated_header_is_answered_with_one_of_each():
    layer = TransactionLayer(lambda: 0.0)
    data = raw(extra=("To: <sip:carol@chicago.example>", "Call-ID: other"))
    [send] = layer.answer_malformed(salvage_request(data), PHONE, 400, "duplicated To")
    answer = parse_message(send.data)
    assert len(answer.headers.get_all("To")) == 1 and len(answer.headers.get_all("Call-ID")) == 1
    assert answer.call_id == "a84b4c76e66710@pc33.atlanta.example"
