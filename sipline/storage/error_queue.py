"""``error_queue`` (003_acr.sql): what a node could not store or apply, with the
reason and the row as JSON, for an operator to fix and replay. Every writer of
it goes through ``queue_error``."""

from __future__ import annotations

import time

from sipline.storage.database import Queries


async def queue_error(db: Queries, source: str, reason: str, payload: str) -> None:
    """One row; ``source`` says what it was meant for (the cdrs table, a config change)."""
    await db.execute(
        "INSERT INTO error_queue (source, reason, payload, created_at) VALUES (?, ?, ?, ?)",
        (source, reason, payload, time.time()),
    )
