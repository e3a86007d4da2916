"""SIP, SIPS and tel URIs: parsing, serialising and comparison.

Grammar: RFC 3261 §19.1 and §25.1 (sip/sips), RFC 3966 (tel). Any other
scheme is kept verbatim as an ``AbsoluteUri``.

Components are stored unescaped and escaped again on output with the
character sets of §25.1, so ``sip:%61lice@h`` and ``sip:alice@h`` give the same
object. Raw non-ASCII characters in user, password, parameters and headers are
accepted (some UAs send them) and come out %-escaped as UTF-8; hosts must be
ASCII.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv6Address
from urllib.parse import quote

from .errors import ParseError

__all__ = ["AbsoluteUri", "SipUri", "TelUri", "Uri", "check_uri", "parse_uri"]

# §25.1 character sets, as regex class bodies.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER = _UNRESERVED + r"&=+$,;?/"
_PASSWORD = _UNRESERVED + r"&=+$,"
_PARAM = _UNRESERVED + r"\[\]/:&+$"
_HEADER = _UNRESERVED + r"\[\]/?:+$"
# Raw non-ASCII is tolerated on input; lone surrogates never are.
_NON_ASCII = "\u0080-\ud7ff\ue000-\U0010ffff"

# Input validation: allowed characters plus '%' (escapes are checked on unescaping).
_USER_IN = re.compile(f"[{_USER}%{_NON_ASCII}]+")
_PASSWORD_IN = re.compile(f"[{_PASSWORD}%{_NON_ASCII}]*")
_PARAMS_IN = re.compile(f"[{_PARAM}%;={_NON_ASCII}]+")  # the whole ";a=b;c" run
_HEADERS_IN = re.compile(f"[{_HEADER}%&={_NON_ASCII}]+")  # the whole "a=b&c=d" run
# Output fast path: nothing to escape.
_USER_OUT = re.compile(f"[{_USER}]*")
_PASSWORD_OUT = re.compile(f"[{_PASSWORD}]*")
_PARAM_OUT = re.compile(f"[{_PARAM}]*")
_HEADER_OUT = re.compile(f"[{_HEADER}]*")
# quote() always keeps letters, digits and "_.-~"; these are the rest of each set.
_USER_SAFE = "!*'()&=+$,;?/"
_PASSWORD_SAFE = "!*'()&=+$,"
_PARAM_SAFE = "!*'()[]/:&+$"
_HEADER_SAFE = "!*'()[]/?:+$"

# Labels are alphanumeric runs joined by hyphen runs, so the match is linear.
# '_' is not in the §25.1 grammar but occurs in real hostnames.
_LABEL = r"[A-Za-z0-9_]++(?:-++[A-Za-z0-9_]++)*+"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*+\.?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_ABSOLUTE_REST = re.compile(r'[^\x00-\x20\x7f<>"\\\ud800-\udfff]+')
_HEX = frozenset("0123456789abcdefABCDEF")

# RFC 3966: number characters and parameter names.
_TEL_GLOBAL = re.compile(r"\+[0-9\-.()]+")
_TEL_LOCAL = re.compile(r"[0-9A-Fa-f*#\-.()]+")
_TEL_NUMBER_IN = re.compile(r"[0-9A-Fa-f*#\-.()+%]+")
_TEL_PNAME = re.compile(r"[A-Za-z0-9\-]+")
_VISUAL_SEPARATORS = str.maketrans("", "", "-.()")
_NUMBER_CHARS = frozenset("0123456789+-.()")

# RFC 3261 §19.1.4: these must match when present in either URI.
_STRICT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _unescape(text: str) -> str:
    """Decode %XX escapes; octets that are not UTF-8 survive as surrogates."""
    if "%" not in text:
        return text
    first, *rest = text.split("%")
    out = bytearray(first.encode())
    for chunk in rest:
        if len(chunk) < 2 or chunk[0] not in _HEX or chunk[1] not in _HEX:
            raise ParseError("Bad %-escape in URI")
        out.append(int(chunk[:2], 16))
        out += chunk[2:].encode()
    return out.decode("utf-8", "surrogateescape")


def _escape(text: str, plain: re.Pattern[str], safe: str) -> str:
    if plain.fullmatch(text):
        return text
    return quote(text, safe=safe, errors="surrogateescape")


def _param_key(value: str | None) -> str | None:
    return None if value is None else value.lower()


@lru_cache(maxsize=1024)
def _host_key(host: str) -> str:
    """Hosts compare case-insensitively; IPv6 references by address."""
    if host.startswith("["):
        try:
            return f"[{IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            pass
    return host.lower()


def _headers_key(headers: dict[str, str]) -> dict[str, str]:
    key: dict[str, str] = {}
    for name, value in headers.items():
        name = name.lower()
        key[name] = f"{key[name]},{value}" if name in key else value
    return key


@dataclass(slots=True, eq=False)
class SipUri:
    """A sip: or sips: URI (RFC 3261 §19.1). Parameter names are lowercase."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = self.scheme + ":"
        if self.user is not None:
            text += _escape(self.user, _USER_OUT, _USER_SAFE)
            if self.password is not None:
                text += ":" + _escape(self.password, _PASSWORD_OUT, _PASSWORD_SAFE)
            text += "@"
        text += self.host
        if self.port is not None:
            text += f":{self.port}"
        for name, value in self.params.items():
            text += ";" + _escape(name, _PARAM_OUT, _PARAM_SAFE)
            if value is not None:
                text += "=" + _escape(value, _PARAM_OUT, _PARAM_SAFE)
        if self.headers:
            text += "?" + "&".join(
                _escape(name, _HEADER_OUT, _HEADER_SAFE)
                + "="
                + _escape(value, _HEADER_OUT, _HEADER_SAFE)
                for name, value in self.headers.items()
            )
        return text

    def __eq__(self, other: object) -> bool:
        """RFC 3261 §19.1.4. Not transitive: unknown params count only if in both."""
        if not isinstance(other, SipUri):
            return NotImplemented
        if (
            self.scheme != other.scheme
            or self.user != other.user
            or self.password != other.password
            or self.port != other.port
            or _host_key(self.host) != _host_key(other.host)
        ):
            return False
        mine, theirs = self.params, other.params
        for name, value in mine.items():
            if name in theirs:
                if _param_key(value) != _param_key(theirs[name]):
                    return False
            elif name in _STRICT_PARAMS:
                return False
        if any(name in theirs and name not in mine for name in _STRICT_PARAMS):
            return False
        return _headers_key(self.headers) == _headers_key(other.headers)

    def __hash__(self) -> int:
        # Only what __eq__ requires to match on both sides goes in.
        return hash(
            (
                self.scheme,
                self.user,
                self.password,
                self.port,
                _host_key(self.host),
                tuple(_param_key(self.params.get(name)) for name in _STRICT_PARAMS),
                frozenset(_headers_key(self.headers).items()),
            )
        )

    @property
    def transport(self) -> str | None:
        return _param_key(self.params.get("transport"))

    @property
    def lr(self) -> bool:
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def user_param(self) -> str | None:
        """The ``user=`` URI parameter ("phone", "ip", ...), lowercase."""
        return _param_key(self.params.get("user"))

    @property
    def host_port(self) -> tuple[str, int | None]:
        return self.host, self.port

    def copy(self, **changes: object) -> SipUri:
        """A new SipUri with ``changes`` applied; params and headers are copied."""
        values: dict[str, object] = {
            "scheme": self.scheme,
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
            "params": dict(self.params),
            "headers": dict(self.headers),
        }
        values.update(changes)
        return SipUri(**values)  # type: ignore[arg-type]


@dataclass(slots=True, eq=False)
class TelUri:
    """A tel: URI (RFC 3966). ``number`` keeps its visual separators."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    def __str__(self) -> str:
        text = "tel:" + self.number
        for name, value in self.params.items():
            text += ";" + name
            if value is not None:
                text += "=" + _escape(value, _PARAM_OUT, _PARAM_SAFE)
        return text

    def _key(self) -> tuple[str, dict[str, str | None]]:
        """RFC 3966 §4: all case-insensitive, digits without visual separators."""
        params: dict[str, str | None] = {}
        for name, value in self.params.items():
            if value is not None:
                value = value.lower()
                if name == "ext" or (name == "phone-context" and value.startswith("+")):
                    value = value.translate(_VISUAL_SEPARATORS)
            params[name.lower()] = value
        return self.number.translate(_VISUAL_SEPARATORS).lower(), params

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelUri):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        number, params = self._key()
        return hash((number, frozenset(params.items())))


@dataclass(slots=True)
class AbsoluteUri:
    """A URI of any other scheme (mailto:, urn:, http:, ...), kept verbatim."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def number_user(user: str) -> bool:
    """A user part that reads as a telephone number: digits, + and visual
    separators (RFC 3966 §5.1.1), at least one digit. The proxy routes such a
    user part off-net; the portal keeps customers from provisioning one."""
    return _NUMBER_CHARS.issuperset(user) and any(c.isdigit() for c in user)


def parse_uri(text: str) -> Uri:
    """Parse a URI as found in a Request-URI or a name-addr; raise ParseError."""
    scheme, colon, rest = text.partition(":")
    if not colon:
        raise ParseError("Missing URI scheme")
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest)
    lowered = scheme.lower()
    if lowered == "sip" or lowered == "sips":
        return _parse_sip(lowered, rest)
    if not _SCHEME.fullmatch(scheme):
        raise ParseError("Bad URI scheme")
    if lowered == "tel":
        return _parse_tel(rest)
    if not _ABSOLUTE_REST.fullmatch(rest):
        raise ParseError("Bad URI")
    if "%" in rest:
        _unescape(rest)  # only to reject bad escapes; the text is kept as written
    return AbsoluteUri(scheme, rest)


# URIs up to this long have their verdict cached (``check_uri``): a peer's
# own URI comes back in message after message; longer ones are parsed each
# time, so the cache holds at most CHECKED * CHECKED_LENGTH characters.
CHECKED = 4096
CHECKED_LENGTH = 256


def check_uri(text: str) -> None:
    """Raise the ParseError ``parse_uri(text)`` would, without keeping the URI.

    Validation's check of every URI a request names (RFC 3261 §16.3 step 1):
    the verdict is a function of the text alone, so it is cached by text;
    whoever reads the URI itself parses it then (``NameAddr.uri``)."""
    if len(text) > CHECKED_LENGTH:
        parse_uri(text)
        return
    error = _uri_error(text)
    if error is not None:
        raise ParseError(*error)


@lru_cache(maxsize=CHECKED)
def _uri_error(text: str) -> tuple[str, int] | None:
    try:
        parse_uri(text)
    except ParseError as exc:
        return exc.reason, exc.status
    return None


def _parse_sip(scheme: str, rest: str) -> SipUri:
    user = password = None
    at = rest.find("@")  # '@' is never unescaped in userinfo (§25.1)
    if at >= 0:
        user, colon, password = rest[:at].partition(":")
        if not _USER_IN.fullmatch(user):
            raise ParseError("Bad URI user")
        if colon:
            if not _PASSWORD_IN.fullmatch(password):
                raise ParseError("Bad URI password")
            password = _unescape(password)
        else:
            password = None
        user = _unescape(user)
        rest = rest[at + 1 :]
    hostparams, question, header_text = rest.partition("?")
    hostport, semicolon, param_text = hostparams.partition(";")
    host, port = _parse_hostport(hostport)
    params = _parse_params(param_text) if semicolon else {}
    headers = _parse_headers(header_text) if question else {}
    return SipUri(scheme, user, password, host, port, params, headers)


def _parse_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError("Unbalanced IPv6 bracket")
        host, colon, port = text[: end + 1], text[end + 1 : end + 2], text[end + 2 :]
        if colon not in ("", ":"):
            raise ParseError("Bad URI host")
    else:
        host, colon, port = text.partition(":")
        if not host:
            raise ParseError("Empty URI host")
    if not _is_host(host):
        raise ParseError("Bad URI host")
    return host, _parse_port(port) if colon else None


@lru_cache(maxsize=4096)
def _is_host(host: str) -> bool:
    """hostname / IPv4address / IPv6reference (§25.1); cached, peers repeat."""
    if host.startswith("["):
        address = host[1:-1]
        if "%" in address:  # zone ids are not in the grammar
            return False
        try:
            IPv6Address(address)
        except ValueError:
            # RFC 3261's ABNF lets a "::" be followed by ":" and an IPv4
            # address; RFC 5118 §4.10 asks receivers to take that form too.
            if ":::" not in address or "." not in address:
                return False
            try:
                IPv6Address(address.replace(":::", "::", 1))
            except ValueError:
                return False
        return True
    if not _HOSTNAME.fullmatch(host):
        return False
    last = host.rpartition(".")[2]
    if not last.isdigit():
        return True
    # A hostname's top label starts with a letter, so this must be IPv4.
    octets = host.split(".")
    return len(octets) == 4 and all(o.isdigit() and len(o) <= 3 and int(o) <= 255 for o in octets)


def _parse_port(text: str) -> int:
    if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()):
        raise ParseError("Bad URI port")
    port = int(text)
    if port > 65535:
        raise ParseError("Bad URI port")
    return port


def _parse_params(text: str) -> dict[str, str | None]:
    if not _PARAMS_IN.fullmatch(text):
        raise ParseError("Bad URI parameter")
    params: dict[str, str | None] = {}
    escaped = "%" in text
    for item in text.split(";"):
        name, equals, value = item.partition("=")
        if not name or "=" in value:
            raise ParseError("Bad URI parameter")
        if escaped:
            name, value = _unescape(name), _unescape(value)
        name = name.lower()
        if name in params:
            raise ParseError("Duplicate URI parameter")
        params[name] = value if equals else None
    return params


def _parse_headers(text: str) -> dict[str, str]:
    if not _HEADERS_IN.fullmatch(text):
        raise ParseError("Bad URI header")
    headers: dict[str, str] = {}
    for item in text.split("&"):
        name, equals, value = item.partition("=")
        if not name or not equals or "=" in value:
            raise ParseError("Bad URI header")
        name, value = _unescape(name), _unescape(value)
        # A repeated header is the same as one with a comma list (§7.3.1).
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _parse_tel(rest: str) -> TelUri:
    number, semicolon, param_text = rest.partition(";")
    if not _TEL_NUMBER_IN.fullmatch(number):
        raise ParseError("Bad tel number")
    number = _unescape(number)
    pattern = _TEL_GLOBAL if number.startswith("+") else _TEL_LOCAL
    if not pattern.fullmatch(number) or not number.translate(_VISUAL_SEPARATORS).strip("+"):
        raise ParseError("Bad tel number")
    params = _parse_params(param_text) if semicolon else {}
    if not all(_TEL_PNAME.fullmatch(name) for name in params):
        raise ParseError("Bad tel parameter")
    return TelUri(number, params)
