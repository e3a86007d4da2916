"""The route table: every carrier's rate for every prefix, ranked in bulk, looked up per call.

Built once from the carriers, their rate decks (the rows effective "now") and
the routing profiles. The prefixes of all decks and profiles form one
``PrefixTable``; for a number, its longest match there is the most specific
row any carrier or profile has, and each carrier's own longest match is an
ancestor of it (or itself). So a dense table ``match[prefix, carrier]`` (the
deck row each carrier bills a number under that prefix by, -1 for none) and
``profile_of[prefix]`` are filled by inheritance from parent to child.

``refresh(stats, health, now)`` scores availability per carrier, quality per
deck row that has figures, and price relative to each prefix's cheapest
eligible candidate, then sorts every prefix's carriers by their weighted score
with numpy, a chunk of prefixes at a time, into a new ranking that replaces
the old one in a single assignment (a ``decide`` running meanwhile in another
thread sees one or the other). ``decide(number, now)`` is a prefix lookup, a
read of that prefix's order, and the exploration draw; the ``Decision`` it
returns explains itself from the ranking it was made from (``acr.explain``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sipline.carriers.model import Carrier, Gateway, Rate, RoutingProfile

from .explain import explanation, render
from .lpm import PrefixTable
from .scoring import (
    NO_FIGURES,
    QualityFigures,
    availability_score,
    explore,
    quality_score,
    weights,
)

__all__ = [
    "Candidate",
    "Decision",
    "HealthView",
    "QualityFigures",
    "Ranking",
    "RouteTable",
    "Snapshot",
    "StatsView",
]

CHUNK = 1 << 15  # prefixes ranked per numpy pass: bounded temporaries, cache-friendly


class StatsView(Protocol):
    """Time-decayed carrier figures (``acr.stats.CarrierStats``).

    If it also has ``pairs() -> Iterable[(carrier, prefix)]`` (the pairs with any
    figures), ``refresh`` asks only about those; every other deck row scores
    as a row with no figures. If it has ``snapshot()``, a frozen copy with
    ``quality`` and ``pairs`` that another thread may read, ``snapshot`` takes
    that rather than reading figures on the event loop.
    """

    def quality(self, carrier: str, prefix: str) -> QualityFigures: ...


class HealthView(Protocol):
    """Gateway health and carrier headroom (``acr.live``)."""

    def gateway_up(self, address: str, now: float) -> bool: ...

    def headroom(self, carrier: str) -> float: ...  # spare share of capacity/cps; 1: no limit


class _Unknown:
    """Before the first refresh: no figures, every gateway up, no limits reached."""

    def quality(self, carrier: str, prefix: str) -> QualityFigures:
        return NO_FIGURES

    def pairs(self) -> list[tuple[str, str]]:
        return []

    def gateway_up(self, address: str, now: float) -> bool:
        return True

    def headroom(self, carrier: str) -> float:
        return 1.0


@dataclass(slots=True)
class Candidate:
    """A carrier to try for a call, with the deck row it bills by and why it ranks where it does."""

    carrier: Carrier
    rate: Rate
    prefix: str  # the carrier's matched deck prefix (what stats and CDRs are keyed by)
    score: float
    availability: float
    quality: float
    price: float
    gateways: tuple[Gateway, ...]  # healthy first, then by weight

    @property
    def name(self) -> str:
        return self.carrier.name


@dataclass(slots=True, kw_only=True)
class Ranking:
    """One refresh's outcome (``RouteTable.rank``); replaced whole, never changed in place."""

    order: np.ndarray  # (prefixes, carriers): eligible carriers first, best first
    count: np.ndarray  # (prefixes,): how many are eligible
    cheapest: np.ndarray  # (prefixes,): the cheapest eligible price (inf: none)
    quality: np.ndarray  # (rows + 1,): quality score per deck row
    measured: np.ndarray  # (rows + 1,): the row has figures (min_quality applies only then)
    availability: list[float]  # per carrier
    reasons: list[list[str]]  # per carrier: why it is no candidate anywhere
    gateways: list[tuple[Gateway, ...]]  # per carrier: healthy first, then by weight
    up: dict[str, bool]  # per gateway address
    stats: Any  # the StatsView, for the figures behind a quality score in explain()
    at: float
    full: bool = True  # every prefix was ranked (else only those whose rows' quality moved)


@dataclass(slots=True)
class Snapshot:
    """What a refresh reads of the live state (``RouteTable.snapshot``), taken at ``at``."""

    availability: list[float]  # per carrier
    reasons: list[list[str]]  # per carrier: why it is no candidate anywhere
    gateways: list[tuple[Gateway, ...]]  # per carrier: healthy first, then by weight
    up: dict[str, bool]  # per gateway address
    figures: Any  # a frozen StatsView with pairs(): safe to read in any thread
    stats: Any  # the live StatsView, for explain()
    at: float


class _Taken:
    """Figures read on the loop from a StatsView that cannot freeze itself."""

    __slots__ = ("known",)

    def __init__(self, known: dict[tuple[str, str], QualityFigures]) -> None:
        self.known = known

    def pairs(self) -> list[tuple[str, str]]:
        return list(self.known)

    def quality(self, carrier: str, prefix: str) -> QualityFigures:
        return self.known.get((carrier, prefix), NO_FIGURES)


@dataclass(slots=True)
class Decision:
    """The carriers to try for a number, in order, and the means to explain the choice."""

    number: str
    prefix: str  # the longest deck prefix any carrier has for the number ("" if none)
    profile: RoutingProfile
    candidates: list[Candidate]  # floors applied, cut to profile.max_attempts, exploration applied
    explored: bool = False
    _table: RouteTable | None = field(default=None, repr=False, compare=False)
    _ranking: Ranking | None = field(default=None, repr=False, compare=False)
    _index: int = field(default=0, repr=False, compare=False)

    def as_json(self) -> dict[str, Any]:
        """The explanation as plain data (see ``explain``)."""
        if self._table is None or self._ranking is None:
            raise ValueError("a Decision explains itself only when made by RouteTable.decide")
        return explanation(self._table, self._ranking, self, self._index)

    def explain(self) -> str:
        """Every carrier with a rate for the number: the ranked ones with their component scores,
        the excluded ones with the reason, and why the first one is first."""
        return render(self.as_json())


class RouteTable:
    """Carriers ranked per prefix; ``decide`` per call, ``refresh`` when the picture changes."""

    AVAILABILITY_BAND = 0.05  # a carrier's availability moving less than this re-ranks nothing
    QUALITY_BAND = 0.01  # nor does a deck row's quality moving less than this
    PARTIAL_SHARE = 0.25  # re-rank only the prefixes under moved rows if they are this few

    def __init__(
        self,
        carriers: Sequence[Carrier],
        rates: Iterable[Rate],
        profiles: Iterable[RoutingProfile] = (),
        default: RoutingProfile | None = None,
        exploration: float = 0.0,
        seed: int | None = None,
        now: float | None = None,
    ) -> None:
        """``rates`` may hold rows of any time: the table keeps those effective at ``now``
        (default: the wall clock) and ``valid_until`` says when that set next changes."""
        if not 0.0 <= exploration <= 1.0:
            raise ValueError(f"exploration {exploration}: a share between 0 and 1")
        now = time.time() if now is None else now
        self.exploration = exploration
        self._rng = random.Random(seed)
        self.built_at = now
        self.carriers = list(carriers)
        column = {c.name: i for i, c in enumerate(self.carriers)}
        if len(column) != len(self.carriers):
            raise ValueError("carrier names must be unique")

        rows, self.valid_until, self.ignored = _current(rates, column, now)
        self.rates = rows
        cols = np.fromiter((column[r.carrier] for r in rows), dtype=np.int32, count=len(rows))
        # Price per row (rate plus connect fee: a one-minute call), sentinel inf for "no row".
        self._price = np.fromiter(
            (r.rate + r.connect_fee for r in rows), dtype=np.float64, count=len(rows)
        )
        self._price = np.append(self._price, np.inf)
        self._per_minute = np.append(
            np.fromiter((r.rate for r in rows), dtype=np.float64, count=len(rows)), np.inf
        )

        self.profiles = _profiles(profiles, default or RoutingProfile())
        self._weights = [weights(p) for p in self.profiles]

        deck = [r.prefix for r in rows]
        self.lpm = PrefixTable([*deck, *(p.prefix for p in self.profiles)])
        size, width = len(self.lpm), len(self.carriers)
        at = self.lpm.indices(deck)
        match = np.full((size, width), -1, dtype=np.int32)
        match[at, cols] = np.arange(len(rows), dtype=np.int32)
        profile_of = np.full(size, -1, dtype=np.int32)
        profile_of[self.lpm.indices([p.prefix for p in self.profiles])] = np.arange(
            len(self.profiles), dtype=np.int32
        )
        deck_of = np.full(size, -1, dtype=np.int32)  # the longest deck prefix at or above
        deck_of[at] = at
        deck_of[0] = 0  # "" stands for "no deck prefix" too
        parent = self.lpm.parent
        for level in self.lpm.levels():
            up = parent[level]
            for table in (profile_of, deck_of):
                own = table[level]
                table[level] = np.where(own >= 0, own, table[up])
            for start in range(0, len(level), CHUNK):
                part, part_up = level[start : start + CHUNK], up[start : start + CHUNK]
                own = match[part]
                match[part] = np.where(own >= 0, own, match[part_up])
        self._match = match
        self._row_at = at  # deck row -> its prefix's index
        self._profile_of = profile_of
        self._deck_of = deck_of
        self._order_type = np.int8 if width < 128 else np.int16
        self._ranking: Ranking | None = None

    def __len__(self) -> int:
        """The number of distinct prefixes (deck and profile prefixes, and "")."""
        return len(self.lpm)

    def expired(self, now: float) -> bool:
        """Whether a rate became effective or ended since the table was built: rebuild."""
        return self.valid_until is not None and now >= self.valid_until

    def row(self, i: int, c: int) -> int:
        """The deck row carrier ``c`` bills prefix ``i``'s numbers by; -1 for none."""
        return int(self._match[i, c])

    def price(self, row: int) -> float:
        """What deck row ``row`` costs for one minute (rate plus connect fee)."""
        return float(self._price[row])

    # -- ranking --

    def refresh(self, stats: StatsView, health: HealthView, now: float) -> None:
        """Re-rank the prefixes from the current figures and health (numpy, in bulk).

        ``snapshot``, ``rank`` and ``install`` in one go; a node on an event
        loop takes the snapshot on the loop, ranks in a thread and installs
        on the loop (``acr.server``).
        """
        self.install(self.rank(self.snapshot(stats, health, now)))

    def snapshot(self, stats: StatsView, health: HealthView, now: float) -> Snapshot:
        """What a refresh reads of the live state: the carriers' health and headroom, and
        the figures, frozen (``stats.snapshot()`` if it has one: a copy, read later in
        whatever thread ranks; else the figures of its pairs, or of every row, read now).
        The live objects may change as soon as it returns."""
        availability, reasons, gateways, up = self._carrier_state(health, now)
        freeze = getattr(stats, "snapshot", None)
        if freeze is not None:
            figures: StatsView = freeze()
        else:
            pairs = getattr(stats, "pairs", None)
            wanted = pairs() if pairs is not None else [(r.carrier, r.prefix) for r in self.rates]
            figures = _Taken({(c, p): stats.quality(c, p) for c, p in wanted})
        return Snapshot(availability, reasons, gateways, up, figures, stats, now)

    def rank(self, snap: Snapshot) -> Ranking:
        """The ranking of ``snap`` (numpy over the prefix x carrier table), built from the
        one installed now: reads the table and that ranking, changes neither, so it may
        run in another thread while ``decide`` goes on.

        Figures that moved less than AVAILABILITY_BAND / QUALITY_BAND since they
        were last ranked keep their old value (explain shows what was ranked):
        with nothing beyond them, ranking costs only the per-carrier and
        per-figure reads. A carrier's availability or eligibility changing
        re-ranks every prefix; quality changing on a few deck rows re-ranks
        only the prefixes under those rows.
        """
        availability, reasons, gateways, up = (
            snap.availability,
            snap.reasons,
            snap.gateways,
            snap.up,
        )
        stats, now = snap.stats, snap.at
        previous = self._ranking
        if (
            previous is None
            or reasons != previous.reasons
            or any(
                abs(a - b) > self.AVAILABILITY_BAND
                for a, b in zip(availability, previous.availability, strict=True)
            )
        ):
            quality, measured, _ = self._row_quality(snap, None)
            order, count, cheapest = self._rank(np.asarray(availability), quality, measured, None)
            return Ranking(
                order=order, count=count, cheapest=cheapest, quality=quality, measured=measured,
                availability=availability, reasons=reasons, gateways=gateways, up=up,
                stats=stats, at=now,
            )  # fmt: skip
        quality, measured, moved = self._row_quality(snap, previous)
        if not moved:
            return Ranking(
                order=previous.order, count=previous.count, cheapest=previous.cheapest,
                quality=previous.quality, measured=previous.measured,
                availability=previous.availability, reasons=reasons, gateways=gateways, up=up,
                stats=stats, at=now, full=False,
            )  # fmt: skip
        ranges = _merge(self.lpm.span(int(self._row_at[row])) for row in moved)
        covered = sum(b - a for a, b in ranges)
        full = covered > len(self.lpm) * self.PARTIAL_SHARE
        order, count, cheapest = self._rank(
            np.asarray(previous.availability),
            quality,
            measured,
            None if full else (previous, ranges),
        )
        return Ranking(
            order=order, count=count, cheapest=cheapest, quality=quality, measured=measured,
            availability=previous.availability, reasons=reasons, gateways=gateways, up=up,
            stats=stats, at=now, full=full,
        )  # fmt: skip

    def install(self, ranking: Ranking) -> None:
        """Make ``ranking`` the one ``decide`` reads (one assignment: a lookup sees one or the
        other)."""
        self._ranking = ranking

    def _carrier_state(
        self, health: HealthView, now: float
    ) -> tuple[list[float], list[list[str]], list[tuple[Gateway, ...]], dict[str, bool]]:
        availability, reasons, ordered, up = [], [], [], {}
        for carrier in self.carriers:
            why = []
            if not carrier.enabled:
                why.append("disabled")
            total = healthy = 0.0
            for gw in carrier.gateways:
                ok = up[gw.address] = bool(health.gateway_up(gw.address, now))
                total += gw.weight
                healthy += gw.weight if ok else 0.0
            if not carrier.gateways:
                why.append("no gateway")
            elif not any(up[gw.address] for gw in carrier.gateways):
                why.append("no healthy gateway")
            headroom = float(health.headroom(carrier.name))
            if headroom <= 0:
                why.append("no headroom")
            share = healthy / total if total > 0 else 1.0  # weights all 0: count as even
            availability.append(0.0 if why else availability_score(share, headroom))
            reasons.append(why)
            ordered.append(
                tuple(sorted(carrier.gateways, key=lambda g: (not up[g.address], -g.weight)))
            )
        return availability, reasons, ordered, up

    def _row_quality(
        self, snap: Snapshot, ranked: Ranking | None
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Quality per deck row (rows with figures scored one by one, the rest share the
        score of no figures), which rows have figures, and the rows whose score moved
        beyond QUALITY_BAND (or that gained or lost figures) since ``ranked``."""
        if ranked is None:
            quality = np.full(len(self.rates) + 1, quality_score(NO_FIGURES), dtype=np.float64)
            quality[-1] = 0.0
            measured = np.zeros(len(self.rates) + 1, dtype=bool)
        else:
            quality, measured = ranked.quality.copy(), ranked.measured.copy()
        view = snap.figures
        pairs = view.pairs()
        rows = self._rows(pairs)
        moved = []
        for row, (carrier, prefix) in zip(rows, pairs, strict=True):
            if row < 0:
                continue
            figures = view.quality(carrier, prefix)
            score = quality_score(figures)
            has = figures.attempts > 0
            if ranked is None:
                quality[row], measured[row] = score, has
            elif abs(score - quality[row]) > self.QUALITY_BAND or has != measured[row]:
                quality[row], measured[row] = score, has
                moved.append(row)
        return quality, measured, moved

    def _rows(self, pairs: list[tuple[str, str]]) -> list[int]:
        """The deck row of each (carrier, prefix) pair, -1 where the carrier has no row at
        exactly that prefix (a deck reloaded since the figures were gathered)."""
        if not pairs:
            return []
        column = {c.name: i for i, c in enumerate(self.carriers)}
        cols = np.fromiter((column.get(c, -1) for c, _ in pairs), dtype=np.int64, count=len(pairs))
        at = self.lpm.indices([p for _, p in pairs])
        found = (cols >= 0) & (at >= 0)
        rows = np.full(len(pairs), -1, dtype=np.int64)
        rows[found] = self._match[at[found], cols[found]]
        out = rows.tolist()
        rates = self.rates
        for i, ((_, prefix), row) in enumerate(zip(pairs, out, strict=True)):
            if row >= 0 and rates[row].prefix != prefix:
                out[i] = -1  # the carrier's row for a shorter prefix, inherited
        return out

    def _rank(
        self,
        availability: np.ndarray,
        quality: np.ndarray,
        measured: np.ndarray,
        partial: tuple[Ranking, list[tuple[int, int]]] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every prefix's carriers by score (or only ``partial``'s ranges, on copies)."""
        size, width = self._match.shape
        if partial is None:
            order = np.empty((size, width), dtype=self._order_type)
            count = np.empty(size, dtype=np.int16)
            cheapest = np.empty(size, dtype=np.float64)
            ranges = [(a, min(a + CHUNK, size)) for a in range(0, size, CHUNK)]
        else:
            previous, spans = partial
            order, count, cheapest = (
                previous.order.copy(), previous.count.copy(), previous.cheapest.copy()
            )  # fmt: skip
            ranges = [(a, min(a + CHUNK, b)) for a0, b in spans for a in range(a0, b, CHUNK)]
        wa, wq, wp = (np.array(w, dtype=np.float64) for w in zip(*self._weights, strict=True))
        inf = np.float64(np.inf)
        caps = [p.max_price for p in self.profiles]
        max_price = np.array([inf if c is None else c for c in caps], dtype=np.float64)
        floors = [p.min_quality for p in self.profiles]
        min_quality = np.array([-inf if f is None else f for f in floors], dtype=np.float64)
        carrier_ok = availability > 0
        # Sort keys: score (scaled to an integer) above the column, so ties keep
        # carrier order and an integer sort, not a stable float argsort, does it.
        shift = max(1, (width - 1).bit_length())
        wide = shift > 12
        key_type = np.int64 if wide else np.int32
        scale = float(1 << ((61 if wide else 29) - shift))
        columns = np.arange(width, dtype=key_type)
        mask = (1 << shift) - 1
        rows_total = len(self.rates)
        for start, end in ranges:
            m = self._match[start:end]
            has = m >= 0
            m = np.where(has, m, rows_total)
            prof = self._profile_of[start:end]
            price = self._price[m]
            q = quality[m]
            ok = has & carrier_ok[None, :]
            if any(c is not None for c in caps):
                ok &= self._per_minute[m] <= max_price[prof][:, None]
            if any(f is not None for f in floors):
                ok &= (q >= min_quality[prof][:, None]) | ~measured[m]
            best = np.where(ok, price, inf).min(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                relative = np.where(price > best[:, None], best[:, None] / price, 1.0)
            score = (
                wa[prof][:, None] * availability[None, :]
                + wq[prof][:, None] * q
                + wp[prof][:, None] * relative
            )
            score = np.where(ok, score, -1.0)
            keys = ((1.0 - score) * scale).astype(key_type) << shift
            keys |= columns
            keys.sort(axis=1)
            order[start:end] = keys & mask
            count[start:end] = ok.sum(axis=1)
            cheapest[start:end] = best
        return order, count, cheapest

    # -- per call --

    def decide(self, number: str, now: float) -> Decision:
        """The carriers to try for ``number`` (digits, a leading + is ignored), best first.

        Raises ValueError for a number that is not digits.
        """
        ranking = self._ranking
        if ranking is None:
            self.refresh(_Unknown(), _Unknown(), now)
            ranking = self._ranking
            assert ranking is not None
        number = number.removeprefix("+")
        i = self.lpm.lookup(number)
        which = int(self._profile_of[i])
        profile = self.profiles[which]
        n = int(ranking.count[i])
        explored = False
        candidates = []
        if n:
            cols = ranking.order[i, :n].tolist()
            rank = explore(self._rng, self.exploration, n)
            if rank is not None:
                cols.insert(0, cols.pop(rank))
                explored = True
            del cols[profile.max_attempts :]
            wa, wq, wp = self._weights[which]
            cheapest = float(ranking.cheapest[i])
            match = self._match[i]
            for c in cols:
                row = int(match[c])
                rate = self.rates[row]
                a = ranking.availability[c]
                q = float(ranking.quality[row])
                price = float(self._price[row])
                p = cheapest / price if price > cheapest else 1.0
                candidates.append(
                    Candidate(
                        self.carriers[c],
                        rate,
                        rate.prefix,
                        wa * a + wq * q + wp * p,
                        a,
                        q,
                        p,
                        ranking.gateways[c],
                    )  # fmt: skip
                )
        prefix = self.lpm.prefix(int(self._deck_of[i]))
        return Decision(number, prefix, profile, candidates, explored, self, ranking, i)


def _current(
    rates: Iterable[Rate], column: dict[str, int], now: float
) -> tuple[list[Rate], float | None, int]:
    """The rows effective at ``now`` (one per carrier and prefix: the latest to take effect),
    the next time that set changes, and how many rows name no known carrier."""
    chosen: dict[tuple[str, str], Rate] = {}
    boundary = math.inf
    ignored = 0
    for rate in rates:
        start, end = rate.effective_from, rate.effective_to
        if start is not None and start > now:
            boundary = min(boundary, start)
            continue
        if end is not None:
            if end <= now:
                continue
            boundary = min(boundary, end)
        if rate.carrier not in column:
            ignored += 1
            continue
        key = (rate.carrier, rate.prefix)
        held = chosen.get(key)
        if held is None or (held.effective_from or -math.inf) <= (start or -math.inf):
            chosen[key] = rate
    return list(chosen.values()), (None if boundary == math.inf else boundary), ignored


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Index ranges, sorted and with overlaps joined."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _profiles(profiles: Iterable[RoutingProfile], default: RoutingProfile) -> list[RoutingProfile]:
    """The profile for "" first (the default unless one is stored for ""), then the rest."""
    by_prefix = {"": default}
    for p in profiles:
        by_prefix[p.prefix] = p
    return list(by_prefix.values())
