"""Structured logging: one line per event, ``key=value`` fields after the logger name.

    2026-11-21T21:50:00.123Z INFO sipline.node event=started transport=udp addr=127.0.0.1:5060

Use ``event(logger, "started", transport="udp", addr=...)``; it costs one method call
when the level is disabled, so it can sit on hot paths. A node process names
itself once (``set_node``): every line then ends with ``node=NAME``, so the
lines of many nodes gathered in one place still say whose they are.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class LineFormatter(logging.Formatter):
    """UTC timestamp, level, logger, message, the node's name; tracebacks folded
    into an ``exc=`` field."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        # Messages from other libraries may span lines; keep one line per event.
        message = record.getMessage().replace("\n", "\\n")
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname} {record.name} {message}"
        # At the end: filters that match a line's start (fail2ban's) keep working.
        if _node_field and _node_field not in message:
            line += _node_field
        if record.exc_info:
            line += " exc=" + quote(self.formatException(record.exc_info))
        elif record.exc_text:
            line += " exc=" + quote(record.exc_text)
        return line


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record, as logging.lastResort does."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_handler: logging.Handler | None = None
_node_field = ""  # " node=NAME" once a node process has named itself


def set_node(name: str) -> None:
    """End every line of this process with ``node=name`` ("" stops it)."""
    global _node_field
    _node_field = f" node={quote(name)}" if name else ""


def configure(level: str) -> None:
    """Send the root logger's records to stderr as single lines at ``level``; idempotent."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = StderrHandler()
    _handler.setFormatter(LineFormatter())
    root.addHandler(_handler)
    root.setLevel(LEVELS[level.lower()])


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event=name k=v ...`` at ``level``; nothing is formatted when it is disabled."""
    if not logger.isEnabledFor(level):
        return
    parts = [f"event={quote(name)}"]
    parts += [f"{key}={quote(value)}" for key, value in fields.items()]
    logger.log(level, "%s", " ".join(parts), stacklevel=2)


def quote(value: Any) -> str:
    """A field value as one token: quoted (with escapes) when it holds spaces, quotes or '='."""
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\r\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


class Throttle:
    """At most one log line per key every ``interval`` seconds, for events a
    stranger can repeat at will (a refusal, the same exception again and
    again): the first is written, the next ones are only counted, and the
    line written after the interval says how many were held back.

    ``admit(key)`` returns None to stay quiet, else that count. At most
    ``max_keys`` keys are remembered (a flood of distinct sources must not
    grow it without end): past that the memory is cleared.
    """

    __slots__ = ("interval", "max_keys", "_clock", "_keys")

    def __init__(
        self, interval: float = 60.0, max_keys: int = 1024, clock: Any = time.monotonic
    ) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._keys: dict[Any, list[float]] = {}  # key -> [quiet until, held back]

    def admit(self, key: Any) -> int | None:
        now = self._clock()
        entry = self._keys.get(key)
        if entry is None:
            if len(self._keys) >= self.max_keys:
                self._keys.clear()
            self._keys[key] = [now + self.interval, 0]
            return 0
        if now < entry[0]:
            entry[1] += 1
            return None
        held = int(entry[1])
        entry[0], entry[1] = now + self.interval, 0
        return held
