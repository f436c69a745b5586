"""What limited a day's verdict, and what to do about it: the words of the mails and
reports for a day that is not judged (INSUFFICIENT_DATA) or only WARN.

The causes, in the order they are told apart:
- onboarding: no plan yet; lpmon is still gathering the evidence a first plan needs;
- labels: one class only (no positives, or no negatives): the labels are missing or late;
- traffic: the day had fewer examples than the sample size (all of them were scored);
- sample: the day had more, the sample was the limit: raise sample_size (or, for a day
  that looked again up to its cap, max_sample_size).

How many examples would decide comes from the day's own standard error (the
interval's half-width over its z) and the gate: at the day's dNE, a DEGRADED
verdict needs the estimate `single_look_z` standard errors above the gate; a
HEALTHY one an interval under the gate or no wider than +-max_halfwidth_gates
gates. The standard error shrinks as 1/sqrt(n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from lpmon.policy import Rules


@dataclass(frozen=True)
class Limit:
    cause: str  # "onboarding", "labels", "traffic", "sample"
    what: str  # what limited the verdict, with its numbers
    advice: str  # what to do about it

    @property
    def label(self) -> str:
        """A few words for a subject line."""
        return LABELS[self.cause]


LABELS = {
    "onboarding": "onboarding: gathering evidence",
    "labels": "labels missing",
    "traffic": "traffic too small",
    "sample": "sample too small",
}


@dataclass(frozen=True)
class DayCounts:
    """What the day scored: labelled examples, positives, the sample size asked for,
    its dNE interval, and (when adaptive sampling recorded it) why sampling stopped."""

    examples: int | None
    positives: int | None
    sample_size: int
    dne_pct: float | None = None
    lo: float | None = None
    hi: float | None = None
    stop_reason: str | None = None  # "decided", "cap", "traffic_exhausted"


def limit_of(status: str, counts: DayCounts, rules: Rules, *, onboarding: str = "") -> Limit | None:
    """What limited the verdict of a day (None: nothing did, or it was not about evidence).
    onboarding: the day's message when the model waited for onboarding's evidence."""
    if onboarding:
        return Limit(
            "onboarding",
            onboarding,
            "no action needed: lpmon tries again with the next days' traffic; "
            "serving stays on fp32 (no plan) until a plan passes",
        )
    if status not in ("INSUFFICIENT_DATA", "WARN") or counts.examples is None:
        return None
    n, positives = counts.examples, counts.positives or 0
    if n and positives in (0, n):  # one class only: few positives in a small sample are the sample's limit
        return Limit(
            "labels",
            f"{positives:,} positives among {n:,} labelled examples: one class only",
            "check that the day's labels have arrived (late or missing labels leave no positives); "
            "rerun the day once they have",
        )
    needed = _needed(counts, rules)
    if needed <= n:  # enough examples: the verdict is limited by the dNE itself (near the gate), not the data
        return None
    at = "" if counts.dne_pct is None else f" at this dNE ({counts.dne_pct:.4f} %)"
    exhausted = counts.stop_reason == "traffic_exhausted" or (counts.stop_reason is None and n < counts.sample_size)
    if exhausted:
        return Limit(
            "traffic",
            f"traffic too small: the day had {n:,} labelled examples, all of them scored",
            f"about {needed:,} labelled examples would decide{at}; lpmon pools the next days under the same "
            "plan, no action needed unless traffic is missing",
        )
    if counts.stop_reason == "cap":  # the day looked again up to its cap: max_sample_size limited it
        return Limit(
            "sample",
            f"sample too small: {n:,} examples scored, the most a day may score (max_sample_size); the day had more",
            f"raise max_sample_size to ~{needed:,} to decide{at}",
        )
    return Limit(
        "sample",
        f"sample too small: {n:,} examples scored (sample_size {counts.sample_size:,}); the day had more",
        f"raise sample_size to ~{needed:,} to decide{at}",
    )


def _needed(counts: DayCounts, rules: Rules) -> int:
    """Labelled examples that would give a verdict at the day's dNE (rounded up to two digits)."""
    n = counts.examples or 0
    need = rules.min_examples
    if counts.positives:
        need = max(need, math.ceil(rules.min_positives * n / counts.positives))
    if counts.dne_pct is not None and counts.lo is not None and counts.hi is not None and n:
        se = (counts.hi - counts.lo) / (2 * NormalDist().inv_cdf(0.5 + rules.level / 2))
        gate = rules.gate_pct
        if counts.dne_pct > gate:
            target = (counts.dne_pct - gate) / rules.sequential.single_look_z
        else:
            target = max(gate - counts.dne_pct, rules.max_halfwidth_gates * gate) / NormalDist().inv_cdf(
                0.5 + rules.level / 2
            )
        if se > target > 0:
            need = max(need, math.ceil(n * (se / target) ** 2))
    return _round_up(need)


def _round_up(n: int) -> int:
    """Up to two significant digits: 38,412 -> 39,000."""
    if n < 100:
        return n
    step = 10 ** (len(str(n)) - 2)
    return -(-n // step) * step
