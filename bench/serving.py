"""What the bench servers (``bench.proxyserve``, ``bench.b2buaserve``,
``bench.acrserve``) do the same way.

The runner starts a server on a free port (``SIPLINE_SIP__PORT``) and samples
the CPU and memory of the process it started. So that process starts a helper
(``start_helper``: ``python -m bench.X helper ... PARENT``), then becomes the
role itself (``become``: exec, same pid). The helper readies what the role
needs beside it (a database, sipp peers), waits for the role to answer
(``wait_for``), and stays ``beside`` it: a marker file tells the runner's
``ready`` check that all is up, and when the role exits (the helper's parent
changes) the helper cleans up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from bench.proxystack import REPO, answers_options

PARENT_POLL = 0.2  # seconds between the helper's looks at its parent


def answers(port: int) -> bool:
    """Whatever listens on ``port`` answers an OPTIONS with 200."""
    answer = answers_options(port, timeout=0.2)
    return answer is not None and answer.startswith(b"SIP/2.0 200 ")


def ready_marker(name: str, port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"sipline-bench-{name}-{port}.ready"


def ready(name: str, port: int) -> bool:
    """The helper of server ``name`` on ``port`` has all up, and the server answers OPTIONS."""
    return ready_marker(name, port).exists() and answers(port)


def start_helper(module: str, *args: object, prints: bool = True) -> subprocess.Popen[bytes]:
    """``python -m MODULE helper ARGS... PARENT`` (PARENT: this pid); its stdout a
    pipe when it ``prints`` a line to read (``first_line``), else the server's."""
    command = [sys.executable, "-m", module, "helper", *map(str, args), str(os.getpid())]
    return subprocess.Popen(command, stdout=subprocess.PIPE if prints else None, cwd=REPO)


def first_line(helper: subprocess.Popen[bytes]) -> str:
    """The first line the helper prints (a database URL), "" if it ended first."""
    assert helper.stdout is not None
    return helper.stdout.readline().decode().strip()


def sipline_settings() -> dict[str, str]:
    """The SIPLINE_* settings the runner gave the server, but its port (the role's own)."""
    settings = {k: v for k, v in os.environ.items() if k.startswith("SIPLINE_")}
    settings.pop("SIPLINE_SIP__PORT", None)
    return settings


def become(command: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Exec ``command`` in the repository: the runner's process becomes the role."""
    os.chdir(REPO)
    os.execve(command[0], list(command), dict(env))  # noqa: S606 - same pid


def parent_alive(parent: int) -> bool:
    return os.getppid() == parent


def wait_for(check: Callable[[], bool], parent: int, timeout: float) -> bool:
    """Poll ``check`` until it holds (True), ``timeout`` passes or the parent is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and parent_alive(parent):
        if check():
            return True
        time.sleep(0.05)
    return False


def beside(name: str, port: int, parent: int) -> None:
    """Leave the ready marker of server ``name`` on ``port`` until the role exits."""
    marker = ready_marker(name, port)
    marker.touch()
    try:
        while parent_alive(parent):
            time.sleep(PARENT_POLL)
    finally:
        marker.unlink(missing_ok=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a peer the helper started (kill it if it lingers)."""
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
