"""``sipline portal-user`` and the ``[portal]`` config section."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipline.cli import main
from sipline.config import ConfigError, load_settings


def test_portal_users_are_added_listed_and_removed(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "portal.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[database]\nurl = "sqlite:///{tmp_path}/p.db"\n')
    assert main(["db", "migrate", "--config", str(config)]) == 0
    add = ["portal-user", "add", "ops", "--role", "admin", "--password", "long enough pw"]
    assert main([*add, "--config", str(config)]) == 0
    assert main(["portal-user", "add", "cust", "--role", "customer", "--password", "long enough pw",
                 "--config", str(config)]) == 2  # a customer needs an account  # fmt: skip
    assert main(["portal-user", "add", "ops", "--role", "admin", "--password", "short",
                 "--config", str(config)]) == 2  # fmt: skip
    capsys.readouterr()
    assert main(["portal-user", "list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    assert "ops" in listed and "admin" in listed and "long enough" not in listed
    assert main(["portal-user", "remove", "ops", "--config", str(config)]) == 0


def test_a_bad_portal_key_fails_at_start_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[portal]\nlisten = "nowhere"\n')
    with pytest.raises(ConfigError, match=r"portal\.listen = 'nowhere'"):
        load_settings(config)
    config.write_text("[portal]\nlogin_tries = 3\n")
    with pytest.raises(ConfigError, match=r"portal\.login_tries.*unknown key"):
        load_settings(config)
    config.write_text('[portal]\nlisten = "0.0.0.0:8080"\n')
    with pytest.raises(ConfigError, match=r"portal\.listen = '0\.0\.0\.0:8080'.*secure_cookies"):
        load_settings(config)
    config.write_text('[portal]\nlisten = "0.0.0.0:8080"\nsecure_cookies = true\n')
    assert load_settings(config).portal.secure_cookies
    assert load_settings(None).portal.listen == "127.0.0.1:8080"
