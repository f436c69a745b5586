import dataclasses

import numpy as np
import pytest

from lpmon.metrics import compare
from lpmon.policy import Action, DataRequirement, Gate, Status, assess

BASE = None


def comparison(**fields):
    global BASE
    if BASE is None:
        rng = np.random.default_rng(0)
        p = rng.uniform(0.02, 0.4, 50_000)
        BASE = compare(p, p, (rng.random(50_000) < p).astype(np.uint8))
    return dataclasses.replace(BASE, **fields)


GATE, NEED = Gate(0.05), DataRequirement(10_000, 100)


@pytest.mark.parametrize("point, lo, hi, status, action", [
    (0.01, -0.01, 0.03, Status.HEALTHY, Action.RECORD),
    (0.05, 0.00, 0.10, Status.HEALTHY, Action.RECORD),      # on the gate is within it
    (0.07, 0.02, 0.12, Status.WARN, Action.RECORD),         # straddles
    (0.09, 0.051, 0.13, Status.DEGRADED, Action.RECALIBRATE),
    (-0.2, -0.3, -0.1, Status.HEALTHY, Action.RECORD),      # better than fp32 by chance
])
def test_status_from_the_interval(point, lo, hi, status, action):
    a = assess(comparison(dne_pct=point, dne_pct_lo=lo, dne_pct_hi=hi), GATE, NEED)
    assert (a.status, a.action) == (status, action)
    assert "gate" in a.reasons[0] and f"{point:.4f}" in a.reasons[0]


def test_insufficient_data_is_never_a_pass():
    a = assess(comparison(n=5_000, positives=50), GATE, NEED)
    assert a.status is Status.INSUFFICIENT_DATA and a.action is Action.RECORD
    assert "5000 labelled examples" in a.reasons[0] and "50 positives" in a.reasons[1]
    a = assess(None, GATE, NEED, n=0, positives=0)
    assert a.status is Status.INSUFFICIENT_DATA
    undefined = comparison(undefined_reason="only one class present (0 positives among 20000 examples)",
                           positives=0, dne_pct=float("nan"))
    assert "only one class" in " ".join(assess(undefined, GATE, NEED).reasons)


def test_gate_must_be_positive():
    with pytest.raises(ValueError, match="gate must be positive"):
        Gate(0)
