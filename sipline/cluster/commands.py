"""``sipline status [--json]`` and ``sipline node drain|resume|forget NAME``.

``status`` shows every node of the ``nodes`` table (and, with Redis, every
node that heartbeats) with what it says of itself now: through Redis when
``[redis] url`` is set, else by asking each node's admin endpoint. A node
that does not answer is shown without figures, ``stopped by failure`` (or
``stopped by admin`` when it stopped cleanly): never with old numbers.

``calls`` lists the calls in progress (sipline.cluster.calls) and ``calls
hangup CALL-ID`` ends one on the B2BUA that holds it.

``node drain`` and ``node resume`` ask the node itself (POST with an admin
token); ``--wait`` waits for a drained node to hold nothing any more.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from sipline.cluster import client, heartbeat, registry
from sipline.cluster.calls import hang_up, live_calls
from sipline.cluster.key import admin_key
from sipline.cluster.report import Report, rows
from sipline.cluster.state import State
from sipline.config import Settings
from sipline.storage import Database
from sipline.storage.commands import run_with_database, table
from sipline.storage.live import open_redis, redis_errors

EXIT_UNREACHABLE = 1
POLL = 0.2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = subparsers.add_parser(
        "status", help="every node: role, address, version, uptime, state, load, config version"
    )
    status.add_argument("--json", action="store_true", help="one JSON array of node reports")
    status.set_defaults(func=cmd_status)
    node = subparsers.add_parser("node", help="drain, resume or forget one node")
    actions = node.add_subparsers(dest="node_command", metavar="ACTION", required=True)
    drain = actions.add_parser(
        "drain", help="take no new calls or registrations (503 + Retry-After); finish the rest"
    )
    drain.add_argument("name", metavar="NAME", help="the node's name (sipline status)")
    drain.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS",
        help="wait until the node holds nothing any more (stopped by admin)",
    )  # fmt: skip
    drain.set_defaults(func=cmd_node, action="drain")
    resume = actions.add_parser("resume", help="take new calls and registrations again")
    resume.add_argument("name", metavar="NAME")
    resume.set_defaults(func=cmd_node, action="resume", wait=0.0)
    forget = actions.add_parser(
        "forget", help="remove a node taken out for good from the nodes table"
    )
    forget.add_argument("name", metavar="NAME")
    forget.set_defaults(func=cmd_forget)
    calls = subparsers.add_parser(
        "calls", help="calls in progress (from the ACR nodes), with their running cost"
    )
    calls.add_argument("--json", action="store_true", help="one JSON array of calls")
    calls.set_defaults(func=cmd_calls)
    calls_actions = calls.add_subparsers(dest="calls_command", metavar="ACTION")
    hangup = calls_actions.add_parser(
        "hangup", help="end a call (BYE on both legs) on the B2BUA that holds it"
    )
    hangup.add_argument("call_id", metavar="CALL-ID", help="either leg's Call-ID (sipline calls)")
    hangup.set_defaults(func=cmd_hangup)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        reports = await gather(settings, db)
        if args.json:
            data = [r.to_json() for r in sorted(reports, key=lambda r: (r.role, r.name))]
            sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        elif reports:
            print(table(rows(reports)))
        else:
            print("no node has run on this database yet")
        return 0

    return run_with_database(settings, show)


async def gather(settings: Any, db: Database) -> list[Report]:
    """Every node's report as it is now (see the module's doc)."""
    entries = await registry.entries(db)
    heard: list[Report] = []
    if settings.redis.url:
        redis = open_redis(settings.redis.url)
        try:
            heard = await heartbeat.read(redis)
        except redis_errors() as exc:
            print(f"sipline: Redis unreachable ({exc}); asking the nodes", file=sys.stderr)
        finally:
            await redis.aclose()
    names = {r.name for r in heard}
    rest = [e for e in entries if e.name not in names]
    return heard + await asked(rest)


async def asked(entries: list[registry.Entry]) -> list[Report]:
    """The report of each node in ``entries``, from its admin endpoint."""
    answers = await client.ask_all([e.admin for e in entries], "/status")
    return [_report(e, a) for e, a in zip(entries, answers, strict=True)]


def _report(entry: registry.Entry, answer: client.Answer | None) -> Report:
    if answer is not None and answer.ok:
        try:
            report = Report.from_json(answer.body)
        except ValueError:
            report = None
        if report is not None and report.name == entry.name:
            return report
        why = "another node answers at its admin address"
    elif entry.stopped:
        return Report.silent(
            entry.name, entry.role, entry.address, entry.admin, State.STOPPED_BY_ADMIN,
            heartbeat.STOPPED,
        )  # fmt: skip
    else:
        why = "unreachable" if answer is None else f"admin endpoint answered {answer.status}"
    return Report.silent(
        entry.name, entry.role, entry.address, entry.admin, State.STOPPED_BY_FAILURE, why
    )


def cmd_node(args: argparse.Namespace, settings: Settings) -> int:
    async def act(db: Database) -> int:
        entry = next((e for e in await registry.entries(db) if e.name == args.name), None)
        if entry is None:
            print(f"sipline: no node {args.name} (see sipline status)", file=sys.stderr)
            return 2
        key = admin_key(settings)
        if key is None:
            print(
                f"sipline: no admin key: set admin.secret, or run this where the node's"
                f" data directory ({settings.node.data_dir}) is",
                file=sys.stderr,
            )
            return 2
        answer = await client.post(entry.admin, f"/{args.action}", {"node": entry.name}, key)
        if answer is None or not answer.ok:
            why = "no answer" if answer is None else _error(answer)
            print(f"sipline: node {entry.name} at {entry.admin}: {why}", file=sys.stderr)
            return EXIT_UNREACHABLE
        report = Report.from_json(answer.body)
        if args.wait > 0:
            report = await _until_stopped(entry, report, time.monotonic() + args.wait)
        print(f"{report.name}: {report.state}" + (f" ({report.detail})" if report.detail else ""))
        return 0 if not args.wait or report.state == State.STOPPED_BY_ADMIN else EXIT_UNREACHABLE

    return run_with_database(settings, act)


async def _until_stopped(entry: registry.Entry, report: Report, deadline: float) -> Report:
    while report.state != State.STOPPED_BY_ADMIN and time.monotonic() < deadline:
        await asyncio.sleep(POLL)
        report = _report(entry, await client.get(entry.admin, "/status"))
    return report


def _error(answer: client.Answer) -> str:
    if isinstance(answer.body, dict) and "error" in answer.body:
        return str(answer.body["error"])
    return f"HTTP {answer.status}"


def cmd_calls(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        found, note = await live_calls(db)
        now = time.time()
        if args.json:
            data = [c.to_json(now) for c in found]
            sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            rows = [("CALL-ID", "CALLER", "CALLEE", "ACCOUNT", "CARRIER", "DURATION", "COST", "NODE")]
            rows += [(c.call_id, c.caller, c.callee, c.account or "-", c.carrier,
                      f"{c.duration(now):.0f}s", f"{c.cost(now):.6f}", c.node) for c in found]  # fmt: skip
            print(table(rows) if found else "no call in progress")
        if note:
            print(f"sipline: {note}", file=sys.stderr)
        return 0

    return run_with_database(settings, show)


def cmd_hangup(args: argparse.Namespace, settings: Settings) -> int:
    async def end(db: Database) -> int:
        try:
            node = await hang_up(settings, db, args.call_id)
        except ValueError as exc:
            print(f"sipline: {exc}", file=sys.stderr)
            return 2
        if node is None:
            print(f"sipline: no running B2BUA holds call {args.call_id}", file=sys.stderr)
            return EXIT_UNREACHABLE
        print(f"hung up {args.call_id} on {node}")
        return 0

    return run_with_database(settings, end)


def cmd_forget(args: argparse.Namespace, settings: Settings) -> int:
    async def forget(db: Database) -> int:
        if not await registry.forget(db, args.name):
            print(f"sipline: no node {args.name}", file=sys.stderr)
            return 2
        if settings.redis.url:
            redis = open_redis(settings.redis.url)
            try:
                await redis.hdel(heartbeat.NODES, args.name)
            finally:
                await redis.aclose()
        print(f"forgot node {args.name}")
        return 0

    return run_with_database(settings, forget)
