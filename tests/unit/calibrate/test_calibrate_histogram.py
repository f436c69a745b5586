"""The aligned histogram: exact counts, lossless growth, order-free merges."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lpmon.calibrate import reference
from lpmon.calibrate.histogram import AlignedHistogram, as_values, scan


def histogram_of(*batches, bins=256):
    hist = AlignedHistogram(bins)
    for batch in batches:
        values = as_values(batch)
        if values.size:
            hist.add(values, *scan(values))
    return hist


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loc, scale", [(0, 1), (5, 0.1), (-1e4, 3), (0, 1e-20), (1e6, 1)])
def test_counts_match_numpy_histogram(dtype, loc, scale):
    values = np.random.default_rng(0).normal(loc, scale, 100_003).astype(dtype)
    hist = histogram_of(values, bins=2048)
    assert (hist.counts == reference.histogram_counts(values, hist.edges())).all()
    assert hist.count == values.size and hist.counts.sum() == values.size
    assert hist.edges()[0] <= values.min() and values.max() < hist.edges()[-1]


def test_growth_keeps_every_count():
    rng = np.random.default_rng(1)
    batches = [rng.normal(0, 0.01, 1000), rng.normal(0, 1, 1000), rng.normal(50, 1, 1000),
               rng.normal(-300, 5, 1000)]
    grown = histogram_of(*batches)
    assert grown.counts.sum() == 4000
    direct = histogram_of(np.concatenate(batches))
    assert (grown.exponent, grown.origin) == (direct.exponent, direct.origin)
    assert (grown.counts == direct.counts).all()
    assert (grown.counts == reference.histogram_counts(np.concatenate(batches), grown.edges())).all()


def test_exact_zeros_are_counted_apart():
    values = np.concatenate([np.zeros(500), np.random.default_rng(2).random(500) + 0.001])
    hist = histogram_of(values)
    assert hist.zeros == 500 and hist.counts.sum() == 1000
    assert hist.nonzero_counts().sum() == 500


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False, width=32)


@settings(max_examples=100, deadline=None)
@given(values=hnp.arrays(np.float32, st.integers(1, 400), elements=finite),
       cuts=st.lists(st.integers(0, 400), max_size=4), seed=st.integers(0, 1000))
def test_property_merge_and_order_do_not_matter(values, cuts, seed):
    parts = np.split(values, sorted(c % (len(values) + 1) for c in cuts))
    whole = histogram_of(values)
    merged = AlignedHistogram(256)
    for part in reversed(parts):
        merged.merge(histogram_of(part))
    shuffled = histogram_of(np.random.default_rng(seed).permutation(values))
    for other in (merged, shuffled):
        assert (other.exponent, other.origin, other.count, other.zeros) == \
            (whole.exponent, whole.origin, whole.count, whole.zeros)
        assert (other.counts == whole.counts).all()


def two_pass(*batches, bins=2048):
    """Scan then count (AlignedHistogram.add): the path the one-pass kernel must equal."""
    hist = AlignedHistogram(bins)
    for batch in batches:
        hist.add(batch, *scan(batch))
    return hist


@pytest.mark.parametrize("case", ["normal", "growing", "tiny negatives", "far from zero", "huge range",
                                  "constant", "zeros", "one value"])
def test_one_pass_scan_and_count_equals_two_passes(isa, case):
    rng = np.random.default_rng(5)
    f32 = np.float32
    batches = {
        "normal": [rng.normal(0, 1, 100_001)],
        "growing": [rng.normal(0, 0.01, 5_000), rng.normal(3, 1, 7_000), rng.normal(-300, 5, 9_000)],
        "tiny negatives": [np.concatenate([-rng.random(3_000) * 1e-44, rng.random(3_000) * 1e30])],
        "far from zero": [1e7 + rng.normal(0, 1, 50_000)],
        "huge range": [rng.normal(0, 1e30, 50_000), np.array([-3e38, 3e38])],
        "constant": [np.full(10_000, 2.5)],
        "zeros": [np.zeros(4_000), rng.normal(0, 1, 4_000)],
        "one value": [np.array([-7.0])],
    }[case]
    batches = [np.asarray(b, f32) for b in batches]
    fused = AlignedHistogram(2048)
    for batch in batches:
        fused.observe(batch)
    want = two_pass(*batches)
    everything = np.concatenate(batches)
    assert (want.counts == reference.histogram_counts(everything, want.edges())).all()
    assert (fused.exponent, fused.origin, fused.lo, fused.hi, fused.count, fused.zeros) == \
        (want.exponent, want.origin, want.lo, want.hi, want.count, want.zeros)
    np.testing.assert_array_equal(fused.counts, want.counts)


def test_one_pass_rejects_nan_and_inf_leaving_the_histogram_as_it_was(isa):
    hist = AlignedHistogram(256)
    hist.observe(np.linspace(-1, 1, 5_000, dtype=np.float32))
    before = hist.copy()
    for bad in (np.nan, np.inf, -np.inf):
        batch = np.random.default_rng(0).normal(0, 50, 9_000).astype(np.float32)
        batch[7_777] = bad
        with pytest.raises(ValueError, match="1 (NaN|inf)"):
            hist.observe(batch)
        assert (hist.exponent, hist.origin, hist.lo, hist.hi, hist.count, hist.zeros) == \
            (before.exponent, before.origin, before.lo, before.hi, before.count, before.zeros)
        np.testing.assert_array_equal(hist.counts, before.counts)
