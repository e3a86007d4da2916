"""The ACR's commands: ``sipline acr [--node primary|secondary]`` (run a node)
and ``sipline acr explain NUMBER [--json]`` (how a call to NUMBER would be routed now).

Registered through the ``sipline.commands`` entry-point group. ``explain``
asks a running ACR node how it would route the number now (without Redis the
live state is in the nodes' memory); with Redis it builds the route table
from the store and ranks it with the state the nodes share there. The
output says where the live figures came from, and when there are none.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from sipline.cluster import live
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
        if not settings.redis.url:
            body, note = await live.explain(db, number)
            if body is not None:
                show(body["json"], body["text"], note)
                return 0
            note += ": gateway health and carrier load unknown, every gateway counted up"
        else:
            note = "live, from the state the ACR nodes share in Redis"
        decision = await _decide(db, number)
        show(decision.as_json(), decision.explain(), note)
        return 0

    def show(data: dict, text: str, note: str) -> None:
        if args.json:
            print(json.dumps({**data, "source": note}, indent=2, sort_keys=True, default=str))
        else:
            print(f"({note})\n{text}")

    async def _decide(db: Database, number: str):  # type: ignore[no-untyped-def]
        from acr.live import open_live_state
        from acr.server import build_table
        from sipline.carriers.store import AcrStore

        now = time.time()
        state = await open_live_state(settings)
        try:
            table, carriers, _ = await build_table(AcrStore(db), settings, now)
            state.counters.set_carriers(carriers)
            table.refresh(state.stats, state.view, now)
            return table.decide(number, now)
        finally:
            await state.close()

    return run_with_database(settings, explain)
