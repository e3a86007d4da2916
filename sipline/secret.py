"""The node's secret: what keys digest nonces, route signatures and admin tokens.

``auth.secret`` when it is set: every node that shares phones, dialogs or
administration must share it (a cluster refuses to start without one).
Else a random key written once per data directory (``node.data_dir/node.key``,
mode 0600) by the first node to start there: every node of one box then
shares it, and a node restarted on the same data directory still accepts
the Record-Routes it signed and the nonces it issued before (an ACR that
takes its answered calls back from its journal must accept their BYEs).
Whoever may read the data directory may forge them, as they may change the
SQLite database beside it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

KEY_FILE = "node.key"


def node_secret(settings: Any, *, create: bool = True) -> str | None:
    """``auth.secret``, else the data directory's key (written first if ``create``);
    None when there is none and ``create`` is False."""
    if settings.auth.secret:
        return str(settings.auth.secret)
    path = Path(settings.node.data_dir) / KEY_FILE
    text = _read(path)
    if text is None and create:
        _write_once(path, secrets.token_hex(32) + "\n")
        text = _read(path)
    return text


def _write_once(path: Path, text: str) -> None:
    """Written whole under a name of its own, then linked into place: nodes starting
    together never read it half written, and the first link wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        try:
            os.link(draft, path)
        except FileExistsError:  # another node of the box was first: its key stands
            pass
    finally:
        draft.unlink(missing_ok=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
