"""Header names and typed header values: RFC 3261 §7.3, §20, §25.1; RFC 3581; RFC 5626."""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipline.sip.errors import ParseError
from sipline.sip.headers import (
    COMPACT,
    Contact,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    format_params,
    header_key,
    is_token,
    parse_int_header,
    parse_params,
    quote,
    split_host_port,
    split_params,
    split_values,
    unquote,
)
from sipline.sip.uri import SipUri, TelUri

# --- header names --------------------------------------------------------------


@pytest.mark.parametrize("written", ["Call-ID", "call-id", "CALL-ID", "cAlL-iD", "i", "I"])
def test_header_names_are_case_insensitive_and_compact_forms_expand(written):
    assert header_key(written) == "call-id"


@pytest.mark.parametrize(
    ("letter", "key"),
    [
        ("v", "via"), ("f", "from"), ("t", "to"), ("i", "call-id"), ("m", "contact"),
        ("l", "content-length"), ("c", "content-type"), ("k", "supported"), ("s", "subject"),
        ("e", "content-encoding"), ("o", "event"), ("r", "refer-to"), ("u", "allow-events"),
        ("x", "session-expires"), ("b", "referred-by"), ("a", "accept-contact"),
        ("j", "reject-contact"), ("d", "request-disposition"), ("y", "identity"),
    ],
)
def test_every_registered_compact_form_names_its_full_header(letter, key):
    assert header_key(letter) == key
    assert header_key(letter.upper()) == key
    assert COMPACT[letter] == key


def test_an_unknown_header_name_is_its_own_lowercased_key():
    assert header_key("X-Custom-Thing") == "x-custom-thing"
    assert header_key(" X-Spaced ") == "x-spaced"


def test_canonical_names_use_the_rfc_spelling_and_title_case_for_unknown_ones():
    assert canonical_name("call-id") == "Call-ID"
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("x-custom-thing") == "X-Custom-Thing"


def test_tokens_are_ascii_alphanumerics_and_the_rfc_punctuation():
    assert is_token("INVITE")
    assert is_token("x-my.method!%*_+`'~")
    assert not is_token("")
    assert not is_token("IN VITE")
    assert not is_token("a:b")
    assert not is_token("ÜBER")


# --- splitting values and parameters -------------------------------------------


def test_a_value_without_commas_is_one_value_with_lws_trimmed():
    assert split_values("  <sip:a@b>  ") == ["<sip:a@b>"]


def test_values_split_on_commas_with_lws_around_them():
    assert split_values("a ,b,\t c") == ["a", "b", "c"]


def test_a_comma_inside_a_quoted_string_does_not_split():
    assert split_values('"Smith, John" <sip:j@x>, <sip:k@y>') == [
        '"Smith, John" <sip:j@x>',
        "<sip:k@y>",
    ]


def test_an_escaped_quote_does_not_end_the_quoted_string():
    assert split_values(r'"a \", b" <sip:a@x>, <sip:b@y>') == [
        r'"a \", b" <sip:a@x>',
        "<sip:b@y>",
    ]


def test_a_comma_inside_angle_brackets_does_not_split():
    assert split_values("<sip:a@x;p=1,2>, <sip:b@y?h=a,b>") == [
        "<sip:a@x;p=1,2>",
        "<sip:b@y?h=a,b>",
    ]
    assert split_values('"q" <sip:a@x;p=1,2>, <sip:b@y>') == ['"q" <sip:a@x;p=1,2>', "<sip:b@y>"]


@pytest.mark.parametrize("value", ['"open, <sip:a@b>', "<sip:a@b, c", '<sip:a@b>, "x, y'])
def test_an_unbalanced_quote_or_angle_bracket_is_a_parse_error(value):
    with pytest.raises(ParseError):
        split_values(value)


def test_parameters_split_on_semicolons_outside_quoted_strings():
    assert split_params('a=1;b="x;y";c') == ["a=1", 'b="x;y"', "c"]
    with pytest.raises(ParseError, match="unterminated"):
        split_params('a="x;y')


def test_parameter_names_are_lowercased_values_kept_as_written_and_flags_are_none():
    assert parse_params('Branch=z9hG4bKAbC;LR;q=0.5;n="Quoted Value"') == {
        "branch": "z9hG4bKAbC",
        "lr": None,
        "q": "0.5",
        "n": '"Quoted Value"',
    }


def test_lws_around_parameter_names_and_equals_is_ignored():
    assert parse_params(" tag = abc ; lr ") == {"tag": "abc", "lr": None}


@pytest.mark.parametrize("text", ["a=1;;b", "a=1;", ";", ";;;", "=1", "a ; ; b", 'a="x";;b'])
def test_an_empty_parameter_is_an_error_not_something_to_skip(text):
    # generic-param always has a name (RFC 3261 §25.1; RFC 4475 §3.1.2.1).
    with pytest.raises(ParseError, match="empty parameter"):
        parse_params(text)


def test_format_params_is_the_inverse_of_parse_params():
    text = ';tag=abc;lr;n="x y"'
    assert format_params(parse_params(text[1:])) == text


def test_quote_and_unquote_escape_backslashes_and_quotes():
    assert quote('say "hi" \\ bye') == r'"say \"hi\" \\ bye"'
    assert unquote(r'"say \"hi\" \\ bye"') == 'say "hi" \\ bye'
    assert unquote("bare") == "bare"


@given(st.text().filter(lambda text: "\r" not in text and "\n" not in text))
def test_unquote_undoes_quote(text):
    assert unquote(quote(text)) == text


def test_quote_escapes_control_characters_and_drops_line_breaks():
    # quoted-pair may carry any control but CR and LF (RFC 3261 §25.1), which
    # would end the header line: a display name must never smuggle one in.
    assert quote("BEL:\x07 NUL:\x00") == '"BEL:\\\x07 NUL:\\\x00"'
    assert quote("a\r\nVia: evil") == '"aVia: evil"'


def test_host_and_port_split_with_ipv6_references_and_lws_around_the_colon():
    assert split_host_port("example.com") == ("example.com", None)
    assert split_host_port("example.com:5070") == ("example.com", 5070)
    assert split_host_port("[2001:db8::1]:5060") == ("[2001:db8::1]", 5060)
    assert split_host_port("[2001:db8::1]") == ("[2001:db8::1]", None)
    assert split_host_port("example.com : 5070") == ("example.com", 5070)


@pytest.mark.parametrize("text", ["", ":5060", "a b", "host:", "host:65536", "host:x", "[::1", "[::1]x"])
def test_bad_host_ports_are_parse_errors(text):
    with pytest.raises(ParseError):
        split_host_port(text)


def test_integer_headers_are_ascii_digits_up_to_two_to_the_32_minus_one():
    assert parse_int_header(" 70 ", "Max-Forwards") == 70
    assert parse_int_header("0007", "Max-Forwards") == 7
    assert parse_int_header("4294967295", "Expires") == 2**32 - 1
    for bad in ("", "-1", "+1", "1.0", "abc", "4294967296", "١٢", "7 0"):
        with pytest.raises(ParseError, match="bad Max-Forwards"):
            parse_int_header(bad, "Max-Forwards")


# --- Via -------------------------------------------------------------------------


def test_a_via_gives_transport_sent_by_and_the_routing_parameters():
    via = Via.parse(
        "SIP/2.0/UDP pc33.atlanta.example:5066;branch=z9hG4bK776asdhds;"
        "received=192.0.2.1;rport=5070;maddr=239.1.1.1;ttl=16"
    )
    assert via.protocol == "SIP/2.0"
    assert via.transport == "UDP"
    assert via.sent_by == ("pc33.atlanta.example", 5066)
    assert via.branch == "z9hG4bK776asdhds"
    assert via.received == "192.0.2.1"
    assert via.rport == 5070
    assert via.wants_rport
    assert via.maddr == "239.1.1.1"
    assert via.params["ttl"] == "16"


def test_a_via_without_port_or_parameters_has_none_of_them():
    via = Via.parse("SIP/2.0/TCP client.example")
    assert (via.host, via.port, via.params, via.branch) == ("client.example", None, {}, None)
    assert via.received is None and via.maddr is None and via.rport is None
    assert not via.wants_rport


def test_an_empty_rport_asks_for_rport_but_has_no_value_yet():
    via = Via.parse("SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bKx")
    assert via.wants_rport
    assert via.rport is None


@pytest.mark.parametrize("value", ["abc", "²", "١٢", ""])
def test_an_rport_that_is_not_ascii_digits_counts_as_no_value(value):
    assert Via.parse(f"SIP/2.0/UDP h;rport={value}").rport is None


def test_transport_and_protocol_name_are_uppercased():
    via = Via.parse("sip/2.0/tcp h.example")
    assert via.transport == "TCP"
    assert via.protocol == "SIP/2.0"


@pytest.mark.parametrize(
    "value",
    [
        "SIP / 2.0 / UDP h.example:5060;branch=z9hG4bK1",
        "SIP/2.0/UDP\th.example:5060;branch=z9hG4bK1",
        "SIP/2.0/UDP   h.example:5060 ; branch = z9hG4bK1",
        "SIP\t/\t2.0\t/\tUDP \th.example : 5060;branch=z9hG4bK1",
        "  SIP/2.0/UDP h.example:5060;branch=z9hG4bK1  ",
    ],
)
def test_lws_is_allowed_around_slashes_colon_and_parameters(value):
    via = Via.parse(value)
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "UDP", "h.example", 5060)
    assert via.branch == "z9hG4bK1"


def test_a_slash_inside_a_parameter_does_not_confuse_the_sent_protocol():
    via = Via.parse('SIP / 2.0 / UDP h.example;x="a/b"')
    assert (via.transport, via.host, via.params) == ("UDP", "h.example", {"x": '"a/b"'})


def test_an_ipv6_sent_by_keeps_its_brackets():
    via = Via.parse("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111")
    assert via.sent_by == ("[2001:db8::9:1]", 6050)


def test_only_udp_and_dtls_are_unreliable():
    assert not Via.parse("SIP/2.0/UDP h").reliable
    assert not Via.parse("SIP/2.0/DTLS h").reliable
    assert Via.parse("SIP/2.0/TCP h").reliable
    assert Via.parse("SIP/2.0/TLS h").reliable
    assert Via.parse("SIP/2.0/WSS h").reliable


def test_a_via_serialises_in_canonical_form_and_parses_back_equal():
    via = Via.parse("sip / 2.0 / udp  H.example : 5060 ;Branch=z9hG4bKx;rport")
    assert str(via) == "SIP/2.0/UDP H.example:5060;branch=z9hG4bKx;rport"
    assert Via.parse(str(via)) == via


def test_a_via_built_in_code_serialises_ipv6_hosts_in_brackets():
    assert str(Via("UDP", "2001:db8::1", 5060, {"branch": "z9hG4bK1"})) == (
        "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1"
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 h.example",
        "SIP/2.0/ h.example",
        "SIP//UDP h.example",
        "SIP/2.0/UDP/X h.example",
        "SIP/2.0/UDP h.example:port",
        "SIP/2.0/UDP h.example:99999",
        "SIP/2.0/UDP :5060",
        "SIP/2.0/UDP [2001:db8::1",
        "SIP/2.0/UDP h.example;=x",
    ],
)
def test_a_malformed_via_is_a_parse_error(value):
    with pytest.raises(ParseError):
        Via.parse(value)


# --- name-addr (From, To, Route, Record-Route) -----------------------------------


def test_a_quoted_display_name_is_unquoted_and_the_tag_is_a_header_parameter():
    na = NameAddr.parse('"Alice Example" <sip:alice@atlanta.example>;tag=1928301774')
    assert na.display == "Alice Example"
    assert na.uri_text == "sip:alice@atlanta.example"
    assert na.tag == "1928301774"
    assert na.angle


def test_a_quoted_display_name_may_hold_commas_angles_and_escaped_quotes():
    na = NameAddr.parse(r'"Smith, \"Bob\" <boss>" <sip:bob@x.example>')
    assert na.display == 'Smith, "Bob" <boss>'
    assert na.uri_text == "sip:bob@x.example"


def test_an_unquoted_display_name_is_the_tokens_before_the_angle_bracket():
    na = NameAddr.parse("Bob  Smith <sip:bob@x.example>;tag=a")
    assert na.display == "Bob  Smith"
    assert na.tag == "a"


def test_no_display_name_is_none_and_an_empty_quoted_one_is_empty():
    assert NameAddr.parse("<sip:bob@x.example>").display is None
    assert NameAddr.parse('"" <sip:bob@x.example>').display == ""


def test_uri_parameters_inside_angles_are_not_header_parameters():
    na = NameAddr.parse("<sip:bob@x.example;transport=tcp;lr>;tag=5")
    assert na.uri_text == "sip:bob@x.example;transport=tcp;lr"
    assert na.params == {"tag": "5"}
    assert na.uri.params == {"transport": "tcp", "lr": None}


def test_in_an_addr_spec_without_angles_every_parameter_is_a_header_parameter():
    # RFC 3261 §20.10
    na = NameAddr.parse("sip:bob@x.example;tag=88;lr")
    assert na.uri_text == "sip:bob@x.example"
    assert na.params == {"tag": "88", "lr": None}
    assert not na.angle


def test_the_uri_is_parsed_only_when_asked_for():
    na = NameAddr.parse("<sip:bob@bad host>")
    assert na.uri_text == "sip:bob@bad host"
    with pytest.raises(ParseError):
        na.uri  # noqa: B018


def test_the_uri_can_be_any_scheme():
    assert isinstance(NameAddr.parse("<tel:+1-201-555-0123>").uri, TelUri)
    assert NameAddr.parse("<urn:service:sos>").uri_text == "urn:service:sos"


def test_setting_the_uri_updates_its_text():
    na = NameAddr.parse("<sip:a@x.example>;tag=1")
    na.uri = SipUri(user="b", host="y.example")
    assert str(na) == "<sip:b@y.example>;tag=1"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "<>",
        "<sip:a@b",
        "<bob>",
        '"Bob" sip:bob@x.example',
        '"unterminated <sip:a@b>',
        "<sip:a@b> junk",
        "<sip:a@b>;=1",
    ],
)
def test_a_malformed_name_addr_is_a_parse_error(value):
    with pytest.raises(ParseError):
        NameAddr.parse(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('"Alice" <sip:a@x.example>;tag=1', "Alice <sip:a@x.example>;tag=1"),
        ('"Smith, John" <sip:j@x.example>', '"Smith, John" <sip:j@x.example>'),
        ('"" <sip:j@x.example>', '"" <sip:j@x.example>'),
        ('" padded " <sip:j@x.example>', '" padded " <sip:j@x.example>'),
        ('"Jürgen" <sip:j@x.example>', '"Jürgen" <sip:j@x.example>'),
        ("sip:j@x.example", "sip:j@x.example"),
        ("sip:j@x.example;tag=2", "<sip:j@x.example>;tag=2"),
    ],
)
def test_a_name_addr_serialises_quoting_the_display_name_only_when_needed(value, text):
    na = NameAddr.parse(value)
    assert str(na) == text
    again = NameAddr.parse(text)
    assert (again.display, again.uri_text, again.params) == (na.display, na.uri_text, na.params)


_DISPLAY = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
_TAG = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)


@given(display=st.none() | _DISPLAY, tag=st.none() | _TAG)
def test_any_name_addr_survives_serialising_and_parsing(display, tag):
    na = NameAddr("sip:user@host.example;transport=tcp", display, {} if tag is None else {"tag": tag})
    assert NameAddr.parse(str(na)) == na


# --- Contact -----------------------------------------------------------------------


def test_a_star_contact_is_the_wildcard():
    star = Contact.parse(" * ")
    assert star.star
    assert str(star) == "*"


def test_contact_parameters_expires_q_instance_and_reg_id_are_typed():
    contact = Contact.parse(
        '<sip:alice@192.0.2.4:5062;transport=tcp>;expires=3600;q=0.7;'
        '+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1'
    )
    assert not contact.star
    assert contact.expires == 3600
    assert contact.q == 0.7
    assert contact.instance == "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"
    assert contact.reg_id == 1
    assert contact.uri.host == "192.0.2.4"


def test_absent_contact_parameters_are_none_and_q_defaults_to_one():
    contact = Contact.parse("<sip:a@b.example>")
    assert (contact.expires, contact.instance, contact.reg_id, contact.q) == (None, None, None, 1.0)


@pytest.mark.parametrize("q", ["0", "1", "0.5", "0.123", "1.000", "1.0"])
def test_q_values_from_zero_to_one_with_up_to_three_decimals_are_accepted(q):
    assert Contact.parse(f"<sip:a@b>;q={q}").q == float(q)


@pytest.mark.parametrize("q", ["", "1.5", "2", "-0.1", "nan", "inf", "0.1234", "0_5", "1e0", ".5"])
def test_other_q_values_are_parse_errors(q):
    with pytest.raises(ParseError, match="bad Contact q"):
        Contact.parse(f"<sip:a@b>;q={q}").q  # noqa: B018


@pytest.mark.parametrize(("param", "accessor"), [("expires", "expires"), ("reg-id", "reg_id")])
def test_non_numeric_expires_or_reg_id_are_parse_errors(param, accessor):
    contact = Contact.parse(f"<sip:a@b>;{param}=soon")
    with pytest.raises(ParseError):
        getattr(contact, accessor)


def test_a_contact_serialises_back_to_an_equal_contact():
    contact = Contact.parse('"Bob" <sip:bob@b.example>;expires=60;+sip.instance="<urn:uuid:1>"')
    assert Contact.parse(str(contact)) == contact


# --- CSeq --------------------------------------------------------------------------


def test_cseq_is_a_number_and_a_method():
    cseq = CSeq.parse("4711 INVITE")
    assert (cseq.number, cseq.method) == (4711, "INVITE")
    assert str(cseq) == "4711 INVITE"


@pytest.mark.parametrize("value", ["  1   INVITE ", "1\tINVITE", "1 \t INVITE", "001 INVITE"])
def test_cseq_allows_lws_between_and_around_its_parts(value):
    assert CSeq.parse(value) == CSeq(1, "INVITE")


def test_the_cseq_number_goes_up_to_two_to_the_31_minus_one():
    assert CSeq.parse("2147483647 BYE").number == 2**31 - 1
    with pytest.raises(ParseError, match="bad CSeq"):
        CSeq.parse("2147483648 BYE")


def test_an_extension_method_in_cseq_is_any_token():
    assert CSeq.parse("5 X-CUSTOM.op").method == "X-CUSTOM.op"


@pytest.mark.parametrize(
    "value",
    ["", "INVITE", "1", "-1 INVITE", "one INVITE", "1 INVITE x", "1 IN:VITE", "1.5 ACK",
     "99999999999 ACK", "1 İNVITE", "² ACK"],
)
def test_a_malformed_cseq_is_a_parse_error(value):
    with pytest.raises(ParseError, match="bad CSeq"):
        CSeq.parse(value)


# --- hostile input --------------------------------------------------------------------

_BIG = 60_000  # about the largest header a datagram can carry


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (NameAddr.parse, " " * _BIG + "x"),
        (NameAddr.parse, "a" + " \t" * (_BIG // 2) + "b"),
        (NameAddr.parse, '"' + "\\a" * (_BIG // 2)),
        (NameAddr.parse, "<sip:a@b>" + " " * _BIG + "x"),
        (NameAddr.parse, "<a:" + "b" * _BIG),
        (Via.parse, "SIP/2.0/UDP a" + " " * _BIG + ":" + " " * _BIG + "x"),
        (Via.parse, "SIP/2.0/UDP " + "a" * _BIG + " " * _BIG + "!"),
        (split_values, "," + "<" * _BIG),
        (split_values, "<" + ",a" * (_BIG // 2)),
        (parse_params, ";" * _BIG + "="),
    ],
    ids=["spaces", "lws", "escapes", "trailing", "no-gt", "via-colon", "via-host", "angles", "commas", "params"],
)
def test_hostile_values_take_linear_time(parse, value):
    # A regex that backtracks (as one here once did) takes minutes on these;
    # linear code takes milliseconds. The bound is loose: machines are noisy.
    started = time.perf_counter()
    try:
        parse(value)
    except ParseError:
        pass
    assert time.perf_counter() - started < 1.0


def test_a_list_line_parses_to_the_same_name_addrs_as_parsing_each_value():
    for value in [
        "<sip:p1.example;lr>, <sip:p2.example;lr>",
        "<sip:a,b@p1.example;lr>, <sip:p2.example>",
        "<sip:p1.example;lr>",
        '"Desk, 2" <sip:a@x.example>, <sip:b@y.example>;tag=1',
        "<sip:p1.example>;x=1, <sip:p2.example>",
        "<sip:p1.example>,<sip:p2.example>",
    ]:
        assert NameAddr.parse_list(value) == [NameAddr.parse(v) for v in split_values(value)]


@given(
    st.lists(
        st.tuples(
            st.none() | _DISPLAY,
            st.text("abcdefghijklmnopqrstuvwxyz0123456789-.,;=:", min_size=1, max_size=12),
            st.none() | _TAG,
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([", ", ",", " , "]),
)
def test_parse_list_agrees_with_splitting_and_parsing_one_by_one(entries, separator):
    value = separator.join(
        str(NameAddr(f"sip:{user}", display, {} if tag is None else {"tag": tag})) for display, user, tag in entries
    )
    try:
        expected = [NameAddr.parse(v) for v in split_values(value)]
    except ParseError:
        with pytest.raises(ParseError):
            NameAddr.parse_list(value)
        return
    assert NameAddr.parse_list(value) == expected
