"""Scoring a carrier: confidence-bounded quality, availability, relative price, exploration."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from acr.scoring import (
    NO_FIGURES,
    PRIOR,
    Figures,
    availability_score,
    combined,
    explore,
    floor_reasons,
    media_score,
    price_score,
    quality_parts,
    quality_score,
    weights,
    wilson_lower,
)
from sipline.carriers.model import RoutingProfile


def calls(attempts: float, answered: float, **more: float) -> Figures:
    return Figures(attempts=attempts, answered=answered, connected=answered, **more)


# -- confidence --


def test_wilson_lower_bound_known_values():
    assert wilson_lower(0, 0) == 0.0
    assert wilson_lower(3, 3) == pytest.approx(0.4385, abs=1e-4)
    assert wilson_lower(2700, 3000) == pytest.approx(0.8888, abs=1e-4)
    assert wilson_lower(0, 10) == 0.0


def test_the_same_ratio_on_more_calls_is_a_surer_and_higher_bound():
    bounds = [wilson_lower(0.6 * n, n) for n in (5, 50, 500, 5000)]
    assert bounds == sorted(bounds)
    assert bounds[-1] == pytest.approx(0.6, abs=0.02)


def test_three_calls_answered_of_three_is_not_better_than_2700_of_3000():
    few, many = (
        calls(3, 3, pdd_mean=1.0, acd_mean=120),
        calls(3000, 2700, pdd_mean=1.0, acd_mean=120),
    )
    assert quality_score(few) < quality_score(many)


def test_time_decayed_fractional_counts_are_fine():
    assert 0 < wilson_lower(2.5, 3.7) < 2.5 / 3.7


def test_no_figures_score_only_the_neutral_prior_on_means():
    parts = quality_parts(NO_FIGURES)
    assert parts == {"ner": 0.0, "asr": 0.0, "pdd": PRIOR, "acd": PRIOR}


# -- quality --


def test_a_carrier_that_rarely_connects_scores_low_whatever_its_pdd_and_acd():
    assert quality_score(Figures(5000, 50, 70, pdd_mean=0.5, acd_mean=300)) < 0.05
    assert quality_score(NO_FIGURES) == 0.0


def test_shorter_post_dial_delay_and_longer_calls_score_higher():
    base = {"attempts": 1000.0, "answered": 500.0, "connected": 900.0}
    fast, slow = Figures(**base, pdd_mean=0.5), Figures(**base, pdd_mean=8.0)
    assert quality_parts(fast)["pdd"] > quality_parts(slow)["pdd"]
    long_calls, dropped = Figures(**base, acd_mean=240.0), Figures(**base, acd_mean=8.0)
    assert quality_parts(long_calls)["acd"] > quality_parts(dropped)["acd"]
    assert quality_score(fast) > quality_score(slow)


def test_means_on_few_samples_stay_near_the_prior():
    one = quality_parts(Figures(attempts=1, answered=1, connected=1, pdd_mean=0.0))["pdd"]
    many = quality_parts(Figures(attempts=1000, answered=1000, connected=1000, pdd_mean=0.0))["pdd"]
    assert PRIOR < one < many <= 1.0


def test_network_effectiveness_counts_busy_callees_as_connected():
    busy = Figures(attempts=1000, answered=300, connected=950)
    broken = Figures(attempts=1000, answered=300, connected=310)
    assert quality_parts(busy)["ner"] > quality_parts(broken)["ner"]
    assert quality_parts(busy)["asr"] == quality_parts(broken)["asr"]


def test_media_quality_counts_only_when_the_relay_measured_it():
    assert "media" not in quality_parts(calls(100, 50))
    good = calls(100, 50, mos=4.4)
    bad = calls(100, 50, mos=1.8)
    assert quality_parts(good)["media"] > quality_parts(bad)["media"]
    assert quality_score(good) > quality_score(bad)


def test_media_score_from_mos_else_from_loss():
    assert media_score(4.5, 0.5) == pytest.approx(1.0)
    assert media_score(1.0, None) == 0.0
    assert media_score(None, 0.0) == 1.0
    assert media_score(None, 0.10) == 0.0
    assert media_score(None, None) is None


def test_quality_is_within_zero_and_one():
    for f in (
        NO_FIGURES,
        calls(10**6, 10**6, pdd_mean=0, acd_mean=10**5, mos=5),
        calls(10**6, 0, mos=0.5),
    ):
        assert 0.0 <= quality_score(f) <= 1.0


# -- availability and price --


def test_a_carrier_with_no_healthy_gateway_or_no_headroom_is_unavailable():
    assert availability_score(0.0, 1.0) == 0.0
    assert availability_score(1.0, 0.0) == 0.0


def test_availability_falls_with_gateways_down_and_as_limits_near():
    assert availability_score(1.0, 1.0) == 1.0
    assert availability_score(0.5, 1.0) == 0.5
    assert availability_score(1.0, 0.1) == pytest.approx(0.55)
    assert availability_score(1.0, 0.9) > availability_score(1.0, 0.5)


def test_price_is_relative_to_the_cheapest_candidate():
    assert price_score(0.01, 0.01) == 1.0
    assert price_score(0.02, 0.01) == 0.5
    assert price_score(0.0, 0.0) == 1.0
    assert price_score(0.01, 0.0) == 0.0


# -- the profile --


def test_weights_are_normalised_and_combine_the_components():
    profile = RoutingProfile(weight_availability=2, weight_quality=1, weight_price=1)
    assert weights(profile) == (0.5, 0.25, 0.25)
    assert combined(profile, 1.0, 0.0, 0.5) == pytest.approx(0.625)
    assert weights(RoutingProfile(weight_availability=0, weight_quality=0, weight_price=0)) == (
        1 / 3,
        1 / 3,
        1 / 3,
    )


def test_a_price_only_profile_ranks_by_price_alone():
    profile = RoutingProfile(weight_availability=0, weight_quality=0, weight_price=1)
    assert combined(profile, 1.0, 1.0, 0.5) < combined(profile, 0.1, 0.0, 1.0)


def test_floors_say_why_a_candidate_is_left_out():
    profile = RoutingProfile(min_quality=0.5, max_price=0.02)
    assert floor_reasons(profile, 0.6, 0.02) == []
    assert floor_reasons(profile, 0.4, 0.03) == ["over max_price 0.02", "under min_quality 0.5"]
    assert floor_reasons(RoutingProfile(), 0.0, 99.0) == []
    assert floor_reasons(profile, None, 0.01) == []  # no figures yet: not judged on quality


# -- exploration --


def test_exploration_share_holds_statistically():
    rng, share, n = random.Random(1), 0.05, 40_000
    explored = sum(explore(rng, share, 5) is not None for _ in range(n))
    sigma = math.sqrt(n * share * (1 - share))
    assert abs(explored - n * share) < 4 * sigma


def test_exploration_puts_every_lower_rank_first_about_equally_and_never_the_best():
    rng = random.Random(2)
    ranks = Counter(r for _ in range(20_000) if (r := explore(rng, 0.5, 4)) is not None)
    assert set(ranks) == {1, 2, 3}
    total = sum(ranks.values())
    for count in ranks.values():
        assert abs(count / total - 1 / 3) < 0.03


def test_exploration_is_deterministic_with_a_seed():
    def draws(seed: int) -> list[int | None]:
        rng = random.Random(seed)
        return [explore(rng, 0.2, 6) for _ in range(500)]

    assert draws(11) == draws(11)
    assert draws(11) != draws(12)


def test_no_exploration_with_a_single_candidate_or_a_zero_share():
    rng = random.Random(3)
    assert all(explore(rng, 1.0, 1) is None for _ in range(100))
    assert all(explore(rng, 0.0, 5) is None for _ in range(100))
    assert all(explore(rng, 1.0, 2) == 1 for _ in range(100))
