"""`sipline proxy` with ``[node] workers = 2``: two processes on one address.

sipp calls through it with a socket per call (``-t un``), so the kernel spreads
the calls over both workers. Each worker's requests name its own port in Via:
a response that reached the other worker would be handed over, and counted
(``sipline_worker_handovers_total{outcome="handed"}``), so none counted means
every response came back to the worker that sent the request. A CANCEL from
the INVITE's own socket reaches the INVITE's worker (the kernel's hash of the
same 4-tuple); one from another socket may reach the other worker, which hands
it over. A worker killed with SIGKILL is started again and calls go on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.proxystack import (
    DOMAIN,
    HOST,
    Phone,
    RunningProxy,
    free_port,
    numbered_phones,
    provision,
    register_phones,
    start_proxy,
    users_csv,
)
from tests.conftest import RedisServer, empty_redis_database

pytestmark = pytest.mark.e2e

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
BENCH_SCENARIOS = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
SIPP_TIMEOUT = 30  # seconds: sipp's -timeout
WAIT = 30.0  # seconds for a condition on a loaded box
CALLER = "127.0.0.2"  # the trusted callers' host
PEER = "127.0.0.3"  # a trusted peer's host (as our B2BUA would be): it knows us by our port


@dataclass
class Workers:
    proxy: RunningProxy
    uac_port: int
    workdir: Path

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{HOST}:{self.proxy.metrics_port}/status", timeout=5) as page:
            body: dict[str, Any] = orjson.loads(page.read())
        return body

    def metric(self, name: str, **labels: str) -> float:
        """The sum over the workers of a sample of the supervisor's /metrics."""
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        total = 0.0
        with urllib.request.urlopen(f"http://{HOST}:{self.proxy.metrics_port}/metrics", timeout=5) as page:
            for line in page.read().decode().splitlines():
                key, _, value = line.rpartition(" ")
                if key.startswith(name + "{") and all(w in key for w in wanted):
                    total += float(value)
        return total

    def healthy(self) -> bool:
        status = self.status()
        return status["healthy"] == status["workers"] and all(
            w["status"] and w["status"]["state"] == "running" for w in status["per_worker"]
        )


def wait_for(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory, redis_instance: RedisServer
) -> Iterator[Workers]:
    workdir = tmp_path_factory.mktemp("workers")
    url = f"sqlite:///{workdir / 'proxy.db'}"
    asyncio.run(provision(url, []))
    uac_port = free_port()
    settings = {
        "SIPLINE_NODE__WORKERS": "2",
        "SIPLINE_NODE__DATA_DIR": str(workdir),
        "SIPLINE_REDIS__URL": empty_redis_database(redis_instance),
        "SIPLINE_AUTH__SECRET": "workers test secret",
        "SIPLINE_SIP__TRANSPORTS": '["udp"]',
        # sipp's UAC (-t un: a port per call) and the test's own sockets, on a host of
        # their own: the UAS on HOST is not trusted, as a phone would not be.
        "SIPLINE_PROXY__TRUSTED": f'["{CALLER}", "{PEER}"]',
        "SIPLINE_PROXY__MEDIA_RELAY": "",
    }
    proxy = start_proxy(url, workdir, settings, metrics=True, timeout=WAIT)
    running = Workers(proxy, uac_port, workdir)
    try:
        wait_for(running.healthy, "both workers running")
        yield running
    finally:
        code = proxy.stop(15)
        assert code == 0, proxy.log_text()[-3000:]


def uas(
    sipp: str, scenario: Path, port: int, workdir: Path, host: str = HOST,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:  # fmt: skip
    return subprocess.Popen(
        [sipp, "-sf", str(scenario), "-i", host, "-p", str(port), "-t", "u1", *extra,
         "-timeout", f"{SIPP_TIMEOUT * 2}s", "-nostdin", "-trace_err",
         "-error_file", str(workdir / f"uas-{port}-errors.log")],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def calls(
    sipp: str, w: Workers, scenario: Path, uas_port: int, count: int, hold_ms: int,
    uas_host: str = HOST,
) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """``count`` calls from sipp (a socket each) through the proxy to the UAS; every one
    must succeed (exit 0)."""
    command = [
        sipp, f"{HOST}:{w.proxy.port}", "-sf", str(scenario), "-s", "callee",
        "-key", "uas", f"{uas_host}:{uas_port}", "-i", CALLER, "-p", str(w.uac_port), "-t", "un", "-max_socket", "512",
        "-m", str(count), "-r", "20", "-d", str(hold_ms), "-timeout", f"{SIPP_TIMEOUT}s",
        "-nostdin", "-trace_err", "-error_file", str(w.workdir / "uac-errors.log"),
    ]  # fmt: skip
    return subprocess.run(command, cwd=w.workdir, capture_output=True, timeout=SIPP_TIMEOUT * 2)


def run_calls(
    sipp: str, w: Workers, scenario: Path, uas_scenario: Path, count: int, uas_host: str = HOST
) -> None:
    port = free_port()
    server = uas(sipp, uas_scenario, port, w.workdir, uas_host)
    try:
        done = calls(sipp, w, scenario, port, count, 200, uas_host)
    finally:
        server.kill()
        server.wait(5)
    assert done.returncode == 0, done.stdout[-2000:].decode(errors="replace") + w.proxy.log_text()[-3000:]


def per_worker_calls(w: Workers) -> list[float]:
    return [w.metric("sipline_calls_total", worker=str(i)) for i in range(2)]


def test_calls_through_two_workers_all_succeed_and_responses_return_to_their_worker(
    sipp_bin: str, workers: Workers
) -> None:
    handed = workers.metric("sipline_worker_handovers_total", outcome="handed")
    run_calls(sipp_bin, workers, BENCH_SCENARIOS / "relay.xml", BENCH_SCENARIOS / "relay_uas.xml", 40)
    assert all(n > 0 for n in per_worker_calls(workers)), "the kernel spread the calls"
    # A response on the other worker (or an ACK or CANCEL without its INVITE) is handed over.
    assert workers.metric("sipline_worker_handovers_total", outcome="handed") == handed


def test_requests_to_a_trusted_peer_leave_from_the_shared_port_and_its_answers_are_handed_over(
    sipp_bin: str, workers: Workers
) -> None:
    """A trusted peer names us by our address and port: what we send it leaves from
    the port it knows. It answers to that source (as sipp and our roles do), which
    the kernel hashes to one worker: the other worker's answers are handed over."""
    handed = workers.metric("sipline_worker_handovers_total", outcome="handed")
    run_calls(sipp_bin, workers, BENCH_SCENARIOS / "relay.xml", BENCH_SCENARIOS / "relay_uas.xml",
              40, uas_host=PEER)  # fmt: skip
    assert workers.metric("sipline_worker_handovers_total", outcome="handed") > handed
    assert workers.metric("sipline_worker_handovers_total", outcome="forged") == 0


def test_a_cancel_from_the_invites_socket_reaches_the_invites_worker(
    sipp_bin: str, workers: Workers
) -> None:
    handed = workers.metric("sipline_worker_handovers_total", outcome="handed")
    run_calls(sipp_bin, workers, SCENARIOS / "relay_cancel.xml", SCENARIOS / "uas_ring.xml", 20)
    assert workers.metric("sipline_worker_handovers_total", outcome="handed") == handed


def test_a_cancel_from_another_socket_is_handed_to_the_invites_worker(
    sipp_bin: str, workers: Workers
) -> None:
    """The kernel sends the CANCEL wherever its own 4-tuple hashes: half the time
    to the other worker, which hands it (and the ACK of the 487) over."""
    port = free_port()
    server = uas(sipp_bin, SCENARIOS / "uas_ring.xml", port, workers.workdir)
    taken = workers.metric("sipline_worker_handovers_total", outcome="taken")
    try:
        for n in range(24):
            cancel_from_another_socket(workers.proxy.port, port, n)
    finally:
        server.kill()
        server.wait(5)
    assert workers.metric("sipline_worker_handovers_total", outcome="taken") > taken
    assert workers.metric("sipline_worker_handovers_total", outcome="forged") == 0


def cancel_from_another_socket(proxy_port: int, uas_port: int, n: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller, socket.socket(
        socket.AF_INET, socket.SOCK_DGRAM
    ) as other:
        caller.bind((CALLER, 0))
        other.bind((CALLER, 0))
        caller.settimeout(WAIT)
        other.settimeout(WAIT)
        here = caller.getsockname()[1]
        branch, call_id = f"z9hG4bK-w{n}-{time.monotonic_ns()}", f"workers-{n}-{time.monotonic_ns()}"

        def request(method: str, to_tag: str = "") -> bytes:
            return (
                f"{method} sip:callee@{HOST}:{uas_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {CALLER}:{here};branch={branch}\r\n"
                f"From: <sip:caller@{CALLER}:{here}>;tag=c{n}\r\n"
                f"To: <sip:callee@{HOST}:{uas_port}>{to_tag}\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
                f"Contact: <sip:caller@{CALLER}:{here}>\r\nContent-Length: 0\r\n\r\n"
            ).encode()

        proxy = (HOST, proxy_port)
        caller.sendto(request("INVITE"), proxy)
        assert status_of(caller, 180) == 180
        other.sendto(request("CANCEL"), proxy)  # the same transaction (§9.1), another 4-tuple
        assert status_of(other, 200) == 200, "the CANCEL was answered"
        final = status_of(caller, 487, keep=True)
        assert final.startswith(b"SIP/2.0 487"), final[:200]
        tag = final.split(b"\r\nTo: ", 1)[1].split(b"\r\n", 1)[0].decode().partition(">")[2]
        other.sendto(request("ACK", tag), proxy)


def status_of(sock: socket.socket, wanted: int, keep: bool = False) -> Any:
    """Read responses until one with ``wanted`` (ignoring 100); its status, or the
    message itself with ``keep``."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        data = sock.recv(65535)
        status = int(data.split(b" ", 2)[1])
        if status == wanted:
            return data if keep else status
    return 0


def test_phones_registered_through_either_worker_are_called_through_either(
    sipp_bin: str, workers: Workers
) -> None:
    """Bindings, nonces and flows are shared as between the proxies of a cluster:
    each phone registers from a port of its own (the kernel picks its worker),
    both workers hold every binding, and calls (challenged, digest; a socket each,
    so either worker takes them) reach each phone on its own flow."""
    phones = numbered_phones(4, "w")
    caller = Phone("wcaller", "caller-pw")
    asyncio.run(provision_more(workers.proxy, [*phones, caller]))
    ports = {}
    for phone in phones:
        ports[phone.user] = free_port()
        register_phones(sipp_bin, SCENARIOS / "register.xml", workers.proxy.port, [phone],
                        ports[phone.user], workers.workdir)  # fmt: skip

    def every_worker_holds_every_binding() -> bool:
        return all(
            w["status"] and w["status"]["registrations"] == len(phones)
            for w in workers.status()["per_worker"]
        )

    wait_for(every_worker_holds_every_binding, "both workers hold the 4 bindings")
    csv_path = workers.workdir / "caller.csv"
    csv_path.write_text(users_csv([caller]))
    for phone in phones:
        server = uas(sipp_bin, SCENARIOS / "uas.xml", ports[phone.user], workers.workdir,
                     extra=("-s", phone.user))  # fmt: skip
        try:
            done = subprocess.run(
                [sipp_bin, f"{HOST}:{workers.proxy.port}", "-sf", str(SCENARIOS / "call_uac.xml"),
                 "-inf", str(csv_path), "-au", "[field0]", "-ap", "[field2]",
                 "-auth_uri", f"{phone.user}@{DOMAIN}", "-s", phone.user, "-i", HOST,
                 "-p", str(free_port()), "-t", "un", "-max_socket", "64", "-m", "4", "-r", "10",
                 "-d", "100", "-timeout", f"{SIPP_TIMEOUT}s", "-nostdin"],
                cwd=workers.workdir, capture_output=True, timeout=SIPP_TIMEOUT * 2,
            )  # fmt: skip
        finally:
            server.kill()
            server.wait(5)
        assert done.returncode == 0, (
            done.stdout[-2000:].decode(errors="replace") + workers.proxy.log_text()[-3000:]
        )


async def provision_more(proxy: RunningProxy, phones: list[Phone]) -> None:
    await proxy.add(*phones)


def test_a_worker_killed_is_started_again_and_calls_go_on(sipp_bin: str, workers: Workers) -> None:
    before = workers.status()["per_worker"][0]
    os.kill(before["pid"], signal.SIGKILL)

    def restarted() -> bool:
        now = workers.status()["per_worker"][0]
        return now["restarts"] == before["restarts"] + 1 and now["pid"] != before["pid"]

    wait_for(restarted, "worker 0 started again")
    wait_for(workers.healthy, "both workers running again")
    assert workers.status()["restarts"] >= 1
    assert workers.metric("sipline_worker_restarts_total", worker="0") == before["restarts"] + 1
    assert "event=worker_died" in workers.proxy.log_text()
    run_calls(sipp_bin, workers, BENCH_SCENARIOS / "relay.xml", BENCH_SCENARIOS / "relay_uas.xml", 40)
