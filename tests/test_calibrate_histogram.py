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
