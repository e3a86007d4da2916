"""How long a binding stored through one proxy takes to be held by another.

``python -m bench.location_feed [--phones 5000] [--rate 1000]`` starts a private
MariaDB and a private Redis, a real ``sipline proxy`` (127.0.0.1) and, in this
process, what every other proxy runs to share the location: a ``LocationFeed``
on the same database and Redis (proxy/feed.py) whose ``Location`` notes when each
binding arrives. sipp registers ``--phones`` phones through the proxy at
``--rate`` REGISTER a second (digest included). A binding's delay is its arrival
here less its ``updated_at`` (the registrar's clock when it decided, before the
group commit's linger and the commit itself). Prints p50, p99 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from bench.clusterstack import start, stop
from bench.proxystack import numbered_phones, provision, users_csv
from proxy.feed import LocationFeed
from proxy.location import Binding, Location
from proxy.location_store import LocationStore
from sipline.net.ports import free_port
from sipline.storage import open_database
from sipline.storage.live import open_redis
from sipline.storage.testing import PrivateMariaDB

SCENARIO = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "scenarios" / "register.xml"


class Watched(Location):
    """A Location that notes how late each binding came (now - updated_at)."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: dict[str, float] = {}

    def take(self, rows: Iterable[Binding]) -> None:
        rows = list(rows)
        now = time.time()
        for row in rows:
            if row.expires_at > 0 and row.aor not in self.delays:
                self.delays[row.aor] = now - row.updated_at
        super().take(rows)


class TimedStore(LocationStore):
    """Notes how long each catch-up read takes (the feed's own share of the delay)."""

    reads: list[float]

    async def changes(self, since: int) -> list[Binding]:
        started = time.perf_counter()
        rows = await super().changes(since)
        self.reads.append(time.perf_counter() - started)
        return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def watch(
    url: str, redis_url: str, phones: int, command: list[str], workdir: Path
) -> tuple[Watched, subprocess.Popen[bytes]]:
    """Watch the location from before sipp starts until every phone arrived."""
    db = await open_database(url)
    location = Watched()
    store = TimedStore(db, "watcher")
    store.reads = location.reads = []  # type: ignore[attr-defined]
    feed = LocationFeed(store, location, open_redis(redis_url))
    await feed.load()
    feed.start()
    while feed.syncing:
        await asyncio.sleep(0.01)
    run = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + phones / 100 + 60
    while len(location.delays) < phones and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await feed.close()
    await db.close()
    return location, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phones", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=1000)
    args = parser.parse_args()
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    workdir = Path(tempfile.mkdtemp(prefix="sipline-feed-bench-"))
    database = PrivateMariaDB(mariadbd)
    redis_port = free_port()
    redis = subprocess.Popen([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)  # fmt: skip
    proxies = []
    try:
        url = database.start().fresh_database()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        phones = numbered_phones(args.phones)
        asyncio.run(provision(url, phones))
        port = free_port()
        proxies.append(start("proxy-1", "127.0.0.1", port, url, redis_url, [f"127.0.0.1:{port}"],
                             workdir, SIPLINE_LIMITS__FLOOD_DENSITY="0"))  # fmt: skip
        csv = workdir / "users.csv"
        csv.write_text(users_csv(phones))
        command = [
            "sipp", f"127.0.0.1:{port}", "-sf", str(SCENARIO), "-inf", str(csv),
            "-au", "[field0]", "-ap", "[field2]", "-auth_uri", "example.com",
            "-key", "expires", "3600", "-t", "u1", "-i", "127.0.0.1", "-p", str(free_port()),
            "-m", str(args.phones), "-r", str(args.rate), "-l", "2000", "-timeout", "120s",
            "-nostdin",
        ]  # fmt: skip
        location, run = asyncio.run(watch(url, redis_url, args.phones, command, workdir))
        run.wait(120)
        delays = [d * 1000 for d in location.delays.values()]
        reads = [d * 1000 for d in location.reads]  # type: ignore[attr-defined]
        print(f"location feed: {len(delays)} of {args.phones} bindings at {args.rate} REGISTER/s:"
              f" p50 {percentile(delays, 0.5):.1f} ms, p99 {percentile(delays, 0.99):.1f} ms,"
              f" max {max(delays):.1f} ms (sipp exit {run.returncode}); {len(reads)} catch-up"
              f" reads, p50 {percentile(reads, 0.5):.1f} ms, p99 {percentile(reads, 0.99):.1f} ms")  # fmt: skip
    finally:
        stop(proxies)
        redis.terminate()
        redis.wait(5)
        database.remove()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
