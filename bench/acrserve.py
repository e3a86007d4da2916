"""``python -m bench.acrserve``: one ACR node as the bench runner's server (scenario ``acr``).

The runner starts it on a free port (``SIPLINE_SIP__PORT``) and samples the
CPU of the process it started, so this process becomes ``sipline acr --node
primary`` (exec: same pid) once a helper it starts has the stack ready:

- a SQLite database in a temporary directory with three carriers, each a
  sipp UAS (``bench/scenarios/acr_carrier*.xml``): "flaky" (0.005/min for
  4410, answers 500) and "main" (0.01/min) and "spare" (0.02/min) for 44,
  both answering; a price-only profile for 4410, so the 1 call in 10 that
  dials 4410 (``acr-numbers.csv``) tries flaky first and fails over;
- it leaves a marker file that ``ready`` looks for, and when the ACR has
  exited, stops the carriers and removes the directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench import serving
from bench.acrstack import REPO, SippCarrier, acr_command, acr_env, provision, sipp_binary
from sipline.carriers.model import RoutingProfile

SCENARIOS = REPO / "bench" / "scenarios"
NUMBERS_CSV = SCENARIOS / "acr-numbers.csv"
START_TIMEOUT = 60.0
NAME = "acr"


def ready(port: int) -> bool:
    """The helper has the carriers up, and the ACR answers OPTIONS."""
    return serving.ready(NAME, port)


def carriers() -> list[SippCarrier]:
    return [
        SippCarrier("flaky", 0.005, SCENARIOS / "acr_carrier_500.xml", prefix="4410"),
        SippCarrier("main", 0.01, SCENARIOS / "acr_carrier.xml"),
        SippCarrier("spare", 0.02, SCENARIOS / "acr_carrier.xml"),
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["helper"]:
        return helper(int(argv[1]), int(argv[2]))
    port = int(os.environ["SIPLINE_SIP__PORT"])
    child = serving.start_helper("bench.acrserve", port)
    url = serving.first_line(child)
    if not url:
        return child.wait() or 1
    extra = serving.sipline_settings()
    extra |= {"SIPLINE_ACR__EXPLORATION": "0", "SIPLINE_NODE__DATA_DIR": str(Path(url[10:]).parent)}
    extra["SIPLINE_ACR__TRUSTED"] = '["127.0.0.1"]'  # sipp plays the B2BUA
    env = acr_env(f"127.0.0.1:{port}", url, os.environ.get("SIPLINE_REDIS__URL"), extra)
    serving.become(acr_command(), env)


def helper(port: int, parent: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="sipline-bench-acr-"))
    stack = carriers()
    try:
        url = f"sqlite:///{workdir / 'sipline.db'}"
        asyncio.run(provision(url, stack, [RoutingProfile("4410", 0.0, 0.0, 1.0)]))
        for carrier in stack:
            carrier.start(sipp_binary(), workdir)
        print(url, flush=True)
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the runner's server log
        serving.wait_for(lambda: serving.answers(port), parent, START_TIMEOUT)
        serving.beside(NAME, port, parent)
    finally:
        for carrier in stack:
            carrier.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
