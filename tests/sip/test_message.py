"""SIP requests and responses: RFC 3261 §7 (messages), §8.1.1 (required headers),
§18.3 (framing), §20 (header fields) and §8.2.6 (building responses)."""

import time

import pytest

from sipline.sip.auth import Credentials
from sipline.sip.errors import ParseError
from sipline.sip.headers import CSeq, NameAddr, Via
from sipline.sip.message import (
    Headers,
    Request,
    Response,
    find_message_end,
    parse_message,
    reason_phrase,
    salvage_request,
)
from sipline.sip.uri import SipUri, TelUri

INVITE_HEAD = [
    "INVITE sip:bob@biloxi.example SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example:5060;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    'To: "Bob" <sip:bob@biloxi.example>',
    'From: "Alice" <sip:alice@atlanta.example>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example>",
]
BODY = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"

OK_HEAD = [
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/UDP pc33.atlanta.example:5060;branch=z9hG4bK776asdhds;received=192.0.2.1",
    'To: "Bob" <sip:bob@biloxi.example>;tag=a6c85cf',
    'From: "Alice" <sip:alice@atlanta.example>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example",
    "CSeq: 314159 INVITE",
]


def wire(lines: list[str], body: bytes = b"", length: int | None = None) -> bytes:
    """A message as bytes; Content-Length is added unless ``length`` is -1."""
    lines = list(lines)
    if length != -1:
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def invite(*extra: str, body: bytes = b"", drop: str | None = None) -> Request:
    lines = [line for line in INVITE_HEAD if drop is None or not line.startswith(drop + ":")]
    message = parse_message(wire(lines + list(extra), body))
    assert isinstance(message, Request)
    return message


def options(*extra: str) -> Request:
    lines = [line.replace("INVITE", "OPTIONS") for line in INVITE_HEAD if not line.startswith("Contact")]
    message = parse_message(wire(lines + list(extra)))
    assert isinstance(message, Request)
    return message


def ok(*extra: str, body: bytes = b"") -> Response:
    message = parse_message(wire(OK_HEAD + list(extra), body))
    assert isinstance(message, Response)
    return message


# --- start line ----------------------------------------------------------------


def test_a_request_line_gives_method_request_uri_and_version():
    request = invite()
    assert request.method == "INVITE"
    assert request.uri == "sip:bob@biloxi.example"
    assert request.version == "SIP/2.0"
    assert isinstance(request.request_uri, SipUri)
    assert request.request_uri.user == "bob"


def test_the_request_uri_is_parsed_only_when_asked_for():
    lines = ["INVITE sip:bob@bad_host! SIP/2.0"] + INVITE_HEAD[1:]
    request = parse_message(wire(lines))
    assert request.uri == "sip:bob@bad_host!"
    with pytest.raises(ParseError):
        request.request_uri  # noqa: B018


def test_a_tel_request_uri_is_a_tel_uri():
    lines = ["INVITE tel:+1-201-555-0123 SIP/2.0"] + INVITE_HEAD[1:]
    assert isinstance(parse_message(wire(lines)).request_uri, TelUri)


def test_a_status_line_gives_status_and_reason_with_its_spaces():
    response = parse_message(wire(["SIP/2.0 404 Not  Found Here "] + OK_HEAD[1:]))
    assert isinstance(response, Response)
    assert response.status == 404
    assert response.reason == "Not  Found Here "
    assert not response.provisional


def test_a_status_line_may_have_an_empty_reason_phrase():
    for start in ("SIP/2.0 180 ", "SIP/2.0 180"):
        response = parse_message(wire([start] + OK_HEAD[1:]))
        assert (response.status, response.reason, response.provisional) == (180, "", True)


def test_the_version_is_case_insensitive():
    lines = ["INVITE sip:bob@biloxi.example sip/2.0"] + INVITE_HEAD[1:]
    assert parse_message(wire(lines)).method == "INVITE"


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        ("INVITE sip:bob@biloxi.example SIP/3.0", "Version Not Supported"),
        ("SIP/3.0 200 OK", "unsupported SIP version"),
        ("INVITE sip:bob@biloxi.example", "bad request line"),
        ("INVITE  sip:bob@biloxi.example SIP/2.0", "bad request line"),
        ("INVITE sip:bob@biloxi.example SIP/2.0 extra", "bad request line"),
        ("INVITE sip:bob@biloxi.example HTTP/1.1", "bad request line"),
        ("INV@TE sip:bob@biloxi.example SIP/2.0", "bad method"),
        ("INVITE bob@biloxi.example SIP/2.0", "bad Request-URI"),
        ("INVITE :bob SIP/2.0", "bad Request-URI"),
        ("INVITE <sip:bob@biloxi.example> SIP/2.0", "bad Request-URI"),
        ("INVITE 1sip:bob@biloxi.example SIP/2.0", "bad Request-URI"),
        ("SIP/2.0 2000 OK", "bad status code"),
        ("SIP/2.0 099 Odd", "bad status code"),
        ("SIP/2.0 700 Odd", "bad status code"),
        ("SIP/2.0 2OO OK", "bad status code"),
        ("SIP/2.0", "bad status line"),
    ],
)
def test_a_malformed_start_line_is_a_parse_error_with_a_reason(start, reason):
    head = OK_HEAD[1:] if start.startswith("SIP/") else INVITE_HEAD[1:]
    with pytest.raises(ParseError, match=reason):
        parse_message(wire([start] + head))


def test_crlfs_before_the_start_line_are_ignored():
    # RFC 3261 §7.5
    assert parse_message(b"\r\n\r\n" + wire(INVITE_HEAD)).method == "INVITE"


def test_reason_phrases_are_the_rfc_ones_or_their_class():
    assert reason_phrase(200) == "OK"
    assert reason_phrase(487) == "Request Terminated"
    assert reason_phrase(299) == "OK"
    assert reason_phrase(499) == "Bad Request"
    assert reason_phrase(799) == "Unknown"


# --- header names and values ---------------------------------------------------------


def test_header_names_are_case_insensitive():
    request = invite("x-CUSTOM-header: one")
    assert request.headers.get("Call-ID") == request.headers.get("CALL-id")
    assert request.headers.get("X-Custom-Header") == "one"
    assert "x-custom-HEADER" in request.headers
    assert "X-Absent" not in request.headers


def test_compact_forms_are_the_same_headers_as_the_long_ones():
    lines = [
        "OPTIONS sip:bob@biloxi.example SIP/2.0",
        "v: SIP/2.0/UDP pc33.atlanta.example;branch=z9hG4bKc1",
        "Max-Forwards: 70",
        "t: <sip:bob@biloxi.example>",
        "f: <sip:alice@atlanta.example>;tag=1",
        "i: compact@atlanta.example",
        "CSeq: 1 OPTIONS",
        "m: <sip:alice@pc33.atlanta.example>",
        "k: path, gruu",
        "s: lunch",
        "c: application/sdp",
        "e: gzip",
        "o: presence",
        "r: <sip:carol@chicago.example>",
        "u: refer",
        "x: 1800",
        "b: <sip:alice@atlanta.example>",
    ]
    request = parse_message(wire(lines, b"x"))
    h = request.headers
    assert request.via.branch == "z9hG4bKc1"
    assert request.to.uri_text == "sip:bob@biloxi.example"
    assert request.from_.tag == "1"
    assert request.call_id == "compact@atlanta.example"
    assert request.contacts[0].uri_text == "sip:alice@pc33.atlanta.example"
    assert request.content_type == "application/sdp"
    assert (h.get("Supported"), h.get("Subject"), h.get("Content-Encoding")) == ("path, gruu", "lunch", "gzip")
    assert (h.get("Event"), h.get("Refer-To"), h.get("Allow-Events")) == ("presence", "<sip:carol@chicago.example>", "refer")
    assert (h.get("Session-Expires"), h.get("Referred-By")) == ("1800", "<sip:alice@atlanta.example>")


def test_compact_and_long_forms_of_one_header_are_lines_of_the_same_header():
    request = invite("Route: <sip:p1.example;lr>")
    request = parse_message(request.serialise().replace(b"Route:", b"Route: <sip:p0.example;lr>\r\nRoute:", 1))
    assert [r.uri_text for r in request.routes] == ["sip:p0.example;lr", "sip:p1.example;lr"]
    mixed = invite("v: SIP/2.0/UDP second.example;branch=z9hG4bK2")
    assert [v.host for v in mixed.vias] == ["pc33.atlanta.example", "second.example"]


def test_lws_around_the_colon_and_the_value_is_not_part_of_the_value():
    request = invite("Subject  :   lunch at noon  ", "X-Tab:\tvalue")
    assert request.headers.get("subject") == "lunch at noon"
    assert request.headers.get("x-tab") == "value"


def test_an_empty_header_value_is_kept_as_empty():
    request = invite("Subject:")
    assert request.headers.get("Subject") == ""


def test_folded_lines_are_joined_with_one_space():
    # RFC 3261 §7.3.1: a line starting with whitespace continues the previous one
    request = invite("Subject: I know you're there,", "   pick up the phone", "\tand talk to me!")
    assert request.headers.get("subject") == "I know you're there, pick up the phone and talk to me!"


def test_a_folded_list_header_is_split_after_joining():
    request = invite("Route: <sip:p1.example;lr>,", " <sip:p2.example;lr>")
    assert [r.uri_text for r in request.routes] == ["sip:p1.example;lr", "sip:p2.example;lr"]


def test_values_split_on_commas_but_not_inside_quotes_or_angle_brackets():
    request = invite(
        'Contact: "Smith, Bob" <sip:bob@a.example;x=1,2>, <sip:bob@b.example>;q=0.5',
        drop="Contact",
    )
    contacts = request.contacts
    assert [(c.display, c.uri_text) for c in contacts] == [
        ("Smith, Bob", "sip:bob@a.example;x=1,2"),
        (None, "sip:bob@b.example"),
    ]
    assert contacts[1].q == 0.5


def test_values_of_a_header_repeated_on_several_lines_come_in_order():
    request = invite(
        "Record-Route: <sip:rr1.example;lr>, <sip:rr2.example;lr>",
        "Record-Route: <sip:rr3.example;lr>",
    )
    assert [r.uri_text for r in request.record_routes] == [
        "sip:rr1.example;lr",
        "sip:rr2.example;lr",
        "sip:rr3.example;lr",
    ]
    assert request.headers.get_all("Record-Route") == [
        "<sip:rr1.example;lr>, <sip:rr2.example;lr>",
        "<sip:rr3.example;lr>",
    ]
    assert request.headers.get("Record-Route") == "<sip:rr1.example;lr>, <sip:rr2.example;lr>"
    assert len(request.headers.values("record-route")) == 3


def test_headers_iterate_in_order_with_names_as_written():
    request = invite("x-lower: 1", "X-UPPER: 2")
    names = [name for name, _ in request.headers]
    assert names[:2] == ["Via", "Max-Forwards"]
    assert names[-3:] == ["x-lower", "X-UPPER", "Content-Length"]
    assert len(request.headers) == len(names)


def test_an_untouched_message_serialises_byte_for_byte():
    raw = wire(
        INVITE_HEAD
        + [
            "X-Odd-Spacing :  a,b ;c=\"d,e\"  ",
            "x-lowercase-unknown: Ünïcödé value",
            "Allow: INVITE,ACK ,  BYE",
            "SUPPORTED: timer",
        ],
        BODY,
    )
    assert parse_message(raw).serialise() == raw


def test_a_message_with_folding_serialises_unfolded():
    raw = wire(INVITE_HEAD + ["Subject: one,", "  two"])
    assert b"Subject: one, two\r\n" in parse_message(raw).serialise()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("No colon here", "header line without colon"),
        ("Via", "header line without colon"),
        ("Bad Name: x", "bad header name"),
        ("X-Tëst: x", "bad header name"),
        (": no name", "bad header name"),
        ("X(y): z", "bad header name"),
    ],
)
def test_a_malformed_header_line_is_a_parse_error(line, reason):
    with pytest.raises(ParseError, match=reason):
        invite(line)


def test_a_header_section_that_is_not_utf8_is_a_parse_error():
    raw = wire(INVITE_HEAD + ["Subject: cafe"]).replace(b"cafe", b"caf\xe9")
    with pytest.raises(ParseError, match="UTF-8"):
        parse_message(raw)


@pytest.mark.parametrize("bad", [b"\x00", b"\x07", b"\x1b", b"\x7f", b"\r", b"\n", b"\x0b"])
def test_control_characters_bare_cr_and_bare_lf_in_the_headers_are_parse_errors(bad):
    # Forwarded lines go out as they came: a bare LF would split a line downstream.
    raw = wire(INVITE_HEAD + ["Subject: a"]).replace(b"Subject: a", b"Subject: a" + bad + b"X-Evil: b")
    with pytest.raises(ParseError, match="control character"):
        parse_message(raw)


def test_a_horizontal_tab_and_utf8_text_are_allowed_in_headers():
    request = invite("Subject:\tcafé \tcrème")
    assert request.headers.get("subject") == "café \tcrème"


def test_control_characters_in_the_body_are_fine():
    body = b"\x00\x01\x02binary\r\n\n\r"
    assert invite("Content-Type: application/octet-stream", body=body).body == body


def test_without_a_blank_line_there_is_no_end_of_headers():
    with pytest.raises(ParseError, match="no end of headers"):
        parse_message(b"INVITE sip:bob@biloxi.example SIP/2.0\r\nVia: SIP/2.0/UDP h")


def test_a_datagram_ending_after_the_last_header_line_has_an_empty_body():
    raw = ("\r\n".join(INVITE_HEAD) + "\r\n").encode()
    assert parse_message(raw).body == b""


# --- body and Content-Length ------------------------------------------------------------


def test_the_body_is_the_bytes_counted_by_content_length():
    request = invite("Content-Type: application/sdp", body=BODY)
    assert request.body == BODY
    assert request.content_length == len(BODY)
    assert request.content_type == "application/sdp"


def test_on_a_datagram_bytes_past_content_length_are_dropped():
    # RFC 3261 §18.3
    raw = wire(INVITE_HEAD, BODY, length=10) + b"garbage"
    assert parse_message(raw).body == BODY[:10]


def test_on_a_datagram_without_content_length_the_body_is_the_rest():
    raw = wire(INVITE_HEAD, BODY, length=-1)
    request = parse_message(raw)
    assert request.body == BODY
    assert request.content_length is None


def test_a_stream_message_cut_by_the_framer_keeps_its_body():
    raw = wire(INVITE_HEAD, BODY)
    assert parse_message(raw, stream=True).body == BODY


def test_content_length_beyond_the_data_is_a_parse_error():
    for stream in (False, True):
        with pytest.raises(ParseError, match="Content-Length beyond the body"):
            parse_message(wire(INVITE_HEAD, BODY, length=len(BODY) + 1), stream=stream)


def test_content_length_may_have_leading_zeros():
    raw = wire(INVITE_HEAD + ["Content-Length: 0005"], b"hello", length=-1)
    assert parse_message(raw).body == b"hello"


def test_compact_content_length_frames_the_body():
    raw = wire(INVITE_HEAD + ["l: 5"], b"hello world", length=-1)
    assert parse_message(raw).body == b"hello"


def test_two_equal_content_lengths_are_accepted_even_written_differently():
    raw = wire(INVITE_HEAD + ["Content-Length: 5", "l: 005"], b"hello", length=-1)
    assert parse_message(raw).body == b"hello"


def test_two_conflicting_content_lengths_are_a_parse_error():
    raw = wire(INVITE_HEAD + ["Content-Length: 5", "Content-Length: 4"], b"hello", length=-1)
    with pytest.raises(ParseError, match="conflicting Content-Length"):
        parse_message(raw)


@pytest.mark.parametrize("value", ["-1", "+5", "5.0", "five", "", "99999999999", "٥"])
def test_a_content_length_that_is_not_a_plain_number_is_a_parse_error(value):
    raw = wire(INVITE_HEAD + [f"Content-Length: {value}"], b"hello", length=-1)
    with pytest.raises(ParseError, match="bad Content-Length"):
        parse_message(raw)


# --- what every message must carry -------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("To", "missing To"),
        ("From", "missing From"),
        ("CSeq", "missing CSeq"),
        ("Call-ID", "missing Call-ID"),
        ("Via", "missing Via"),
    ],
)
def test_a_request_missing_a_mandatory_header_is_a_parse_error(header, reason):
    # RFC 3261 §8.1.1
    with pytest.raises(ParseError, match=reason):
        invite(drop=header)


def test_a_request_without_max_forwards_is_taken_and_reads_none():
    # A proxy adds one (RFC 3261 §16.6 step 3); RFC 2543 peers send none (RFC 4475 §3.4.1).
    assert invite(drop="Max-Forwards").max_forwards is None


def test_another_sip_version_is_answered_505_not_400():
    with pytest.raises(ParseError) as caught:
        parse_message(wire(["OPTIONS sip:bob@biloxi.example SIP/7.0"] + INVITE_HEAD[1:]))
    assert caught.value.status == 505  # RFC 3261 §21.5.6, RFC 4475 §3.1.2.16


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("To", "missing To"),
        ("From", "missing From"),
        ("CSeq", "missing CSeq"),
        ("Call-ID", "missing Call-ID"),
        ("Via", "missing Via"),
    ],
)
def test_a_response_missing_a_mandatory_header_is_a_parse_error(header, reason):
    lines = [line for line in OK_HEAD if not line.startswith(header + ":")]
    with pytest.raises(ParseError, match=reason):
        parse_message(wire(lines))


def test_a_response_needs_no_max_forwards():
    assert "Max-Forwards" not in ok().headers


@pytest.mark.parametrize("value", ["abc", "-1", "", "1 0", "4294967296", "7O"])
def test_a_non_numeric_max_forwards_is_a_parse_error(value):
    lines = [f"Max-Forwards: {value}" if line.startswith("Max-Forwards") else line for line in INVITE_HEAD]
    with pytest.raises(ParseError, match="bad Max-Forwards"):
        parse_message(wire(lines))


@pytest.mark.parametrize("value", ["", "314159", "INVITE", "x INVITE", "314159 INVITE extra", "2147483648 INVITE"])
def test_a_malformed_cseq_is_a_parse_error(value):
    lines = [f"CSeq: {value}" if line.startswith("CSeq") else line for line in INVITE_HEAD]
    with pytest.raises(ParseError, match="bad CSeq"):
        parse_message(wire(lines))


def test_a_cseq_method_other_than_the_request_method_is_a_parse_error():
    lines = ["CSeq: 1 BYE" if line.startswith("CSeq") else line for line in INVITE_HEAD]
    with pytest.raises(ParseError, match="CSeq method does not match"):
        parse_message(wire(lines))


def test_a_malformed_cseq_in_a_response_is_a_parse_error():
    lines = ["CSeq: one INVITE" if line.startswith("CSeq") else line for line in OK_HEAD]
    with pytest.raises(ParseError, match="bad CSeq"):
        parse_message(wire(lines))


@pytest.mark.parametrize("value", ["", "a b@host"])
def test_an_empty_or_spaced_call_id_is_a_parse_error(value):
    lines = [f"Call-ID: {value}" if line.startswith("Call-ID") else line for line in INVITE_HEAD]
    with pytest.raises(ParseError, match="bad Call-ID"):
        parse_message(wire(lines))


def test_parse_errors_carry_a_short_single_line_reason():
    with pytest.raises(ParseError) as caught:
        invite(drop="Call-ID")
    assert caught.value.reason == "missing Call-ID"
    assert "\r" not in caught.value.reason and "\n" not in caught.value.reason


# --- typed headers -------------------------------------------------------------------------


def test_the_typed_headers_routing_needs():
    request = invite(
        "Via: SIP/2.0/TCP proxy.example:5070;branch=z9hG4bKp1;received=192.0.2.9;rport=5071",
        "Route: <sip:p1.example;lr>, <sip:p2.example;lr>",
        "Record-Route: <sip:rr.example;lr>",
        "Path: <sip:edge.example;lr>",
        "Expires: 3600",
        "Content-Type: Application/SDP ; charset=utf-8",
        body=b"v=0\r\n",
    )
    assert request.via.sent_by == ("pc33.atlanta.example", 5060)
    assert request.via.branch == "z9hG4bK776asdhds"
    assert [(v.transport, v.received, v.rport) for v in request.vias] == [
        ("UDP", None, None),
        ("TCP", "192.0.2.9", 5071),
    ]
    assert request.from_.display == "Alice"
    assert request.from_.tag == "1928301774"
    assert request.to.tag is None
    assert request.call_id == "a84b4c76e66710@pc33.atlanta.example"
    assert request.cseq == CSeq(314159, "INVITE")
    assert request.transaction_method == "INVITE"
    assert request.max_forwards == 70
    assert request.expires == 3600
    assert [r.uri_text for r in request.routes] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    assert request.route is not None and request.route.uri_text == "sip:p1.example;lr"
    assert [r.uri_text for r in request.record_routes] == ["sip:rr.example;lr"]
    assert [p.uri_text for p in request.paths] == ["sip:edge.example;lr"]
    assert request.contacts[0].uri_text == "sip:alice@pc33.atlanta.example"
    assert request.content_type == "application/sdp"
    assert request.content_length == 5


def test_absent_optional_headers_read_as_empty_or_none():
    request = invite(drop="Contact")
    assert request.routes == [] and request.route is None
    assert request.record_routes == [] and request.paths == [] and request.contacts == []
    assert request.expires is None and request.content_type is None
    assert request.authorization is None and request.authorizations == []
    assert request.proxy_authorization is None
    assert request.www_authenticate == [] and request.proxy_authenticate == []


def test_contact_star_and_the_registration_parameters():
    request = invite(
        'Contact: <sip:a@192.0.2.4>;expires=60;q=0.8;+sip.instance="<urn:uuid:1234>";reg-id=2',
        drop="Contact",
    )
    (contact,) = request.contacts
    assert (contact.expires, contact.q, contact.instance, contact.reg_id) == (60, 0.8, "<urn:uuid:1234>", 2)
    star = invite("Contact: *", drop="Contact")
    assert star.contacts[0].star


DIGEST = (
    'Digest username="alice", realm="atlanta.example", nonce="84a4cc6f3082121f32b42a2187831a9e",'
    ' uri="sip:bob@biloxi.example", response="7587245234b3434cc3412213e5f113a5"'
)


def test_authorization_headers_are_parsed_into_credentials_when_read():
    request = invite(f"Authorization: {DIGEST}", f"Proxy-Authorization: {DIGEST.replace('atlanta', 'proxy')}")
    assert isinstance(request.authorization, Credentials)
    assert request.authorization.username == "alice"
    assert request.authorization.realm == "atlanta.example"
    assert request.proxy_authorization is not None
    assert request.proxy_authorization.realm == "proxy.example"


def test_credentials_for_several_realms_are_all_available():
    request = invite(f"Authorization: {DIGEST}", f"Authorization: {DIGEST.replace('atlanta', 'other')}")
    assert [c.realm for c in request.authorizations] == ["atlanta.example", "other.example"]
    assert request.authorization == request.authorizations[0]


def test_challenges_are_kept_as_written_one_per_line():
    challenge = 'Digest realm="atlanta.example", nonce="abc", qop="auth", algorithm=MD5'
    response = ok(f"WWW-Authenticate: {challenge}", "Proxy-Authenticate: Digest realm=\"p\", nonce=\"n\"")
    assert response.www_authenticate == [challenge]
    assert response.proxy_authenticate == ['Digest realm="p", nonce="n"']


def test_headers_are_parsed_only_when_read():
    # A garbage Contact does not stop an OPTIONS from being answered; reading it fails.
    request = options("Contact: <sip:broken", "Route: ;;;", "Authorization: Basic xyz", "Expires: soon")
    assert request.method == "OPTIONS"
    assert request.call_id == "a84b4c76e66710@pc33.atlanta.example"
    for accessor in ("contacts", "routes", "route", "authorization", "expires"):
        with pytest.raises(ParseError):
            getattr(request, accessor)


def test_a_garbage_from_or_to_fails_only_when_read():
    lines = [
        "From: no uri here" if line.startswith("From") else "To: <unclosed" if line.startswith("To") else line
        for line in INVITE_HEAD
    ]
    request = parse_message(wire(lines))
    with pytest.raises(ParseError):
        request.from_  # noqa: B018
    with pytest.raises(ParseError):
        request.to  # noqa: B018


def test_a_typed_view_is_parsed_once_and_shared():
    request = invite()
    assert request.via is request.via
    assert request.from_ is request.from_
    assert request.contacts is request.contacts


# --- changing headers ------------------------------------------------------------------------


def lines_of(message: Request | Response) -> list[bytes]:
    return message.serialise().split(b"\r\n\r\n")[0].split(b"\r\n")


def test_set_replaces_the_first_line_in_place_and_drops_the_others():
    request = invite("Route: <sip:a.example;lr>", "Subject: x", "Route: <sip:b.example;lr>")
    request.headers.set("route", "<sip:c.example;lr>")
    assert request.headers.get_all("Route") == ["<sip:c.example;lr>"]
    names = [line.split(b":")[0] for line in lines_of(request)]
    assert names.index(b"Route") < names.index(b"Subject")


def test_set_of_an_absent_header_appends_it():
    request = invite()
    request.headers.set("Subject", "new")
    assert list(request.headers)[-1] == ("Subject", "new")


def test_set_keeps_the_name_as_written_and_add_uses_canonical_spelling():
    request = parse_message(wire(INVITE_HEAD + ["s: old"]))
    request.headers.set("Subject", "new")
    request.headers.add("call-info", "<http://x.example/a>")
    assert b"s: new" in lines_of(request)
    assert b"Call-Info: <http://x.example/a>" in lines_of(request)


def test_add_appends_a_line_even_when_the_header_exists():
    request = invite()
    request.headers.add("Via", "SIP/2.0/UDP last.example;branch=z9hG4bKl")
    assert [v.host for v in request.vias] == ["pc33.atlanta.example", "last.example"]


def test_prepend_puts_the_value_above_the_existing_ones():
    request = invite("Record-Route: <sip:rr1.example;lr>")
    request.headers.prepend("Via", "SIP/2.0/UDP proxy.example;branch=z9hG4bKp")
    request.headers.prepend("Record-Route", "<sip:proxy.example;lr>")
    assert lines_of(request)[1] == b"Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKp"
    assert request.via.host == "proxy.example"
    assert [r.uri_text for r in request.record_routes] == ["sip:proxy.example;lr", "sip:rr1.example;lr"]
    rr = [line for line in lines_of(request) if line.startswith(b"Record-Route")]
    assert rr == [b"Record-Route: <sip:proxy.example;lr>", b"Record-Route: <sip:rr1.example;lr>"]


def test_prepend_of_a_new_header_puts_it_first():
    request = invite()
    request.headers.prepend("Record-Route", "<sip:proxy.example;lr>")
    assert lines_of(request)[1] == b"Record-Route: <sip:proxy.example;lr>"


def test_pop_first_value_takes_one_value_from_a_multi_value_line():
    request = invite("Route: <sip:p1.example;lr>, <sip:p2.example;lr>", "Route: <sip:p3.example;lr>")
    assert request.headers.pop_first_value("Route") == "<sip:p1.example;lr>"
    assert request.headers.get_all("Route") == ["<sip:p2.example;lr>", "<sip:p3.example;lr>"]
    assert request.headers.pop_first_value("route") == "<sip:p2.example;lr>"
    assert request.headers.pop_first_value("route") == "<sip:p3.example;lr>"
    assert request.headers.pop_first_value("route") is None
    assert "Route" not in request.headers
    assert request.routes == []


def test_pop_first_value_of_a_quoted_list_respects_quotes():
    request = invite('Contact: "a, b" <sip:a@x.example>, <sip:b@x.example>', drop="Contact")
    assert request.headers.pop_first_value("m") == '"a, b" <sip:a@x.example>'
    assert [c.uri_text for c in request.contacts] == ["sip:b@x.example"]


def test_replace_first_value_keeps_the_other_values_of_its_line():
    request = invite("Route: <sip:p1.example;lr>, <sip:p2.example;lr>", "Route: <sip:p3.example;lr>")
    request.headers.replace_first_value("Route", "<sip:p0.example;lr>")
    assert request.headers.get_all("Route") == [
        "<sip:p0.example;lr>, <sip:p2.example;lr>",
        "<sip:p3.example;lr>",
    ]
    assert [r.uri_text for r in request.routes][:2] == ["sip:p0.example;lr", "sip:p2.example;lr"]


def test_a_stamped_top_via_is_written_back_and_stays_parsed():
    request = invite()
    via = request.via
    via.params["received"] = "192.0.2.99"
    request.set_top_via(via)
    assert request.via is via
    reparsed = parse_message(request.serialise())
    assert reparsed.via.received == "192.0.2.99"
    assert len(reparsed.vias) == len(request.vias)


def test_remove_drops_every_line_of_a_header():
    request = invite("Route: <sip:a.example;lr>", "Route: <sip:b.example;lr>")
    request.headers.remove("ROUTE")
    assert "Route" not in request.headers
    assert not any(line.startswith(b"Route") for line in lines_of(request))
    request.headers.remove("X-Never-There")


def test_changes_leave_every_other_line_byte_for_byte():
    odd = ["X-Odd :  spaced  ,  value", "sUbJeCt: Mixed", "Route: <sip:p1.example;lr>, <sip:p2.example;lr>"]
    request = invite(*odd)
    request.headers.prepend("Via", "SIP/2.0/UDP proxy.example;branch=z9hG4bKp")
    request.headers.set("Max-Forwards", "69")
    request.headers.pop_first_value("Route")
    out = request.serialise()
    for line in INVITE_HEAD[1:] + odd[:2]:
        if not line.startswith("Max-Forwards"):
            assert line.encode() + b"\r\n" in out
    assert b"Max-Forwards: 69\r\n" in out
    assert b"Route: <sip:p2.example;lr>\r\n" in out


def test_typed_views_are_parsed_again_after_a_change():
    request = invite("Route: <sip:p1.example;lr>, <sip:p2.example;lr>")
    assert request.via.host == "pc33.atlanta.example"
    assert len(request.vias) == 1
    assert request.route.uri_text == "sip:p1.example;lr"
    assert len(request.routes) == 2
    assert request.max_forwards == 70
    request.headers.prepend("v", "SIP/2.0/UDP proxy.example;branch=z9hG4bKp")
    request.headers.pop_first_value("Route")
    request.headers.set("Max-Forwards", "69")
    request.headers.set("f", "<sip:carol@chicago.example>;tag=9")
    request.headers.remove("Contact")
    assert request.via.host == "proxy.example"
    assert len(request.vias) == 2
    assert request.route.uri_text == "sip:p2.example;lr"
    assert len(request.routes) == 1
    assert request.max_forwards == 69
    assert request.from_.tag == "9"
    assert request.contacts == []


def test_a_changed_typed_value_goes_out_once_written_back():
    request = invite()
    via = request.via
    via.params["received"] = "192.0.2.1"
    request.headers.pop_first_value("Via")
    request.headers.prepend("Via", str(via))
    assert b"Via: SIP/2.0/UDP pc33.atlanta.example:5060;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n" in (
        request.serialise()
    )


def test_headers_built_in_code_and_copies_are_independent():
    headers = Headers([("Via", "SIP/2.0/UDP a.example;branch=z9hG4bK1"), ("v", "SIP/2.0/UDP b.example")])
    copy = headers.copy()
    copy.pop_first_value("Via")
    copy.add("Subject", "x")
    assert headers.get_all("via") == ["SIP/2.0/UDP a.example;branch=z9hG4bK1", "SIP/2.0/UDP b.example"]
    assert copy.get_all("via") == ["SIP/2.0/UDP b.example"]
    assert "Subject" not in headers
    assert headers != copy
    assert headers == Headers([("v", "SIP/2.0/UDP a.example;branch=z9hG4bK1"), ("Via", "SIP/2.0/UDP b.example")])


def test_values_set_in_code_lose_surrounding_whitespace():
    headers = Headers([("Subject", "  padded\t")])
    headers.set("X-A", " a ")
    headers.prepend("X-B", " b ")
    assert (headers.get("subject"), headers.get("x-a"), headers.get("x-b")) == ("padded", "a", "b")


# --- serialising -------------------------------------------------------------------------------


def test_serialise_writes_the_start_line_headers_blank_line_and_body():
    request = Request(
        "OPTIONS",
        "sip:bob@biloxi.example",
        Headers([("Via", "SIP/2.0/UDP a.example;branch=z9hG4bK1"), ("Call-ID", "x@y")]),
        b"hi",
    )
    assert request.serialise() == (
        b"OPTIONS sip:bob@biloxi.example SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n"
        b"Call-ID: x@y\r\n"
        b"Content-Length: 2\r\n"
        b"\r\n"
        b"hi"
    )
    assert bytes(request) == request.serialise()


def test_serialise_always_writes_content_length_as_streams_need_it():
    request = Request("OPTIONS", "sip:bob@biloxi.example")
    assert request.serialise().endswith(b"Content-Length: 0\r\n\r\n")


def test_serialise_corrects_a_content_length_that_does_not_match_the_body():
    request = invite(body=BODY)
    request.body = b"short"
    assert b"Content-Length: 5\r\n\r\nshort" in request.serialise()
    assert request.content_length == 5


def test_set_body_sets_content_length_and_type():
    request = invite()
    request.set_body(b"v=0\r\n", "application/sdp")
    assert (request.content_length, request.content_type, request.body) == (5, "application/sdp", b"v=0\r\n")


def test_a_request_uri_given_as_a_uri_object_is_written_as_text():
    request = Request("INVITE", SipUri(user="bob", host="biloxi.example"))
    assert request.uri == "sip:bob@biloxi.example"
    assert request.request_uri.host == "biloxi.example"
    assert request.start_line() == "INVITE sip:bob@biloxi.example SIP/2.0"


def test_a_serialised_message_parses_back_equal():
    for message in (invite(body=BODY), ok(body=BODY)):
        assert parse_message(message.serialise()) == message


def test_messages_compare_by_start_line_headers_and_body():
    assert invite() == invite()
    assert invite() != invite("Subject: x")
    assert invite() != invite(body=b"x")
    assert invite() != ok()
    assert ok() != parse_message(wire(["SIP/2.0 200 Fine"] + OK_HEAD[1:]))


# --- building responses ------------------------------------------------------------------------


def test_a_response_copies_via_from_to_call_id_and_cseq():
    # RFC 3261 §8.2.6.2
    request = invite("Via: SIP/2.0/UDP second.example;branch=z9hG4bK2", "Subject: not copied")
    response = request.response(486)
    assert (response.status, response.reason) == (486, "Busy Here")
    assert response.headers.get_all("Via") == request.headers.get_all("Via")
    assert response.from_ == request.from_
    assert response.call_id == request.call_id
    assert response.cseq == request.cseq
    assert "Subject" not in response.headers
    assert "Contact" not in response.headers
    assert response.content_length == 0


def test_a_response_adds_the_to_tag_unless_it_is_a_100_or_already_tagged():
    request = invite()
    assert request.response(180, to_tag="abc").to.tag == "abc"
    assert request.response(100, to_tag="abc").to.tag is None
    tagged = parse_message(request.serialise().replace(b'<sip:bob@biloxi.example>', b"<sip:bob@biloxi.example>;tag=old", 1))
    assert tagged.response(200, to_tag="new").to.tag == "old"


def test_a_100_trying_echoes_the_timestamp():
    # RFC 3261 §8.2.6.1
    request = invite("Timestamp: 54.2 0.5")
    assert request.response(100).headers.get("Timestamp") == "54.2 0.5"
    assert "Timestamp" not in request.response(180).headers


def test_a_response_may_carry_its_own_reason_phrase():
    assert invite().response(503, "Overloaded").reason == "Overloaded"


def test_a_built_response_goes_out_and_parses_back():
    request = invite()
    response = request.response(200, to_tag="t1")
    again = parse_message(response.serialise())
    assert again == response
    assert again.to.tag == "t1"
    assert again.via.branch == request.via.branch


# --- framing on streams ------------------------------------------------------------------------


def test_find_message_end_uses_content_length():
    raw = wire(INVITE_HEAD, BODY)
    assert find_message_end(raw) == len(raw)
    assert find_message_end(raw + b"INVITE next") == len(raw)


def test_find_message_end_waits_for_the_whole_body_and_the_whole_head():
    raw = wire(INVITE_HEAD, BODY)
    assert find_message_end(raw[:-1]) is None
    assert find_message_end(raw[:40]) is None


def test_find_message_end_reads_compact_and_mixed_case_content_length():
    for line in ("l: 5", "L :5", "content-LENGTH:   5"):
        raw = wire(INVITE_HEAD + [line], b"hello", length=-1)
        assert find_message_end(raw + b"trailing") == len(raw)


def test_find_message_end_is_not_fooled_by_headers_starting_with_l():
    raw = wire(INVITE_HEAD + ["Location-Info: 99", "l: 5"], b"hello", length=-1)
    assert find_message_end(raw) == len(raw)


def test_without_content_length_a_stream_message_has_no_body():
    raw = wire(INVITE_HEAD, length=-1)
    assert find_message_end(raw + b"NEXT") == len(raw)


def test_find_message_end_starts_at_the_offset_given():
    first, second = wire(INVITE_HEAD, BODY), wire(OK_HEAD, b"xy")
    buffer = bytearray(first + second)
    assert find_message_end(buffer, len(first)) == len(first) + len(second)


def test_crlf_keepalives_before_a_message_belong_to_its_frame():
    # RFC 5626 §3.5.1 pings are CRLF CRLF; RFC 3261 §7.5 lets CRLFs precede a message.
    raw = wire(INVITE_HEAD, BODY)
    buffer = b"\r\n\r\n\r\n" + raw
    end = find_message_end(buffer)
    assert end == len(buffer)
    assert parse_message(buffer[:end], stream=True).body == BODY
    assert find_message_end(b"\r\n\r\n") is None
    assert find_message_end(b"\r\n\r\n" + raw[:30]) is None


def test_a_bad_content_length_on_a_stream_is_a_parse_error():
    raw = wire(INVITE_HEAD + ["Content-Length: lots"], length=-1)
    with pytest.raises(ParseError, match="bad Content-Length"):
        find_message_end(raw)


def test_typed_values_are_the_header_types():
    request = invite()
    assert isinstance(request.via, Via)
    assert isinstance(request.from_, NameAddr)


@pytest.mark.parametrize(
    "extra",
    [
        b"Subject: a\r\n" + b" b\r\n" * 15_000,
        b"la: x\r\n" * 8_000,
        b"X-A: b\r\n" * 8_000,
    ],
    ids=["folded-lines", "headers-starting-with-l", "many-headers"],
)
def test_big_hostile_messages_take_linear_time(extra):
    data = wire(INVITE_HEAD, length=-1).replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n")
    started = time.perf_counter()
    parse_message(data).serialise()
    find_message_end(data)
    assert time.perf_counter() - started < 1.0


def test_salvage_keeps_what_a_400_needs_from_a_request_that_did_not_parse():
    data = (
        b"OPTIONS sip:proxy.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKs1\r\n"
        b"Max-Forwards: lots\r\nFrom: <sip:a@x.example>;tag=1\r\nTo: <sip:proxy.example>\r\n"
        b"Call-ID: salvage-1\r\nCSeq: 1 OPTIONS\r\nX-Junk: kept out\r\n\r\n"
    )
    with pytest.raises(ParseError):
        parse_message(data)
    request = salvage_request(data)
    assert request is not None and request.method == "OPTIONS"
    assert "x-junk" not in request.headers and "max-forwards" not in request.headers
    response = request.response(400, "bad Max-Forwards")
    assert response.call_id == "salvage-1" and response.via.branch == "z9hG4bKs1"


@pytest.mark.parametrize("data", [b"SIP/2.0 200 OK\r\n\r\n", b"\x00\xffgarbage", b"HELLO\r\n\r\n"])
def test_salvage_gives_nothing_for_responses_and_garbage(data):
    assert salvage_request(data) is None
