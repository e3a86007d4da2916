"""The sipline command: built-in commands, --config, exit codes, role plugins."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sipline import __version__
from sipline.cli import main
from sipline.config import Settings, anchored, find_config, load_settings

REPO = Path(__file__).resolve().parents[1]
SIPLINE = Path(sysconfig.get_path("scripts")) / "sipline"


def sipline(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script the way an operator would."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPLINE_")}
    return subprocess.run(
        [str(SIPLINE), *args],
        cwd=cwd,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.upper().startswith("SIPLINE_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def keep_root_logger() -> Iterator[None]:
    """main() configures logging; undo it so other tests see the logger as they left it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


# --- the console script -----------------------------------------------------------


def test_version_prints_the_version() -> None:
    result = sipline("version")
    assert result.returncode == 0
    assert result.stdout == f"sipline {__version__}\n"


def test_version_needs_no_config_file(tmp_path: Path) -> None:
    result = sipline("version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"sipline {__version__}\n"


def test_help_lists_the_commands_and_config_option() -> None:
    result = sipline("--help")
    assert result.returncode == 0
    for word in ("version", "run", "--config"):
        assert word in result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = sipline()
    assert result.returncode == 2
    assert "usage: sipline" in result.stderr


def test_bad_config_value_exits_2_with_message_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[sip]\nport = 99999\n")
    result = sipline("run", "--config", str(config))
    assert result.returncode == 2
    assert "sip.port = 99999" in result.stderr
    assert "less than or equal to 65535" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_env_override_exits_2() -> None:
    result = sipline("run", SIPLINE_SIP__TRANSPORTS='["sctp"]')
    assert result.returncode == 2
    assert "sip.transports[0] = 'sctp'" in result.stderr
    assert "SIPLINE_SIP__TRANSPORTS" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_of_the_environment_is_named(tmp_path: Path) -> None:
    result = sipline("run", cwd=tmp_path, SIPLINE_CONFIG=str(tmp_path / "gone.toml"))
    assert result.returncode == 2
    assert "gone.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_config_here_the_repository_one_is_used_from_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path, base = find_config(None)
    assert (path, base) == (REPO / "configs/single.toml", REPO)
    settings = anchored(load_settings(path), base)
    assert settings.node.data_dir == REPO / "data"
    assert settings.database.url == f"sqlite:///{REPO}/data/sipline.db"
    monkeypatch.setenv("SIPLINE_CONFIG", str(tmp_path / "mine.toml"))
    assert find_config(None) == (tmp_path / "mine.toml", tmp_path)
    assert find_config("other.toml") == (Path("other.toml"), tmp_path)


def test_an_operator_command_names_the_database_it_refuses(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "sipline.db"
    result = sipline(
        "subscriber", "list", cwd=tmp_path, SIPLINE_DATABASE__URL=f"sqlite:///{missing}"
    )
    assert result.returncode == 1
    assert f"no database at {missing}" in result.stderr
    assert f"from {REPO / 'configs/single.toml'}" in result.stderr
    assert not missing.parent.exists()  # nothing created by a listing


def test_version_option() -> None:
    result = sipline("--version")
    assert (result.returncode, result.stdout) == (0, f"sipline {__version__}\n")


# --- role commands from the sipline.commands entry-point group --------------------


@dataclass
class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint (name, value, load)."""

    name: str
    register: Callable[[Any], None]
    value: str = "fake.commands:register"

    def load(self) -> Callable[[Any], None]:
        return self.register


def register_carrier(subparsers: Any) -> None:
    carrier = subparsers.add_parser("carrier", help="manage carriers")
    actions = carrier.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list")
    listing.add_argument("--limit", type=int, default=10)
    listing.set_defaults(func=list_carriers)


calls: list[tuple[argparse.Namespace, Settings]] = []


def list_carriers(args: argparse.Namespace, settings: Settings) -> int:
    calls.append((args, settings))
    return 7


def test_plugin_command_is_dispatched_with_args_and_settings(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[sip]\nport = 5080\n")
    calls.clear()
    plugin = FakeEntryPoint("carrier", register_carrier)
    status = main(["carrier", "list", "--limit", "3", "--config", str(config)], plugins=[plugin])
    assert status == 7
    [(args, settings)] = calls
    assert args.limit == 3
    assert settings.sip.port == 5080


def test_config_may_come_before_a_plugin_subcommand(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[sip]\nport = 5081\n")
    calls.clear()
    plugin = FakeEntryPoint("carrier", register_carrier)
    main(["--config", str(config), "carrier", "list"], plugins=[plugin])
    [(_, settings)] = calls
    assert settings.sip.port == 5081


def test_plugin_command_with_bad_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls.clear()
    plugin = FakeEntryPoint("carrier", register_carrier)
    status = main(["carrier", "list", "--config", str(tmp_path / "none.toml")], plugins=[plugin])
    assert status == 2
    assert calls == []
    assert "none.toml" in capsys.readouterr().err


def test_broken_plugin_is_named_in_the_error() -> None:
    def broken(subparsers: Any) -> None:
        raise ImportError("no module named carriers")

    with pytest.raises(ImportError) as info:
        main(["version"], plugins=[FakeEntryPoint("carrier", broken)])
    assert "carrier = fake.commands:register" in "\n".join(info.value.__notes__)
