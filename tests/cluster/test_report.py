"""Node reports: JSON both ways (hostile input refused), and the status table."""

from __future__ import annotations

import pytest

from sipline.cluster.report import Report, rows, uptime
from sipline.cluster.state import State

NOW = 1_000_000.0


def proxy(**fields: object) -> Report:
    values: dict = dict(
        name="proxy@127.0.0.1:5060", role="proxy", address="127.0.0.1:5060",
        admin="127.0.0.1:9160", version="0.1.0", started_at=NOW - 3725, cps=12.34,
        registrations=7, config_version=12, at=NOW,
    )  # fmt: skip
    values.update(fields)
    return Report(**values)


def test_a_report_goes_through_json() -> None:
    report = proxy(detail="syncing bindings", state=State.SYNCING.value)
    assert Report.from_json(report.to_json()) == report


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"role": "proxy", "address": "x"},
        {"name": "n", "role": "proxy", "address": "x", "calls": "7"},
        {"name": "n", "role": "proxy", "address": "x", "calls": True},
        {"name": "n", "role": "proxy", "address": "x", "state": 3},
        {"name": "n", "role": "proxy", "address": "x", "at": None},
    ],
)
def test_what_is_not_a_report_is_refused(data: object) -> None:
    with pytest.raises(ValueError):
        Report.from_json(data)


def test_unknown_fields_are_ignored() -> None:
    assert Report.from_json({"name": "n", "role": "r", "address": "a", "new": 1}).name == "n"


def test_the_table_shows_each_role_s_figures_and_dashes_for_the_rest() -> None:
    acr = Report(
        name="acr@127.0.0.1:5080", role="acr", address="127.0.0.1:5080", version="0.1.0",
        started_at=NOW - 45, calls=3, cps=0.5, gateways_up=2, gateways_down=1,
        config_version=12, last_error="config version 11 (acr) not applied: boom",
    )  # fmt: skip
    gone = Report.silent(
        "relay@127.0.0.1:2223", "relay", "127.0.0.1:2223", "127.0.0.1:9164",
        State.STOPPED_BY_FAILURE, "unreachable",
    )  # fmt: skip
    header, *lines = rows([proxy(), gone, acr], NOW)
    assert header[:6] == ("ROLE", "NAME", "ADDRESS", "VERSION", "UPTIME", "STATE")
    assert [line[0] for line in lines] == ["acr", "proxy", "relay"]
    assert lines[0][4:] == (
        "45s", "running", "3", "0.5", "-", "2 up/1 down", "-", "12",
        "config version 11 (acr) not applied: boom",
    )  # fmt: skip
    assert lines[1][4:] == ("1h02m", "running", "-", "12.3", "7", "-", "-", "12", "-")
    # A node that did not answer: no number of it is shown, old or new.
    assert lines[2][3:] == (
        "-",
        "-",
        "stopped by failure (unreachable)",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"),
     (86400 + 7200, "1d02h"), (-5, "0s")],
)  # fmt: skip
def test_uptime(seconds: float, text: str) -> None:
    assert uptime(seconds) == text
