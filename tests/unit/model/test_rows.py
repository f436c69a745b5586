"""Touched-row scoring: the rows a batch touches, prepared once for the day, are the bytes
whole-table quantization (and FBGEMM) gives; executors are kept per plan content."""

import dataclasses

import numpy as np
import pytest

from lpmon.model import Batch, Model, ModelSpec, SparseFeature, SpecError, TableSpec, forward_fp32, forward_quantized
from lpmon.model.backends import executor
from lpmon.model.cache import MAX_EXECUTORS, MAX_TORCH_EXECUTORS
from lpmon.model.forward import Executor
from lpmon.model.rows import TouchedRows
from lpmon.quant import ActivationRange, LayerPlan, QuantPlan, rowwise, tbe
from lpmon.quant.halfprec import to_fp16
from support.models import random_batch
from support.quant_tables import cached_hard_table

# (precision, search): every way a table is stored.
STORAGE = [("int8", False), ("int4", False), ("int4", True), ("int2", False), ("int2", True), ("fp16", False)]
STORAGE += [("fp32", False)]


def whole(table, precision, search):
    """The whole table as the executor stored it before touched rows (the reference)."""
    if precision == "fp32":
        return table
    if precision == "fp16":
        return to_fp16(table).astype(np.float32)
    return rowwise.quantize_rows(table, int(precision[3:]), search=search)


def spec_of(dim=8, rows=(300, 257, 64), pooling="sum"):
    return ModelSpec(
        dense=("dense_0", "dense_1", "dense_2"),
        tables=tuple(TableSpec(f"sparse_{t}", r, dim) for t, r in enumerate(rows)),
        bottom_mlp=(16, dim),
        top_mlp=(12, 1),
        pooling=pooling,
    )


def plan_of(spec, tables, version=1, linear="fp32"):
    """A plan with every table at tables[t] = (precision, search)."""
    act = ActivationRange(-4.0, 4.0, 8 / 255, 128)
    layers = [
        LayerPlan(name, "linear", linear, activation=act if linear == "int8" else None)
        for name, _, _ in spec.linear_layers()
    ]
    layers += [LayerPlan(f"emb_l.{t}", "embedding", p, search=s) for t, (p, s) in enumerate(tables)]
    return QuantPlan("m", version, tuple(layers))


def hard_bags(rng, rows, n_bags):
    """Multi-hot bags of 0-6 ids, the first three empty, with repeats within and across bags."""
    counts = rng.integers(0, 7, n_bags)
    counts[:3] = 0
    indices = rng.integers(0, rows, counts.sum())
    indices[::5] = rng.integers(0, 4, indices[::5].size)  # a few ids over and over
    return SparseFeature(indices, np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64))


@pytest.mark.parametrize("precision, search", STORAGE)
@pytest.mark.parametrize("dim", [1, 7, 16, 64, 130])
def test_touched_rows_are_the_whole_tables_rows_bit_for_bit(precision, search, dim):
    table = cached_hard_table(dim, 40, dim, 4 if precision in ("int4", "int2") else 8)
    table = table[np.abs(table).max(axis=1) <= 6e4] if precision in ("int4", "int2", "fp16") else table
    reference = whole(table, precision, search)
    cache, rng = TouchedRows(), np.random.default_rng(dim)
    for _ in range(3):  # each round touches some rows again and some for the first time
        ids = rng.integers(0, len(table), 15)  # unsorted, repeats too
        rows, slots = cache.take(table, "t", precision, search, ids)
        np.testing.assert_array_equal(rows[slots].view(np.uint8), reference[ids].view(np.uint8))
    key = ("t", precision, search, "prepack")
    assert cache.prepared[key] == len(cache._sets[key].ids)


@pytest.mark.parametrize("precision, search", [("int8", False), ("int4", False), ("int4", True), ("int2", False)])
def test_touched_rows_in_the_tbe_layout_are_the_whole_tables_tbe_rows(precision, search):
    """embedding_layout = "tbe": touched rows are whole-table TBE quantization's rows (as
    the executor pools them), kept apart from the same table's prepack rows."""
    bits = int(precision[3:])
    table = cached_hard_table(16, 40, 16, bits)
    table = table[np.abs(table).max(axis=1) <= 6e4]
    reference = tbe.pooling_rows(tbe.quantize(table, bits, search=search), bits, 16)
    cache, ids = TouchedRows(), np.random.default_rng(0).integers(0, len(table), 30)
    rows, slots = cache.take(table, "t", precision, search, ids, "tbe")
    np.testing.assert_array_equal(rows[slots], reference[ids])
    prepack, slots = cache.take(table, "t", precision, search, ids)
    np.testing.assert_array_equal(prepack[slots], whole(table, precision, search)[ids])
    assert set(cache.prepared) == {("t", precision, search, "tbe"), ("t", precision, search, "prepack")}


def test_only_rows_not_yet_prepared_are_read_and_quantized(monkeypatch):
    table = np.random.default_rng(0).normal(size=(1000, 8)).astype(np.float32)
    seen = []
    real = rowwise.quantize_rows

    def counting(rows, *args, **kwargs):
        seen.append(len(rows))
        return real(rows, *args, **kwargs)

    monkeypatch.setattr("lpmon.model.rows.quantize_rows", counting)
    cache = TouchedRows()
    cache.take(table, "t", "int8", False, np.array([3, 5, 9]))
    cache.take(table, "t", "int8", False, np.array([3, 5, 9]))
    rows, slots = cache.take(table, "t", "int8", False, np.array([1, 5, 700]))
    assert seen == [3, 2]
    np.testing.assert_array_equal(rows[slots], real(table[[1, 5, 700]], 8))
    cache.take(table, "t", "int4", False, np.array([5]))  # another precision: its own rows
    assert seen == [3, 2, 1]
    assert cache.prepared == {("t", "int8", False, "prepack"): 5, ("t", "int4", False, "prepack"): 1}


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_pooled_rows_are_fbgemms_lookups_into_the_whole_table(pooling):
    """Each table under every storage, pooled by the executor from touched rows, against
    torch: FBGEMM's prepack of the whole table and its row-wise lookup (n-bit rows), and
    torch's embedding_bag over the whole (fp16-rounded) table (float rows)."""
    torch = pytest.importorskip("torch")
    prepack = {8: "embedding_bag_byte_prepack", 4: "embedding_bag_4bit_prepack", 2: "embedding_bag_2bit_prepack"}
    lookup = {
        8: "embedding_bag_byte_rowwise_offsets",
        4: "embedding_bag_4bit_rowwise_offsets",
        2: "embedding_bag_2bit_rowwise_offsets",
    }
    spec = spec_of(dim=16, rows=(300,) * len(STORAGE), pooling=pooling)
    model = Model.initialise(spec, seed=1)
    rng = np.random.default_rng(2)
    for t in range(len(STORAGE)):  # heavy-tailed rows, so the range search moves
        model.weights[f"emb_l.{t}.weight"] = rng.standard_t(3, (300, 16)).astype(np.float32)
    sparse = tuple(hard_bags(rng, 300, 200) for _ in STORAGE)
    batch = Batch(rng.normal(size=(200, 3)).astype(np.float32), sparse)
    taps = forward_quantized(model, batch, plan_of(spec, STORAGE), taps=True, batch_size=64).taps
    for t, (precision, search) in enumerate(STORAGE):
        table = torch.from_numpy(model.weights[f"emb_l.{t}.weight"])
        indices, offsets = torch.from_numpy(sparse[t].indices), torch.from_numpy(sparse[t].offsets)
        if precision in ("fp32", "fp16"):
            weight = table if precision == "fp32" else table.half().float()
            theirs = torch.nn.functional.embedding_bag(indices, weight, offsets, mode=pooling)
        else:
            bits = int(precision[3:])
            kwargs = {"optimized_qparams": True} if search else {}
            packed = getattr(torch.ops.quantized, prepack[bits])(table, **kwargs)
            theirs = getattr(torch.ops.quantized, lookup[bits])(packed, indices, offsets, mode=0)
            if pooling == "mean":  # the ops sum whatever the mode: FBGEMM's mean is the sum times 1 / size
                sizes = np.diff(np.append(sparse[t].offsets, len(sparse[t].indices))).astype(np.float32)
                theirs = theirs * torch.from_numpy(np.float32(1) / np.maximum(sizes, np.float32(1)))[:, None]
        ours = taps[f"emb_l.{t}"].output
        np.testing.assert_array_equal(ours.view(np.int32), theirs.numpy().view(np.int32), err_msg=precision)
        np.testing.assert_array_equal(taps[f"emb_l.{t}"].input, sparse[t].indices)


def test_forward_under_a_plan_is_the_whole_table_forward_bit_for_bit():
    """The executor's probabilities against pooling from whole quantized tables (what it
    did before), every storage, multi-hot, chunked so that chunks share rows."""
    spec = spec_of(dim=8, rows=(300,) * len(STORAGE))
    model = Model.initialise(spec, seed=4)
    batch = random_batch(spec, 500, np.random.default_rng(5))
    plan = plan_of(spec, STORAGE)
    ours = Executor(model, plan).forward(batch, batch_size=100, taps=True)
    for t, (precision, search) in enumerate(STORAGE):
        table = whole(model.weights[f"emb_l.{t}.weight"], precision, search)
        f = batch.sparse[t]
        want = (
            rowwise.embedding_bag_float(table, f.indices, f.offsets)
            if precision in ("fp32", "fp16")
            else rowwise.embedding_bag(table, int(precision[3:]), 8, f.indices, f.offsets)
        )
        np.testing.assert_array_equal(ours.taps[f"emb_l.{t}"].output.view(np.int32), want.view(np.int32))
    again = Executor(model, plan).forward(batch, batch_size=7, taps=True)
    for t in range(len(STORAGE)):  # rows prepared in one chunk and reused in another pool alike
        np.testing.assert_array_equal(again.taps[f"emb_l.{t}"].output, ours.taps[f"emb_l.{t}"].output)
    # The fp32 MLP is BLAS's matmul, whose kernel (and so its last bit) may depend on the
    # number of rows (seen on avx512 OpenBLAS): the probabilities agree to the ulp.
    np.testing.assert_array_max_ulp(again.probabilities, ours.probabilities, maxulp=1)


def test_a_non_finite_row_fails_naming_the_table_and_row_only_when_touched():
    spec = spec_of()
    model = Model.initialise(spec, seed=0)
    # What a load that no longer reads every byte may hand over:
    model.weights["emb_l.1.weight"][77, 3] = np.nan
    model.weights["emb_l.1.weight"][78, 0] = np.inf
    clean = Batch(np.zeros((2, 3), np.float32), tuple(SparseFeature.one_hot([1, 2]) for _ in range(3)))
    forward_fp32(model, clean)  # rows 77 and 78 are never read
    bad = Batch(clean.dense, (clean.sparse[0], SparseFeature.one_hot([5, 78]), clean.sparse[2]))
    with pytest.raises(SpecError, match="emb_l.1: row 78 has NaN or inf values"):
        forward_fp32(model, bad)
    plan = plan_of(spec, [("int8", False)] * 3)
    bad = Batch(clean.dense, (clean.sparse[0], SparseFeature.one_hot([77, 5]), clean.sparse[2]))
    with pytest.raises(SpecError, match="emb_l.1: row 77 has NaN or inf"):
        forward_quantized(model, bad, plan)
    model.weights["emb_l.0.weight"][9] = 7e4  # finite, but beyond fp16's range: no 4-bit row for it
    bad = Batch(clean.dense, (SparseFeature.one_hot([9, 1]), clean.sparse[1], clean.sparse[2]))
    forward_quantized(model, bad, plan)  # int8 rows have fp32 scales
    with pytest.raises(SpecError, match="emb_l.0: row 9 has NaN, inf or values beyond fp16"):
        forward_quantized(model, bad, plan_of(spec, [("int4", False)] * 3))


def test_an_executor_is_built_once_per_plan_content():
    spec = spec_of()
    model = Model.initialise(spec, seed=0)
    plan = plan_of(spec, [("int8", False)] * 3)
    first = executor(model, plan)
    same = dataclasses.replace(plan, version=7)  # the same layers under another version
    assert executor(model, same) is first and executor(model, QuantPlan.from_json(plan.to_json())) is first
    assert executor(model, None) is executor(model, None) is not first
    assert executor(model, plan_of(spec, [("int4", False)] * 3)) is not first
    for i in range(MAX_EXECUTORS + 2):  # bounded: the oldest go first
        executor(model, plan_of(spec, [("int8", False)] * 3, linear="fp16" if i % 2 else "bf16", version=i + 1))
        executor(model, plan_of(spec, [("fp16", False), ("int8", False), ("int2", i % 2 == 0)]))
    assert len(model.cache.executors) <= MAX_EXECUTORS
    # A replaced tensor starts the model's cache afresh (prepared rows and executors).
    model.weights["emb_l.0.weight"] = model.weights["emb_l.0.weight"] * 2
    assert executor(model, plan) is not first and model.cache.rows.prepared == {}


def test_plans_share_the_days_rows_and_a_move_prepares_only_its_unit():
    """As the fallback search does: one table moved up a rung prepares that table's rows
    under its new precision; every other table's rows are the ones prepared before."""
    spec = spec_of()
    model = Model.initialise(spec, seed=0)
    batch = random_batch(spec, 400, np.random.default_rng(1))
    start = plan_of(spec, [("int4", True), ("int8", False), ("int8", False)])
    forward_fp32(model, batch)
    forward_quantized(model, batch, start)
    before = dict(model.cache.rows.prepared)
    moved = plan_of(spec, [("int8", False), ("int8", False), ("int8", False)], version=2)
    forward_quantized(model, batch, moved)
    forward_quantized(model, batch.slice(0, 100), start)  # validation, probes: nothing new
    added = {k: v - before.get(k, 0) for k, v in model.cache.rows.prepared.items() if v != before.get(k, 0)}
    touched = np.unique(batch.sparse[0].indices).size
    assert added == {("emb_l.0", "int8", False, "prepack"): touched}


def test_the_torch_back_ends_executors_are_kept_too_but_fewer():
    pytest.importorskip("lpmon.torch_backend")  # needs torch; registers the "torch" back end
    spec = spec_of()
    model = dataclasses.replace(Model.initialise(spec, seed=0), backend="torch")
    plans = [plan_of(spec, [(p, False)] * 3) for p in ("int8", "int4", "fp16", "int2")]
    first = executor(model, plans[0])
    assert executor(model, dataclasses.replace(plans[0], version=3)) is first
    for plan in plans[1:]:
        executor(model, plan)
    assert len(model.cache.executors) == MAX_TORCH_EXECUTORS and executor(model, plans[0]) is not first


def test_memory_mapped_read_only_tables_score_the_same(tmp_path):
    """Snapshots map their tables (read-only np.memmap): rows are gathered from the map."""
    spec = spec_of()
    model = Model.initialise(spec, seed=2)
    mapped = dict(model.weights)
    for t in range(len(spec.tables)):
        path = tmp_path / f"emb_l.{t}.npy"
        np.save(path, model.weights[f"emb_l.{t}.weight"])
        mapped[f"emb_l.{t}.weight"] = np.load(path, mmap_mode="r")
    batch = random_batch(spec, 300, np.random.default_rng(3))
    plan = plan_of(spec, [("int8", False), ("int2", True), ("fp16", False)])
    for p in (None, plan):
        want = Executor(model, p).forward(batch).probabilities
        got = Executor(Model(spec, mapped), p).forward(batch).probabilities
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
