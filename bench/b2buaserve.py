"""``python -m bench.b2buaserve``: the B2BUA alone as the bench runner's server (scenarios
``b2bua`` and ``b2bua_hold``).

The runner starts it on a free port (``SIPLINE_SIP__PORT``) and samples the CPU
and memory of the process it started, so this process becomes ``sipline
b2bua`` (exec: same pid) on that port once a helper it starts has the far
side up: one sipp UAS (``bench/scenarios/b2bua_uas.xml``, -aa for the
B2BUA's OPTIONS probes) standing in for the ACR pair (both ``b2bua.acr``
entries name it) and a SQLite database in a temporary directory (no
accounts: no licence check). The helper leaves a marker file that
``ready`` looks for and, when the B2BUA has exited, stops the UAS and
removes the directory. sipp's UAC (``b2bua_uac.xml``) is the proxy's side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import serving
from bench.proxystack import REPO, SIPLINE
from sipline.net.ports import free_port

SCENARIOS = REPO / "bench" / "scenarios"
START_TIMEOUT = 30.0
UAS_TIMEOUT = "3600s"  # a UAS left behind by a killed helper still ends
NAME = "b2bua"


def ready(port: int) -> bool:
    """The helper has the far side up, and the B2BUA answers OPTIONS."""
    return serving.ready(NAME, port)


def main(argv: list[str]) -> int:
    if argv[:1] == ["helper"]:
        return helper(int(argv[1]), int(argv[2]), Path(argv[3]), int(argv[4]))
    port = int(os.environ["SIPLINE_SIP__PORT"])
    uas = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="sipline-bench-b2bua-"))
    serving.start_helper("bench.b2buaserve", port, uas, workdir, prints=False)
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    env = {
        **clean,
        "SIPLINE_LOG__LEVEL": "warning",
        "SIPLINE_DATABASE__URL": f"sqlite:///{workdir / 'sipline.db'}",
        "SIPLINE_B2BUA__HOST": "127.0.0.1",
        "SIPLINE_B2BUA__PORT": str(port),
        "SIPLINE_B2BUA__ACR": f'["127.0.0.1:{uas}", "127.0.0.1:{uas}"]',
        "SIPLINE_B2BUA__MEDIA_RELAY": "",
        "SIPLINE_B2BUA__TRUSTED": '["127.0.0.1"]',  # sipp plays the proxy
        **serving.sipline_settings(),
    }
    serving.become([str(SIPLINE), "b2bua", "--config", "configs/single.toml"], env)


def helper(port: int, uas_port: int, workdir: Path, parent: int) -> int:
    sipp = shutil.which("sipp") or "/usr/bin/sipp"
    uas = subprocess.Popen(
        [sipp, "-sf", str(SCENARIOS / "b2bua_uas.xml"), "-i", "127.0.0.1", "-p", str(uas_port),
         "-aa", "-timeout", UAS_TIMEOUT, "-nostdin", "-trace_err",
         "-error_file", str(workdir / "uas-errors.log")],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        serving.wait_for(lambda: serving.answers(uas_port), parent, START_TIMEOUT)
        serving.beside(NAME, port, parent)
    finally:
        serving.stop(uas)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
