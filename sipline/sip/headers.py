"""Header names and the typed header values routing needs (RFC 3261 §20, §25.1).

Each typed value is parsed from the header's text only when a message is
asked for it (see ``sipline.sip.message``), and turns back into text with
``str()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
        return [value.strip()]
    if '"' not in value:
        parts = value.split(",")
        if "<" in value:
            parts = _rejoin_angles(parts)
        return [part.strip() for part in parts]
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
            parts.append(value[start:i].strip())
            start = i + 1
    if quoted or angle:
        raise ParseError("unbalanced quote or angle bracket")
    parts.append(value[start:].strip())
    return parts


def _rejoin_angles(parts: list[str]) -> list[str]:
    """Glue back pieces split on a comma inside ``<...>`` (a URI may hold one)."""
    out: list[str] = []
    pending = ""
    for part in parts:
        pending = f"{pending},{part}" if pending else part
        if pending.count("<") == pending.count(">"):
            out.append(pending)
            pending = ""
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
    spaced = " " in text or "\t" in text
    for part in split_params(text):
        name, eq, val = part.partition("=")
        if spaced:
            name, val = name.strip(), val.strip()
        if not name:
            if not eq and not val:
                continue  # tolerate ";;" and a trailing ";"
            raise ParseError("empty parameter name")
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
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_int(text: str, what: str, high: int = 2**32 - 1) -> int:
    text = text.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 10:
        raise ParseError(f"bad {what}")
    number = int(text)
    if number > high:
        raise ParseError(f"bad {what}")
    return number


def split_host_port(text: str, what: str = "host") -> tuple[str, int | None]:
    """``host[:port]`` with IPv6 references in brackets."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError(f"bad {what}: unclosed IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and rest[0] != ":":
            raise ParseError(f"bad {what}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text = text.partition(":")
        if not colon:
            port_text = None
    if not host or " " in host:
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
        sent_protocol, _, rest = value.strip().partition(" ")
        if sent_protocol.count("/") != 2:
            # LWS is allowed around the slashes of sent-protocol.
            head, sep, tail = value.strip().rpartition("/")
            transport, _, rest = tail.strip().partition(" ")
            sent_protocol = "".join(head.split()) + sep + transport
            if sent_protocol.count("/") != 2:
                raise ParseError("bad Via")
        name, version, transport = sent_protocol.split("/")
        if not transport or not name or not version:
            raise ParseError("bad Via")
        sent_by, semi, param_text = rest.partition(";")
        host, port = split_host_port(sent_by, "Via sent-by")
        params = parse_params(param_text) if semi else {}
        return cls(transport.upper(), host, port, params, f"{name.upper()}/{version}")

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
        return int(value) if value and value.isdigit() else None

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
        text = value.strip()
        display = None
        if text.startswith('"'):
            end = _closing_quote(text)
            display = unquote(text[: end + 1])
            text = text[end + 1 :].lstrip()
            if not text.startswith("<"):
                raise ParseError("display name without <URI>")
        lt = text.find("<")
        if lt >= 0:
            if display is None and lt > 0:
                display = text[:lt].strip() or None
            gt = text.find(">", lt)
            if gt < 0:
                raise ParseError("unclosed <URI>")
            uri_text = text[lt + 1 : gt].strip()
            rest = text[gt + 1 :].strip()
            angle = True
        else:
            # addr-spec: a ';' after the URI starts header parameters (§20.10).
            uri_text, _, param_text = text.partition(";")
            uri_text = uri_text.strip()
            rest = ";" + param_text if _ else ""
            angle = False
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
            if not display.replace(" ", "").replace("-", "").replace(".", "").isalnum():
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
        return cls(base.uri_text, base.display, base.params, base.angle)

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
        try:
            q = float(value)
        except ValueError:
            raise ParseError("bad Contact q") from None
        if not 0.0 <= q <= 1.0:
            raise ParseError("bad Contact q")
        return q

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
        number, _, method = value.strip().partition(" ")
        if " " in method or "\t" in method or not number.isdigit():
            number, method = number.strip(), method.strip()
        if not method or not (method.isalpha() and method.isascii() or _is_token(method)):
            raise ParseError("bad CSeq")
        if number.isdigit() and number.isascii() and len(number) < 10:
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
