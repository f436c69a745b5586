"""Exact int8 linear emulation, activation quantization with saturation, fp16/bf16."""

import numpy as np
import pytest

from lpmon.quant import choose_qparams, fake_quantize
from lpmon.quant.halfprec import from_bf16, round_weight, to_bf16, to_fp16
from lpmon.quant.linear import EXACT_BLOCK, QuantizedLinear, dequantize, quantize_activation
from lpmon.quant.reference import int8_linear_accumulators


def layer_and_inputs(rng, batch, k, n):
    weight = rng.normal(0, 0.2, (n, k)).astype(np.float32)
    bias = rng.normal(0, 0.5, n).astype(np.float32)
    x = np.maximum(rng.normal(0.3, 1, (batch, k)), 0).astype(np.float32)
    x_qp = choose_qparams(0.0, float(x.max()))
    return QuantizedLinear.from_float(weight, bias), x, x_qp


@pytest.mark.parametrize("k", [1, 7, 512, 513, 2000])
def test_accumulators_are_exact_int32(k):
    rng = np.random.default_rng(k)
    layer, x, x_qp = layer_and_inputs(rng, 64, k, 16)
    # Worst case too: every product at full scale (|(x - zp) * w| = 255 * 128).
    x_q, _ = quantize_activation(x, x_qp)
    x_q[:4] = 255
    weight = layer.weight.copy()
    weight[:4] = -128
    extreme = QuantizedLinear(weight, layer.weight_scale, layer.bias)
    got = extreme.accumulate(x_q, 0).astype(np.int64)
    np.testing.assert_array_equal(got, int8_linear_accumulators(x_q, 0, weight))


def test_forward_requantizes_and_fuses_relu():
    rng = np.random.default_rng(1)
    layer, x, x_qp = layer_and_inputs(rng, 128, 300, 32)
    out_qp = choose_qparams(-6.0, 6.0)
    x_q, _ = quantize_activation(x, x_qp)
    acc = int8_linear_accumulators(x_q, x_qp.zero_point, layer.weight).astype(np.float32)
    multiplier = np.float32(x_qp.scale) * layer.weight_scale
    real = acc * multiplier + layer.bias
    want = np.clip(np.rint(real * (np.float32(1) / np.float32(out_qp.scale))) + out_qp.zero_point, 0, 255)
    np.testing.assert_array_equal(layer.forward(x_q, x_qp, out_qp), want)
    relu = layer.forward(x_q, x_qp, out_qp, relu=True)
    np.testing.assert_array_equal(relu, np.maximum(want, out_qp.zero_point))
    # ... and approximates the float layer within the output grid's step.
    y = x @ layer.dequantized_weight().T + layer.bias
    close = np.abs(dequantize(layer.forward(x_q, x_qp, out_qp), out_qp) - np.clip(y, -6, 6))
    assert np.percentile(close, 99) < 5 * out_qp.scale


def test_activation_quantization_counts_saturation():
    x = np.array([[-3.0, -1.0, 0.0, 0.5], [1.0, 2.0, 9.0, 1e9]], np.float32)
    qp = choose_qparams(-1.0, 2.0)
    q, sat = quantize_activation(x, qp)
    assert (sat.below, sat.above, sat.total) == (1, 2, 8)
    assert sat.fraction == pytest.approx(3 / 8)
    np.testing.assert_allclose(dequantize(q, qp), fake_quantize(x, qp))
    with pytest.raises(ValueError, match="activations have 1 NaN or inf"):
        quantize_activation(np.array([[1.0, np.nan]]), qp)


def test_weight_validation():
    with pytest.raises(ValueError, match=r"weight must be 2-D \[out, in\]"):
        QuantizedLinear.from_float(np.ones(3))
    with pytest.raises(ValueError, match="weight has 1 NaN or inf"):
        QuantizedLinear.from_float(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        QuantizedLinear.from_float(np.ones((2, 3)), bias=np.ones(3))
    layer = QuantizedLinear.from_float(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"input must be \[batch, 3\]"):
        layer.accumulate(np.ones((4, 5), np.uint8), 0)


def test_fp16_saturates_and_bf16_rounds_half_to_even():
    w = np.array([70000.0, -1e6, 1.0, 1e-8], np.float32)
    np.testing.assert_array_equal(to_fp16(w).astype(np.float32)[:3], [65504.0, -65504.0, 1.0])
    # bf16: 1 + 2**-8 is a tie between 1 and 1 + 2**-7: rounds to the even 1.0.
    ties = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, np.nan, np.inf], np.float32)
    rounded = from_bf16(to_bf16(ties))
    assert rounded[0] == 1.0 and rounded[1] == 1 + 2 ** -6 and np.isnan(rounded[2])
    assert rounded[3] == np.inf
    assert round_weight(w, "fp32") is not None
    with pytest.raises(ValueError, match="precision must be fp32, fp16 or bf16"):
        round_weight(w, "int8")


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("k", [64, 700])
def test_int8_linear_matches_torch_fbgemm(relu, k):
    import warnings

    torch.backends.quantized.engine = "fbgemm"
    rng = np.random.default_rng(k)
    layer, x, x_qp = layer_and_inputs(rng, 256, k, 48)
    out_qp = choose_qparams(-8.0, 8.0)
    x_q, _ = quantize_activation(x, x_qp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch deprecates quantized tensors
        tx = torch.quantize_per_tensor(torch.from_numpy(x), x_qp.scale, x_qp.zero_point, torch.quint8)
        np.testing.assert_array_equal(tx.int_repr().numpy(), x_q)
        tw = torch._make_per_channel_quantized_tensor(
            torch.from_numpy(layer.weight), torch.from_numpy(layer.weight_scale.astype(np.float64)),
            torch.zeros(48, dtype=torch.int64), 0)
        module = (torch.ao.nn.intrinsic.quantized.LinearReLU if relu else torch.ao.nn.quantized.Linear)(k, 48)
        module.set_weight_bias(tw, torch.from_numpy(layer.bias))
        module.scale, module.zero_point = out_qp.scale, out_qp.zero_point
        theirs = module(tx).int_repr().numpy()
    np.testing.assert_array_equal(layer.forward(x_q, x_qp, out_qp, relu=relu), theirs)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch reports the saturated weights
def test_bf16_matches_torch():
    x = np.random.default_rng(9).normal(0, 1e3, 10_000).astype(np.float32)
    np.testing.assert_array_equal(from_bf16(to_bf16(x)),
                                  torch.from_numpy(x).to(torch.bfloat16).float().numpy())
    big = np.array([[7e4, -7e4, 3.0]], np.float32)
    np.testing.assert_array_equal(to_fp16(big).astype(np.float32),
                                  torch._saturate_weight_to_fp16(torch.from_numpy(big)).numpy())
