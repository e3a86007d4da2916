"""The proxy under load or test: subscribers in a database, ``sipline proxy``, sipp phones.

The end-to-end and security tests, ``bench.flood`` and the ``call`` and
``register`` bench scenarios share these parts: ``Phone`` and ``users_csv``
(sipp's ``-inf`` lines ``user;domain;password``), ``provision`` (subscribers
written straight into a migrated database, thousands at once), ``proxy_env``
(the environment that points ``sipline proxy`` at a port and a database),
``start_proxy`` (the one way a test starts a real ``sipline proxy`` process:
a ``RunningProxy`` with its log, /metrics and CPU time), ``register_phones``
(sipp registers phones with digest auth from a given port, so a UAS started
later on that port takes their calls) and ``answers_options``.

``python -m bench.proxystack call|register`` is the server the bench runner
starts for those scenarios (see ``bench.proxyserve``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sipline.net import ports
from sipline.sip.auth import MD5, SHA256, compute_ha1
from sipline.storage import migrate, open_database

REPO = Path(__file__).resolve().parents[1]
SIPLINE = Path(sys.executable).parent / "sipline"
HOST = "127.0.0.1"
DOMAIN = "example.com"
PROVISION_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class Phone:
    """A subscriber as a phone knows it: user, password and domain."""

    user: str
    password: str
    domain: str = DOMAIN

    @property
    def aor(self) -> str:
        return f"{self.user}@{self.domain}"

    @property
    def csv_line(self) -> str:
        return f"{self.user};{self.domain};{self.password}"


def numbered_phones(count: int, prefix: str = "u") -> list[Phone]:
    """``count`` distinct phones: u000001 ... with passwords of their own."""
    width = max(6, len(str(count)))
    return [Phone(f"{prefix}{n:0{width}d}", f"pw-{n}") for n in range(1, count + 1)]


def users_csv(phones: Iterable[Phone]) -> str:
    """sipp -inf text: one call per line, in order (SEQUENTIAL)."""
    return "SEQUENTIAL\n" + "".join(f"{phone.csv_line}\n" for phone in phones)


async def provision(url: str, phones: Sequence[Phone]) -> None:
    """Migrate the database at ``url`` and add ``phones`` as subscribers, in large batches."""
    db = await open_database(url)
    try:
        await migrate(db)
        now = time.time()
        rows = [_subscriber_row(phone, now) for phone in phones]
        for start in range(0, len(rows), PROVISION_CHUNK):
            async with db.transaction() as tx:
                await tx.executemany(
                    "INSERT INTO subscribers"
                    " (username, domain, ha1_md5, ha1_sha256, account, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows[start : start + PROVISION_CHUNK],
                )
    finally:
        await db.close()


def _subscriber_row(phone: Phone, now: float) -> tuple[str, str, str, str, None, float]:
    return (
        phone.user,
        phone.domain,
        compute_ha1(phone.user, phone.domain, phone.password, MD5),
        compute_ha1(phone.user, phone.domain, phone.password, SHA256),
        None,
        now,
    )


def proxy_env(port: int, url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``sipline proxy`` on ``port`` with its database at ``url``.

    sipp 3.6 answers only MD5 challenges and takes the first one offered, so
    MD5 is the only algorithm offered to it.
    """
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    return {
        **clean,
        "SIPLINE_SIP__HOST": HOST,
        "SIPLINE_SIP__PORT": str(port),
        "SIPLINE_DATABASE__URL": url,
        "SIPLINE_AUTH__ALGORITHMS": '["MD5"]',
        "SIPLINE_LOG__LEVEL": "warning",  # info logs a line per message
        "SIPLINE_NODE__DRAIN_TIMEOUT": "2",
        # sipp plays thousands of phones from one address: lift the per-source
        # transaction limit a real phone never nears.
        "SIPLINE_SIP__MAX_TRANSACTIONS_PER_SOURCE": "100000",
        # One process, whatever the box's cores, unless a test asks for workers: its
        # /metrics, log and CPU time are then the proxy's own.
        "SIPLINE_NODE__WORKERS": "1",
        **(extra or {}),
    }


def proxy_command(config: str = "configs/single.toml") -> list[str]:
    return [str(SIPLINE), "proxy", "--config", config]


@dataclass
class RunningProxy:
    """A ``sipline proxy`` process ``start_proxy`` started, on ``port`` of 127.0.0.1
    with its database at ``url``, its output in ``log`` and /metrics on
    ``metrics_port`` (0: none)."""

    process: subprocess.Popen[bytes]
    port: int
    url: str
    log: Path
    metrics_port: int = 0

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """A sample of its /metrics (0 when absent)."""
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return metric(self.metrics_port, f"{name}{{{wanted}}}" if labels else name)

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used."""
        from bench.runner import read_proc_stat  # the runner imports this module

        return read_proc_stat(Path(f"/proc/{self.process.pid}/stat").read_text())[0]

    async def add(self, *phones: Phone) -> None:
        """Provision subscribers while it runs (as ``sipline subscriber add`` does)."""
        await provision(self.url, phones)

    async def bindings(self) -> list[tuple[str, str]]:
        """(aor, contact) of every live binding stored (not the tombstones of removed ones)."""
        db = await open_database(self.url)
        try:
            rows = await db.fetchall(
                "SELECT aor, contact FROM locations WHERE expires_at > 0 ORDER BY aor, contact"
            )
            return [(row[0], row[1]) for row in rows]
        finally:
            await db.close()

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM (it drains), SIGKILL if it is still there after ``timeout``; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(5)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)


def start_proxy(
    url: str,
    workdir: Path,
    settings: Mapping[str, str] | None = None,
    *,
    metrics: bool = False,
    port: int | None = None,
    timeout: float = 20,
) -> RunningProxy:
    """``sipline proxy`` on a free port (or ``port``) of 127.0.0.1 with its database at
    ``url`` (provision it first: ``provision``), ``settings`` the SIPLINE_*
    variables beyond ``proxy_env``'s, /metrics on a free port with
    ``metrics``; its output in a log file in ``workdir``. Once it answers an
    OPTIONS; RuntimeError with its log when it does not within ``timeout``."""
    port = port or free_port()
    extra = dict(settings or {})
    metrics_port = 0
    if metrics:
        metrics_port = ports.free_port(HOST)
        extra["SIPLINE_METRICS__PORT"] = str(metrics_port)
    log = workdir / f"proxy-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            proxy_command(), cwd=REPO, env=proxy_env(port, url, extra),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    proxy = RunningProxy(process, port, url, log, metrics_port)
    if not wait_until_answering(port, timeout, process):
        proxy.kill()
        raise RuntimeError(f"sipline proxy did not start:\n{proxy.log_text()}")
    return proxy


def metric(port: int, sample: str) -> float:
    """A sample (name and labels, as /metrics writes them) of the /metrics on ``port``;
    of a proxy with workers (its supervisor's page labels each sample ``worker``),
    the sum over the workers."""
    total = 0.0
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=2) as page:
        for line in page.read().decode().splitlines():
            key, _, value = line.rpartition(" ")
            if key == sample:
                return float(value)
            if 'worker="' in key and _WORKER.sub("", key).replace("{}", "") == sample:
                total += float(value)
    return total


_WORKER = re.compile(r'worker="[^"]*",?')


def register_command(
    sipp: str,
    scenario: Path,
    proxy_port: int,
    csv: Path,
    local_port: int,
    *,
    calls: int,
    rate: int = 50,
    transport: str = "u1",
    expires: int = 3600,
) -> list[str]:
    """sipp registering the ``calls`` phones of ``csv`` from ``local_port`` (register.xml)."""
    return [
        sipp, f"{HOST}:{proxy_port}", "-sf", str(scenario),
        "-inf", str(csv), "-au", "[field0]", "-ap", "[field2]", "-auth_uri", DOMAIN,
        "-key", "expires", str(expires),
        "-t", transport, "-i", HOST, "-p", str(local_port),
        "-m", str(calls), "-r", str(rate), "-timeout", "60s", "-nostdin",
        "-trace_stat", "-stf", "register-stats.csv", "-trace_err",
    ]  # fmt: skip


def register_phones(
    sipp: str,
    scenario: Path,
    proxy_port: int,
    phones: Sequence[Phone],
    local_port: int,
    workdir: Path,
    transport: str = "u1",
) -> None:
    """Register ``phones`` from ``local_port``; RuntimeError unless every one got its 200."""
    workdir.mkdir(parents=True, exist_ok=True)
    csv = workdir / f"register-{local_port}.csv"
    csv.write_text(users_csv(phones))
    command = register_command(
        sipp, scenario, proxy_port, csv, local_port, calls=len(phones), transport=transport
    )
    done = subprocess.run(command, cwd=workdir, capture_output=True, timeout=90)
    if done.returncode != 0:
        tail = done.stdout[-1500:].decode(errors="replace")
        raise RuntimeError(f"sipp could not register {len(phones)} phones ({done.returncode}):\n{tail}")


def options_request(port: int, user: str | None, branch: str, sender: str) -> bytes:
    target = f"{user}@{HOST}:{port}" if user else f"{HOST}:{port}"
    return (
        f"OPTIONS sip:{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{port};branch={branch};rport\r\n"
        f"From: <sip:{sender}>;tag=p\r\nTo: <sip:{target}>\r\n"
        f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def answers_options(
    port: int, user: str | None = None, timeout: float = 0.3, sender: str = "probe@probe.invalid"
) -> bytes | None:
    """The first response to an OPTIONS to ``sip:[user@]127.0.0.1:port`` over UDP, if any.

    To the proxy itself (no ``user``) it is answered 200 unchallenged (a
    keepalive); to a user, a stranger is challenged (407) like for anything else."""
    branch = f"z9hG4bKprobe{time.monotonic_ns()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((HOST, port))
            sock.send(options_request(port, user, branch, sender))
            return sock.recv(65535)
        except OSError:
            return None


def wait_until_answering(
    port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> bool:
    """Wait until the proxy on ``port`` answers an OPTIONS to itself with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        answer = answers_options(port, timeout=0.2)
        if answer is not None and answer.startswith(b"SIP/2.0 200 "):
            return True
        time.sleep(0.1)
    return False


def free_port() -> int:
    """A free port whose +1 is free too: baresip binds TLS on its SIP port + 1."""
    return ports.free_port(HOST, span=2)

