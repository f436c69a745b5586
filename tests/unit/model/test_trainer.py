"""The NumPy trainer: exact gradients (checked by finite differences) and a falling loss."""

import numpy as np
import pytest

from lpmon.metrics import normalized_entropy
from lpmon.model import Batch, Model, ModelSpec, SparseFeature, TableSpec, forward_fp32
from lpmon.model.trainer import Trainer, TrainerConfig, take
from lpmon.demo.world import World, WorldConfig


def tiny(interaction, pooling="sum"):
    dim = 4
    return ModelSpec(dense=("dense_0", "dense_1", "dense_2"),
                     tables=(TableSpec("sparse_0", 20, dim), TableSpec("sparse_1", 15, dim)),
                     bottom_mlp=(6, dim), top_mlp=(5, 1), interaction=interaction, pooling=pooling)


@pytest.mark.parametrize("interaction, pooling", [("dot", "sum"), ("cat", "mean")])
def test_gradients_match_finite_differences(interaction, pooling):
    rng = np.random.default_rng(0)
    model = Model.initialise(tiny(interaction, pooling), seed=1)
    for name in model.weights:  # float64 so that finite differences are exact enough
        model.weights[name] = model.weights[name].astype(np.float64)
    n = 40
    sparse = tuple(SparseFeature(rng.integers(0, t.rows, 2 * n), np.arange(0, 2 * n, 2, dtype=np.int64))
                   for t in model.spec.tables)
    batch = Batch(rng.normal(size=(n, 3)), sparse)
    labels = (rng.random(n) < 0.4).astype(np.uint8)
    trainer = Trainer(model)
    _, grads = trainer.loss_and_gradients(batch, labels)
    for name, weight in model.weights.items():
        for _ in range(6):
            index = tuple(rng.integers(0, s) for s in weight.shape)
            old, h = weight[index], 1e-6
            weight[index] = old + h
            up = trainer.loss_and_gradients(batch, labels)[0]
            weight[index] = old - h
            down = trainer.loss_and_gradients(batch, labels)[0]
            weight[index] = old
            numeric = (up - down) / (2 * h)
            if name.startswith("emb_l."):
                rows, row_grads = grads[name]
                analytic = row_grads[rows == index[0], index[1]].sum()
            else:
                analytic = grads[name][index]
            assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-9), (name, index)


def test_training_lowers_the_loss_on_world_traffic():
    world = World(WorldConfig(seed=5, examples_per_day=30_000, n_sparse=4, table_rows=500))
    table = world.day_table(0)
    from lpmon.traffic import TrafficSchema
    from lpmon.traffic.sample import to_batch

    batch = to_batch(table, TrafficSchema.for_model(world.model.spec))
    labels = table.column("label").to_numpy().astype(np.uint8)
    student = Model.initialise(world.model.spec, seed=11)
    before = normalized_entropy(forward_fp32(student, batch).probabilities, labels)
    losses = Trainer(student, TrainerConfig(learning_rate=3e-3, batch_size=512)).fit(batch, labels, epochs=2)
    after = normalized_entropy(forward_fp32(student, batch).probabilities, labels)
    assert after < before - 0.05 and np.mean(losses[-10:]) < np.mean(losses[:10])


def test_take_keeps_bags():
    f = SparseFeature(np.array([5, 6, 7, 8]), np.array([0, 2, 2, 3]))
    batch = Batch(np.arange(8, dtype=np.float32).reshape(4, 2), (f,))
    picked = take(batch, np.array([3, 0, 1]))
    assert list(picked.sparse[0].indices) == [8, 5, 6] and list(picked.sparse[0].offsets) == [0, 1, 3]
    assert picked.dense[:, 0].tolist() == [6.0, 0.0, 2.0]
