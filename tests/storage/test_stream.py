"""Database.stream: a query's rows in batches from a server-side cursor, on both
backends; stopping early leaves the database usable."""

from __future__ import annotations

from contextlib import aclosing

from sipline.storage import Database


async def test_rows_come_in_batches_and_an_early_stop_frees_the_cursor(migrated: Database) -> None:
    await migrated.executemany(
        "INSERT INTO error_queue (source, reason, payload, created_at) VALUES (?, ?, ?, ?)",
        [("test", f"reason {i}", "{}", float(i)) for i in range(25)],
    )
    sql = "SELECT reason FROM error_queue WHERE source = ? ORDER BY id"
    batches = [batch async for batch in migrated.stream(sql, ("test",), batch=10)]
    assert [len(b) for b in batches] == [10, 10, 5]
    assert batches[2][-1] == ("reason 24",)
    for _ in range(12):  # more early stops than the pool has connections
        async with aclosing(migrated.stream(sql, ("test",), batch=10)) as rows:
            async for batch in rows:
                assert len(batch) == 10
                break
    assert await migrated.fetchone("SELECT COUNT(*) FROM error_queue") == (25,)
