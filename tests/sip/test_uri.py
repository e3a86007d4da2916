"""SIP, SIPS and tel URIs: RFC 3261 §19.1 / §25.1 and RFC 3966."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipline.sip.errors import ParseError
from sipline.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


# --- parsing the parts -------------------------------------------------------


def test_a_full_sip_uri_is_split_into_its_parts():
    uri = sip(
        "sip:alice:secretword@atlanta.com:5061;transport=TCP;lr?subject=project%20x&priority=urgent"
    )
    assert uri.scheme == "sip"
    assert uri.user == "alice"
    assert uri.password == "secretword"
    assert uri.host == "atlanta.com"
    assert uri.port == 5061
    assert uri.params == {"transport": "TCP", "lr": None}
    assert uri.headers == {"subject": "project x", "priority": "urgent"}


def test_a_uri_without_userinfo_has_no_user_and_no_password():
    uri = sip("sip:atlanta.com")
    assert (uri.user, uri.password, uri.host, uri.port) == (None, None, "atlanta.com", None)


def test_the_scheme_is_lowercased_and_sips_is_kept_apart():
    assert sip("SIP:alice@atlanta.com").scheme == "sip"
    assert sip("SiPs:alice@atlanta.com").scheme == "sips"


def test_the_user_may_contain_semicolon_and_question_mark_before_the_at():
    uri = sip("sip:alice;day=tue?x@example.com;lr")
    assert uri.user == "alice;day=tue?x"
    assert uri.host == "example.com"
    assert uri.params == {"lr": None}


def test_a_telephone_subscriber_user_keeps_its_separators_and_password():
    # RFC 3261 §19.1.3
    uri = sip("sip:+1-212-555-1212:1234@gateway.com;user=phone")
    assert uri.user == "+1-212-555-1212"
    assert uri.password == "1234"
    assert uri.user_param == "phone"


def test_an_empty_password_is_not_the_same_as_no_password():
    assert sip("sip:alice:@atlanta.com").password == ""
    assert sip("sip:alice@atlanta.com").password is None


def test_escaped_characters_in_user_and_password_are_decoded():
    uri = sip("sip:%61lice%40home:p%3Ass@atlanta.com")
    assert uri.user == "alice@home"
    assert uri.password == "p:ss"


def test_escaped_octets_that_are_not_utf8_survive_a_round_trip():
    uri = sip("sip:%FF%fe@atlanta.com")
    assert str(uri) == "sip:%FF%FE@atlanta.com"


def test_parameter_names_are_lowercased_values_kept_and_flags_map_to_none():
    uri = sip("sip:atlanta.com;Transport=TCP;LR;Foo=Bar")
    assert uri.params == {"transport": "TCP", "lr": None, "foo": "Bar"}
    assert list(uri.params) == ["transport", "lr", "foo"]


def test_parameter_values_are_unescaped():
    assert sip("sip:atlanta.com;foo=a%3Bb%20c").params["foo"] == "a;b c"


def test_a_maddr_parameter_may_hold_an_ipv6_reference():
    assert sip("sip:atlanta.com;maddr=[2001:db8::1]").maddr == "[2001:db8::1]"


def test_headers_are_unescaped_and_may_contain_a_sip_uri():
    uri = sip("sip:biloxi.com?to=sip:bob%40biloxi.com&Subject=hi%20there")
    assert uri.user is None
    assert uri.headers == {"to": "sip:bob@biloxi.com", "Subject": "hi there"}


def test_a_repeated_header_becomes_a_comma_list():
    assert sip("sip:a.com?Route=%3Csip:x%3E&Route=%3Csip:y%3E").headers == {
        "Route": "<sip:x>,<sip:y>"
    }


def test_an_empty_header_value_is_allowed():
    assert sip("sip:a.com?body=").headers == {"body": ""}


# --- hosts and ports -----------------------------------------------------------


def test_an_ipv6_reference_keeps_its_brackets_and_may_have_a_port():
    uri = sip("sip:alice@[2001:db8::10]:5070;transport=udp")
    assert uri.host_port == ("[2001:db8::10]", 5070)


def test_an_ipv6_reference_whose_last_group_looks_like_a_port_has_no_port():
    # RFC 5118 §4.3
    assert sip("sip:[2001:db8::10:5070]").host_port == ("[2001:db8::10:5070]", None)


def test_ipv4_and_hostnames_are_accepted_as_written():
    assert sip("sip:bob@192.0.2.4").host == "192.0.2.4"
    assert sip("sip:bob@Biloxi.Example.COM.").host == "Biloxi.Example.COM."
    assert sip("sip:_sip._udp.example.com").host == "_sip._udp.example.com"


@pytest.mark.parametrize("port", [0, 1, 5060, 65535])
def test_ports_from_0_to_65535_are_accepted(port):
    assert sip(f"sip:a.com:{port}").port == port


# --- properties and copy -------------------------------------------------------


def test_transport_is_lowercase_and_lr_is_a_flag():
    uri = sip("sip:p1.example.com;transport=TLS;lr")
    assert uri.transport == "tls"
    assert uri.lr is True
    bare = sip("sip:p1.example.com")
    assert (bare.transport, bare.lr, bare.maddr, bare.user_param) == (None, False, None, None)


def test_copy_changes_fields_and_does_not_share_parameter_dicts():
    uri = sip("sip:alice@atlanta.com;lr?subject=x")
    other = uri.copy(host="biloxi.com", port=5080)
    other.params["transport"] = "tcp"
    other.headers["priority"] = "urgent"
    assert str(uri) == "sip:alice@atlanta.com;lr?subject=x"
    assert str(other) == "sip:alice@biloxi.com:5080;lr;transport=tcp?subject=x&priority=urgent"


def test_copy_rejects_unknown_fields():
    with pytest.raises(TypeError):
        sip("sip:a.com").copy(hots="b.com")


# --- serialising -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sip:bob@192.0.2.4:5060;transport=udp;lr",
        "sips:alice:pw@atlanta.com;maddr=239.255.255.1;ttl=15",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sip:alice;day=tue@atlanta.com",
        "sip:[2001:db8::1]:5060;transport=tcp",
        "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
    ],
)
def test_a_canonical_uri_serialises_exactly_as_written(text):
    assert str(sip(text)) == text


def test_serialising_escapes_only_what_each_part_does_not_allow():
    uri = SipUri(
        user="a b@c;d",
        password="p@:;",
        host="atlanta.com",
        params={"na;me": "v a[l]", "lr": None},
        headers={"h&=": "x&y=z?/"},
    )
    assert (
        str(uri) == "sip:a%20b%40c;d:p%40%3A%3B@atlanta.com;na%3Bme=v%20a[l];lr?h%26%3D=x%26y%3Dz?/"
    )


def test_non_ascii_input_is_accepted_and_comes_out_escaped_as_utf8():
    uri = sip("sip:jörg@example.com")
    assert uri.user == "jörg"
    assert str(uri) == "sip:j%C3%B6rg@example.com"
    assert uri == sip("sip:j%C3%B6rg@example.com")


# --- comparison: RFC 3261 §19.1.4 --------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
    ],
)
def test_rfc3261_equivalent_uris_compare_equal(a, b):
    assert sip(a) == sip(b)
    assert sip(b) == sip(a)
    assert hash(sip(a)) == hash(sip(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ],
)
def test_rfc3261_different_uris_compare_unequal(a, b):
    assert sip(a) != sip(b)
    assert sip(b) != sip(a)


def test_sip_and_sips_are_never_equal():
    assert sip("sip:alice@atlanta.com") != sip("sips:alice@atlanta.com")


def test_userinfo_is_case_sensitive():
    assert sip("sip:alice:pw@a.com") != sip("sip:alice:PW@a.com")
    assert sip("sip:alice@a.com") != sip("sip:alice:pw@a.com")


@pytest.mark.parametrize("name", ["user", "ttl", "method", "maddr", "transport"])
def test_special_parameters_must_be_in_both_uris(name):
    assert sip(f"sip:a.com;{name}=x") != sip("sip:a.com")
    assert sip(f"sip:a.com;{name}=x") == sip(f"sip:a.com;{name}=X")
    assert sip(f"sip:a.com;{name}=x") != sip(f"sip:a.com;{name}=y")


def test_a_flag_parameter_differs_from_one_with_a_value():
    assert sip("sip:a.com;lr") != sip("sip:a.com;lr=on")
    assert sip("sip:a.com;lr") == sip("sip:a.com;LR")


def test_header_names_compare_case_insensitively_but_values_exactly():
    assert sip("sip:a.com?Subject=x") == sip("sip:a.com?subject=x")
    assert sip("sip:a.com?subject=x") != sip("sip:a.com?subject=X")


def test_escaped_and_unescaped_forms_compare_equal_in_every_part():
    assert sip("sip:a%3bb@a.com;x=%41?h=%20") == sip("sip:a;b@a.com;x=A?h=%20")


def test_ipv6_references_compare_by_address():
    assert sip("sip:[2001:DB8::1]") == sip("sip:[2001:db8:0:0::1]")
    assert hash(sip("sip:[2001:DB8::1]")) == hash(sip("sip:[2001:db8:0:0::1]"))


def test_a_sip_uri_is_not_equal_to_other_kinds_of_uri():
    assert sip("sip:alice@atlanta.com") != "sip:alice@atlanta.com"
    assert sip("sip:+15551234@a.com") != parse_uri("tel:+15551234")


def test_sip_uris_can_be_dictionary_keys():
    routes = {sip("sip:Alice@Atlanta.com;transport=tcp"): 1}
    assert routes[sip("sip:Alice@atlanta.COM;transport=TCP;lr")] == 1


# --- tel URIs: RFC 3966 ----------------------------------------------------------------


def test_a_global_tel_uri_keeps_its_visual_separators():
    uri = parse_uri("tel:+1-201-555-0123;ext=1234")
    assert isinstance(uri, TelUri)
    assert uri.number == "+1-201-555-0123"
    assert uri.is_global
    assert uri.params == {"ext": "1234"}
    assert str(uri) == "tel:+1-201-555-0123;ext=1234"


def test_a_local_tel_uri_may_have_a_phone_context_and_hex_digits_star_hash():
    uri = parse_uri("tel:*7#AB;phone-context=example.com")
    assert isinstance(uri, TelUri)
    assert not uri.is_global
    assert uri.params == {"phone-context": "example.com"}


def test_an_escaped_hash_in_a_tel_number_is_decoded():
    uri = parse_uri("tel:*21%23;phone-context=+1")
    assert isinstance(uri, TelUri)
    assert uri.number == "*21#"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("tel:+1-201-555-0123", "tel:+1(201)555.0123"),
        ("tel:7042;phone-context=example.com", "tel:7042;PHONE-CONTEXT=Example.COM"),
        ("tel:863-1234;phone-context=+1-914-555", "tel:8631234;phone-context=+1914555"),
        ("tel:+1555;ext=1-2;foo=Bar", "tel:+1555;foo=bar;ext=12"),
        ("tel:*ab#;phone-context=x.com", "tel:*AB#;phone-context=x.com"),
    ],
)
def test_tel_uris_compare_without_visual_separators_and_ignoring_case(a, b):
    assert parse_uri(a) == parse_uri(b)
    assert hash(parse_uri(a)) == hash(parse_uri(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("tel:+15551234", "tel:15551234;phone-context=+1"),
        ("tel:+15551234", "tel:+15551234;ext=1"),
        ("tel:+15551234;foo", "tel:+15551234;foo=1"),
        ("tel:+15551234", "tel:+15551235"),
    ],
)
def test_tel_uris_with_different_numbers_or_parameter_sets_differ(a, b):
    assert parse_uri(a) != parse_uri(b)


# --- other schemes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["mailto:alice@atlanta.com", "urn:service:sos", "http://www.example.com/a?b=c%20d", "Im:x@y"],
)
def test_other_schemes_are_kept_verbatim(text):
    uri = parse_uri(text)
    assert isinstance(uri, AbsoluteUri)
    assert str(uri) == text


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@atlanta.com",  # no scheme
        ":alice@atlanta.com",
        "1sip:alice@a.com",
        "<sip:alice@a.com>",
        "sip:",
        "sip:alice@",
        "sip:@atlanta.com",
        "sip:alice@:5060",
        "sip:alice@atlanta.com:",
        "sip:alice@atlanta.com:65536",
        "sip:alice@atlanta.com:-1",
        "sip:alice@atlanta.com:50a",
        "sip:alice@atlanta.com:１２",  # fullwidth digits
        "sip:alice@atlanta.com:000005060",
        "sip:alice@atl anta.com",
        "sip:al ice@atlanta.com",
        "sip:alice@atlanta.com\r\n",
        "sip:alice\x00@atlanta.com",
        "sip:alice@atlanta.com;transport=udp x",
        "sip:alice@[2001:db8::1",
        "sip:alice@2001:db8::1]",
        "sip:alice@[2001:db8::1]x",
        "sip:alice@[2001:db8::zz]",
        "sip:alice@[fe80::1%25eth0]",
        "sip:alice@[192.0.2.1]",
        "sip:alice@atlanta..com",
        "sip:alice@-atlanta.com",
        "sip:alice@atlanta.com-",
        "sip:alice@atlänta.com",
        "sip:alice@256.0.0.1",
        "sip:alice@1.2.3",
        "sip:al%4@atlanta.com",
        "sip:al%zz@atlanta.com",
        "sip:alice%@atlanta.com",
        "sip:alice:p%g1@atlanta.com",
        "sip:alice:p;w@atlanta.com",
        "sip:a.com;",
        "sip:a.com;;lr",
        "sip:a.com;=x",
        "sip:a.com;a=b=c",
        "sip:a.com;lr;LR",
        "sip:a.com;x=%0",
        "sip:a.com?",
        "sip:a.com?subject",
        "sip:a.com?=x",
        "sip:a.com?a=b=c",
        "sip:a.com?a=b&",
        "sip:a.com?a=%",
        "sip:a<b@a.com",
        "sip:\ud800@a.com",
        "tel:",
        "tel:+",
        "tel:+-()",
        "tel:12+3",
        "tel:+12A",
        "tel:-.()",
        "tel:123;",
        "tel:123;p_q=1",
        "tel:1%2",
        "tel:1 2",
        "mailto:",
        "mailto:a b",
        "http://x/%zz",
        "urn:\x7f",
    ],
)
def test_malformed_uris_raise_parse_error(text):
    with pytest.raises(ParseError):
        parse_uri(text)


def test_a_parse_error_reason_is_short_and_one_line():
    with pytest.raises(ParseError) as caught:
        parse_uri("sip:alice@atlanta.com:99999")
    assert caught.value.reason == "Bad URI port"


# --- properties -------------------------------------------------------------------------------

_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
_hostname = st.builds(
    lambda labels, top: ".".join([*labels, top]),
    st.lists(_label, max_size=3),
    st.from_regex(r"[a-zA-Z][a-zA-Z0-9]{0,5}", fullmatch=True),
)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
_text = st.text(max_size=12)
_name = st.text(min_size=1, max_size=8).map(str.lower)

sip_uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | st.text(min_size=1, max_size=12),
    password=st.none() | _text,
    host=_hostname | _ipv4 | _ipv6,
    port=st.none() | st.integers(0, 65535),
    params=st.dictionaries(_name, st.none() | _text, max_size=4),
    headers=st.dictionaries(st.text(min_size=1, max_size=8), _text, max_size=3),
)


@given(sip_uris)
def test_any_sip_uri_survives_serialising_and_parsing(uri):
    if uri.user is None:
        uri.password = None
    parsed = parse_uri(str(uri))
    assert parsed == uri
    assert hash(parsed) == hash(uri)
    assert parsed.params == uri.params
    assert parsed.headers == uri.headers


@given(
    st.text(string.digits + "-.()", min_size=1, max_size=15).filter(
        lambda s: any(c.isdigit() for c in s)
    )
)
def test_any_global_tel_number_survives_serialising_and_parsing(digits):
    uri = TelUri("+" + digits, {"ext": "12"})
    assert parse_uri(str(uri)) == uri
    assert str(parse_uri(str(uri))) == str(uri)


_uri_pieces = st.sampled_from(
    [*":@;?&=%[]<>.-+_/ \t\r\n\x00ab019AFx\u00e9", "%41", "%zz", "[::1]", "lr", "5060"]
)
_uri_like = st.builds(
    "".join,
    st.tuples(
        st.sampled_from(["sip:", "SIPS:", "tel:", "tel:+", "mailto:", ""]),
        st.lists(_uri_pieces, max_size=30).map("".join),
    ),
)


@given(st.text() | _uri_like)
def test_arbitrary_text_gives_a_uri_or_a_parse_error(text):
    try:
        uri = parse_uri(text)
    except ParseError as error:
        assert "\n" not in error.reason and "\r" not in error.reason
        return
    assert isinstance(uri, SipUri | TelUri | AbsoluteUri)
    again = parse_uri(str(uri))
    assert again == uri
