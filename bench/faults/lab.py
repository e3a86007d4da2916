"""The processes of a fault experiment: every one started here, so every one may be killed.

``Lab`` starts them (sipline nodes, redis-server, sipp peers) under one
working directory, notes each kill and restart with its wall-clock time, and
kills whatever is left at ``close()``: its ``Program``s and the sipp peers
started elsewhere that it was told to ``watch``. A ``Program`` keeps its command and
environment, so ``kill()`` (SIGKILL: no goodbye, as a crash) and ``start()``
again bring back the same node on the same port with the same data.

``BlackHole`` stands for a dead host on a killed node's port: it takes every
datagram, answers none, and notes the requests that came (the B2BUA's
INVITEs retransmitted after failover, or new calls sent to a node it should
skip). Without it, the kernel's ICMP "port unreachable" would tell the sender
what a crashed machine never tells.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.acrstack import HOST, REPO
from bench.serving import answers
from sipline.net.ports import free_port
from sipline.storage.testing import MariaDB, PrivateMariaDB

START_TIMEOUT = 30.0


class LabError(RuntimeError):
    """A part of the experiment did not start; the message says which, with its log's end."""


@dataclass
class Program:
    """A process of ours: its command, environment and log, started again alike after a kill."""

    name: str
    command: Sequence[str]
    log: Path
    ready: Callable[[], bool]
    env: Mapping[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start it and wait until ``ready``; LabError with its log if it exits or is late."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                list(self.command), cwd=REPO, env=None if self.env is None else dict(self.env),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        raise LabError(f"{self.name} not ready in {timeout:g} s:\n{self.tail()}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.alive:
            assert self.process is not None
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: a node that hangs (its socket still takes datagrams, it reads none)."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: it reads what queued up meanwhile, all at once."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (a node drains), SIGKILL if it lingers; its exit status."""
        if not self.alive:
            return None if self.process is None else self.process.returncode
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""


def connects(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), 0.2).close()
        return True
    except OSError:
        return False


@dataclass
class Seen:
    """A request that reached a black hole."""

    time: float
    method: str
    call_id: str
    cseq: int


class BlackHole:
    """A UDP port that swallows everything and notes the requests (see the module's doc)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[Seen] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, port))
        self._sock.settimeout(0.1)
        self._open = True
        self._thread = threading.Thread(target=self._run, name=f"black-hole-{port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._open:
            try:
                data = self._sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            seen = _request(data)
            if seen is not None:
                self.seen.append(seen)

    def close(self) -> None:
        """Free the port (the node starts again on it)."""
        self._open = False
        self._thread.join()
        self._sock.close()

    def invites(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "INVITE"]


def _request(data: bytes) -> Seen | None:
    text = data.decode(errors="replace")
    head, _, _ = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    if not lines or lines[0].startswith("SIP/2.0"):
        return None
    call_id, cseq = "", 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in ("call-id", "i"):
            call_id = value.strip()
        elif name == "cseq":
            number = value.split()[0] if value.split() else ""
            cseq = int(number) if number.isdigit() else 0
    return Seen(time.time(), lines[0].split(" ", 1)[0], call_id, cseq)


def retransmitted_after(invites: Sequence[Seen], after: float) -> int:
    """INVITE transactions (Call-ID, CSeq) retransmitted more than ``after`` seconds
    after their first copy came: still retransmitted once the sender had failed over."""
    first: dict[tuple[str, int], float] = {}
    late: set[tuple[str, int]] = set()
    for seen in invites:
        key = (seen.call_id, seen.cseq)
        start = first.setdefault(key, seen.time)
        if seen.time - start > after:
            late.add(key)
    return len(late)


def program_path(name: str) -> str:
    """An installed program, looked for in the sbin directories too (Debian's redis-server...)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        raise LabError(f"{name} is not installed (scripts/bootstrap.sh installs it)")
    return found


@dataclass
class Lab:
    """One experiment's processes under ``workdir``; ``close()`` kills what is left."""

    workdir: Path
    sipp: str
    programs: list[Program] = field(default_factory=list)
    holes: list[BlackHole] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    peers: list[subprocess.Popen[bytes]] = field(default_factory=list)  # sipp callers, carriers

    def note(self, what: str) -> float:
        """Note an event (a kill, a restart) at the current wall-clock time; that time."""
        now = time.time()
        self.events.append((now, what))
        return now

    def program(self, name: str, command: Sequence[str], ready: Callable[[], bool],
                env: Mapping[str, str] | None = None) -> Program:  # fmt: skip
        self.workdir.mkdir(parents=True, exist_ok=True)
        program = Program(name, command, self.workdir / f"{name}.log", ready, env)
        self.programs.append(program)
        return program

    def node(self, name: str, command: Sequence[str], port: int, env: Mapping[str, str]) -> Program:
        """A sipline node (``sipline acr ...``), ready once it answers OPTIONS on ``port``."""
        return self.program(name, command, lambda: answers(port), env)

    def redis(self, name: str = "redis") -> Redis:
        """A redis-server of this experiment's own, without persistence: a restart is empty."""
        port = free_port(HOST)
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        command = [
            program_path("redis-server"), "--port", str(port), "--bind", HOST, "--save", "",
            "--appendonly", "no", "--dir", str(directory),
        ]  # fmt: skip
        return Redis(self.program(name, command, lambda: connects(port)), port)

    def watch(self, process: subprocess.Popen[bytes] | None) -> None:
        """A process started elsewhere (a sipp carrier or caller): ``close()`` kills it too,
        so a test that fails or times out leaves no sipp behind."""
        if process is not None:
            self.peers.append(process)

    def black_hole(self, port: int) -> BlackHole:
        hole = BlackHole(port)
        self.holes.append(hole)
        return hole

    def crash(self, program: Program) -> float:
        """SIGKILL ``program``; the time of the kill."""
        program.kill()
        return self.note(f"{program.name} killed")

    def revive(self, program: Program, hole: BlackHole | None = None) -> float:
        """Start ``program`` again (freeing its port from ``hole`` first); when it was ready."""
        if hole is not None:
            hole.close()
        program.start()
        return self.note(f"{program.name} back")

    def close(self) -> None:
        for program in self.programs:
            program.thaw()  # a stopped process would not die of SIGTERM; SIGKILL is fine
        for hole in self.holes:
            if hole._open:
                hole.close()
        for program in reversed(self.programs):
            program.kill()
        for process in self.peers:
            if process.poll() is None:
                process.kill()
            process.wait()
        self.peers.clear()


@dataclass
class Redis:
    program: Program
    port: int

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


def clean_env(**settings: str) -> dict[str, str]:
    """The environment without any SIPLINE_* of the caller's, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    return {**env, **settings}


def mariadb_server(mariadb: PrivateMariaDB) -> MariaDB:
    """The server of a started PrivateMariaDB, to make databases on."""
    if mariadb.port is None:
        raise LabError("start() the PrivateMariaDB first")
    return MariaDB(HOST, mariadb.port)
