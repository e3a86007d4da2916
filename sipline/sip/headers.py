"""Header names and the typed header values routing needs (RFC 3261 §20, §25.1).

Each typed value is parsed from the header's text only when a message is
asked for it (see ``sipline.sip.message``), and turns back into text with
``str()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import ParseError
from .uri import Uri, parse_uri

# Canonical spelling of every header we know by name; the key of a header is
# its lowercased full name. Unknown headers keep their own lowercased name.
CANONICAL = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
        "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
        "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
        "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date",
        "Error-Info", "Event", "Expires", "From", "In-Reply-To", "Max-Forwards",
        "Min-Expires", "Min-SE", "MIME-Version", "Organization", "P-Asserted-Identity",
        "Path", "Priority", "Privacy", "Proxy-Authenticate", "Proxy-Authorization",
        "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To", "Referred-By",
        "Reject-Contact", "Reply-To", "Request-Disposition", "Require", "Retry-After",
        "Route", "RSeq", "Server", "Session-Expires", "SIP-ETag", "SIP-If-Match",
        "Subject", "Subscription-State", "Supported", "Timestamp", "To", "Unsupported",
        "User-Agent", "Via", "Warning", "WWW-Authenticate",
    )
}

# Compact forms (RFC 3261 §7.3.3, and the registry for the later ones).
COMPACT = {
    "a": "accept-contact", "b": "referred-by", "c": "content-type", "d": "request-disposition",
    "e": "content-encoding", "f": "from", "i": "call-id", "j": "reject-contact",
    "k": "supported", "l": "content-length", "m": "contact", "o": "event", "r": "refer-to",
    "s": "subject", "t": "to", "u": "allow-events", "v": "via", "x": "session-expires",
    "y": "identity",
}


def _build_key_cache() -> dict[str, str]:
    cache = dict(COMPACT)
    for key, canonical in CANONICAL.items():
        cache[key] = key
        cache[canonical] = key
        cache[canonical.upper()] = key
    cache.update({letter.upper(): key for letter, key in COMPACT.items()})
    return cache


_KEYS = _build_key_cache()


def header_key(name: str) -> str:
    """The lookup key of a header name as written: lowercased, compact forms expanded."""
    key = _KEYS.get(name)
    if key is None:
        key = name.strip().lower()
        key = COMPACT.get(key, key)
    return key


def canonical_name(key: str) -> str:
    return CANONICAL.get(key) or key.title()


def split_values(value: str) -> list[str]:
    """Split a header value on the commas that separate values, not those inside
    quoted strings or ``<...>`` (RFC 3261 §7.3.1)."""
    if "," not in value:
        return [value.strip(" \t")]
    if '"' not in value:
        if value.count(",") == value.count(">, <"):  # "<a>, <b>": Route, Record-Route
            return value.strip(" \t").split(", ")
        parts = value.split(",")
        if "<" in value and _COMMA_IN_ANGLES(value):
            parts = _rejoin_angles(parts)
        return [part.strip(" \t") for part in parts]
    parts = []
    start = 0
    quoted = angle = escaped = False
    for i, char in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == "<":
            angle = True
        elif char == ">":
            angle = False
        elif char == "," and not angle:
            parts.append(value[start:i].strip(" \t"))
            start = i + 1
    if quoted or angle:
        raise ParseError("unbalanced quote or angle bracket")
    parts.append(value[start:].strip(" \t"))
    return parts


def _rejoin_angles(parts: list[str]) -> list[str]:
    """Glue back pieces split on a comma inside ``<...>`` (a URI may hold one)."""
    out: list[str] = []
    pending: list[str] = []
    depth = 0
    for part in parts:
        pending.append(part)
        depth += part.count("<") - part.count(">")
        if depth == 0:
            out.append(",".join(pending))
            pending = []
    if pending:
        raise ParseError("unbalanced angle bracket")
    return out


def split_params(text: str) -> list[str]:
    """Split ``;``-separated parameters, respecting quoted strings."""
    if '"' not in text:
        return text.split(";")
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        raise ParseError("unterminated quoted string")
    parts.append(text[start:])
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """``;a=1;lr;b="x y"`` (text after the first ``;``) -> ``{"a": "1", "lr": None, "b": '"x y"'}``.

    Names are lowercased; values are kept as written (quotes included) so they
    serialise back unchanged.
    """
    params: dict[str, str | None] = {}
    if '"' in text:
        parts = split_params(text)
    elif " " in text or "\t" in text:
        parts = text.split(";")
    elif ";" not in text:  # the commonest case: one parameter (a tag, lr)
        name, eq, val = text.partition("=")
        if name:
            return {name.lower(): val if eq else None}
        parts = [text]
    else:  # the common case: no quotes, no LWS
        for part in text.split(";"):
            name, eq, val = part.partition("=")
            params[name.lower()] = val if eq else None
        if "" in params:
            raise ParseError("empty parameter")  # ";;", a trailing ";" or "=x"
        return params
    for part in parts:
        name, eq, val = part.partition("=")
        name, val = name.strip(" \t"), val.strip(" \t")
        if not name:
            # generic-param has a name (RFC 3261 §25.1): ";;" is an error
            # (RFC 4475 §3.1.2.1), not something to guess around.
            raise ParseError("empty parameter")
        params[name if name.islower() else name.lower()] = val if eq else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        body = text[1:-1]
        if "\\" in body:
            out, i = [], 0
            while i < len(body):
                if body[i] == "\\" and i + 1 < len(body):
                    i += 1
                out.append(body[i])
                i += 1
            body = "".join(out)
        return body
    return text


def quote(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    if not text.isprintable():
        # Control characters go out as quoted-pairs; CR and LF cannot (§25.1).
        text = _CONTROL_SUB(_escape_control, text)
    return '"' + text + '"'


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    return "" if char in "\r\n" else "\\" + char


def _parse_int(text: str, what: str, high: int = 2**32 - 1) -> int:
    text = text.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 10:
        raise ParseError(f"bad {what}")
    number = int(text)
    if number > high:
        raise ParseError(f"bad {what}")
    return number


def split_host_port(text: str, what: str = "host") -> tuple[str, int | None]:
    """``host[:port]`` with IPv6 references in brackets; LWS may surround the colon."""
    text = text.strip(" \t")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError(f"bad {what}: unclosed IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :].lstrip(" \t")
        if rest and rest[0] != ":":
            raise ParseError(f"bad {what}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text = text.partition(":")
        if not colon:
            port_text = None
        elif host[-1:] in (" ", "\t"):
            host = host.rstrip(" \t")
    if not host or " " in host or "\t" in host:
        raise ParseError(f"bad {what}")
    if port_text is None:
        return host, None
    return host, _parse_int(port_text, f"{what} port", 65535)


def format_host_port(host: str, port: int | None) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


@dataclass(slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport`` (RFC 3261 §20.42, RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, value: str) -> Via:
        # Fast path: "SIP/2.0/UDP host:port;params" as nearly every UA writes it.
        protocol, _, rest = value.partition(" ")
        transport = _PLAIN_PROTOCOLS.get(protocol)
        if transport is not None:
            sent_by, semi, param_text = rest.partition(";")
            host_port = _plain_sent_by(sent_by)
            if host_port is not None:
                if cls is not Via:
                    return cls(transport, *host_port, parse_params(param_text) if semi else {})
                # What the dataclass __init__ does, without its call overhead.
                self = _new_object(cls)
                self.transport = transport
                self.host, self.port = host_port
                self.params = parse_params(param_text) if semi else {}
                self.protocol = "SIP/2.0"
                return self
        match = _VIA_HEAD(value)
        if match is None:
            return cls._parse_odd(value)
        name, version, transport, host, port_text, semi = match.groups()
        if port_text is None:
            port = None
        else:
            port = int(port_text)
            if port > 65535:
                raise ParseError("bad Via sent-by port")
        params = parse_params(value[match.end() :]) if semi else {}
        if name == "SIP" and version == "2.0":
            protocol = "SIP/2.0"
        else:
            protocol = f"{name.upper()}/{version}"
        return cls(transport if transport.isupper() else transport.upper(), host, port, params, protocol)

    @classmethod
    def _parse_odd(cls, value: str) -> Via:
        """What the one-regex path does not take: report what is wrong with it."""
        match = _SENT_PROTOCOL(value)
        if match is None:
            raise ParseError("bad Via")
        split_host_port(value[match.end() :].partition(";")[0], "Via sent-by")  # its reason
        raise ParseError("bad Via sent-by")  # a host with characters no host has

    def __str__(self) -> str:
        sent_by = format_host_port(self.host, self.port)
        return f"{self.protocol}/{self.transport} {sent_by}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def rport(self) -> int | None:
        """The rport value a server filled in (RFC 3581 §4); None when absent or empty."""
        value = self.params.get("rport")
        if value and value.isdigit() and value.isascii() and len(value) <= 5:
            return int(value)
        return None

    @property
    def wants_rport(self) -> bool:
        return "rport" in self.params

    @property
    def reliable(self) -> bool:
        return self.transport not in ("UDP", "DTLS")


@dataclass(slots=True)
class NameAddr:
    """A name-addr or addr-spec with header parameters: From, To, Contact, Route,
    Record-Route, Path (RFC 3261 §20.10, §20.20, §20.39)."""

    uri_text: str
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    angle: bool = True
    _uri: Uri | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        # Fast path for the shapes nearly every UA sends: <uri>;params and
        # "display" <uri>;params, no escapes, no LWS inside the brackets.
        display: str | None
        first = value[:1]
        if first == "<":
            display, lt = None, 0
        elif first == '"':
            end = value.find('"', 1)
            if end < 0 or not value.startswith(" <", end + 1):
                return cls._parse_other(value)
            display, lt = value[1:end], end + 2
            if "\\" in display:
                return cls._parse_other(value)
        else:
            return cls._parse_other(value)
        gt = value.find(">", lt)
        uri_text = value[lt + 1 : gt]
        if gt < 0 or ":" not in uri_text or " " in uri_text or "\t" in uri_text:
            return cls._parse_other(value)
        if gt + 1 == len(value):
            params: dict[str, str | None] = {}
        elif value[gt + 1] == ";":
            text = value[gt + 2 :]
            name, eq, val = text.partition("=")
            if eq and name.isalpha() and not (";" in val or '"' in val or " " in val or "\t" in val):
                params = {name.lower(): val}  # one plain parameter: ;tag=...
            else:
                params = parse_params(text)
        else:
            return cls._parse_other(value)
        if cls is not NameAddr:
            return cls(uri_text, display, params, True)
        # What the dataclass __init__ does, without its call overhead (hot path).
        self = _new_object(cls)
        self.uri_text = uri_text
        self.display = display
        self.params = params
        self.angle = True
        self._uri = None
        return self

    @classmethod
    def parse_list(cls, value: str) -> list[NameAddr]:
        """Every name-addr of one line of a list header (Route, Record-Route, Path)."""
        if value[:1] == "<" and value[-1:] == ">" and '"' not in value and cls is NameAddr:
            # Fast path for "<uri>, <uri>, ...": no display names, no parameters.
            inner = value[1:-1]
            found: list[NameAddr] = []
            for uri in inner.split(">, <") if ">" in inner else (inner,):
                if ":" not in uri or "<" in uri or ">" in uri or " " in uri or "\t" in uri:
                    break
                self = _new_object(cls)
                self.uri_text = uri
                self.display = None
                self.params = {}
                self.angle = True
                self._uri = None
                found.append(self)
            else:
                return found
        if "," not in value:
            return [cls.parse(value)]
        return [cls.parse(part) for part in split_values(value)]

    @classmethod
    def _parse_other(cls, value: str) -> NameAddr:
        """An addr-spec without angle brackets, or a name-addr the fast path left."""
        match = _NAME_ADDR(value)
        if match is not None:
            quoted, display, uri_text, params = match.groups()
            if quoted is not None:
                display = _unescape_quoted(quoted) if "\\" in quoted else quoted
            else:
                display = _token_display(display)
            return cls(uri_text, display, {} if params is None else parse_params(params), True)
        text = value.strip(" \t")
        display = None
        if text.startswith('"'):
            end = _closing_quote(text)
            display = _unescape_quoted(text[1:end])
            text = text[end + 1 :].lstrip(" \t")
            if not text.startswith("<"):
                raise ParseError("display name without <URI>")
        lt = text.find("<")
        if lt >= 0:
            if display is None and lt > 0:
                display = _token_display(text[:lt])
            gt = text.find(">", lt)
            if gt < 0:
                raise ParseError("unclosed <URI>")
            uri_text = text[lt + 1 : gt]
            if uri_text != uri_text.strip(" \t"):
                raise ParseError("LWS inside <URI>")  # RFC 4475 §3.1.2.14
            rest = text[gt + 1 :].strip(" \t")
            angle = True
        else:
            # addr-spec: a ';' after the URI starts header parameters (§20.10).
            uri_text, semi, param_text = text.partition(";")
            uri_text = uri_text.strip(" \t")
            rest = ";" + param_text if semi else ""
            angle = False
            if "?" in uri_text or '"' in uri_text:
                # §20.10: a URI with headers must be in <> (RFC 4475 §3.1.2.13).
                raise ParseError("URI with headers outside <>")
        if not uri_text or ":" not in uri_text:
            raise ParseError("bad URI in name-addr")
        if rest:
            if rest[0] != ";":
                raise ParseError("junk after URI")
            params = parse_params(rest[1:])
        else:
            params = {}
        return cls(uri_text, display, params, angle)

    def __str__(self) -> str:
        if self.display is not None:
            display = self.display
            if not _is_token_list(display):
                display = quote(display)
            head = f"{display} <{self.uri_text}>"
        elif self.angle or self.params:
            head = f"<{self.uri_text}>"
        else:
            head = self.uri_text
        return head + format_params(self.params)

    @property
    def uri(self) -> Uri:
        if self._uri is None:
            self._uri = parse_uri(self.uri_text)
        return self._uri

    @uri.setter
    def uri(self, value: Uri) -> None:
        self._uri = value
        self.uri_text = str(value)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


@dataclass(slots=True)
class Contact(NameAddr):
    """A Contact value, or the wildcard ``*`` (RFC 3261 §20.10, §10.2.2; RFC 5626)."""

    star: bool = False

    @classmethod
    def parse(cls, value: str) -> Contact:
        if value.strip() == "*":
            return cls("*", star=True, angle=False)
        base = NameAddr.parse(value)
        # What the dataclass __init__ does, without its call overhead (hot path).
        self = _new_object(cls)
        self.uri_text = base.uri_text
        self.display = base.display
        self.params = base.params
        self.angle = base.angle
        self._uri = None
        self.star = False
        return self

    def __str__(self) -> str:
        return "*" if self.star else NameAddr.__str__(self)

    @property
    def expires(self) -> int | None:
        value = self.params.get("expires")
        if value is None:
            return None
        return _parse_int(value, "Contact expires")

    @property
    def q(self) -> float:
        value = self.params.get("q")
        if value is None:
            return 1.0
        if not _QVALUE(value):
            raise ParseError("bad Contact q")
        return float(value)

    @property
    def instance(self) -> str | None:
        value = self.params.get("+sip.instance")
        return None if value is None else unquote(value)

    @property
    def reg_id(self) -> int | None:
        value = self.params.get("reg-id")
        return None if value is None else _parse_int(value, "Contact reg-id")


@dataclass(slots=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, value: str) -> CSeq:
        number, _, method = value.partition(" ")
        if not (number.isdigit() and method.isalpha() and method.isascii()):
            parts = value.split()
            if len(parts) != 2:
                raise ParseError("bad CSeq")
            number, method = parts
            if not _is_token(method):
                raise ParseError("bad CSeq")
        if number.isascii() and len(number) < 10 and number.isdigit():
            return cls(int(number), method)
        return cls(_parse_int(number, "CSeq number", 2**31 - 1), method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_int_header(value: str, name: str) -> int:
    return _parse_int(value, name)


_TOKEN_EXTRA = frozenset("-.!%*_+`'~")


def _is_token(text: str) -> bool:
    if text.isalnum() and text.isascii():
        return True
    return bool(text) and text.isascii() and all(c.isalnum() or c in _TOKEN_EXTRA for c in text)


is_token = _is_token


def _token_display(text: str) -> str | None:
    """An unquoted display name: tokens separated by LWS (§25.1), or none."""
    text = text.strip(" \t")
    if text and not all(_is_token(word) for word in text.split()):
        raise ParseError("display name must be quoted")  # RFC 4475 §3.1.2.15
    return text or None


def _is_token_list(text: str) -> bool:
    """Tokens separated by single spaces: a display name that needs no quotes."""
    if text.isalnum() and text.isascii():
        return True
    return bool(text) and all(_is_token(word) for word in text.split(" "))


_LWS = (" ", "\t")
_new_object = object.__new__
_COMMA_IN_ANGLES = re.compile(r"<[^<>,]*+,").search
_PLAIN_PROTOCOLS = {
    f"SIP/2.0/{transport}": transport
    for transport in ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "DTLS", "TLS-SCTP")
}
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


@lru_cache(maxsize=4096)
def _plain_sent_by(text: str) -> tuple[str, int | None] | None:
    """``host[:port]`` with a plain hostname or IPv4 address and no LWS; None
    for anything else. Cached: the same peers send message after message."""
    host, colon, port_text = text.partition(":")
    if not host or not _HOST_CHARS.issuperset(host):
        return None
    if not colon:
        return host, None
    if not (port_text.isdigit() and port_text.isascii() and len(port_text) <= 5):
        return None
    port = int(port_text)
    return (host, port) if port <= 65535 else None


_TOKEN_RUN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_HOST_RUN = r"[A-Za-z0-9\-._]+|\[[0-9A-Fa-f:.]+\]"
# A whole Via value up to its parameters, LWS allowed where §20.42 allows it.
_VIA_HEAD = re.compile(
    rf"[ \t]*({_TOKEN_RUN})[ \t]*/[ \t]*({_TOKEN_RUN})[ \t]*/[ \t]*({_TOKEN_RUN})[ \t]+"
    rf"({_HOST_RUN})(?:[ \t]*:[ \t]*([0-9]{{1,5}}))?[ \t]*(?:(;)|\Z)"
).match
# [display] <uri> [;params]: the shape of nearly every From, To, Route and Contact.
# The URI must have a scheme and no LWS (other shapes take the slow path).
# No two neighbouring parts can match the same text, so a failing match is
# linear in the length of the value (no catastrophic backtracking).
_NAME_ADDR = re.compile(
    r'(?:[ \t]*+"([^"\\]*+(?:\\.[^"\\]*+)*+)"[ \t]*+|([^"<]*+))'
    r"<([^>:\s]++:[^>\s]*+)>[ \t]*+(?:;(.*))?\Z",
    re.S,
).match
# sent-protocol and the LWS after it: "SIP / 2.0 / UDP " (RFC 3261 §20.42).
_SENT_PROTOCOL = re.compile(
    rf"[ \t]*({_TOKEN_RUN})[ \t]*/[ \t]*({_TOKEN_RUN})[ \t]*/[ \t]*({_TOKEN_RUN})[ \t]+"
).match
# RFC 3261 §20.10: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z").match


def _unescape_quoted(text: str) -> str:
    """The inside of a quoted string with its quoted-pairs resolved."""
    return _QUOTED_PAIR(r"\1", text)


_QUOTED_PAIR = re.compile(r"\\(.)", re.S).sub
_CONTROL_SUB = re.compile(r"[\x00-\x1f\x7f]").sub


def _closing_quote(text: str) -> int:
    i = 1
    while True:
        i = text.find('"', i)
        if i < 0:
            raise ParseError("unterminated quoted string")
        backslashes = 0
        j = i - 1
        while text[j] == "\\":
            backslashes += 1
            j -= 1
        if backslashes % 2 == 0:
            return i
        i += 1
