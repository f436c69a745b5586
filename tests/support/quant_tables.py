"""Tables that are hard to quantize bit-exactly: the inputs of the FBGEMM cross-checks.

A kernel that rounds (x - lo) * inverse_scale with one fused multiply-add
instead of a rounded product, or adds a zero point before rather than after
rounding, agrees with FBGEMM on almost every value of random data; these
tables put many values exactly where such differences show: on rounding ties
of the product as float32 computes it (and just next to them), in rows whose
scales span many orders of magnitude, with constant rows, huge outliers and
values at the edges of fp16's range.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

f32 = np.float32
WIDTHS = list(range(1, 131))


def _nudged_ties(rng, lo, inverse, levels, count):
    """Values x >= lo where float32 (x - lo) * inverse rounds to a tie k + 0.5
    (exactly or within a few ulps), so that a fused multiply-add, whose product
    is not rounded first, lands on the other side of the tie."""
    k = rng.integers(0, max(levels - 1, 1), count)
    x = (f32(lo) + ((k + 0.5) / np.float64(inverse)).astype(f32)).astype(f32)
    steps = rng.integers(-3, 4, count)
    for _ in range(3):
        x = np.where(steps > 0, np.nextafter(x, f32(np.inf)), x)
        x = np.where(steps < 0, np.nextafter(x, f32(-np.inf)), x)
        steps = steps - np.sign(steps)
    return x.astype(f32)


def row_tie_table(rng, rows: int, dim: int, bits: int) -> np.ndarray:
    """Rows with lognormal scales whose inner values sit on the row's rounding ties.

    Each row holds its min and max (so the grid is known in advance) and
    values nudged onto ties of that grid: for 8-bit rows the grid is
    255 / (max - min + 1e-8); for n-bit rows it is the fp16 scale and bias
    FBGEMM derives from the row's min and max.
    """
    scales = np.exp(rng.normal(0, 2.5, rows)) if bits == 8 else np.exp(rng.uniform(-9, 7, rows))
    centre = rng.normal(0, 1, rows) * scales
    table = np.empty((rows, dim), f32)
    qmax = (1 << bits) - 1
    for r in range(rows):
        lo, hi = f32(centre[r] - scales[r]), f32(centre[r] + scales[r])
        if bits != 8:
            lo, hi = np.clip([lo, hi], -6e4, 6e4).astype(f32)
        row = np.empty(dim, f32)
        row[0] = lo
        if dim > 1:
            row[1] = hi
        if dim > 2:
            if bits == 8:
                inverse = f32(f32(255) / f32(f32(hi - lo) + f32(1e-8)))
                origin = lo
            else:
                origin = f32(np.float16(lo))
                scale = f32(np.float16(f32(f32(hi - origin) / f32(qmax))))
                inverse = f32(1) if scale == 0 else f32(f32(1) / scale)
            ties = _nudged_ties(rng, origin, inverse, qmax, dim - 2)
            row[2:] = np.clip(ties, lo, hi)
        table[r] = rng.permutation(row)
    return table


def hard_table(rng, rows: int, dim: int, bits: int) -> np.ndarray:
    """Tie rows, plus the special rows: zero, constant, outliers, fp16 edges, tiny ranges."""
    table = row_tie_table(rng, rows, dim, bits)
    fp16_max = 65504.0
    specials = [
        np.zeros(dim, f32),                                       # all zero
        np.full(dim, f32(3.25)),                                  # constant
        np.full(dim, f32(-1e-3)),                                 # constant negative
        np.linspace(-1, 1, dim, dtype=f32),                       # evenly spread
        np.where(np.arange(dim) == dim // 2, f32(1e30 if bits == 8 else fp16_max),
                 rng.normal(0, 1, dim).astype(f32)),              # one huge outlier
        np.where(np.arange(dim) % 2 == 0, f32(-fp16_max), f32(fp16_max)),  # fp16's full range
        f32(fp16_max) - rng.integers(0, 64, dim).astype(f32),    # just under fp16's max
        f32(1.0) + rng.integers(0, 4, dim).astype(f32) * f32(2 ** -23),  # range of a few ulps
        rng.normal(0, 1e-6, dim).astype(f32),                     # fp16-subnormal scale
        rng.normal(0, 1e-30, dim).astype(f32),                    # scale rounds to 0 in fp16
    ]
    if bits == 8:
        specials.append(rng.normal(0, 1e30, dim).astype(f32))    # huge values, fine in fp32
    return np.concatenate([table, np.array(specials, f32)])


@lru_cache(maxsize=None)
def cached_hard_table(seed: int, rows: int, dim: int, bits: int) -> np.ndarray:
    """hard_table from a seed, built once per session (read-only): every ISA copy reuses it."""
    table = hard_table(np.random.default_rng(seed), rows, dim, bits)
    table.flags.writeable = False
    return table


def activation_ties(rng, n: int, scale: float, zero_point: int, qmin: int, qmax: int) -> np.ndarray:
    """Student-t activations with a third of the values on (or a few ulps from) the
    ties of x / scale + zero_point, where the order of rounding and adding shows."""
    x = rng.standard_t(3, n).astype(f32) * f32(scale * (qmax - qmin) / 12)
    k = rng.integers(qmin - 3, qmax + 3, n // 3)
    ties = ((k - zero_point + 0.5) * np.float64(np.float32(scale))).astype(f32)
    for _ in range(2):
        step = rng.integers(-1, 2, ties.size)
        ties = np.where(step > 0, np.nextafter(ties, f32(np.inf)),
                        np.where(step < 0, np.nextafter(ties, f32(-np.inf)), ties)).astype(f32)
    x[rng.choice(n, ties.size, replace=False)] = ties
    return x
