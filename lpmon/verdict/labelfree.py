"""Label-free early warning: signals that need no labels, against their own history.

The KL gap (the dNE the fp32 model's own probabilities predict), the mean
|p_fp32 - p_q| and the largest share of saturated activations of any FC layer
are compared with their median over the first days under the plan in force
(its baseline: up to BASELINE_DAYS days, at least MIN_BASELINE_DAYS). A value
more than JUMP times its baseline, and above the signal's floor (so that noise
around zero is not a jump), is a clear jump. Such a jump can make a day WARN;
labels alone make it DEGRADED.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

BASELINE_DAYS = 7
MIN_BASELINE_DAYS = 3
JUMP = 3.0


@dataclass(frozen=True)
class LabelFreeJump:
    signal: str
    value: float
    baseline: float
    days: int

    def describe(self) -> str:
        return (
            f"label-free: {self.signal} {self.value:.4g} is {self.value / self.baseline:.1f}x its median "
            f"{self.baseline:.4g} over the plan's first {self.days} days"
        )


def floors(gate_pct: float) -> dict[str, float]:
    """Below these a signal is not a jump, whatever its ratio to the baseline."""
    return {"KL gap %": 0.5 * gate_pct, "mean |p_fp32 - p_q|": 1e-4, "saturation": 0.01}


def label_free_jumps(
    today: dict[str, float | None], history: list[dict[str, float | None]], gate_pct: float
) -> list[LabelFreeJump]:
    """Today's signals (name -> value) against the plan's history (oldest first)."""
    jumps = []
    for signal, floor in floors(gate_pct).items():
        value = today.get(signal)
        past = [v for h in history[:BASELINE_DAYS] if (v := h.get(signal)) is not None]
        if value is None or len(past) < MIN_BASELINE_DAYS:
            continue
        baseline = statistics.median(past)
        if value > floor and value > JUMP * max(baseline, floor / JUMP):
            jumps.append(LabelFreeJump(signal, value, max(baseline, floor / JUMP), len(past)))
    return jumps
