"""The admin key: what signs and checks the tokens of admin actions.

From ``admin.secret`` when set, else from the node's secret
(``sipline.secret``: ``auth.secret``, which every node of a cluster shares,
else the key file of the box's data directory, which the first node to start
there writes and the operator commands read: on one box, whoever may read
the data directory administers the nodes, as with the SQLite database beside
it). An admin endpoint off loopback needs one of the secrets (``Settings``
refuses the configuration otherwise).
"""

from __future__ import annotations

from typing import Any

from sipline.cluster.token import derive_key
from sipline.secret import node_secret


def admin_key(settings: Any, *, create: bool = False) -> bytes | None:
    """The key, or None when there is none yet (no secret, no key file, ``create`` False)."""
    secret = settings.admin.secret or node_secret(settings, create=create)
    return derive_key(secret) if secret else None
