"""Opening Redis: plain URLs and Sentinel URLs (parsing, and validation at start)."""

from __future__ import annotations

import pytest

from sipline.config import ConfigError, load_settings
from sipline.storage.live import SentinelUrl, check_redis_url, parse_sentinel_url


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    parsed = parse_sentinel_url("redis+sentinel://:pw@127.0.0.1:26379,[::1]:26380/mymaster/3")
    assert parsed == SentinelUrl((("127.0.0.1", 26379), ("::1", 26380)), "mymaster", 3, "pw")
    assert parse_sentinel_url("redis+sentinel://10.0.0.1:26379/m") == SentinelUrl(
        (("10.0.0.1", 26379),), "m", 0, None
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1/m",  # no port
        "redis+sentinel://127.0.0.1:26379",  # no master
        "redis+sentinel://127.0.0.1:26379/m/x",  # a database that is no number
        "http://127.0.0.1:6379",
    ],
)
def test_a_bad_redis_url_fails_at_start_naming_the_key(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIPLINE_REDIS__URL", url)
    with pytest.raises(ConfigError, match=r"redis\.url"):
        load_settings(None)
    with pytest.raises(ValueError):
        check_redis_url(url)
