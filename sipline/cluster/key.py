"""The admin key: what signs and checks the tokens of admin actions.

From ``admin.secret`` when set, else from ``auth.secret`` (every node of a
cluster shares it), else from a key file ``node.data_dir/admin.key`` that the
first node to start on the box writes (mode 0600) and the operator commands
read: on one box, whoever may read the data directory administers the nodes,
as with the SQLite database beside it. An admin endpoint off loopback needs
one of the secrets (``Settings`` refuses the configuration otherwise).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from sipline.cluster.token import derive_key

KEY_FILE = "admin.key"


def admin_key(settings: Any, *, create: bool = False) -> bytes | None:
    """The key, or None when there is none yet (no secret, no key file, ``create`` False)."""
    secret = settings.admin.secret or settings.auth.secret
    if secret:
        return derive_key(secret)
    path = Path(settings.node.data_dir) / KEY_FILE
    text = _read(path)
    if text is None and create:
        _write_once(path, secrets.token_hex(32) + "\n")
        text = _read(path)
    return derive_key(text) if text else None


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
