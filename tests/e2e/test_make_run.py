"""`make run` with metrics on: each role serves /metrics and /status on a port of
its own ([metrics] port + 0..4; all five bound the same one and the stack died).
Its documented Ctrl-C stops every role: SIGINT to make's process group (what a
terminal's Ctrl-C sends) and SIGINT to make alone (`kill -INT <make>`, which GNU
make does not pass on to its children) both leave no process behind. The stack
runs on free ports with a database of its own (environment variables override
configs/single.toml)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from bench.proxystack import REPO, free_port, wait_until_answering
from sipline.net.ports import free_port as free_ports
from tests.e2e.stacks import START_TIMEOUT, stack_env

pytestmark = pytest.mark.e2e

STOP_TIMEOUT = 30.0


def descendants(pid: int) -> set[int]:
    """Every process under ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("to", ["process group", "make alone"])
def test_sigint_to_make_run_stops_every_role(to: str, tmp_path: Path, sipp_bin: str) -> None:
    names = ("proxy", "b2bua", "primary", "secondary", "carrier")
    ports = {name: free_port() for name in names}
    metrics = free_ports("127.0.0.1", span=5)
    env = {**stack_env(tmp_path, ports, None), "SIPLINE_METRICS__PORT": str(metrics)}
    log = (tmp_path / "make.log").open("wb")
    make = subprocess.Popen(
        ["make", "-C", str(REPO), "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal gives it
    )  # fmt: skip
    try:
        assert wait_until_answering(ports["proxy"], START_TIMEOUT, make), (
            tmp_path / "make.log"
        ).read_text()[-3000:]
        deadline = time.monotonic() + START_TIMEOUT
        while (tmp_path / "make.log").read_text().count("event=acr_started") < 2:
            assert time.monotonic() < deadline, (tmp_path / "make.log").read_text()[-3000:]
            time.sleep(0.2)
        text = (tmp_path / "make.log").read_text()
        roles = ("proxy", "b2bua", "acr-primary", "acr-secondary", "relay")
        for i, role in enumerate(roles):
            assert f"{role} http://127.0.0.1:{metrics + i}/" in text  # printed at start
        for i, role in enumerate(("proxy", "b2bua", "acr", "acr", "relay")):
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics + i}/status", timeout=5) as r:
                assert json.loads(r.read())["role"] == role
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics + i}/metrics", timeout=5) as r:
                assert b"sipline_node_info{" in r.read()
        pids = descendants(make.pid)
        assert len(pids) >= 7, pids  # the stack, five roles, the simulated carrier
        if to == "process group":
            os.killpg(make.pid, signal.SIGINT)
        else:
            os.kill(make.pid, signal.SIGINT)
        make.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in pids if alive(pid)]
        assert not left, f"left running: {left}\n{(tmp_path / 'make.log').read_text()[-3000:]}"
    finally:
        for pid in descendants(make.pid) | {make.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
