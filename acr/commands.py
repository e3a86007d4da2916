"""The ACR's commands: ``sipline acr [--node primary|secondary]`` (run a node)
and ``sipline acr explain NUMBER [--json]`` (how a call to NUMBER would be routed now).

Registered through the ``sipline.commands`` entry-point group. ``explain``
builds the route table from the store and ranks it with the shared live
state (Redis when configured; else nothing is known of the carriers yet).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from sipline.config import Settings
from sipline.storage import Database
from sipline.storage.commands import run_node, run_with_database


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    acr = subparsers.add_parser(
        "acr",
        help="run an adaptive call router node ([acr] primary/secondary); "
        "SIGTERM or SIGINT drains and stops it",
    )
    acr.add_argument(
        "--node",
        choices=("primary", "secondary"),
        default="primary",
        help="which of the pair: listens on [acr] primary or secondary (default primary)",
    )
    acr.set_defaults(func=cmd_acr)
    actions = acr.add_subparsers(dest="acr_command", metavar="ACTION")
    explain = actions.add_parser(
        "explain", help="the carriers a call to NUMBER would try now, their scores and why"
    )
    explain.add_argument("number", metavar="NUMBER", help="the dialled number, such as +4420...")
    explain.add_argument("--json", action="store_true", help="print the explanation as JSON")
    explain.set_defaults(func=cmd_explain)


def cmd_acr(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so that other commands do not pay for the event loop.
    from acr.server import serve_acr

    return run_node(serve_acr(settings, args.node))


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    number = args.number.strip().removeprefix("+")
    if not number.isdigit():
        print(
            f"sipline: {args.number!r} is not a number (digits, with an optional +)",
            file=sys.stderr,
        )
        return 2

    async def explain(db: Database) -> int:
        from acr.live import open_live_state
        from acr.server import build_table
        from acr.store import AcrStore

        now = time.time()
        live = await open_live_state(settings)
        try:
            table, carriers, _ = await build_table(AcrStore(db), settings, now)
            live.counters.set_carriers(carriers)
            table.refresh(live.stats, live.view, now)
            decision = table.decide(number, now)
        finally:
            await live.close()
        if args.json:
            print(json.dumps(decision.as_json(), indent=2, sort_keys=True, default=str))
        else:
            print(decision.explain())
        return 0

    return run_with_database(settings, explain)
