"""Why a call tries the carriers it tries: a ``Decision`` explained, as data and as text.

Read off the ranking the decision was made from (``acr.ranking``), never the
live figures of now, so the explanation says what was ranked: every carrier
with a rate for the number, the eligible ones with their component scores
(availability, quality, price) and weights, the excluded ones with their
reasons (the carrier's own: disabled, no healthy gateway, no headroom; and
the profile's floors), the carriers with no rate, and one sentence on why
the first is first. ``sipline acr explain NUMBER [--json]`` prints it, and
the router logs it per call at DEBUG. Off the call path: nothing here is
fast on purpose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sipline.carriers.model import RoutingProfile

from .scoring import floor_reasons, quality_parts, weights

if TYPE_CHECKING:
    from .ranking import Decision, Ranking, RouteTable


def explanation(table: RouteTable, ranking: Ranking, decision: Decision, i: int) -> dict[str, Any]:
    """The explanation of ``decision`` (made at the table's prefix index ``i``) as plain data."""
    profile = decision.profile
    ranked, excluded, no_rate = _carriers(table, ranking, decision, i)
    return {
        "number": decision.number,
        "prefix": decision.prefix,
        "profile": _profile(profile),
        "explored": decision.explored,
        "exploration": table.exploration,
        "candidates": ranked,
        "excluded": excluded,
        "no_rate": sorted(no_rate),
        "attempts": [c.carrier.name for c in decision.candidates],
        "why": _why(decision, ranked, excluded, table.exploration),
        "ranked_at": ranking.at,
    }


def _carriers(
    table: RouteTable, ranking: Ranking, decision: Decision, i: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """The ranked carriers (best first), the excluded ones, and the names of those with no rate."""
    profile = decision.profile
    wa, wq, wp = weights(profile)
    cheapest = float(ranking.cheapest[i])
    tried = {c.carrier.name: k for k, c in enumerate(decision.candidates, start=1)}
    ranked, excluded, no_rate = [], [], []
    eligible = set(ranking.order[i, : int(ranking.count[i])].tolist())
    for c in ranking.order[i].tolist():
        carrier = table.carriers[c]
        row = table.row(i, c)
        if row < 0:
            no_rate.append(carrier.name)
            continue
        entry = _entry(table, ranking, c, row)
        q = float(ranking.quality[row])
        if c not in eligible:
            judged = q if ranking.measured[row] else None
            why = ranking.reasons[c] + floor_reasons(profile, judged, entry["rate"])
            excluded.append({**entry, "reasons": why or ["not eligible"]})
            continue
        a = ranking.availability[c]
        price = table.price(row)
        p = cheapest / price if price > cheapest else 1.0
        entry.update(
            availability=round(a, 4),
            price=round(p, 4),
            score=round(wa * a + wq * q + wp * p, 4),
            weighted={
                "availability": round(wa * a, 4),
                "quality": round(wq * q, 4),
                "price": round(wp * p, 4),
            },
            attempt=tried.get(carrier.name),
        )
        ranked.append(entry)
    return ranked, excluded, no_rate


def _entry(table: RouteTable, ranking: Ranking, c: int, row: int) -> dict[str, Any]:
    """What any carrier with a rate shows: its deck row, quality, figures and gateways."""
    carrier = table.carriers[c]
    rate = table.rates[row]
    return {
        "carrier": carrier.name,
        "prefix": rate.prefix,
        "rate": rate.rate,
        "connect_fee": rate.connect_fee,
        "quality": round(float(ranking.quality[row]), 4),
        "figures": _figures(ranking.stats, carrier.name, rate.prefix),
        "gateways": [
            {"address": g.address, "up": ranking.up.get(g.address, False)}
            for g in ranking.gateways[c]
        ],
    }


def _profile(profile: RoutingProfile) -> dict[str, Any]:
    wa, wq, wp = weights(profile)
    return {
        "prefix": profile.prefix,
        "weights": {"availability": wa, "quality": wq, "price": wp},
        "min_quality": profile.min_quality,
        "max_price": profile.max_price,
        "max_attempts": profile.max_attempts,
        "final_codes": sorted(profile.final_codes),
    }


def _figures(stats: Any, carrier: str, prefix: str) -> dict[str, Any]:
    f = stats.quality(carrier, prefix)
    out = {
        "attempts": round(f.attempts, 2),
        "asr": round(f.answered / f.attempts, 4) if f.attempts > 0 else None,
        "ner": round(f.connected / f.attempts, 4) if f.attempts > 0 else None,
        "pdd": None if f.pdd_mean is None else round(f.pdd_mean, 3),
        "acd": None if f.acd_mean is None else round(f.acd_mean, 1),
        "mos": None if f.mos is None else round(f.mos, 2),
    }
    out["parts"] = {k: round(v, 4) for k, v in quality_parts(f).items()}
    return out


def _why(
    decision: Decision,
    ranked: list[dict[str, Any]],
    excluded: list[dict[str, Any]],
    exploration: float,
) -> str:
    if not ranked:
        if excluded:
            return "no candidate: every carrier with a rate for this number is excluded"
        return "no candidate: no carrier has a rate for this number"
    best = ranked[0]
    if decision.explored:
        first = decision.candidates[0].carrier.name
        return (
            f"exploring: {first} is tried first on this call (exploration share "
            f"{exploration:.1%}) so its statistics stay fresh; by score the best is {best['carrier']}"
        )
    if len(ranked) == 1:
        return f"{best['carrier']} is the only eligible candidate"
    second = ranked[1]
    margins = {k: best["weighted"][k] - second["weighted"][k] for k in best["weighted"]}
    lead = max(margins, key=lambda k: margins[k])
    detail = ", ".join(f"{k} {v:+.3f}" for k, v in margins.items())
    return (
        f"{best['carrier']} scores {best['score']:.3f}, {best['score'] - second['score']:.3f} "
        f"ahead of {second['carrier']}, mostly on {lead} (weighted: {detail})"
    )


def render(data: dict[str, Any]) -> str:
    """The text form of an ``explanation``."""
    profile = data["profile"]
    lines = [
        f"number {data['number']}: longest deck prefix {data['prefix'] or '(none)'}",
        _profile_line(profile),
    ]
    if data["candidates"]:
        lines.append("candidates (score = weighted availability + quality + price):")
        lines.append(
            f"  {'try':>3}  {'carrier':<16} {'prefix':<12} {'rate':>9}  {'score':>6}  "
            f"{'avail':>6} {'quality':>7} {'price':>6}  gateways"
        )
        for c in data["candidates"]:
            lines += _candidate_lines(c)
    if data["excluded"]:
        lines.append("excluded:")
        for c in data["excluded"]:
            lines.append(
                f"  {c['carrier']:<21} {c['prefix'] or '-':<12} {c['rate']:>9.5f}  "
                + "; ".join(c["reasons"])
            )
    if data["no_rate"]:
        lines.append("no rate for this number: " + ", ".join(data["no_rate"]))
    if data["attempts"]:
        lines.append("try in order: " + ", ".join(data["attempts"]))
    lines.append("why: " + data["why"])
    return "\n".join(lines)


def _profile_line(profile: dict[str, Any]) -> str:
    w = profile["weights"]
    floors = []
    if profile["min_quality"] is not None:
        floors.append(f"min_quality {profile['min_quality']:g}")
    if profile["max_price"] is not None:
        floors.append(f"max_price {profile['max_price']:g}")
    return (
        f"profile {profile['prefix'] or '(default)'}: weights availability {w['availability']:.2f}, "
        f"quality {w['quality']:.2f}, price {w['price']:.2f}; "
        f"{', '.join(floors) + '; ' if floors else ''}up to {profile['max_attempts']} attempts"
    )


def _candidate_lines(c: dict[str, Any]) -> list[str]:
    gateways = ", ".join(f"{g['address']} {'up' if g['up'] else 'down'}" for g in c["gateways"])
    attempt = c["attempt"] or "-"
    lines = [
        f"  {attempt:>3}  {c['carrier']:<16} {c['prefix'] or '-':<12} {c['rate']:>9.5f}  "
        f"{c['score']:>6.3f}  {c['availability']:>6.3f} {c['quality']:>7.3f} "
        f"{c['price']:>6.3f}  {gateways}"
    ]
    f = c["figures"]
    if f["attempts"]:
        lines.append(
            f"{'':7}quality from {f['attempts']:g} attempts: "
            + ", ".join(f"{k} {v:.3f}" for k, v in f["parts"].items())
        )
    return lines
