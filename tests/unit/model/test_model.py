"""Model spec, snapshots and the fp32 / quantized forward passes."""

import numpy as np
import pytest

from lpmon.calibrate import observer
from lpmon.model import Batch, Model, ModelSpec, SparseFeature, SpecError, TableSpec
from lpmon.model import forward_fp32, forward_quantized
from lpmon.quant import ActivationRange, LayerPlan, QuantPlan
from support.models import random_batch


def small_spec(interaction="dot", dim=8):
    return ModelSpec(dense=tuple(f"dense_{i}" for i in range(5)),
                     tables=tuple(TableSpec(f"sparse_{t}", 50 + t, dim) for t in range(3)),
                     bottom_mlp=(16, dim), top_mlp=(12, 1), interaction=interaction)


def reference_forward(model, batch):
    """An independent float64 forward, example by example."""
    spec, w = model.spec, {k: v.astype(np.float64) for k, v in model.weights.items()}
    out = []
    for i in range(len(batch)):
        x = batch.dense[i].astype(np.float64)
        for j in range(len(spec.bottom_mlp)):
            x = np.maximum(w[f"bot_l.{2 * j}.weight"] @ x + w[f"bot_l.{2 * j}.bias"], 0)
        vectors = [x]
        for t, feature in enumerate(batch.sparse):
            stop = feature.offsets[i + 1] if i + 1 < len(batch) else len(feature.indices)
            ids = feature.indices[feature.offsets[i]:stop]
            vectors.append(w[f"emb_l.{t}.weight"][ids].sum(axis=0))
        if spec.interaction == "dot":
            dots = [vectors[a] @ vectors[b] for a in range(len(vectors)) for b in range(a)]
            z = np.concatenate([x, dots])
        else:
            z = np.concatenate(vectors)
        for j in range(len(spec.top_mlp)):
            z = w[f"top_l.{2 * j}.weight"] @ z + w[f"top_l.{2 * j}.bias"]
            if j < len(spec.top_mlp) - 1:
                z = np.maximum(z, 0)
        out.append(1 / (1 + np.exp(-z[0])))
    return np.array(out)


@pytest.mark.parametrize("interaction", ["dot", "cat"])
def test_fp32_forward_matches_float64_reference(interaction):
    spec = small_spec(interaction)
    model = Model.initialise(spec, seed=3)
    batch = random_batch(spec, 300, np.random.default_rng(0))
    got = forward_fp32(model, batch, batch_size=64).probabilities
    np.testing.assert_allclose(got, reference_forward(model, batch), rtol=1e-5, atol=1e-6)


def all_fp32_plan(spec):
    layers = [LayerPlan(name, "linear", "fp32") for name, _, _ in spec.linear_layers()]
    layers += [LayerPlan(f"emb_l.{t}", "embedding", "fp32") for t in range(len(spec.tables))]
    return QuantPlan("m", 1, tuple(layers))


def int8_plan(model, batch, embedding_precision="int8"):
    taps = forward_fp32(model, batch, taps=True).taps
    layers = []
    for name, _, _ in model.spec.linear_layers():
        r = observer("l2").observe(taps[name].input).compute()
        layers.append(LayerPlan(name, "linear", "int8",
                                activation=ActivationRange(r.lo, r.hi, r.scale, r.zero_point)))
    layers += [LayerPlan(f"emb_l.{t}", "embedding", embedding_precision)
               for t in range(len(model.spec.tables))]
    return QuantPlan("m", 1, tuple(layers))


def test_all_fp32_plan_equals_fp32_exactly():
    spec = small_spec()
    model = Model.initialise(spec, seed=1)
    batch = random_batch(spec, 500, np.random.default_rng(1))
    fp32 = forward_fp32(model, batch, taps=True)
    quant = forward_quantized(model, batch, all_fp32_plan(spec), taps=True)
    np.testing.assert_array_equal(quant.probabilities, fp32.probabilities)
    assert quant.saturation == {}
    assert set(fp32.taps) == {"bot_l.0", "bot_l.2", "emb_l.0", "emb_l.1", "emb_l.2",
                              "interaction", "top_l.0", "top_l.2"}
    assert fp32.taps["bot_l.0"].input.shape == (500, 5)


@pytest.mark.parametrize("embeddings", ["int8", "int4", "fp16"])
def test_quantized_forward_is_close_and_counts_saturation(embeddings):
    spec = small_spec()
    model = Model.initialise(spec, seed=2)
    rng = np.random.default_rng(2)
    calibration, batch = random_batch(spec, 2000, rng), random_batch(spec, 2000, rng)
    plan = int8_plan(model, calibration, embeddings)
    fp32 = forward_fp32(model, batch).probabilities
    quant = forward_quantized(model, batch, plan)
    assert np.abs(quant.probabilities - fp32).max() < 0.02
    assert set(quant.saturation) == {"bot_l.0", "bot_l.2", "top_l.0", "top_l.2"}
    assert quant.saturation["bot_l.0"].total == 2000 * 5
    # Stale ranges: scaled-up traffic saturates the bottom layer's input range.
    drifted = random_batch(spec, 2000, rng)
    drifted = Batch(drifted.dense * 4, drifted.sparse)
    assert forward_quantized(model, drifted, plan).saturation["bot_l.0"].fraction > 0.05


def test_snapshot_round_trip_and_shape_errors(tmp_path):
    spec = small_spec()
    model = Model.initialise(spec, seed=4)
    model.save(tmp_path / "snap")
    again = Model.load(tmp_path / "snap")
    assert again.spec == spec
    for name in model.weights:
        np.testing.assert_array_equal(again.weights[name], model.weights[name])
    weights = dict(model.weights)
    weights["top_l.0.weight"] = np.zeros((12, 7), np.float32)
    with pytest.raises(SpecError, match=r"top_l.0.weight has shape \(12, 7\), the spec says \(12, 14\)"):
        Model(spec, weights)
    weights = dict(model.weights)
    del weights["emb_l.2.weight"]
    with pytest.raises(SpecError, match="missing tensor emb_l.2.weight"):
        Model(spec, weights)
    weights = dict(model.weights)
    weights["bot_l.0.bias"] = np.full(16, np.nan, np.float32)
    with pytest.raises(SpecError, match="bot_l.0.bias has 16 NaN"):
        Model(spec, weights)
    with pytest.raises(SpecError, match="no spec.json"):
        Model.load(tmp_path)


@pytest.mark.parametrize("change, message", [
    (dict(top_mlp=(12, 2)), "the last layer must have 1 output"),
    (dict(interaction="attention"), "interaction: must be one of"),
    (dict(bottom_mlp=(16, 4)), r"tables\[0\].dim: dot interaction needs"),
    (dict(dense=("x",)), "dense: must list dense_"),
    (dict(bottom_mlp=()), "bottom_mlp: must be a non-empty list"),
])
def test_bad_specs(change, message):
    values = dict(dense=("dense_0",), tables=(TableSpec("sparse_0", 10, 8),), bottom_mlp=(8,),
                  top_mlp=(4, 1))
    values.update(change)
    with pytest.raises(SpecError, match=message):
        ModelSpec(**values)


def test_spec_json_errors():
    spec = small_spec()
    assert ModelSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SpecError, match="unknown field 'colour'"):
        ModelSpec.from_json('{"colour": 1}')
    with pytest.raises(SpecError, match="missing field 'bottom_mlp'"):
        ModelSpec.from_json('{"dense": [], "tables": [], "top_mlp": [1]}')


def test_batch_errors():
    spec = small_spec()
    model = Model.initialise(spec)
    batch = random_batch(spec, 10, np.random.default_rng(5))
    bad = Batch(batch.dense, batch.sparse[:2])
    with pytest.raises(ValueError, match="batch has 2 sparse features, the model 3"):
        forward_fp32(model, bad)
    ids = batch.sparse[0].indices.copy()
    ids[0] = 999
    bad = Batch(batch.dense, (SparseFeature(ids, batch.sparse[0].offsets),) + batch.sparse[1:])
    with pytest.raises(ValueError, match="sparse_0: 1 ids outside the table's 50 rows"):
        forward_fp32(model, bad)


@pytest.mark.parametrize("method", ["l2", "minmax", "kl"])
def test_scoring_pass_feeds_calibration_observers(method):
    """observe/observe_every=2 on the fp32 scoring pass gives the same observer
    states as a second pass over the calibration half (rows 0, 2, 4, ...)."""
    from lpmon.calibrate import to_state
    from lpmon.pipeline.assembly import observe

    spec = small_spec()
    model = Model.initialise(spec, seed=4)
    batch = random_batch(spec, 3001, np.random.default_rng(4))
    names = [name for name, _, _ in spec.linear_layers()]
    fed = {name: observer(method) for name in names}
    scored = forward_fp32(model, batch, batch_size=37,
                          observe=lambda name, x: fed[name].observe(x), observe_every=2)
    np.testing.assert_array_equal(scored.probabilities, forward_fp32(model, batch, batch_size=37).probabilities)
    second_pass = observe(model, batch.take(np.arange(len(batch))[0::2]), method)
    assert {n: to_state(o) for n, o in fed.items()} == {n: to_state(o) for n, o in second_pass.items()}
    with pytest.raises(ValueError, match="observe_every must be at least 1"):
        forward_fp32(model, batch, observe=lambda name, x: None, observe_every=0)
