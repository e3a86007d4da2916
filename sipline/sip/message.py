"""SIP requests and responses: parsing from bytes, typed access, serialising.

``parse_message`` does the least work that validation needs (one decode, one
split, one pass over the header lines); typed values (Via, From, Contact ...)
are parsed the first time they are read and cached until the header changes.
Headers a message never reads are kept as their original lines, so they go
back out byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .errors import ParseError
from .headers import _KEYS as _KEYS_AS_WRITTEN
from .headers import (
    Contact,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    header_key,
    is_token,
    parse_int_header,
    split_values,
)
from .uri import Uri, parse_uri

T = TypeVar("T")
_MISSING: Any = object()

# One header line: [key, name as written, value, original line or None once changed].
Field = list


class Headers:
    """Header fields in order, with case-insensitive and compact-form lookup."""

    __slots__ = ("_fields", "_index", "_parsed")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._fields: list[Field] = []
        self._index: dict[str, list[Field]] = {}
        self._parsed: dict[str, Any] = {}
        for name, value in items or ():
            self.add(name, value)

    @classmethod
    def _from_fields(cls, fields: list[Field], index: dict[str, list[Field]]) -> Headers:
        headers = cls.__new__(cls)
        headers._fields = fields
        headers._index = index
        headers._parsed = {}
        return headers

    # -- reading -----------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        found = self._index.get(header_key(name))
        return found[0][2] if found else default

    def get_all(self, name: str) -> list[str]:
        """Every line's value of a header, in order (values not split on commas)."""
        return [f[2] for f in self._index.get(header_key(name), ())]

    def values(self, name: str) -> list[str]:
        """Every value of a list header (Via, Route, Contact ...) across its lines."""
        found = self._index.get(header_key(name))
        if not found:
            return []
        if len(found) == 1:
            return split_values(found[0][2])
        return [v for f in found for v in split_values(f[2])]

    def __contains__(self, name: str) -> bool:
        return header_key(name) in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for f in self._fields:
            yield f[1], f[2]

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        mine = [(f[0], f[2]) for f in self._fields]
        return mine == [(f[0], f[2]) for f in other._fields]

    def __repr__(self) -> str:
        return f"Headers({[(f[1], f[2]) for f in self._fields]!r})"

    def parsed(self, key: str, parse: Callable[[Headers, str], T]) -> T:
        """A typed view of header ``key``, parsed once and cached until it changes."""
        value = self._parsed.get(key, _MISSING)
        if value is _MISSING:
            value = self._parsed[key] = parse(self, key)
        return value

    # -- changing ----------------------------------------------------------
    def set(self, name: str, value: str) -> None:
        """Give a header exactly one value, in the place of its first line."""
        key = header_key(name)
        found = self._index.get(key)
        self._changed(key)
        if not found:
            self.add(name, value)
            return
        first = found[0]
        first[2], first[3] = value, None
        for extra in found[1:]:
            self._drop(extra)
        del found[1:]

    def add(self, name: str, value: str) -> None:
        """Append a header line at the end."""
        key = header_key(name)
        f = [key, canonical_name(key) if name == key else name, value, None]
        self._fields.append(f)
        self._index.setdefault(key, []).append(f)
        self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        """Insert a value above every existing one (a proxy's Via or Record-Route).

        With no such header yet it goes first among all headers, which keeps
        Via at the top where RFC 3261 §7.3.1 recommends it."""
        key = header_key(name)
        f = [key, canonical_name(key) if name == key else name, value, None]
        found = self._index.get(key)
        self._changed(key)
        if found:
            at = self._position(found[0])
            found.insert(0, f)
        else:
            at = 0
            self._index[key] = [f]
        self._fields.insert(at, f)

    def remove(self, name: str) -> None:
        key = header_key(name)
        self._changed(key)
        for f in self._index.pop(key, ()):
            self._drop(f)

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first value of a list header (the top Via or Route)."""
        key = header_key(name)
        found = self._index.get(key)
        if not found:
            return None
        self._changed(key)
        first = found[0]
        values = split_values(first[2])
        if len(values) > 1:
            first[2], first[3] = ", ".join(values[1:]), None
        else:
            self._drop(first)
            del found[0]
            if not found:
                del self._index[key]
        return values[0]

    def copy(self) -> Headers:
        fields = [list(f) for f in self._fields]
        index: dict[str, list[Field]] = {}
        for f in fields:
            index.setdefault(f[0], []).append(f)
        return Headers._from_fields(fields, index)

    def _changed(self, key: str) -> None:
        parsed = self._parsed
        if parsed:
            parsed.pop(key, None)
            if key == "via":
                parsed.pop("via#top", None)

    def _position(self, target: Field) -> int:
        for i, f in enumerate(self._fields):
            if f is target:
                return i
        raise LookupError(target[0])

    def _drop(self, target: Field) -> None:
        del self._fields[self._position(target)]

    def _lines(self) -> list[str]:
        return [f[3] or f"{f[1]}: {f[2]}" for f in self._fields]


# -- typed views ------------------------------------------------------------
def _vias(h: Headers, key: str) -> list[Via]:
    return [Via.parse(v) for v in h.values(key)]


def _top_via(h: Headers, key: str) -> Via:
    found = h._index.get("via")
    if not found:
        raise ParseError("missing Via")
    value = found[0][2]
    return Via.parse(value if "," not in value else split_values(value)[0])


def _name_addr(h: Headers, key: str) -> NameAddr:
    value = h.get(key)
    if value is None:
        raise ParseError(f"missing {canonical_name(key)}")
    return NameAddr.parse(value)


def _name_addrs(h: Headers, key: str) -> list[NameAddr]:
    return [NameAddr.parse(v) for v in h.values(key)]


def _contacts(h: Headers, key: str) -> list[Contact]:
    return [Contact.parse(v) for v in h.values(key)]


def _cseq(h: Headers, key: str) -> CSeq:
    value = h.get(key)
    if value is None:
        raise ParseError("missing CSeq")
    return CSeq.parse(value)


def _int_or_none(h: Headers, key: str) -> int | None:
    value = h.get(key)
    return None if value is None else parse_int_header(value, canonical_name(key))


class Message:
    """What requests and responses share: headers, body and typed accessors."""

    __slots__ = ("headers", "body")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body

    # Typed, lazily parsed headers -------------------------------------------
    @property
    def vias(self) -> list[Via]:
        return self.headers.parsed("via", _vias)

    @property
    def via(self) -> Via:
        """The top Via (parsed alone: most messages never need the others)."""
        return self.headers.parsed("via#top", _top_via)

    @property
    def from_(self) -> NameAddr:
        return self.headers.parsed("from", _name_addr)

    @property
    def to(self) -> NameAddr:
        return self.headers.parsed("to", _name_addr)

    @property
    def call_id(self) -> str:
        value = self.headers.get("call-id")
        if value is None:
            raise ParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        return self.headers.parsed("cseq", _cseq)

    @property
    def routes(self) -> list[NameAddr]:
        return self.headers.parsed("route", _name_addrs)

    @property
    def record_routes(self) -> list[NameAddr]:
        return self.headers.parsed("record-route", _name_addrs)

    @property
    def paths(self) -> list[NameAddr]:
        return self.headers.parsed("path", _name_addrs)

    @property
    def contacts(self) -> list[Contact]:
        return self.headers.parsed("contact", _contacts)

    @property
    def max_forwards(self) -> int | None:
        return self.headers.parsed("max-forwards", _int_or_none)

    @property
    def expires(self) -> int | None:
        return self.headers.parsed("expires", _int_or_none)

    @property
    def content_length(self) -> int | None:
        return self.headers.parsed("content-length", _int_or_none)

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("content-type")
        return None if value is None else value.partition(";")[0].strip().lower()

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        self.body = body
        self.headers.set("Content-Length", str(len(body)))
        if content_type is not None:
            self.headers.set("Content-Type", content_type)

    @property
    def transaction_method(self) -> str:
        return self.cseq.method

    # Serialising -------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def serialise(self) -> bytes:
        headers = self.headers
        body = self.body
        found = headers._index.get("content-length")
        if found is None:
            if body:
                headers.add("Content-Length", str(len(body)))
        elif found[0][2] != str(len(body)) or len(found) > 1:
            headers.set("Content-Length", str(len(body)))
        lines = headers._lines()
        lines.insert(0, self.start_line())
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode() + body

    __bytes__ = serialise


class Request(Message):
    """A SIP request. ``uri`` is the Request-URI as text; ``request_uri`` parses it."""

    __slots__ = ("method", "_uri_text", "_uri", "version")

    def __init__(
        self,
        method: str,
        uri: str | Uri,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.version = version
        self.uri = uri

    @property
    def uri(self) -> str:
        return self._uri_text

    @uri.setter
    def uri(self, value: str | Uri) -> None:
        if isinstance(value, str):
            self._uri_text, self._uri = value, None
        else:
            self._uri_text, self._uri = str(value), value

    @property
    def request_uri(self) -> Uri:
        if self._uri is None:
            self._uri = parse_uri(self._uri_text)
        return self._uri

    def start_line(self) -> str:
        return f"{self.method} {self._uri_text} {self.version}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (
            self.method == other.method
            and self._uri_text == other._uri_text
            and self.version == other.version
            and self.headers == other.headers
            and self.body == other.body
        )

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri_text}>"

    __hash__ = None  # type: ignore[assignment]

    def response(self, status: int, reason: str | None = None, to_tag: str | None = None) -> Response:
        """The response a UAS or stateful proxy builds for this request (RFC 3261 §8.2.6.2)."""
        headers = Headers()
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            for value in self.headers.get_all(name):
                headers.add(name, value)
        if to_tag is not None and status > 100 and self.to.tag is None:
            headers.set("To", f"{self.headers.get('to')};tag={to_tag}")
        if status == 100 and "timestamp" in self.headers:
            headers.add("Timestamp", self.headers.get("timestamp") or "")
        headers.add("Content-Length", "0")
        return Response(status, reason if reason is not None else reason_phrase(status), headers)


class Response(Message):
    __slots__ = ("status", "reason", "version")

    def __init__(
        self,
        status: int,
        reason: str = "",
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason
        self.version = version

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    @property
    def provisional(self) -> bool:
        return self.status < 200

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (
            self.status == other.status
            and self.reason == other.reason
            and self.version == other.version
            and self.headers == other.headers
            and self.body == other.body
        )

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"

    __hash__ = None  # type: ignore[assignment]


# -- parsing ------------------------------------------------------------------
_REQUIRED_IN_REQUEST = ("to", "from", "cseq", "call-id", "max-forwards", "via")
_REQUIRED_IN_RESPONSE = ("to", "from", "cseq", "call-id", "via")


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one message from a datagram (or one framed stream message).

    ``stream=True`` demands the exact body length, as a stream framer has
    already cut it; for a datagram, bytes past Content-Length are discarded
    (RFC 3261 §18.3) and a missing Content-Length means the rest of it.
    Raises ParseError with a reason fit for a 400 response.
    """
    if data[:2] == b"\r\n":  # RFC 3261 §7.5: ignore CRLFs before the start line
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if data.endswith(b"\r\n"):
            end = len(data) - 2  # no body and no blank line (tolerated on UDP)
        else:
            raise ParseError("no end of headers")
    try:
        head = data[:end].decode()
    except UnicodeDecodeError:
        raise ParseError("headers are not UTF-8") from None
    lines = head.split("\r\n")
    message = _start_line(lines[0])
    fields: list[Field] = []
    index: dict[str, list[Field]] = {}
    keys = _KEYS_AS_WRITTEN
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = keys.get(name)
        if key is None:
            if line[:1] in (" ", "\t") and fields:
                _continue_line(fields[-1], line)  # folding, RFC 3261 §7.3.1
                continue
            if not colon:
                raise ParseError("header line without colon")
            name = name.rstrip()
            if not name or not is_token(name):
                raise ParseError("bad header name")
            key = header_key(name)
        elif not colon:
            raise ParseError("header line without colon")
        f = [key, name, value.strip(), line]
        fields.append(f)
        found = index.get(key)
        if found is None:
            index[key] = [f]
        else:
            found.append(f)
    headers = Headers._from_fields(fields, index)
    message.headers = headers
    message.body = _body(data, end + 4, index.get("content-length"), stream)
    _validate(message, index)
    return message


def _continue_line(field: Field, line: str) -> None:
    value = f"{field[2]} {line.strip()}".strip()
    field[2] = value
    field[3] = f"{field[1]}: {value}"


def _start_line(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[0].upper() != "SIP/2.0":
            raise ParseError("bad status line")
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not code.isascii() or not "1" <= code[0] <= "6":
            raise ParseError("bad status code")
        response = Response.__new__(Response)
        response.status = int(code)
        response.reason = parts[2] if len(parts) == 3 else ""
        response.version = parts[0]
        return response
    parts = line.split(" ")
    if len(parts) != 3:
        raise ParseError("bad request line")
    method, uri, version = parts
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        raise ParseError("unsupported SIP version" if version.startswith("SIP/") else "bad request line")
    if not (method.isalpha() and method.isascii() or is_token(method)) or ":" not in uri:
        raise ParseError("bad request line")
    request = Request.__new__(Request)
    request.method = method
    request._uri_text = uri
    request._uri = None
    request.version = version
    return request


def _body(data: bytes, start: int, lengths: list[Field] | None, stream: bool) -> bytes:
    available = len(data) - start
    if available < 0:
        available, start = 0, len(data)
    if lengths is None:
        return data[start:] if not stream else (data[start:] if available else b"")
    length_text = lengths[0][2]
    for other in lengths[1:]:
        if other[2] != length_text:
            raise ParseError("conflicting Content-Length")
    length = parse_int_header(length_text, "Content-Length")
    if length > available:
        raise ParseError("Content-Length beyond the body")
    return data[start : start + length] if length != available else data[start:]


def _validate(message: Request | Response, index: dict[str, list[Field]]) -> None:
    if isinstance(message, Request):
        for key in _REQUIRED_IN_REQUEST:
            if key not in index:
                raise ParseError(f"missing {canonical_name(key)}")
        cseq = message.cseq
        if cseq.method != message.method:
            raise ParseError("CSeq method does not match")
        message.max_forwards  # noqa: B018  (non-numeric Max-Forwards is a 400)
    else:
        for key in _REQUIRED_IN_RESPONSE:
            if key not in index:
                raise ParseError(f"missing {canonical_name(key)}")
        message.cseq  # noqa: B018


def find_message_end(buffer: bytes | bytearray, start: int = 0) -> int | None:
    """Where the message starting at ``start`` of a stream ends, or None if not all here.

    Content-Length frames the body (RFC 3261 §18.3); a stream message without
    it is taken to have no body.
    """
    end = buffer.find(b"\r\n\r\n", start)
    if end < 0:
        return None
    head = bytes(buffer[start:end]).lower()
    length = 0
    for marker in (b"\ncontent-length", b"\nl"):
        at = head.find(marker)
        while at >= 0:
            rest = head[at + len(marker) :].lstrip(b" \t")
            if rest.startswith(b":"):
                value = rest[1:].split(b"\r\n", 1)[0].strip()
                if not value.isdigit():
                    raise ParseError("bad Content-Length")
                length = int(value)
                break
            at = head.find(marker, at + 1)
        else:
            continue
        break
    stop = end + 4 + length
    return stop if stop <= len(buffer) else None


_REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 493: "Undecipherable", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status) or _REASONS.get(status // 100 * 100, "Unknown")
