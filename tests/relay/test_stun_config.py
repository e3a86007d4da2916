"""The ``[relay]`` section's STUN keys: defaults, and the RFC 5780 layouts refused at start."""

from __future__ import annotations

import pytest

from relay.stun_server import StunServer
from sipline.config import ConfigError, load_settings


def relay_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(f"SIPLINE_RELAY__{key.upper()}", value)
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    return str(info.value)


def test_defaults_are_one_address_on_3478_over_udp_and_tcp() -> None:
    relay = load_settings(None).relay
    assert (relay.stun_host, relay.stun_port) == ("127.0.0.1", 3478)
    assert (relay.stun_alt_host, relay.stun_alt_port) == ("", 3479)
    assert relay.stun_transports == ["udp", "tcp"]


def test_the_server_is_built_from_the_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPLINE_RELAY__STUN_ALT_HOST", "127.0.0.2")
    monkeypatch.setenv("SIPLINE_RELAY__STUN_TRANSPORTS", '["udp"]')
    server = StunServer.from_settings(load_settings(None).relay)
    assert server.layout.addresses() == [
        ("127.0.0.1", 3478),
        ("127.0.0.1", 3479),
        ("127.0.0.2", 3478),
        ("127.0.0.2", 3479),
    ]
    assert server.transports == ("udp",)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"stun_alt_host": "127.0.0.1"}, "another address of stun_host's family"),
        ({"stun_alt_host": "::1"}, "another address of stun_host's family"),
        ({"stun_alt_host": "127.0.0.2", "stun_host": "0.0.0.0"}, "specific addresses"),
        ({"stun_alt_host": "127.0.0.2", "stun_alt_port": "3478"}, "stun_alt_port must differ"),
        ({"stun_alt_host": "relay.example.com"}, "relay.stun_alt_host"),
        ({"stun_transports": '["sctp"]'}, "relay.stun_transports[0]"),
        ({"stun_port": "0"}, "relay.stun_port"),
    ],
)
def test_unusable_values_fail_at_start_naming_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    assert expected in relay_error(monkeypatch, **env)


def test_no_transports_means_no_stun_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPLINE_RELAY__STUN_TRANSPORTS", "[]")
    assert load_settings(None).relay.stun_transports == []
