"""SIP requests and responses: parsing from bytes, typed access, serialising.

``parse_message`` does the least work that validation needs (one decode, one
split, one pass over the header lines, one scan for control characters);
typed values (Via, From, Contact ...) are parsed the first time they are read
and cached until the header changes. Lines nobody changed are kept as they
came, so they go back out byte for byte.

Hot-path code here and in ``headers`` is written for CPython's costs (few
calls, few objects per header line); ``bench/micro`` measures it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .auth import Credentials
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

# One header line: (key, name as written, value, original line or None once changed).
# A tuple of strings: the cyclic GC stops tracking it after its first collection,
# so the headers of messages that transactions keep for 32 s cost no scanning.
Field = tuple[str, str, str, str | None]


class Headers:
    """Header fields in order, with case-insensitive and compact-form lookup.

    Each line is a ``Field`` (changing a line replaces it); ``_index`` maps a key to the first line with
    that key, and ``_multi`` a key with more than one line to all of them, in
    order (most headers have one line, and this keeps parsing cheap).
    """

    __slots__ = ("_fields", "_index", "_multi", "_parsed")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._fields: list[Field] = []
        self._index: dict[str, Field] = {}
        self._multi: dict[str, list[Field]] = {}
        self._parsed: dict[str, Any] = {}
        for name, value in items or ():
            self.add(name, value)

    # -- reading -----------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first line of a header (not split on commas)."""
        f = self._index.get(_KEYS_AS_WRITTEN.get(name) or header_key(name))
        return default if f is None else f[2]

    def get_all(self, name: str) -> list[str]:
        """Every line's value of a header, in order (values not split on commas)."""
        return [f[2] for f in self._all(_KEYS_AS_WRITTEN.get(name) or header_key(name))]

    def values(self, name: str) -> list[str]:
        """Every value of a list header (Via, Route, Contact ...) across its lines."""
        key = _KEYS_AS_WRITTEN.get(name) or header_key(name)
        if key not in self._multi:
            f = self._index.get(key)
            if f is None:
                return []
            value = f[2]
            return split_values(value) if "," in value else [value]
        values: list[str] = []
        for f in self._all(key):
            value = f[2]
            if "," in value:
                values.extend(split_values(value))
            else:
                values.append(value)
        return values

    def __contains__(self, name: str) -> bool:
        # The names we know (every spelling) looked up without a call: a hot path.
        return (_KEYS_AS_WRITTEN.get(name) or header_key(name)) in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """(name as written, value) of every line, in order."""
        for f in self._fields:
            yield f[1], f[2]

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        mine = [(f[0], f[2]) for f in self._fields]
        return mine == [(f[0], f[2]) for f in other._fields]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({[(f[1], f[2]) for f in self._fields]!r})"

    def parsed(self, key: str, parse: Callable[[Headers, str], T]) -> T:
        """A typed view of header ``key``, parsed once and cached until it changes."""
        value = self._parsed.get(key, _MISSING)
        if value is _MISSING:
            value = self._parsed[key] = parse(self, key)
        return value  # type: ignore[no-any-return]  # the cache holds what ``parse`` made

    def _all(self, key: str) -> list[Field]:
        found = self._multi.get(key)
        if found is not None:
            return found
        f = self._index.get(key)
        return [] if f is None else [f]

    # -- changing ----------------------------------------------------------
    # Every change goes through these, so typed views are dropped (and parsed
    # again when read) and lines that were not touched go out as they came.
    def set(self, name: str, value: str) -> None:
        """Give a header exactly one value, in the place of its first line."""
        key = header_key(name)
        first = self._index.get(key)
        if first is None:
            self.add(name, value)
            return
        self._changed(key)
        new = (key, first[1], value.strip(), None)
        if self._multi.pop(key, None) is not None:
            fields = self._fields
            self._fields = [new if f is first else f for f in fields if f[0] != key or f is first]
        else:
            fields = self._fields
            fields[fields.index(first)] = new  # the only line with its key
        self._index[key] = new

    def add(self, name: str, value: str) -> None:
        """Append a header line at the end."""
        key = header_key(name)
        f = (key, canonical_name(key) if name == key else name, value.strip(), None)
        self._fields.append(f)
        self._index_more(key, f)
        if self._parsed:
            self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        """Insert a value above every existing one (a proxy's Via or Record-Route).

        With no such header yet it goes first among all headers, which keeps
        Via at the top where RFC 3261 §7.3.1 recommends it."""
        key = header_key(name)
        f = (key, canonical_name(key) if name == key else name, value.strip(), None)
        first = self._index.get(key)
        self._changed(key)
        if first is None:
            self._fields.insert(0, f)
        else:
            self._fields.insert(self._position(first), f)
            found = self._multi.get(key)
            if found is None:
                self._multi[key] = [f, first]
            else:
                found.insert(0, f)
        self._index[key] = f

    def remove(self, name: str) -> None:
        """Remove every line of a header."""
        key = header_key(name)
        if self._index.pop(key, None) is None:
            return
        self._changed(key)
        self._multi.pop(key, None)
        self._fields = [f for f in self._fields if f[0] != key]

    def replace_first_value(self, name: str, value: str) -> None:
        """Put ``value`` in place of the first value of a list header, in its line."""
        key = header_key(name)
        first = self._index.get(key)
        if first is None:
            self.prepend(name, value)
            return
        self._changed(key)
        if "," in first[2]:
            rest = split_values(first[2])[1:]
            if rest:
                value = ", ".join([value, *rest])
        self._replace(first, (key, first[1], value, None))

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first value of a list header (the top Via or Route).

        The rest of that line's values stay in its place; the line goes when
        it had only the one."""
        key = header_key(name)
        first = self._index.get(key)
        if first is None:
            return None
        self._changed(key)
        value = first[2]
        if "," in value:
            values = split_values(value)
            if len(values) > 1:
                self._replace(first, (key, first[1], ", ".join(values[1:]), None))
                return values[0]
        del self._fields[self._position(first)]
        found = self._multi.get(key)
        if found is None:
            del self._index[key]
        else:
            del found[0]
            self._index[key] = found[0]
            if len(found) == 1:
                del self._multi[key]
        return value

    def copy(self) -> Headers:
        """An independent copy (typed views are not copied: they parse again)."""
        headers = Headers()
        headers._fields = list(self._fields)  # lines are immutable: shared
        headers._index = dict(self._index)
        headers._multi = {key: list(found) for key, found in self._multi.items()}
        return headers

    def _index_more(self, key: str, f: Field) -> None:
        first = self._index.setdefault(key, f)
        if first is not f:
            found = self._multi.get(key)
            if found is None:
                self._multi[key] = [first, f]
            else:
                found.append(f)

    def _changed(self, key: str) -> None:
        parsed = self._parsed
        if parsed:
            parsed.pop(key, None)
            if key == "via" or key == "route":
                parsed.pop(key + "#top", None)

    def _replace(self, old: Field, new: Field) -> None:
        """Put line ``new`` in the place of ``old`` (same key), wherever it is listed."""
        key = old[0]
        found = self._multi.get(key)
        if found is None:
            fields = self._fields
            fields[fields.index(old)] = new  # the only line with its key
            self._index[key] = new
            return
        self._fields[self._position(old)] = new
        if self._index.get(key) is old:
            self._index[key] = new
        if found is not None:
            for i, f in enumerate(found):
                if f is old:
                    found[i] = new
                    break

    def _position(self, target: Field) -> int:
        if target[0] not in self._multi:
            # The only line with its key, so the only one equal to it: found in C.
            return self._fields.index(target)
        for i, f in enumerate(self._fields):
            if f is target:
                return i
        raise LookupError(target[0])

    def _lines(self) -> list[str]:
        return [f[3] or f"{f[1]}: {f[2]}" for f in self._fields]


# -- typed views ------------------------------------------------------------
def _vias(h: Headers, key: str) -> list[Via]:
    return [Via.parse(v) for v in h.values(key)]


def _top_route(h: Headers, key: str) -> NameAddr | None:
    found = h._index.get("route")
    if found is None:
        return None
    value = found[2]
    return NameAddr.parse(value if "," not in value else split_values(value)[0])


def _credentials(h: Headers, key: str) -> list[Credentials]:
    return [Credentials.from_header(value) for value in h.get_all(key)]


def _name_addrs(h: Headers, key: str) -> list[NameAddr]:
    found = h._index.get(key)
    if found is None:
        return []
    parse_list = NameAddr.parse_list
    lines = h._multi.get(key)
    if lines is None:
        return parse_list(found[2])
    out: list[NameAddr] = []
    for f in lines:
        out.extend(parse_list(f[2]))
    return out


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
    # The hot ones check the cache inline: a property call is all they cost
    # once parsed.
    @property
    def vias(self) -> list[Via]:
        return self.headers.parsed("via", _vias)

    def set_top_via(self, via: Via) -> None:
        """Write a changed top Via back (received/rport stamping), keeping it parsed."""
        headers = self.headers
        headers.replace_first_value("via", str(via))
        headers._parsed["via#top"] = via

    @property
    def via(self) -> Via:
        """The top Via (parsed alone: most messages never need the others)."""
        parsed = self.headers._parsed
        via = parsed.get("via#top")
        if via is None:
            found = self.headers._index.get("via")
            if found is None:
                raise ParseError("missing Via")
            value = found[2]
            via = Via.parse(value if "," not in value else split_values(value)[0])
            parsed["via#top"] = via
        return via

    @property
    def from_(self) -> NameAddr:
        parsed = self.headers._parsed
        value = parsed.get("from")
        if value is None:
            found = self.headers._index.get("from")
            if found is None:
                raise ParseError("missing From")
            value = parsed["from"] = NameAddr.parse(found[2])
        return value

    @property
    def to(self) -> NameAddr:
        parsed = self.headers._parsed
        value = parsed.get("to")
        if value is None:
            found = self.headers._index.get("to")
            if found is None:
                raise ParseError("missing To")
            value = parsed["to"] = NameAddr.parse(found[2])
        return value

    @property
    def call_id(self) -> str:
        found = self.headers._index.get("call-id")
        if found is None:
            raise ParseError("missing Call-ID")
        return found[2]

    @property
    def cseq(self) -> CSeq:
        headers = self.headers
        value = headers._parsed.get("cseq")
        if value is None:
            value = headers._parsed["cseq"] = _cseq(headers, "cseq")
        return value

    @property
    def routes(self) -> list[NameAddr]:
        headers = self.headers
        value = headers._parsed.get("route")
        if value is None:
            value = headers._parsed["route"] = _name_addrs(headers, "route")
        return value

    @property
    def route(self) -> NameAddr | None:
        """The top Route (parsed alone: a proxy checks and pops only that one)."""
        return self.headers.parsed("route#top", _top_route)

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

    # Authentication (RFC 3261 §22): credentials parsed when first read, the
    # challenges kept as text.
    @property
    def authorization(self) -> Credentials | None:
        """The credentials of the first Authorization line, or None."""
        found = self.authorizations
        return found[0] if found else None

    @property
    def authorizations(self) -> list[Credentials]:
        """Every Authorization line's credentials (one per realm, §22.3)."""
        return self.headers.parsed("authorization", _credentials)

    @property
    def proxy_authorization(self) -> Credentials | None:
        """The credentials of the first Proxy-Authorization line, or None."""
        found = self.proxy_authorizations
        return found[0] if found else None

    @property
    def proxy_authorizations(self) -> list[Credentials]:
        return self.headers.parsed("proxy-authorization", _credentials)

    @property
    def www_authenticate(self) -> list[str]:
        """The WWW-Authenticate challenges as written, one per line."""
        return self.headers.get_all("www-authenticate")

    @property
    def proxy_authenticate(self) -> list[str]:
        return self.headers.get_all("proxy-authenticate")

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        self.body = body
        self.headers.set("Content-Length", str(len(body)))
        if content_type is not None:
            self.headers.set("Content-Type", content_type)

    def release(self) -> None:
        """Drop the typed views parsed so far; they are parsed again if read.

        What a lingering transaction keeps of its request (timers J, K, L, M,
        D: up to 32 s) is then the text of its lines: immutable strings and
        tuples, which the cyclic GC stops tracking, not a Via, NameAddr and
        dict per header for every collection to scan."""
        self.headers._parsed = {}

    @property
    def transaction_method(self) -> str:
        return self.cseq.method

    # Serialising -------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def serialise(self) -> bytes:
        """The message as bytes; Content-Length is set to the body's length
        (and added when missing: streams need it, RFC 3261 §20.14)."""
        headers = self.headers
        body = self.body
        length = headers._index.get("content-length")
        if length is None:
            headers.add("Content-Length", str(len(body)))
        elif length[2] != str(len(body)) or "content-length" in headers._multi:
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

    def release(self) -> None:
        super().release()
        self._uri = None

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
        old = self.headers
        for key in COPIED_TO_RESPONSE:  # the request's lines themselves: they are immutable
            for f in old._all(key):
                headers._fields.append(f)
                headers._index_more(key, f)
        if to_tag is not None and status > 100 and self.to.tag is None:
            headers.set("To", f"{self.headers.get('to')};tag={to_tag}")
        if status == 100 and "timestamp" in self.headers:
            headers.add("Timestamp", self.headers.get("timestamp") or "")
        headers.add("Content-Length", "0")
        return Response(status, reason if reason is not None else reason_phrase(status), headers)


# What a response copies from its request, in this order (RFC 3261 §8.2.6.2):
# also what every request and response must carry (§8.1.1, §20), and all of a
# request that did not parse that answering it takes (``salvage_request``).
COPIED_TO_RESPONSE = ("via", "from", "to", "call-id", "cseq")
_COPIED = frozenset(COPIED_TO_RESPONSE)


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
# What a message must carry is what a response copies (COPIED_TO_RESPONSE).
# Max-Forwards is not among them: a request without it is taken and a proxy
# adds one (RFC 3261 §16.6 step 3, RFC 4475 §3.4.1).
# Every byte a header section may hold besides CR LF: HTAB, printable ASCII and
# the octets of UTF-8 sequences (RFC 3261 §25.1). Deleting these leaves the CR
# LF pairs between lines and any control character, bare CR or bare LF.
_NOT_CONTROL = bytes(b for b in range(256) if b == 9 or 32 <= b != 127)
_CRLF = b"\r\n"


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one message from a datagram (or one framed stream message).

    ``stream=True`` is for a message a stream framer has cut (see
    ``find_message_end``). For a datagram, bytes past Content-Length are
    discarded (RFC 3261 §18.3) and a missing Content-Length means the rest
    of it; in both, a Content-Length beyond the data is an error.
    Raises ParseError with a reason fit for a 400 response.
    """
    if data[:1] == b"\r":  # RFC 3261 §7.5: ignore CRLFs before the start line
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if data.endswith(_CRLF):
            end = len(data) - 2  # no body and no blank line (tolerated on UDP)
        else:
            raise ParseError("no end of headers")
    raw = data[:end]
    try:
        head = raw.decode()
    except UnicodeDecodeError:
        raise ParseError("headers are not UTF-8") from None
    lines = head.split("\r\n")
    if raw.translate(None, _NOT_CONTROL) != _CRLF * (len(lines) - 1):
        _check_controls(lines)
    message = _start_line(lines[0])
    fields: list[Field] = []
    index: dict[str, Field] = {}
    multi: dict[str, list[Field]] = {}
    keys = _KEYS_AS_WRITTEN
    append = fields.append
    first_of = index.setdefault
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = keys.get(name)
        if key is None:
            if line[:1] in _LWS and fields:
                _continue_line(fields, index, multi, line)  # folding (RFC 3261 §7.3.1)
                continue
            if not colon:
                raise ParseError("header line without colon")
            name = name.rstrip(" \t")
            if not is_token(name):
                raise ParseError("bad header name")
            key = header_key(name)
        elif not colon:
            raise ParseError("header line without colon")
        f: Field = (key, name, value.strip(), line)
        append(f)
        first = first_of(key, f)
        if first is not f:
            found = multi.get(key)
            if found is None:
                multi[key] = [first, f]
            else:
                found.append(f)
    headers = Headers.__new__(Headers)
    headers._fields = fields
    headers._index = index
    headers._multi = multi
    parsed: dict[str, Any] = {}
    headers._parsed = parsed
    message.headers = headers

    # Body framing (RFC 3261 §18.3, §20.14).
    start = end + 4
    size = len(data)
    length_field = index.get("content-length")
    if length_field is None:
        message.body = data[start:]
    else:
        text = length_field[2]
        if not (text.isdigit() and text.isascii() and len(text) <= 10):
            raise ParseError("bad Content-Length")
        length = int(text)
        if "content-length" in multi:
            for f in multi["content-length"]:
                if parse_int_header(f[2], "Content-Length") != length:
                    raise ParseError("conflicting Content-Length")
        if length > size - start:
            if start > size and length == 0:
                start = size
            else:
                raise ParseError("Content-Length beyond the body")
        message.body = data[start : start + length]

    # What RFC 3261 §8.1.1 requires of every request, and §8.2.6.2 / §20 of responses.
    if type(message) is Request:
        if "via" not in index or "from" not in index or "to" not in index:
            _missing(index)
        try:
            text = index["cseq"][2]
            call_id = index["call-id"][2]
        except KeyError:
            _missing(index)
            raise  # not reached: _missing raises
        number, _, method = text.partition(" ")
        if method == message.method and number.isdigit() and number.isascii() and len(number) < 10:
            parsed["cseq"] = cseq = _new_object(CSeq)
            cseq.number = int(number)
            cseq.method = method
        else:
            parsed["cseq"] = cseq = CSeq.parse(text)
            if cseq.method != message.method:
                raise ParseError("CSeq method does not match")
        max_forwards_field = index.get("max-forwards")
        if max_forwards_field is None:
            parsed["max-forwards"] = None
        else:
            max_forwards = max_forwards_field[2]
            if max_forwards.isdigit() and max_forwards.isascii() and len(max_forwards) < 10:
                parsed["max-forwards"] = int(max_forwards)
            else:
                parsed["max-forwards"] = parse_int_header(max_forwards, "Max-Forwards")
    else:
        if not index.keys() >= _COPIED:
            _missing(index)
        parsed["cseq"] = CSeq.parse(index["cseq"][2])
        call_id = index["call-id"][2]
    if not call_id or " " in call_id or "\t" in call_id:
        raise ParseError("bad Call-ID")
    return message


_LWS = (" ", "\t")
_new_object = object.__new__
_LWS_CHARS = " \t"


def _check_controls(lines: list[str]) -> None:
    """A control character is legal only as a quoted-pair in a quoted string
    (RFC 3261 §25.1, RFC 4475 §3.1.1.2), and CR or LF never are."""
    for line in lines:
        if line.isprintable():
            continue
        quoted = escaped = False
        for char in line:
            if escaped:
                if char in "\r\n":
                    break
                escaped = False
            elif char < " " and char != "\t" or char == "\x7f":
                break
            elif quoted and char == "\\":
                escaped = True
            elif char == '"':
                quoted = not quoted
        else:
            continue
        raise ParseError("control character in headers")


def _missing(index: dict[str, Field]) -> None:
    # Of several missing, To, From and CSeq are named first (as RFC 4475 §3.3.1 expects).
    for key in ("to", "from", "cseq", *COPIED_TO_RESPONSE):
        if key not in index:
            raise ParseError(f"missing {canonical_name(key)}")


def _continue_line(
    fields: list[Field], index: dict[str, Field], multi: dict[str, list[Field]], line: str
) -> None:
    """Join a continuation line to the last line's value with one space; such
    lines go out unfolded."""
    last = fields[-1]
    key, piece = last[0], line.strip()
    value = (f"{last[2]} {piece}" if last[2] else piece) if piece else last[2]
    fields[-1] = new = (key, last[1], value, None)
    if index[key] is last:
        index[key] = new
    found = multi.get(key)
    if found is not None:
        found[-1] = new


def _start_line(line: str) -> Request | Response:
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[2] == "SIP/2.0":  # the usual request line
        method, uri, version = parts
    elif parts[0] == "SIP/2.0" or parts[0][:4].upper() == "SIP/":
        return _status_line(parts)
    else:
        if len(parts) != 3 or " " in parts[2] or not parts[1]:
            raise ParseError("bad request line")
        method, uri, version = parts
        if version.upper() != "SIP/2.0":
            if version[:4].upper() == "SIP/":
                raise ParseError("Version Not Supported", 505)  # RFC 4475 §3.1.2.16
            raise ParseError("bad request line")
    if not (method.isalpha() and method.isascii() or is_token(method)):
        raise ParseError("bad method")
    if not uri.startswith("sip:"):
        colon = uri.find(":")
        if colon <= 0 or not _SCHEME(uri, 0, colon):
            raise ParseError("bad Request-URI")  # "<sip:...>" among others (RFC 4475 §3.1.2.7)
    request = _new_object(Request)
    request.method = method
    request._uri_text = uri
    request._uri = None
    request.version = version
    return request


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*").fullmatch


def _status_line(parts: list[str]) -> Response:
    version = parts[0]
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        raise ParseError("unsupported SIP version")
    if len(parts) < 2:
        raise ParseError("bad status line")
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not "1" <= code[0] <= "6":
        raise ParseError("bad status code")
    response = _new_object(Response)
    response.status = int(code)
    response.reason = parts[2] if len(parts) == 3 else ""
    response.version = version
    return response


def find_message_end(buffer: bytes | bytearray, start: int = 0) -> int | None:
    """Where the message starting at ``start`` of a stream ends, or None if not all here.

    Content-Length (or its compact form ``l``) frames the body (RFC 3261
    §18.3); a stream message without it is taken to have no body. CRLFs
    before the start line (keepalives, RFC 3261 §7.5 and RFC 5626 §3.5.1)
    belong to the frame of the message after them, which ``parse_message``
    skips; a buffer holding only CRLFs has no message yet. Raises
    ParseError for a Content-Length that is not a number.
    """
    size = len(buffer)
    while start < size and buffer[start] in _CR_OR_LF:
        start += 1
    end = buffer.find(b"\r\n\r\n", start)
    if end < 0:
        return None
    stop = end + 4 + content_length(buffer, start, end)
    return stop if stop <= size else None


def content_length(buffer: bytes | bytearray, start: int, end: int) -> int:
    """The Content-Length of the head ``buffer[start:end]`` (no CRLFCRLF), 0 if absent.

    Stream framing (RFC 3261 §18.3); raises ParseError for a value that is not a number."""
    head = bytes(buffer[start:end]).lower()
    for marker in (b"\ncontent-length", b"\nl"):
        at = head.find(marker)
        while at >= 0:
            eol = head.find(b"\r", at + 1)
            rest = head[at + len(marker) : eol if eol >= 0 else len(head)].lstrip(b" \t")
            if rest.startswith(b":"):
                value = rest[1:].strip(b" \t")
                if not value.isdigit() or len(value) > 10:
                    raise ParseError("bad Content-Length")
                return int(value)
            at = head.find(marker, at + 1)
    return 0


_CR_OR_LF = b"\r\n"


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


# -- requests that did not parse ------------------------------------------------------

def salvage_request(data: bytes) -> Request | None:
    """Of a request parse_message refused, what answering it takes; None if not a request.

    Only the request line and the headers a response copies are kept; whether
    they are good enough shows when the response is built (ParseError if not).
    """
    head = data.lstrip(b"\r\n").split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    lines = head.split("\r\n")
    parts = lines[0].split()  # extra or misplaced SP is why some failed (RFC 4475 §3.1.2.8-10)
    if len(parts) < 3 or not parts[-1].upper().startswith("SIP/") or ":" not in parts[1]:
        return None
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = header_key(name)
        if colon and key in _COPIED and (key == "via" or key not in headers):
            headers.add(name.strip(), value.strip())
    return Request(parts[0], parts[1], headers)
