"""Row-wise embedding kernels against NumPy references, and against FBGEMM (through torch) when present."""

import numpy as np
import pytest
from support.quant_tables import WIDTHS, cached_hard_table

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
    np.testing.assert_array_equal(rowwise.dequantize_rows(packed, bits, dim),
                                  reference.dequantize_rows(packed, bits, dim))


@pytest.mark.parametrize("bits", BITS)
def test_hard_tables_match_reference_at_every_width(isa, bits):
    """Every width 1..130, rows on rounding ties: what torch cannot pack (odd widths) too."""
    for dim in WIDTHS:
        table = cached_hard_table(dim, 12, dim, bits)
        packed = rowwise.quantize_rows(table, bits)
        np.testing.assert_array_equal(packed, reference.quantize_rows(table, bits), err_msg=f"dim {dim}")
        np.testing.assert_array_equal(rowwise.dequantize_rows(packed, bits, dim),
                                      reference.dequantize_rows(packed, bits, dim), err_msg=f"dim {dim}")


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
    np.testing.assert_array_equal(got, reference.embedding_bag(packed, bits, 37, indices, offsets, mode=mode))
    if mode == "sum":
        weights = rng.random(1000).astype(np.float32)
        got = rowwise.embedding_bag(packed, bits, 37, indices, offsets, per_sample_weights=weights)
        want = reference.embedding_bag(packed, bits, 37, indices, offsets, per_sample_weights=weights)
        np.testing.assert_array_equal(got, want)


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


def torch_widths(bits):
    """The widths torch packs: n-bit rows must fill their last byte."""
    return [d for d in WIDTHS if bits == 8 or d % (8 // bits) == 0]


@pytest.mark.parametrize("bits", BITS)
def test_prepack_is_byte_identical_to_fbgemm(isa, bits):
    """Hard tables (ties, lognormal scales, constant rows, outliers, fp16 edges), every width."""
    for dim in torch_widths(bits):
        table = cached_hard_table(100 + dim, 24, dim, bits)
        theirs = getattr(torch.ops.quantized, PREPACK[bits])(torch.tensor(table)).numpy()
        np.testing.assert_array_equal(rowwise.quantize_rows(table, bits), theirs, err_msg=f"dim {dim}")


def test_lognormal_int8_table_is_byte_identical_to_fbgemm(isa):
    """The table of the report: 4000 x 100, lognormal row scales."""
    rng = np.random.default_rng(0)
    table = (rng.normal(size=(4000, 100)) * np.exp(rng.normal(0, 3, (4000, 1)))).astype(np.float32)
    theirs = torch.ops.quantized.embedding_bag_byte_prepack(torch.tensor(table)).numpy()
    np.testing.assert_array_equal(rowwise.quantize_rows(table, 8), theirs)


@pytest.mark.parametrize("bits", BITS)
def test_unpack_is_identical_to_fbgemm(isa, bits):
    unpack = {8: "embedding_bag_byte_unpack", 4: "embedding_bag_4bit_unpack", 2: "embedding_bag_2bit_unpack"}
    for dim in torch_widths(bits)[::3]:
        table = cached_hard_table(200 + dim, 24, dim, bits)
        packed = rowwise.quantize_rows(table, bits)
        theirs = getattr(torch.ops.quantized, unpack[bits])(torch.from_numpy(packed)).numpy()
        np.testing.assert_array_equal(rowwise.dequantize_rows(packed, bits, dim), theirs, err_msg=f"dim {dim}")


@pytest.mark.parametrize("bits", [4, 2])
def test_greedy_search_is_byte_identical_to_torch(isa, bits):
    table = np.random.default_rng(6).standard_t(3, (500, 64)).astype(np.float32)
    theirs = getattr(torch.ops.quantized, PREPACK[bits])(
        torch.tensor(table), optimized_qparams=True).numpy()
    np.testing.assert_array_equal(rowwise.quantize_rows(table, bits, search=True), theirs)
    for dim in torch_widths(bits)[::4]:
        table = cached_hard_table(300 + dim, 16, dim, bits)
        theirs = getattr(torch.ops.quantized, PREPACK[bits])(
            torch.tensor(table), optimized_qparams=True).numpy()
        np.testing.assert_array_equal(rowwise.quantize_rows(table, bits, search=True), theirs,
                                      err_msg=f"dim {dim}")


LOOKUP = {8: "embedding_bag_byte_rowwise_offsets", 4: "embedding_bag_4bit_rowwise_offsets",
          2: "embedding_bag_2bit_rowwise_offsets"}


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("weighted", [False, True])
def test_pooled_lookup_is_identical_to_fbgemm(isa, bits, weighted):
    """Bit for bit, at widths on and off the 8- and 16-column vectors, empty bags included."""
    lookup = getattr(torch.ops.quantized, LOOKUP[bits])
    for dim in [d for d in torch_widths(bits) if d <= 24 or d % 7 == 0 or d in (64, 128)]:
        rng = np.random.default_rng(400 + dim)
        packed = rowwise.quantize_rows(cached_hard_table(400 + dim, 60, dim, bits), bits)
        indices = rng.integers(0, len(packed), 1500)
        offsets = np.concatenate([[0], np.sort(rng.integers(0, 1500, 99))])
        weights = rng.normal(0, 2, 1500).astype(np.float32) if weighted else None
        theirs = lookup(torch.from_numpy(packed), torch.from_numpy(indices), torch.from_numpy(offsets),
                        mode=0, per_sample_weights=None if weights is None else torch.from_numpy(weights))
        ours = rowwise.embedding_bag(packed, bits, dim, indices, offsets, per_sample_weights=weights)
        np.testing.assert_array_equal(ours, theirs.numpy(), err_msg=f"dim {dim}")


def float_bags(rng, n_bags, dim, rows=300):
    """Bags of 0 to 9 ids (repeats too) over a float32 table holding signed zeros,
    subnormals and values of very different magnitudes (order-dependent sums)."""
    table = (rng.normal(0, 1, (rows, dim)) * 10.0 ** rng.integers(-6, 7, (rows, dim))).astype(np.float32)
    table[0] = -0.0
    table[1] = np.float32(2.0 ** -140) * rng.integers(-4, 5, dim)
    counts = rng.integers(0, 10, n_bags)
    counts[:3] = 0
    indices = rng.integers(0, rows, counts.sum())
    indices[: counts.sum() // 4] = rng.integers(0, 2, counts.sum() // 4)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return table, indices, offsets


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("n_bags, dim", [(500, 64), (37, 13), (1, 1)])
def test_float_embedding_bag_kernel_is_the_numpy_reference_bit_for_bit(isa, n_bags, dim, mode):
    rng = np.random.default_rng(n_bags + dim)
    table, indices, offsets = float_bags(rng, n_bags, dim)
    ours = rowwise.embedding_bag_float(table, indices, offsets, mode=mode)
    theirs = reference.embedding_bag_float(table, indices, offsets, mode=mode)
    np.testing.assert_array_equal(ours.view(np.int32), theirs.view(np.int32))


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_float_embedding_bag_is_identical_to_torch(mode):
    rng = np.random.default_rng(3)
    table, indices, offsets = float_bags(rng, 400, 32)
    theirs = torch.nn.functional.embedding_bag(torch.from_numpy(indices), torch.from_numpy(table),
                                               torch.from_numpy(offsets), mode=mode).numpy()
    ours = rowwise.embedding_bag_float(table, indices, offsets, mode=mode)
    np.testing.assert_array_equal(ours.view(np.int32), theirs.view(np.int32))


def test_float_embedding_bag_checks_its_inputs():
    table = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match="outside the table's 5 rows"):
        rowwise.embedding_bag_float(table, [0, 5], [0])
    with pytest.raises(ValueError, match="must not decrease"):
        rowwise.embedding_bag_float(table, [0, 1], [0, 2, 1])
    with pytest.raises(ValueError, match="float32"):
        rowwise.embedding_bag_float(table.astype(np.float64), [0], [0])
    read_only = table[:, ::2]
    read_only.flags.writeable = False
    np.testing.assert_array_equal(rowwise.embedding_bag_float(read_only, [1, 2], [0, 1]),
                                  np.ones((2, 2), np.float32))
