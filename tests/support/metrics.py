"""Shared assertions and data for the metrics tests."""

import math

import numpy as np

from lpmon.metrics import Comparison, reference

LEVEL_FIELDS = ("ne_ref", "ne_q", "calibration_ref", "calibration_q", "mean_abs_diff",
                "max_abs_diff", "log_loss_ref", "log_loss_q")
# Relative gaps (%), which can be ~0: their error is relative to the size of
# the per-example loss differences they sum, not to the gap itself.
GAP_FIELDS = ("dne_pct", "dne_pct_lo", "dne_pct_hi", "kl_gap_pct")


def gap_scale(p_ref, p_q, y) -> float:
    """100 * mean |l_q - l_ref| / mean l_ref: the scale of the gap fields' sums."""
    l_ref, l_q = reference.log_losses(np.asarray(p_ref), y), reference.log_losses(np.asarray(p_q), y)
    return 100 * np.abs(l_q - l_ref).mean() / l_ref.mean()


def assert_comparisons_close(got: Comparison, want: Comparison, rtol: float, gap_scale: float):
    assert (got.n, got.positives, got.level) == (want.n, want.positives, want.level)
    assert got.undefined_reason == want.undefined_reason
    for name in LEVEL_FIELDS + GAP_FIELDS:
        g, w = getattr(got, name), getattr(want, name)
        if math.isnan(w):
            assert math.isnan(g), name
            continue
        scale = abs(w) + (gap_scale if name in GAP_FIELDS else 0.0)
        assert abs(g - w) <= rtol * scale + 1e-12, (name, g, w, scale)


def assert_matches_reference(got: Comparison, p_ref, p_q, y, rtol: float = 1e-6) -> None:
    """got is within rtol of the float64 reference computed on the same data."""
    want = reference.compare(p_ref, p_q, y, level=got.level)
    assert_comparisons_close(got, want, rtol, gap_scale(p_ref, p_q, y))


def paired_predictions(rng: np.random.Generator, n: int, dtype=np.float32, noise: float = 0.02):
    """Reference predictions, a perturbed 'quantized' copy, and labels drawn from the reference."""
    logits = rng.normal(-1.5, 1.5, n)
    p_ref = 1 / (1 + np.exp(-logits))
    p_q = 1 / (1 + np.exp(-(logits + rng.normal(0, noise, n) + noise / 2)))
    y = (rng.random(n) < p_ref).astype(np.uint8)
    if n >= 2:  # both classes, so NE is defined
        y[0], y[1] = 0, 1
    return p_ref.astype(dtype), p_q.astype(dtype), y
