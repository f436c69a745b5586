"""Pooling days' comparisons under one plan into one interval.

A day's dNE is a ratio R_i = D_i / L_i (sum of loss differences over sum of
reference losses). Over days i the pooled ratio is sum D_i / sum L_i =
sum w_i R_i with w_i = L_i / sum L: a stratified estimate (each day its own
stratum), whose standard error is sqrt(sum w_i^2 SE_i^2) to first order. The
days' samples are disjoint draws, so their errors are independent. The
stored per-day figures suffice: L_i = n_i * NE_ref_i * H(positives_i / n_i),
SE_i = (hi_i - lo_i) / (2 z).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from statistics import NormalDist

from lpmon.metrics.comparison import binary_entropy


def z_of(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2.0)


@dataclass(frozen=True)
class DayEvidence:
    """One day's stored comparison (overall or one segment's)."""

    day: str
    n: int
    positives: int
    dne_pct: float | None
    se_pct: float | None
    loss_sum: float  # sum of the reference's log losses over the day's examples

    @classmethod
    def from_metrics(cls, day: str, row: dict, level: float) -> "DayEvidence":
        """From a run_metrics row (or a Comparison's dict): NULL/NaN NE fields give None."""
        n, positives = int(row["n"]), int(row["positives"])
        dne, lo, hi, ne_ref = (row.get(k, math.nan) for k in ("dne_pct", "dne_pct_lo", "dne_pct_hi", "ne_ref"))
        if any(v is None or v != v for v in (dne, lo, hi, ne_ref)) or n == 0:
            return cls(day, n, positives, None, None, 0.0)
        loss = float(ne_ref) * binary_entropy(positives / n) * n
        return cls(day, n, positives, float(dne), (float(hi) - float(lo)) / (2 * z_of(level)), loss)

    @property
    def defined(self) -> bool:
        return self.dne_pct is not None and self.se_pct is not None and self.loss_sum > 0


@dataclass(frozen=True)
class Pooled:
    """The evidence a verdict rests on: one day, or several pooled."""

    days: tuple[str, ...]
    n: int
    positives: int
    dne_pct: float | None
    se_pct: float | None
    level: float

    @property
    def defined(self) -> bool:
        return self.dne_pct is not None and self.se_pct is not None

    def _estimate(self) -> tuple[float, float]:
        """(dne_pct, se_pct), which the interval's figures need: only when defined."""
        if self.dne_pct is None or self.se_pct is None:
            raise ValueError(f"no defined dNE over {self.span()}: the evidence has no interval")
        return self.dne_pct, self.se_pct

    @property
    def lo(self) -> float:
        dne, se = self._estimate()
        return dne - z_of(self.level) * se

    @property
    def hi(self) -> float:
        dne, se = self._estimate()
        return dne + z_of(self.level) * se

    @property
    def halfwidth(self) -> float:
        return z_of(self.level) * self._estimate()[1]

    def z_over(self, gate_pct: float) -> float:
        """How many standard errors the estimate is above the gate."""
        dne, se = self._estimate()
        if se == 0:
            return math.inf if dne > gate_pct else -math.inf
        return (dne - gate_pct) / se

    def span(self) -> str:
        """ "2026-11-02" or "7 days (2026-10-27..2026-11-02), 18,412 examples"."""
        if len(self.days) == 1:
            return f"{self.days[0]}, {self.n:,} examples"
        return f"{len(self.days)} days ({self.days[0]}..{self.days[-1]}), {self.n:,} examples"


def pool(days: list[DayEvidence], level: float) -> Pooled:
    """The stratified pooled estimate over days (those without a defined dNE add
    their counts but no estimate)."""
    names = tuple(d.day for d in days)
    n, positives = sum(d.n for d in days), sum(d.positives for d in days)
    # (loss sum, dNE, SE) of the days that are defined (DayEvidence.defined)
    defined = [
        (d.loss_sum, d.dne_pct, d.se_pct)
        for d in days
        if d.dne_pct is not None and d.se_pct is not None and d.loss_sum > 0
    ]
    total = sum(loss for loss, _, _ in defined)
    if not defined or total <= 0:
        return Pooled(names, n, positives, None, None, level)
    dne = sum(loss * d for loss, d, _ in defined) / total
    se = math.sqrt(sum((loss / total) ** 2 * s**2 for loss, _, s in defined))
    return Pooled(names, n, positives, dne, se, level)


def sufficiency(
    evidence: Pooled, gate_pct: float, min_examples: int, min_positives: int, max_halfwidth_gates: float
) -> list[str]:
    """Why the evidence cannot carry a verdict ([] when it can). It can when it has
    min_examples and min_positives, and its interval either decides (wholly above or
    below the gate) or is no wider than +-max_halfwidth_gates gates: power to tell a
    dNE at the gate from one at 0 or at twice the gate."""
    short = []
    if evidence.n < min_examples:
        short.append(f"{evidence.n:,} labelled examples, fewer than the {min_examples:,} required")
    if evidence.positives < min_positives:
        short.append(f"{evidence.positives:,} positives, fewer than the {min_positives:,} required")
    if not evidence.defined:
        return short or ["no defined dNE (one class only)"]
    if short:
        return short
    decides = evidence.lo > gate_pct or evidence.hi < gate_pct
    limit = max_halfwidth_gates * gate_pct
    if not decides and evidence.halfwidth > limit:
        short.append(
            f"the interval +-{evidence.halfwidth:.4f} % straddles the {gate_pct} % gate and is wider "
            f"than the +-{limit:.4f} % a verdict needs"
        )
    return short


def examples_missing(
    evidence: Pooled, gate_pct: float, min_examples: int, min_positives: int, max_halfwidth_gates: float
) -> int:
    """Roughly how many more labelled examples would make the evidence sufficient
    (the interval shrinks as 1/sqrt(n); positives at the evidence's rate)."""
    need = max(min_examples - evidence.n, 0)
    if evidence.n and evidence.positives:
        need = max(need, math.ceil(min_positives * evidence.n / evidence.positives) - evidence.n)
    elif evidence.n:
        need = max(need, min_examples)
    if evidence.defined and evidence.n:
        limit = max_halfwidth_gates * gate_pct
        if evidence.halfwidth > limit > 0:
            need = max(need, math.ceil(evidence.n * (evidence.halfwidth / limit) ** 2) - evidence.n)
    return need


def trailing_window(today: DayEvidence, earlier: list[DayEvidence], window_days: int) -> list[DayEvidence]:
    """Today and the earlier days (all under today's plan) within window_days calendar days."""
    first = dt.date.fromisoformat(today.day) - dt.timedelta(days=window_days - 1)
    return [d for d in earlier if dt.date.fromisoformat(d.day) >= first and d.day < today.day] + [today]
