"""SDP parse and serialise (RFC 4566 / RFC 8866, a=rtcp per RFC 3605)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipline.sip.errors import ParseError
from sipline.sip.sdp import Connection, Media, Origin, SessionDescription


def sdp(*lines: str) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode()


PHONE_OFFER = sdp(
    "v=0",
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.10",
    "s=-",
    "c=IN IP4 192.0.2.10",
    "t=0 0",
    "m=audio 49170 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=ptime:20",
    "a=sendrecv",
)


# --- a typical phone offer --------------------------------------------------


def test_g711_offer_parses_into_origin_connection_and_media():
    sd = SessionDescription.parse(PHONE_OFFER)
    assert sd.version == 0
    assert sd.origin == Origin("alice", "2890844526", 2890844526, "IN", "IP4", "192.0.2.10")
    assert sd.session_name == "-"
    assert sd.connection == Connection("IN", "IP4", "192.0.2.10")
    assert sd.lines == [("t", "0 0")]
    [audio] = sd.media
    assert (audio.kind, audio.port, audio.port_count, audio.proto) == (
        "audio",
        49170,
        None,
        "RTP/AVP",
    )
    assert audio.formats == ["0", "8", "101"]
    assert audio.connection is None
    assert audio.lines[0] == ("a", "rtpmap:0 PCMU/8000")
    assert audio.lines[-1] == ("a", "sendrecv")


def test_attribute_gives_first_value_and_attributes_gives_all():
    audio = SessionDescription.parse(PHONE_OFFER).media[0]
    assert audio.attribute("rtpmap") == "0 PCMU/8000"
    assert audio.attributes("rtpmap") == ["0 PCMU/8000", "8 PCMA/8000", "101 telephone-event/8000"]
    assert audio.attribute("ptime") == "20"
    assert audio.attribute("rtcp") is None
    assert audio.attributes("rtcp") == []


def test_flag_attribute_has_empty_value():
    audio = SessionDescription.parse(PHONE_OFFER).media[0]
    assert audio.attribute("sendrecv") == ""


def test_attribute_name_must_match_whole_name():
    media = Media("audio", 4000, None, "RTP/AVP", ["0"], lines=[("a", "rtpmapx:1"), ("b", "AS:64")])
    assert media.attribute("rtpmap") is None
    assert media.attribute("AS") is None


def test_set_attribute_replaces_first_in_place():
    audio = SessionDescription.parse(PHONE_OFFER).media[0]
    audio.set_attribute("ptime", "30")
    assert audio.lines[4] == ("a", "ptime:30")
    assert audio.attributes("ptime") == ["30"]


def test_set_attribute_appends_when_absent_and_empty_value_makes_a_flag():
    audio = SessionDescription.parse(PHONE_OFFER).media[0]
    audio.set_attribute("maxptime", "40")
    audio.set_attribute("silenceSupp", "")
    assert audio.lines[-2:] == [("a", "maxptime:40"), ("a", "silenceSupp")]


def test_set_attribute_none_removes_every_occurrence():
    audio = SessionDescription.parse(PHONE_OFFER).media[0]
    audio.set_attribute("rtpmap", None)
    assert audio.attributes("rtpmap") == []
    assert audio.attribute("fmtp") == "101 0-15"


# --- direction (RFC 4566 §6, RFC 3264 §5.1) ---------------------------------


def test_direction_defaults_to_sendrecv():
    assert Media("audio", 4000, None, "RTP/AVP", ["0"]).direction == "sendrecv"


def test_direction_reads_the_direction_attribute():
    media = Media(
        "audio", 4000, None, "RTP/AVP", ["0"], lines=[("a", "ptime:20"), ("a", "sendonly")]
    )
    assert media.direction == "sendonly"


def test_set_direction_replaces_in_place_and_drops_duplicates():
    media = Media(
        "audio",
        4000,
        None,
        "RTP/AVP",
        ["0"],
        lines=[("a", "sendrecv"), ("a", "ptime:20"), ("a", "recvonly")],
    )
    media.set_direction("inactive")
    assert media.lines == [("a", "inactive"), ("a", "ptime:20")]


def test_set_direction_rejects_a_non_direction():
    with pytest.raises(ValueError):
        Media("audio", 4000, None, "RTP/AVP", ["0"]).set_direction("hold")


def test_media_direction_falls_back_to_session_level():
    sd = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "a=sendonly",
            "m=audio 4000 RTP/AVP 0",
            "m=audio 4002 RTP/AVP 0",
            "a=inactive",
        )
    )
    assert sd.direction == "sendonly"
    assert sd.media[0].direction == "sendrecv"
    assert sd.media_direction(sd.media[0]) == "sendonly"
    assert sd.media_direction(sd.media[1]) == "inactive"


# --- media anchoring ----------------------------------------------------------


def test_anchoring_rewrites_connection_ports_and_rtcp_exactly():
    sd = SessionDescription.parse(
        sdp(
            "v=0",
            "o=bob 10 20 IN IP4 10.0.0.5",
            "s=call",
            "c=IN IP4 10.0.0.5",
            "t=0 0",
            "m=audio 40000 RTP/AVP 0",
            "a=rtcp:40001 IN IP4 10.0.0.5",
            "a=sendrecv",
            "m=video 40002 RTP/AVP 96",
            "c=IN IP4 10.0.0.6",
            "a=rtpmap:96 H264/90000",
        )
    )
    sd.rewrite_connection("203.0.113.7")
    sd.media[0].port = 30000
    sd.media[0].set_rtcp(30001)
    sd.media[1].port = 30002
    sd.bump_version()
    assert sd.serialise() == sdp(
        "v=0",
        "o=bob 10 21 IN IP4 10.0.0.5",
        "s=call",
        "c=IN IP4 203.0.113.7",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0",
        "a=rtcp:30001",
        "a=sendrecv",
        "m=video 30002 RTP/AVP 96",
        "c=IN IP4 203.0.113.7",
        "a=rtpmap:96 H264/90000",
    )


def test_rewrite_connection_adds_session_connection_when_media_carry_their_own():
    sd = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 10.0.0.5",
            "s=-",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            "c=IN IP4 10.0.0.5",
        )
    )
    sd.rewrite_connection("2001:db8::7", "IP6")
    assert sd.connection == Connection("IN", "IP6", "2001:db8::7")
    assert sd.media[0].connection == Connection("IN", "IP6", "2001:db8::7")
    assert b"\r\nc=IN IP6 2001:db8::7\r\nt=0 0\r\n" in sd.serialise()


def test_rewrite_connection_does_not_add_media_level_connection():
    sd = SessionDescription.parse(PHONE_OFFER)
    sd.rewrite_connection("203.0.113.7")
    assert sd.media[0].connection is None
    assert sd.media_address(sd.media[0]) == "203.0.113.7"


def test_bump_version_increments_sess_version_only():
    sd = SessionDescription.parse(PHONE_OFFER)
    sd.bump_version()
    assert (sd.origin.sess_id, sd.origin.sess_version) == ("2890844526", 2890844527)


# --- a=rtcp (RFC 3605) --------------------------------------------------------


def test_rtcp_with_port_only():
    media = Media("audio", 4000, None, "RTP/AVP", ["0"], lines=[("a", "rtcp:53020")])
    assert media.rtcp == (53020, None)


def test_rtcp_with_port_and_address():
    media = Media(
        "audio", 4000, None, "RTP/AVP", ["0"], lines=[("a", "rtcp:53020 IN IP6 2001:db8::1")]
    )
    assert media.rtcp == (53020, Connection("IN", "IP6", "2001:db8::1"))


def test_rtcp_absent_is_none():
    assert Media("audio", 4000, None, "RTP/AVP", ["0"]).rtcp is None


def test_set_rtcp_with_address_replaces_existing_in_place():
    media = Media(
        "audio", 4000, None, "RTP/AVP", ["0"], lines=[("a", "rtcp:4001"), ("a", "ptime:20")]
    )
    media.set_rtcp(5001, Connection("IN", "IP4", "203.0.113.7"))
    assert media.lines == [("a", "rtcp:5001 IN IP4 203.0.113.7"), ("a", "ptime:20")]
    assert media.rtcp == (5001, Connection("IN", "IP4", "203.0.113.7"))


@pytest.mark.parametrize(
    "value", ["rtcp", "rtcp:", "rtcp:x", "rtcp:70000", "rtcp:5000 IN IP4", "rtcp:-1", "rtcp:５０"]
)
def test_malformed_rtcp_raises_parse_error_when_read(value):
    media = Media("audio", 4000, None, "RTP/AVP", ["0"], lines=[("a", value)])
    with pytest.raises(ParseError):
        media.rtcp  # noqa: B018


# --- connection addresses (RFC 4566 §5.7) -------------------------------------


def test_media_level_connection_overrides_session_level():
    sd = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            "m=video 4002 RTP/AVP 31",
            "c=IN IP4 192.0.2.2",
        )
    )
    assert sd.media_address(sd.media[0]) == "192.0.2.1"
    assert sd.media_address(sd.media[1]) == "192.0.2.2"
    assert sd.media[1].connection == Connection("IN", "IP4", "192.0.2.2")


def test_missing_connection_is_accepted_but_media_address_is_none():
    sd = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 0")
    )
    assert sd.connection is None
    assert sd.media_address(sd.media[0]) is None


def test_only_first_media_connection_is_parsed_later_ones_stay_in_lines():
    sd = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "t=0 0",
            "m=video 4000 RTP/AVP 31",
            "c=IN IP4 233.252.0.1/127",
            "c=IN IP4 233.252.0.2/127",
        )
    )
    assert sd.media[0].connection == Connection("IN", "IP4", "233.252.0.1/127")
    assert sd.media[0].lines == [("c", "IN IP4 233.252.0.2/127")]


def test_ipv6_addresses():
    body = sdp(
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::1",
        "s=-",
        "c=IN IP6 2001:db8::1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "c=IN IP6 2001:db8::2",
        "a=rtcp:4001 IN IP6 2001:db8::3",
    )
    sd = SessionDescription.parse(body)
    assert sd.origin.addrtype == "IP6"
    assert sd.connection == Connection("IN", "IP6", "2001:db8::1")
    assert sd.media_address(sd.media[0]) == "2001:db8::2"
    assert sd.media[0].rtcp == (4001, Connection("IN", "IP6", "2001:db8::3"))
    assert sd.serialise() == body


# --- media lines --------------------------------------------------------------


def test_port_count_is_parsed_and_kept():
    sd = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=video 49170/2 RTP/AVP 31")
    )
    assert (sd.media[0].port, sd.media[0].port_count) == (49170, 2)
    assert b"m=video 49170/2 RTP/AVP 31\r\n" in sd.serialise()


def test_media_with_no_formats_is_accepted():
    sd = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=audio 0 RTP/AVP")
    )
    assert sd.media[0].formats == []
    assert sd.serialise().endswith(b"m=audio 0 RTP/AVP\r\n")


def test_rejected_stream_has_port_zero():
    sd = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=video 0 RTP/AVP 31")
    )
    assert sd.media[0].port == 0


def test_repeated_spaces_in_m_line_are_tolerated():
    sd = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=audio  4000 RTP/AVP  0 8")
    )
    assert (sd.media[0].port, sd.media[0].formats) == (4000, ["0", "8"])


# --- line endings and round trips ---------------------------------------------


def test_lf_only_input_is_accepted_and_emitted_with_crlf():
    lf_body = PHONE_OFFER.replace(b"\r\n", b"\n")
    assert SessionDescription.parse(lf_body).serialise() == PHONE_OFFER


def test_mixed_line_endings_are_accepted():
    mixed = PHONE_OFFER.replace(b"\r\nt=", b"\nt=")
    assert SessionDescription.parse(mixed).serialise() == PHONE_OFFER


def test_trailing_empty_lines_are_ignored():
    assert SessionDescription.parse(PHONE_OFFER + b"\r\n\r\n\n").serialise() == PHONE_OFFER


def test_missing_final_line_ending_is_accepted():
    assert SessionDescription.parse(PHONE_OFFER[:-2]).serialise() == PHONE_OFFER


ROUND_TRIP_BODIES = [
    PHONE_OFFER,
    # RFC 4566 §5 example: i=, u=, e=, c= with TTL, two media, a=recvonly
    sdp(
        "v=0",
        "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
        "s=SDP Seminar",
        "i=A Seminar on the session description protocol",
        "u=http://www.example.com/seminars/sdp.pdf",
        "e=j.doe@example.com (Jane Doe)",
        "c=IN IP4 224.2.17.12/127",
        "t=2873397496 2873404696",
        "a=recvonly",
        "m=audio 49170 RTP/AVP 0",
        "m=video 51372 RTP/AVP 99",
        "a=rtpmap:99 h263-1998/90000",
    ),
    # Media-level i=, c=, b= in RFC order; unknown line type z= and x=
    sdp(
        "v=0",
        "o=- 7 7 IN IP4 192.0.2.1",
        "s= ",
        "b=AS:128",
        "t=0 0",
        "r=7d 1h 0 25h",
        "z=2882844526 -1h",
        "x=future extension",
        "m=audio 4000/2 RTP/SAVP 0 101",
        "i=voice",
        "c=IN IP4 192.0.2.1",
        "b=AS:64",
        "k=prompt",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        "a=rtcp-mux",
    ),
    # Session name in UTF-8
    sdp("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=Café ☎", "t=0 0"),
]


@pytest.mark.parametrize("body", ROUND_TRIP_BODIES)
def test_well_formed_body_round_trips_byte_for_byte(body):
    assert SessionDescription.parse(body).serialise() == body


def test_connection_out_of_rfc_order_is_emitted_in_its_rfc_4566_place():
    sd = SessionDescription.parse(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "t=0 0",
            "c=IN IP4 192.0.2.1",
            "m=audio 4000 RTP/AVP 0",
        )
    )
    assert sd.serialise() == sdp(
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
    )


def test_built_description_serialises():
    sd = SessionDescription(
        0,
        Origin("sipline", "1", 1, "IN", "IP4", "203.0.113.7"),
        "-",
        Connection(address="203.0.113.7"),
        [("t", "0 0")],
        [Media("audio", 30000, None, "RTP/AVP", ["0"], lines=[("a", "sendrecv")])],
    )
    assert sd.serialise() == sdp(
        "v=0",
        "o=sipline 1 1 IN IP4 203.0.113.7",
        "s=-",
        "c=IN IP4 203.0.113.7",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0",
        "a=sendrecv",
    )


# --- malformed bodies ---------------------------------------------------------

ORIGIN = "o=- 1 1 IN IP4 192.0.2.1"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "missing v= line"),
        (b"\r\n\r\n", "missing v= line"),
        (sdp(ORIGIN, "s=-", "t=0 0"), "missing v= line"),
        (sdp(ORIGIN, "v=0", "s=-"), "missing v= line"),
        (sdp("v=1", ORIGIN, "s=-"), "bad SDP version"),
        (sdp("v=00", ORIGIN, "s=-"), "bad SDP version"),
        (sdp("v=0", "s=-", "t=0 0"), "missing o= line"),
        (sdp("v=0", ORIGIN, "t=0 0"), "missing s= line"),
        (sdp("v=0", ORIGIN, "t=0 0", "m=audio 4000 RTP/AVP 0", "s=-"), "s= line in media section"),
        (sdp("v=0", ORIGIN, ORIGIN, "s=-"), "duplicate o= line"),
        (sdp("v=0", ORIGIN, "s=-", "s=-"), "duplicate s= line"),
        (sdp("v=0", ORIGIN, "s=-", "v=0"), "duplicate v= line"),
        (sdp("v=0", "o=- 1 IN IP4 192.0.2.1", "s=-"), "bad o= line"),
        (sdp("v=0", "o=- 1 x IN IP4 192.0.2.1", "s=-"), "bad o= line"),
        (sdp("v=0", "o=- 1 " + "9" * 5000 + " IN IP4 192.0.2.1", "s=-"), "bad o= line"),
        (sdp("v=0", ORIGIN, "s=-", "c=IN IP4"), "bad c= line"),
        (sdp("v=0", ORIGIN, "s=-", "m=audio 4000 RTP/AVP 0", "c=IN IP4 a b"), "bad c= line"),
        (sdp("v=0", ORIGIN, "s=-", "m=audio 4000"), "bad m= line"),
        (sdp("v=0", ORIGIN, "s=-", "m=audio 70000 RTP/AVP 0"), "bad m= port"),
        (sdp("v=0", ORIGIN, "s=-", "m=audio -1 RTP/AVP 0"), "bad m= port"),
        (sdp("v=0", ORIGIN, "s=-", "m=audio abc RTP/AVP 0"), "bad m= port"),
        (sdp("v=0", ORIGIN, "s=-", "m=audio ４０００ RTP/AVP 0"), "bad m= port"),
        (sdp("v=0", ORIGIN, "s=-", "m=audio 4000/0 RTP/AVP 0"), "bad m= port"),
        (sdp("v=0", ORIGIN, "s=-", "m=audio 4000/ RTP/AVP 0"), "bad m= port"),
        (sdp("v=0", ORIGIN, "s=-", "hello world"), "bad SDP line"),
        (sdp("v=0", ORIGIN, "s=-", "a =x"), "bad SDP line"),
        (sdp("v=0", ORIGIN, "s=-", "ab=x"), "bad SDP line"),
        (sdp("v=0", ORIGIN, "s=-", "1=x"), "bad SDP line"),
        (sdp("v=0", ORIGIN, "s=-", "é=x"), "bad SDP line"),
        (sdp("v=0", ORIGIN, "", "s=-"), "bad SDP line"),
        (sdp("v=0", ORIGIN, "s=a\rb"), "bad SDP line"),
        (sdp("v=0", ORIGIN, "s=a\0b"), "bad SDP line"),
        (b"v=0\ro=- 1 1 IN IP4 192.0.2.1\rs=-\r", "bad SDP line"),
        (sdp("v=0", ORIGIN) + b"s=\xff\xfe\r\n", "SDP not UTF-8"),
        (b"\xef\xbb\xbf" + sdp("v=0", ORIGIN, "s=-"), "bad SDP line"),
    ],
)
def test_malformed_body_raises_parse_error(body, reason):
    with pytest.raises(ParseError) as caught:
        SessionDescription.parse(body)
    assert caught.value.reason == reason


# --- properties ---------------------------------------------------------------


def _parses_or_raises_parse_error(body: bytes) -> None:
    try:
        sd = SessionDescription.parse(body)
    except ParseError:
        return
    once = sd.serialise()
    assert SessionDescription.parse(once) == sd
    assert SessionDescription.parse(once).serialise() == once


@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_description_or_parse_error(body):
    _parses_or_raises_parse_error(body)


_sdp_ish_line = st.one_of(
    st.builds(
        "{}={}".format,
        st.sampled_from("vosicbtamkzr"),
        st.text(alphabet=" 0123456789/:-.IPN4x\r\0é", max_size=20),
    ),
    st.builds(
        "m={} {} {}".format,
        st.sampled_from(["audio", "", "video x"]),
        st.sampled_from(["0", "65535", "65536", "1/2", "1/0", "x", "", "-1"]),
        st.sampled_from(["RTP/AVP 0", "", "RTP/AVP"]),
    ),
    st.text(max_size=10),
)


@given(st.lists(_sdp_ish_line, max_size=12), st.sampled_from(["\r\n", "\n"]))
def test_sdp_like_line_soup_gives_a_description_or_parse_error(lines, eol):
    head = ["v=0", ORIGIN, "s=-"]
    _parses_or_raises_parse_error(eol.join(head + lines).encode())


_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-._/+:#*!~", min_size=1, max_size=12
)
# RFC 4566 text: any character but CR, LF and NUL (the value may be empty or space-padded).
_text = st.text(
    st.characters(blacklist_characters="\r\n\0", blacklist_categories=["Cs"]), max_size=20
)
_connection = st.builds(Connection, st.just("IN"), st.sampled_from(["IP4", "IP6"]), _token)
_session_line = st.tuples(st.sampled_from("iuepbtrzkax"), _text)
_media_line = st.tuples(st.sampled_from("ibkax"), _text)
_media = st.builds(
    Media,
    kind=_token,
    port=st.integers(0, 65535),
    port_count=st.none() | st.integers(1, 65535),
    proto=_token,
    formats=st.lists(_token, max_size=4),
    connection=st.none() | _connection,
    lines=st.lists(_media_line, max_size=5),
)
_description = st.builds(
    SessionDescription,
    version=st.just(0),
    origin=st.builds(
        Origin,
        _token,
        st.text(alphabet="0123456789", min_size=1, max_size=20),
        st.integers(0, 2**64),
        st.just("IN"),
        st.sampled_from(["IP4", "IP6"]),
        _token,
    ),
    session_name=_text,
    connection=st.none() | _connection,
    lines=st.lists(_session_line, max_size=5),
    media=st.lists(_media, max_size=3),
)


@given(_description)
def test_parse_of_serialise_gives_back_the_same_description(sd):
    assert SessionDescription.parse(sd.serialise()) == sd
