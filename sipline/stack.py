"""``sipline stack``: every role on one box, as ``make run`` starts it.

Each role runs as its own ``sipline <role>`` process with the same config, so
they talk to each other only over SIP, ng, the database and Redis, exactly as
on separate machines (docs/design.md); this module imports no role. Before they
start, the schema is migrated and demo data provisioned through the same
commands an operator types: subscribers, a carrier with a rate deck, a DID.
A simulated carrier (sipp as a UAS that answers probes and calls) stands at
the demo carrier's gateway, so a call from a demo phone to a PSTN number goes
phone → proxy → B2BUA → ACR → carrier and is answered.

The stack stops as a whole: SIGINT or SIGTERM, or any process ending, stops
every other one with SIGTERM (each drains) and the exit status says which.
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

from sipline.config import Settings

REPO = Path(__file__).resolve().parents[1]
DEMO_USERS = ("alice", "bob")
DEMO_CARRIER = "demo-carrier"
DEMO_CARRIER_PORT = 5090
DEMO_DID = "15550100"
CARRIER_SCENARIO = REPO / "bench" / "scenarios" / "acr_carrier.xml"
STOP_GRACE = 10.0  # seconds a process may take to drain after SIGTERM


@dataclass
class Process:
    name: str
    command: list[str]
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


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from sipline.cli import DEFAULT_CONFIG

    config = str(getattr(args, "config", DEFAULT_CONFIG))
    sipline = [sys.executable, "-m", "sipline.cli", "--config", config]
    run = _runner(sipline)
    run("db", "migrate")
    processes = [
        Process("relay", [*sipline, "relay"]),
        Process("proxy", [*sipline, "proxy"]),
        Process("b2bua", [*sipline, "b2bua"]),
        Process("acr-primary", [*sipline, "acr", "--node", "primary"]),
        Process("acr-secondary", [*sipline, "acr", "--node", "secondary"]),
    ]
    if not args.no_demo:
        provision_demo(settings, run, args.carrier_port)
        processes.append(Process("carrier", simulated_carrier(args.carrier_port)))
    return supervise(processes, settings, None if args.no_demo else args.carrier_port)


def _runner(sipline: list[str]):  # type: ignore[no-untyped-def]
    def run(*words: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [*sipline, *words], input=stdin, capture_output=True, text=True, check=False
        )
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
            run("subscriber", "add", f"{user}@{domain}", "--password-stdin", stdin=f"{user}-demo-pw\n")
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
    for process in processes:
        stdout = subprocess.DEVNULL if process.name == "carrier" else None
        # A session of its own: Ctrl-C reaches only this supervisor, which stops them in turn.
        process.popen = subprocess.Popen(process.command, stdout=stdout, start_new_session=True)
    _describe(settings, carrier_port)
    ended: Process | None = None
    while not stop and ended is None:
        time.sleep(0.2)
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


def _describe(settings: Settings, carrier_port: int | None) -> None:
    domain = settings.proxy.domains[0]
    sip, relay = settings.sip, settings.relay
    lines = [
        f"sipline stack: phones register at {sip.host}:{sip.port} "
        f"({'/'.join(sip.transports).upper()}), domain {domain}",
        *(f"  demo subscriber {u}@{domain}, password {u}-demo-pw" for u in DEMO_USERS),
        f"  B2BUA {settings.b2bua.host}:{settings.b2bua.port}, "
        f"ACR {settings.acr.primary} and {settings.acr.secondary}",
        f"  relay: STUN {relay.stun_host}:{relay.stun_port}, ng {relay.ng_host}:{relay.ng_port}",
    ]
    if carrier_port is not None:
        lines.append(
            f"  simulated carrier {DEMO_CARRIER} at 127.0.0.1:{carrier_port} answers every "
            f"number; DID {DEMO_DID} rings the proxy"
        )
    lines.append("  Ctrl-C stops everything")
    print("\n".join(lines), flush=True)
