"""Sample messages shared by the micro-benchmarks (and handy in tests).

``INVITE`` is what a proxy sees most: a call from a phone behind one proxy
already, with a pre-loaded route set and an SDP offer (about 900 bytes).
``OK_200`` is the answer coming back the other way, through two proxies.
"""

from __future__ import annotations

_SDP_OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)

_SDP_ANSWER = (
    b"v=0\r\n"
    b"o=bob 2808844564 2808844564 IN IP4 203.0.113.20\r\n"
    b"s=-\r\n"
    b"c=IN IP4 203.0.113.20\r\n"
    b"t=0 0\r\n"
    b"m=audio 3456 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    "INVITE sip:+15551234567@carrier.example.net;user=phone SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---8e3f2a1c;rport\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5062;rport=5062;branch=z9hG4bK77ef4c2312983.1\r\n"
    "Max-Forwards: 69\r\n"
    "Route: <sip:edge1.sipline.example:5060;lr>, <sip:b2bua.sipline.example;lr>\r\n"
    "Route: <sip:acr1.sipline.example;lr>\r\n"
    'From: "Alice Example" <sip:alice@sipline.example>;tag=1928301774\r\n'
    "To: <sip:+15551234567@sipline.example;user=phone>\r\n"
    "Call-ID: a84b4c76e66710@pc33.sipline.example\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@198.51.100.7:5062;transport=udp>;expires=3600\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, NOTIFY\r\n"
    "Supported: replaces, timer, 100rel\r\n"
    "User-Agent: ExamplePhone/4.2.1\r\n"
        "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(_SDP_OFFER)}\r\n"
    "\r\n"
).encode() + _SDP_OFFER

OK_200 = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---8e3f2a1c;rport=5060\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5062;received=198.51.100.7;rport=5062;branch=z9hG4bK77ef4c2312983.1\r\n"
    "Record-Route: <sip:edge1.sipline.example:5060;lr>\r\n"
    'From: "Alice Example" <sip:alice@sipline.example>;tag=1928301774\r\n'
    "To: <sip:+15551234567@sipline.example;user=phone>;tag=a6c85cf\r\n"
    "Call-ID: a84b4c76e66710@pc33.sipline.example\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:gw7@203.0.113.20:5060>\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(_SDP_ANSWER)}\r\n"
    "\r\n"
).encode() + _SDP_ANSWER

# What a proxy adds when it forwards INVITE.
OUR_VIA = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK.proxy.1;rport"
OUR_RECORD_ROUTE = "<sip:192.0.2.1:5060;lr>"
