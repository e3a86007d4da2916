"""The messages of RFC 5118 (SIP torture tests for IPv6) §4, and what each must come to.

The texts are the RFC's, with CRLF line endings. Two departures, both
forced by the RFC itself: the SDP-bearing messages (§4.6, §4.8, §4.9)
declare a Content-Length their own bodies do not have (268 for 251 octets
...), so theirs is set to the body's length; and the §4.10 pair, which the
RFC gives without the blank line that ends the headers, is taken as a
datagram without it (RFC 3261 §18.3 lets UDP do without). Outcomes as in
``tests.sip.rfc4475``: all are valid but §4.2, which gets 400.
"""

from __future__ import annotations

from .rfc4475 import VALID, Message, crlf


def with_sdp(head: str, sdp: str) -> bytes:
    body = crlf(sdp)
    return crlf(head.format(length=len(body))) + body


MESSAGES = [
    Message(
        "ipv6-good",
        "4.1",
        crlf(
            "REGISTER sip:[2001:db8::10] SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:user@example.com;tag=81x2\n"
            "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111\n"
            "Call-ID: SSG9559905523997077@hlau_4100\n"
            "Max-Forwards: 70\n"
            'Contact: "Caller" <sip:caller@[2001:db8::1]>\n'
            "CSeq: 98176 REGISTER\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        {"request_uri.host": "[2001:db8::10]", "via.host": "[2001:db8::9:1]", "contacts[0].uri.host": "[2001:db8::1]"},
        answer=501,
    ),
    Message(
        # "A SIP implementation receiving this request should respond with a 400".
        "ipv6-bad",
        "4.2",
        crlf(
            "REGISTER sip:2001:db8::10 SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:user@example.com;tag=81x2\n"
            "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111\n"
            "Call-ID: SSG9559905523997077@hlau_4100\n"
            "Max-Forwards: 70\n"
            'Contact: "Caller" <sip:caller@[2001:db8::1]>\n'
            "CSeq: 98176 REGISTER\n"
            "Content-Length: 0\n"
            "\n"
        ),
        (400, "bad Request-URI"),
    ),
    Message(
        # Well formed; 5070 is part of the address, not a port.
        "port-ambiguous",
        "4.3",
        crlf(
            "REGISTER sip:[2001:db8::10:5070] SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:user@example.com;tag=81x2\n"
            "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111\n"
            "Call-ID: SSG9559905523997077@hlau_4100\n"
            'Contact: "Caller" <sip:caller@[2001:db8::1]>\n'
            "Max-Forwards: 70\n"
            "CSeq: 98176 REGISTER\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        {"request_uri.host": "[2001:db8::10:5070]", "request_uri.port": None},
        answer=501,
    ),
    Message(
        "port-unambiguous",
        "4.4",
        crlf(
            "REGISTER sip:[2001:db8::10]:5070 SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:user@example.com;tag=81x2\n"
            "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111\n"
            "Call-ID: SSG9559905523997077@hlau_4100\n"
            'Contact: "Caller" <sip:caller@[2001:db8::1]>\n'
            "Max-Forwards: 70\n"
            "CSeq: 98176 REGISTER\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        {"request_uri.host": "[2001:db8::10]", "request_uri.port": 5070},
        answer=501,
    ),
    Message(
        # "must be liberal in accepting a 'received' parameter with or without the
        # delimiting '[' and ']' tokens".
        "via-received-param-with-delim",
        "4.5",
        crlf(
            "BYE sip:[2001:db8::10] SIP/2.0\n"
            "To: sip:user@example.com;tag=bd76ya\n"
            "From: sip:user@example.com;tag=81x2\n"
            "Via: SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111\n"
            "Call-ID: SSG9559905523997077@hlau_4100\n"
            "Max-Forwards: 70\n"
            "CSeq: 321 BYE\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        {"via.received": "[2001:db8::9:255]"},
        answer=501,
    ),
    Message(
        "via-received-param-no-delim",
        "4.5",
        crlf(
            "OPTIONS sip:[2001:db8::10] SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:user@example.com;tag=81x2\n"
            "Via: SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3\n"
            "Call-ID: SSG95523997077@hlau_4100\n"
            "Max-Forwards: 70\n"
            'Contact: "Caller" <sip:caller@[2001:db8::9:1]>\n'
            "CSeq: 921 OPTIONS\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        {"via.received": "2001:db8::9:255"},
        answer=200,
    ),
    Message(
        "ipv6-in-sdp",
        "4.6",
        with_sdp(
            "INVITE sip:user@[2001:db8::10] SIP/2.0\n"
            "To: sip:user@[2001:db8::10]\n"
            "From: sip:user@example.com;tag=81x2\n"
            "Via: SIP/2.0/UDP [2001:db8::20];branch=z9hG4bKas3-111\n"
            "Call-ID: SSG9559905523997077@hlau_4100\n"
            'Contact: "Caller" <sip:caller@[2001:db8::20]>\n'
            "CSeq: 8612 INVITE\n"
            "Max-Forwards: 70\n"
            "Content-Type: application/sdp\n"
            "Content-Length: {length}\n"
            "\n",
            "v=0\n"
            "o=assistant 971731711378798081 0 IN IP6 2001:db8::20\n"
            "s=Live video feed for today's meeting\n"
            "c=IN IP6 2001:db8::20\n"
            "t=3338481189 3370017201\n"
            "m=audio 6000 RTP/AVP 2\n"
            "a=rtpmap:2 G726-32/8000\n"
            "m=video 6024 RTP/AVP 107\n"
            "a=rtpmap:107 H263-1998/90000\n",
        ),
        VALID,
        {"to.uri.host": "[2001:db8::10]"},
        answer=501,
    ),
    Message(
        "mult-ip-in-header",
        "4.7",
        crlf(
            "BYE sip:user@host.example.net SIP/2.0\n"
            "Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111\n"
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144\n"
            "Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200\n"
            "Call-ID: 997077@lau_4100\n"
            "Max-Forwards: 70\n"
            "CSeq: 89187 BYE\n"
            "To: sip:user@example.net;tag=9817--94\n"
            "From: sip:user@example.com;tag=81x2\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        {"vias[0].port": 6050, "vias[1].host": "192.0.2.1", "vias[2].received": "192.0.2.200"},
        answer=501,
    ),
    Message(
        "mult-ip-in-sdp",
        "4.8",
        with_sdp(
            "INVITE sip:user@[2001:db8::10] SIP/2.0\n"
            "To: sip:user@[2001:db8::10]\n"
            "From: sip:user@example.com;tag=81x2\n"
            "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111\n"
            "Call-ID: SSG9559905523997077@hlau_4100\n"
            'Contact: "Caller" <sip:caller@[2001:db8::9:1]>\n'
            "Max-Forwards: 70\n"
            "CSeq: 8912 INVITE\n"
            "Content-Type: application/sdp\n"
            "Content-Length: {length}\n"
            "\n",
            "v=0\n"
            "o=bob 280744730 28977631 IN IP4 host.example.com\n"
            "s=\n"
            "t=0 0\n"
            "m=audio 22334 RTP/AVP 0\n"
            "c=IN IP4 192.0.2.1\n"
            "m=video 6024 RTP/AVP 107\n"
            "c=IN IP6 2001:db8::1\n"
            "a=rtpmap:107 H263-1998/90000\n",
        ),
        VALID,
        answer=501,
    ),
    Message(
        # "must be prepared to parse it successfully".
        "ipv4-mapped-ipv6",
        "4.9",
        with_sdp(
            "INVITE sip:user@example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:user@east.example.com;tag=81x2\n"
            "Via: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19\n"
            "Via: SIP/2.0/UDP [::ffff:192.0.2.2];branch=z9hG4bKas3-111\n"
            "Call-ID: SSG9559905523997077@hlau_4100\n"
            'Contact: "T. desk phone" <sip:ted@[::ffff:192.0.2.2]>\n'
            "CSeq: 612 INVITE\n"
            "Max-Forwards: 70\n"
            "Content-Type: application/sdp\n"
            "Content-Length: {length}\n"
            "\n",
            "v=0\n"
            "o=assistant 971731711378798081 0 IN IP6 ::ffff:192.0.2.2\n"
            "s=Call me soon, please!\n"
            "c=IN IP6 ::ffff:192.0.2.2\n"
            "t=3338481189 3370017201\n"
            "m=audio 6000 RTP/AVP 2\n"
            "a=rtpmap:2 G726-32/8000\n"
            "m=video 6024 RTP/AVP 107\n"
            "a=rtpmap:107 H263-1998/90000\n",
        ),
        VALID,
        {"via.host": "[::ffff:192.0.2.10]", "via.port": 19823, "contacts[0].uri.host": "[::ffff:192.0.2.2]"},
        answer=501,
    ),
    Message(
        # "an implementation must tolerate both of the above constructs".
        "ipv6-bug-abnf-3-colons",
        "4.10",
        crlf(
            "OPTIONS sip:user@[2001:db8:::192.0.2.1] SIP/2.0\n"
            "To: sip:user@[2001:db8:::192.0.2.1]\n"
            "From: sip:user@example.com;tag=810x2\n"
            "Via: SIP/2.0/UDP lab1.east.example.com;branch=z9hG4bKas3-111\n"
            "Call-ID: G9559905523997077@hlau_4100\n"
            "CSeq: 689 OPTIONS\n"
            "Max-Forwards: 70\n"
            "Content-Length: 0\n"
        ),
        VALID,
        {"request_uri.host": "[2001:db8:::192.0.2.1]"},
        answer=200,
    ),
    Message(
        "ipv6-correct-abnf-2-colons",
        "4.10",
        crlf(
            "OPTIONS sip:user@[2001:db8::192.0.2.1] SIP/2.0\n"
            "To: sip:user@[2001:db8::192.0.2.1]\n"
            "From: sip:user@example.com;tag=810x2\n"
            "Via: SIP/2.0/UDP lab1.east.example.com;branch=z9hG4bKas3-111\n"
            "Call-ID: G9559905523997077@hlau_4100\n"
            "CSeq: 689 OPTIONS\n"
            "Max-Forwards: 70\n"
            "Content-Length: 0\n"
        ),
        VALID,
        {"request_uri.host": "[2001:db8::192.0.2.1]"},
        answer=200,
    ),
]
