"""``python -m bench.tls_handshakes [--count N] [--concurrency C]``: TLS handshakes a
node takes per second of its CPU.

Starts ``sipline run`` (the minimal node) on UDP and TLS with a certificate
made here (ECDSA P-256), then opens ``count`` TLS connections from this
process, ``concurrency`` at a time, each carrying one OPTIONS to its 200
before it closes (a phone's first contact). Prints the wall-clock rate and the
rate per second of the node's own CPU (from /proc), which is what a shared
machine can still compare; bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.flood import proc_stat
from bench.proxystack import HOST, REPO, SIPLINE, wait_until_answering
from bench.runner import SERVER_ENV, tls_env
from sipline.net.ports import free_port

BOUND = 120.0  # seconds: the run gives up after this


async def one(port: int, context: ssl.SSLContext, n: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port, ssl=context, server_hostname=HOST)
    writer.write(
        (
            f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\nVia: SIP/2.0/TLS {HOST}:1;branch=z9hG4bKh{n}\r\n"
            f"From: <sip:b@x>;tag={n}\r\nTo: <sip:{HOST}>\r\nCall-ID: h{n}\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def load(port: int, context: ssl.SSLContext, count: int, concurrency: int) -> None:
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:
            await one(port, context, n)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), BOUND)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_handshakes")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sipline-bench-tls-"))
    port = free_port()
    env = {**os.environ, **SERVER_ENV, **tls_env(workdir), "SIPLINE_SIP__PORT": str(port)}
    env["SIPLINE_LIMITS__FLOOD_DENSITY"] = "0"
    process = subprocess.Popen(
        [str(SIPLINE), "run", "--config", "configs/single.toml"], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if not wait_until_answering(port, 20, process):
            print("the node did not start", file=sys.stderr)
            return 2
        context = ssl.create_default_context(cafile=str(workdir / "ca.pem"))
        cpu_before = proc_stat(process.pid)[0]
        start = time.perf_counter()
        asyncio.run(load(port + 1, context, args.count, args.concurrency))
        wall = time.perf_counter() - start
        cpu = proc_stat(process.pid)[0] - cpu_before
    finally:
        process.terminate()
        process.wait(10)
    print(
        f"{args.count} TLS handshakes (+1 OPTIONS each), {args.concurrency} at a time: "
        f"{args.count / wall:.0f}/s wall clock, {args.count / cpu:.0f}/s per second of the "
        f"node's CPU ({cpu * 1000 / args.count:.2f} ms each); client in this process"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
