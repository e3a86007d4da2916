"""``sipline stack``: every role on one box, as ``make run`` starts it.

Each role runs as its own ``sipline <role>`` process with the same config, so
they talk to each other only over SIP, ng, the database and Redis, exactly as
on separate machines (docs/design.md); this module imports no role. Before they
start, the schema is migrated and demo data provisioned through the same
commands an operator types: subscribers, a carrier with a rate deck, a DID.
A simulated carrier (sipp as a UAS that answers probes and calls) stands at
the demo carrier's gateway, so a call from a demo phone to a PSTN number goes
phone → proxy → B2BUA → ACR → carrier and is answered.

The web portal (``sipline portal``, on ``[portal] listen``) runs beside them,
with a demo operator login printed at start.

Each role gets its own admin port (``[metrics] port`` + 0..4 in the order
proxy, B2BUA, ACR primary, ACR secondary, relay; free ports when it is 0),
printed at start; ``sipline status`` finds them through the ``nodes`` table.

The stack stops as a whole: SIGINT or SIGTERM, or any process ending, stops
every other one with SIGTERM (each drains) and the exit status says which.
So does its parent starting to die of a signal: GNU make, sent SIGINT alone
(``kill -INT <make>``, not Ctrl-C to the whole group), does not pass it on
but waits for its children (commands.c, fatal_error_signal), so the stack
watches for that (``ParentWatch``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sipline.config import REPO, Settings, find_config
from sipline.net.ports import free_port

DEMO_USERS = ("alice", "bob")
DEMO_CARRIER = "demo-carrier"
DEMO_CARRIER_PORT = 5090
DEMO_DID = "15550100"
DEMO_OPERATOR = ("operator", "operator-demo-pw")  # the portal's demo login (admin role)
CARRIER_SCENARIO = REPO / "bench" / "scenarios" / "acr_carrier.xml"
STOP_GRACE = 10.0  # seconds a process may take to drain after SIGTERM


@dataclass
class Process:
    name: str
    command: list[str]
    env: dict[str, str] | None = None  # added to the stack's environment
    admin: str = ""  # HOST:PORT of its admin endpoint
    popen: subprocess.Popen[bytes] | None = None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stack = subparsers.add_parser(
        "stack",
        help="run relay, proxy, B2BUA, both ACR nodes and a simulated carrier; Ctrl-C stops all",
    )
    stack.add_argument(
        "--no-demo", action="store_true", help="provision nothing, start no simulated carrier"
    )
    stack.add_argument(
        "--carrier-port",
        type=int,
        default=DEMO_CARRIER_PORT,
        help=f"the simulated carrier's port on 127.0.0.1 (default {DEMO_CARRIER_PORT})",
    )
    stack.set_defaults(func=cmd_stack)


# The roles in the order of their admin ports ([metrics] port + index).
ROLES = (
    ("proxy", ("proxy",)),
    ("b2bua", ("b2bua",)),
    ("acr-primary", ("acr", "--node", "primary")),
    ("acr-secondary", ("acr", "--node", "secondary")),
    ("relay", ("relay",)),
)


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    config, _ = find_config(getattr(args, "config", None))
    sipline = [sys.executable, "-m", "sipline.cli", "--config", str(config.resolve())]
    # The paths as this command resolved them: the roles open the same files wherever
    # the config was found (sipline.config.anchored).
    shared = {"SIPLINE_NODE__DATA_DIR": str(settings.node.data_dir)}
    if settings.database.url.startswith("sqlite:"):
        shared["SIPLINE_DATABASE__URL"] = settings.database.url
    run = _runner(sipline, shared)
    run("db", "migrate")
    processes = roles(settings, sipline, shared)
    processes.append(Process("portal", [*sipline, "portal"], shared))
    if not args.no_demo:
        provision_demo(settings, run, args.carrier_port)
        processes.append(Process("carrier", simulated_carrier(args.carrier_port)))
    return supervise(processes, settings, None if args.no_demo else args.carrier_port)


def roles(settings: Settings, sipline: list[str], shared: dict[str, str]) -> list[Process]:
    """One process per role, each with its admin port (and its name when the config
    names the node: ROLE@HOST:PORT otherwise, each role's own)."""
    host, base = settings.metrics.host, settings.metrics.port
    processes = []
    for i, (name, words) in enumerate(ROLES):
        port = base + i if base else free_port(host)
        env = {**shared, "SIPLINE_METRICS__PORT": str(port)}
        if settings.node.name:
            env["SIPLINE_NODE__NAME"] = f"{settings.node.name}-{name}"
        admin = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        processes.append(Process(name, [*sipline, *words], env, admin))
    return processes


def _runner(sipline: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    def run(*words: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [*sipline, *words], input=stdin, capture_output=True, text=True, check=False,
            env={**os.environ, **env},
        )  # fmt: skip
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"sipline stack: `sipline {' '.join(words)}` failed")
        return done.stdout

    return run


def provision_demo(settings: Settings, run, carrier_port: int) -> None:  # type: ignore[no-untyped-def]
    """Demo subscribers, the demo carrier with a one-line deck, a DID: added once, kept."""
    domain = settings.proxy.domains[0]
    listed = run("subscriber", "list")
    for user in DEMO_USERS:
        if f"{user}@{domain} " not in listed:
            run(
                "subscriber",
                "add",
                f"{user}@{domain}",
                "--password-stdin",
                stdin=f"{user}-demo-pw\n",
            )
    if DEMO_CARRIER not in run("carrier", "list"):
        run("carrier", "add", DEMO_CARRIER, "--gateway", f"127.0.0.1:{carrier_port}")
        deck = settings.node.data_dir / "demo-carrier-rates.csv"
        deck.parent.mkdir(parents=True, exist_ok=True)
        # Every number: the empty prefix would match all, but decks name digits; 1-9 cover them.
        deck.write_text("prefix,rate\n" + "".join(f"{d},0.010\n" for d in "123456789"))
        run("rates", "import", str(deck), "--carrier", DEMO_CARRIER)
    proxy = f"{settings.sip.host}:{settings.sip.port}"
    if DEMO_DID not in run("did", "list"):
        run("did", "add", DEMO_DID, "--proxy", proxy)
    user, password = DEMO_OPERATOR
    if f"{user} " not in run("portal-user", "list"):
        run("portal-user", "add", user, "--role", "admin", "--password-stdin", stdin=password + "\n")


def simulated_carrier(port: int) -> list[str]:
    sipp = shutil.which("sipp") or "/usr/bin/sipp"
    return [
        sipp, "-sf", str(CARRIER_SCENARIO), "-i", "127.0.0.1", "-p", str(port),
        "-nostdin", "-m", "100000000", "-trace_err", "-error_file", os.devnull,
    ]  # fmt: skip


def supervise(processes: list[Process], settings: Settings, carrier_port: int | None) -> int:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    parent = ParentWatch()
    for process in processes:
        stdout = subprocess.DEVNULL if process.name == "carrier" else None
        env = {**os.environ, **process.env} if process.env else None
        # A session of its own: Ctrl-C reaches only this supervisor, which stops them in turn.
        process.popen = subprocess.Popen(
            process.command, stdout=stdout, env=env, start_new_session=True
        )
    _describe(settings, processes, carrier_port)
    ended: Process | None = None
    while not stop and ended is None:
        time.sleep(0.2)
        if parent.dying():
            print("sipline stack: the parent process is stopping; stopping", file=sys.stderr)
            stop = True
            break
        ended = next((p for p in processes if p.popen and p.popen.poll() is not None), None)
    if stop:
        ended = None
    if ended is not None:
        print(f"sipline stack: {ended.name} exited ({ended.popen.returncode}); stopping the rest",
              file=sys.stderr)  # fmt: skip
    _stop_all(processes)
    return 0 if ended is None else 1


def _stop_all(processes: list[Process]) -> None:
    running = [p.popen for p in processes if p.popen is not None and p.popen.poll() is None]
    for popen in running:
        popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for popen in running:
        try:
            popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


class ParentWatch:
    """Whether the process that started us is going away: it exited (we were
    re-parented), or it is handling a fatal signal it does not pass on. GNU make
    resets a fatal signal's handler to the default and blocks it while it waits
    for its children, which /proc/PID/status shows (SigCgt, SigBlk); Linux only,
    silent elsewhere."""

    FATAL = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

    def __init__(self) -> None:
        self.pid = os.getppid()
        caught, _ = self._masks()
        self.caught = [s for s in self.FATAL if caught >> (s - 1) & 1]

    def _masks(self) -> tuple[int, int]:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0, 0
        fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        return int(fields.get("SigCgt", "0"), 16), int(fields.get("SigBlk", "0"), 16)

    def dying(self) -> bool:
        if os.getppid() != self.pid:
            return True
        caught, blocked = self._masks()
        return any(not caught >> (s - 1) & 1 and blocked >> (s - 1) & 1 for s in self.caught)


def _describe(settings: Settings, processes: list[Process], carrier_port: int | None) -> None:
    domain = settings.proxy.domains[0]
    sip, relay = settings.sip, settings.relay
    lines = [
        f"sipline stack: phones register at {sip.host}:{sip.port} "
        f"({'/'.join(sip.transports).upper()}), domain {domain}",
        *(f"  demo subscriber {u}@{domain}, password {u}-demo-pw" for u in DEMO_USERS),
        f"  B2BUA {settings.b2bua.host}:{settings.b2bua.port}, "
        f"ACR {settings.acr.primary} and {settings.acr.secondary}",
        f"  relay: STUN {relay.stun_host}:{relay.stun_port}, ng {relay.ng_host}:{relay.ng_port}",
        "  admin (status, /metrics): "
        + ", ".join(f"{p.name} http://{p.admin}/" for p in processes if p.admin),
        "  sipline status: every node's state; sipline node drain|resume NAME",
        f"  portal http://{settings.portal.listen}/"
        + (f" (operator login {DEMO_OPERATOR[0]}, password {DEMO_OPERATOR[1]})"
           if carrier_port is not None else " (sipline portal-user add NAME --role admin)"),
    ]
    if carrier_port is not None:
        lines.append(
            f"  simulated carrier {DEMO_CARRIER} at 127.0.0.1:{carrier_port} answers every "
            f"number; DID {DEMO_DID} rings the proxy"
        )
    lines.append("  Ctrl-C stops everything")
    print("\n".join(lines), flush=True)
