"""The decision policy: pure functions of metrics and thresholds.

A day is DEGRADED only when the dNE interval's lower bound is above the gate,
WARN when the point estimate is above it but the interval straddles it, and
HEALTHY otherwise; too few labelled examples or positives is
INSUFFICIENT_DATA, never a silent pass. DEGRADED leads to recalibration; what
may be promoted then is lpmon.lifecycle's to decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from lpmon.metrics import Comparison


class Status(str, Enum):
    """A day's status; RUNNING and FAILED are a run's, not a verdict."""

    HEALTHY = "HEALTHY"
    WARN = "WARN"
    DEGRADED = "DEGRADED"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
    RUNNING = "RUNNING"
    FAILED = "failed"


class Action(str, Enum):
    """What a day did."""

    RECORD = "RECORD"
    RECALIBRATE = "RECALIBRATE"
    FALLBACK = "FALLBACK"
    REENABLE = "REENABLE"
    ONBOARD = "ONBOARD"


@dataclass(frozen=True)
class Gate:
    """The largest acceptable relative NE degradation, in percent."""

    max_dne_pct: float = 0.05

    def __post_init__(self):
        if not self.max_dne_pct > 0:
            raise ValueError(f"gate must be positive, got {self.max_dne_pct}")


@dataclass(frozen=True)
class DataRequirement:
    min_examples: int = 10_000
    min_positives: int = 100


@dataclass(frozen=True)
class Assessment:
    status: Status
    action: Action
    reasons: tuple[str, ...]


def assess(comparison: Comparison | None, gate: Gate, requirement: DataRequirement,
           *, n: int | None = None, positives: int | None = None) -> Assessment:
    """Status and next action for a day's comparison (None when there was nothing to compare)."""
    n = comparison.n if comparison is not None else (n or 0)
    positives = comparison.positives if comparison is not None else (positives or 0)
    short = []
    if n < requirement.min_examples:
        short.append(f"{n} labelled examples, fewer than the {requirement.min_examples} required")
    if positives < requirement.min_positives:
        short.append(f"{positives} positives, fewer than the {requirement.min_positives} required")
    if comparison is None or comparison.undefined_reason or short:
        if comparison is not None and comparison.undefined_reason:
            short.append(comparison.undefined_reason)
        return Assessment(Status.INSUFFICIENT_DATA, Action.RECORD, tuple(short or ["no comparison"]))
    c, limit = comparison, gate.max_dne_pct
    interval = f"dNE {c.dne_pct:.4f} % [{c.dne_pct_lo:.4f}, {c.dne_pct_hi:.4f}]"
    if c.dne_pct_lo > limit:
        return Assessment(Status.DEGRADED, Action.RECALIBRATE,
                          (f"{interval}: the whole interval is above the {limit} % gate",))
    if c.dne_pct > limit:
        return Assessment(Status.WARN, Action.RECORD,
                          (f"{interval}: above the {limit} % gate, but the interval straddles it",))
    return Assessment(Status.HEALTHY, Action.RECORD, (f"{interval}: within the {limit} % gate",))
