"""SDP session descriptions (RFC 4566, RFC 8866): parse and serialise.

Built for media anchoring: the B2BUA and the RTP relay read and rewrite
connection addresses, media ports and ``a=rtcp`` (RFC 3605). Lines the core
does not interpret are kept verbatim and in order, so a well-formed body
round-trips byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from string import ascii_letters

from sipline.sip.errors import ParseError

__all__ = ["Connection", "Media", "Origin", "SessionDescription"]

_LINE_TYPES = frozenset(ascii_letters)
_DIRECTIONS = frozenset(("sendrecv", "sendonly", "recvonly", "inactive"))
# RFC 4566 §5 / RFC 8866 §5 line order: c= follows these types in its section.
_BEFORE_SESSION_C = frozenset("iuep")
_BEFORE_MEDIA_C = frozenset("i")


@dataclass(slots=True)
class Connection:
    """``c=<nettype> <addrtype> <address>``; address may carry /ttl/count."""

    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = ""

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>``."""

    username: str
    sess_id: str
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version}"
            f" {self.nettype} {self.addrtype} {self.address}"
        )


class _Attributes:
    """``a=`` helpers over a section's ``lines``."""

    __slots__ = ()
    lines: list[tuple[str, str]]

    def attributes(self, name: str) -> list[str]:
        """Values of every ``a=name:value`` ("" for a flag ``a=name``)."""
        found = []
        for kind, value in self.lines:
            if kind == "a":
                attr, _, rest = value.partition(":")
                if attr == name:
                    found.append(rest)
        return found

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name:value`` ("" for a flag), or None."""
        for kind, value in self.lines:
            if kind == "a":
                attr, _, rest = value.partition(":")
                if attr == name:
                    return rest
        return None

    def set_attribute(self, name: str, value: str | None) -> None:
        """Replace the first ``a=name`` or append one; "" sets a flag; None removes all."""
        lines = self.lines
        if value is None:
            lines[:] = [line for line in lines if not _is_attribute(line, name)]
            return
        line = ("a", f"{name}:{value}" if value else name)
        for i, old in enumerate(lines):
            if _is_attribute(old, name):
                lines[i] = line
                return
        lines.append(line)

    @property
    def direction(self) -> str:
        """sendrecv/sendonly/recvonly/inactive of this section (RFC 4566 §6)."""
        return _direction(self.lines) or "sendrecv"

    def set_direction(self, direction: str) -> None:
        """Put ``a=<direction>`` where the old one was (or at the end), dropping others."""
        if direction not in _DIRECTIONS:
            raise ValueError(f"not an SDP direction: {direction!r}")
        lines = self.lines
        at = next((i for i, (k, v) in enumerate(lines) if k == "a" and v in _DIRECTIONS), None)
        lines[:] = [(k, v) for k, v in lines if not (k == "a" and v in _DIRECTIONS)]
        lines.insert(len(lines) if at is None else at, ("a", direction))


@dataclass(slots=True)
class Media(_Attributes):
    """A media section: ``m=<media> <port>[/<count>] <proto> <fmt> ...`` and its lines."""

    kind: str
    port: int
    port_count: int | None
    proto: str
    formats: list[str] = field(default_factory=list)
    connection: Connection | None = None
    """The first media-level ``c=``; any further ones stay in ``lines``."""
    lines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rtcp(self) -> tuple[int, Connection | None] | None:
        """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 §2.1).

        Raises ParseError if the attribute is present but malformed.
        """
        value = self.attribute("rtcp")
        if value is None:
            return None
        fields = value.split()
        if len(fields) not in (1, 4):
            raise ParseError("bad a=rtcp attribute")
        port = _port(fields[0], "bad a=rtcp attribute")
        if len(fields) == 1:
            return port, None
        return port, Connection(fields[1], fields[2], fields[3])

    def set_rtcp(self, port: int, connection: Connection | None = None) -> None:
        value = str(port) if connection is None else f"{port} {connection}"
        self.set_attribute("rtcp", value)


@dataclass(slots=True)
class SessionDescription(_Attributes):
    version: int
    origin: Origin
    session_name: str
    connection: Connection | None = None
    """The session-level ``c=``."""
    lines: list[tuple[str, str]] = field(default_factory=list)
    """Session-level lines other than v=, o=, s= and the first c=, in order."""
    media: list[Media] = field(default_factory=list)

    @classmethod
    def parse(cls, body: bytes) -> SessionDescription:
        lines = _split_lines(body)
        if not lines or lines[0][0] != "v":
            raise ParseError("missing v= line")
        if lines[0][1] != "0":
            raise ParseError("bad SDP version")
        origin: Origin | None = None
        name: str | None = None
        connection: Connection | None = None
        session_lines: list[tuple[str, str]] = []
        media: list[Media] = []
        section: Media | None = None
        for kind, value in lines[1:]:
            if kind == "m":
                section = _parse_media(value)
                media.append(section)
            elif kind == "v":
                raise ParseError("duplicate v= line")
            elif section is not None:
                if kind == "c" and section.connection is None:
                    section.connection = _parse_connection(value)
                elif kind in ("o", "s"):
                    raise ParseError(f"{kind}= line in media section")
                else:
                    section.lines.append((kind, value))
            elif kind == "o":
                if origin is not None:
                    raise ParseError("duplicate o= line")
                origin = _parse_origin(value)
            elif kind == "s":
                if name is not None:
                    raise ParseError("duplicate s= line")
                name = value
            elif kind == "c" and connection is None:
                connection = _parse_connection(value)
            else:
                session_lines.append((kind, value))
        if origin is None:
            raise ParseError("missing o= line")
        if name is None:
            raise ParseError("missing s= line")
        return cls(0, origin, name, connection, session_lines, media)

    def serialise(self) -> bytes:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        _emit_section(out, self.connection, self.lines, _BEFORE_SESSION_C)
        for m in self.media:
            port = m.port if m.port_count is None else f"{m.port}/{m.port_count}"
            out.append(" ".join((f"m={m.kind}", str(port), m.proto, *m.formats)))
            _emit_section(out, m.connection, m.lines, _BEFORE_MEDIA_C)
        out.append("")
        return "\r\n".join(out).encode()

    def media_address(self, media: Media) -> str | None:
        """Where ``media`` goes: media-level c= if present, else session-level (RFC 4566 §5.7)."""
        connection = media.connection or self.connection
        return None if connection is None else connection.address

    def media_direction(self, media: Media) -> str:
        """Media-level direction, else session-level, else sendrecv (RFC 3264 §5.1)."""
        return _direction(media.lines) or self.direction

    def rewrite_connection(self, address: str, addrtype: str = "IP4") -> None:
        """Anchor media at ``address``: set the session c= and every media's first c=.

        Further media-level c= lines (layered multicast) are left as they are.
        """
        self.connection = Connection("IN", addrtype, address)
        for m in self.media:
            if m.connection is not None:
                m.connection = Connection(m.connection.nettype, addrtype, address)

    def bump_version(self) -> None:
        """A changed offer or answer must carry a higher sess-version (RFC 3264 §8)."""
        self.origin.sess_version += 1


def _split_lines(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("SDP not UTF-8") from None
    raw = text.split("\n")
    while raw and raw[-1] in ("", "\r"):
        raw.pop()
    lines = []
    for line in raw:
        if line.endswith("\r"):  # CRLF per RFC 4566 §5; bare LF tolerated
            line = line[:-1]
        if (
            len(line) < 2
            or line[1] != "="
            or line[0] not in _LINE_TYPES
            or "\r" in line
            or "\0" in line
        ):
            raise ParseError("bad SDP line")
        lines.append((line[0], line[2:]))
    return lines


def _emit_section(
    out: list[str],
    connection: Connection | None,
    lines: list[tuple[str, str]],
    before_c: frozenset[str],
) -> None:
    at = 0
    if connection is not None:
        while at < len(lines) and lines[at][0] in before_c:
            at += 1
        out.extend(f"{kind}={value}" for kind, value in lines[:at])
        out.append(f"c={connection}")
    out.extend(f"{kind}={value}" for kind, value in lines[at:])


def _parse_origin(value: str) -> Origin:
    fields = value.split()
    if len(fields) != 6:
        raise ParseError("bad o= line")
    username, sess_id, version, nettype, addrtype, address = fields
    return Origin(
        username, sess_id, _digits(version, 64, "bad o= line"), nettype, addrtype, address
    )


def _parse_connection(value: str) -> Connection:
    fields = value.split()
    if len(fields) != 3:
        raise ParseError("bad c= line")
    return Connection(fields[0], fields[1], fields[2])


def _parse_media(value: str) -> Media:
    fields = value.split()
    if len(fields) < 3:
        raise ParseError("bad m= line")
    port, slash, count = fields[1].partition("/")
    port_count = None
    if slash:
        port_count = _port(count, "bad m= port")
        if port_count == 0:
            raise ParseError("bad m= port")
    return Media(fields[0], _port(port, "bad m= port"), port_count, fields[2], fields[3:])


def _port(text: str, reason: str) -> int:
    port = _digits(text, 5, reason)
    if port > 65535:
        raise ParseError(reason)
    return port


def _digits(text: str, max_len: int, reason: str) -> int:
    # isascii() keeps out Unicode digits such as "²" that isdigit() accepts.
    if not (0 < len(text) <= max_len and text.isascii() and text.isdigit()):
        raise ParseError(reason)
    return int(text)


def _is_attribute(line: tuple[str, str], name: str) -> bool:
    return line[0] == "a" and line[1].partition(":")[0] == name


def _direction(lines: list[tuple[str, str]]) -> str | None:
    for kind, value in lines:
        if kind == "a" and value in _DIRECTIONS:
            return value
    return None
