"""FBGEMM's table-batched inference rows (lpmon.quant.tbe): the kernel against the NumPy
reference, and against fbgemm_gpu itself when installed: the quantization op TorchRec's
quantize_inference_model calls, the rows IntNBitTableBatchedEmbeddingBagsCodegen holds
and its CPU lookups, bit for bit."""

import numpy as np
import pytest

from lpmon.quant import reference, rowwise, tbe
from lpmon.quant.precision import bytes_served, served_row_bytes
from support.quant_tables import WIDTHS, cached_hard_table

BITS = [8, 4, 2]


def hard_table(dim, bits):
    """support's table of rounding ties, without its rows beyond fp16 (refused here)."""
    table = cached_hard_table(dim, 12, dim, bits)
    return table[np.abs(table).max(axis=1) <= 6e4]


def edge_table(rng, rows, dim):
    """Normal rows, and rows that are constant, all zero, tiny, large or one-signed."""
    table = rng.normal(0, 0.05, (rows, dim)).astype(np.float32)
    table[0], table[1], table[2] = 0.0, 3.25, 1e-7
    table[3] *= 1e4
    table[4] = -np.abs(table[4]) - 100
    table[5] = np.linspace(-60000, 60000, dim)  # near fp16's largest values
    return table


@pytest.fixture(scope="module")
def fbgemm():
    torch = pytest.importorskip("torch")
    pytest.importorskip("fbgemm_gpu")
    return torch


def tbe_module(torch, sbhalf, bits, dim, pooling="sum"):
    """An IntNBitTableBatchedEmbeddingBagsCodegen holding the rows, as TorchRec builds one."""
    from fbgemm_gpu.split_embedding_configs import SparseType
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation, PoolingMode
    from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen

    codes, scale_bias = tbe.split(sbhalf)
    weight_ty = {8: SparseType.INT8, 4: SparseType.INT4, 2: SparseType.INT2}[bits]
    return IntNBitTableBatchedEmbeddingBagsCodegen(
        [("t", len(sbhalf), dim, weight_ty, EmbeddingLocation.HOST)],
        pooling_mode=PoolingMode.SUM if pooling == "sum" else PoolingMode.MEAN,
        device="cpu",
        output_dtype=SparseType.FP32,
        row_alignment=16,
        weight_lists=[(torch.from_numpy(codes), torch.from_numpy(scale_bias))],
    )


@pytest.mark.parametrize("bits", BITS)
def test_rows_match_the_reference_at_every_width(isa, bits):
    """Every width 1..130 (odd ones FBGEMM's op refuses too), rows on rounding ties."""
    for dim in WIDTHS:
        table = hard_table(dim, bits)
        rows = tbe.quantize(table, bits)
        assert rows.shape == (len(table), rowwise.row_bytes(bits, dim, fp16_scale_bias=True))
        np.testing.assert_array_equal(rows, reference.quantize_rows(table, bits, True), err_msg=f"dim {dim}")


@pytest.mark.parametrize("bits", BITS)
def test_rows_are_fbgemms_sbhalf_op_bit_for_bit(fbgemm, bits):
    """torch.ops.fbgemm.FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf: what TorchRec's
    quantize_state_dict calls for int8, int4 and int2 tables alike (widths whose rows
    it can align: an even number of bytes)."""
    rng = np.random.default_rng(bits)
    widths = [d for d in WIDTHS if d % (16 // bits) == 0]  # what the op takes: an even number of code bytes
    for dim in widths:
        for table in (edge_table(rng, 300, dim), hard_table(dim, bits)):
            theirs = fbgemm.ops.fbgemm.FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf(fbgemm.from_numpy(table), bits)
            np.testing.assert_array_equal(tbe.quantize(table, bits), theirs.numpy(), err_msg=f"dim {dim}")


def test_int8_rows_are_not_the_prepack_layouts():
    """The two layouts are different models: every row's scale and bias differ, and
    some rows' codes (the issue counted 1075 of 4000 rows)."""
    table = np.random.default_rng(0).normal(0, 0.05, (4000, 16)).astype(np.float32)
    tbe_rows, prepack_rows = tbe.pooling_rows(tbe.quantize(table, 8), 8, 16), rowwise.quantize_rows(table, 8)
    assert (tbe_rows[:, 16:] != prepack_rows[:, 16:]).any(axis=1).all()
    assert 0 < np.count_nonzero((tbe_rows[:, :16] != prepack_rows[:, :16]).any(axis=1)) < 4000


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("dim", [4, 8, 36, 64, 128])
def test_tbe_rows_are_what_the_tbe_module_holds(fbgemm, bits, dim):
    table = edge_table(np.random.default_rng(dim), 50, dim)
    sbhalf = tbe.quantize(table, bits)
    held = tbe_module(fbgemm, sbhalf, bits, dim).split_embedding_weights(split_scale_shifts=False)[0][0].numpy()
    np.testing.assert_array_equal(tbe.tbe_rows(sbhalf, bits, dim), held)
    assert held.shape[1] == served_row_bytes(bits, dim, "tbe")


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_pooling_rows_pool_as_the_tbe_module(fbgemm, bits, pooling):
    """lpmon's row-wise kernel on pooling_rows against TBE's CPU lookups: multi-hot bags,
    empty ones, repeated ids, rows of every kind."""
    rng = np.random.default_rng(bits)
    for dim in (8, 24, 36, 64):
        table = edge_table(rng, 400, dim)
        table[6:] *= rng.lognormal(0, 2, (394, 1)).astype(np.float32)  # scales far apart
        sbhalf = tbe.quantize(table, bits)
        sizes = rng.integers(0, 40, 600)
        indices = rng.integers(0, 400, sizes.sum())
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        module = tbe_module(fbgemm, sbhalf, bits, dim, pooling)
        theirs = module(fbgemm.from_numpy(indices), fbgemm.from_numpy(offsets)).numpy()
        rows = tbe.pooling_rows(sbhalf, bits, dim)
        ours = rowwise.embedding_bag(rows, bits, dim, indices, offsets[:-1], mode=pooling)
        np.testing.assert_array_equal(ours.view(np.int32), theirs.view(np.int32), err_msg=f"dim {dim}")


@pytest.mark.parametrize("bits", BITS)
def test_sbhalf_of_inverts_pooling_rows(bits):
    sbhalf = tbe.quantize(edge_table(np.random.default_rng(0), 20, 10), bits)
    rows = tbe.pooling_rows(sbhalf, bits, 10)
    assert rows.shape[1] == rowwise.row_bytes(bits, 10)
    np.testing.assert_array_equal(tbe.sbhalf_of(rows, bits, 10), sbhalf)


def test_bytes_served_count_fp16_scale_and_bias_and_the_row_alignment():
    # int8, dim 64: prepack 64 + 8 bytes a row; TBE 64 + 4, padded to 80
    assert bytes_served("embedding", 1000, 64, "int8") == 72_000
    assert bytes_served("embedding", 1000, 64, "int8", "tbe") == 80_000
    assert bytes_served("embedding", 1000, 60, "int8", "tbe") == 64_000  # 60 + 4: no padding
    assert bytes_served("embedding", 1000, 64, "int4", "tbe") == 48_000  # 32 + 4 -> 48
    assert bytes_served("embedding", 1000, 64, "fp16", "tbe") == bytes_served("embedding", 1000, 64, "fp16")
    assert bytes_served("linear", 10, 64, "int8", "tbe") == 640


def test_int8_rows_beyond_fp16_are_refused_in_the_tbe_layout_only():
    table = np.array([[0.0, 70000.0], [1.0, 2.0]], np.float32)
    assert rowwise.quantize_rows(table, 8).shape == (2, 10)
    with pytest.raises(ValueError, match=r"emb_l.3 has NaN, inf or values beyond fp16's \+-65504 in 1 rows"):
        tbe.quantize(table, 8, name="emb_l.3")
