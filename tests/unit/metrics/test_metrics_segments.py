import math

import numpy as np
import pytest

from lpmon import metrics
from lpmon.metrics import reference
from support.metrics import assert_comparisons_close, assert_matches_reference, gap_scale, paired_predictions


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_segments_match_reference(isa, dtype, n_threads):
    rng = np.random.default_rng(0)
    p_ref, p_q, y = paired_predictions(rng, 200_003, dtype)
    segments = rng.integers(0, 7, len(y)) * 10
    got = metrics.compare_by_segment(p_ref, p_q, y, segments, n_threads=n_threads)
    want = reference.compare_by_segment(p_ref, p_q, y, segments)
    assert list(got) == list(want) == [0, 10, 20, 30, 40, 50, 60]
    for segment in got:
        mask = segments == segment
        assert_matches_reference(got[segment], p_ref[mask], p_q[mask], y[mask])


def test_one_segment_equals_compare():
    p_ref, p_q, y = paired_predictions(np.random.default_rng(1), 50_000)
    (only,) = metrics.compare_by_segment(p_ref, p_q, y, np.zeros(len(y), int)).values()
    assert_comparisons_close(only, metrics.compare(p_ref, p_q, y), 1e-7, gap_scale(p_ref, p_q, y))


def test_string_ids_and_single_class_segment():
    p_ref, p_q, y = paired_predictions(np.random.default_rng(2), 1_000)
    country = np.array(["de", "fr", "us"] * 333 + ["lu"], dtype=object)
    y[-1] = 1  # "lu" has one example, one class
    result = metrics.compare_by_segment(p_ref, p_q, y, country)
    assert list(result) == ["de", "fr", "lu", "us"]
    lu = result["lu"]
    assert lu.n == 1 and lu.positives == 1 and math.isnan(lu.ne_ref) and math.isnan(lu.dne_pct)
    assert "only one class present" in lu.undefined_reason
    assert result["de"].undefined_reason is None
    assert sum(c.n for c in result.values()) == 1_000
