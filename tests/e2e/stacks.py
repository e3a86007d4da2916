"""`sipline stack` (what `make run` starts) as real processes on free ports of
127.0.0.1 with a SQLite database of its own, for the end-to-end tests: relay,
proxy, B2BUA, both ACR nodes and the simulated carrier (sipp); optionally on a
private Redis. ``Stack.sipline(...)`` runs an operator command against it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bench.chain import stack_env
from bench.proxystack import REPO, free_port, wait_until_answering

START_TIMEOUT = 60.0
CONFIG = str(REPO / "configs/single.toml")


class Stack:
    def __init__(self, workdir: Path, env: dict[str, str], ports: dict[str, int]) -> None:
        self.workdir = workdir
        self.env = env
        self.ports = ports
        self.proxy_port = ports["proxy"]
        self.log = workdir / "stack.log"
        self.process: subprocess.Popen[bytes] | None = None

    def run(self, *words: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """An operator command (``sipline WORDS``) against this stack."""
        command = [sys.executable, "-m", "sipline.cli", "--config", CONFIG, *words]
        return subprocess.run(
            command, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=60,
            input=stdin,
        )  # fmt: skip

    def sipline(self, *words: str) -> str:
        done = self.run(*words)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def status(self) -> dict[str, dict[str, Any]]:
        """``sipline status --json`` by node name."""
        return {r["name"]: r for r in json.loads(self.sipline("status", "--json"))}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _accepting(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` (the portal)."""
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


@contextmanager
def running_stack(tmp_path: Path, redis_url: str | None = None) -> Iterator[Stack]:
    """The whole stack, started and every role up; stopped with SIGINT afterwards."""
    names = ("proxy", "b2bua", "primary", "secondary", "carrier", "portal")
    ports = {name: free_port() for name in names}
    stack = Stack(tmp_path, stack_env(tmp_path, ports, redis_url), ports)
    command = [sys.executable, "-m", "sipline.cli", "--config", CONFIG, "stack",
               "--carrier-port", str(ports["carrier"])]  # fmt: skip
    with stack.log.open("wb") as log:
        stack.process = subprocess.Popen(command, env=stack.env, cwd=REPO, stdout=log, stderr=log)
    try:
        if not wait_until_answering(ports["proxy"], START_TIMEOUT, stack.process):
            pytest.fail(f"the stack did not start\n{stack.log_text()[-5000:]}", pytrace=False)
        deadline = time.monotonic() + START_TIMEOUT
        while stack.log_text().count("event=acr_started") < 2 or (
            "b2bua_started" not in stack.log_text() or not _accepting(ports["portal"])
        ):
            if time.monotonic() > deadline or stack.process.poll() is not None:
                pytest.fail(f"roles did not start\n{stack.log_text()[-5000:]}", pytrace=False)
            time.sleep(0.2)
        yield stack
    finally:
        stack.process.send_signal(signal.SIGINT)
        try:
            stack.process.wait(30)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            stack.process.wait()
