"""Provisioning the ACR: carriers, rate decks, DIDs, routing profiles; reading CDRs.

``sipline carrier add|list|enable|disable``, ``sipline rates import``,
``sipline did add|list``, ``sipline profile set|list``, ``sipline cdr list``.
Registered through the ``sipline.commands`` entry-point group (``carrier``).
Exit status: 0 done, 1 the database refused or failed, 2 a bad value.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from acr.health import gateway_statuses
from sipline import logs
from sipline.carriers.deck import DeckError, parse_deck, read_lines, write_deck
from sipline.carriers.model import FINAL_CODES, Carrier, Cdr, Did, Gateway, RoutingProfile
from sipline.carriers.store import TRANSPORTS, AcrStore, parse_host_port, parse_number
from sipline.cluster import live
from sipline.cluster.changes import announce
from sipline.config import Settings
from sipline.storage import Database, InvalidValue
from sipline.storage.commands import EXIT_INVALID_VALUE, run_with_database

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

log = logging.getLogger(__name__)


def register(subparsers: Subparsers) -> None:
    _carrier_commands(subparsers)
    _rates_commands(subparsers)
    _did_commands(subparsers)
    _profile_commands(subparsers)
    _cdr_commands(subparsers)


def _actions(subparsers: Subparsers, name: str, help: str) -> Subparsers:
    parser = subparsers.add_parser(name, help=help)
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


# -- carriers ----------------------------------------------------------------------------


def _carrier_commands(subparsers: Subparsers) -> None:
    actions = _actions(subparsers, "carrier", "provision carriers and their gateways")
    add = actions.add_parser("add", help="add a carrier with its termination gateways")
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "--gateway",
        action="append",
        required=True,
        metavar="HOST:PORT[;transport=tcp|tls][;weight=N]",
        help="a gateway of the carrier (repeat for several)",
    )
    add.add_argument("--capacity", type=int, help="concurrent calls at most (default: no limit)")
    add.add_argument("--cps", type=int, help="new calls per second at most (default: no limit)")
    add.add_argument("--disabled", action="store_true", help="add it disabled")
    add.set_defaults(func=cmd_carrier_add)
    listing = actions.add_parser("list", help="list carriers, their gateways and live status")
    listing.set_defaults(func=cmd_carrier_list)
    for verb in ("enable", "disable"):
        action = actions.add_parser(verb, help=f"{verb} a carrier (routing reloads it)")
        action.add_argument("name", metavar="NAME")
        action.set_defaults(func=cmd_carrier_enable, enabled=verb == "enable")


def parse_gateway(carrier: str, text: str) -> Gateway:
    """A Gateway from ``HOST:PORT[;transport=udp|tcp|tls][;weight=N]``."""
    where, *params = text.split(";")
    host, port = parse_host_port(where)
    transport, weight = "udp", 1
    for param in params:
        key, _, value = param.partition("=")
        key = key.strip().lower()
        if key == "transport" and value.lower() in TRANSPORTS:
            transport = value.lower()
        elif key == "weight" and value.isdigit() and int(value) >= 1:
            weight = int(value)
        else:
            raise InvalidValue(
                f"bad gateway parameter {param!r} in {text!r}: expected transport=udp|tcp|tls"
                " or weight=N (N >= 1)"
            )
    return Gateway(carrier, host, port, transport, weight)


def cmd_carrier_add(args: argparse.Namespace, settings: Settings) -> int:
    async def add(db: Database) -> int:
        gateways = tuple(parse_gateway(args.name, text) for text in args.gateway)
        carrier = Carrier(args.name, gateways, args.capacity, args.cps, not args.disabled)
        await AcrStore(db).add_carrier(carrier)
        logs.event(log, "carrier_added", carrier=carrier.name, gateways=len(gateways))
        print(f"added carrier {carrier.name} ({', '.join(g.address for g in gateways)})")
        await announce(settings, db, "acr", (carrier.name,))
        return 0

    return run_with_database(settings, add)


def cmd_carrier_enable(args: argparse.Namespace, settings: Settings) -> int:
    async def enable(db: Database) -> int:
        await AcrStore(db).set_enabled(args.name, args.enabled)
        state = "enabled" if args.enabled else "disabled"
        logs.event(log, f"carrier_{state}", carrier=args.name)
        print(f"{state} carrier {args.name}")
        await announce(settings, db, "acr", (args.name,))
        return 0

    return run_with_database(settings, enable)


def cmd_carrier_list(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        store = AcrStore(db)
        carriers = await store.carriers()
        sizes = await store.deck_sizes()
        addresses = [g.address for c in carriers for g in c.gateways]
        status, note = await gateway_status(settings, db, addresses)
        print(format_carriers(carriers, sizes, status))
        if note:
            print(f"gateway status: {note}")
        return 0

    return run_with_database(settings, show)


async def gateway_status(
    settings: Settings, db: Database, addresses: Sequence[str]
) -> tuple[dict[str, str], str]:
    """Each gateway's live status (up, down, backoff; unknown: never probed), and a note
    when there is none to show: from the health the ACR nodes share through Redis, or
    without Redis from the running ACR nodes themselves (the newest verdict wins)."""
    if settings.redis.url:
        try:
            return await gateway_statuses(settings.redis.url, addresses, strict=True), ""
        except Exception as exc:  # noqa: BLE001 - a listing must not fail because Redis is away
            logs.event(log, "health_unreadable", reason=repr(exc))
            return {}, f"no live data (Redis unreachable: {exc})"
    return await live.gateway_states(db)


def format_carriers(
    carriers: Sequence[Carrier], sizes: dict[str, int], status: dict[str, str]
) -> str:
    """One line per gateway under its carrier's limits, in aligned columns."""
    rows = [("CARRIER", "STATE", "CAPACITY", "CPS", "RATES", "GATEWAY", "WEIGHT", "STATUS")]
    for c in carriers:
        head = (
            c.name,
            "enabled" if c.enabled else "disabled",
            "-" if c.capacity is None else str(c.capacity),
            "-" if c.cps is None else str(c.cps),
            str(sizes.get(c.name, 0)),
        )
        for i, g in enumerate(c.gateways or ()):
            gateway = f"{g.address}/{g.transport}"
            cells = head if i == 0 else ("",) * len(head)
            rows.append((*cells, gateway, str(g.weight), status.get(g.address, "-")))
        if not c.gateways:
            rows.append((*head, "-", "-", "-"))
    return _table(rows)


# -- rates -------------------------------------------------------------------------------


def _rates_commands(subparsers: Subparsers) -> None:
    actions = _actions(subparsers, "rates", "load carriers' rate decks")
    load = actions.add_parser(
        "import",
        help="replace a carrier's deck with a CSV file (prefix,rate[,connect_fee,"
        "first_increment,next_increment,effective_from,effective_to])",
    )
    load.add_argument("file", metavar="FILE.csv", type=Path)
    load.add_argument("--carrier", required=True, metavar="NAME")
    load.add_argument("--quiet", action="store_true", help="no progress bar")
    load.set_defaults(func=cmd_rates_import)


def cmd_rates_import(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.file
    if not path.is_file():
        print(f"sipline: no deck file {path}", file=sys.stderr)
        return EXIT_INVALID_VALUE
    started = time.perf_counter()
    with progress_bar(not args.quiet) as bar:
        try:
            step = bar(f"checking {path.name}", count_lines(path))
            deck = parse_deck(read_lines(path), args.carrier, path=str(path), progress=step)
        except (DeckError, InvalidValue) as exc:
            refused: InvalidValue | None = exc
        else:
            refused = None

            async def load(db: Database) -> int:
                await write_deck(db, deck, progress=bar(f"loading {args.carrier}", len(deck.rows)))
                await announce(settings, db, "acr", (args.carrier,))
                return 0

            status = run_with_database(settings, load)
    if refused is not None:  # after the bar, so the message is the last thing shown
        print(f"sipline: {refused}", file=sys.stderr)
        return EXIT_INVALID_VALUE
    if status == 0:
        elapsed = time.perf_counter() - started
        logs.event(log, "deck_imported", carrier=args.carrier, rows=len(deck.rows))
        print(
            f"loaded {len(deck.rows)} rates for {args.carrier} in {elapsed:.1f} s"
            f" ({len(deck.rows) / max(elapsed, 1e-9):,.0f} rows/s)"
        )
    return status


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


Bar = Callable[[str, int], Callable[[int], None]]


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Bar]:
    """``bar(description, total)`` gives a function that advances a new task by n rows."""
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    except ImportError:  # a bare install without rich: no bar
        enabled = False
    if not enabled:
        yield lambda description, total: lambda n: None
        return
    from rich.console import Console

    columns = (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:

        def bar(description: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        yield bar


# -- DIDs --------------------------------------------------------------------------------


def _did_commands(subparsers: Subparsers) -> None:
    actions = _actions(subparsers, "did", "provision inbound numbers (DIDs)")
    add = actions.add_parser("add", help="route calls to NUMBER to a home proxy (and backups)")
    add.add_argument("number", metavar="NUMBER")
    add.add_argument("--proxy", required=True, metavar="HOST:PORT", help="the home proxy")
    add.add_argument(
        "--backup", action="append", default=[], metavar="HOST:PORT", help="a backup proxy"
    )
    add.add_argument("--account", default="", help="the account whose number it is (its users see it)")
    add.set_defaults(func=cmd_did_add)
    listing = actions.add_parser("list", help="list DIDs and their proxies")
    listing.set_defaults(func=cmd_did_list)


def cmd_did_add(args: argparse.Namespace, settings: Settings) -> int:
    async def add(db: Database) -> int:
        number = parse_number(args.number)
        await AcrStore(db).add_did(Did(number, args.proxy, tuple(args.backup), args.account))
        logs.event(log, "did_added", number=number, proxy=args.proxy)
        backups = f" (backup {', '.join(args.backup)})" if args.backup else ""
        print(f"added DID {number} -> {args.proxy}{backups}")
        await announce(settings, db, "acr", (number,))
        return 0

    return run_with_database(settings, add)


def cmd_did_list(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        rows = [("NUMBER", "PROXY", "BACKUPS", "ACCOUNT")]
        rows += [(d.number, d.proxy, ",".join(d.backups) or "-", d.account or "-")
                 for d in await AcrStore(db).dids()]  # fmt: skip
        print(_table(rows))
        return 0

    return run_with_database(settings, show)


# -- routing profiles --------------------------------------------------------------------


def _profile_commands(subparsers: Subparsers) -> None:
    actions = _actions(subparsers, "profile", "routing profiles per destination prefix")
    put = actions.add_parser("set", help="set the profile of a prefix ('default': every number)")
    put.add_argument("prefix", metavar="PREFIX")
    put.add_argument("--availability", type=float, default=0.4, help="weight (default 0.4)")
    put.add_argument("--quality", type=float, default=0.3, help="weight (default 0.3)")
    put.add_argument("--price", type=float, default=0.3, help="weight (default 0.3)")
    put.add_argument("--min-quality", type=float, help="leave out carriers of lower quality")
    put.add_argument("--max-price", type=float, help="leave out dearer carriers (per minute)")
    put.add_argument(
        "--final-codes",
        metavar="CODE,...",
        help=f"SIP codes that end the hunt (default {','.join(map(str, sorted(FINAL_CODES)))})",
    )
    put.add_argument("--attempts", type=int, default=3, help="carriers to try (default 3)")
    put.set_defaults(func=cmd_profile_set)
    listing = actions.add_parser("list", help="list routing profiles")
    listing.set_defaults(func=cmd_profile_list)


def cmd_profile_set(args: argparse.Namespace, settings: Settings) -> int:
    async def put(db: Database) -> int:
        prefix = "" if args.prefix == "default" else parse_number(args.prefix)
        codes = FINAL_CODES
        if args.final_codes:
            try:
                codes = frozenset(int(code) for code in args.final_codes.split(","))
            except ValueError:
                raise InvalidValue(f"bad --final-codes {args.final_codes!r}") from None
        profile = RoutingProfile(
            prefix, args.availability, args.quality, args.price,
            args.min_quality, args.max_price, codes, args.attempts,
        )  # fmt: skip
        await AcrStore(db).set_profile(profile)
        logs.event(log, "profile_set", prefix=prefix or "default")
        print(f"set profile {prefix or 'default'}")
        await announce(settings, db, "acr", (prefix,))
        return 0

    return run_with_database(settings, put)


def cmd_profile_list(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        rows = [("PREFIX", "AVAIL", "QUALITY", "PRICE", "MIN-Q", "MAX-PRICE", "FINAL", "TRIES")]
        for p in await AcrStore(db).profiles():
            rows.append(
                (p.prefix or "default", f"{p.weight_availability:g}", f"{p.weight_quality:g}",
                 f"{p.weight_price:g}", _opt(p.min_quality), _opt(p.max_price),
                 ",".join(map(str, sorted(p.final_codes))), str(p.max_attempts))
            )  # fmt: skip
        print(_table(rows))
        return 0

    return run_with_database(settings, show)


# -- CDRs --------------------------------------------------------------------------------


def _cdr_commands(subparsers: Subparsers) -> None:
    actions = _actions(subparsers, "cdr", "call detail records")
    listing = actions.add_parser("list", help="the last CDRs written, oldest first")
    listing.add_argument("--last", type=int, default=20, metavar="N", help="how many (default 20)")
    listing.add_argument("--json", action="store_true", help="one JSON array of CDR objects")
    listing.set_defaults(func=cmd_cdr_list)
    errors = actions.add_parser("errors", help="CDRs the database refused (error_queue), why")
    errors.add_argument("--json", action="store_true", help="one JSON array of {reason, cdr}")
    errors.set_defaults(func=cmd_cdr_errors)


def cmd_cdr_list(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        cdrs = await AcrStore(db).cdrs(args.last)
        if args.json:
            sys.stdout.write(orjson.dumps([asdict(c) for c in cdrs]).decode() + "\n")
        else:
            print(format_cdrs(cdrs))
        return 0

    return run_with_database(settings, show)


def cmd_cdr_errors(args: argparse.Namespace, settings: Settings) -> int:
    async def show(db: Database) -> int:
        refused = await AcrStore(db).errors("cdrs")
        if args.json:
            rows = [{"reason": reason, "cdr": cdr} for _, reason, cdr in refused]
            sys.stdout.write(orjson.dumps(rows).decode() + "\n")
        else:
            table = [("CALL-ID", "REASON")]
            table += [(str(cdr.get("call_id", "?")), reason) for _, reason, cdr in refused]
            print(_table(table))
        return 0

    return run_with_database(settings, show)


def format_cdrs(cdrs: Sequence[Cdr]) -> str:
    rows = [("START", "CALL-ID", "CALLER", "CALLEE", "CARRIER", "GATEWAY", "CODE", "BILLED",
             "RATE", "COST", "NODE", "NOTE")]  # fmt: skip
    for c in cdrs:
        # What billing must know: an answer after we gave up (answer=late), a call
        # the ACR ended itself (ended=swept, 408, 481).
        note = ",".join(f"{key}={value}" for key, value in sorted(c.extra.items()))
        rows.append(
            (_utc(c.start), c.call_id, c.caller, c.callee, c.carrier, c.gateway,
             str(c.final_code), f"{c.billed_seconds}s", f"{c.rate:g}", f"{c.cost:.6f}", c.node,
             note)
        )  # fmt: skip
    return _table(rows)


# -- helpers -----------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
