import math

import numpy as np
import pytest

from lpmon.quant import choose_qparams, fake_quantize


def test_affine_qparams_follow_fbgemm():
    qp = choose_qparams(-1.3, 2.7)
    assert qp.scale == np.float32(4.0 / 255)
    assert qp.zero_point == round(1.3 / qp.scale)  # from the end with the smaller terms
    assert (qp.qmin, qp.qmax) == (0, 255)
    # The range is extended to include 0, so 0 is exactly representable.
    positive = choose_qparams(0.5, 2.0)
    assert positive.zero_point == 0 and positive.scale == np.float32(2.0 / 255)
    assert fake_quantize(np.zeros(3, np.float32), choose_qparams(-0.7, 1.9))[0] == 0.0
    negative = choose_qparams(-4.0, -1.0)
    assert negative.zero_point == 255


def test_zero_range_and_symmetric():
    assert choose_qparams(0.0, 0.0).scale == np.float32(0.1)
    sym = choose_qparams(-3.0, 1.0, signed=True, symmetric=True)
    assert sym.zero_point == 0 and sym.scale == np.float32(3.0 / 127.5)
    unsigned_sym = choose_qparams(-3.0, 1.0, symmetric=True)
    assert unsigned_sym.zero_point == 128


def test_relu_only_consumers_use_the_positive_range():
    full = choose_qparams(-2.0, 2.0)
    relu = choose_qparams(-2.0, 2.0, only_relu_consumers=True)
    assert relu.zero_point == 0 and relu.scale == pytest.approx(full.scale / 2, rel=1e-6)
    assert relu.lo == 0.0 and math.isclose(relu.hi, 2.0, rel_tol=1e-6)


def test_bad_ranges():
    with pytest.raises(ValueError, match=r"range must be finite with lo <= hi, got \[2.0, 1.0\]"):
        choose_qparams(2.0, 1.0)
    with pytest.raises(ValueError, match="must be finite"):
        choose_qparams(float("nan"), 1.0)
    with pytest.raises(ValueError, match="bits must be between 2 and 16"):
        choose_qparams(0.0, 1.0, bits=32)
