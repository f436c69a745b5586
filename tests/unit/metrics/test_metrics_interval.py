"""The dNE interval covers the true dNE at about its nominal rate."""

import numpy as np
import pytest

from lpmon import metrics


def expected_loss(p_true, p):
    return -(p_true * np.log(p) + (1 - p_true) * np.log1p(-p))


def draw(rng, n):
    p_true = 1 / (1 + np.exp(-rng.normal(-2.0, 1.2, n)))
    p_q = 1 / (1 + np.exp(-(np.log(p_true / (1 - p_true)) + rng.normal(0.05, 0.15, n))))
    return p_true, p_q


@pytest.mark.parametrize("level", [0.9, 0.95])
def test_interval_coverage(level):
    rng = np.random.default_rng(2024)
    # The population's true relative gap, from expected losses over many examples.
    p_true, p_q = draw(rng, 4_000_000)
    loss_ref = expected_loss(p_true, p_true).mean()
    true_dne = 100 * (expected_loss(p_true, p_q).mean() - loss_ref) / loss_ref

    trials, n, covered = 400, 4_000, 0
    for _ in range(trials):
        p_true, p_q = draw(rng, n)
        y = (rng.random(n) < p_true).astype(np.uint8)
        c = metrics.compare(p_true, p_q, y, level=level)
        covered += c.dne_pct_lo <= true_dne <= c.dne_pct_hi
    rate = covered / trials
    # Binomial standard error is about 0.011 to 0.015 here: allow 3 of them.
    assert abs(rate - level) < 3 * np.sqrt(level * (1 - level) / trials) + 0.005, rate
