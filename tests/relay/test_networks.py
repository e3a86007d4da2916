"""Who may send ng commands (relay.networks)."""

from __future__ import annotations

import pytest

from relay.networks import KNOWN_HOSTS, Networks


def test_hosts_inside_the_networks_are_in_and_others_not() -> None:
    allowed = Networks(["127.0.0.0/8", "::1", "10.1.2.3"])
    assert "127.0.0.1" in allowed and "127.9.9.9" in allowed
    assert "::1" in allowed and "10.1.2.3" in allowed
    assert "10.1.2.4" not in allowed and "192.0.2.1" not in allowed and "::2" not in allowed


def test_an_ipv4_mapped_source_counts_as_its_ipv4_address() -> None:
    allowed = Networks(["10.0.0.0/8"])
    assert "::ffff:10.0.0.7" in allowed and "::ffff:192.0.2.1" not in allowed


def test_what_is_not_an_address_is_never_in() -> None:
    allowed = Networks(["0.0.0.0/0", "::/0"])
    assert "localhost" not in allowed and "" not in allowed
    assert "fe80::1%lo" in allowed  # a zone id is not part of the address


def test_no_networks_means_nobody() -> None:
    assert "127.0.0.1" not in Networks([])


def test_hosts_are_remembered_only_up_to_a_bound() -> None:
    allowed = Networks(["127.0.0.1", "10.0.0.0/8"])
    assert "127.0.0.1" in allowed  # ours, first
    for n in range(KNOWN_HOSTS + 500):  # spoofed sources, inside the networks or not
        host = f"{10 + (n & 1)}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        assert (host in allowed) == (not n & 1)
    assert len(allowed._known) == KNOWN_HOSTS
    assert "127.0.0.1" in allowed and "11.0.0.1" not in allowed


@pytest.mark.parametrize("bad", ["localhost", "10.0.0.0/33", "300.1.1.1"])
def test_a_bad_network_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Networks([bad])
