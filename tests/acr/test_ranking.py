"""The route table: candidates by longest prefix per carrier, ranked by score, explained."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from acr.ranking import RouteTable
from acr.scoring import Figures
from sipline.carriers.model import Carrier, Gateway, Rate, RoutingProfile

NOW = 1_700_000_000.0


def carrier(name: str, *hosts: str, **kw) -> Carrier:
    hosts = hosts or (f"{name}.example",)
    return Carrier(name, tuple(Gateway(name, h) for h in hosts), **kw)


@dataclass
class Stats:
    """A StatsView test double: figures per (carrier, prefix)."""

    figures: dict[tuple[str, str], Figures] = field(default_factory=dict)

    def quality(self, carrier: str, prefix: str) -> Figures:
        return self.figures.get((carrier, prefix), Figures())

    def pairs(self) -> list[tuple[str, str]]:
        return list(self.figures)


@dataclass
class StatsWithoutPairs:
    figures: dict[tuple[str, str], Figures] = field(default_factory=dict)

    def quality(self, carrier: str, prefix: str) -> Figures:
        return self.figures.get((carrier, prefix), Figures())


@dataclass
class Health:
    """A HealthView test double: gateways down by address, headroom by carrier."""

    down: set[str] = field(default_factory=set)
    spare: dict[str, float] = field(default_factory=dict)

    def gateway_up(self, address: str, now: float) -> bool:
        return address not in self.down

    def headroom(self, carrier: str) -> float:
        return self.spare.get(carrier, 1.0)


CARRIERS = [carrier("cheap"), carrier("mid", "mid1.example", "mid2.example"), carrier("dear")]
RATES = [
    Rate("cheap", "44", 0.010),
    Rate("mid", "4420", 0.012),
    Rate("mid", "44", 0.050),
    Rate("dear", "4", 0.030),
    Rate("dear", "1", 0.001),
]


def table(carriers=CARRIERS, rates=RATES, profiles=(), stats=None, health=None, **kw) -> RouteTable:
    kw.setdefault("now", NOW)
    t = RouteTable(carriers, rates, profiles, kw.pop("default", RoutingProfile()), **kw)
    t.refresh(stats or Stats(), health or Health(), NOW)
    return t


def names(decision) -> list[str]:
    return [c.carrier.name for c in decision.candidates]


def good(attempts: float, answered_share: float = 0.6) -> Figures:
    answered = attempts * answered_share
    return Figures(attempts, answered, min(attempts, answered * 1.4), 1.0, 120.0)


# -- candidates --


def test_each_carrier_is_a_candidate_by_its_own_longest_prefix_and_rate():
    decision = table().decide("442079460000", NOW)
    by_name = {c.carrier.name: (c.prefix, c.rate.rate) for c in decision.candidates}
    assert by_name == {"cheap": ("44", 0.010), "mid": ("4420", 0.012), "dear": ("4", 0.030)}
    assert decision.prefix == "4420"


def test_with_equal_health_and_no_figures_the_cheapest_comes_first():
    assert names(table().decide("442079460000", NOW)) == ["cheap", "mid", "dear"]


def test_a_carrier_without_a_rate_for_the_number_is_no_candidate():
    decision = table().decide("15551234567", NOW)
    assert names(decision) == ["dear"]
    assert decision.as_json()["no_rate"] == ["cheap", "mid"]


def test_a_number_no_deck_covers_has_no_candidates_and_says_why():
    decision = table().decide("8612345", NOW)
    assert decision.candidates == []
    assert decision.prefix == ""
    assert "no carrier has a rate" in decision.explain()


def test_a_leading_plus_is_ignored_and_other_non_digits_are_refused():
    t = table()
    assert t.decide("+442079460000", NOW).number == "442079460000"
    with pytest.raises(ValueError, match="digits only"):
        t.decide("44-20", NOW)


def test_the_list_is_cut_to_the_profiles_number_of_attempts():
    t = table(default=RoutingProfile(max_attempts=2))
    assert names(t.decide("442079460000", NOW)) == ["cheap", "mid"]
    assert t.decide("442079460000", NOW).as_json()["candidates"][2]["attempt"] is None


def test_rates_of_unknown_carriers_are_ignored_and_counted():
    t = table(rates=[*RATES, Rate("ghost", "44", 0.0001)])
    assert "ghost" not in names(t.decide("4412", NOW))
    assert t.ignored == 1


def test_decide_before_any_refresh_assumes_every_gateway_up_and_no_figures():
    t = RouteTable(CARRIERS, RATES, (), RoutingProfile(), now=NOW)
    assert names(t.decide("442079460000", NOW)) == ["cheap", "mid", "dear"]


# -- availability --


def test_disabled_carriers_are_excluded_and_explained():
    carriers = [carrier("cheap", enabled=False), *CARRIERS[1:]]
    decision = table(carriers).decide("442079460000", NOW)
    assert names(decision) == ["mid", "dear"]
    assert "disabled" in decision.explain()


def test_a_carrier_with_every_gateway_down_is_excluded():
    decision = table(health=Health(down={"cheap.example:5060"})).decide("4420794", NOW)
    assert "cheap" not in names(decision)
    excluded = decision.as_json()["excluded"]
    assert excluded[0]["carrier"] == "cheap"
    assert excluded[0]["reasons"] == ["no healthy gateway"]


def test_a_carrier_with_a_gateway_down_tries_the_healthy_one_first_and_scores_lower():
    healthy = table().decide("4420794", NOW)
    half = table(health=Health(down={"mid1.example:5060"})).decide("4420794", NOW)
    mid = next(c for c in half.candidates if c.carrier.name == "mid")
    assert [g.host for g in mid.gateways] == ["mid2.example", "mid1.example"]
    assert mid.availability == 0.5
    assert (
        mid.availability
        < next(c for c in healthy.candidates if c.carrier.name == "mid").availability
    )


def test_no_headroom_excludes_and_little_headroom_lowers_availability():
    decision = table(health=Health(spare={"cheap": 0.0, "mid": 0.1})).decide("4420794", NOW)
    assert sorted(names(decision)) == ["dear", "mid"]
    assert {c.carrier.name: c.availability for c in decision.candidates} == {
        "mid": pytest.approx(0.55),
        "dear": 1.0,
    }
    assert "no headroom" in decision.explain()


# -- quality and confidence --


def test_three_calls_are_not_better_than_three_thousand():
    carriers = [carrier("few"), carrier("many")]
    rates = [Rate("few", "44", 0.01), Rate("many", "44", 0.01)]
    stats = Stats({("few", "44"): good(3, 1.0), ("many", "44"): good(3000, 0.55)})
    assert names(table(carriers, rates, stats=stats).decide("4412", NOW)) == ["many", "few"]


def test_a_carrier_that_fails_its_calls_falls_behind_a_dearer_good_one():
    stats = Stats({("cheap", "44"): good(2000, 0.02), ("mid", "4420"): good(2000, 0.6)})
    profile = RoutingProfile(weight_availability=0.2, weight_quality=0.6, weight_price=0.2)
    assert names(table(stats=stats, default=profile).decide("4420794", NOW))[0] == "mid"


def test_figures_are_asked_of_every_row_when_the_stats_cannot_list_pairs():
    stats = StatsWithoutPairs({("cheap", "44"): good(2000, 0.02), ("mid", "4420"): good(2000, 0.6)})
    profile = RoutingProfile(weight_availability=0.2, weight_quality=0.6, weight_price=0.2)
    assert names(table(stats=stats, default=profile).decide("4420794", NOW))[0] == "mid"


# -- profiles and floors --


def test_the_longest_profile_prefix_applies_even_beyond_every_deck_prefix():
    price_only = RoutingProfile("44207", weight_availability=0, weight_quality=0, weight_price=1)
    t = table(profiles=[price_only])
    assert t.decide("4420794", NOW).profile == price_only
    assert t.decide("4420694", NOW).profile == RoutingProfile()
    assert t.decide("4420794", NOW).prefix == "4420"


def test_a_stored_profile_for_every_number_replaces_the_default():
    everywhere = RoutingProfile("", max_attempts=1)
    assert names(table(profiles=[everywhere]).decide("4420794", NOW)) == ["cheap"]


def test_max_price_and_min_quality_floors_exclude_with_the_reason():
    stats = Stats({("mid", "4420"): good(5000, 0.01)})
    profile = RoutingProfile(max_price=0.02, min_quality=0.1)
    decision = table(stats=stats, default=profile).decide("4420794", NOW)
    assert names(decision) == ["cheap"]
    reasons = {e["carrier"]: e["reasons"] for e in decision.as_json()["excluded"]}
    assert reasons == {"dear": ["over max_price 0.02"], "mid": ["under min_quality 0.1"]}


def test_min_quality_spares_a_carrier_with_no_figures_yet():
    profile = RoutingProfile(min_quality=0.5)
    stats = Stats({("mid", "4420"): good(5000, 0.9)})
    assert names(table(stats=stats, default=profile).decide("4420794", NOW)) == [
        "mid",
        "cheap",
        "dear",
    ]


def test_price_is_scored_relative_to_the_cheapest_eligible_candidate():
    decision = table(health=Health(down={"cheap.example:5060"})).decide("4420794", NOW)
    prices = {c.carrier.name: c.price for c in decision.candidates}
    assert prices == {"mid": 1.0, "dear": pytest.approx(0.4)}


# -- exploration --


def test_the_exploration_share_of_decisions_holds_statistically():
    t = table(exploration=0.1, seed=5)
    n = 20_000
    decisions = [t.decide("4420794", NOW) for _ in range(n)]
    explored = [d for d in decisions if d.explored]
    sigma = math.sqrt(n * 0.1 * 0.9)
    assert abs(len(explored) - n * 0.1) < 4 * sigma
    assert {names(d)[0] for d in explored} == {"mid", "dear"}
    assert all(names(d)[0] == "cheap" for d in decisions if not d.explored)


def test_an_explored_decision_puts_a_lower_ranked_carrier_first_and_keeps_the_rest_in_order():
    t = table(exploration=1.0, seed=1)
    for _ in range(50):
        order = names(t.decide("4420794", NOW))
        assert order in (["mid", "cheap", "dear"], ["dear", "cheap", "mid"])


def test_exploration_is_deterministic_with_a_seed():
    def run(seed):
        t = table(exploration=0.3, seed=seed)
        return [names(t.decide("4420794", NOW)) for _ in range(200)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_no_exploration_with_a_zero_share_or_a_single_candidate():
    assert not any(table().decide("4420794", NOW).explored for _ in range(500))
    t = table(exploration=1.0)
    assert not any(t.decide("1555", NOW).explored for _ in range(50))


# -- refresh --


def test_refresh_re_ranks_when_health_changes():
    t = table()
    t.refresh(Stats(), Health(down={"cheap.example:5060"}), NOW)
    assert names(t.decide("4420794", NOW)) == ["mid", "dear"]
    t.refresh(Stats(), Health(), NOW)
    assert names(t.decide("4420794", NOW)) == ["cheap", "mid", "dear"]


def test_small_moves_of_the_figures_re_rank_nothing():
    t = table(health=Health(spare={"cheap": 1.0}))
    before = t._ranking
    t.refresh(Stats(), Health(spare={"cheap": 0.99}), NOW + 1)
    assert t._ranking.order is before.order
    assert t._ranking.at == NOW + 1


def test_a_partial_re_ranking_agrees_with_a_full_one():
    carriers = [carrier(f"c{i}") for i in range(6)]
    rng = np.random.default_rng(1)
    rates = [
        Rate(f"c{i}", p, float(rng.uniform(0.01, 0.05)))
        for i in range(6)
        for p in ("44", "4420", "442079", "33", "331", "1")
        if rng.random() < 0.7
    ]
    profile = RoutingProfile(weight_availability=0.1, weight_quality=0.8, weight_price=0.1)
    t = table(carriers, rates, default=profile)
    t.PARTIAL_SHARE = 1.0  # this table is small: re-rank part of it all the same
    first = next(r for r in rates if r.prefix == "4420")
    stats = Stats({(first.carrier, "4420"): good(5000, 0.9)})
    t.refresh(stats, Health(), NOW)
    assert not t._ranking.full
    fresh = table(carriers, rates, stats=stats, default=profile)
    for number in ("4420794", "4420123", "4412", "3312", "3399", "1555", "99"):
        assert names(t.decide(number, NOW)) == names(fresh.decide(number, NOW)), number


# -- effective dates --


def test_the_table_holds_the_rates_effective_now_and_knows_when_that_changes():
    rates = [
        Rate("cheap", "44", 0.010, effective_to=NOW + 100),
        Rate("cheap", "44", 0.020, effective_from=NOW + 100),
        Rate("mid", "44", 0.015, effective_from=NOW - 10, effective_to=NOW + 50),
        Rate("dear", "44", 0.001, effective_to=NOW),
    ]
    t = table(rates=rates)
    assert {c.carrier.name: c.rate.rate for c in t.decide("4412", NOW).candidates} == {
        "cheap": 0.010,
        "mid": 0.015,
    }
    assert t.valid_until == NOW + 50
    assert not t.expired(NOW + 49) and t.expired(NOW + 50)
    later = table(rates=rates, now=NOW + 100)
    assert [c.rate.rate for c in later.decide("4412", NOW + 100).candidates] == [0.020]
    assert later.valid_until is None


def test_of_two_rows_for_one_carrier_and_prefix_the_one_taking_effect_last_holds():
    rates = [
        Rate("cheap", "44", 0.02, effective_from=NOW - 100),
        Rate("cheap", "44", 0.01, effective_from=NOW - 5),
    ]
    assert table(rates=rates).decide("4412", NOW).candidates[0].rate.rate == 0.01


# -- explaining --


def test_explain_lists_candidates_with_component_scores_and_why_the_winner_won():
    stats = Stats({("cheap", "44"): good(300)})
    health = Health(down={"dear.example:5060"})
    decision = table(stats=stats, health=health).decide("442079460000", NOW)
    text = decision.explain()
    assert "longest deck prefix 4420" in text
    assert "cheap" in text and "mid" in text
    assert "no healthy gateway" in text
    assert "quality from 300 attempts" in text
    assert text.splitlines()[-1].startswith("why: cheap scores")
    assert "ahead of mid" in text


def test_as_json_carries_the_same_explanation_as_plain_data():
    decision = table(health=Health(down={"dear.example:5060"})).decide("442079460000", NOW)
    data = json.loads(json.dumps(decision.as_json()))
    assert data["number"] == "442079460000"
    assert data["attempts"] == ["cheap", "mid"]
    first = data["candidates"][0]
    assert first["carrier"] == "cheap" and first["attempt"] == 1
    weighted = sum(first["weighted"].values())
    assert first["score"] == pytest.approx(weighted, abs=1e-3)
    assert set(first) >= {"availability", "quality", "price", "score", "gateways", "figures"}
    assert data["excluded"][0]["reasons"] == ["no healthy gateway"]
    assert data["profile"]["final_codes"] == [404, 484, 486, 487, 600, 603]


def test_an_explored_decision_says_so():
    t = table(exploration=1.0, seed=2)
    text = t.decide("4420794", NOW).explain()
    assert "exploring:" in text and "by score the best is cheap" in text


def test_candidate_scores_match_the_ranking():
    decision = table(stats=Stats({("mid", "4420"): good(100)})).decide("4420794", NOW)
    scores = [c.score for c in decision.candidates]
    assert scores == sorted(scores, reverse=True)
    for c in decision.candidates:
        assert 0.0 <= c.availability <= 1 and 0.0 <= c.quality <= 1 and 0.0 <= c.price <= 1


# -- ranking off the event loop --


async def test_a_ranking_made_in_a_thread_from_a_snapshot_counts_from_its_install():
    import asyncio

    profile = RoutingProfile(weight_availability=0.2, weight_quality=0.6, weight_price=0.2)
    stats, health = Stats(), Health()
    t = table(stats=stats, health=health, default=profile)
    assert names(t.decide("4420794", NOW))[0] == "cheap"
    stats.figures[("cheap", "44")] = good(2000, 0.02)  # cheap fails its calls
    stats.figures[("mid", "4420")] = good(2000, 0.6)
    snapshot = t.snapshot(stats, health, NOW)
    stats.figures.clear()  # the live figures change on while the thread ranks
    health.down.add("mid1.example")
    ranking = await asyncio.to_thread(t.rank, snapshot)
    assert names(t.decide("4420794", NOW))[0] == "cheap"  # not before it is installed
    t.install(ranking)
    decision = t.decide("4420794", NOW)
    assert names(decision)[0] == "mid"  # as the snapshot had it
    # mid1 went down after the snapshot: still first until the next one.
    assert [g.host for g in decision.candidates[0].gateways] == ["mid1.example", "mid2.example"]
