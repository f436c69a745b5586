"""The result of comparing a quantized model's predictions with its reference's."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from .inputs import one_class_message


def binary_entropy(rate: float) -> float:
    """Entropy (nats) of a Bernoulli(rate) label: NE's denominator."""
    if rate <= 0.0 or rate >= 1.0:
        return 0.0
    return -(rate * math.log(rate) + (1.0 - rate) * math.log1p(-rate))


@dataclass(frozen=True)
class Comparison:
    """Reference (fp32) vs quantized predictions on the same labelled examples.

    dne_pct is the relative NE degradation 100 (NE_q - NE_ref) / NE_ref, with the
    interval [dne_pct_lo, dne_pct_hi] at confidence `level`. kl_gap_pct is the
    label-free estimate of the same gap: mean KL(Bernoulli(p_ref) || Bernoulli(p_q))
    relative to the reference log loss, which equals the expected log-loss gap
    when the reference model is calibrated. When NE is undefined (a segment with
    a single class) the NE fields are NaN and `undefined_reason` says why.
    """

    n: int
    positives: int
    ne_ref: float
    ne_q: float
    dne_pct: float
    dne_pct_lo: float
    dne_pct_hi: float
    calibration_ref: float
    calibration_q: float
    mean_abs_diff: float
    max_abs_diff: float
    kl_gap_pct: float
    log_loss_ref: float
    log_loss_q: float
    level: float
    undefined_reason: str | None = None

    def as_dict(self) -> dict:
        """Plain JSON-able fields (NaN stays NaN)."""
        return asdict(self)


@dataclass(frozen=True)
class ComparisonSums:
    """Sufficient statistics of a comparison, as the kernel returns them."""

    n: int
    positives: int
    loss_ref: float  # sum of reference log losses
    loss_ref_sq: float
    loss_q: float  # sum of quantized log losses
    diff: float  # sum of d = l_q - l_ref
    diff_sq: float
    diff_x_loss: float  # sum of d * l_ref
    kl: float
    p_ref: float
    p_q: float
    abs_diff: float
    max_abs_diff: float


def comparison_from_sums(s: ComparisonSums, level: float) -> Comparison:
    """Assemble a Comparison; the dNE interval is a delta-method interval.

    dNE% = 100 R with R = sum(d) / sum(l_ref), a ratio of means over the same
    examples (NE's entropy denominator cancels). Its standard error is
    sqrt(var(d_i - R l_ref_i) / n) / mean(l_ref) (first-order Taylor expansion
    of the ratio, sample variance with n - 1), and the interval is
    R +- z_{(1+level)/2} SE, using the normal quantile (n is large in practice).
    """
    n, pos = s.n, s.positives
    calibration_ref = s.p_ref / pos if pos else math.nan
    calibration_q = s.p_q / pos if pos else math.nan
    common: dict[str, Any] = dict(
        n=n,
        positives=pos,
        calibration_ref=calibration_ref,
        calibration_q=calibration_q,
        mean_abs_diff=s.abs_diff / n,
        max_abs_diff=s.max_abs_diff,
        log_loss_ref=s.loss_ref / n,
        log_loss_q=s.loss_q / n,
        level=level,
    )
    entropy = binary_entropy(pos / n)
    if entropy == 0.0:
        nan = math.nan
        return Comparison(
            ne_ref=nan,
            ne_q=nan,
            dne_pct=nan,
            dne_pct_lo=nan,
            dne_pct_hi=nan,
            kl_gap_pct=nan,
            undefined_reason=one_class_message(n, pos),
            **common,
        )
    ratio = s.diff / s.loss_ref
    if n > 1:
        centred_sq = s.diff_sq - 2.0 * ratio * s.diff_x_loss + ratio * ratio * s.loss_ref_sq
        std_err = math.sqrt(max(centred_sq, 0.0) / (n - 1) / n) / (s.loss_ref / n)
    else:
        std_err = math.nan
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    return Comparison(
        ne_ref=s.loss_ref / n / entropy,
        ne_q=s.loss_q / n / entropy,
        dne_pct=100.0 * ratio,
        dne_pct_lo=100.0 * (ratio - z * std_err),
        dne_pct_hi=100.0 * (ratio + z * std_err),
        kl_gap_pct=100.0 * s.kl / s.loss_ref,
        **common,
    )
