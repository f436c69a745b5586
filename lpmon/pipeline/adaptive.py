"""Adaptive sampling within a day: more of the day's own traffic where the verdict is close.

The day scores `sample_size` examples, then looks (compare, assess). While the
verdict is close (lpmon.policy.close: short of DEGRADED, and the estimate over
the trailing window above the gate, or a label-free jump) it scores more at the
next look of its schedule (lpmon.verdict.looks: sample_size * 2^k, up to
max_sample_size or the day's rows) and looks again; DEGRADED at a look needs
that look's share of the day's false-alarm budget. It stops when the verdict
is decided, at the cap, or when the day's traffic is exhausted.

More examples are the continuation of the day's sample in hash order: the
sample of n requests with the smallest hashes starts with the one of any
smaller size, so a rerun or a backfill scores the same examples, and a larger
look only scores its new rows. A day sampled per file group draws its later
looks whole, in the same hash order (the groups' candidates hold only the first
look's rows). The scored examples, all of them, are the day's sample for what
follows: their alternate rows are the calibration and evaluation halves, and
the validation's further draws continue after them.
"""

from __future__ import annotations

import numpy as np

from lpmon.model import forward_fp32, forward_quantized
from lpmon.pipeline.context import Day, draw, take_sample
from lpmon.pipeline.daywork import DayWork
from lpmon.traffic import TrafficError
from lpmon.verdict.looks import Looks


def stop_reason(looks: Looks, work: DayWork, close: bool) -> str | None:
    """Why the day stops after its latest look (None: look again): "decided", "cap"
    (max_sample_size scored) or "traffic_exhausted" (the day's rows scored)."""
    if not close:
        return "decided"
    if work.looks < len(looks.sizes) and work.sample_size < work.day_rows:
        return None
    return "cap" if work.sample_size < work.day_rows else "traffic_exhausted"


class _CalibrationRows:
    """Feeds the day's calibration observers the new rows that belong to the
    calibration half (even rows of the whole scored sample), whatever the chunks."""

    def __init__(self, fed: dict, start: int):
        self.fed, self.start, self.seen = fed, start, {name: 0 for name in fed}

    def __call__(self, name: str, x: np.ndarray) -> None:
        first = (self.start + self.seen[name]) % 2  # the chunk's first row with an even index in the sample
        self.fed[name].observe(x[first::2])
        self.seen[name] += len(x)


def extend(d: Day, work: DayWork, size: int, fed: dict | None) -> None:
    """Score the day's sample from its current size up to `size` examples (the
    continuation in hash order), feeding the new calibration rows to `fed`."""
    logged = d.settings.scorer == "logged"
    sample = draw(d.settings, None if logged else d.model, d.day, size)
    start, labels = work.sample_size, work.labels
    if len(sample) <= start or labels is None or not np.array_equal(sample.labels[:start], labels):
        raise TrafficError(
            f"{d.settings.traffic}: {d.day}'s traffic changed while the day was scored "
            f"(a larger sample does not start with its first {start:,} examples): rerun the day"
        )
    if logged:
        take_sample(work, sample, d.settings)
        return
    assert sample.batch is not None and work.p_ref is not None and work.p_q is not None
    new = sample.batch.slice(start, len(sample))
    observe = _CalibrationRows(fed, start) if fed else None
    p_ref = forward_fp32(d.model, new, observe=observe).probabilities
    p_q = forward_quantized(d.model, new, d.plan(work.plan_version)).probabilities
    p_ref, p_q = np.concatenate([work.p_ref, p_ref]), np.concatenate([work.p_q, p_q])
    take_sample(work, sample, d.settings)
    work.p_ref, work.p_q = p_ref, p_q
