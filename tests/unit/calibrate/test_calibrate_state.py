"""Observer state for the store: exact round trips, merges across days, clear refusals."""

import json

import numpy as np
import pytest

from lpmon.calibrate import STORABLE, from_state, observer, to_state


@pytest.mark.parametrize("method", STORABLE)
def test_state_round_trips_through_json_and_merges_like_the_live_observer(method):
    rng = np.random.default_rng(3)
    days = [rng.normal(i * 0.3, 1 + i, size=20_000).astype(np.float32) for i in range(3)]
    live = observer(method)
    for values in days:
        live.observe(values)
    stored = [json.loads(json.dumps(to_state(observer(method).observe(values)))) for values in days]
    rebuilt = observer(method)
    for state in stored:
        rebuilt.merge(from_state(state, lambda: observer(method)))
    assert rebuilt.compute(bits=8) == live.compute(bits=8)


def test_refusals_name_the_problem():
    with pytest.raises(ValueError, match="'mse' observer keeps raw values"):
        to_state(observer("mse").observe(np.ones(4)))
    state = to_state(observer("l2").observe(np.arange(10.0)))
    with pytest.raises(ValueError, match="for method 'l2', not 'kl'"):
        from_state(state, lambda: observer("kl"))
    broken = dict(state, counts=[c + 1 for c in state["counts"]])
    with pytest.raises(ValueError, match="counts do not add up"):
        from_state(broken, lambda: observer("l2"))
    outside = dict(state, bins=[5000])
    outside["counts"] = [state["histogram_count"]]
    with pytest.raises(ValueError, match="bin index outside"):
        from_state(outside, lambda: observer("l2"))
    with pytest.raises(ValueError, match="not a hex float"):
        from_state(dict(state, lo="zero"), lambda: observer("l2"))


def test_a_corrupt_stored_day_is_named_with_its_layer():
    from lpmon.pipeline.assembly import merge_stored

    good = to_state(observer("l2").observe(np.arange(10.0)))
    broken = {k: v for k, v in good.items() if k != "counts"}
    today = {"top_l.0": observer("l2").observe(np.arange(5.0))}
    with pytest.raises(ValueError, match="layer top_l.0 on 2026-11-02: 'counts'"):
        merge_stored(today, "l2", {"2026-11-01": {"top_l.0": good}, "2026-11-02": {"top_l.0": broken}})
