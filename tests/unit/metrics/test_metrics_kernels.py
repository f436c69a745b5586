"""The compiled metrics against their NumPy float64 references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lpmon import metrics
from lpmon.metrics import reference
from support.metrics import assert_comparisons_close, assert_matches_reference, gap_scale, paired_predictions

SIZES = [2, 3, 17, 511, 512, 513, 65_536 + 7, 300_001]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_compare_matches_reference(isa, dtype, n):
    p_ref, p_q, y = paired_predictions(np.random.default_rng(n), n, dtype)
    assert_matches_reference(metrics.compare(p_ref, p_q, y), p_ref, p_q, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES + [10**6])
def test_normalized_entropy_matches_reference(isa, dtype, n):
    p, _, y = paired_predictions(np.random.default_rng(n), n, dtype)
    got, want = metrics.normalized_entropy(p, y), reference.normalized_entropy(p, y)
    assert got == pytest.approx(want, rel=1e-6)


def test_large_input_within_float64_tolerance():
    p_ref, p_q, y = paired_predictions(np.random.default_rng(0), 10**6, noise=0.05)
    assert_matches_reference(metrics.compare(p_ref, p_q, y), p_ref, p_q, y)


def test_results_do_not_depend_on_threads():
    p_ref, p_q, y = paired_predictions(np.random.default_rng(1), 700_001)
    one = metrics.compare(p_ref, p_q, y, n_threads=1)
    assert metrics.compare(p_ref, p_q, y, n_threads=2) == one
    assert metrics.compare(p_ref, p_q, y, n_threads=5) == one
    assert (metrics.normalized_entropy(p_ref, y, n_threads=2)
            == metrics.normalized_entropy(p_ref, y, n_threads=1))


def test_read_only_and_non_contiguous_inputs():
    p_ref, p_q, y = paired_predictions(np.random.default_rng(2), 20_000)
    for array in (p_ref, p_q, y):
        array.flags.writeable = False
    got = metrics.compare(p_ref[::2], p_q[::2], y[::2])
    assert_matches_reference(got, p_ref[::2].copy(), p_q[::2].copy(), y[::2].copy())
    assert metrics.normalized_entropy(p_ref[::2], y[::2]) == pytest.approx(
        reference.normalized_entropy(p_ref[::2], y[::2]), rel=1e-6)


@pytest.mark.parametrize("label_dtype", [np.bool_, np.uint8, np.int8, np.int64, np.float32, np.float64])
def test_label_dtypes(label_dtype):
    p_ref, p_q, y = paired_predictions(np.random.default_rng(3), 5_000)
    want = metrics.compare(p_ref, p_q, y)
    assert metrics.compare(p_ref, p_q, y.astype(label_dtype)) == want


def test_mixed_prediction_dtypes_compute_in_float64():
    p_ref, p_q, y = paired_predictions(np.random.default_rng(4), 5_000)
    got = metrics.compare(p_ref, p_q.astype(np.float64), y)
    assert_matches_reference(got, p_ref.astype(np.float64), p_q.astype(np.float64), y)


def test_python_lists_are_accepted():
    assert metrics.normalized_entropy([0.2, 0.7, 0.4], [0, 1, 1]) == pytest.approx(
        reference.normalized_entropy(np.array([0.2, 0.7, 0.4]), np.array([0, 1, 1])), rel=1e-6)


def test_identical_predictions_have_zero_gap():
    p, _, y = paired_predictions(np.random.default_rng(5), 10_000)
    c = metrics.compare(p, p, y)
    assert c.dne_pct == 0 and c.dne_pct_lo == 0 and c.dne_pct_hi == 0
    assert c.kl_gap_pct == 0 and c.max_abs_diff == 0 and c.ne_q == c.ne_ref


def test_extreme_predictions_are_clipped():
    # 0 and 1 (exact), tiny and near-one values: clipped to [1e-7, 1 - 1e-7].
    p_ref = np.array([0.0, 1.0, 1e-30, 1 - 1e-12, 0.5, 0.3], dtype=np.float64)
    p_q = np.array([1.0, 0.0, 0.5, 1e-9, 0.5, 0.31], dtype=np.float64)
    y = np.array([1, 0, 1, 0, 1, 0], dtype=np.uint8)
    assert_matches_reference(metrics.compare(p_ref, p_q, y), p_ref, p_q, y)
    # A confident miss costs -log(1e-7), not infinity.
    assert metrics.normalized_entropy([0.0, 1.0], [1, 0]) == pytest.approx(
        -np.log(1e-7) / np.log(2), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_predictions_score_the_same_in_float32_and_float64(isa, dtype):
    """Exact 0 and 1 (and values within 1e-7 of them), with both labels: the
    complement is clipped at 1e-7, so float32 and float64 agree with the float64 reference."""
    rng = np.random.default_rng(11)
    n = 200_000
    p = rng.random(n)
    y = (rng.random(n) < p).astype(np.uint8)
    edges = np.array([0.0, 1.0, 1e-8, 1 - 1e-8, 1 - 2.0**-24, 2.0**-30])
    p[:12_000] = np.repeat(edges, 2_000)
    y[:12_000] = np.tile([0, 1], 6_000)
    want = reference.normalized_entropy(p, y)
    assert metrics.normalized_entropy(p.astype(dtype), y) == pytest.approx(want, rel=1e-6)
    p_q = np.clip(p + rng.normal(0, 0.01, n), 0, 1)
    p_q[:12_000] = p[:12_000][::-1]
    got = metrics.compare(p.astype(dtype), p_q.astype(dtype), y)
    assert_matches_reference(got, p.astype(np.float64), p_q.astype(np.float64), y)
    # A confident miss costs -log(1e-7) in either dtype.
    miss = metrics.normalized_entropy(np.array([1.0, 0.0], dtype), [0, 1])
    assert miss == pytest.approx(-np.log(1e-7) / np.log(2), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantized_loss_keeps_accuracy_where_it_is_far_below_the_reference(isa, dtype):
    """sum l_q is sum l_ref + sum d, but where that cancels (the quantized model far
    surer of the label) the example gets its own logarithm: ne_q stays accurate."""
    rng = np.random.default_rng(12)
    n = 50_000
    p_ref, p_q, y = paired_predictions(rng, n, dtype)
    confident = rng.random(n) < 0.02           # a few confident reversals among normal examples
    p_ref[confident] = np.where(y[confident] == 1, 1e-6, 1 - 1e-6)
    p_q[confident] = np.where(y[confident] == 1, 1 - 1e-6, 1e-6)
    assert_matches_reference(metrics.compare(p_ref, p_q, y), p_ref, p_q, y)
    # All of them: ne_q is 1e-7-ish, and still within 1e-6 of the reference.
    y2 = np.array([1, 0] * 500, np.uint8)
    p_ref2, p_q2 = (np.where(y2 == 1, a, b).astype(dtype) for a, b in ((0.0, 1.0), (1.0, 0.0)))
    got, want = metrics.compare(p_ref2, p_q2, y2), reference.compare(p_ref2, p_q2, y2)
    assert got.ne_q == pytest.approx(want.ne_q, rel=1e-6)
    segments = metrics.compare_by_segment(p_ref, p_q, y, confident.astype(int))
    for key, part in reference.compare_by_segment(p_ref, p_q, y, confident.astype(int)).items():
        assert segments[key].log_loss_q == pytest.approx(part.log_loss_q, rel=1e-6)


def test_small_differences_keep_relative_accuracy():
    # d and KL come from log1p of exact differences, not from differences of
    # rounded logs: a 1e-6 perturbation still matches float64.
    rng = np.random.default_rng(6)
    p_ref = rng.uniform(0.01, 0.99, 50_000)
    p_q = p_ref * (1 + 1e-6 * rng.standard_normal(50_000))
    y = (rng.random(50_000) < p_ref).astype(np.uint8)
    got, want = metrics.compare(p_ref, p_q, y), reference.compare(p_ref, p_q, y)
    assert got.kl_gap_pct == pytest.approx(want.kl_gap_pct, rel=1e-5)
    assert got.dne_pct == pytest.approx(want.dne_pct, rel=1e-4)


predictions = hnp.arrays(
    np.float64, st.integers(2, 300),
    elements=st.floats(0, 1, allow_nan=False, allow_subnormal=False),
)


@settings(max_examples=150, deadline=None)
@given(p_ref=predictions, data=st.data(), as_float32=st.booleans())
def test_property_compare_matches_reference(p_ref, data, as_float32):
    n = len(p_ref)
    p_q = data.draw(hnp.arrays(np.float64, n, elements=st.floats(0, 1, allow_subnormal=False)))
    y = data.draw(hnp.arrays(np.uint8, n, elements=st.integers(0, 1)))
    y[0], y[1] = 0, 1
    if as_float32:
        p_ref, p_q = p_ref.astype(np.float32), p_q.astype(np.float32)
    assert_matches_reference(metrics.compare(p_ref, p_q, y), p_ref, p_q, y)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 5_000))
def test_property_permutation_invariance(seed, n):
    p_ref, p_q, y = paired_predictions(np.random.default_rng(seed), n)
    order = np.random.default_rng(seed + 1).permutation(n)
    a, b = metrics.compare(p_ref, p_q, y), metrics.compare(p_ref[order], p_q[order], y[order])
    assert_comparisons_close(a, b, rtol=1e-6, gap_scale=gap_scale(p_ref, p_q, y))
