"""``run_node``: how every role's command runs its node and turns a storage failure into a status."""

from __future__ import annotations

import asyncio

import pytest

from sipline.storage import SchemaOutdated, StorageError
from sipline.storage.commands import EXIT_STORAGE_ERROR, run_node


def test_a_node_that_returns_exits_0_having_run_on_uvloop() -> None:
    loops: list[str] = []

    async def serve() -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    assert run_node(serve()) == 0
    assert loops == ["uvloop"]


@pytest.mark.parametrize("error", [StorageError("database away"), SchemaOutdated("migrate it")])
def test_a_storage_error_is_a_message_and_status_1(
    error: StorageError, capsys: pytest.CaptureFixture[str]
) -> None:
    async def serve() -> None:
        raise error

    assert run_node(serve()) == EXIT_STORAGE_ERROR == 1
    assert capsys.readouterr().err == f"sipline: {error}\n"


def test_any_other_error_is_not_hidden() -> None:
    async def serve() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_node(serve())
