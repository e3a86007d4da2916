"""The node's secret: auth.secret, else one random key per data directory, kept."""

from __future__ import annotations

import os
from pathlib import Path

from sipline.config import Settings
from sipline.secret import KEY_FILE, node_secret


def settings(data_dir: Path, secret: str = "") -> Settings:
    return Settings(node={"data_dir": data_dir}, auth={"secret": secret})


def test_a_configured_secret_is_the_node_secret_and_no_file_is_written(tmp_path: Path) -> None:
    assert node_secret(settings(tmp_path, "shared by the cluster")) == "shared by the cluster"
    assert not (tmp_path / KEY_FILE).exists()


def test_without_one_the_first_node_writes_a_key_that_every_later_one_reads(
    tmp_path: Path,
) -> None:
    assert node_secret(settings(tmp_path), create=False) is None  # operator commands: no key yet
    first = node_secret(settings(tmp_path))
    assert first and len(first) == 64
    assert node_secret(settings(tmp_path)) == first  # a restart, or the box's other nodes
    assert os.stat(tmp_path / KEY_FILE).st_mode & 0o777 == 0o600
    assert node_secret(settings(tmp_path / "elsewhere")) != first  # another data directory
