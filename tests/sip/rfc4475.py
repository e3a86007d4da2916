"""The messages of RFC 4475 (SIP torture tests) §3.1 to §3.4, and what each must come to.

The texts are the RFC's, with its <allOneLine> lines joined and its <hex>
octets written as Python escapes; every line ends in CRLF on the wire. One
is not verbatim: the binary second part of mpart01 (§3.1.1.11) is a
stand-in of ours with the same traits (NUL and high octets, no CRLF
ending), since the RFC's octets do not survive as text; its Content-Length
is ours to match. The Content-Length of every other message is the RFC's.

``outcome`` is what the RFC expects of a SIP element:

* ``VALID``: parses and is handled (the values in ``expect`` are read off it);
* ``(400, "text")`` / ``(505, ...)``: answered with that status, the text in
  the reason phrase, statelessly;
* ``DROP``: a response that is discarded.

``proxy`` is, for the §3.3 messages whose outcome is a proxy's decision,
the status RFC 3261 §16.3 gives them (sipline.proxying.rules.validate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VALID = "valid"
DROP = "drop"


def crlf(text: str) -> bytes:
    """The message as written here, with each newline made CRLF."""
    return text.replace("\n", "\r\n").encode()


@dataclass(frozen=True)
class Message:
    name: str
    section: str
    raw: bytes
    outcome: Any
    expect: dict[str, Any] = field(default_factory=dict)
    answer: int | None = None  # what the minimal node (a UAS) answers a VALID request with
    proxy: int | None = None


SDP = (
    "v=0\n"
    "o=mhandley 29739 7272939 IN IP4 {ip}\n"
    "s=-\n"
    "c=IN IP4 {ip}\n"
    "t=0 0\n"
    "m=audio 49217 RTP/AVP 0 12\n"
    "m=video 3227 RTP/AVP 31\n"
    "a=rtpmap:31 LPC\n"
)

MPART_BINARY = b"0\x82\x01R\x06\t*\x86H\x86\xf7\r\x01\x07\x02\x00\x00\xa0\x82\x01C0\x00\xff\xfe\x00\x01"
MPART_BODY = (
    b"--7a9cbec02ceef655\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"Hello\r\n"
    b"--7a9cbec02ceef655\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n" + MPART_BINARY + b"\r\n"
    b"--7a9cbec02ceef655--\r\n"
)

MESSAGES = [
    # -- 3.1.1 Valid messages ---------------------------------------------------------------
    Message(
        "wsinv",
        "3.1.1.1",
        crlf(
            "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\n"
            "TO :\n"
            " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\n"
            'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\n'
            "  ;\n"
            "  tag = 98asjd8\n"
            "MaX-fOrWaRdS: 0068\n"
            "Call-ID: wsinv.ndaksdj@192.0.2.1\n"
            "Content-Length   : 150\n"
            "cseq: 0009\n"
            "  INVITE\n"
            "Via  : SIP  /   2.0\n"
            " /UDP\n"
            "    192.0.2.2;branch=390skdjuw\n"
            "s :\n"
            "NewFangledHeader:   newfangled value\n"
            " continued newfangled value\n"
            "UnknownHeaderWithUnusualValue: ;;,,;;,;\n"
            "Content-Type: application/sdp\n"
            "Route:\n"
            " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\n"
            "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\n"
            "  branch  =   z9hG4bK9ikj8  ,\n"
            " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\n"
            " z9hG4bK30239\n"
            'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\n'
            "      newvalue ;\n"
            "  secondparam ; q = 0.33\n"
            "\n" + SDP.format(ip="192.0.2.3").replace("c=IN IP4 192.0.2.3", "c=IN IP4 192.0.2.4")
        ),
        VALID,
        {
            "to.tag": "1918181833n",
            "from_.display": 'J Rosenberg \\"',
            "from_.tag": "98asjd8",
            "max_forwards": 68,
            "cseq.number": 9,
            "vias[0].branch": "390skdjuw",
            "vias[1].host": "spindle.example.com",
            "vias[2].branch": "z9hG4bK30239",
            "h:Subject": "",
            "h:UnknownHeaderWithUnusualValue": ";;,,;;,;",
            "routes[0].uri.params": {"lr": None, "unknownwith": "value", "unknown-no-value": None},
            "contacts[0].display": 'Quoted string ""',
            "contacts[0].params": {"newparam": "newvalue", "secondparam": None, "q": "0.33"},
            "request_uri.params": {"unknownparam": None},
        },
        answer=501,
    ),
    Message(
        "intmeth",
        "3.1.1.2",
        crlf(
            "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
            ":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\n"
            "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\n"
            'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*@example.com>\n'
            "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="
            '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439";tag=_token~1\'+`*%!-.\n'
            "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\n"
            "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\n"
            "Max-Forwards: 255\n"
            "extensionHeader-!.%*+_`'~:\ufeff\u5927\u505c\u96fb\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        {
            "method": "!interesting-Method0123456789_*+`.%indeed'~",
            "request_uri.user": "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*",
            "request_uri.password": "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)",
            "via.branch": "z9hG4bK-.!%66*_+`'~",
            "to.display": "BEL:\x07 NUL:\x00 DEL:\x7f",  # quoted-pairs of control characters
            "from_.display": "token1~` token2'+_ token3*%!.-",
            "from_.tag": "_token~1'+`*%!-.",
            "call_id": "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
            "h:extensionHeader-!.%*+_`'~": "\ufeff\u5927\u505c\u96fb",
        },
        answer=501,
    ),
    Message(
        "esc01",
        "3.1.1.3",
        crlf(
            "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0\n"
            "To: sip:%75se%72@example.com\n"
            "From: <sip:I%20have%20spaces@example.net>;tag=938\n"
            "Max-Forwards: 87\n"
            "i: esc01.239409asdfakjkn23onasd0-3234\n"
            "CSeq: 234234 INVITE\n"
            "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw\n"
            "C: application/sdp\n"
            "Contact:\n"
            "  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>\n"
            "Content-Length: 150\n"
            "\n" + SDP.format(ip="192.0.2.1")
        ),
        VALID,
        {
            "request_uri.user": "sips:user@example.com",
            "to.uri.user": "user",
            "from_.uri.user": "I have spaces",
            "contacts[0].uri.user": "caller",
            "contacts[0].uri.params": {"lr": None, "name": "value%41"},  # never unescaped twice
        },
        answer=501,
    ),
    Message(
        "escnull",
        "3.1.1.4",
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "To: sip:null-%00-null@example.com\n"
            "From: sip:null-%00-null@example.com;tag=839923423\n"
            "Max-Forwards: 70\n"
            "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\n"
            "CSeq: 14398234 REGISTER\n"
            "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\n"
            "Contact: <sip:%00@host5.example.com>\n"
            "Contact: <sip:%00%00@host5.example.com>\n"
            "L:0\n"
            "\n"
        ),
        VALID,
        {"to.uri.user": "null-\x00-null", "contacts[0].uri.user": "\x00", "contacts[1].uri.user": "\x00\x00"},
        answer=501,
    ),
    Message(
        "esc02",
        "3.1.1.5",
        crlf(
            "RE%47IST%45R sip:registrar.example.com SIP/2.0\n"
            'To: "%Z%45" <sip:resource@example.com>\n'
            'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23\n'
            "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf\n"
            "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234\n"
            "CSeq: 29344 RE%47IST%45R\n"
            "Max-Forwards: 70\n"
            "Contact: <sip:alias1@host1.example.com>\n"
            "C%6Fntact: <sip:alias2@host2.example.com>\n"
            "Contact: <sip:alias3@host3.example.com>\n"
            "l: 0\n"
            "\n"
        ),
        VALID,
        {
            "method": "RE%47IST%45R",  # not REGISTER
            "to.display": "%Z%45",
            "contacts[1].uri.user": "alias3",  # two Contacts, not three
            "h:C%6Fntact": "<sip:alias2@host2.example.com>",
        },
        answer=501,
    ),
    Message(
        "lwsdisp",
        "3.1.1.6",
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: caller<sip:caller@example.com>;tag=323\n"
            "Max-Forwards: 70\n"
            "Call-ID: lwsdisp.1234abcd@funky.example.com\n"
            "CSeq: 60 OPTIONS\n"
            "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\n"
            "l: 0\n"
            "\n"
        ),
        VALID,
        {"from_.display": "caller", "from_.tag": "323"},
        answer=200,
    ),
    Message(
        "longreq",
        "3.1.1.7",
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            'To: "I have a user name of ' + "extreme" * 10 + ' proportion"<sip:user@example.com:6000;'
            "unknownparam1=very" + "long" * 20 + "value;"
            "longparam" + "name" * 25 + "=shortvalue;"
            "very" + "long" * 25 + "ParameterNameWithNoValue>\n"
            "F: sip:" + "amazinglylongcallername" * 5 + "@example.net;tag=12" + "982" * 50 + "424;"
            "unknownheaderparam" + "name" * 20 + "=unknowheaderparam" + "value" * 15 + ";"
            "unknownValueless" + "paramname" * 10 + "\n"
            "Call-ID: longreq.one" + "really" * 20 + "longcallid\n"
            "CSeq: 3882340 INVITE\n"
            "Unknown-" + "Long" * 20 + "-Name: unknown-" + "long" * 20 + "-value; unknown-"
            + "long" * 20 + "-parameter-name = unknown-" + "long" * 20 + "-parameter-value\n"
            "Via: SIP/2.0/TCP sip33.example.com\n"
            "v: SIP/2.0/TCP sip32.example.com\n"
            "V: SIP/2.0/TCP sip31.example.com\n"
            "Via: SIP/2.0/TCP sip30.example.com\n"
            "ViA: SIP/2.0/TCP sip29.example.com\n"
            "VIa: SIP/2.0/TCP sip28.example.com\n"
            "VIA: SIP/2.0/TCP sip27.example.com\n"
            "via: SIP/2.0/TCP sip26.example.com\n"
            "viA: SIP/2.0/TCP sip25.example.com\n"
            "vIa: SIP/2.0/TCP sip24.example.com\n"
            "vIA: SIP/2.0/TCP sip23.example.com\n"
            "V :  SIP/2.0/TCP sip22.example.com\n"
            "v :  SIP/2.0/TCP sip21.example.com\n"
            "V  : SIP/2.0/TCP sip20.example.com\n"
            "v  : SIP/2.0/TCP sip19.example.com\n"
            "Via : SIP/2.0/TCP sip18.example.com\n"
            "Via  : SIP/2.0/TCP sip17.example.com\n"
            + "".join(f"Via: SIP/2.0/TCP sip{n}.example.com\n" for n in range(16, 0, -1))
            + "Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very"
            + "long" * 50 + "branchvalue\n"
            "Max-Forwards: 70\n"
            "Contact: <sip:" + "amazinglylongcallername" * 5 + "@host5.example.net>\n"
            "Content-Type: application/sdp\n"
            "l: 150\n"
            "\n" + SDP.format(ip="192.0.2.1")
        ),
        VALID,
        {
            "to.uri.port": 6000,
            "from_.tag": "12" + "982" * 50 + "424",
            "vias[0].host": "sip33.example.com",
            "vias[33].received": "192.0.2.5",
        },
        answer=501,
    ),
    Message(
        "dblreq",
        "3.1.1.8",
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "To: sip:j.user@example.com\n"
            "From: sip:j.user@example.com;tag=43251j3j324\n"
            "Max-Forwards: 8\n"
            "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412\n"
            "Contact: sip:j.user@host.example.com\n"
            "CSeq: 8 REGISTER\n"
            "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\n"
            "Content-Length: 0\n"
            "\n"
            "INVITE sip:joe@example.com SIP/2.0\n"
            "t: sip:joe@example.com\n"
            "From: sip:caller@example.net;tag=141334\n"
            "Max-Forwards: 8\n"
            "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15\n"
            "CSeq: 8 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 150\n"
            "\n" + SDP.format(ip="192.0.2.15").replace("m=video", "m =video")
        ),
        VALID,
        {"method": "REGISTER", "body": b"", "call_id": "dblreq.0ha0isndaksdj99sdfafnl3lk233412"},
        answer=501,
    ),
    Message(
        "semiuri",
        "3.1.1.9",
        crlf(
            "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0\n"
            "To: sip:j_user@example.com\n"
            "From: sip:caller@example.org;tag=33242\n"
            "Max-Forwards: 3\n"
            "Call-ID: semiuri.0ha0isndaksdj\n"
            "CSeq: 8 OPTIONS\n"
            "Accept: application/sdp, application/pkcs7-mime,\n"
            "        multipart/mixed, multipart/signed,\n"
            "        message/sip, message/sipfrag\n"
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\n"
            "l: 0\n"
            "\n"
        ),
        VALID,
        {"request_uri.user": "user;par=u@example.net", "request_uri.host": "example.com"},
        answer=200,
    ),
    Message(
        "transports",
        "3.1.1.10",
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: <sip:caller@example.com>;tag=323\n"
            "Max-Forwards: 70\n"
            "Call-ID:  transports.kijh4akdnaqjkwendsasfdj\n"
            "Accept: application/sdp\n"
            "CSeq: 60 OPTIONS\n"
            "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw\n"
            "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\n"
            "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\n"
            "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\n"
            "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee\n"
            "l: 0\n"
            "\n"
        ),
        VALID,
        {
            "vias[1].transport": "SCTP",
            "vias[2].transport": "TLS",
            "vias[3].transport": "UNKNOWN",
            "vias[4].transport": "TCP",
        },
        answer=200,
    ),
    Message(
        "mpart01",
        "3.1.1.11",
        crlf(
            "MESSAGE sip:kumiko@example.org SIP/2.0\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\n"
            "Max-Forwards: 70\n"
            "Route: <sip:127.0.0.1:5080>\n"
            "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcB"
            "UaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=\n"
            "Contact: <sip:fluffy@127.0.0.1:5070>\n"
            "To: <sip:kumiko@example.org>\n"
            "From: <sip:fluffy@example.com>;tag=2fb0dcc9\n"
            "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\n"
            "CSeq: 1 MESSAGE\n"
            "Content-Transfer-Encoding: binary\n"
            "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\n"
            "Date: Sat, 15 Oct 2005 04:44:56 GMT\n"
            "User-Agent: SIPimp.org/0.2.5 (curses)\n"
            f"Content-Length: {len(MPART_BODY)}\n"
            "\n"
        )
        + MPART_BODY,
        VALID,
        {"body": MPART_BODY, "routes[0].uri.port": 5080, "via.wants_rport": True},
        answer=501,
    ),
    Message(
        "unreason",
        "3.1.1.12",
        crlf(
            "SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e"
            "\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435\n"
            "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\n"
            "Call-ID: unreason.1234ksdfak3j2erwedfsASdf\n"
            "CSeq: 35 INVITE\n"
            "From: sip:user@example.com;tag=11141343\n"
            "To: sip:user@example.edu;tag=2229\n"
            "Content-Length: 154\n"
            "Content-Type: application/sdp\n"
            "Contact: <sip:user@host198.example.com>\n"
            "\n" + SDP.format(ip="192.0.2.198")
        ),
        VALID,
        {"status": 200, "reason": "= 2**3 * 5**2 но сто девяносто девять - простое"},
    ),
    Message(
        "noreason",
        "3.1.1.13",
        crlf(
            "SIP/2.0 100\x20\n"
            "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n"
            "Call-ID: noreason.asndj203insdf99223ndf\n"
            "CSeq: 35 INVITE\n"
            "From: <sip:user@example.com>;tag=39ansfi3\n"
            "To: <sip:user@example.edu>;tag=902jndnke3\n"
            "Content-Length: 0\n"
            "Contact: <sip:user@host105.example.com>\n"
            "\n"
        ),
        VALID,
        {"status": 100, "reason": ""},
    ),
    # -- 3.1.2 Invalid messages -------------------------------------------------------------
    Message(
        "badinv01",
        "3.1.2.1",
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=134161461246\n"
            "Max-Forwards: 7\n"
            "Call-ID: badinv01.0ha0isndaksdjasdf3234nas\n"
            "CSeq: 8 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.15;;,;,,\n"
            'Contact: "Joe" <sip:joe@example.org>;;;;\n'
            "Content-Length: 152\n"
            "Content-Type: application/sdp\n"
            "\n" + SDP.format(ip="192.0.2.15")
        ),
        (400, "empty parameter"),
    ),
    Message(
        "clerr",
        "3.1.2.2",
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "Max-Forwards: 80\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=93942939o2\n"
            "Contact: <sip:caller@hungry.example.net>\n"
            "Call-ID: clerr.0ha0isndaksdjweiafasdk3\n"
            "CSeq: 8 INVITE\n"
            "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 9999\n"
            "\n" + SDP.format(ip="192.0.2.155")
        ),
        (400, "Content-Length beyond the body"),
    ),
    Message(
        "ncl",
        "3.1.2.3",
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "Max-Forwards: 254\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=32394234\n"
            "Call-ID: ncl.0ha0isndaksdj2193423r542w35\n"
            "CSeq: 0 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\n"
            "Contact: <sip:caller@example53.example.net>\n"
            "Content-Type: application/sdp\n"
            "Content-Length: -999\n"
            "\n" + SDP.format(ip="192.0.2.53")
        ),
        (400, "bad Content-Length"),
    ),
    Message(
        "scalar02",
        "3.1.2.4",
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\n"
            "To: <sip:user@example.com>\n"
            "From: <sip:user@example.com>;tag=239232jh3\n"
            "CSeq: 36893488147419103232 REGISTER\n"
            "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\n"
            "Max-Forwards: 300\n"
            "Expires: 1" + "0" * 100 + "\n"
            "Contact: <sip:user@host129.example.com>\n"
            "  ;expires=280297596632815\n"
            "Content-Length: 0\n"
            "\n"
        ),
        (400, "bad CSeq"),
    ),
    Message(
        "scalarlg",
        "3.1.2.5",
        crlf(
            "SIP/2.0 503 Service Unavailable\n"
            "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129\n"
            "To: <sip:user@example.com>\n"
            "From: <sip:other@example.net>;tag=2easdjfejw\n"
            "CSeq: 9292394834772304023312 OPTIONS\n"
            "Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r\n"
            "Retry-After: 949302838503028349304023988\n"
            'Warning: 1812 overture "In Progress"\n'
            "Content-Length: 0\n"
            "\n"
        ),
        DROP,
    ),
    Message(
        "quotbal",
        "3.1.2.6",
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            'To: "Mr. J. User <sip:j.user@example.com>\n'
            "From: sip:caller@example.net;tag=93334\n"
            "Max-Forwards: 10\n"
            "Call-ID: quotbal.aksdj\n"
            "Contact: <sip:caller@host59.example.net>\n"
            "CSeq: 8 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 152\n"
            "\n" + SDP.format(ip="192.0.2.15")
        ),
        (400, "bad To: unterminated quoted string"),
    ),
    Message(
        "ltgtruri",
        "3.1.2.7",
        crlf(
            "INVITE <sip:user@example.com> SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=39291\n"
            "Max-Forwards: 23\n"
            "Call-ID: ltgtruri.1@192.0.2.5\n"
            "CSeq: 1 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.5\n"
            "Contact: <sip:caller@host5.example.net>\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 159\n"
            "\n" + SDP.format(ip="192.0.2.5").replace("t=0 0", "t=3149328700 0")
        ),
        (400, "bad Request-URI"),
    ),
    Message(
        "lwsruri",
        "3.1.2.8",
        crlf(
            "INVITE sip:user@example.com; lr SIP/2.0\n"
            "To: sip:user@example.com;tag=3xfe-9921883-z9f\n"
            "From: sip:caller@example.net;tag=231413434\n"
            "Max-Forwards: 5\n"
            "Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\n"
            "CSeq: 2130706432 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395\n"
            "Contact: <sip:caller@host1.example.net>\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 159\n"
            "\n" + SDP.format(ip="192.0.2.1").replace("t=0 0", "t=3149328700 0")
        ),
        (400, "bad request line"),
    ),
    Message(
        "lwsstart",
        "3.1.2.9",
        crlf(
            "INVITE  sip:user@example.com  SIP/2.0\n"
            "Max-Forwards: 8\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=8814\n"
            "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com\n"
            "CSeq: 1893884 INVITE\n"
            "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923\n"
            "Contact: <sip:caller@host1.example.net>\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 150\n"
            "\n" + SDP.format(ip="192.0.2.1")
        ),
        (400, "bad request line"),
    ),
    Message(
        "trws",
        "3.1.2.10",
        crlf(
            "OPTIONS sip:remote-target@example.com SIP/2.0\x20\x20\n"
            "Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093\n"
            "To: <sip:remote-target@example.com>\n"
            "From: <sip:local-resource@example.com>;tag=329429089\n"
            "Call-ID: trws.oicu34958239neffasdhr2345r\n"
            "Accept: application/sdp\n"
            "CSeq: 238923 OPTIONS\n"
            "Max-Forwards: 70\n"
            "Content-Length: 0\n"
            "\n"
        ),
        (400, "bad request line"),
    ),
    Message(
        "escruri",
        "3.1.2.11",
        crlf(
            "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=341518\n"
            "Max-Forwards: 7\n"
            "Contact: <sip:caller@host39923.example.net>\n"
            "Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5\n"
            "CSeq: 149209342 INVITE\n"
            "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 150\n"
            "\n" + SDP.format(ip="192.0.2.1")
        ),
        (400, "headers in Request-URI"),
    ),
    Message(
        # "acceptable to reject ... (though an element shouldn't do that unless the
        # contents of the Date header field were actually important to its
        # processing)": nothing here reads Date, so it is handled.
        "baddate",
        "3.1.2.12",
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=2234923\n"
            "Max-Forwards: 70\n"
            "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234\n"
            "CSeq: 1392934 INVITE\n"
            "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\n"
            "Date: Fri, 01 Jan 2010 16:00:00 EST\n"
            "Contact: <sip:caller@host5.example.net>\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 150\n"
            "\n" + SDP.format(ip="192.0.2.5")
        ),
        VALID,
        {"h:Date": "Fri, 01 Jan 2010 16:00:00 EST"},
        answer=501,
    ),
    Message(
        "regbadct",
        "3.1.2.13",
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:user@example.com;tag=998332\n"
            "Max-Forwards: 70\n"
            "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1\n"
            "CSeq: 1 REGISTER\n"
            "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw\n"
            "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\n"
            "l: 0\n"
            "\n"
        ),
        (400, "bad Contact: URI with headers outside <>"),
    ),
    Message(
        "badaspec",
        "3.1.2.14",
        crlf(
            "OPTIONS sip:user@example.org SIP/2.0\n"
            "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234\n"
            "Max-Forwards: 70\n"
            'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423\n'
            'To: "Watson, Thomas" < sip:t.watson@example.org >\n'
            "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3\n"
            "Accept: application/sdp\n"
            "CSeq: 3923239 OPTIONS\n"
            "l: 0\n"
            "\n"
        ),
        (400, "bad To: LWS inside <URI>"),
    ),
    Message(
        "baddn",
        "3.1.2.15",
        crlf(
            "OPTIONS sip:t.watson@example.org SIP/2.0\n"
            "Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\n"
            "Max-Forwards:      70\n"
            "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43\n"
            "To:      Watson, Thomas <sip:t.watson@example.org>\n"
            "Call-ID: baddn.31415@c.example.com\n"
            "Accept: application/sdp\n"
            "CSeq:    3923239 OPTIONS\n"
            "l: 0\n"
            "\n"
        ),
        (400, "display name must be quoted"),
    ),
    Message(
        "badvers",
        "3.1.2.16",
        crlf(
            "OPTIONS sip:t.watson@example.org SIP/7.0\n"
            "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\n"
            "Max-Forwards:     70\n"
            "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\n"
            "To:      T. Watson <sip:t.watson@example.org>\n"
            "Call-ID: badvers.31417@c.example.com\n"
            "CSeq:    1 OPTIONS\n"
            "l: 0\n"
            "\n"
        ),
        (505, "Version Not Supported"),
    ),
    Message(
        "mismatch01",
        "3.1.2.17",
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=34525\n"
            "Max-Forwards: 6\n"
            "Call-ID: mismatch01.dj0234sxdfl3\n"
            "CSeq: 8 INVITE\n"
            "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\n"
            "l: 0\n"
            "\n"
        ),
        (400, "CSeq method does not match"),
    ),
    Message(
        # "respond with a 501 ... A 400 Bad Request is also acceptable".
        "mismatch02",
        "3.1.2.18",
        crlf(
            "NEWMETHOD sip:user@example.com SIP/2.0\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=34525\n"
            "Max-Forwards: 6\n"
            "Call-ID: mismatch02.dj0234sxdfl3\n"
            "CSeq: 8 INVITE\n"
            "Contact: <sip:caller@host.example.net>\n"
            "Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw\n"
            "Content-Type: application/sdp\n"
            "l: 138\n"
            "\n"
            "v=0\n"
            "o=mhandley 29739 7272939 IN IP4 192.0.2.1\n"
            "c=IN IP4 192.0.2.1\n"
            "m=audio 49217 RTP/AVP 0 12\n"
            "m=video 3227 RTP/AVP 31\n"
            "a=rtpmap:31 LPC\n"
        ),
        (400, "CSeq method does not match"),
    ),
    Message(
        "bigcode",
        "3.1.2.19",
        crlf(
            "SIP/2.0 4294967301 better not break the receiver\n"
            "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n"
            "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\n"
            "CSeq: 353494 INVITE\n"
            "From: <sip:user@example.com>;tag=39ansfi3\n"
            "To: <sip:user@example.edu>;tag=902jndnke3\n"
            "Content-Length: 0\n"
            "Contact: <sip:user@host105.example.com>\n"
            "\n"
        ),
        DROP,
    ),
    # -- 3.2 Transaction layer semantics ----------------------------------------------------
    Message(
        # "could reject the request with a 400 ... or it could fall back to the
        # RFC 2543-style transaction identifier": a branch of just the cookie
        # is a branch like any other here.
        "badbranch",
        "3.2.1",
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.org;tag=33242\n"
            "Max-Forwards: 3\n"
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\n"
            "Accept: application/sdp\n"
            "Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\n"
            "CSeq: 8 OPTIONS\n"
            "l: 0\n"
            "\n"
        ),
        VALID,
        {"via.branch": "z9hG4bK"},
        answer=200,
    ),
    # -- 3.3 Application layer semantics ----------------------------------------------------
    Message(
        "insuf",
        "3.3.1",
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "CSeq: 193942 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\n"
            "Content-Type: application/sdp\n"
            "l: 152\n"
            "\n" + SDP.format(ip="192.0.2.95")
        ),
        (400, "missing To"),
    ),
    Message(
        "unkscm",
        "3.3.2",
        crlf(
            "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=384\n"
            "Max-Forwards: 3\n"
            "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34\n"
            "CSeq: 3923423 OPTIONS\n"
            "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        answer=416,
        proxy=416,
    ),
    Message(
        "novelsc",
        "3.3.3",
        crlf(
            "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=384\n"
            "Max-Forwards: 3\n"
            "Call-ID: novelsc.asdfasser0q239nwsdfasdkl34\n"
            "CSeq: 3923423 OPTIONS\n"
            "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        answer=416,
        proxy=416,
    ),
    Message(
        "unksm2",
        "3.3.4",
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "To: isbn:2983792873\n"
            "From: <http://www.example.com>;tag=3234233\n"
            "Call-ID: unksm2.daksdj@hyphenated-host.example.com\n"
            "CSeq: 234902 REGISTER\n"
            "Max-Forwards: 70\n"
            "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\n"
            "Contact: <name:John_Smith>\n"
            "l: 0\n"
            "\n"
        ),
        VALID,
        {"to.uri_text": "isbn:2983792873", "from_.uri_text": "http://www.example.com"},
        answer=501,
    ),
    Message(
        # A UAS answers 420 listing Require; a proxy 420 listing Proxy-Require.
        "bext01",
        "3.3.5",
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "To: sip:j_user@example.com\n"
            "From: sip:caller@example.net;tag=242etr\n"
            "Max-Forwards: 6\n"
            "Call-ID: bext01.0ha0isndaksdj\n"
            "Require: nothingSupportsThis, nothingSupportsThisEither\n"
            "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\n"
            "CSeq: 8 OPTIONS\n"
            "Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        answer=420,
        proxy=420,
    ),
    Message(
        "invut",
        "3.3.6",
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "Contact: <sip:caller@host5.example.net>\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=8392034\n"
            "Max-Forwards: 70\n"
            "Call-ID: invut.0ha0isndaksdjadsfij34n23d\n"
            "CSeq: 235448 INVITE\n"
            "Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw\n"
            "Content-Type: application/unknownformat\n"
            "Content-Length: 40\n"
            "\n"
            "<audio>\n"
            ' <pcmu port="443"/>\n'
            "</audio>\n"
        ),
        VALID,
        {"content_type": "application/unknownformat"},
        answer=501,
    ),
    Message(
        # The Authorization is for the registrar to ignore (and challenge):
        # the core must not refuse the request for it.
        "regaut01",
        "3.3.7",
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "To: sip:j.user@example.com\n"
            "From: sip:j.user@example.com;tag=87321hj23128\n"
            "Max-Forwards: 8\n"
            "Call-ID: regaut01.0ha0isndaksdj\n"
            "CSeq: 9338 REGISTER\n"
            "Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw\n"
            "Authorization: NoOneKnowsThisScheme opaque-data=here\n"
            "Content-Length:0\n"
            "\n"
        ),
        VALID,
        {"h:Authorization": "NoOneKnowsThisScheme opaque-data=here"},
        answer=501,
    ),
    Message(
        "multi01",
        "3.3.8",
        crlf(
            "INVITE sip:user@company.com SIP/2.0\n"
            "Contact: <sip:caller@host25.example.net>\n"
            "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\n"
            "Max-Forwards: 70\n"
            "CSeq: 5 INVITE\n"
            "Call-ID: multi01.98asdh@192.0.2.1\n"
            "CSeq: 59 INVITE\n"
            "Call-ID: multi01.98asdh@192.0.2.2\n"
            "From: sip:caller@example.com;tag=3413415\n"
            "To: sip:user@example.com\n"
            "To: sip:other@example.net\n"
            "From: sip:caller@example.net;tag=2923420123\n"
            "Content-Type: application/sdp\n"
            "l: 154\n"
            "Contact: <sip:caller@host36.example.net>\n"
            "Max-Forwards: 5\n"
            "\n" + SDP.format(ip="192.0.2.25") + "\n"
        ),
        (400, "duplicated"),
    ),
    Message(
        "mcl01",
        "3.3.9",
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423\n"
            "To: sip:user@example.com\n"
            "From: sip:other@example.net;tag=3923942\n"
            "Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf\n"
            "CSeq: 15932 OPTIONS\n"
            "Content-Length: 13\n"
            "Max-Forwards: 60\n"
            "Content-Length: 5\n"
            "Content-Type: text/plain\n"
            "\n"
            "There's no way to know how many octets are supposed to be here.\n"
        ),
        (400, "conflicting Content-Length"),
    ),
    Message(
        # Well formed: a parser takes it; where it would go is for the Via below ours.
        "bcast",
        "3.3.10",
        crlf(
            "SIP/2.0 200 OK\n"
            "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\n"
            "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23\n"
            "Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf\n"
            "CSeq: 35 INVITE\n"
            "From: sip:user@example.com;tag=11141343\n"
            "To: sip:user@example.edu;tag=2229\n"
            "Content-Length: 154\n"
            "Content-Type: application/sdp\n"
            "Contact: <sip:user@host28.example.com>\n"
            "\n" + SDP.format(ip="192.0.2.198")
        ),
        VALID,
        {"vias[1].host": "255.255.255.255"},
    ),
    Message(
        "zeromf",
        "3.3.11",
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=3ghsd41\n"
            "Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas\n"
            "CSeq: 39234321 OPTIONS\n"
            "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i\n"
            "Max-Forwards: 0\n"
            "Content-Length: 0\n"
            "\n"
        ),
        VALID,
        {"max_forwards": 0},
        answer=200,
        proxy=483,
    ),
    Message(
        "cparam01",
        "3.3.12",
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\n"
            "Max-Forwards: 70\n"
            "From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe\n"
            "To: sip:watson@example.com\n"
            "Call-ID: cparam01.70710@saturn.example.com\n"
            "CSeq: 2 REGISTER\n"
            "Contact: sip:+19725552222@gw1.example.net;unknownparam\n"
            "l: 0\n"
            "\n"
        ),
        VALID,
        {"contacts[0].params": {"unknownparam": None}, "contacts[0].uri.params": {}},
        answer=501,
    ),
    Message(
        "cparam02",
        "3.3.13",
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw\n"
            "Max-Forwards: 70\n"
            "From: sip:watson@example.com;tag=838293\n"
            "To: sip:watson@example.com\n"
            "Call-ID: cparam02.70710@saturn.example.com\n"
            "CSeq: 3 REGISTER\n"
            "Contact: <sip:+19725552222@gw1.example.net;unknownparam>\n"
            "l: 0\n"
            "\n"
        ),
        VALID,
        {"contacts[0].params": {}, "contacts[0].uri.params": {"unknownparam": None}},
        answer=501,
    ),
    Message(
        "regescrt",
        "3.3.14",
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:user@example.com;tag=8\n"
            "Max-Forwards: 70\n"
            "Call-ID: regescrt.k345asrl3fdbv@192.0.2.1\n"
            "CSeq: 14398234 REGISTER\n"
            "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\n"
            "M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>\n"
            "L:0\n"
            "\n"
        ),
        VALID,
        {"contacts[0].uri.headers": {"Route": "<sip:sip.example.com>"}},
        answer=501,
    ),
    Message(
        "sdp01",
        "3.3.15",
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "To: sip:j_user@example.com\n"
            "Contact: <sip:caller@host15.example.net>\n"
            "From: sip:caller@example.net;tag=234\n"
            "Max-Forwards: 5\n"
            "Call-ID: sdp01.ndaksdj9342dasdd\n"
            "Accept: text/nobodyKnowsThis\n"
            "CSeq: 8 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw\n"
            "Content-Length: 150\n"
            "Content-Type: application/sdp\n"
            "\n" + SDP.format(ip="192.0.2.5")
        ),
        VALID,
        answer=501,
    ),
    # -- 3.4 Backward compatibility ---------------------------------------------------------
    Message(
        "inv2543",
        "3.4.1",
        crlf(
            "INVITE sip:UserB@example.com SIP/2.0\n"
            "Via: SIP/2.0/UDP iftgw.example.com\n"
            "From: <sip:+13035551111@ift.client.example.net;user=phone>\n"
            "Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>\n"
            "To: sip:+16505552222@ss1.example.net;user=phone\n"
            "Call-ID: inv2543.1717@ift.client.example.com\n"
            "CSeq: 56 INVITE\n"
            "Content-Type: application/sdp\n"
            "\n"
            "v=0\n"
            "o=mhandley 29739 7272939 IN IP4 192.0.2.5\n"
            "s=-\n"
            "c=IN IP4 192.0.2.5\n"
            "t=0 0\n"
            "m=audio 49217 RTP/AVP 0\n"
        ),
        VALID,
        {"max_forwards": None, "via.branch": None, "from_.tag": None},
        answer=501,
    ),
]
