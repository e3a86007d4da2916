"""The supervisor: the parent of ``[node] workers`` processes of one role.

It binds every worker's own UDP socket (sipline.net.workers) and keeps it
for the life of the node, so a restarted worker gets its port back and what
arrived meanwhile waits in the socket's buffer. It starts each worker as the
same command with ``--worker INDEX/FD/PORTS``, its own node name
(``NAME/INDEX``) and its own admin port; starts again a worker that dies
(counted, logged with its exit status, sooner or later as it keeps dying:
``RESTART_DELAYS``); passes SIGTERM and SIGINT on to every worker, which
drains, and waits for them. Its own admin endpoint (``[metrics] host:port``)
shows every worker's health at ``/status`` and every worker's metrics at
``/metrics``, each sample labelled with its ``worker``.

Each worker is a node of the cluster of its own (``sipline status`` lists
them); nothing here knows what a role does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sipline.cluster import client
from sipline.logs import event
from sipline.net.admin import AdminRequest, AdminServer
from sipline.net.ports import free_port
from sipline.net.signals import STOP_SIGNALS
from sipline.net.transport import udp_socket
from sipline.net.workers import Workers
from sipline.sip.headers import format_host_port

log = logging.getLogger("sipline.supervisor")

POLL = 0.1  # seconds between looks at the workers
RESTART_DELAYS = (0.0, 0.5, 1.0, 2.0, 5.0)  # after the 1st, 2nd ... death in a row
STEADY = 10.0  # seconds a worker must live for its next death to count as the first again
STOP_GRACE = 5.0  # seconds past drain_timeout before a worker that does not stop is killed
ASK_TIMEOUT = 0.5  # seconds to wait for a worker's admin endpoint
PR_SET_PDEATHSIG = 1


@dataclass
class Worker:
    """One worker: ``admin`` (HOST:PORT) and ``fd`` (its own socket) are its for life."""

    index: int
    name: str
    admin: str
    fd: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    deaths_in_a_row: int = 0
    last_exit: int | None = None
    due: float = 0.0  # when to start it again (monotonic)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Supervisor:
    """``count`` workers running ``command`` (the role's, without ``--worker``)."""

    settings: Any
    role: str
    name: str
    command: Sequence[str]
    count: int
    workers: list[Worker] = field(default_factory=list)
    stopping: bool = False
    restarts: int = 0

    async def run(self) -> int:
        """Run the workers until SIGTERM or SIGINT; 0 once every one has stopped."""
        sip, metrics = self.settings.sip, self.settings.metrics
        sockets = [udp_socket(sip.host, 0) for _ in range(self.count)]
        ports = tuple(s.getsockname()[1] for s in sockets)
        for index, sock in enumerate(sockets):
            os.set_inheritable(sock.fileno(), True)
            admin = format_host_port(metrics.host, free_port(metrics.host))
            self.workers.append(Worker(index, f"{self.name}/{index}", admin, sock.fileno()))
        server = AdminServer(metrics.host, metrics.port)
        await server.start()
        server.view("/status", self._status)
        server.view("/metrics", self._metrics)
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[signal.Signals] = loop.create_future()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, _settle, stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._tell_all, signal.SIGHUP)  # TLS reload
        event(log, "supervisor_started", role=self.role, node=self.name, workers=self.count,
              ports=",".join(map(str, ports)), admin=server.address)  # fmt: skip
        try:
            for worker in self.workers:
                self._start(worker, ports)
            while not stop.done():
                await asyncio.wait([stop], timeout=POLL)
                if not stop.done():
                    self._look(ports)
            received = stop.result()
            event(log, "signal", signal=received.name)
            await self._stop_all(received)
        finally:
            for sig in (*STOP_SIGNALS, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            for worker in self.workers:
                if worker.alive and worker.process is not None:
                    worker.process.kill()
            await server.close()
            for sock in sockets:
                sock.close()
        return 0

    # -- the workers' lives -------------------------------------------------------------
    def _start(self, worker: Worker, ports: tuple[int, ...]) -> None:
        spec = Workers(worker.index, ports, worker.fd).spec()
        host, _, port = worker.admin.rpartition(":")
        host = host.strip("[]")
        env = {
            **os.environ,
            "SIPLINE_NODE__NAME": worker.name,
            "SIPLINE_NODE__WORKERS": str(self.count),
            "SIPLINE_METRICS__HOST": host,
            "SIPLINE_METRICS__PORT": port,
        }
        worker.process = subprocess.Popen(
            [*self.command, "--worker", spec], env=env, pass_fds=(worker.fd,),
            process_group=0, preexec_fn=_prepare_worker,
        )  # fmt: skip
        worker.started_at = time.time()
        event(log, "worker_started", worker=worker.index, pid=worker.process.pid,
              restarts=worker.restarts)  # fmt: skip

    def _look(self, ports: tuple[int, ...]) -> None:
        """Start again each worker that died, once its delay has passed."""
        now = time.monotonic()
        for worker in self.workers:
            process = worker.process
            if process is not None and process.poll() is not None:
                lived = time.time() - worker.started_at
                worker.last_exit = process.returncode
                worker.process = None
                worker.deaths_in_a_row = 1 if lived >= STEADY else worker.deaths_in_a_row + 1
                delay = RESTART_DELAYS[min(worker.deaths_in_a_row, len(RESTART_DELAYS)) - 1]
                worker.due = now + delay
                event(log, "worker_died", logging.WARNING, worker=worker.index, pid=process.pid,
                      status=process.returncode, lived=round(lived, 1), restart_in=delay)  # fmt: skip
                self._tell_all(signal.SIGUSR1)  # the set of sockets changed
            if worker.process is None and now >= worker.due:
                worker.restarts += 1
                self.restarts += 1
                self._start(worker, ports)
                self._tell_all(signal.SIGUSR1)

    def _tell_all(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every live worker: SIGUSR1 when the set of workers changed
        (sipline.net.workers.CHANGED_WINDOW), SIGHUP to reload the TLS files."""
        for worker in self.workers:
            if worker.alive and worker.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)

    async def _stop_all(self, received: signal.Signals) -> None:
        """Pass ``received`` on to every worker (each drains); kill those still there
        after ``node.drain_timeout`` and ``STOP_GRACE``."""
        self.stopping = True
        running = [w.process for w in self.workers if w.alive and w.process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(received)
        deadline = time.monotonic() + self.settings.node.drain_timeout + STOP_GRACE
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
        for process in running:
            if process.poll() is None:
                event(log, "worker_killed", logging.WARNING, pid=process.pid)
                process.kill()
                process.wait()
        event(log, "supervisor_stopped", role=self.role, restarts=self.restarts)

    # -- the admin endpoint ---------------------------------------------------------------
    async def _status(self, request: AdminRequest) -> dict[str, Any]:
        answers = await asyncio.gather(
            *(client.get(w.admin, "/status", timeout=ASK_TIMEOUT) for w in self.workers)
        )
        workers = []
        healthy = 0
        for worker, answer in zip(self.workers, answers, strict=True):
            status = answer.body if answer is not None and answer.ok else None
            # Running: answering, and its own state says it takes work (not syncing, drained).
            if isinstance(status, dict) and status.get("state") == "running":
                healthy += 1
            workers.append({
                "index": worker.index, "name": worker.name, "pid": worker.pid,
                "alive": worker.alive, "answering": isinstance(status, dict),
                "restarts": worker.restarts, "last_exit": worker.last_exit,
                "started_at": worker.started_at, "admin": worker.admin, "status": status,
            })  # fmt: skip
        return {
            "name": self.name, "role": self.role, "supervisor": os.getpid(),
            "workers": self.count, "healthy": healthy, "restarts": self.restarts,
            "state": "stopping" if self.stopping else "running" if healthy == self.count
            else "degraded",
            "per_worker": workers,
        }  # fmt: skip

    async def _metrics(self, request: AdminRequest) -> bytes:
        pages = await asyncio.gather(*(_page(w.admin) for w in self.workers))
        own = [
            "# HELP sipline_worker_up Whether the worker answers its admin endpoint",
            "# TYPE sipline_worker_up gauge",
            *(f'sipline_worker_up{{worker="{w.index}"}} {int(p is not None)}'
              for w, p in zip(self.workers, pages, strict=True)),
            "# HELP sipline_worker_restarts_total Workers started again after they died",
            "# TYPE sipline_worker_restarts_total counter",
            *(f'sipline_worker_restarts_total{{worker="{w.index}"}} {w.restarts}'
              for w in self.workers),
        ]  # fmt: skip
        merged = merge_metrics({str(w.index): p for w, p in zip(self.workers, pages, strict=True)
                                if p is not None})  # fmt: skip
        return ("\n".join(own) + "\n" + merged).encode()


async def _page(admin: str) -> str | None:
    answer = await client.get(admin, "/metrics", timeout=ASK_TIMEOUT)
    if answer is None or not answer.ok or not isinstance(answer.body, bytes):
        return None
    return answer.body.decode(errors="replace")


def merge_metrics(pages: dict[str, str]) -> str:
    """The Prometheus text pages of the workers (by worker) as one page: each family
    once, with every worker's samples labelled ``worker``. A worker that did not
    answer has no samples (its ``sipline_worker_up`` says so): never a silent 0."""
    order: list[str] = []
    heads: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in pages.items():
        family = ""
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                family = line.split(" ", 3)[2]
                if family not in heads:
                    order.append(family)
                    heads[family], samples[family] = [], []
                if len(heads[family]) < 2 and line not in heads[family]:
                    heads[family].append(line)
            elif line and not line.startswith("#"):
                if family not in samples:  # a sample before any HELP: a family of its own
                    order.append(family)
                    heads[family], samples[family] = [], []
                samples[family].append(_labelled(line, worker))
    return "".join("\n".join(heads[f] + samples[f]) + "\n" for f in order)


def _labelled(sample: str, worker: str) -> str:
    """``sample`` (``name{labels} value`` or ``name value``) with ``worker`` added first."""
    label = f'worker="{worker}"'
    brace = sample.find("{")
    space = sample.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        closing = sample[brace + 1 :].lstrip().startswith("}")
        return f"{sample[: brace + 1]}{label}{'' if closing else ','}{sample[brace + 1 :]}"
    return f"{sample[:space]}{{{label}}}{sample[space:]}"


def _settle(future: asyncio.Future[signal.Signals], sig: signal.Signals) -> None:
    if not future.done():
        future.set_result(sig)


def _prepare_worker() -> None:
    """In the child before exec: SIGUSR1 and SIGHUP ignored until the node handles
    them (a worker told of a change while it starts must not die of it), and
    SIGTERM when the supervisor dies (even by SIGKILL), so no worker outlives it
    holding the address (Linux; elsewhere nothing)."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def worker_command(argv: Sequence[str] | None = None) -> list[str]:
    """The command that started this process, to start a worker with (``--worker`` added)."""
    return [sys.executable, "-m", "sipline.cli", *(sys.argv[1:] if argv is None else argv)]
