"""sipline.cluster.calls.LiveCall: what an ACR node's /live/calls lists, and its running cost
by the rule its CDR is billed by (sipline.billing)."""

from __future__ import annotations

import pytest

from sipline.cluster.calls import LiveCall

ENTRY = {
    "call_id": "c1", "account": "ACME", "caller": "alice@example.com", "callee": "4420",
    "prefix": "44", "carrier": "acme", "gateway": "127.0.0.1:5090", "rate": 0.6,
    "connect_fee": 0.05, "first_increment": 30, "next_increment": 6,
    "started_at": 1000.0, "answered_at": 1002.0,
}  # fmt: skip


def test_running_cost_follows_the_decks_increments() -> None:
    call = LiveCall.from_json("acr-primary", ENTRY)
    assert call.cost(1002.0) == 0.0  # not a second of talk yet
    assert call.cost(1010.0) == pytest.approx(0.05 + 30 * 0.01)  # the first 30 s
    assert call.cost(1002.0 + 31) == pytest.approx(0.05 + 36 * 0.01)  # then 6 s steps
    assert call.to_json(1012.0)["duration"] == 10.0


@pytest.mark.parametrize("bad", [
    {**ENTRY, "rate": "free"}, {**ENTRY, "caller": None}, {**ENTRY, "account": 3},
    {**ENTRY, "answered_at": "now"}, {**ENTRY, "first_increment": True}, [],
])  # fmt: skip
def test_a_malformed_entry_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        LiveCall.from_json("acr-primary", bad)
