"""Observers: each method against its reference, merge, edge cases, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lpmon._kernels import calibrate as kernel
from lpmon.calibrate import METHODS, observer, reference
from lpmon.calibrate.histogram import AlignedHistogram, as_values, scan
from lpmon.quant import choose_qparams, fake_quantize

EXACT_MERGE = [m for m in METHODS if m != "ema"]


def sqnr_db(values, result):
    x = values.astype(np.float64)
    err = x - fake_quantize(values, result.qparams)
    return 10 * np.log10(np.mean(x * x) / np.mean(err * err))


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(0)
    return {
        "normal": rng.normal(0, 1, 200_000).astype(np.float32),
        "student_t3": rng.standard_t(3, 200_000).astype(np.float32),
        "relu": np.maximum(rng.normal(0.2, 1, 200_000), 0).astype(np.float32),
    }


def test_l2_search_kernels_match_brute_force(isa):
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.standard_t(3, 20_000), [40.0, -35.0]])
    hist = AlignedHistogram(128)
    hist.add(as_values(values), *scan(as_values(values)))
    edges, below, sums, squares = hist.moments()
    zero = int(np.searchsorted(edges, 0))
    want = reference.l2_search_affine(below, sums, squares, edges, zero, zero, 256)
    got = kernel.l2_search_affine(below, sums, squares, edges, zero, zero, 256)
    assert got[1:] == want[1:] and got[0] == pytest.approx(want[0], rel=1e-9)
    greedy = kernel.l2_search_greedy(below, sums, squares, edges, zero, zero, 256)
    assert want[0] <= greedy[0] <= 1.05 * want[0]  # greedy is close, never better
    # All-positive data (the start pinned at 0) and a start range wider than the end's.
    edges[0] = 0.0
    assert kernel.l2_search_affine(below, sums, squares, edges, 0, 1, 256)[1:] == \
        reference.l2_search_affine(below, sums, squares, edges, 0, 1, 256)[1:]
    last = len(edges) - 2
    got = kernel.l2_search_affine(below, sums, squares, edges, last, 3, 16)
    assert got[1:] == reference.l2_search_affine(below, sums, squares, edges, last, 3, 16)[1:]


def test_kl_kernel_matches_reference():
    rng = np.random.default_rng(4)
    counts = np.bincount(np.abs(rng.standard_t(4, 30_000) * 20).astype(int), minlength=300)[:300]
    counts = counts.astype(np.float64)
    got, want = kernel.kl_threshold(counts, 64), reference.kl_threshold(counts, 64)
    assert got[0] == want[0] and got[1] == pytest.approx(want[1], rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fake_quant_sse_matches_reference(dtype):
    values = np.random.default_rng(5).normal(0, 2, 10_001).astype(dtype)
    qp = choose_qparams(-3.0, 4.0)
    got = kernel.fake_quant_sse(values, qp.scale, qp.zero_point, qp.qmin, qp.qmax)
    assert got == pytest.approx(
        reference.fake_quant_sse(values, qp.scale, qp.zero_point, qp.qmin, qp.qmax), rel=1e-6)


@pytest.mark.parametrize("name", ["normal", "student_t3", "relu"])
def test_histogram_methods_beat_minmax_and_mse_is_the_floor(samples, name):
    values = samples[name]
    sqnr = {m: sqnr_db(values, observer(m).observe(values).compute()) for m in METHODS}
    for method in ("l2", "l2_fast"):
        assert sqnr[method] >= sqnr["minmax"], (method, sqnr)
    # l2 optimises the expected error directly: within a fraction of a dB of
    # the direct search on the data (which is the reference).
    assert sqnr["l2"] >= sqnr["mse"] - 0.3, sqnr
    assert sqnr["l2"] >= sqnr["l2_fast"] - 0.05


@pytest.mark.parametrize("method", list(METHODS))
def test_expected_error_matches_measured(samples, method):
    values = samples["student_t3"]
    result = observer(method).observe(values).compute()
    measured = np.mean((values.astype(np.float64) - fake_quantize(values, result.qparams)) ** 2)
    if method in ("minmax", "ema"):
        assert result.expected_mse == pytest.approx(result.scale ** 2 / 12)
    else:
        assert result.expected_mse == pytest.approx(measured, rel=0.05)
        clipped = np.mean((values < result.qparams.lo) | (values > result.qparams.hi))
        assert result.clipped_fraction == pytest.approx(clipped, abs=1e-3)


@pytest.mark.parametrize("method", EXACT_MERGE)
def test_merge_of_halves_equals_one_observer(samples, method):
    values = samples["student_t3"][:50_000]
    whole = observer(method).observe(values)
    left, right = observer(method).observe(values[:20_000]), observer(method).observe(values[20_000:])
    merged, want = left.merge(right).compute(), whole.compute()
    if method == "mse":  # float sums over the data in another order: the same range
        assert (merged.lo, merged.hi, merged.scale) == (want.lo, want.hi, want.scale)
        assert merged.expected_mse == pytest.approx(want.expected_mse, rel=1e-12)
    else:
        assert merged == want


def test_ema_merge_replays_batches_in_order():
    batches = [np.array([-1.0, 1.0]), np.array([-3.0, 2.0]), np.array([0.0, 5.0])]
    whole = observer("ema", averaging_constant=0.5)
    for batch in batches:
        whole.observe(batch)
    merged = observer("ema", averaging_constant=0.5).observe(batches[0])
    merged.merge(observer("ema", averaging_constant=0.5).observe(batches[1]).observe(batches[2]))
    result = merged.compute()
    assert result == whole.compute()
    assert (result.lo, result.hi) == (-1.0 + 0.5 * (-2.0) + 0.5 * (0.0 - -2.0), 1 + 0.5 + 0.5 * (5 - 1.5))


@settings(max_examples=40, deadline=None)
@given(values=hnp.arrays(np.float32, st.integers(2, 300),
                         elements=st.floats(-1e4, 1e4, allow_subnormal=False, width=32)),
       seed=st.integers(0, 10_000), method=st.sampled_from(["minmax", "percentile", "l2", "l2_fast", "kl"]))
def test_property_range_invariant_under_permutation_and_merge(values, seed, method):
    whole = observer(method, bins=64) if method != "minmax" else observer(method)
    whole.observe(values)
    shuffled = np.random.default_rng(seed).permutation(values)
    cut = seed % len(values)
    make = (lambda: observer(method, bins=64)) if method != "minmax" else (lambda: observer(method))
    a, b, c = make().observe(shuffled[:cut]), make().observe(shuffled[cut:]), make()
    # (a + b) + c == a + (b + c) == whole
    left = make().merge(a).merge(b).merge(c)
    right = make().merge(a).merge(make().merge(b).merge(c))
    for other in (left, right):
        assert other.compute() == whole.compute()


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("values", [np.full(1000, 2.5), np.zeros(1000), np.array([-7.0]),
                                    np.array([0.0, 1e30, -1e30, 1.0])])
def test_edge_cases_give_finite_ranges(method, values):
    for symmetric in (False, True):
        result = observer(method).observe(values).compute(symmetric=symmetric)
        assert np.isfinite([result.lo, result.hi, result.scale]).all() and result.scale > 0
        assert result.qmin <= result.zero_point <= result.qmax


@pytest.mark.parametrize("method", list(METHODS))
def test_nan_and_inf_are_counted_and_change_nothing(method):
    obs = observer(method).observe(np.arange(10.0))
    before = obs.compute()
    bad = np.array([1.0, np.nan, np.inf, -np.inf, np.nan])
    with pytest.raises(ValueError, match="batch has 2 NaN and 2 inf of 5 values"):
        obs.observe(bad)
    assert obs.compute() == before


def test_empty_batches_and_empty_observers():
    obs = observer("l2").observe(np.array([], np.float32))
    with pytest.raises(ValueError, match="no values observed"):
        obs.compute()
    obs.observe(np.ones(3)).observe([])
    assert obs.count == 3


def test_bad_options_and_methods():
    with pytest.raises(ValueError, match="unknown calibration method 'histogram'"):
        observer("histogram")
    with pytest.raises(ValueError, match="percentile must be in"):
        observer("percentile", percentile=20)
    with pytest.raises(ValueError, match="cannot merge"):
        observer("l2").merge(observer("kl"))
    with pytest.raises(ValueError, match="bits must be between 2 and 16"):
        observer("minmax").observe([1.0]).compute(bits=1)


def test_symmetric_and_signed_grids():
    values = np.random.default_rng(6).normal(0.5, 1, 10_000)
    result = observer("l2").observe(values).compute(bits=8, signed=True, symmetric=True)
    assert result.zero_point == 0 and (result.qmin, result.qmax) == (-128, 127)
    assert result.lo == -result.hi
    unsigned = observer("minmax").observe(values).compute(bits=4)
    assert (unsigned.qmin, unsigned.qmax) == (0, 15)


def test_per_channel_weights():
    rng = np.random.default_rng(7)
    weights = rng.normal(0, 1, (16, 64)) * np.arange(1, 17)[:, None]
    obs = observer("minmax", axis=0).observe(weights)
    result = obs.compute(bits=8, signed=True, symmetric=True)
    assert len(result.channels) == 16
    np.testing.assert_allclose(result.scale, np.abs(weights).max(axis=1) / 127.5, rtol=1e-6)
    assert (result.zero_point == 0).all()
    with pytest.raises(ValueError, match="expected 16 channels on axis 0, got 8"):
        obs.observe(weights[:8])
    bad = weights.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="channel 3 has 1 NaN"):
        obs.observe(bad)
    assert obs.count == weights.size  # the bad batch changed nothing
    l2 = observer("l2", axis=1).observe(weights.T).compute()
    assert len(l2.channels) == 16


def test_percentile_and_minmax_against_numpy(samples):
    values = samples["student_t3"]
    hist_width = observer("l2").observe(values).histogram.width
    result = observer("percentile", percentile=99.9).observe(values).compute()
    lo, hi = np.percentile(values.astype(np.float64), [0.1, 99.9])
    assert abs(result.lo - lo) <= hist_width and abs(result.hi - hi) <= hist_width
    minmax = observer("minmax").observe(values).compute()
    assert (minmax.lo, minmax.hi) == (values.min(), values.max())
