"""Row-wise embedding kernels against NumPy references, and against FBGEMM (through torch) when present."""

import numpy as np
import pytest

from lpmon.quant import reference, rowwise

BITS = [8, 4, 2]


def tricky_table(rng, rows, dim):
    table = rng.normal(0, 1, (rows, dim)).astype(np.float32)
    if rows >= 6:
        table[0] = 0.0                      # all-zero row
        table[1] = 3.25                     # constant row
        table[2] *= 1e4                     # large values
        table[3] = -np.abs(table[3]) - 100  # all negative
        table[4, 0] = 1e-30                 # tiny
        table[5] = np.linspace(-1, 1, dim)
    return table


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dim", [1, 3, 8, 63, 64, 129])
def test_quantize_and_dequantize_match_reference(isa, bits, dim):
    table = tricky_table(np.random.default_rng(dim), 40, dim)
    packed = rowwise.quantize_rows(table, bits)
    assert packed.shape == (40, rowwise.row_bytes(bits, dim))
    np.testing.assert_array_equal(packed, reference.quantize_rows(table, bits))
    # q * scale + bias may be fused into one rounding (FMA) on AVX2/AVX-512:
    # equal to within a float32 rounding of the row's magnitude.
    magnitude = np.abs(table).max(axis=1, keepdims=True)
    diff = np.abs(rowwise.dequantize_rows(packed, bits, dim) - reference.dequantize_rows(packed, bits, dim))
    assert (diff <= 2.5e-7 * magnitude).all()


@pytest.mark.parametrize("bits", BITS)
def test_quantization_error_is_within_half_a_step(bits):
    table = np.random.default_rng(1).normal(0, 1, (200, 32)).astype(np.float32)
    packed = rowwise.quantize_rows(table, bits)
    restored = rowwise.dequantize_rows(packed, bits, 32)
    step = (table.max(axis=1) - table.min(axis=1)) / ((1 << bits) - 1)
    assert (np.abs(restored - table).max(axis=1) <= 0.5 * step * 1.01 + 1e-3 * (bits < 8)).all()


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_embedding_bag_matches_reference(isa, bits, mode):
    rng = np.random.default_rng(2)
    table = tricky_table(rng, 300, 37)
    packed = rowwise.quantize_rows(table, bits)
    indices = rng.integers(0, 300, 1000)
    offsets = np.concatenate([[0], np.sort(rng.integers(0, 1000, 49))])  # empty bags too
    got = rowwise.embedding_bag(packed, bits, 37, indices, offsets, mode=mode)
    want = reference.embedding_bag(packed, bits, 37, indices, offsets, mode=mode)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * np.abs(want).max())
    if mode == "sum":
        weights = rng.random(1000).astype(np.float32)
        got = rowwise.embedding_bag(packed, bits, 37, indices, offsets, per_sample_weights=weights)
        want = reference.embedding_bag(packed, bits, 37, indices, offsets, per_sample_weights=weights)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * np.abs(want).max())


def test_empty_bags_and_read_only_inputs():
    table = np.random.default_rng(3).normal(size=(10, 8)).astype(np.float32)
    packed = rowwise.quantize_rows(table, 8)
    packed.flags.writeable = False
    indices = np.array([1, 2, 3])
    indices.flags.writeable = False
    out = rowwise.embedding_bag(packed, 8, 8, indices, [0, 0, 3, 3], mode="mean")
    assert (out[[0, 2, 3]] == 0).all() and out.shape == (4, 8)
    empty = rowwise.embedding_bag(packed, 8, 8, np.array([], np.int64), [0])
    assert (empty == 0).all()


@pytest.mark.parametrize("bits", [4, 2])
def test_greedy_search_lowers_the_error(bits):
    table = np.random.default_rng(4).standard_t(3, (300, 64)).astype(np.float32)
    errors = {}
    for search in (False, True):
        restored = rowwise.dequantize_rows(rowwise.quantize_rows(table, bits, search=search), bits, 64)
        errors[search] = np.sqrt(((restored - table) ** 2).sum(axis=1))
    assert errors[True].mean() < errors[False].mean()
    assert (errors[True] <= errors[False] * 1.0001 + 1e-6).mean() > 0.95


def test_bad_input_names_what_is_wrong():
    table = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match="bits must be one of"):
        rowwise.quantize_rows(table, 3)
    with pytest.raises(ValueError, match=r"table must be 2-D \[rows, dim\]"):
        rowwise.quantize_rows(table[0])
    with pytest.raises(ValueError, match="must be a float table"):
        rowwise.quantize_rows(table.astype(np.int32))
    bad = table.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in 1 rows \(first: row 3\)"):
        rowwise.quantize_rows(bad, 8, name="emb_l.7")
    with pytest.raises(ValueError, match="emb_l.7 has NaN, inf or values beyond fp16"):
        rowwise.quantize_rows(table * 1e5, 4, name="emb_l.7")
    packed = rowwise.quantize_rows(table, 8)
    with pytest.raises(ValueError, match=r"indices has 1 ids outside the table's 5 rows \(first at position 1: 5\)"):
        rowwise.embedding_bag(packed, 8, 4, [0, 5], [0])
    with pytest.raises(ValueError, match="offsets must not decrease"):
        rowwise.embedding_bag(packed, 8, 4, [0, 1, 2], [0, 2, 1])
    with pytest.raises(ValueError, match="offsets must start at 0"):
        rowwise.embedding_bag(packed, 8, 4, [0, 1], [1])
    with pytest.raises(ValueError, match="offsets\\[-1\\] = 3 is past the 2 indices"):
        rowwise.embedding_bag(packed, 8, 4, [0, 1], [0, 3])
    with pytest.raises(ValueError, match="8-bit rows of dim 5 take 13 bytes, got rows of 12"):
        rowwise.dequantize_rows(packed, 8, 5)
    with pytest.raises(ValueError, match="per_sample_weights needs mode='sum'"):
        rowwise.embedding_bag(packed, 8, 4, [0], [0], mode="mean", per_sample_weights=[1.0])
    with pytest.raises(ValueError, match="indices must hold integers"):
        rowwise.embedding_bag(packed, 8, 4, [0.5], [0])


# --- against FBGEMM, through PyTorch (CI installs torch's CPU build) ---

torch = pytest.importorskip("torch")
PREPACK = {8: "embedding_bag_byte_prepack", 4: "embedding_bag_4bit_prepack",
           2: "embedding_bag_2bit_prepack"}


@pytest.mark.parametrize("bits", BITS)
def test_prepack_is_byte_identical_to_fbgemm(bits):
    table = tricky_table(np.random.default_rng(5), 2000, 64)
    table[2] /= 1e2  # keep 4/2-bit rows within fp16
    theirs = getattr(torch.ops.quantized, PREPACK[bits])(torch.from_numpy(table)).numpy()
    np.testing.assert_array_equal(rowwise.quantize_rows(table, bits), theirs)


@pytest.mark.parametrize("bits", [4, 2])
def test_greedy_search_is_byte_identical_to_torch(bits):
    table = np.random.default_rng(6).standard_t(3, (500, 64)).astype(np.float32)
    theirs = getattr(torch.ops.quantized, PREPACK[bits])(
        torch.from_numpy(table), optimized_qparams=True).numpy()
    np.testing.assert_array_equal(rowwise.quantize_rows(table, bits, search=True), theirs)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_pooled_lookup_matches_fbgemm(bits, weighted):
    rng = np.random.default_rng(7)
    table = rng.normal(0, 1, (5000, 64)).astype(np.float32)
    packed = rowwise.quantize_rows(table, bits)
    indices = rng.integers(0, 5000, 4000)
    offsets = np.concatenate([[0], np.sort(rng.integers(0, 4000, 199))])
    weights = rng.random(4000).astype(np.float32) if weighted else None
    lookup = (torch.ops.quantized.embedding_bag_byte_rowwise_offsets if bits == 8
              else torch.ops.quantized.embedding_bag_4bit_rowwise_offsets)
    theirs = lookup(torch.from_numpy(packed), torch.from_numpy(indices), torch.from_numpy(offsets),
                    mode=0, per_sample_weights=None if weights is None else torch.from_numpy(weights))
    ours = rowwise.embedding_bag(packed, bits, 64, indices, offsets, per_sample_weights=weights)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-5)
    # torch's quantized lookup has no mean mode; ours is its sum over the bag size.
    sizes = np.diff(np.append(offsets, len(indices)))
    mean = rowwise.embedding_bag(packed, bits, 64, indices, offsets, mode="mean")
    np.testing.assert_allclose(mean * np.maximum(sizes, 1)[:, None],
                               rowwise.embedding_bag(packed, bits, 64, indices, offsets),
                               rtol=1e-5, atol=1e-5)
