"""Row-wise quantized embedding tables in FBGEMM's fused formats, bit for bit.

    packed = quantize_rows(table, bits=8)        # uint8 [rows, row_bytes]
    table2 = dequantize_rows(packed, 8, dim)     # float32 [rows, dim]
    pooled = embedding_bag(packed, 8, dim, indices, offsets, mode="sum")
    pooled = embedding_bag_float(table, indices, offsets)   # float32 tables, same order

Rows: 8-bit [dim x uint8][fp32 scale][fp32 bias], with bias = row min and
scale = (max - min) / 255; 4- and 2-bit [packed codes, element c in the low
bits first][fp16 scale][fp16 bias], with the fp16-rounded bias used in the
arithmetic. search=True (4/2-bit) picks each row's range by FBGEMM's greedy
search (200 bins, ratio 0.16) instead of its min and max. fp16_scale_bias=True
quantizes 8-bit rows the n-bit way too ([dim x uint8][fp16 scale][fp16 bias]:
the rows of FBGEMM's table-batched layout, lpmon.quant.tbe).
"""

from __future__ import annotations

import numpy as np

from lpmon._kernels import rowwise as _kernel

BITS = (8, 4, 2)
FP16_MAX = 65504.0
MAX_DIM = 1 << 20


def row_bytes(bits: int, dim: int, *, fp16_scale_bias: bool = False) -> int:
    """Bytes of one packed row."""
    _check_bits(bits)
    if bits == 8:
        return dim + (4 if fp16_scale_bias else 8)
    per_byte = 8 // bits
    return (dim + per_byte - 1) // per_byte + 4


def quantize_rows(
    table,
    bits: int = 8,
    *,
    search: bool = False,
    n_bins: int = 200,
    ratio: float = 0.16,
    name: str = "table",
    fp16_scale_bias: bool = False,
) -> np.ndarray:
    """Pack a float table [rows, dim] into FBGEMM's fused row-wise layout
    (fp16_scale_bias, 8-bit: FloatOrHalfToFusedNBitRowwiseQuantizedSBHalf's)."""
    _check_bits(bits)
    table = np.ascontiguousarray(_as_table(table, name), dtype=np.float32)
    rows, dim = table.shape
    half = bits != 8 or fp16_scale_bias
    out = np.empty((rows, row_bytes(bits, dim, fp16_scale_bias=half)), dtype=np.uint8)
    if rows == 0:
        return out
    if bits == 8 and search:
        raise ValueError("search applies to 4- and 2-bit rows only (as in FBGEMM)")
    # The kernels check every row (NaN, inf, fp16 range) as they go and stop at
    # the first bad one; only then is the table scanned again to report it.
    if not half:
        bad = _kernel.quantize_rows8(table, out)
    elif search:
        _raise_bad_rows(table, name, half, _kernel.quantize_rows_nbit(bits, table, out))
        lo, hi = greedy_row_ranges(table, bits, n_bins, ratio)
        bad = _kernel.quantize_rows_nbit(bits, table, out, lo, hi)
    else:
        bad = _kernel.quantize_rows_nbit(bits, table, out)
    _raise_bad_rows(table, name, half, bad)
    return out


def dequantize_rows(packed, bits: int, dim: int) -> np.ndarray:
    """float32 [rows, dim] from packed rows: q * scale + bias per row."""
    packed = _as_packed(packed, bits, dim)
    out = np.empty((packed.shape[0], dim), dtype=np.float32)
    if packed.shape[0]:
        _kernel.dequantize_rows(packed, bits, dim, out)
    return out


def embedding_bag(
    packed, bits: int, dim: int, indices, offsets, *, mode: str = "sum", per_sample_weights=None
) -> np.ndarray:
    """Pooled lookups straight from packed rows (torch.nn.EmbeddingBag semantics).

    offsets[b] is where bag b starts in indices (offsets[0] == 0, non-decreasing);
    the last bag runs to the end. mode "sum" or "mean" (an empty bag gives
    zeros); per_sample_weights (sum only) scales each looked-up row.
    """
    packed = _as_packed(packed, bits, dim)
    if mode not in ("sum", "mean"):
        raise ValueError(f"mode must be 'sum' or 'mean', got {mode!r}")
    indices, offsets = _as_bags(indices, offsets)
    rows = packed.shape[0]
    weights = None
    if per_sample_weights is not None:
        if mode != "sum":
            raise ValueError("per_sample_weights needs mode='sum' (as in torch)")
        weights = np.ascontiguousarray(per_sample_weights, dtype=np.float32).reshape(-1)
        if weights.size != indices.size:
            raise ValueError(f"per_sample_weights has {weights.size} values for {indices.size} indices")
        if not np.isfinite(weights).all():
            raise ValueError(f"per_sample_weights has {np.count_nonzero(~np.isfinite(weights))} NaN or inf values")
    out = np.empty((offsets.size, dim), dtype=np.float32)
    # The kernel checks each index as it reads it and stops at the first bad one.
    if _kernel.embedding_bag(packed, bits, dim, indices, offsets, weights, mode == "mean", out) >= 0:
        _raise_bad_indices(indices, rows)
    return out


def embedding_bag_float(table, indices, offsets, *, mode: str = "sum") -> np.ndarray:
    """Pooled lookups into a float32 table [rows, dim], as torch's embedding_bag computes
    them: each bag's rows summed one after another in the ids' order (so the sum agrees
    to the bit with torch and FBGEMM), mode "sum" or "mean" (an empty bag gives zeros).
    offsets as for embedding_bag."""
    if mode not in ("sum", "mean"):
        raise ValueError(f"mode must be 'sum' or 'mean', got {mode!r}")
    table = np.asarray(table)
    if table.ndim != 2 or table.dtype != np.float32:
        raise ValueError(f"table must be a 2-D float32 array, got {table.dtype} {table.shape}")
    indices, offsets = _as_bags(indices, offsets)
    out = np.empty((offsets.size, table.shape[1]), dtype=np.float32)
    if table.shape[1] == 0:
        return out
    if _kernel.embedding_bag_float(np.ascontiguousarray(table), indices, offsets, out) >= 0:
        _raise_bad_indices(indices, table.shape[0])
    if mode == "mean":
        counts = np.diff(np.append(offsets, indices.size))
        filled = counts > 0
        out[filled] /= counts[filled, None]
    return out


def _as_bags(indices, offsets):
    indices = _as_index_array(indices, "indices")
    offsets = _as_index_array(offsets, "offsets")
    if offsets.size == 0:
        raise ValueError("offsets is empty: there must be at least one bag")
    if offsets[0] != 0:
        raise ValueError(f"offsets must start at 0, got {offsets[0]}")
    steps = np.flatnonzero(np.diff(offsets) < 0)
    if steps.size:
        raise ValueError(
            f"offsets must not decrease: offsets[{steps[0] + 1}] = "
            f"{offsets[steps[0] + 1]} < offsets[{steps[0]}] = {offsets[steps[0]]}"
        )
    if offsets[-1] > indices.size:
        raise ValueError(f"offsets[-1] = {offsets[-1]} is past the {indices.size} indices")
    return indices, offsets


def _raise_bad_indices(indices, rows):
    bad = np.flatnonzero((indices < 0) | (indices >= rows))
    raise ValueError(
        f"indices has {bad.size} ids outside the table's {rows} rows (first at position {bad[0]}: {indices[bad[0]]})"
    )


def greedy_row_ranges(
    table: np.ndarray, bits: int, n_bins: int = 200, ratio: float = 0.16, chunk: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (lo, hi) by FBGEMM/PyTorch's greedy search (choose_qparams_optimized).

    From [min, max], shrink one end by (max - min) / n_bins at a time, moving
    whichever end gives the lower L2 error, until the range has shrunk to
    n_bins * (1 - ratio) steps; keep the best local optimum seen. The error is
    computed as PyTorch does (float32, fp16-rounded bias and scale, summed in order).
    """
    lo = np.empty(table.shape[0], np.float32)
    hi = np.empty(table.shape[0], np.float32)
    for start in range(0, table.shape[0], chunk):
        lo[start : start + chunk], hi[start : start + chunk] = _greedy_chunk(
            table[start : start + chunk], bits, n_bins, ratio
        )
    return lo, hi


def _range_loss(x, lo, hi, qmax):
    f32 = np.float32
    lo = lo.astype(np.float16).astype(f32)  # the bias is stored in fp16
    data_range = (hi - lo).astype(f32)
    scale = np.where(data_range == 0, f32(1), (data_range / qmax).astype(np.float16).astype(f32))
    inverse = np.where(scale == 0, f32(1), f32(1) / np.where(scale == 0, f32(1), scale))
    q = np.clip(np.rint((x - lo[:, None]) * inverse[:, None]), f32(0), qmax)
    err = x - (q * scale[:, None] + lo[:, None])
    # np.cumsum adds left to right in float32: the order of PyTorch's scalar loop.
    return np.sqrt(np.cumsum(err * err, axis=1, dtype=f32)[:, -1])


def _greedy_chunk(x, bits, n_bins, ratio):
    f32 = np.float32
    qmax = f32((1 << bits) - 1)
    xmin, xmax = x.min(axis=1), x.max(axis=1)
    step = ((xmax - xmin) / f32(n_bins)).astype(f32)
    min_bins = int(n_bins * (1.0 - float(f32(ratio))))
    thr = (f32(min_bins) * step).astype(f32)
    best_lo, best_hi = xmin.copy(), xmax.copy()
    cur_lo, cur_hi = xmin.copy(), xmax.copy()
    cur_loss = _range_loss(x, cur_lo, cur_hi, qmax)
    best_loss = cur_loss.copy()
    active = (cur_lo + thr) < cur_hi
    while active.any():
        rows = np.flatnonzero(active)
        xs, lo, hi, s = x[rows], cur_lo[rows], cur_hi[rows], step[rows]
        loss_left = _range_loss(xs, (lo + s).astype(f32), hi, qmax)
        loss_right = _range_loss(xs, lo, (hi - s).astype(f32), qmax)
        loss = cur_loss[rows]
        optimum = (loss < loss_left) & (loss < loss_right) & (loss < best_loss[rows])
        best_loss[rows[optimum]] = loss[optimum]
        best_lo[rows[optimum]], best_hi[rows[optimum]] = lo[optimum], hi[optimum]
        left = loss_left < loss_right
        cur_lo[rows] = np.where(left, lo + s, lo).astype(f32)
        cur_hi[rows] = np.where(left, hi, hi - s).astype(f32)
        cur_loss[rows] = np.where(left, loss_left, loss_right)
        active = (cur_lo + thr) < cur_hi
    return best_lo, best_hi


def _check_bits(bits):
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits}")


def _as_table(table, name):
    array = np.asarray(table)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, dim], got shape {array.shape}")
    if array.dtype.kind != "f":
        raise ValueError(f"{name} must be a float table, got dtype {array.dtype}")
    if array.shape[1] == 0 or array.shape[1] > MAX_DIM:
        raise ValueError(f"{name} must have 1 to {MAX_DIM} columns, got {array.shape[1]}")
    return array


def _raise_bad_rows(table, name, half, first_bad):
    if first_bad < 0:
        return
    bad = ~np.isfinite(table).all(axis=1)
    if half:  # fp16 scale and bias must represent the row's range
        bad |= np.abs(table).max(axis=1, initial=0) > FP16_MAX
    if bad.any():
        rows = np.flatnonzero(bad)
        what = "NaN, inf or values beyond fp16's +-65504" if half else "NaN or inf"
        raise ValueError(f"{name} has {what} in {rows.size} rows (first: row {rows[0]})")


def _as_packed(packed, bits, dim):
    _check_bits(bits)
    array = np.asarray(packed)
    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(f"packed rows must be a 2-D uint8 array, got {array.dtype} {array.shape}")
    if not 0 < dim <= MAX_DIM:
        raise ValueError(f"dim must be between 1 and {MAX_DIM}, got {dim}")
    expected = row_bytes(bits, dim)
    if array.shape[1] != expected:
        raise ValueError(f"{bits}-bit rows of dim {dim} take {expected} bytes, got rows of {array.shape[1]}")
    return np.ascontiguousarray(array)


def _as_index_array(values, name):
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)
