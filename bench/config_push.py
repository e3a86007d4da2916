"""How long a configuration change takes to reach every node of a running stack.

    python -m bench.config_push [--changes 20] [--config configs/single.toml]

Against the nodes of the configured database (start them first: `make run`, or
`sipline stack` with the same environment). Each change adds a subscriber and
announces it as `sipline subscriber add` does (sipline.cluster.changes); the
time runs from the announcement until every running node's /status reports
that version applied (asked every 5 ms). Without Redis the announcement itself
waits for each node to apply it; with Redis it is a PUBLISH and the nodes are
watched. Prints each change's time, then p50 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import statistics
import sys
import time

from sipline.cli import _settings_for
from sipline.cluster import client, registry
from sipline.cluster.changes import announce
from sipline.storage import Subscribers, open_database

POLL = 0.005


async def measure(settings, changes: int) -> list[float]:  # type: ignore[no-untyped-def]
    db = await open_database(settings.database.url)
    try:
        nodes = [e for e in await registry.entries(db) if not e.stopped]
        if not nodes:
            raise SystemExit("no node is running on this database")
        print(f"{len(nodes)} node(s): {', '.join(e.name for e in nodes)}", file=sys.stderr)
        subscribers = Subscribers(db)
        stamp = int(time.time())
        times = []
        for i in range(changes):
            aor = f"push{stamp}x{i}@example.com"
            await subscribers.add(aor, "push-bench-pw")
            started = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):
                line = await announce(settings, db, "subscribers", (aor,))
            version = int(line.split()[2])
            await _until_applied([e.admin for e in nodes], version)
            times.append(time.perf_counter() - started)
            print(f"change {i + 1}: version {version}, {times[-1] * 1000:.1f} ms ({line})")
            await subscribers.remove(aor)
        return times
    finally:
        await db.close()


async def _until_applied(admins: list[str], version: int, timeout: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout
    waiting = list(admins)
    while waiting:
        answers = await client.ask_all(waiting, "/status")
        waiting = [
            admin for admin, answer in zip(waiting, answers, strict=True)
            if answer is None or (answer.body.get("config_version") or 0) < version
        ]  # fmt: skip
        if waiting:
            if time.perf_counter() > deadline:
                raise SystemExit(f"version {version} not applied by {', '.join(waiting)}")
            await asyncio.sleep(POLL)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.config_push", description=__doc__)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    settings = _settings_for(argparse.Namespace(config=args.config))
    times = asyncio.run(measure(settings, args.changes))
    mode = "Redis pub/sub" if settings.redis.url else "admin endpoints (no Redis)"
    print(
        f"{len(times)} changes via {mode}: p50 {statistics.median(times) * 1000:.1f} ms,"
        f" max {max(times) * 1000:.1f} ms, min {min(times) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
