"""The cluster end to end on this machine: three proxies (127.0.0.1, .2, .3) on a
MariaDB primary with a binlog replica, and Redis behind Sentinel (master,
replica, sentinel); 1000 sipp phones registered across the proxies; calls
between phones on different proxies; then a proxy SIGKILLed, the Redis master
SIGKILLed (Sentinel promotes the replica) and the MariaDB primary restarted, with
the counts asserted after each. Every process is the test's own. About 20 s."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.clusterstack import ClusterNode, start, stop
from bench.proxystack import Phone, free_port, numbered_phones, provision, users_csv
from sipline.storage import open_database
from sipline.storage.testing import MariaDB, PrivateMariaDB
from tests.cluster.handset import Handset, reached
from tests.cluster.sentinel import RedisSentinel

pytestmark = pytest.mark.e2e

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
PHONES = numbered_phones(1000)
HANDSETS = [Phone(f"h{n}", f"h{n}-Secret") for n in range(1, 7)]
SCENARIO = Path(__file__).resolve().parents[1] / "e2e" / "scenarios" / "register.xml"


@dataclass
class Cluster:
    proxies: list[ClusterNode]
    metrics: list[int]
    primary: PrivateMariaDB
    replica: MariaDB
    url: str
    redis: RedisSentinel

    def gauge(self, index: int, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics[index]}/metrics", timeout=2) as f:
            for line in f.read().decode().splitlines():
                if line.startswith(f"sipline_proxy_{name} "):
                    return float(line.split()[1])
        raise AssertionError(f"no sipline_proxy_{name} on proxy {index + 1}")

    def in_sync(self, proxies: tuple[int, ...], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while any(self.gauge(i, "location_syncing") for i in proxies):
            assert time.monotonic() < deadline, "a proxy is still syncing"
            time.sleep(0.1)

    def held_everywhere(self, aors: int, timeout: float = 5.0) -> None:
        live = [i for i, p in enumerate(self.proxies) if p.process.poll() is None]
        deadline = time.monotonic() + timeout
        while True:
            counts = [self.gauge(i, "location_aors") for i in live]
            if all(count == aors for count in counts):
                return
            assert time.monotonic() < deadline, f"bindings held per proxy {counts}, expected {aors}"
            time.sleep(0.1)


@pytest.fixture
def cluster(
    mariadbd_bin: str, redis_server_bin: str, tmp_path: Path
) -> Iterator[Cluster]:
    primary, replica = PrivateMariaDB(mariadbd_bin, 1), PrivateMariaDB(mariadbd_bin, 2)
    sentinel = RedisSentinel(redis_server_bin)
    proxies: list[ClusterNode] = []
    try:
        server = primary.start()
        replica_server = replica.start()
        replica.replicate(server)
        sentinel.start()
        url = server.fresh_database()
        asyncio.run(provision(url, [*PHONES, *HANDSETS]))
        port, metrics = free_port(), [free_port() for _ in HOSTS]
        peers = [f"{host}:{port}" for host in HOSTS]
        for n, host in enumerate(HOSTS):
            proxies.append(start(
                f"proxy-{n + 1}", host, port, url, sentinel.url, peers, tmp_path,
                SIPLINE_METRICS__PORT=str(metrics[n]),
                SIPLINE_SIP__MAX_TRANSACTIONS_PER_SOURCE="100000",
                SIPLINE_LIMITS__FLOOD_DENSITY="0",  # sipp plays 1000 phones from one address
            ))  # fmt: skip
        yield Cluster(proxies, metrics, primary, replica_server, url, sentinel)
    finally:
        stop(proxies)
        sentinel.stop()
        replica.remove()
        primary.remove()


def register_with_sipp(sipp: str, proxy: ClusterNode, phones: list[Phone], workdir: Path) -> int:
    """sipp registering ``phones`` through ``proxy`` (UDP, 100 a second)."""
    csv = workdir / f"users-{proxy.name}.csv"
    csv.write_text(users_csv(phones))
    command = [
        sipp, f"{proxy.host}:{proxy.port}", "-sf", str(SCENARIO), "-inf", str(csv),
        "-au", "[field0]", "-ap", "[field2]", "-auth_uri", "example.com", "-key", "expires", "3600",
        "-t", "u1", "-i", "127.0.0.1", "-p", str(free_port()), "-m", str(len(phones)),
        "-r", "100", "-timeout", "60s", "-nostdin", "-trace_stat", "-stf", f"{proxy.name}.csv",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)  # type: ignore[return-value]  # fmt: skip


async def rows(url: str) -> int:
    """Addresses of record with a live binding stored (a phone that moved to another
    proxy over a new connection has a second binding until the first expires)."""
    db = await open_database(url)
    try:
        row = await db.fetchone("SELECT COUNT(DISTINCT aor) FROM locations WHERE expires_at > 0")
        return int(row[0]) if row else 0
    finally:
        await db.close()


async def test_the_cluster_survives_a_proxy_the_redis_master_and_the_database(
    cluster: Cluster, sipp_bin: str, tmp_path: Path
) -> None:
    proxies = cluster.proxies
    # -- 1000 phones registered across the three proxies -------------------------------
    shares = [PHONES[n::3] for n in range(3)]
    runs = [register_with_sipp(sipp_bin, p, s, tmp_path) for p, s in zip(proxies, shares, strict=True)]
    for run in runs:
        assert run.wait(90) == 0  # type: ignore[attr-defined]
    cluster.held_everywhere(1000)
    assert await rows(cluster.url) == 1000

    # -- calls between phones on different proxies ---------------------------------------
    phones = [await Handset.open(h.user, h.password, p.host, p.port)
              for h, p in zip(HANDSETS[:3], proxies, strict=True)]  # fmt: skip
    for phone in phones:
        assert await phone.register() == 200
    cluster.held_everywhere(1003)
    calls = 0
    for n, caller in enumerate(phones):
        callee = phones[(n + 1) % 3]
        assert await caller.call(callee.user) == 200
        calls += 1

    # -- proxy-3 dies: its phone moves to proxy-1 and is reached within 5 s ----------------
    proxies[2].kill()
    killed = time.monotonic()
    await asyncio.wait_for(phones[2].lost, 2)
    phones[2] = await Handset.open(HANDSETS[2].user, HANDSETS[2].password, proxies[0].host,
                                   proxies[0].port)  # fmt: skip
    assert await phones[2].register() == 200
    await reached(phones[1], phones[2].user, 5)
    calls += 1
    assert time.monotonic() - killed < 5
    assert await phones[2].call(phones[0].user) == 200
    calls += 1

    # -- the Redis master dies: Sentinel promotes the replica, the feed follows ------------
    promoted = cluster.redis.kill_master()
    moved = await Handset.open(HANDSETS[3].user, HANDSETS[3].password, proxies[0].host,
                               proxies[0].port)  # fmt: skip
    assert await moved.register() == 200
    await reached(phones[1], moved.user, 5)  # proxy-2 learnt of it from proxy-1
    calls += 1
    cluster.held_everywhere(1004)
    # Each feed subscribes again to the new master and catches up (syncing till then).
    await asyncio.sleep(2)
    cluster.in_sync((0, 1))

    # -- the MariaDB primary restarts: no 200 without its row, then on as before -----------
    late = await Handset.open(HANDSETS[4].user, HANDSETS[4].password, proxies[1].host,
                              proxies[1].port)  # fmt: skip
    restart = asyncio.get_running_loop().run_in_executor(None, cluster.primary.restart, 3.0)
    await asyncio.sleep(0.5)
    during = await late.register(timeout=5, patience=0)
    during_reason = late.reason
    await restart
    assert during != 200 or await rows(cluster.url) >= 1005
    deadline = time.monotonic() + 20
    while await late.register(timeout=5, patience=0) != 200:
        assert time.monotonic() < deadline, "registrations did not come back after the restart"
        await asyncio.sleep(0.5)
    await reached(phones[0], late.user, 5)
    calls += 1
    cluster.held_everywhere(1005)
    assert await rows(cluster.url) == 1005

    # -- the replica holds the same bindings ----------------------------------------------
    replica_url = cluster.replica.url(cluster.url.rsplit("/", 1)[1])
    deadline = time.monotonic() + 20
    while await rows(replica_url) != 1005:
        assert time.monotonic() < deadline, "the replica did not catch up"
        await asyncio.sleep(0.5)
    assert calls == 7
    for phone in (*phones, moved, late):
        phone.close()
    print(f"cluster: 1005 registrations, {calls} calls, Redis master promoted in {promoted:.1f} s,"
          f" a REGISTER while MariaDB was down got {during} {during_reason}")
