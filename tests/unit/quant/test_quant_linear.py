"""Exact int8 linear emulation, activation quantization with saturation, fp16/bf16."""

import warnings

import numpy as np
import pytest

from lpmon._kernels import int8gemm as int8gemm_kernel
from lpmon.quant import choose_qparams, fake_quantize, reference
from lpmon.quant.halfprec import from_bf16, round_weight, to_bf16, to_fp16
from lpmon.quant.linear import QuantizedLinear, dequantize, dequantize_output, pack_weight, quantize_activation
from lpmon.quant.qparams import fma32, quantize
from lpmon.quant.reference import int8_linear_accumulators
from support.quant_tables import activation_ties


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


@pytest.mark.parametrize("m, k, n", [(37, 13, 5), (256, 700, 48), (64, 1000, 129), (9, 3, 33), (520, 513, 64)])
def test_int8gemm_kernel_is_exact_on_every_copy(isa, m, k, n):
    """The compiled int32 product (vpdpbusd, or the plain loop) against int64 NumPy: rows off
    the register tile, inputs off the group of 4, outputs off the block of 32, full-scale terms."""
    rng = np.random.default_rng(m + k + n)
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    weight = rng.integers(-128, 128, (n, k), dtype=np.int8)
    x[:3], weight[:2] = 255, -128
    packed, colsum = pack_weight(weight)
    for zp in (0, 255, int(rng.integers(1, 255))):
        out = np.empty((m, n), np.float32)
        int8gemm_kernel.gemm_u8s8(x, packed, colsum, zp, out)
        exact = int8_linear_accumulators(x, zp, weight)
        np.testing.assert_array_equal(out, exact.astype(np.float32))  # float32 rounds as cvtdq2ps does
    if m > 128:  # threads split the rows
        threaded = np.empty((m, n), np.float32)
        int8gemm_kernel.gemm_u8s8(x, packed, colsum, zp, threaded, 2)
        np.testing.assert_array_equal(threaded, out)


@pytest.mark.parametrize("signed", [False, True])
def test_accumulate_is_the_same_on_every_path(isa, signed):
    """accumulate takes the int32 kernel where it is fast, else float32 BLAS blocks: the same
    accumulators either way, for uint8 and int8 codes, read-only and strided inputs."""
    rng = np.random.default_rng(17)
    layer, x, _ = layer_and_inputs(rng, 200, 700, 40)
    qp = choose_qparams(-1.0, float(x.max()), signed=signed)
    x_q, _ = quantize_activation(x, qp)
    wide = np.zeros((200, 1400), x_q.dtype)
    wide[:, ::2] = x_q
    strided = wide[:, ::2]
    strided.flags.writeable = False
    exact = int8_linear_accumulators(x_q, qp.zero_point, layer.weight).astype(np.float32)
    np.testing.assert_array_equal(layer.accumulate(x_q, qp.zero_point), exact)
    np.testing.assert_array_equal(layer.accumulate(strided, qp.zero_point), exact)
    assert int8gemm_kernel.fast() == (isa != "base")  # the base copy leaves it to BLAS


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


@pytest.mark.parametrize("signed", [False, True])
def test_activation_ties_round_after_adding_the_zero_point(isa, signed):
    """round(x / s + zp), as FBGEMM: x / s = -16.5 with zp 129 gives 112, not round(-16.5) + 129 = 113."""
    qp = choose_qparams(-20.0, 8.0, signed=signed)
    x = activation_ties(np.random.default_rng(signed), 300_000, qp.scale, qp.zero_point, qp.qmin, qp.qmax)
    q, _ = quantize_activation(x.reshape(-1, 100), qp)
    np.testing.assert_array_equal(q.ravel(), quantize(x, qp))
    # The kernel's FMA (or its emulation in the base copy) against NumPy's emulation.
    inverse = np.float32(1) / np.float32(qp.scale)
    fused = fma32(x, inverse, np.float32(qp.zero_point))
    assert np.count_nonzero(fused != x * inverse + np.float32(qp.zero_point)) > 100  # the ties are hard
    assert np.count_nonzero(np.rint(x * inverse) + qp.zero_point != np.rint(fused)) > 100


def test_fma32_rounds_once():
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(0, 1, 100_000).astype(np.float32) for _ in range(3))
    exact = a.astype(np.float64) * b + c  # exact to 2**-53 relative: the products are exact
    got = fma32(a, b, c)
    # Correct rounding: got is the float32 nearest the exact value.
    assert (np.abs(got - exact) <= np.abs(np.nextafter(got, np.inf) - got) / 2 + 1e-45).all()
    assert fma32(np.float32(1 + 2**-23), np.float32(1 - 2**-23), np.float32(-1)) == np.float32(-(2.0**-46))


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
    ties = np.array([1 + 2**-8, 1 + 3 * 2**-8, np.nan, np.inf], np.float32)
    rounded = from_bf16(to_bf16(ties))
    assert rounded[0] == 1.0 and rounded[1] == 1 + 2**-6 and np.isnan(rounded[2])
    assert rounded[3] == np.inf
    assert round_weight(w, "fp32") is not None
    with pytest.raises(ValueError, match="precision must be fp32, fp16 or bf16"):
        round_weight(w, "int8")


torch = pytest.importorskip("torch")


def torch_int8_linear(layer, x, x_qp, out_qp, relu):
    """torch's fbgemm quantized Linear (LinearReLU) on torch.quantize_per_tensor's codes of x."""
    torch.backends.quantized.engine = "fbgemm"
    n, k = layer.weight.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch deprecates quantized tensors
        tx = torch.quantize_per_tensor(torch.from_numpy(x), x_qp.scale, x_qp.zero_point, torch.quint8)
        tw = torch._make_per_channel_quantized_tensor(
            torch.from_numpy(layer.weight),
            torch.from_numpy(layer.weight_scale.astype(np.float64)),
            torch.zeros(n, dtype=torch.int64),
            0,
        )
        module = (torch.ao.nn.intrinsic.quantized.LinearReLU if relu else torch.ao.nn.quantized.Linear)(k, n)
        module.set_weight_bias(tw, torch.from_numpy(layer.bias))
        module.scale, module.zero_point = out_qp.scale, out_qp.zero_point
        return tx.int_repr().numpy(), module(tx).int_repr().numpy()


def biases_on_output_ties(rng, layer, acc_row, x_qp, out_qp):
    """Biases that put one output row exactly on requantization ties: FBGEMM's
    (float(acc) + bias / s) * (s / s_y) = k + 0.5, with s = s_x * s_w in float32."""
    f32 = np.float32
    s = (f32(x_qp.scale) * layer.weight_scale).astype(f32)
    multiplier = (s / f32(out_qp.scale)).astype(f32)
    bias = layer.bias.copy()
    for j in range(len(bias)):
        target = f32(rng.integers(-40, 40) + 0.5)
        b = f32((np.float64(target) / multiplier[j] - acc_row[j]) * s[j])
        for _ in range(64):
            y = f32(f32(f32(acc_row[j]) + f32(b / s[j])) * multiplier[j])
            if y == target:
                break
            b = np.nextafter(b, f32(np.inf) if y < target else f32(-np.inf))
        bias[j] = b
    return bias


@pytest.mark.parametrize("signed", [False, True])
def test_activation_quantization_is_identical_to_fbgemm(isa, signed):
    rng = np.random.default_rng(7)
    qp = choose_qparams(-3.3, 5.9, signed=signed)
    x = activation_ties(rng, 1_000_000, qp.scale, qp.zero_point, qp.qmin, qp.qmax)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        theirs = (
            torch.quantize_per_tensor(
                torch.from_numpy(x), qp.scale, qp.zero_point, torch.qint8 if signed else torch.quint8
            )
            .int_repr()
            .numpy()
        )
    ours, _ = quantize_activation(x.reshape(1000, 1000), qp)
    np.testing.assert_array_equal(ours.ravel(), theirs)


@pytest.mark.parametrize(
    "batch, k, n, relu", [(256, 64, 48, False), (256, 700, 48, True), (64, 1000, 129, True), (1024, 513, 64, False)]
)
def test_int8_linear_is_identical_to_torch_fbgemm(isa, batch, k, n, relu):
    """Inputs on quantization ties, widths off the vector length, K over the exact block."""
    rng = np.random.default_rng(k + n)
    layer, _, x_qp = layer_and_inputs(rng, batch, k, n)
    x = activation_ties(rng, batch * k, x_qp.scale, x_qp.zero_point, 0, 255).reshape(batch, k)
    out_qp = choose_qparams(-8.0, 8.0)
    x_q, _ = quantize_activation(x, x_qp)
    acc = layer.accumulate(x_q, x_qp.zero_point)
    layer = QuantizedLinear(layer.weight, layer.weight_scale, biases_on_output_ties(rng, layer, acc[0], x_qp, out_qp))
    their_x, theirs = torch_int8_linear(layer, x, x_qp, out_qp, relu)
    np.testing.assert_array_equal(x_q, their_x)
    ours = layer.forward(x_q, x_qp, out_qp, relu=relu)
    np.testing.assert_array_equal(ours, theirs)
    # Row 0 is on ties: rounding acc * s + bias, then dividing by s_y, would move some.
    unfused = (
        np.rint((acc[0] * (np.float32(x_qp.scale) * layer.weight_scale) + layer.bias) / np.float32(out_qp.scale))
        + out_qp.zero_point
    )
    lo = out_qp.zero_point if relu else 0
    assert np.count_nonzero(np.clip(unfused, lo, 255) != ours[0]) >= n // 8


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch reports the saturated weights
def test_bf16_matches_torch():
    x = np.random.default_rng(9).normal(0, 1e3, 10_000).astype(np.float32)
    np.testing.assert_array_equal(from_bf16(to_bf16(x)), torch.from_numpy(x).to(torch.bfloat16).float().numpy())
    big = np.array([[7e4, -7e4, 3.0]], np.float32)
    np.testing.assert_array_equal(
        to_fp16(big).astype(np.float32), torch._saturate_weight_to_fp16(torch.from_numpy(big)).numpy()
    )


def float_output_cases(rng, rows, cols):
    """Accumulators, multipliers and biases for the fused float output stage: random
    int32-like accumulators, float64 sums that land exactly on float32 midpoints
    (where rounding twice differs from once), results in float32's subnormal range,
    exact cancellations to zero (signed zeros), and values beyond float32's range."""
    f32 = np.float32
    acc = rng.integers(-(2**24), 2**24, (rows, cols)).astype(f32)
    acc[rows // 2 :] = rng.integers(-300, 300, (rows - rows // 2, cols))
    multiplier = (rng.uniform(1e-4, 1e-2, cols) * rng.choice([1, 2**-120], cols)).astype(f32)
    bias = rng.normal(0, 1, cols).astype(f32)
    # Midpoints: acc * (1 + 2**-23) + 2**-23 (1 + 2**-17) sits just above 2**24 + 1 (one
    # rounding: 2**24 + 2), but its float64 value is 2**24 + 1 exactly (round-to-even: 2**24).
    multiplier[0], bias[0], acc[:, 0] = 1 + 2.0**-23, 2.0**-23 * (1 + 2.0**-17), 2.0**24 - 1
    multiplier[1], bias[1] = 1, 0.5  # acc + 0.5: float32 ties for |acc| > 2**23
    acc[: rows // 2, 1] = rng.integers(2**23, 2**24, rows // 2) * rng.choice([-1, 1], rows // 2)
    multiplier[2], bias[2] = 2.0**-140, -(2.0**-149) * 3  # subnormal results, some negative zeros
    acc[:, 2] = rng.integers(-8, 8, rows)
    multiplier[3], bias[3], acc[:, 3] = 0.5, -0.0, -0.0  # -0 * 0.5 + -0 = -0
    multiplier[4], bias[4] = 2.0**110, 1.0  # |acc| * 2**110 overflows to inf
    return acc, multiplier, bias


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("rows, cols", [(64, 37), (129, 16), (3, 5)])
def test_dequantize_output_kernel_is_the_numpy_reference_bit_for_bit(isa, rows, cols, relu):
    """The fused float output stage: the kernel (hardware FMA or its emulation in the
    base copy) against the NumPy reference and fma32, bit for bit, signed zeros too."""
    rng = np.random.default_rng(rows * cols)
    acc, multiplier, bias = float_output_cases(rng, rows, cols)
    ours = dequantize_output(acc, multiplier, bias, relu=relu)
    theirs = reference.dequantize_output(acc, multiplier, bias, relu=relu)
    fused = fma32(acc, multiplier, bias)
    np.testing.assert_array_equal(ours.view(np.int32), theirs.view(np.int32))
    np.testing.assert_array_equal(ours.view(np.int32), (np.maximum(fused, 0) if relu else fused).view(np.int32))
    assert ours[0, 0] == np.float32(2.0**24 + 2)  # fused, not double-rounded
    if not relu:
        assert np.signbit(ours[:, 3]).all() and np.isinf(ours[:, 4]).any()
        assert np.count_nonzero((ours[:, 2] != 0) & (np.abs(ours[:, 2]) < np.finfo(np.float32).tiny))


def test_dequantize_output_takes_read_only_and_strided_inputs_and_checks_shapes():
    rng = np.random.default_rng(5)
    acc, multiplier, bias = float_output_cases(rng, 40, 24)
    wide = np.zeros((40, 48), np.float32)
    wide[:, ::2] = acc
    for array in (acc, multiplier, bias):
        array.flags.writeable = False
    np.testing.assert_array_equal(
        dequantize_output(wide[:, ::2], multiplier, bias), dequantize_output(acc, multiplier, bias)
    )
    assert dequantize_output(np.zeros((0, 24), np.float32), multiplier, bias).shape == (0, 24)
    with pytest.raises(ValueError, match="shape"):
        dequantize_output(acc, multiplier[:-1], bias)
    with pytest.raises(ValueError, match="2-D"):
        dequantize_output(acc[0], multiplier, bias)


def test_forward_float_is_the_fused_output_stage(isa):
    """QuantizedLinear.forward_float rounds once (the serving export's 0-ulp test checks
    the same stage against torch's fbgemm linear with a float32 output)."""
    rng = np.random.default_rng(11)
    layer, x, x_qp = layer_and_inputs(rng, 256, 300, 40)
    x_q, _ = quantize_activation(x, x_qp)
    acc = layer.accumulate(x_q, x_qp.zero_point)
    multiplier = (np.float32(x_qp.scale) * layer.weight_scale).astype(np.float32)
    for relu in (False, True):
        ours = layer.forward_float(x_q, x_qp, relu=relu)
        theirs = reference.dequantize_output(acc, multiplier, layer.bias, relu=relu)
        np.testing.assert_array_equal(ours.view(np.int32), theirs.view(np.int32))
