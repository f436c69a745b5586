"""The policy's verdict on a day, fed with the plan's earlier days, the day's segments
and its label-free signals.
"""

from __future__ import annotations

from lpmon.config import ModelSettings
from lpmon.metrics import Comparison
from lpmon.pipeline.daywork import DayWork
from lpmon.policy import Rules, assess
from lpmon.store import StateStore
from lpmon.verdict import DayEvidence, judge_segments, label_free_jumps
from lpmon.verdict.looks import Looks


def day_looks(settings: ModelSettings, work: DayWork) -> Looks:
    """The day's schedule of looks: from sample_size up to max_sample_size or the day's rows."""
    rows = work.day_rows or work.sample_size or settings.sample_size
    return Looks.of(settings.sample_size, min(settings.sample_cap, rows), settings.sequential_run_length_days)


def assess_day(store: StateStore, settings: ModelSettings, work: DayWork):
    """The policy's verdict on the day as scored so far, with the plan's earlier days
    (pooling, the CUSUM, label-free baselines) and the day's segments; DEGRADED on the
    day's own evidence needs the z of the look it is at (lpmon.verdict.looks)."""
    rules = Rules.of(settings)
    looks = day_looks(settings, work)
    history = store.plan_days(work.model_id, work.day, work.plan_version)
    earlier = [DayEvidence.from_metrics(r["logical_date"], r, settings.level) for r in history if r["n"] is not None]
    today = DayEvidence.from_metrics(work.day, work.comparison, settings.level) if work.comparison is not None else None
    if today is None and work.sample_size:
        today = DayEvidence(work.day, work.sample_size, work.positives, None, None, 0.0)
    segments = judge_segments(
        {
            tuple(name.split("=", 1)): DayEvidence.from_metrics(work.day, c, settings.level)
            for name, c in work.segment_results.items()
        },
        settings.gate_pct,
        settings.min_examples,
        settings.min_positives,
        warn_q=1 - settings.level,
        # The single look's budget shared by the day's looks (Bonferroni: each look may stop the day).
        degraded_q=1 / (2 * settings.sequential_run_length_days) / len(looks.sizes),
        level=settings.level,
    )
    signals = [label_free_signals(r, {}, r["saturation"]) for r in history]
    jumps = label_free_jumps(label_free_signals(work.comparison or {}, work.layers), signals, settings.gate_pct)
    comparable = None
    if jumps:  # the traffic changed: the window pools only the days since (those with a jump too)
        since = len(history)
        while since > 0 and label_free_jumps(signals[since - 1], signals[: since - 1], settings.gate_pct):
            since -= 1
        days = {r["logical_date"] for r in history[since:]}
        comparable = [e for e in earlier if e.day in days]
    z_needed = looks.z_needed(looks.look_of(work.sample_size))
    return assess(today, earlier, rules, segments=segments, label_free=jumps, comparable=comparable, z_needed=z_needed)


def label_free_signals(metrics: dict, layers: dict, saturation: float | None = None) -> dict:
    """The label-free signals of a day (from its comparison and its FC layers' saturation)."""

    def finite(v):
        return None if v is None or v != v else float(v)

    if layers:
        saturation = max(v["saturation_below"] + v["saturation_above"] for v in layers.values())
    return {
        "KL gap %": finite(metrics.get("kl_gap_pct")),
        "mean |p_fp32 - p_q|": finite(metrics.get("mean_abs_diff")),
        "saturation": finite(saturation),
    }


def worst_segments(work: DayWork, count: int = 3) -> str:
    """The day's segments (config `segments`) with the largest dNE; "" without segments."""
    judged = sorted(
        ((k, Comparison(**c)) for k, c in work.segment_results.items() if not c["undefined_reason"]),
        key=lambda kc: -kc[1].dne_pct,
    )
    lines = [
        f"{k} dNE {c.dne_pct:.4f} % [{c.dne_pct_lo:.4f}, {c.dne_pct_hi:.4f}] on {c.n:,} examples"
        for k, c in judged[:count]
    ]
    return f"worst segments (of {len(work.segment_results)}): " + "; ".join(lines) if lines else ""


def logged_degraded_reason(settings: ModelSettings, c: Comparison, segments: str = "") -> str:
    """Why a DEGRADED day of a logged-predictions model changes nothing, and its evidence."""
    return (
        f"recalibration and fallback are not available: the model's predictions are logged by serving "
        f'(scorer = "logged", columns {settings.p_ref_column} and {settings.p_q_column}), lpmon has no '
        f"model to re-quantize; fix the served model. Evidence: dNE {c.dne_pct:.4f} % "
        f"[{c.dne_pct_lo:.4f}, {c.dne_pct_hi:.4f}] ({c.level:.0%} interval) against the {settings.gate_pct:g} % "
        f"gate on {c.n:,} examples ({c.positives:,} positives); "
        + (f"{segments}; " if segments else "no segments configured (segments = [...]); ")
        + f"label-free signals: mean |p_ref - p_q| {c.mean_abs_diff:.3g}, max {c.max_abs_diff:.3g}, "
        f"KL gap {c.kl_gap_pct:.4f} %, calibration (mean prediction / positive rate) "
        f"{c.calibration_ref:.4f} reference, {c.calibration_q:.4f} served"
    )
