"""Evidence across days: what a day's verdict rests on beyond its own sample.

pooling     the trailing window of days under one plan, when a day alone is too small
sequential  a CUSUM over days under one plan, with its false-alarm budget in days
segments    per-segment dNE with Benjamini-Hochberg control across segments
labelfree   label-free signals (KL gap, |p_fp32 - p_q|, saturation) against their history

All are pure functions of stored per-day figures (lpmon.store's evidence
queries), so a rerun of a day sees the same history and reaches the same verdict.
"""

from .labelfree import LabelFreeJump, label_free_jumps
from .pooling import DayEvidence, Pooled, pool, sufficiency, trailing_window
from .segments import SegmentFinding, judge_segments
from .sequential import Sequential, SequentialGate, cusum

__all__ = [
    "DayEvidence",
    "LabelFreeJump",
    "Pooled",
    "SegmentFinding",
    "Sequential",
    "SequentialGate",
    "cusum",
    "judge_segments",
    "label_free_jumps",
    "pool",
    "sufficiency",
    "trailing_window",
]
