"""Per-segment dNE, judged with Benjamini-Hochberg control across segments.

Each segment large enough for a verdict (min_examples, min_positives, a
defined dNE) gives a one-sided p-value for "its dNE is at most the gate",
p = 1 - Phi((dNE - gate) / SE). BH at level q over the m tested segments
rejects the largest set {p_(i) <= q i / m}: the expected share of false
findings among the flagged segments stays at most q whatever m is, so more
segments do not mean more false alarms. WARN uses q = 1 - level (5 %);
DEGRADED the single-look tail of the sequential gate (see lpmon.verdict.sequential).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

from .pooling import DayEvidence, pool


@dataclass(frozen=True)
class SegmentFinding:
    column: str
    value: str
    n: int
    dne_pct: float
    lo: float
    hi: float
    p_value: float
    degraded: bool  # BH-rejected at the DEGRADED level

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"

    def describe(self, gate_pct: float, tested: int) -> str:
        return (
            f"segment {self.name}: dNE {self.dne_pct:.4f} % [{self.lo:.4f}, {self.hi:.4f}] over "
            f"{self.n:,} examples, above the {gate_pct} % gate (p = {self.p_value:.2g}, "
            f"Benjamini-Hochberg across {tested} segments)"
        )


def bh_rejections(p_values: list[float], q: float) -> set[int]:
    """Indices rejected by Benjamini-Hochberg at level q."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    cutoff = 0
    for rank, i in enumerate(order, start=1):
        if p_values[i] <= q * rank / m:
            cutoff = rank
    return set(order[:cutoff])


def judge_segments(
    segments: dict[tuple[str, str], DayEvidence],
    gate_pct: float,
    min_examples: int,
    min_positives: int,
    *,
    warn_q: float,
    degraded_q: float,
    level: float,
) -> tuple[list[SegmentFinding], int]:
    """The segments over the gate at the WARN level (some of them also DEGRADED),
    worst first, and how many segments were tested."""
    tested = []
    for (column, value), day in sorted(segments.items()):
        e = pool([day], level)
        if (
            e.dne_pct is not None
            and e.se_pct is not None
            and e.n >= min_examples
            and e.positives >= min_positives
            and e.se_pct > 0
        ):
            p = 1.0 - NormalDist().cdf(e.z_over(gate_pct))
            tested.append((column, value, e, e.dne_pct, p))
    p_values = [t[4] for t in tested]
    warned, degraded = bh_rejections(p_values, warn_q), bh_rejections(p_values, degraded_q)
    findings = [
        SegmentFinding(c, v, e.n, dne, e.lo, e.hi, p, i in degraded)
        for i, (c, v, e, dne, p) in enumerate(tested)
        if i in warned
    ]
    return sorted(findings, key=lambda f: f.p_value), len(tested)
