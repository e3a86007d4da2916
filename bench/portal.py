"""``python -m bench portal [--rows N]``: the portal's CDR search and export on a
private MariaDB holding N CDRs (default 100,000; issue 15 asks for 10 million).

It starts its own mariadbd (sipline.storage.testing, with a bigger buffer pool),
migrates it, loads N CDRs spread over ``ACCOUNTS`` accounts and 30 days (LOAD
DATA LOCAL INFILE), starts ``sipline portal`` on a free port of 127.0.0.1
against it, logs in as an operator and measures over HTTP, as a script would:

- search: one account, one day (the first page of 50 and the totals), over
  ``--searches`` random account-days: median and p95 latency;
- export: ``/api/cdrs.csv`` of every row, streamed: rows/s and the portal's
  peak memory (its RSS high-water mark, VmHWM);
- pages: each main page fetched ``--pages`` times: p95.

``python -m bench portal --load RATE [--seconds S]`` measures the pages instead
with the whole stack under load: ``sipline stack`` (as ``make run``, the portal
in it) on free ports, sipp calling through it at RATE calls/s for S seconds
(bench.chain's call: 1 s hold, so about RATE calls up at once), while each main
page is fetched by the demo operator again and again: p95 per page.

The issue's targets: search < 1 s and export >= 50,000 rows/s at 10M rows;
pages < 200 ms p95 with the stack under 200 calls/s. The figures depend on the
machine's load: quote them with it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sipline.net.ports import free_port
from sipline.storage.testing import MariaDB, PrivateMariaDB

ACCOUNTS = 100
DAYS = 30
DAY = 86400
START = int(time.time()) // DAY * DAY - (DAYS - 1) * DAY  # the 30 days up to today
CHUNK = 250_000
PASSWORD = "bench operator pw"
_COLUMNS = (
    "call_id, account, caller, callee, prefix, carrier, gateway, rate, connect_fee,"
    " first_increment, next_increment, started_at, answered_at, ended_at, billed_seconds,"
    " cost, final_code, node"
)


class BenchMariaDB(PrivateMariaDB):
    """A private mariadbd with room for the index pages of millions of CDRs."""

    def _command(self, port: int) -> list[str]:
        command = super()._command(port)
        return [("--innodb-buffer-pool-size=1G" if c.startswith("--innodb-buffer-pool-size")
                 else c) for c in command]  # fmt: skip


def load(server: MariaDB, database: str, rows: int, say: callable) -> None:  # type: ignore[valid-type]
    rng = random.Random(15)
    conn = server.connect()
    conn.select_db(database)
    conn.close()
    import pymysql

    conn = pymysql.connect(host=server.host, port=server.port, user=server.user,
                           database=database, local_infile=True, autocommit=True)  # fmt: skip
    carriers = ("acme", "globex", "initech", "umbrella")
    with tempfile.TemporaryDirectory(prefix="sipline-bench-cdrs-") as tmp:
        path = Path(tmp) / "cdrs.tsv"
        done = 0
        while done < rows:
            n = min(CHUNK, rows - done)
            with path.open("w") as out:
                for i in range(done, done + n):
                    # CDRs are written as calls end: ids follow time, as in production.
                    started = START + (i + rng.random()) * DAYS * DAY / rows
                    answered = rng.random() < 0.6
                    talk = rng.expovariate(1 / 120) if answered else 0
                    billed = 0 if not answered else 60 * (int(talk // 60) + 1)
                    out.write(
                        f"bench-{i}\tacct-{rng.randrange(ACCOUNTS):03d}\t"
                        f"user{rng.randrange(10000)}@example.com\t44{rng.randrange(10**9):09d}\t44\t"
                        f"{carriers[i % 4]}\t10.0.0.{i % 4}:5060\t0.01\t0\t60\t60\t{started:.3f}\t"
                        + (f"{started + 3:.3f}" if answered else "\\N")
                        + f"\t{started + 3 + talk:.3f}\t{billed}\t{billed * 0.01 / 60:.6f}\t"
                        f"{200 if answered else 486}\tacr-bench\n"
                    )
            with conn.cursor() as cursor:
                cursor.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE cdrs ({_COLUMNS})", (str(path),))
            done += n
            say(f"  loaded {done:,} CDRs")
    conn.close()


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench portal: the portal exited ({process.returncode})")
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/csrf", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("bench portal: the portal did not start")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench portal", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="CDRs to load (10000000: the issue's)")
    parser.add_argument("--searches", type=int, default=50, help="account-day searches timed")
    parser.add_argument("--pages", type=int, default=30, help="fetches of each page timed")
    parser.add_argument("--load", type=int, help="calls/s through a running stack while pages are timed")
    parser.add_argument("--seconds", type=float, default=20.0, help="with --load: how long (s)")
    args = parser.parse_args(argv)
    if args.load is not None:
        if not 0 < args.load <= 2000 or not 0 < args.seconds <= 600:
            parser.error("--load 1..2000 calls/s, --seconds up to 600")
        return under_load(args.load, args.seconds)
    if args.rows < 1 or args.searches < 1 or args.pages < 1:
        parser.error("--rows, --searches and --pages are 1 or more")
    say = lambda text: print(text, flush=True)  # noqa: E731
    mariadbd = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/sbin")
    if mariadbd is None:
        raise SystemExit("bench portal: mariadbd is not installed (mariadb-server)")
    db = BenchMariaDB(mariadbd)
    portal: subprocess.Popen[bytes] | None = None
    workdir = Path(tempfile.mkdtemp(prefix="sipline-bench-portal-"))
    try:
        server = db.start()
        url = server.fresh_database()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPLINE_")}
        port = free_port()
        env.update(SIPLINE_DATABASE__URL=url, SIPLINE_NODE__DATA_DIR=str(workdir),
                   SIPLINE_PORTAL__LISTEN=f"127.0.0.1:{port}", SIPLINE_LOG__LEVEL="warning")  # fmt: skip
        sipline = [sys.executable, "-m", "sipline.cli"]
        subprocess.run([*sipline, "db", "migrate"], env=env, check=True, capture_output=True)
        started = time.perf_counter()
        load(server, url.rpartition("/")[2], args.rows, say)
        say(f"loaded {args.rows:,} CDRs in {time.perf_counter() - started:.1f} s")
        subprocess.run([*sipline, "portal-user", "add", "bench", "--role", "admin",
                        "--password-stdin"], input=PASSWORD.encode(), env=env, check=True,
                       capture_output=True)  # fmt: skip
        portal = subprocess.Popen([*sipline, "portal"], env=env)
        wait_listening(port, portal)
        return measure(port, portal.pid, args, say)
    finally:
        if portal is not None:
            portal.terminate()
            portal.wait(30)
        db.remove()
        shutil.rmtree(workdir, ignore_errors=True)


def measure(port: int, pid: int, args: argparse.Namespace, say) -> int:  # type: ignore[no-untyped-def]
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
    token = client.get("/api/csrf").json()["csrf"]
    answer = client.post("/api/login", json={"username": "bench", "password": PASSWORD},
                         headers={"X-CSRF-Token": token})  # fmt: skip
    answer.raise_for_status()
    t0 = time.perf_counter()
    while client.get("/api/dashboard").json()["today"] is None:  # the rollup's first sum
        time.sleep(0.2)
    say(f"dashboard totals ready (this month's CDRs summed at start) after"
        f" {time.perf_counter() - t0:.1f} s")  # fmt: skip
    rng = random.Random(7)
    latencies, found = [], 0
    for _ in range(args.searches):
        day = START + rng.randrange(DAYS) * DAY
        chosen = {"account": f"acct-{rng.randrange(ACCOUNTS):03d}", "since": day, "until": day + DAY}
        t0 = time.perf_counter()
        page = client.get("/api/cdrs", params={**chosen, "limit": 50})
        totals = client.get("/api/cdrs/totals", params=chosen)
        latencies.append(time.perf_counter() - t0)
        page.raise_for_status()
        found += totals.json()["calls"]
    say(f"search (one account, one day; page of 50 + totals), {args.searches} searches,"
        f" {found / args.searches:,.0f} CDRs each on average:"
        f" median {statistics.median(latencies) * 1000:.1f} ms,"
        f" p95 {percentile(latencies, 0.95) * 1000:.1f} ms")  # fmt: skip
    rows, size = 0, 0
    t0 = time.perf_counter()
    with client.stream("GET", "/api/cdrs.csv") as stream:
        for chunk in stream.iter_bytes():
            rows += chunk.count(b"\n")
            size += len(chunk)
    elapsed = time.perf_counter() - t0
    rows -= 1  # the header
    say(f"export of every CDR: {rows:,} rows, {size / 2**20:,.0f} MiB in {elapsed:.1f} s:"
        f" {rows / elapsed:,.0f} rows/s; portal peak RSS {peak_rss_mib(pid):.0f} MiB")
    for path in ("/", "/subscribers", "/cdrs", "/calls", "/billing", "/audit"):
        times = []
        for _ in range(args.pages):
            t0 = time.perf_counter()
            client.get(path).raise_for_status()
            times.append(time.perf_counter() - t0)
        say(f"page {path}: median {statistics.median(times) * 1000:.1f} ms,"
            f" p95 {percentile(times, 0.95) * 1000:.1f} ms")  # fmt: skip
    return 0 if rows == args.rows else 1


PAGES = ("/", "/calls", "/subscribers", "/cdrs", "/billing", "/accounts", "/carriers", "/audit")


def under_load(rate: int, seconds: float) -> int:
    """Page times with ``sipline stack`` carrying ``rate`` calls/s (see the module's doc)."""
    import threading

    from bench.chain import ALICE, LOAD_ENV, scenario, stack_command, stack_env, warm_up_call
    from bench.proxystack import users_csv, wait_until_answering
    from bench.runner import HOST, StepPlan, run_step
    from sipline.stack import DEMO_OPERATOR

    sipp = shutil.which("sipp") or "/usr/bin/sipp"
    workdir = Path(tempfile.mkdtemp(prefix="sipline-bench-portal-load-"))
    users = workdir / "alice.csv"
    users.write_text(users_csv([ALICE]))
    load = scenario(users)
    names = ("proxy", "b2bua", "primary", "secondary", "carrier", "portal")
    ports = {name: free_port() for name in names}
    env = {**stack_env(workdir, ports, None), **LOAD_ENV}
    with (workdir / "stack.log").open("wb") as out:
        stack = subprocess.Popen(stack_command(ports["carrier"]), env=env, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        if not wait_until_answering(ports["proxy"], 90, stack):
            raise SystemExit("bench portal: the stack did not start")
        deadline = time.monotonic() + 90
        while not warm_up_call(sipp, ports["proxy"], workdir, load):
            if time.monotonic() > deadline:
                raise SystemExit("bench portal: no call went through the stack")
        wait_listening(ports["portal"], stack)
        client = httpx.Client(base_url=f"http://127.0.0.1:{ports['portal']}", timeout=30)
        token = client.get("/api/csrf").json()["csrf"]
        user, password = DEMO_OPERATOR
        client.post("/api/login", json={"username": user, "password": password},
                    headers={"X-CSRF-Token": token}).raise_for_status()  # fmt: skip
        plan = StepPlan(load, rate, seconds, "udp", workdir / "load", target=(HOST, ports["proxy"]))
        results: list[object] = []
        driver = threading.Thread(target=lambda: results.append(run_step(plan, sipp)))
        driver.start()
        times: dict[str, list[float]] = {path: [] for path in PAGES}
        time.sleep(min(3.0, seconds / 4))  # the calls ramp up first
        live = 0
        while driver.is_alive():
            for path in PAGES:
                t0 = time.perf_counter()
                client.get(path).raise_for_status()
                times[path].append(time.perf_counter() - t0)
            live = max(live, len(client.get("/api/calls").json()["calls"]))
        driver.join()
        step = results[0]
        print(f"stack under {rate} calls/s for {seconds:g} s: {step.successful} calls"  # type: ignore[attr-defined]
              f" answered, {step.failed} failed; up to {live} calls in progress seen by the portal")  # type: ignore[attr-defined]
        worst = 0.0
        for path, values in times.items():
            p95 = percentile(values, 0.95)
            worst = max(worst, p95)
            print(f"page {path}: {len(values)} fetches, median {statistics.median(values) * 1000:.1f} ms,"
                  f" p95 {p95 * 1000:.1f} ms")  # fmt: skip
        return 0 if worst < 0.2 else 1
    finally:
        stack.send_signal(2)
        try:
            stack.wait(30)
        except subprocess.TimeoutExpired:
            stack.kill()
            stack.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
