"""The ``sipline`` command.

Every command takes ``--config PATH`` (without it: ``$SIPLINE_CONFIG``, else
./configs/single.toml, else the installed repository's, see
``sipline.config.find_config``) and its handler is called as ``func(args, settings)``.
Roles add their own commands through the ``sipline.commands`` entry-point group:
an entry ``name = "module:register"`` names a ``register(subparsers)`` that adds
parsers and sets ``func`` on them with ``set_defaults``. A parser that sets
``needs_settings=False`` gets ``settings=None`` and works without a config file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from sipline import __version__, logs
from sipline.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    ConfigError,
    Settings,
    anchored,
    find_config,
    load_settings,
)

COMMAND_GROUP = "sipline.commands"


class EntryPoint(Protocol):
    """The part of ``importlib.metadata.EntryPoint`` the loader uses."""

    name: str
    value: str

    def load(self) -> Any: ...


class CommandParser(argparse.ArgumentParser):
    """A parser that accepts ``--config`` wherever it appears, top level or subcommand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand's default must not overwrite a --config given before it.
        self.add_argument(
            "--config",
            metavar="PATH",
            default=argparse.SUPPRESS,
            help=f"TOML config file (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}, else the"
            " installed repository's; relative paths in it start from the working directory,"
            " or from the repository for its own)",
        )


def build_parser(plugins: Iterable[EntryPoint] | None = None) -> argparse.ArgumentParser:
    """The full parser: built-in commands plus those of ``plugins`` (default: installed ones)."""
    parser = CommandParser(
        prog="sipline",
        description="Carrier-grade SIP platform: proxy, B2BUA, adaptive call router, RTP relay.",
    )
    parser.add_argument("--version", action="version", version=f"sipline {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    version = subparsers.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version, needs_settings=False)
    run = subparsers.add_parser("run", help="start the node; SIGTERM or SIGINT drains and stops it")
    run.set_defaults(func=cmd_run)
    add_db_commands(subparsers)
    add_ban_commands(subparsers)
    add_cluster_commands(subparsers)
    add_stack_command(subparsers)
    load_commands(subparsers, entry_points(group=COMMAND_GROUP) if plugins is None else plugins)
    return parser


def load_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], plugins: Iterable[EntryPoint]
) -> None:
    """Let each plugin's ``register(subparsers)`` add its commands."""
    for plugin in plugins:
        try:
            register = plugin.load()
            register(subparsers)
        except Exception as exc:
            exc.add_note(f"while loading sipline command {plugin.name} = {plugin.value}")
            raise


def add_db_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sipline db ...``: the schema is shared plumbing (sipline.storage), not a role's."""
    from sipline.storage.commands import register

    register(subparsers)


def add_ban_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sipline ban ...``: bans are every node's (sipline.net.guard), not a role's."""
    from sipline.storage.ban_commands import register

    register(subparsers)


def add_cluster_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sipline status`` and ``sipline node ...``: every node's, not a role's."""
    from sipline.cluster.commands import register

    register(subparsers)


def add_stack_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sipline stack``: runs each role as a ``sipline <role>`` process; imports none."""
    from sipline.stack import register

    register(subparsers)


def cmd_version(args: argparse.Namespace, settings: Settings | None) -> int:
    print(f"sipline {__version__}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here so that other commands do not pay for (or depend on) the event loop.
    import uvloop

    from sipline.net.node import serve

    uvloop.run(serve(settings))
    return 0


def main(argv: Sequence[str] | None = None, plugins: Iterable[EntryPoint] | None = None) -> int:
    """Run one command; the exit status is returned (2 for a configuration error)."""
    args = build_parser(plugins).parse_args(argv)
    try:
        return args.func(args, _settings_for(args)) or 0
    except ConfigError as exc:
        print(f"sipline: {exc}", file=sys.stderr)
        return 2


def _settings_for(args: argparse.Namespace) -> Settings | None:
    if not getattr(args, "needs_settings", True):
        return None
    path, base = find_config(getattr(args, "config", None))
    settings = anchored(load_settings(path), base)
    logs.configure(settings.log.level)
    logs.event(logging.getLogger("sipline.cli"), "config_loaded", path=_shown(path))
    return settings


def _shown(path: Path) -> str:
    return str(path if path.is_absolute() else Path.cwd() / path)


if __name__ == "__main__":
    sys.exit(main())
