"""The decision policy: pure functions of stored evidence and thresholds.

A day's verdict rests on its own comparison when that is enough, else on the
trailing window of days under the same plan (lpmon.verdict.pooling): enough
means `min_examples` labelled examples, `min_positives` positives, and an
interval that decides or is no wider than +-`max_halfwidth_gates` gates. With
too little even over the window the day is INSUFFICIENT_DATA, never a silent
pass, and says how many examples are missing.

DEGRADED needs one of two kinds of evidence, which share one false-alarm budget
(lpmon.verdict.sequential): the day's (or window's) estimate above the gate by
more than the single-look z (3.29 standard errors for a run length of 1000
days; with several looks within the day, the z of the look it is at, from the
same budget spent over the looks: lpmon.verdict.looks), or the CUSUM of the
plan's days crossing its threshold. An estimate
above the gate with less evidence than that is WARN; below it, HEALTHY.
Segments (Benjamini-Hochberg across them) can make a day WARN or DEGRADED;
label-free jumps make a day the labels cannot judge WARN (never DEGRADED), and
are reported beside the labels' verdict otherwise. A day short of DEGRADED is
`close` when more of its examples could change that (lpmon.pipeline.adaptive
then scores more of the day).

DEGRADED leads to recalibration, except when only a segment is degraded: the
lifecycle validates candidates on the whole traffic, which cannot show that a
segment is fixed, so that day is left to a person. What may be promoted is
lpmon.pipeline.lifecycle's to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from lpmon.verdict import (
    DayEvidence,
    LabelFreeJump,
    Pooled,
    SegmentFinding,
    Sequential,
    SequentialGate,
    cusum,
    pool,
    sufficiency,
    trailing_window,
)
from lpmon.verdict.pooling import examples_missing


class Status(str, Enum):
    """A day's status; RUNNING and FAILED are a run's, not a verdict."""

    HEALTHY = "HEALTHY"
    WARN = "WARN"
    DEGRADED = "DEGRADED"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
    RUNNING = "RUNNING"
    FAILED = "failed"


VERDICTS = (Status.HEALTHY.value, Status.WARN.value, Status.DEGRADED.value)


class Action(str, Enum):
    """What a day did."""

    RECORD = "RECORD"
    RECALIBRATE = "RECALIBRATE"
    FALLBACK = "FALLBACK"
    REENABLE = "REENABLE"
    ONBOARD = "ONBOARD"


@dataclass(frozen=True)
class Rules:
    """The thresholds a verdict applies (a model's settings)."""

    gate_pct: float = 0.05
    level: float = 0.95
    min_examples: int = 2_000
    min_positives: int = 100
    max_halfwidth_gates: float = 2.0
    window_days: int = 7
    sequential_run_length_days: float = 1000.0

    def __post_init__(self):
        if not self.gate_pct > 0:
            raise ValueError(f"gate must be positive, got {self.gate_pct}")

    @classmethod
    def of(cls, settings) -> "Rules":
        """From a ModelSettings (or anything with the same fields)."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})

    @property
    def sequential(self) -> SequentialGate:
        return SequentialGate(self.sequential_run_length_days)

    def short(self, evidence: Pooled) -> list[str]:
        return sufficiency(evidence, self.gate_pct, self.min_examples, self.min_positives, self.max_halfwidth_gates)


@dataclass(frozen=True)
class Assessment:
    status: Status
    action: Action
    reasons: tuple[str, ...]
    evidence: Pooled | None = None  # what the verdict rests on (None: no examples at all)
    sequential: Sequential | None = None
    segments: tuple[SegmentFinding, ...] = field(default=())
    close: bool = False  # more of the day's examples could change the verdict (see `close`)


def choose_evidence(today: DayEvidence, earlier: list[DayEvidence], rules: Rules) -> tuple[Pooled, list[str]]:
    """The smallest trailing window (today alone first) that can carry a verdict,
    or the whole window with what it lacks."""
    window = trailing_window(today, earlier, rules.window_days)
    for size in range(1, len(window) + 1):
        evidence = pool(window[-size:], rules.level)
        short = rules.short(evidence)
        if not short:
            return evidence, []
    return evidence, short


def assess(
    today: DayEvidence | None,
    earlier: list[DayEvidence],
    rules: Rules,
    *,
    segments: tuple[list[SegmentFinding], int] = ([], 0),
    label_free: Sequence[LabelFreeJump] = (),
    comparable: list[DayEvidence] | None = None,
    why_none: str = "no comparison",
    z_needed: float | None = None,
) -> Assessment:
    """The day's verdict. today: its own comparison (None when nothing was compared);
    earlier: the days before it under the same plan, oldest first (for the CUSUM);
    comparable: those of them the window may pool with (default: all; after a
    label-free jump, only the days since the traffic changed); segments: (findings,
    segments tested) from lpmon.verdict.judge_segments; z_needed: the z the day's
    look must clear (lpmon.verdict.looks; default the single-look z)."""
    if today is None:
        status, reasons = _label_free(Status.INSUFFICIENT_DATA, [why_none], label_free)
        return Assessment(status, Action.RECORD, tuple(reasons), close=bool(label_free))
    gate = rules.gate_pct
    pooled_with = earlier if comparable is None else comparable
    evidence, short = choose_evidence(today, pooled_with, rules)
    sequential = cusum([*earlier, today], gate, rules.min_examples, rules.min_positives, rules.sequential, rules.level)
    where = f" ({evidence.span()})" if len(evidence.days) > 1 else ""
    if short:
        missing = examples_missing(evidence, gate, rules.min_examples, rules.min_positives, rules.max_halfwidth_gates)
        reasons = [f"{evidence.span()}: " + "; ".join(short) + f"; about {missing:,} more labelled examples needed"]
        if sequential.alarm:
            return Assessment(
                Status.DEGRADED, Action.RECALIBRATE, (*reasons, sequential.describe(gate)), evidence, sequential
            )
        status, reasons = _label_free(Status.INSUFFICIENT_DATA, reasons, label_free)
        more = close(today, pooled_with, rules, label_free)
        return Assessment(status, Action.RECORD, tuple(reasons), evidence, sequential, close=more)
    assert evidence.dne_pct is not None  # sufficient evidence has an estimate
    interval = f"dNE {evidence.dne_pct:.4f} % [{evidence.lo:.4f}, {evidence.hi:.4f}]{where}"
    z = evidence.z_over(gate)
    if z_needed is None:
        z_needed = rules.sequential.single_look_z
    if z > z_needed:
        status, reasons = (
            Status.DEGRADED,
            [f"{interval}: {z:.1f} standard errors above the {gate} % gate (DEGRADED at {z_needed:.2f})"],
        )
    elif sequential.alarm:
        status, reasons = (
            Status.DEGRADED,
            [f"{interval}: above the {gate} % gate over the plan's days", sequential.describe(gate)],
        )
    elif evidence.dne_pct > gate:
        status, reasons = (
            Status.WARN,
            [
                f"{interval}: above the {gate} % gate, but not yet by enough evidence "
                f"({z:.1f} standard errors; DEGRADED at {z_needed:.2f}, or when the "
                f"CUSUM {sequential.statistic:.2f} passes {sequential.h:.2f})"
            ],
        )
    else:
        status, reasons = Status.HEALTHY, [f"{interval}: within the {gate} % gate"]
    action = Action.RECALIBRATE if status is Status.DEGRADED else Action.RECORD
    findings, tested = segments
    for finding in findings:
        reasons.append(finding.describe(gate, tested) + ("" if finding.degraded else " (WARN level)"))
    if any(f.degraded for f in findings) and status is not Status.DEGRADED:
        status = Status.DEGRADED
        reasons.append(
            "only segments are degraded: a recalibration is validated on the whole traffic, which "
            "cannot show a segment fixed, so lpmon does not act; look at the segments above"
        )
    elif findings and status is Status.HEALTHY:
        status = Status.WARN
    status, reasons = _label_free(status, reasons, label_free)
    more = status is not Status.DEGRADED and close(today, pooled_with, rules, label_free)
    return Assessment(status, action, tuple(reasons), evidence, sequential, tuple(findings), more)


CLOSE_Z = 0.35  # standard errors the trailing window's estimate must be above the gate for a day to be close


def close(today: DayEvidence, earlier: list[DayEvidence], rules: Rules, label_free: Sequence[LabelFreeJump]) -> bool:
    """Whether a day short of DEGRADED is close enough for more of its examples to
    matter (lpmon.pipeline.adaptive): the estimate over the trailing window, today as
    scored so far, is above the gate (WARN territory) by more than CLOSE_Z of its
    standard errors; or today's own interval is wholly above the gate (a sudden
    excess after good days, which the window dilutes: one look at sample_size could
    not call it DEGRADED, since early looks need a large z); or the label-free
    signals jumped. The window and a margin, so that a model near but under the
    gate, whose single days (and, at small samples, windows) stray above it by
    chance, mostly stops at `sample_size`, while a persistent excess, whose window
    stays above, is scored on more of its days (bench/bench_decisions.py --evidence
    measures both)."""
    gate = rules.gate_pct
    window = pool(trailing_window(today, earlier, rules.window_days), rules.level)
    alone = pool([today], rules.level)
    return bool(label_free) or (window.defined and window.z_over(gate) > CLOSE_Z) or (alone.defined and alone.lo > gate)


def _label_free(status: Status, reasons: list[str], jumps) -> tuple[Status, list[str]]:
    """Label-free jumps make a day the labels cannot judge WARN; where the labels
    do judge it, they decide and the jumps are reported beside their verdict."""
    if not jumps:
        return status, list(reasons)
    reasons = list(reasons) + [jump.describe() for jump in jumps]
    return (Status.WARN if status is Status.INSUFFICIENT_DATA else status), reasons
