"""Next hops: round robin over the ACR nodes, probe hysteresis, pattern routes in order."""

from __future__ import annotations

from b2bua.nexthop import NextHops, dialled_number
from sipline.config import B2buaSection
from sipline.sip.message import Request


def hops(**values: object) -> NextHops:
    return NextHops.from_settings(B2buaSection(**values))  # type: ignore[arg-type]


def ports(plan: object) -> list[int]:
    return [hop.address.port for hop in plan.hops]  # type: ignore[attr-defined]


def test_each_call_starts_at_the_next_acr_node_and_can_fail_over_to_the_others() -> None:
    nexthops = hops(acr=["127.0.0.1:5080", "127.0.0.1:5081", "127.0.0.1:5082"])
    assert [ports(nexthops.plan("44")) for _ in range(4)] == [
        [5080, 5081, 5082], [5081, 5082, 5080], [5082, 5080, 5081], [5080, 5081, 5082],
    ]  # fmt: skip


def test_a_node_goes_down_after_enough_failed_probes_and_up_after_enough_answers() -> None:
    nexthops = hops(probe_failures=3, probe_successes=2)
    primary = nexthops.acr[0]
    assert not nexthops.probed(primary, False) and not nexthops.probed(primary, False)
    assert not nexthops.probed(primary, True)  # an answer resets the count
    assert [nexthops.probed(primary, False) for _ in range(3)] == [False, False, True]
    assert not primary.up
    assert [ports(nexthops.plan("44")) for _ in range(2)] == [[5082, 5080], [5082, 5080]]
    assert [nexthops.probed(primary, True) for _ in range(2)] == [False, True]
    assert primary.up


def test_with_every_node_down_calls_still_try_them_all() -> None:
    nexthops = hops(probe_failures=1)
    for hop in nexthops.acr:
        nexthops.probed(hop, False)
    assert ports(nexthops.plan("44")) == [5080, 5082]


def test_pattern_routes_match_in_order_by_prefix_or_whole_number_expression() -> None:
    nexthops = hops(routes=[
        {"name": "emergency", "pattern": "^(112|911)$", "gateways": ["127.0.0.1:5090"]},
        {"name": "partner", "pattern": "+4420", "gateways": ["127.0.0.1:5091", "127.0.0.1:5092"]},
        {"pattern": "+44", "gateways": ["127.0.0.1:5093"]},
    ])  # fmt: skip
    assert (nexthops.plan("112").route, ports(nexthops.plan("112"))) == ("emergency", [5090])
    assert nexthops.plan("1120").route is None  # a whole-number match, not a prefix
    assert ports(nexthops.plan("+442071234567")) == [5091, 5092]
    assert nexthops.plan("+441234").route == "+44"  # unnamed: the pattern names it
    assert nexthops.plan("+33").route is None


def test_a_hop_named_twice_is_probed_once() -> None:
    nexthops = hops(
        acr=["127.0.0.1:5080", "127.0.0.1:5081"],
        routes=[{"pattern": "1", "gateways": ["127.0.0.1:5080"]}],
    )
    assert len(nexthops.hops) == 2 and nexthops.routes[0].hops[0] is nexthops.acr[0]


def test_the_dialled_number_is_the_request_uri_s_user_part() -> None:
    assert dialled_number(Request("INVITE", "sip:+4420;npdi@example.com;user=phone")) == "+4420"
    assert dialled_number(Request("INVITE", "tel:+4420")) == "+4420"
    assert dialled_number(Request("INVITE", "sip:example.com")) == ""


def test_a_hop_marked_down_by_a_call_is_down_at_once_and_needs_its_answers_again() -> None:
    nexthops = hops(probe_successes=2)
    primary = nexthops.acr[0]
    nexthops.probed(primary, True)
    assert nexthops.mark_down(primary) and not primary.up
    assert not nexthops.mark_down(primary)  # once
    assert ports(nexthops.plan("44")) == [5082, 5080]
    assert [nexthops.probed(primary, True) for _ in range(2)] == [False, True]


def test_with_every_node_down_the_one_heard_from_last_is_tried_first() -> None:
    nexthops = hops(acr=["127.0.0.1:5080", "127.0.0.1:5081", "127.0.0.1:5082"])
    for hop, heard in zip(nexthops.acr, (10.0, 30.0, 20.0), strict=True):
        nexthops.mark_down(hop)
        hop.heard = heard
    assert [ports(nexthops.plan("44")) for _ in range(2)] == [[5081, 5082, 5080]] * 2
    nexthops.acr[1].up = True
    assert ports(nexthops.plan("44")) == [5081, 5082, 5080]
