"""The compiled dot interaction against its reference (every dot product the float32
nearest its exact value), per ISA copy, and against the float64 matmul it replaced."""

import numpy as np
import pytest

from lpmon._kernels import interaction as kernel
from lpmon.model import reference
from lpmon.model.forward import interact
from lpmon.model.interaction import dot_interaction

f32 = np.float32


def vectors(rng, rows, v, d, scale=1.0):
    return [(rng.normal(0, 1, (rows, d)) * scale).astype(f32) for _ in range(v)]


def bits(a):
    return np.asarray(a, f32).view(np.int32)


def near_ties(rows, d):
    """Dot products whose exact value sits just off a float32 midpoint (or on one): a float64
    sum loses the tail and rounds the midpoint to even, the exact value rounds the other way."""
    a = np.zeros((rows, d), f32)
    b = np.zeros((rows, d), f32)
    a[:, 0], a[:, 1], b[:, :3] = 1, 2.0**-24, 1
    a[:, 2] = np.where(np.arange(rows) % 3 == 0, 0, 2.0**-60)  # above the midpoint, or on it
    a[1::3, 2] *= -1  # below it
    a[:, 3:], b[:, 3:] = 2.0**-100, -(2.0**-101)  # more tail, still exact in the sum
    return a, b


@pytest.mark.parametrize(
    "rows, v, d, scale", [(50, 27, 64, 1.0), (33, 5, 17, 1e-18), (20, 9, 3, 1e15), (7, 2, 1, 1.0), (3, 40, 130, 1.0)]
)
def test_kernel_is_the_exact_reference_bit_for_bit(isa, rows, v, d, scale):
    rng = np.random.default_rng(rows * v + d)
    parts = vectors(rng, rows, v, d, scale)
    parts[-1][: rows // 2] *= f32(1e-3)  # mixed magnitudes within a pair
    ours = dot_interaction(parts[0], parts[1:])
    np.testing.assert_array_equal(bits(ours), bits(reference.dot_interaction(parts[0], parts[1:])))


def test_near_ties_take_the_exact_path_where_float64_is_an_ulp_off(isa):
    a, b = near_ties(30, 8)
    c = np.ones((30, 8), f32)
    out = np.empty((30, 8 + 3), f32)
    exact_pairs = kernel.dot_interaction([np.ascontiguousarray(a), np.ascontiguousarray(b), c], out)
    theirs = reference.dot_interaction(a, [b, c])
    np.testing.assert_array_equal(bits(out), bits(theirs))
    assert exact_pairs >= 30
    z = out[:, 8]  # dot(b, a)
    above, below, on = z[2::3], z[1::3], z[0::3]
    assert (above == f32(1 + 2.0**-23)).all() and (below == f32(1)).all() and (on == f32(1)).all()
    old = reference.dot_interaction_float64(a, [b, c])[:, 8]
    assert (old[2::3] == f32(1)).all()  # the float64 sum lost 2**-60 and rounded the tie to even


def test_zeros_tiny_values_and_cancellation(isa):
    rng = np.random.default_rng(3)
    rows, d = 40, 16
    a = rng.normal(0, 1, (rows, d)).astype(f32)
    a[:, d // 2 :] = a[:, : d // 2]
    b = np.concatenate([a[:, : d // 2], -a[:, : d // 2] * f32(1 + 2.0**-20)], axis=1)  # a . b cancels
    zero = np.zeros((rows, d), f32)
    tiny = (rng.normal(0, 1, (rows, d)) * 2.0**-75).astype(f32)  # products below float32's range
    subnormal = np.full((rows, d), 2.0**-140, f32)
    parts = [a, b, zero, tiny, -tiny, subnormal]
    ours = dot_interaction(parts[0], parts[1:])
    np.testing.assert_array_equal(bits(ours), bits(reference.dot_interaction(parts[0], parts[1:])))
    assert (bits(ours[:, d + 1 : d + 3]) == 0).all()  # zero . a, zero . b: +0


def test_matches_the_float64_matmul_it_replaced_on_random_inputs(isa):
    """The old interaction (float64 BLAS sum, rounded once) agrees wherever its own rounding
    did not cross a float32 boundary; wherever the two differ, the kernel is the exact value."""
    rng = np.random.default_rng(11)
    for scale in (1.0, 1e-20, 1e17):
        parts = vectors(rng, 600, 27, 64, scale)
        ours = dot_interaction(parts[0], parts[1:])
        old = reference.dot_interaction_float64(parts[0], parts[1:])
        differ = np.nonzero(bits(ours) != bits(old))
        assert len(differ[0]) <= 2
        for r, c in zip(*differ):
            exact = reference.dot_interaction(parts[0][r : r + 1], [p[r : r + 1] for p in parts[1:]])
            assert bits(ours[r, c]) == bits(exact[0, c])


def test_read_only_strided_inputs_threads_and_empty_shapes(isa):
    rng = np.random.default_rng(5)
    parts = vectors(rng, 64, 6, 10)
    wide = np.zeros((64, 20), f32)
    wide[:, ::2] = parts[2]
    strided = [parts[0], parts[1], wide[:, ::2], np.asfortranarray(parts[3]), parts[4], parts[5]]
    for p in strided:
        p.flags.writeable = False
    expected = dot_interaction(parts[0], parts[1:])
    np.testing.assert_array_equal(bits(dot_interaction(strided[0], strided[1:])), bits(expected))
    np.testing.assert_array_equal(bits(dot_interaction(parts[0], parts[1:], n_threads=3)), bits(expected))
    np.testing.assert_array_equal(bits(interact(parts[0], parts[1:], "dot")), bits(expected))
    assert dot_interaction(parts[0][:0], [p[:0] for p in parts[1:]]).shape == (0, 10 + 15)
    np.testing.assert_array_equal(dot_interaction(parts[0], []), parts[0])
    assert (dot_interaction(parts[0][:, :0], [p[:, :0] for p in parts[1:]]) == 0).all()
    with pytest.raises(ValueError, match="one shape"):
        dot_interaction(parts[0], [parts[1][:, :3]])


def test_upper_order_is_torchrecs_triu_pairs_of_the_same_products():
    """TorchRec's InteractionArch takes torch.triu_indices(V, V, offset=1) of the Gram matrix:
    the same dot products as the lower triangle, in (i < j) row-major order."""
    rng = np.random.default_rng(7)
    parts = vectors(rng, 50, 5, 8)
    lower = dot_interaction(parts[0], parts[1:])
    upper = dot_interaction(parts[0], parts[1:], order="upper")
    gram = np.einsum("bvd,bwd->bvw", *(np.stack(parts, axis=1).astype(np.float64),) * 2)
    i, j = np.triu_indices(5, k=1)
    np.testing.assert_array_equal(upper[:, :8], parts[0])
    np.testing.assert_allclose(upper[:, 8:], gram[:, i, j], rtol=1e-6)
    assert sorted(bits(upper[0, 8:])) == sorted(bits(lower[0, 8:])) and not np.array_equal(upper, lower)
    with pytest.raises(ValueError, match="order must be 'lower' or 'upper'"):
        dot_interaction(parts[0], parts[1:], order="diagonal")
