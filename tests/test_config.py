"""Configuration: TOML file, SIPLINE_<SECTION>__<KEY> overrides, errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from sipline import __version__
from sipline.config import ConfigError, Settings, listening_on, load_settings, split_host_port

SINGLE = Path(__file__).resolve().parents[1] / "configs" / "single.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no SIPLINE_* variables of the outer environment."""
    for name in os.environ:
        if name.upper().startswith("SIPLINE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sipline.toml"
    path.write_text(text)
    return path


def error_of(path: str | Path | None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


# --- the shipped config -------------------------------------------------------


def test_single_toml_loads() -> None:
    settings = load_settings(SINGLE)
    assert isinstance(settings, Settings)
    assert settings.sip.host == "127.0.0.1"
    assert settings.sip.port == 5060
    assert settings.sip.transports == ["udp", "tcp"]
    assert settings.database.url == "sqlite:///data/sipline.db"
    assert settings.redis.url is None


def test_single_toml_spells_out_the_embedded_defaults() -> None:
    assert load_settings(SINGLE) == load_settings(None)


def test_defaults() -> None:
    settings = load_settings(None)
    assert settings.node.name == ""  # ROLE@HOST:PORT, each role's own
    assert settings.node.data_dir == Path("data")
    assert settings.node.drain_timeout == 5.0
    assert settings.sip.max_message_bytes == 65535
    assert settings.sip.tcp_idle_timeout == 300.0
    assert settings.sip.trace is False
    assert settings.sip.server_header == f"sipline/{__version__}"
    assert settings.log.level == "info"
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 0)


def test_file_values_are_used(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[sip]\nport = 5070\ntransports = ["tcp"]\n[redis]\nurl = "redis://h:1/0"\n'
    )
    settings = load_settings(path)
    assert settings.sip.port == 5070
    assert settings.sip.transports == ["tcp"]
    assert settings.sip.host == "127.0.0.1"  # keys left out keep their defaults
    assert settings.redis.url == "redis://h:1/0"


# --- environment overrides ----------------------------------------------------


def test_env_overrides_a_key_of_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPLINE_SIP__PORT", "5090")
    monkeypatch.setenv("SIPLINE_DATABASE__URL", "mysql://sipline@127.0.0.1:3306/sipline")
    settings = load_settings(SINGLE)
    assert settings.sip.port == 5090
    assert settings.database.url == "mysql://sipline@127.0.0.1:3306/sipline"
    assert settings.sip.host == "127.0.0.1"  # the rest of [sip] still comes from the file


def test_env_list_is_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPLINE_SIP__TRANSPORTS", '["udp"]')
    assert load_settings(SINGLE).sip.transports == ["udp"]


def test_env_whole_section_is_a_json_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPLINE_LOG", '{"level": "debug"}')
    assert load_settings(SINGLE).log.level == "debug"


def test_env_bool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPLINE_SIP__TRACE", "true")
    assert load_settings(None).sip.trace is True


def test_env_bad_json_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPLINE_SIP__TRANSPORTS", "[udp")
    message = error_of(SINGLE)
    assert "sip" in message
    assert "must be JSON" in message


def test_env_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPLINE_SIP__PORT", "70000")
    message = error_of(SINGLE)
    assert "sip.port = '70000'" in message
    assert "less than or equal to 65535" in message
    assert "SIPLINE_SIP__PORT" in message


def test_env_unknown_section_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPLINE_SPI__PORT", "5090")
    message = error_of(SINGLE)
    assert "SIPLINE_SPI__PORT" in message
    assert "sip" in message  # the known sections are listed


def test_env_unknown_key_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPLINE_SIP__PROT", "5090")
    message = error_of(SINGLE)
    assert "sip.prot" in message
    assert "unknown key" in message


# --- bad values ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key", "given", "expected"),
    [
        ("[sip]\nport = 0", "sip.port", "0", "greater than or equal to 1"),
        ("[sip]\nport = 65536", "sip.port", "65536", "less than or equal to 65535"),
        ('[sip]\nport = "five"', "sip.port", "'five'", "valid integer"),
        ('[sip]\nhost = "localhost"', "sip.host", "'localhost'", "IPv4 or IPv6 address"),
        ('[sip]\ntransports = ["udp", "sctp"]', "sip.transports[1]", "'sctp'", "'udp', 'tcp' or 'tls'"),
        ("[sip]\ntransports = []", "sip.transports", "[]", "at least 1 item"),
        ('[tls]\ncertificate = "/nonexistent.pem"\nkey = "/nonexistent.key"',
         "tls.certificate", "'/nonexistent.pem'", "no such file"),
        ('[tls]\nmin_version = "1.1"', "tls.min_version", "'1.1'", "'1.2' or '1.3'"),
        ('[b2bua]\nacr = ["127.0.0.1:5080;transport=sctp"]', "b2bua.acr[0]",
         "'127.0.0.1:5080;transport=sctp'", "transport=udp, tcp or tls"),
        ('[proxy]\ntrusted = ["tls:"]', "proxy.trusted[0]", "'tls:'", "tls:NAME"),
        ("[sip]\nmax_message_bytes = 512", "sip.max_message_bytes", "512", "1024"),
        ("[sip]\ntcp_idle_timeout = 0", "sip.tcp_idle_timeout", "0", "greater than 0"),
        (
            '[log]\nlevel = "verbose"',
            "log.level",
            "'verbose'",
            "'debug', 'info', 'warning' or 'error'",
        ),
        ("[metrics]\nport = -1", "metrics.port", "-1", "greater than or equal to 0"),
        (
            '[database]\nurl = "postgres://x"',
            "database.url",
            "'postgres://x'",
            "sqlite:// or mysql://",
        ),
        (
            '[proxy]\ntrusted = ["127.0.0.1:5060;transport=sctp"]',
            "proxy.trusted[0]",
            "'127.0.0.1:5060;transport=sctp'",
            "optionally with ;transport=tcp",
        ),
        ("[proxy]\ndomains = []", "proxy.domains", "[]", "at least 1 item"),
        ('[auth]\nalgorithms = ["SHA-1"]', "auth.algorithms[0]", "'SHA-1'", "'SHA-256' or 'MD5'"),
        (
            "[b2bua]\nsilence_timeout = 0.1",
            "b2bua.silence_timeout",
            "0.1",
            "greater than or equal to 0.25",
        ),
        (
            "[node]\ndrain_timeout = -1.0",
            "node.drain_timeout",
            "-1.0",
            "greater than or equal to 0",
        ),
    ],
)
def test_bad_value_names_key_value_and_expectation(
    tmp_path: Path, toml: str, key: str, given: str, expected: str
) -> None:
    path = write(tmp_path, toml + "\n")
    message = error_of(path)
    assert f"{key} = {given}" in message
    assert expected in message
    assert str(path) in message


def test_every_bad_value_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[sip]\nport = 0\n[log]\nlevel = "loud"\n')
    message = error_of(path)
    assert "2 problem(s)" in message
    assert "sip.port" in message and "log.level" in message


def test_ipv6_host_is_accepted(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, '[sip]\nhost = "::1"\n')).sip.host == "::1"


def test_empty_redis_url_means_in_process(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, '[redis]\nurl = ""\n')).redis.url is None


# --- unknown keys and unusable files --------------------------------------------


def test_unknown_key_is_rejected_by_name(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[sip]\nprot = 5060\n"))
    assert "sip.prot = 5060" in message
    assert "unknown key" in message
    assert "port" in message  # the known keys of [sip] are listed


def test_unknown_section_is_rejected_by_name(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[sipp]\nport = 5060\n"))
    assert "sipp = {'port': 5060}" in message
    assert "unknown key" in message


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[sip\nport = 5060\n")
    message = error_of(path)
    assert str(path) in message
    assert "TOML syntax error" in message
    assert "line 1" in message


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    message = error_of(path)
    assert str(path) in message
    assert "not found" in message


def test_directory_instead_of_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "configs.toml"
    path.mkdir()
    message = error_of(path)
    assert str(path) in message
    assert "not a regular file" in message


def test_pattern_routes_are_tables_with_a_valid_pattern(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(
        '[[b2bua.routes]]\nname = "emergency"\npattern = "^(112|911)$"\n'
        'gateways = ["127.0.0.1:5090"]\n'
        '[[b2bua.routes]]\npattern = "+4420"\ngateways = ["127.0.0.1:5091"]\n'
    )
    routes = load_settings(path).b2bua.routes
    assert [(r.name, r.pattern, r.gateways) for r in routes] == [
        ("emergency", "^(112|911)$", ["127.0.0.1:5090"]),
        ("", "+4420", ["127.0.0.1:5091"]),
    ]
    path.write_text('[[b2bua.routes]]\npattern = "^(112"\ngateways = ["127.0.0.1:5090"]\n')
    with pytest.raises(ConfigError, match=r"b2bua\.routes\[0\]\.pattern"):
        load_settings(path)


def test_trusted_peers_are_addresses_with_or_without_a_port_and_a_transport(
    tmp_path: Path,
) -> None:
    path = tmp_path / "peers.toml"
    peers = ["127.0.0.1", "10.0.0.1:5070", "10.0.0.2;transport=tcp", "[2001:db8::1]:5070"]
    path.write_text(f"[acr]\ntrusted = {peers!r}\n".replace("'", '"'))
    assert load_settings(path).acr.trusted == peers
    for bad in ("carrier.example", "10.0.0.1:99999", "10.0.0.1;tcp", "[2001:db8::1]"):
        path.write_text(f'[b2bua]\ntrusted = ["{bad}"]\n')
        with pytest.raises(ConfigError, match=r"b2bua\.trusted\[0\]"):
            load_settings(path)


def test_the_shipped_roles_trust_each_other_by_port_not_every_local_phone() -> None:
    # Phones on the box are 127.0.0.1 too: trusting the host would let them
    # call the ACR directly, past the B2BUA's accounts (issue 10).
    settings = load_settings(SINGLE)
    proxy = f"{settings.sip.host}:{settings.sip.port}"
    b2bua = f"{settings.b2bua.host}:{settings.b2bua.port}"
    assert settings.b2bua.trusted == [proxy]
    assert settings.acr.trusted == [b2bua]
    assert settings.proxy.trusted == [b2bua, settings.acr.primary, settings.acr.secondary]


def test_listening_on_moves_only_the_sip_address() -> None:
    settings = load_settings(SINGLE)
    acr = listening_on(settings, settings.acr.secondary)
    assert (acr.sip.host, acr.sip.port) == ("127.0.0.1", 5082)
    assert acr.sip.transports == settings.sip.transports
    assert settings.sip.port == 5060


def test_a_host_port_setting_splits_into_host_and_port() -> None:
    assert split_host_port("127.0.0.1:5080") == ("127.0.0.1", 5080)
    assert split_host_port("[2001:db8::1]:5060") == ("2001:db8::1", 5060)


def test_limits_defaults_are_those_of_pike_ipban_and_fail2ban() -> None:
    limits = load_settings(None).limits
    assert (limits.flood_window, limits.flood_density, limits.flood_ban) == (2.0, 200, 300.0)
    assert (limits.auth_failures, limits.auth_window, limits.auth_ban) == (5, 600.0, 600.0)
    assert (limits.tcp_max_connections, limits.tcp_max_connections_per_ip) == (4096, 64)
    assert limits.tcp_read_timeout == 20.0 and limits.ipv6_prefix == 64


def test_a_bad_limit_fails_naming_the_key(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[limits]\nflood_window = 0\nipv6_prefix = 129\n"))
    assert "limits.flood_window = 0: expected greater than 0" in message
    assert "limits.ipv6_prefix = 129: expected less than or equal to 128" in message


def test_a_trusted_tls_name_must_name_a_tls_peer() -> None:
    with pytest.raises(ValidationError, match=r"b2bua.trusted = 'tls:proxy-1': no \[\[tls.peers\]\]"):
        Settings(b2bua={"trusted": ["tls:proxy-1"]})
def test_the_shared_location_s_defaults_and_a_bad_value_named() -> None:
    registrar = load_settings(None).registrar
    assert (registrar.catch_up_interval, registrar.catch_up_interval_unsubscribed) == (1.0, 0.1)
    assert registrar.sync_retry_after == 5


def test_a_bad_catch_up_interval_or_batch_fails_naming_the_key(tmp_path: Path) -> None:
    message = error_of(
        write(tmp_path, "[registrar]\ncatch_up_interval = 0\ncommit_rows = 5001\n")
    )
    assert "registrar.catch_up_interval = 0: expected greater than 0" in message
    assert "registrar.commit_rows = 5001: expected less than or equal to 5000" in message


def test_a_sentinel_redis_url_is_accepted(tmp_path: Path) -> None:
    url = "redis+sentinel://127.0.0.1:26379,127.0.0.2:26379/mymaster/0"
    assert load_settings(write(tmp_path, f'[redis]\nurl = "{url}"\n')).redis.url == url


def test_a_tls_listener_on_another_roles_sip_port_fails_at_start_naming_both() -> None:
    # TLS at port + 1 with the ACR pair at 5080 and 5081: the primary's TLS port is taken.
    acr = {"secondary": "127.0.0.1:5081"}
    with pytest.raises(ValidationError, match=r"TLS listener of acr\.primary .*SIP port of acr\.secondary"):
        Settings(sip={"transports": ["udp", "tls"]}, acr=acr)
    moved = Settings(sip={"transports": ["udp", "tls"], "tls_port": 6060}, acr=acr)  # each role + 1000
    assert listening_on(moved, moved.acr.primary).sip.tls_port == 6080
    assert Settings(sip={"transports": ["udp", "tls"]}).acr.secondary == "127.0.0.1:5082"  # shipped
