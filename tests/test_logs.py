"""Structured logs: one line per event, `event=name k=v` after time, level and logger."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from sipline import logs
from tests.support import FakeClock

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\w+) (\S+) (.*)$")


@pytest.fixture
def log(capsys: pytest.CaptureFixture[str]) -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []
    logs.configure("info")
    logs.set_node("")  # as a process that runs no node (an in-process node's name left behind)
    yield logging.getLogger("sipline.node")
    root.handlers, root.level = handlers, level


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_event_line(log: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    logs.event(log, "started", transport="udp", addr="127.0.0.1:5060")
    [line] = lines(capsys)
    match = LINE.match(line)
    assert match is not None, line
    assert match.groups() == (
        "INFO",
        "sipline.node",
        "event=started transport=udp addr=127.0.0.1:5060",
    )


def test_values_with_spaces_or_quotes_are_quoted(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.event(log, "rejected", reason="bad request", ua='say "hi"', empty="")
    [line] = lines(capsys)
    assert line.endswith('event=rejected reason="bad request" ua="say \\"hi\\"" empty=""')


def test_disabled_level_formats_nothing(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    class Exploding:
        def __str__(self) -> str:
            raise AssertionError("formatted although the level is disabled")

    logs.event(log, "detail", logging.DEBUG, value=Exploding())
    assert lines(capsys) == []


def test_level_is_configurable(log: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("warning")
    logs.event(log, "quiet")
    logs.event(log, "loud", logging.ERROR)
    assert [line.split(" ", 1)[1] for line in lines(capsys)] == ["ERROR sipline.node event=loud"]


def test_configure_twice_does_not_duplicate_lines(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("info")
    logs.event(log, "once")
    assert len(lines(capsys)) == 1


def test_multi_line_message_and_traceback_stay_on_one_line(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed\nbadly")
    [line] = lines(capsys)
    assert 'failed\\nbadly exc="Traceback' in line
    assert "ValueError: boom" in line



def test_a_throttle_lets_one_line_per_key_through_and_counts_the_others() -> None:
    clock = FakeClock(100.0)
    throttle = logs.Throttle(interval=60.0, clock=clock)
    assert throttle.admit("a") == 0
    assert [throttle.admit("a") for _ in range(5)] == [None] * 5
    assert throttle.admit("b") == 0  # keys are independent
    clock.now += 60.0
    assert throttle.admit("a") == 5  # the line after the interval says what was held back
    assert throttle.admit("a") is None


def test_a_throttle_remembers_a_bounded_number_of_keys() -> None:
    throttle = logs.Throttle(max_keys=10, clock=FakeClock(100.0))
    for key in range(1000):
        throttle.admit(key)
    assert len(throttle._keys) <= 10
def test_a_named_node_ends_every_line_with_its_name(
    log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.set_node("proxy@127.0.0.1:5060")
    try:
        logs.event(log, "started", transport="udp")
        logs.event(log, "listening", node="proxy@127.0.0.1:5060")  # said already: not twice
    finally:
        logs.set_node("")
    first, second = lines(capsys)
    assert first.endswith("event=started transport=udp node=proxy@127.0.0.1:5060")
    assert second.endswith("event=listening node=proxy@127.0.0.1:5060")
