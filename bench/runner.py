"""Step a sipp scenario through call rates against a server it starts itself.

A step runs sipp for ``rate * duration`` calls at ``rate`` calls per second
against a fresh server process, samples the server's CPU and memory from
/proc while sipp runs, and reads sipp's statistics files when it is done.
Each step is bounded: sipp gets a global ``-timeout`` and is killed shortly
after it; the server is stopped (SIGTERM, then SIGKILL) at the end of the step.

Over ``tls`` the server also listens on TLS (port + 1, certificates made for
the step), and sipp, which Debian builds without TLS, speaks TCP to a socat
that carries its connection over TLS: the server's figures are those of TLS;
socat's CPU is its own process's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench import acrserve, b2buaserve, proxyserve, sippstats
from sipline.net.ports import free_port

REPO = Path(__file__).resolve().parents[1]
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
SAMPLE_PERIOD = 0.5  # seconds between /proc samples and progress reports
SIPP_GRACE = 5.0  # seconds past the answer timeout before sipp's -timeout
KILL_GRACE = 10.0  # seconds past sipp's -timeout before it is killed
SUSTAINED_SUCCESS_PCT = 99.9
SUSTAINED_RATE_TOLERANCE = 0.05


class BenchError(RuntimeError):
    """A step could not be run (server did not start, sipp failed to run)."""


@dataclass(frozen=True, slots=True)
class Server:
    """A process started afresh for each step, listening for SIP on a free port.

    ``argv[0]`` is looked up in the virtualenv's bin directory; the port is
    passed in the environment variable ``port_env``; ready once it answers an
    OPTIONS over UDP.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    port_env: str = "SIPLINE_SIP__PORT"
    start_timeout: float = 15.0
    stop_timeout: float = 5.0
    # Readiness check on the port in place of answers_options (the proxy challenges that one).
    ready: Callable[[int], bool] | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """One load test: a sipp XML under bench/scenarios and what it runs against."""

    name: str
    xml: str
    server: Server | None  # None: the target is given on the command line
    service: str = "node"  # sipp -s: the user part of the request URI
    sipp_args: tuple[str, ...] = ()
    answer_timeout: float = 4.0  # the longest wait in the XML: bounds a step's tail
    hold: float = 0.0  # seconds a call is held (sipp -d: the XML's <pause/>)


# info logs a line per message; a short drain keeps the step's end bounded. sipp is
# one source at thousands of calls/s, not a phone: the per-source flood limit (still
# counted, so its cost is in the figures) and the per-IP TCP limits are lifted out
# of its way (sipp -t tn opens a connection per call).
SERVER_ENV = {
    "SIPLINE_LOG__LEVEL": "warning",
    "SIPLINE_NODE__DRAIN_TIMEOUT": "1",
    "SIPLINE_LIMITS__FLOOD_DENSITY": "1000000000",
    "SIPLINE_LIMITS__TCP_MAX_CONNECTIONS": "65536",
    "SIPLINE_LIMITS__TCP_MAX_CONNECTIONS_PER_IP": "65536",
}

MINIMAL_NODE = Server(("sipline", "run", "--config", "configs/single.toml"), SERVER_ENV)

# The proxy (bench/proxyserve.py): it registers a UAS as bob and as "probe",
# which the readiness OPTIONS reaches through the proxy, before a step starts.
PROXY_CALL = Server(
    ("python", "-m", "bench.proxyserve", "call"),
    SERVER_ENV,
    start_timeout=60.0,
    ready=proxyserve.ready,
)
# The same on a fresh MariaDB database with 60000 subscribers (SIPLINE_BENCH_USERS).
PROXY_REGISTER = Server(
    ("python", "-m", "bench.proxyserve", "register"),
    SERVER_ENV,
    start_timeout=120.0,
    ready=proxyserve.ready,
)
# One ACR node (bench/acrserve.py) with three sipp carriers behind it; 1 call in 10 fails over.
ACR_NODE = Server(
    ("python", "-m", "bench.acrserve"),
    SERVER_ENV,
    start_timeout=60.0,
    ready=acrserve.ready,
)
# The B2BUA alone (bench/b2buaserve.py), one sipp UAS standing in for its ACR pair.
B2BUA_NODE = Server(
    ("python", "-m", "bench.b2buaserve"),
    SERVER_ENV,
    ready=b2buaserve.ready,
)
# sipp 3.6 takes no keyword inside [authentication ...]: -au/-ap name the CSV fields.
_DIGEST = ("-au", "[field0]", "-ap", "[field2]")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("options", "options.xml", MINIMAL_NODE),
        Scenario(
            "call", "call.xml", PROXY_CALL, service="bob",
            sipp_args=("-inf", str(SCENARIO_DIR / "call-caller.csv"), *_DIGEST,
                       "-auth_uri", "bob@example.com"),
            answer_timeout=4.5,
        ),
        Scenario(
            "acr", "acr.xml", ACR_NODE, service="acr",
            sipp_args=("-inf", str(SCENARIO_DIR / "acr-numbers.csv")),
        ),
        Scenario("b2bua", "b2bua_uac.xml", B2BUA_NODE, service="+15551230000"),
        # Calls held 10 s: concurrent calls = 10 x rate, for memory per 1000 calls.
        Scenario(
            "b2bua_hold", "b2bua_uac.xml", B2BUA_NODE, service="+15551230000",
            answer_timeout=14.0, hold=10.0,
        ),
        Scenario(
            "register", "register.xml", PROXY_REGISTER, service="registrar",
            sipp_args=("-inf", str(REPO / "bench" / "results" / "register-users.csv"), *_DIGEST,
                       "-auth_uri", "example.com", "-key", "expires", "3600"),
        ),
    )
}  # fmt: skip


@dataclass(slots=True)
class StepResult:
    """What one step measured; ``sustained`` judges it against its target."""

    target_cps: int
    planned_calls: int
    created: int
    successful: int
    failed: int
    retransmissions: int
    elapsed_s: float
    achieved_cps: float  # calls completed per second of the step, less a call's hold
    success_pct: float  # of the planned calls
    rtt_p50_ms: float | None
    rtt_p99_ms: float | None
    rtt_max_ms: float | None
    server_cpu_pct: float | None  # 100 = one core busy
    server_rss_mb: float | None  # the largest sampled
    sipp_cpu_pct: float | None
    sipp_exit: int
    sustained: bool = False
    started_cps: float | None = None  # calls sipp started per second (None: too few answered)
    server_cpu_s: float | None = None  # CPU seconds of the server's processes over the step
    cpu_us_per_call: float | None = None  # server_cpu_s per successful call, in µs
    load_avg: float | None = None  # the machine's 1-minute load average at the step's end

    def judge(self) -> StepResult:
        self.sustained = is_sustained(
            self.target_cps, self.achieved_cps, self.success_pct, self.started_cps
        )
        return self


def is_sustained(
    target_cps: float, achieved_cps: float, success_pct: float, started_cps: float | None = None
) -> bool:
    """The strict rule of issue 14: ≥ 99.9 % of the planned calls succeeded, calls
    completed within 5 % of the target rate and, when known, sipp started them
    within 5 % of it (sipp shares the cores with the server and can fall behind)."""
    tolerance = SUSTAINED_RATE_TOLERANCE * target_cps
    started = started_cps is None or abs(started_cps - target_cps) <= tolerance
    close = abs(achieved_cps - target_cps) <= tolerance
    return success_pct >= SUSTAINED_SUCCESS_PCT and close and started


@dataclass(frozen=True, slots=True)
class StepPlan:
    scenario: Scenario
    rate: int
    duration: float
    transport: str  # "udp", "tcp" or "tls"
    workdir: Path
    target: tuple[str, int] | None = None  # a server already running: start none
    sipp_port: int = 0  # sipp's own port (a server may trust it); 0: a free one
    sipp_extra: tuple[str, ...] = ()  # more sipp arguments, e.g. -key NAME VALUE
    # A UDP socket per call (sipp -t un): many sources, as phones are, which the
    # kernel spreads over a server's SO_REUSEPORT workers; False: one for all (u1).
    socket_per_call: bool = False
    sipp_host: str = HOST  # the address sipp binds (a server may trust it)

    @property
    def calls(self) -> int:
        return max(1, round(self.rate * self.duration))

    @property
    def sipp_timeout(self) -> float:
        return self.duration + self.scenario.answer_timeout + SIPP_GRACE


Progress = Callable[[float], None]  # seconds of sipp's run so far


class Sampler(Protocol):
    """What a step samples a server with: a ``ProcSampler``, or several together."""

    def sample(self) -> None: ...

    @property
    def cpu_s(self) -> float | None: ...

    @property
    def cpu_pct(self) -> float | None: ...

    @property
    def rss_mb(self) -> float | None: ...


def run_step(
    plan: StepPlan,
    sipp: str,
    progress: Progress | None = None,
    server: Sampler | None = None,
) -> StepResult:
    """Run one step to its end (bounded) and return what it measured; ``server``
    samples the processes of a server started by the caller (``plan.target``)."""
    plan.workdir.mkdir(parents=True, exist_ok=True)
    for stale in (*plan.workdir.glob("*_rtt.csv"), plan.workdir / "stats.csv"):
        stale.unlink(missing_ok=True)  # of an earlier run into the same directory
    with _target(plan) as (address, server_pid):
        if server is None:
            server = ProcSampler.start(server_pid)
        else:
            server.sample()
        with (plan.workdir / "sipp.out").open("wb") as out:
            process = subprocess.Popen(
                sipp_command(plan, sipp, address), cwd=plan.workdir, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        try:
            sipp_sampler = ProcSampler.start(process.pid)
            samplers = [s for s in (server, sipp_sampler) if s is not None]
            code = _watch(process, plan.sipp_timeout + KILL_GRACE, samplers, progress)
        finally:  # interrupted: leave no sipp behind
            if process.poll() is None:
                process.kill()
                process.wait()
    return _result(plan, code, server, sipp_sampler)


def max_sockets(rate: int) -> int:
    """Sockets sipp may hold with one per call: every call of the longest a call
    lasts (about 10 s when it waits out its timeouts) at ``rate``, within the
    descriptors this process may open (sipp inherits the limit; raised here)."""
    import resource

    from sipline.net.transport import raise_file_limit

    wanted = rate * 10 + 100
    raise_file_limit(wanted + 100)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(100, min(wanted, soft - 100))


def sipp_command(plan: StepPlan, sipp: str, address: tuple[str, int]) -> list[str]:
    scenario = plan.scenario
    return [
        sipp, f"{address[0]}:{address[1]}",
        "-sf", str(SCENARIO_DIR / scenario.xml), "-s", scenario.service,
        "-t", {"udp": "un" if plan.socket_per_call else "u1", "tcp": "t1", "tls": "t1"}[
            plan.transport
        ],
        *(("-max_socket", str(max_sockets(plan.rate))) if plan.socket_per_call else ()),
        "-i", plan.sipp_host, "-p", str(plan.sipp_port or free_port()),
        "-r", str(plan.rate), "-m", str(plan.calls),
        "-timeout", f"{plan.sipp_timeout:.0f}s", "-nostdin",
        "-trace_stat", "-stf", "stats.csv", "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1",
        *(("-d", f"{scenario.hold * 1000:.0f}") if scenario.hold else ()),
        *scenario.sipp_args, *plan.sipp_extra,
    ]


def _watch(
    process: subprocess.Popen[bytes],
    bound: float,
    samplers: Sequence[Sampler],
    progress: Progress | None,
) -> int:
    """Sample until sipp exits or ``bound`` seconds pass (then kill it); sipp's exit code."""
    started = time.monotonic()
    while True:
        for sampler in samplers:
            sampler.sample()  # before poll(): sipp's last figures, as a zombie
        code = process.poll()
        elapsed = time.monotonic() - started
        if code is not None:
            return code
        if elapsed > bound:
            process.kill()
            return process.wait()
        if progress is not None:
            progress(elapsed)
        time.sleep(SAMPLE_PERIOD)


def _result(
    plan: StepPlan, code: int, server: Sampler | None, sipp: ProcSampler | None
) -> StepResult:
    stats = plan.workdir / "stats.csv"
    if not stats.exists():
        tail = _tail(plan.workdir / "sipp.out")
        raise BenchError(f"sipp exited {code} without statistics:\n{tail}")
    totals = sippstats.read_totals(stats.read_text())
    rtts = _response_times(plan.workdir)
    times = [rtt.ms for rtt in rtts]
    loaded = totals.elapsed_s - plan.scenario.hold  # the last call ended a hold after its set-up
    cpu_s = server.cpu_s if server else None
    return StepResult(
        target_cps=plan.rate,
        planned_calls=plan.calls,
        created=totals.created,
        successful=totals.successful,
        failed=totals.failed,
        retransmissions=totals.retransmissions,
        elapsed_s=round(totals.elapsed_s, 3),
        achieved_cps=round(totals.successful / loaded, 1) if loaded > 0 else 0.0,
        success_pct=round(100 * totals.successful / plan.calls, 3),
        rtt_p50_ms=sippstats.percentile(times, 50),
        rtt_p99_ms=sippstats.percentile(times, 99),
        rtt_max_ms=max(times, default=None),
        server_cpu_pct=server.cpu_pct if server else None,
        server_rss_mb=server.rss_mb if server else None,
        sipp_cpu_pct=sipp.cpu_pct if sipp else None,
        sipp_exit=code,
        started_cps=sippstats.start_rate(rtts),
        server_cpu_s=cpu_s,
        cpu_us_per_call=per_call_us(cpu_s, totals.successful),
        load_avg=round(os.getloadavg()[0], 2),
    ).judge()


def per_call_us(cpu_s: float | None, calls: int) -> float | None:
    """CPU seconds spent on ``calls`` as µs per call (None without either)."""
    if cpu_s is None or calls <= 0:
        return None
    return round(cpu_s / calls * 1e6, 1)


def _response_times(workdir: Path) -> list[sippstats.ResponseTime]:
    # sipp names the file after the scenario and its pid: <scenario>_<pid>_rtt.csv
    times: list[sippstats.ResponseTime] = []
    for path in workdir.glob("*_rtt.csv"):
        times += sippstats.read_rtt(path.read_text())
    return times


# -- the server under test ------------------------------------------------------------
@contextmanager
def _target(plan: StepPlan) -> Iterator[tuple[tuple[str, int], int | None]]:
    """The address sipp sends to and the pid to sample (None if not ours)."""
    if plan.target is not None:
        yield plan.target, None
        return
    if plan.scenario.server is None:
        raise BenchError(f"scenario {plan.scenario.name} starts no server: give a target")
    if plan.transport != "tls":
        with started_server(plan.scenario.server, plan.workdir / "server.log") as (port, pid):
            yield (HOST, port), pid
        return
    env = tls_env(plan.workdir)
    with started_server(plan.scenario.server, plan.workdir / "server.log", env) as (port, pid):
        with tls_tunnel(port + 1, plan.workdir) as tunnel:
            yield (HOST, tunnel), pid


def tls_env(workdir: Path) -> dict[str, str]:
    """A server's TLS listener with a certificate of a CA made here (``ca.pem``)."""
    from sipline.net.testcerts import Authority  # the test extra's cryptography

    authority = Authority.create(workdir, "ca")
    cert = authority.issue("server", ips=[HOST])
    return {
        "SIPLINE_SIP__TRANSPORTS": '["udp", "tcp", "tls"]',
        "SIPLINE_TLS__CERTIFICATE": str(cert.certificate),
        "SIPLINE_TLS__KEY": str(cert.key),
    }


@contextmanager
def tls_tunnel(tls_port: int, workdir: Path) -> Iterator[int]:
    """A TCP port that socat carries over TLS to ``tls_port``, verifying the server."""
    port = free_port()
    target = f"OPENSSL:{HOST}:{tls_port},cafile={workdir / 'ca.pem'},verify=1,nodelay"
    process = subprocess.Popen(
        ["socat", f"TCP-LISTEN:{port},bind={HOST},reuseaddr,fork,nodelay", target],
        stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(0.3)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(5)


@contextmanager
def started_server(
    server: Server, log: Path, extra: Mapping[str, str] | None = None
) -> Iterator[tuple[int, int]]:
    """Start ``server`` on a free port, wait until it answers; yield (port, pid); stop it."""
    port = free_port()
    env = {**os.environ, **server.env, **(extra or {}), server.port_env: str(port)}
    argv = [str(VENV_BIN / server.argv[0]), *server.argv[1:]]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_ready(process, port, server.start_timeout, log, server.ready or answers_options)
        yield port, process.pid
    finally:
        _stop(process, server.stop_timeout)


def _wait_ready(
    process: subprocess.Popen[bytes],
    port: int,
    timeout: float,
    log: Path,
    ready: Callable[[int], bool],
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"server exited {process.returncode}:\n{_tail(log)}")
        if ready(port):
            return
        time.sleep(0.1)
    raise BenchError(f"server did not answer OPTIONS within {timeout:.0f} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers_options(port: int, timeout: float = 0.2) -> bool:
    """Whether something on 127.0.0.1:``port`` answers one OPTIONS over UDP with 200."""
    branch = f"z9hG4bKbench{time.monotonic_ns()}"
    request = (
        f"OPTIONS sip:probe@{HOST}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{port};branch={branch};rport\r\n"
        f"From: <sip:bench@{HOST}>;tag=b\r\nTo: <sip:probe@{HOST}>\r\n"
        f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((HOST, port))
            sock.send(request.encode())
            return sock.recv(65535).startswith(b"SIP/2.0 200 ")
        except OSError:
            return False



def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""


# -- /proc sampling -----------------------------------------------------------------------
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ProcSampler:
    """CPU time and resident memory of a process, or of it and all its
    descendants (``tree``: Kamailio's workers, a role's), from /proc/<pid>/stat.

    CPU seconds are those each process used between its first and its last
    successful sample (a process that appears later counts from then); CPU%
    is that over the wall time between the first and the last sample (100 =
    one core busy). RSS is the largest sampled sum.
    """

    def __init__(self, pid: int, tree: bool = False) -> None:
        self.pid = pid
        self.tree = tree
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (first, last) CPU seconds
        self._walls: tuple[float, float] | None = None  # (first, last) monotonic
        self._rss_max = 0

    @classmethod
    def start(cls, pid: int | None, tree: bool = False) -> ProcSampler | None:
        if pid is None:
            return None
        sampler = cls(pid, tree)
        sampler.sample()
        return sampler

    def sample(self) -> None:
        seen = False
        rss_sum = 0
        for pid in descendants(self.pid) if self.tree else (self.pid,):
            try:
                cpu, rss = read_proc_stat(Path(f"/proc/{pid}/stat").read_text())
            except (OSError, ValueError):
                continue  # gone: keep what was seen
            seen = True
            first, _ = self._cpu.get(pid, (cpu, cpu))
            self._cpu[pid] = (first, cpu)
            rss_sum += rss
        if not seen:
            return
        now = time.monotonic()
        self._walls = (self._walls[0] if self._walls else now, now)
        self._rss_max = max(self._rss_max, rss_sum)

    @property
    def cpu_s(self) -> float | None:
        """CPU seconds used between the samples (None before two samples)."""
        if self._walls is None or self._walls[1] <= self._walls[0]:
            return None
        return round(sum(last - first for first, last in self._cpu.values()), 3)

    @property
    def cpu_pct(self) -> float | None:
        cpu = self.cpu_s
        if cpu is None or self._walls is None:
            return None
        return round(100 * cpu / (self._walls[1] - self._walls[0]), 1)

    @property
    def rss_mb(self) -> float | None:
        return round(self._rss_max / 2**20, 1) if self._rss_max else None


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from the parent pids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        parent = int(text[text.rindex(")") + 2 :].split(maxsplit=2)[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, ())
    return found


def read_proc_stat(text: str) -> tuple[float, int]:
    """(user + system CPU seconds, resident bytes) from the text of /proc/<pid>/stat."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, rss_pages = int(fields[11]), int(fields[12]), int(fields[21])
    return (utime + stime) / _CLOCK_TICKS, rss_pages * _PAGE_SIZE


def run_steps(
    plans: Sequence[StepPlan],
    sipp: str,
    progress: Callable[[int, float], None] | None = None,
) -> list[StepResult]:
    """Run ``plans`` in order; ``progress(step_index, seconds)`` while each runs."""
    results = []
    for index, plan in enumerate(plans):
        tick = (lambda s, i=index: progress(i, s)) if progress is not None else None
        results.append(run_step(plan, sipp, tick))
    return results
