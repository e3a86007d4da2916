"""How a carrier scores for a call: availability, quality and price, each in [0, 1].

Scalar functions over one carrier's figures; ``acr.ranking`` applies them to
the carriers and the deck rows that have data, and combines the results in
bulk with numpy. Ratios are scored by a lower confidence bound (Wilson), so a
carrier that answered 3 calls of 3 does not outrank one that answered 2700 of
3000: with little evidence a figure counts for little, and exploration
(``explore``) is how a carrier with little evidence earns more.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

from sipline.carriers.model import RoutingProfile

Z = 1.96  # 95% two-sided; the lower bound is what we are fairly sure of

# Quality parts and their weights (renormalised over the parts that are known).
QUALITY_WEIGHTS = {"ner": 0.35, "asr": 0.25, "pdd": 0.15, "acd": 0.15, "media": 0.10}
PDD_REF = 3.0  # seconds of post-dial delay that score 0.5
ACD_REF = 60.0  # seconds of average call duration that score 0.5 (short calls: drops, false answer)
LOSS_REF = 0.05  # packet loss (share) that scores 0
PRIOR = 0.5  # what a mean figure (PDD, ACD) scores with no samples
PRIOR_SAMPLES = 10.0  # samples at which the measured figure and the prior weigh the same


class QualityFigures(Protocol):
    """What ``acr.stats.QualityFigures`` offers: time-decayed counts (floats) and means."""

    @property
    def attempts(self) -> float: ...
    @property
    def answered(self) -> float: ...
    @property
    def connected(self) -> float: ...  # answered, or ended by the callee/number (NER)
    @property
    def pdd_mean(self) -> float | None: ...
    @property
    def acd_mean(self) -> float | None: ...
    @property
    def mos(self) -> float | None: ...
    @property
    def jitter(self) -> float | None: ...
    @property
    def loss(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Figures:
    """Plain QualityFigures, for carriers with no data and for tests."""

    attempts: float = 0.0
    answered: float = 0.0
    connected: float = 0.0
    pdd_mean: float | None = None
    acd_mean: float | None = None
    mos: float | None = None
    jitter: float | None = None
    loss: float | None = None


NO_FIGURES = Figures()


def wilson_lower(successes: float, trials: float, z: float = Z) -> float:
    """Lower bound of the Wilson score interval of successes/trials (0 with no trials)."""
    if trials <= 0:
        return 0.0
    p = min(max(successes / trials, 0.0), 1.0)
    z2 = z * z
    centre = p + z2 / (2 * trials)
    margin = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, (centre - margin) / (1 + z2 / trials))


def _shrunk(score: float, samples: float) -> float:
    """``score`` pulled towards PRIOR the fewer samples it rests on."""
    trust = samples / (samples + PRIOR_SAMPLES)
    return PRIOR + (score - PRIOR) * trust


def quality_parts(f: QualityFigures) -> dict[str, float]:
    """The quality parts in [0, 1] that the figures support (media only when measured)."""
    attempts = f.attempts
    parts = {
        "ner": wilson_lower(f.connected, attempts),
        "asr": wilson_lower(f.answered, attempts),
    }
    pdd = f.pdd_mean
    parts["pdd"] = (
        _shrunk(PDD_REF / (PDD_REF + max(pdd, 0.0)), getattr(f, "pdd_samples", f.connected))
        if pdd is not None
        else PRIOR
    )
    acd = f.acd_mean
    parts["acd"] = (
        _shrunk(acd / (acd + ACD_REF), getattr(f, "ended", f.answered))
        if acd is not None and acd >= 0
        else PRIOR
    )
    media = media_score(f.mos, f.loss)
    if media is not None:
        parts["media"] = media
    return parts


def media_score(mos: float | None, loss: float | None) -> float | None:
    """Voice quality from the relay's MOS (1..4.5), else from packet loss; None if unmeasured."""
    if mos is not None:
        return min(max((mos - 1.0) / 3.5, 0.0), 1.0)
    if loss is not None:
        return 1.0 - min(max(loss / LOSS_REF, 0.0), 1.0)
    return None


def quality_score(f: QualityFigures) -> float:
    """Weighted mean of the known quality parts, the call-experience parts (PDD, ACD,
    media) counting only as far as calls connect: fast ringing on calls that fail
    is worth nothing."""
    parts = quality_parts(f)
    total = sum(QUALITY_WEIGHTS[k] for k in parts)
    reached = parts["ner"]
    score = 0.0
    for k, v in parts.items():
        score += QUALITY_WEIGHTS[k] * (v if k in ("ner", "asr") else v * reached)
    return score / total


def availability_score(up_share: float, headroom: float) -> float:
    """The share of a carrier's gateway weight that is up, discounted as it nears its limits.

    A carrier with no healthy gateway or no headroom scores 0 and is no
    candidate at all; an idle one scores its up share, one at 90% of its
    capacity or cps scores 55% of it, so load spreads before a limit is hit.
    """
    if up_share <= 0 or headroom <= 0:
        return 0.0
    return min(up_share, 1.0) * (0.5 + 0.5 * min(headroom, 1.0))


def price_score(price: float, cheapest: float) -> float:
    """The cheapest candidate's price over this one's: 1 for the cheapest, 0.5 at twice its price."""
    if price <= 0 or price <= cheapest:
        return 1.0
    return max(cheapest, 0.0) / price


def combined(profile: RoutingProfile, availability: float, quality: float, price: float) -> float:
    """The profile's weighted mean of the three components."""
    wa, wq, wp = weights(profile)
    return wa * availability + wq * quality + wp * price


def weights(profile: RoutingProfile) -> tuple[float, float, float]:
    """The profile's weights, normalised to sum to 1 (all zero: equal weights)."""
    wa, wq, wp = profile.weight_availability, profile.weight_quality, profile.weight_price
    total = wa + wq + wp
    if total <= 0:
        return (1 / 3, 1 / 3, 1 / 3)
    return (wa / total, wq / total, wp / total)


def floor_reasons(profile: RoutingProfile, quality: float | None, rate: float) -> list[str]:
    """Why a candidate fails the profile's hard floors (empty: it passes).

    ``quality`` None: no figures yet, so min_quality does not apply (a carrier
    could otherwise never earn the figures, not even by exploration).
    """
    reasons = []
    if profile.max_price is not None and rate > profile.max_price:
        reasons.append(f"over max_price {profile.max_price:g}")
    if profile.min_quality is not None and quality is not None and quality < profile.min_quality:
        reasons.append(f"under min_quality {profile.min_quality:g}")
    return reasons


def explore(rng: random.Random, share: float, eligible: int) -> int | None:
    """With probability ``share``, the rank (1..eligible-1) of a lower-ranked candidate to try first.

    Uniform over the lower ranks, so every eligible carrier keeps some fresh
    statistics; None when this call takes the best one (or there is no other).
    """
    if eligible < 2 or share <= 0 or rng.random() >= share:
        return None
    return rng.randrange(1, eligible)
